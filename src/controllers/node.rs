//! The Node reconciler: labels and availability of a swarm node, found by
//! hostname (or ID), as `docker node update --label-add` would set them.
//!
//! # Guarantees
//! Nodes are not created by swarmkeeper: it only sets the labels the record
//! names (other labels are left alone) and the availability when given. The
//! status remembers which labels it set, so that a label dropped from the
//! record, or the whole record, is removed from the node again.

use std::collections::BTreeMap;

use bollard::models::Node;

use super::status::{Owned, Phase, Status};
use super::{Context, Error, RecordKey};
use crate::api::Spec;
use crate::api::node::NodeSpec;
use crate::plan::drift::{ObjectDrift, ObjectState, RecordDrift};
use crate::plan::node::{compare, desired_spec, find};
use crate::runtime::Action;
use crate::store::Versioned;

/// What the status records for each label swarmkeeper set on the node.
const OWNED_LABEL: &str = "node-label";

fn previous_labels(status: Option<Versioned>) -> Vec<String> {
    status
        .and_then(|v| serde_json::from_value::<Status>(v.value).ok())
        .map(|s| {
            s.owned
                .into_iter()
                .filter(|o| o.object == OWNED_LABEL)
                .map(|o| o.name)
                .collect()
        })
        .unwrap_or_default()
}

fn spec_of(stored: Versioned) -> Result<NodeSpec, String> {
    match super::parse_record(stored.value)?.spec {
        Spec::Node(spec) => Ok(spec),
        _ => Err("record is not a Node".into()),
    }
}

/// Converges one Node record.
///
/// # Errors
/// Transient failures of etcd or dockerd (a lost update race included).
pub async fn reconcile(
    ctx: &Context,
    key: &RecordKey,
    stored: Option<Versioned>,
) -> Result<Action, Error> {
    let previous = previous_labels(ctx.store.get_status(key.kind.as_str(), &key.name).await?);
    let nodes = ctx.docker.list_nodes().await?;
    let node = find(&nodes, &key.name);
    let Some(stored) = stored else {
        if let Some(node) = node
            && !previous.is_empty()
        {
            let none = NodeSpec {
                labels: BTreeMap::new(),
                availability: None,
            };
            update(ctx, key, node, &none, &previous).await?;
        }
        return ctx.forget(key, false).await;
    };
    let generation = stored.mod_revision;
    let want = match spec_of(stored) {
        Ok(s) => s,
        Err(msg) => return ctx.fail(key, generation, msg).await,
    };
    let Some(node) = node else {
        ctx.drift.set(key, vec![missing(&key.name)]);
        let status = Status::new(Phase::Pending, generation)
            .with_message(format!("no node named {:?} in the swarm", key.name));
        ctx.write_status(key, &status).await?;
        return Ok(Action::requeue(std::time::Duration::from_secs(60)));
    };
    update(ctx, key, node, &want, &previous).await?;
    // The update sent everything that differed.
    ctx.drift.set(key, Vec::new());
    let status = Status {
        owned: want
            .labels
            .keys()
            .map(|k| Owned {
                object: OWNED_LABEL.into(),
                name: k.clone(),
                id: node.id.clone().unwrap_or_default(),
            })
            .collect(),
        ..Status::new(Phase::Ready, generation)
    };
    ctx.write_status(key, &status).await?;
    Ok(Action::requeue(ctx.resync))
}

/// Sends the node update when something differs.
async fn update(
    ctx: &Context,
    key: &RecordKey,
    node: &Node,
    want: &NodeSpec,
    previous: &[String],
) -> Result<(), Error> {
    let live = node.spec.clone().unwrap_or_default();
    if compare(&live, want, previous).is_empty() {
        return Ok(());
    }
    let version = node.version.as_ref().and_then(|v| v.index).unwrap_or(0);
    let id = node.id.clone().unwrap_or_default();
    ctx.docker
        .update_node(&id, version, desired_spec(&live, want, previous))
        .await?;
    ctx.event(key, false, "Updated", format!("updated node {}", key.name))
        .await;
    Ok(())
}

/// A node the record names that is not in the swarm.
fn missing(name: &str) -> ObjectDrift {
    ObjectDrift {
        object: "node".into(),
        name: name.into(),
        state: ObjectState::Missing,
        fields: Vec::new(),
    }
}

/// The drift of one Node record.
///
/// # Errors
/// When etcd or dockerd fails.
pub async fn drift(
    ctx: &Context,
    name: &str,
    stored: Option<Versioned>,
) -> Result<RecordDrift, Error> {
    let mut report = RecordDrift {
        kind: "Node".into(),
        name: name.into(),
        objects: Vec::new(),
        error: None,
    };
    let Some(stored) = stored else {
        return Ok(report);
    };
    let want = match spec_of(stored) {
        Ok(s) => s,
        Err(msg) => {
            report.error = Some(msg);
            return Ok(report);
        }
    };
    let previous = previous_labels(ctx.store.get_status("Node", name).await?);
    let nodes = ctx.docker.list_nodes().await?;
    match find(&nodes, name) {
        None => report.objects.push(missing(name)),
        Some(node) => {
            let fields = compare(&node.spec.clone().unwrap_or_default(), &want, &previous);
            if !fields.is_empty() {
                report.objects.push(ObjectDrift {
                    object: "node".into(),
                    name: name.into(),
                    state: ObjectState::Changed,
                    fields,
                });
            }
        }
    }
    Ok(report)
}
