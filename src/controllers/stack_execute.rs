//! Executing a Stack's [`Plan`]: each action becomes one dockerd call and one
//! event, in the plan's order.
//!
//! # Caveats
//! - A service's spec is computed again when its step runs, with the IDs of
//!   the networks, secrets and configs created by earlier steps of the pass.
//! - An update is sent against the service as it is by then: when another
//!   writer got there first, dockerd's version check makes the Docker layer
//!   read it again, and the update is recomputed (or dropped) against it.
//! - Swarm refuses to remove a secret, config or network still in use (a task
//!   of a removed service may linger): that is not an error, the object stays
//!   for the next pass, and the pass says so.

use super::{Context, Error, RecordKey};
use crate::docker::ServiceUpdate;
use crate::plan::stack::{
    Blob, Change, Desired, Ids, Live, Object, Plan, Step, compare_service, keep_pinned_digest,
    service_name,
};

/// Runs every action of `plan`; whether some removed object is still in use.
///
/// # Errors
/// When dockerd fails or refuses, or etcd fails to take an event.
pub(super) async fn execute(
    ctx: &Context,
    key: &RecordKey,
    plan: &Plan,
    desired: &Desired,
    live: &Live,
    ids: &mut Ids,
) -> Result<bool, Error> {
    let mut lingering = false;
    for step in plan.actions() {
        let done = match &step.change {
            Change::Create => create(ctx, step, desired, ids).await?,
            Change::Update(_) => update(ctx, step, desired, live, ids).await?,
            Change::Remove { id } => match remove(ctx, step.object, id).await {
                Ok(()) => Some("Removed"),
                Err(err)
                    if step.object != Object::Service
                        && (err.is_transient() || err.is_in_use()) =>
                {
                    tracing::debug!(record = %key, object = step.object.as_str(), name = %step.name, %err, "not removable yet");
                    lingering = true;
                    None
                }
                Err(err) => return Err(err.into()),
            },
            Change::Keep { .. } => None,
        };
        if let Some(reason) = done {
            let what = reason.to_lowercase();
            let message = format!("{what} {} {}", step.object.as_str(), step.name);
            ctx.event(key, false, reason, message).await;
        }
    }
    Ok(lingering)
}

/// Creates the object of `step`, recording its ID for the steps after it.
async fn create(
    ctx: &Context,
    step: &Step,
    desired: &Desired,
    ids: &mut Ids,
) -> Result<Option<&'static str>, Error> {
    let docker = &ctx.docker;
    match step.object {
        Object::Network => {
            let Some(net) = desired
                .objects
                .networks
                .iter()
                .find(|n| n.name == step.name)
            else {
                return Ok(None);
            };
            // The same request the plan compares with, so a fresh network is not drift.
            let id = docker.create_network(desired.network_request(net)).await?;
            ids.networks.insert(net.name.clone(), id);
        }
        Object::Secret => {
            let Some(blob) = version(&desired.secrets, &step.name) else {
                return Ok(None);
            };
            let id = docker.create_secret(blob.secret_spec()).await?;
            ids.secrets
                .insert(blob.logical.clone(), (blob.versioned.clone(), id));
        }
        Object::Config => {
            let Some(blob) = version(&desired.configs, &step.name) else {
                return Ok(None);
            };
            let id = docker.create_config(blob.config_spec()).await?;
            ids.configs
                .insert(blob.logical.clone(), (blob.versioned.clone(), id));
        }
        Object::Service => {
            let Some(svc) = desired
                .objects
                .services
                .iter()
                .find(|s| s.name == step.name)
            else {
                return Ok(None);
            };
            docker
                .create_service(desired.service_spec(svc, ids), None)
                .await?;
        }
    }
    Ok(Some("Created"))
}

fn version<'a>(blobs: &'a [Blob], versioned: &str) -> Option<&'a Blob> {
    blobs.iter().find(|b| b.versioned == versioned)
}

/// Updates the service of `step` to its spec with every ID known by now.
async fn update(
    ctx: &Context,
    step: &Step,
    desired: &Desired,
    live: &Live,
    ids: &Ids,
) -> Result<Option<&'static str>, Error> {
    let svc = desired
        .objects
        .services
        .iter()
        .find(|s| s.name == step.name);
    let current = live
        .services
        .iter()
        .find(|s| service_name(s) == Some(&step.name));
    let (Some(svc), Some(current)) = (svc, current) else {
        return Ok(None);
    };
    let spec = desired.service_spec_over(svc, ids, current);
    let update = ctx
        .docker
        .update_service(current, None, |fresh| {
            let live_spec = fresh.spec.clone().unwrap_or_default();
            (!compare_service(&spec, fresh).is_empty())
                .then(|| keep_pinned_digest(&spec, &live_spec))
        })
        .await?;
    Ok((update == ServiceUpdate::Updated).then_some("Updated"))
}

async fn remove(ctx: &Context, object: Object, id: &str) -> Result<(), crate::docker::DockerError> {
    match object {
        Object::Service => ctx.docker.remove_service(id).await,
        Object::Secret => ctx.docker.remove_secret(id).await,
        Object::Config => ctx.docker.remove_config(id).await,
        Object::Network => ctx.docker.remove_network(id).await,
    }
}
