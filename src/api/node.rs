//! `Node`: the labels and availability of one swarm node, named by its hostname.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::rules::Errors;

/// The desired labels and availability of the node whose hostname is the record's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    /// Node labels (`docker node update --label-add`), used by placement constraints
    /// (`node.labels.usage == apps`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Scheduling availability; left as it is when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<Availability>,
}

/// A node's scheduling availability, as `docker node update --availability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    Active,
    Pause,
    Drain,
}

impl Availability {
    /// The Engine API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Active => "active",
            Availability::Pause => "pause",
            Availability::Drain => "drain",
        }
    }
}

impl NodeSpec {
    pub(crate) fn validate(&self, errors: &mut Errors) {
        errors.labels("spec.labels", &self.labels);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_is_lowercase() {
        let spec: NodeSpec =
            serde_json::from_value(serde_json::json!({"availability": "drain"})).unwrap();
        assert_eq!(spec.availability, Some(Availability::Drain));
        assert_eq!(Availability::Drain.as_str(), "drain");
        assert!(
            serde_json::from_value::<NodeSpec>(serde_json::json!({"availability": "off"})).is_err()
        );
    }
}
