//! Networks: the request swarmkeeper creates for a Network record, and the
//! one comparison of a live network with a request, which Network records
//! and a stack's own networks share.
//!
//! Swarm networks are immutable, so a difference is reported, never updated.

use std::collections::HashMap;

use bollard::models::{Ipam, IpamConfig, Network, NetworkCreateRequest};

use super::diff::{self, FieldDiff};
use crate::api::network::NetworkSpec;
use crate::docker::labels::SPEC_HASH;

/// The network swarmkeeper creates for a record.
///
/// `owner_labels` are the ownership labels ([`crate::docker::Docker::owner_labels`]).
pub fn request(
    name: &str,
    spec: &NetworkSpec,
    owner_labels: HashMap<String, String>,
) -> NetworkCreateRequest {
    let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    labels.extend(owner_labels);
    let mut options: HashMap<String, String> = spec.options.clone().into_iter().collect();
    if spec.encrypted {
        // The docker CLI's `--opt encrypted` sets the option with an empty value.
        options.insert("encrypted".into(), String::new());
    }
    let ipam = spec.subnet.as_ref().map(|subnet| Ipam {
        config: Some(vec![IpamConfig {
            subnet: Some(subnet.clone()),
            gateway: spec.gateway.clone(),
            ip_range: spec.ip_range.clone(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    let mut req = NetworkCreateRequest {
        name: name.to_string(),
        driver: Some(spec.driver.clone()),
        scope: Some("swarm".into()),
        attachable: Some(spec.attachable),
        internal: Some(spec.internal),
        options: Some(options),
        ipam,
        labels: Some(labels),
        ..Default::default()
    };
    let hash = super::stack::json_hash(&req);
    if let Some(l) = req.labels.as_mut() {
        l.insert(SPEC_HASH.into(), hash);
    }
    req
}

/// The overlay driver's own option: the VXLAN IDs it picked.
const VXLAN_IDS: &str = "com.docker.network.driver.overlay.vxlanid_list";

/// Fields of the live network that differ from the request: the one
/// comparison of networks, for Network records and a stack's own networks alike.
pub fn compare(want: &NetworkCreateRequest, live: &Network) -> Vec<FieldDiff> {
    let subnet = |ipam: Option<&Ipam>| {
        ipam.and_then(|i| i.config.as_ref())
            .and_then(|c| c.first())
            .and_then(|c| c.subnet.clone())
    };
    // `encrypted` is set with an empty value, which would compare as unset.
    let split = |options: Option<&HashMap<String, String>>| {
        let mut options = options.cloned().unwrap_or_default();
        let encrypted = options.remove("encrypted").is_some();
        options.remove(VXLAN_IDS);
        (encrypted, options)
    };
    let (want_encrypted, want_options) = split(want.options.as_ref());
    // Swarm lists a network's driver and options from its driver state, which its
    // allocator fills in: a network listed before that (right after its create, on
    // a busy manager) has neither, and that is not drift.
    let allocated = live.driver.as_deref().is_some_and(|d| !d.is_empty());
    let (live_driver, (live_encrypted, live_options)) = if allocated {
        (live.driver.clone(), split(live.options.as_ref()))
    } else {
        (want.driver.clone(), (want_encrypted, want_options.clone()))
    };
    // The daemon picks a subnet when none is asked for: only one asked for is compared.
    let want_subnet = subnet(want.ipam.as_ref());
    let live_subnet = want_subnet.as_ref().and(subnet(live.ipam.as_ref()));
    let desired = serde_json::json!({
        "Driver": want.driver,
        "Attachable": want.attachable,
        "Internal": want.internal,
        "Encrypted": want_encrypted,
        "Options": want_options,
        "Labels": want.labels,
        "Subnet": want_subnet,
    });
    let have = serde_json::json!({
        "Driver": live_driver,
        "Attachable": live.attachable,
        "Internal": live.internal,
        "Encrypted": live_encrypted,
        "Options": live_options,
        "Labels": live.labels,
        "Subnet": live_subnet,
    });
    diff::diff(&desired, &have, &[])
}

/// The network dockerd answers for one created from `req`, with what the
/// overlay driver adds: for tests of what compares with it.
#[cfg(test)]
pub(crate) fn as_created(req: &NetworkCreateRequest, id: &str) -> Network {
    let mut options = req.options.clone().unwrap_or_default();
    options.insert(VXLAN_IDS.into(), "4097".into());
    Network {
        id: Some(id.to_owned()),
        name: Some(req.name.clone()),
        driver: req.driver.clone(),
        attachable: req.attachable,
        internal: req.internal,
        options: Some(options),
        labels: req.labels.clone(),
        ipam: req.ipam.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::labels::Owner;

    fn spec(encrypted: bool) -> NetworkSpec {
        NetworkSpec {
            driver: "overlay".into(),
            attachable: true,
            encrypted,
            internal: false,
            subnet: Some("10.20.0.0/24".into()),
            gateway: None,
            ip_range: None,
            labels: [("team".to_string(), "cats".to_string())].into(),
            options: Default::default(),
        }
    }

    fn live_from(req: &NetworkCreateRequest) -> Network {
        as_created(req, "id")
    }

    #[test]
    fn a_network_as_created_has_no_drift() {
        let req = request(
            "frontend",
            &spec(true),
            Owner::new("Network", "frontend").labels(),
        );
        assert_eq!(compare(&req, &live_from(&req)), vec![]);
    }

    #[test]
    fn encryption_and_labels_are_owned_and_compared() {
        let req = request(
            "backend",
            &spec(true),
            Owner::new("Network", "backend").labels(),
        );
        let labels = req.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get("swarmkeeper.owner").map(String::as_str),
            Some("Network.backend")
        );
        assert_eq!(labels.get("team").map(String::as_str), Some("cats"));
        let plain = live_from(&request(
            "backend",
            &spec(false),
            Owner::new("Network", "backend").labels(),
        ));
        let paths: Vec<String> = compare(&req, &plain).into_iter().map(|f| f.path).collect();
        assert!(paths.contains(&"Encrypted".to_string()), "{paths:?}");
    }

    #[test]
    fn a_subnet_is_compared_only_when_one_is_asked_for() {
        let picked = |req: &NetworkCreateRequest| {
            let mut live = live_from(req);
            live.ipam = Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some("10.0.9.0/24".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            });
            live
        };
        let unasked = NetworkSpec {
            subnet: None,
            ..spec(false)
        };
        let req = request("auto", &unasked, HashMap::new());
        assert_eq!(compare(&req, &picked(&req)), vec![]);
        let req = request("fixed", &spec(false), HashMap::new());
        let paths: Vec<String> = compare(&req, &picked(&req))
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(paths, ["Subnet"]);
    }

    #[test]
    fn a_network_not_yet_allocated_has_no_drift_but_its_labels_still_count() {
        let req = request("fresh", &spec(true), HashMap::new());
        let mut live = live_from(&req);
        live.driver = Some(String::new());
        live.options = None;
        assert_eq!(compare(&req, &live), vec![]);
        live.labels = None;
        let paths: Vec<String> = compare(&req, &live).into_iter().map(|f| f.path).collect();
        assert!(paths.iter().all(|p| p.starts_with("Labels")), "{paths:?}");
        assert!(!paths.is_empty());
    }
}
