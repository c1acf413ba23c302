//! The Network reconciler: a cluster-wide overlay network, named as the
//! record, that stacks use as `external`.
//!
//! # Caveats
//! Swarm networks are immutable: a network whose live settings differ from
//! the record is reported (Degraded, with its drift) rather than recreated,
//! since recreating it would detach every task using it. A network of the same
//! name that swarmkeeper does not own is never touched; the record fails.

use bollard::models::Network;

use super::status::{Owned, Phase, Status};
use super::{Context, Error, RecordKey};
use crate::api::Spec;
use crate::api::network::NetworkSpec;
use crate::docker::labels::Owner;
use crate::plan::drift::{ObjectDrift, ObjectState, RecordDrift};
use crate::plan::network::{compare, request};
use crate::runtime::Action;
use crate::store::Versioned;

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
