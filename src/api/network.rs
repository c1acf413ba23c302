//! `Network`: a cluster-wide overlay network that stacks use as `external`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::rules::{Cidr, Errors};

/// The desired state of a swarm-scoped network named after the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkSpec {
    /// The network driver; swarm-scoped networks are `overlay` unless a plugin is used.
    #[serde(default = "default_driver")]
    pub driver: String,
    /// Whether standalone containers (`docker run --network`) may attach.
    #[serde(default)]
    pub attachable: bool,
    /// Encrypt the overlay's data plane (IPsec), as `--opt encrypted`.
    #[serde(default)]
    pub encrypted: bool,
    /// No route to the outside world.
    #[serde(default)]
    pub internal: bool,
    /// IPAM subnet, CIDR (`10.20.0.0/16`); Docker picks one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// Gateway address inside `subnet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Range (CIDR, inside `subnet`) that container addresses are taken from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
    /// Labels on the network (swarmkeeper adds its own ownership labels).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Driver options (`--opt key=value`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

fn default_driver() -> String {
    "overlay".to_owned()
}

impl NetworkSpec {
    pub(crate) fn validate(&self, errors: &mut Errors) {
        errors.not_empty("spec.driver", &self.driver);
        if self.encrypted && self.driver != "overlay" {
            errors.push("spec.encrypted", "only overlay networks can be encrypted");
        }
        errors.labels("spec.labels", &self.labels);
        let subnet = self.subnet.as_deref().and_then(|text| {
            Cidr::parse(text)
                .map_err(|message| errors.push("spec.subnet", message))
                .ok()
        });
        if let Some(gateway) = &self.gateway {
            match gateway.parse::<IpAddr>() {
                Err(_) => errors.push("spec.gateway", format!("{gateway:?} is not an IP address")),
                Ok(ip) => match subnet {
                    Some(net) if !net.contains(ip) => errors.push(
                        "spec.gateway",
                        format!("{gateway} is not inside the subnet"),
                    ),
                    None if self.subnet.is_none() => {
                        errors.push("spec.gateway", "needs spec.subnet")
                    }
                    _ => {}
                },
            }
        }
        if let Some(range) = &self.ip_range {
            match Cidr::parse(range) {
                Err(message) => errors.push("spec.ipRange", message),
                Ok(range_net) => match subnet {
                    Some(net) if !net.covers(&range_net) => {
                        errors.push("spec.ipRange", format!("{range} is not inside the subnet"))
                    }
                    None if self.subnet.is_none() => {
                        errors.push("spec.ipRange", "needs spec.subnet")
                    }
                    _ => {}
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(spec: serde_json::Value) -> Vec<String> {
        let spec: NetworkSpec = serde_json::from_value(spec).unwrap();
        Errors::found_by(|errors| spec.validate(errors))
    }

    #[test]
    fn defaults_to_overlay() {
        let spec: NetworkSpec = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(spec.driver, "overlay");
        assert!(!spec.attachable && !spec.encrypted && !spec.internal);
    }

    #[test]
    fn addresses_are_checked_against_the_subnet() {
        assert!(
            errors_of(serde_json::json!({
                "subnet": "10.20.0.0/16", "gateway": "10.20.0.1", "ipRange": "10.20.4.0/24"
            }))
            .is_empty()
        );
        assert_eq!(
            errors_of(serde_json::json!({
                "subnet": "10.20.0.0/16", "gateway": "10.21.0.1", "ipRange": "10.0.0.0/8"
            })),
            [
                "spec.gateway: 10.21.0.1 is not inside the subnet",
                "spec.ipRange: 10.0.0.0/8 is not inside the subnet"
            ]
        );
        assert_eq!(
            errors_of(serde_json::json!({"subnet": "10.20.0.0", "gateway": "x"})),
            [
                "spec.subnet: \"10.20.0.0\" is not in CIDR notation (address/prefix)",
                "spec.gateway: \"x\" is not an IP address"
            ]
        );
        assert_eq!(
            errors_of(serde_json::json!({"gateway": "10.0.0.1"})),
            ["spec.gateway: needs spec.subnet"]
        );
        assert_eq!(
            errors_of(serde_json::json!({"driver": "bridge", "encrypted": true})),
            ["spec.encrypted: only overlay networks can be encrypted"]
        );
    }
}
