//! PLACEHOLDER — replaced by the compose helper. Interface contract:
//! `ComposeFile` is Serialize + Deserialize + JsonSchema + Clone + Debug + PartialEq;
//! `ComposeFile::validate(&self, base_path: &str) -> Vec<FieldError>` checks cross-references
//! (paths are prefixed with `base_path`, e.g. "spec.compose");
//! `ComposeFile::ignored_keys(&self) -> Vec<String>` lists keys swarm ignores (warnings).

use super::FieldError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ComposeFile(pub serde_json::Value);

impl ComposeFile {
    pub fn validate(&self, _base_path: &str) -> Vec<FieldError> {
        Vec::new()
    }
    pub fn ignored_keys(&self) -> Vec<String> {
        Vec::new()
    }
}
