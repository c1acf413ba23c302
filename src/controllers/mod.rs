//! controllers (to be written).
