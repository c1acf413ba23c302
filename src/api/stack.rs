//! `Stack`: a compose file converged the way `docker stack deploy --prune` would.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::compose::ComposeFile;
use super::rules::Errors;

/// A compose file, inline (`compose`) or named by path (`composeFile`, relative to the
/// record's file). `apply` reads a `composeFile` and stores it inline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StackSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose: Option<ComposeFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose_file: Option<String>,
}

impl StackSpec {
    pub(crate) fn validate(&self, errors: &mut Errors) {
        match (&self.compose, &self.compose_file) {
            (Some(compose), None) => errors.0.extend(compose.validate("spec.compose")),
            (None, Some(file)) => errors.not_empty("spec.composeFile", file),
            (Some(_), Some(_)) => {
                errors.push("spec", "set either compose or composeFile, not both")
            }
            (None, None) => errors.push("spec", "set one of compose or composeFile"),
        }
    }
}
