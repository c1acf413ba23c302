//! The Network reconciler: a cluster-wide overlay network, named as the
//! record, that stacks use as `external`.
//!
//! # Caveats
//! Swarm networks are immutable: a network whose live settings differ from
//! the record is reported (Degraded, with its drift) rather than recreated,
//! since recreating it would detach every task using it. A network of the same
//! name that swarmkeeper does not own is never touched; the record fails.

use std::collections::HashMap;

use bollard::models::{Ipam, IpamConfig, Network, NetworkCreateRequest};

use super::status::{Owned, Phase, Status};
use super::{Context, Error, RecordKey};
use crate::api::Spec;
use crate::api::network::NetworkSpec;
use crate::docker::labels::{Owner, SPEC_HASH};
use crate::plan::diff::{self, FieldDiff};
use crate::plan::drift::{ObjectDrift, ObjectState, RecordDrift};
use crate::runtime::Action;
use crate::store::Versioned;

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
    let hash = crate::plan::stack::json_hash(&req);
    if let Some(l) = req.labels.as_mut() {
        l.insert(SPEC_HASH.into(), hash);
    }
    req
}

/// The overlay driver's own option: the VXLAN IDs it picked.
const VXLAN_IDS: &str = "com.docker.network.driver.overlay.vxlanid_list";

/// Fields of the live network that differ from the request.
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
    let (live_encrypted, live_options) = split(live.options.as_ref());
    let desired = serde_json::json!({
        "Driver": want.driver,
        "Attachable": want.attachable,
        "Internal": want.internal,
        "Encrypted": want_encrypted,
        "Options": want_options,
        "Labels": want.labels,
        "Subnet": subnet(want.ipam.as_ref()),
    });
    let have = serde_json::json!({
        "Driver": live.driver,
        "Attachable": live.attachable,
        "Internal": live.internal,
        "Encrypted": live_encrypted,
        "Options": live_options,
        "Labels": live.labels,
        "Subnet": if want.ipam.is_some() { subnet(live.ipam.as_ref()) } else { None },
    });
    diff::diff(&desired, &have, &[])
}

fn spec_of(stored: Versioned) -> Result<NetworkSpec, String> {
    match super::parse_record(stored.value)?.spec {
        Spec::Network(spec) => Ok(spec),
        _ => Err("record is not a Network".into()),
    }
}

fn owned(live: &[Network]) -> Vec<Owned> {
    live.iter()
        .map(|n| Owned {
            object: "network".into(),
            name: n.name.clone().unwrap_or_default(),
            id: n.id.clone().unwrap_or_default(),
        })
        .collect()
}

/// Converges one Network record.
///
/// # Errors
/// Transient failures of etcd or dockerd.
pub async fn reconcile(
    ctx: &Context,
    key: &RecordKey,
    stored: Option<Versioned>,
) -> Result<Action, Error> {
    let owner = Owner::new("Network", &key.name);
    let live = ctx.docker.list_networks(Some(&owner)).await?;
    let Some(stored) = stored else {
        for n in &live {
            match ctx
                .docker
                .remove_network(n.id.as_deref().unwrap_or_default())
                .await
            {
                Ok(()) => {
                    let msg = format!("removed network {}", key.name);
                    ctx.event(key, false, "Removed", msg).await;
                }
                // Stacks still use it: try again once they are gone.
                Err(err) if err.is_in_use() || err.is_transient() => {
                    return ctx.forget(key, true).await;
                }
                Err(err) => return Err(err.into()),
            }
        }
        return ctx.forget(key, false).await;
    };
    let generation = stored.mod_revision;
    let spec = match spec_of(stored) {
        Ok(s) => s,
        Err(msg) => return ctx.fail(key, generation, msg).await,
    };
    let want = request(&key.name, &spec, ctx.docker.owner_labels(&owner));
    let mut status = Status {
        owned: owned(&live),
        ..Status::new(Phase::Ready, generation)
    };
    match live
        .iter()
        .find(|n| n.name.as_deref() == Some(key.name.as_str()))
    {
        Some(n) => {
            let fields = compare(&want, n);
            if !fields.is_empty() {
                status.phase = Phase::Degraded;
                status.message =
                    "the live network differs; swarm networks are immutable, remove its users so it can be recreated".into();
                status.drift = vec![ObjectDrift {
                    object: "network".into(),
                    name: key.name.clone(),
                    state: ObjectState::Changed,
                    fields,
                }];
            }
        }
        None => {
            if ctx
                .docker
                .inspect_network_by_name(&key.name)
                .await?
                .is_some()
            {
                let msg = format!(
                    "a network named {:?} exists and is not managed by swarmkeeper; it is left alone",
                    key.name
                );
                return ctx.fail(key, generation, msg).await;
            }
            let id = ctx.docker.create_network(want).await?;
            ctx.event(
                key,
                false,
                "Created",
                format!("created network {}", key.name),
            )
            .await;
            status.owned = vec![Owned {
                object: "network".into(),
                name: key.name.clone(),
                id,
            }];
        }
    }
    // Swarm networks are immutable: what differs stays until the network is recreated.
    ctx.drift.set(key, status.drift.clone());
    ctx.write_status(key, &status).await?;
    Ok(Action::requeue(ctx.resync))
}

/// The drift of one Network record.
///
/// # Errors
/// When dockerd fails.
pub async fn drift(
    ctx: &Context,
    name: &str,
    stored: Option<Versioned>,
) -> Result<RecordDrift, Error> {
    let owner = Owner::new("Network", name);
    let live = ctx.docker.list_networks(Some(&owner)).await?;
    let mut report = RecordDrift {
        kind: "Network".into(),
        name: name.into(),
        objects: Vec::new(),
        error: None,
    };
    let object = |state, fields| ObjectDrift {
        object: "network".into(),
        name: name.into(),
        state,
        fields,
    };
    let Some(stored) = stored else {
        if !live.is_empty() {
            report.objects.push(object(ObjectState::Orphan, Vec::new()));
        }
        return Ok(report);
    };
    match spec_of(stored) {
        Err(msg) => report.error = Some(msg),
        Ok(spec) => match live.iter().find(|n| n.name.as_deref() == Some(name)) {
            None => report
                .objects
                .push(object(ObjectState::Missing, Vec::new())),
            Some(n) => {
                let fields = compare(&request(name, &spec, ctx.docker.owner_labels(&owner)), n);
                if !fields.is_empty() {
                    report.objects.push(object(ObjectState::Changed, fields));
                }
            }
        },
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut options = req.options.clone().unwrap_or_default();
        options.insert(VXLAN_IDS.into(), "4097".into());
        Network {
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
}
