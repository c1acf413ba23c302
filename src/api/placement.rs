//! Placement of the services swarmkeeper runs itself (registries, backup jobs).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::rules::Errors;

/// Where a service's tasks may run, as compose's `deploy.placement`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Placement {
    /// Constraints such as `node.role == manager` or `node.labels.usage == apps`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
}

impl Placement {
    pub(crate) fn validate(&self, path: &str, errors: &mut Errors) {
        for (i, constraint) in self.constraints.iter().enumerate() {
            errors.constraint(&format!("{path}.constraints[{i}]"), constraint);
        }
    }
}
