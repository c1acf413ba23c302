//! The pure diff: desired + live state -> changes; normalisation; the drift report model.

pub mod backup_job;
pub mod convert;
pub mod database_user;
pub mod diff;
pub mod drift;
pub mod network;
pub mod node;
pub mod registry;
pub mod stack;
