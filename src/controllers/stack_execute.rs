//! Executing a Stack's [`Plan`]: each action becomes one dockerd call and one
//! event, a phase at a time, the calls of a phase [`WRITES_AT_ONCE`] at a time.
//!
//! # Order
//! Networks, then secret and config versions (services refer to them by
//! ID), then service creates and updates; then removals of services, and
//! only after them of the secrets, configs and networks they used. Within a
//! phase no call depends on another, so they are sent together.
//!
//! # Guarantees
//! - No Docker write waits on etcd: the events of the pass are collected and
//!   written after its last Docker call, in a few batched transactions.
//! - A failed call stops the pass after its phase, not in the middle of it:
//!   the other calls of the phase finish, their events are written, and the
//!   first failure (in plan order) is the pass's error; any further failure
//!   of that phase is a warning event of its own.
//!
//! # Caveats
//! - A service's spec is computed again when its step runs, with the IDs of
//!   the networks, secrets and configs created by earlier phases of the pass.
//! - An update is sent against the service as it is by then: when another
//!   writer got there first, dockerd's version check makes the Docker layer
//!   read it again, and the update is recomputed (or dropped) against it.
//! - Swarm refuses to remove a secret, config or network still in use (a task
//!   of a removed service may linger): that is not an error, the object stays
//!   for the next pass, and the pass says so.

use futures::{StreamExt, stream};

use super::{Context, Error, RecordKey, happened};
use crate::docker::ServiceUpdate;
use crate::plan::stack::{
    Blob, Change, Desired, Ids, Live, Object, Plan, Step, compare_service, keep_pinned_digest,
    service_name,
};
use crate::store::Event;

/// Docker calls of one phase in flight at once: enough to hide dockerd's
/// latency per call, few enough not to swamp a manager's raft log.
const WRITES_AT_ONCE: usize = 8;

/// What a pass did.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Executed {
    /// Some removed object is still in use and stays for the next pass.
    pub lingering: bool,
    /// Some call was sent: the live state is no longer what was observed.
    pub wrote: bool,
}

/// The phase a step runs in; `None` for a step that changes nothing.
fn phase(step: &Step) -> Option<u8> {
    Some(match (&step.change, step.object) {
        (Change::Keep { .. }, _) => return None,
        (Change::Remove { .. }, Object::Service) => 3,
        (Change::Remove { .. }, _) => 4,
        (_, Object::Network) => 0,
        (_, Object::Secret | Object::Config) => 1,
        (_, Object::Service) => 2,
    })
}

/// An object created by a step, for the steps of later phases.
enum Made {
    Network {
        name: String,
        id: String,
    },
    Secret {
        logical: String,
        versioned: String,
        id: String,
    },
    Config {
        logical: String,
        versioned: String,
        id: String,
    },
}

/// What one step did: its event's reason, what it made, whether its object lingers.
#[derive(Default)]
struct Outcome {
    reason: Option<&'static str>,
    made: Option<Made>,
    lingering: bool,
}

/// What every step of one pass reads.
#[derive(Clone, Copy)]
struct Pass<'a> {
    ctx: &'a Context,
    key: &'a RecordKey,
    desired: &'a Desired,
    live: &'a Live,
}

/// Runs every action of `plan`, phase by phase; what it did.
///
/// # Errors
/// When dockerd fails or refuses: the first failure of the first phase
/// that had one. The events of every call that was sent are written first.
pub(super) async fn execute(
    ctx: &Context,
    key: &RecordKey,
    plan: &Plan,
    desired: &Desired,
    live: &Live,
    ids: &mut Ids,
) -> Result<Executed, Error> {
    let pass = Pass {
        ctx,
        key,
        desired,
        live,
    };
    let mut events = Vec::new();
    let outcome = pass.run(plan, ids, &mut events).await;
    ctx.write_events(key, events).await;
    outcome
}

impl Pass<'_> {
    /// Runs the phases in order, each only once the one before succeeded.
    async fn run(
        self,
        plan: &Plan,
        ids: &mut Ids,
        events: &mut Vec<Event>,
    ) -> Result<Executed, Error> {
        let mut executed = Executed::default();
        for current in 0..=4 {
            let steps: Vec<&Step> = plan
                .actions()
                .filter(|s| phase(s) == Some(current))
                .collect();
            if steps.is_empty() {
                continue;
            }
            executed.wrote = true;
            let known: &Ids = ids;
            // Built as a list first: a closure returning the futures would not be
            // general enough over the steps' lifetimes for a Send reconcile.
            let calls: Vec<_> = steps
                .into_iter()
                .map(|step| self.run_step(step, known))
                .collect();
            let outcomes: Vec<(&Step, Result<Outcome, Error>)> =
                stream::iter(calls).buffered(WRITES_AT_ONCE).collect().await;
            let mut failed = None;
            for (step, outcome) in outcomes {
                match outcome {
                    Ok(outcome) => {
                        executed.lingering |= outcome.lingering;
                        if let Some(made) = outcome.made {
                            remember(ids, made);
                        }
                        if let Some(reason) = outcome.reason {
                            let what = reason.to_lowercase();
                            let message = format!("{what} {} {}", step.object.as_str(), step.name);
                            events.push(happened(self.key, false, reason, message));
                        }
                    }
                    Err(err) if failed.is_none() => failed = Some(err),
                    Err(err) => {
                        // The pass reports only its first error; this one is an event of its own.
                        let reason = if err.is_transient() {
                            "Error"
                        } else {
                            "Failed"
                        };
                        events.push(happened(self.key, true, reason, err.to_string()));
                    }
                }
            }
            if let Some(err) = failed {
                return Err(err);
            }
        }
        Ok(executed)
    }

    /// Sends the call of one step; the step comes back with what it did.
    async fn run_step<'s>(self, step: &'s Step, ids: &Ids) -> (&'s Step, Result<Outcome, Error>) {
        (step, self.call(step, ids).await)
    }

    async fn call(self, step: &Step, ids: &Ids) -> Result<Outcome, Error> {
        let Pass {
            ctx,
            key,
            desired,
            live,
        } = self;
        match &step.change {
            Change::Create => create(ctx, step, desired, ids).await,
            Change::Update(_) => Ok(Outcome {
                reason: update(ctx, step, desired, live, ids).await?,
                ..Outcome::default()
            }),
            Change::Remove { id } => match remove(ctx, step.object, id).await {
                Ok(()) => Ok(Outcome {
                    reason: Some("Removed"),
                    ..Outcome::default()
                }),
                Err(err)
                    if step.object != Object::Service
                        && (err.is_transient() || err.is_in_use()) =>
                {
                    tracing::debug!(record = %key, object = step.object.as_str(), name = %step.name, %err, "not removable yet");
                    Ok(Outcome {
                        lingering: true,
                        ..Outcome::default()
                    })
                }
                Err(err) => Err(err.into()),
            },
            Change::Keep { .. } => Ok(Outcome::default()),
        }
    }
}

/// Records the ID of an object made by an earlier phase.
fn remember(ids: &mut Ids, made: Made) {
    match made {
        Made::Network { name, id } => {
            ids.networks.insert(name, id);
        }
        Made::Secret {
            logical,
            versioned,
            id,
        } => {
            ids.secrets.insert(logical, (versioned, id));
        }
        Made::Config {
            logical,
            versioned,
            id,
        } => {
            ids.configs.insert(logical, (versioned, id));
        }
    }
}

/// Creates the object of `step`; its ID is for the phases after it.
async fn create(
    ctx: &Context,
    step: &Step,
    desired: &Desired,
    ids: &Ids,
) -> Result<Outcome, Error> {
    let docker = &ctx.docker;
    let made = match step.object {
        Object::Network => {
            let Some(net) = desired
                .objects
                .networks
                .iter()
                .find(|n| n.name == step.name)
            else {
                return Ok(Outcome::default());
            };
            // The same request the plan compares with, so a fresh network is not drift.
            let id = docker.create_network(desired.network_request(net)).await?;
            Some(Made::Network {
                name: net.name.clone(),
                id,
            })
        }
        Object::Secret => {
            let Some(blob) = version(&desired.secrets, &step.name) else {
                return Ok(Outcome::default());
            };
            let id = docker.create_secret(blob.secret_spec()).await?;
            Some(Made::Secret {
                logical: blob.logical.clone(),
                versioned: blob.versioned.clone(),
                id,
            })
        }
        Object::Config => {
            let Some(blob) = version(&desired.configs, &step.name) else {
                return Ok(Outcome::default());
            };
            let id = docker.create_config(blob.config_spec()).await?;
            Some(Made::Config {
                logical: blob.logical.clone(),
                versioned: blob.versioned.clone(),
                id,
            })
        }
        Object::Service => {
            let Some(svc) = desired
                .objects
                .services
                .iter()
                .find(|s| s.name == step.name)
            else {
                return Ok(Outcome::default());
            };
            let auth = desired.auth.get(&svc.name).map(|a| &a.0);
            docker
                .create_service(desired.service_spec(svc, ids), auth)
                .await?;
            None
        }
    };
    Ok(Outcome {
        reason: Some("Created"),
        made,
        lingering: false,
    })
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
    let auth = desired.auth.get(&svc.name).map(|a| &a.0);
    let update = ctx
        .docker
        .update_service(current, auth, |fresh| {
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
