//! The record kinds: serde + schemars types, parsing, validation, one file per kind.
//!
//! Shared contract (other modules rely on these names):
//! - [`FieldError`]: one validation problem at a field path.
//! - `compose::ComposeFile`: the compose file a Stack carries (owned by `compose.rs`).
//! - [`Record`], [`Kind`], [`Spec`], [`Metadata`]: a record and its envelope; its JSON form
//!   (`Record::to_value`) is what etcd holds.
//! - [`load::load_paths`]: records from files and folders, with their secret material.
//! - [`sealing`]: which sealed values a record may use.
//! - [`schema::schema_for`] / [`schema::write_all`]: the `crds/` JSON Schemas.

pub mod backup_job;
pub mod compose;
pub mod database_user;
pub mod interpolate;
mod kind;
pub mod load;
pub mod network;
pub mod node;
pub mod placement;
mod record;
mod redact;
pub mod registry;
mod rules;
pub mod schema;
pub mod sealing;
pub mod secret;
pub mod secret_value;
pub mod stack;

pub use kind::{Kind, UnknownKind};
pub use record::{API_VERSION, Metadata, Record, Spec};
pub use rules::{NAME_PATTERN, is_valid_name};
pub use secret_value::SecretValue;

/// One validation problem, at a dotted field path inside a record
/// (`spec.compose.services.web.networks[1]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}
