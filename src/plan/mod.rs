//! The pure side of convergence: desired records to swarm objects, and diffs against live state.

pub mod convert;
