//! The record kinds: serde + schemars types, parsing, validation, one file per kind.
//!
//! Shared contract (other modules rely on these names):
//! - [`FieldError`]: one validation problem at a field path.
//! - `compose::ComposeFile`: the compose file a Stack carries (owned by `compose.rs`).

pub mod compose;

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
