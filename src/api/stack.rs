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
    pub compose: Option<Box<ComposeFile>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose_file: Option<String>,
    /// `.env` files (relative to the record's file) whose variables interpolate the compose
    /// file, later files over earlier ones and apply's environment over them all, as
    /// `docker compose` reads a `.env`. `apply` reads them and stores the result only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_files: Vec<String>,
    /// Fields someone else owns, as drift names them (`services.worker.deploy.replicas`,
    /// `services.*.deploy.replicas`, `services.web.environment`): drift does not report
    /// them and converge keeps their live values (a created service takes the file's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_differences: Vec<String>,
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
        if !self.env_files.is_empty() {
            errors.push(
                "spec.envFiles",
                "envFiles are read by `swarmkeeper apply`; a record written without apply \
                 carries its values interpolated",
            );
        }
        for (i, path) in self.ignore_differences.iter().enumerate() {
            let services = self.compose.as_ref().map(|c| &c.services);
            let mut parts = path.splitn(3, '.');
            let ok = match (parts.next(), parts.next(), parts.next()) {
                (Some("services"), Some(service), Some(rest)) if !rest.is_empty() => {
                    service == "*" || services.is_none_or(|s| s.contains_key(service))
                }
                _ => false,
            };
            if !ok {
                errors.push(
                    format!("spec.ignoreDifferences[{i}]"),
                    format!(
                        "{path:?} is not a field of a service of this stack \
                         (services.<service or *>.<field>, as drift names it)"
                    ),
                );
            }
        }
    }
}
