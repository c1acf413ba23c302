//! Rendering of tables, diffs and drift reports for the command line.

pub mod drift;
pub mod plan;
pub mod table;
