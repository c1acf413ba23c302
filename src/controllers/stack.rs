//! The Stack reconciler: a compose file in etcd becomes a running stack, the
//! way `docker stack deploy --prune` would deploy it.
//!
//! # Expected flow
//! Observe the objects the record owns (by owner label), convert the compose
//! file, then check each property on its own: external objects exist; stack
//! networks exist; each secret and config version exists; each service is as
//! desired; nothing owned is left that the file no longer has. Status and
//! events say what happened.
//!
//! # Guarantees
//! - A pass over a converged stack sends no write to dockerd.
//! - Objects without `swarmkeeper.managed=true` and this record's owner label
//!   are never touched.
//! - Secrets and configs are immutable in swarm: new content gets a new
//!   versioned name, services move to it, and unused versions are removed.
//!
//! # Caveats
//! Networks are immutable too; a changed stack network is reported as drift
//! but not recreated, since that would detach every running task.

use std::collections::BTreeMap;

use bollard::models::Service;
use sha2::{Digest, Sha256};

use super::secret_versions::current_secret;
use super::stack_execute::execute;
use super::status::{Condition, Owned, Phase, Status};
use super::{Context, Error, RecordKey, stack_secrets};
use crate::api::load::SecretMaterial;
use crate::api::{Kind, Spec};
use crate::docker::labels::Owner;
use crate::docker::{TaskCounts, UpdateState, service_update_state};
use crate::plan::convert::{self, SecretSource};
use crate::plan::drift::{ObjectDrift, RecordDrift};
use crate::plan::stack::{
    Blob, Desired, Drivers, Ids, Live, Plan, config_name, secret_name, service_name,
};
use crate::plan::{self};
use crate::runtime::Action;
use crate::store::Versioned;

/// The annotation that turns self-heal off: each change to the record is still
/// deployed, but drift made in the swarm afterwards is reported, not corrected.
pub const SELF_HEAL: &str = "swarmkeeper.dev/self-heal";

/// Why a record cannot be converged as it is: its status says so, it is not retried.
struct Invalid(String);

fn hash_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Parses the record and converts its compose file into swarm objects;
/// `given` holds secret values of files not applied yet (see [`preview`]).
async fn desired(
    ctx: &Context,
    name: &str,
    value: serde_json::Value,
    given: &[SecretMaterial],
) -> Result<Result<Desired, Invalid>, Error> {
    let record = match super::parse_record(value) {
        Ok(r) => r,
        Err(msg) => return Ok(Err(Invalid(msg))),
    };
    let Spec::Stack(spec) = &record.spec else {
        return Ok(Err(Invalid("record is not a Stack".into())));
    };
    let Some(compose) = spec.compose.as_ref() else {
        return Ok(Err(Invalid(
            "spec.compose is empty: apply stores composeFile inline".into(),
        )));
    };
    let objects = match convert::convert_stack(name, compose) {
        Ok(o) => o,
        Err(e) => return Ok(Err(Invalid(e.to_string()))),
    };
    let owner = Owner::new("Stack", name);
    let owner_labels: BTreeMap<String, String> =
        ctx.docker.owner_labels(&owner).into_iter().collect();
    let mut secrets = Vec::new();
    for s in &objects.secrets {
        let content = match stack_secrets::content(ctx, name, s, given).await? {
            Ok(content) => content,
            Err(message) => return Ok(Err(Invalid(message))),
        };
        // A keyed digest: the version suffix must not let anyone test guesses of the value.
        let digest = match &ctx.keyring {
            Some(k) => k.digest(content.expose()),
            None => hash_hex(content.expose()),
        };
        let drivers = Drivers {
            driver: s.driver.as_ref(),
            templating: s.templating.as_ref(),
        };
        match Blob::new(&s.name, &s.labels, &owner_labels, &digest, content, drivers) {
            Ok(blob) => secrets.push(blob),
            Err(message) => return Ok(Err(Invalid(message))),
        }
    }
    let mut configs = Vec::new();
    for c in &objects.configs {
        let SecretSource::Content(content) = &c.source else {
            return Ok(Err(Invalid(format!("config {:?} has no content", c.key))));
        };
        let drivers = Drivers {
            driver: None,
            templating: c.templating.as_ref(),
        };
        let digest = hash_hex(content.expose());
        match Blob::new(
            &c.name,
            &c.labels,
            &owner_labels,
            &digest,
            content.clone(),
            drivers,
        ) {
            Ok(blob) => configs.push(blob),
            Err(message) => return Ok(Err(Invalid(message))),
        }
    }
    let images: Vec<(String, String)> = objects
        .services
        .iter()
        .filter_map(|s| {
            let container = s.spec.task_template.as_ref()?.container_spec.as_ref()?;
            Some((s.name.clone(), container.image.clone()?))
        })
        .collect();
    let pulls = super::registry_auth::pulls(ctx, &images).await?;
    Ok(Ok(Desired {
        objects,
        secrets,
        configs,
        owner_labels,
        ignore_differences: spec.ignore_differences.clone(),
        images: pulls.images,
        auth: pulls.auth,
        waits: pulls.waits,
    }))
}

/// Looks up the external objects the compose file needs; names that are missing are returned.
async fn externals(ctx: &Context, desired: &Desired, ids: &mut Ids) -> Result<Vec<String>, Error> {
    let ext = &desired.objects.externals;
    let mut missing = Vec::new();
    for name in &ext.networks {
        match ctx.docker.inspect_network_by_name(name).await? {
            Some(n) => {
                ids.networks.insert(name.clone(), n.id.unwrap_or_default());
            }
            None => missing.push(format!("network {name:?}")),
        }
    }
    let delivered = if ext.secrets.is_empty() {
        Vec::new()
    } else {
        ctx.docker.list_secrets(None).await?
    };
    for name in &ext.secrets {
        match current_secret(ctx, name, &delivered).await? {
            Some(found) => {
                ids.secrets.insert(name.clone(), found);
            }
            None => missing.push(format!("secret {name:?}{}", deliverer(ctx, name).await?)),
        }
    }
    for name in &ext.configs {
        match ctx.docker.config_by_name(name).await? {
            Some(c) => {
                ids.configs
                    .insert(name.clone(), (name.clone(), c.id.unwrap_or_default()));
            }
            None => missing.push(format!("config {name:?}")),
        }
    }
    Ok(missing)
}

/// The live objects `owner` has in the swarm: from the pass's shared listing
/// when it is fresh enough for this reconcile, else listed now.
async fn observe(ctx: &Context, owner: &Owner) -> Result<Live, Error> {
    Ok(ctx.listings.observe(&ctx.docker, owner).await?)
}

/// What a pass found, and the plan that converges it.
struct Observed {
    desired: Desired,
    ids: Ids,
    plan: Plan,
}

/// Looks up the external objects `desired` names and plans the convergence
/// of `live`; `held` says which services keep the spec swarm rolled back to.
async fn plan_for(
    ctx: &Context,
    desired: Desired,
    live: &Live,
    held: impl Fn(&Service) -> bool,
) -> Result<Observed, Error> {
    let mut ids = Ids::default();
    let mut missing = externals(ctx, &desired, &mut ids).await?;
    missing.extend(desired.waits.iter().cloned());
    ids.add_known(&desired, live);
    let plan = plan::stack::plan(&desired, live, &ids, missing, held);
    Ok(Observed { desired, ids, plan })
}

/// Which record will deliver the secret `name`, as " from Kind/name", when one says it does.
pub(super) async fn deliverer(ctx: &Context, name: &str) -> Result<String, Error> {
    let (users, _) = ctx
        .store
        .list_records(Some(Kind::DatabaseUser.as_str()))
        .await?;
    let delivers = |value: &serde_json::Value| {
        let spec = value.get("spec");
        let password = spec.and_then(|s| s.get("passwordSecret"));
        let connection = spec.and_then(|s| s.pointer("/connectionSecret/name"));
        [password, connection]
            .into_iter()
            .any(|n| n.and_then(serde_json::Value::as_str) == Some(name))
    };
    Ok(users
        .iter()
        .find(|r| delivers(&r.versioned.value))
        .map(|r| format!(" from DatabaseUser/{}", r.name))
        .unwrap_or_default())
}

/// Whether self-heal is on for a stored record (it is unless annotated off).
fn self_heals(value: &serde_json::Value) -> bool {
    value
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(SELF_HEAL))
        .and_then(|v| v.as_str())
        != Some("false")
}

/// Converges one Stack record: observe, plan, execute, status.
///
/// # Errors
/// Failures of etcd or dockerd; a permanent one makes the record `Failed`.
pub async fn reconcile(
    ctx: &Context,
    key: &RecordKey,
    stored: Option<Versioned>,
) -> Result<Action, Error> {
    let owner = Owner::new("Stack", &key.name);
    let live = observe(ctx, &owner).await?;
    let Some(stored) = stored else {
        // The record is gone: everything it owned is an orphan.
        let mut o = plan_for(ctx, Desired::nothing(), &live, |_| false).await?;
        let lingering = execute(ctx, key, &o.plan, &o.desired, &live, &mut o.ids)
            .await?
            .lingering;
        if !lingering {
            let values = crate::api::load::stack_secret_prefix(&key.name);
            ctx.store.delete_secrets_with_prefix(&values).await?;
        }
        return ctx.forget(key, lingering).await;
    };
    let generation = stored.mod_revision;
    let self_heal = self_heals(&stored.value);
    let previous = ctx.read_status(key).await?;
    let applied = applied(previous.as_ref(), generation);
    // Once this generation was applied, an update swarm rolled back is not sent
    // again: it would only fail the same way. It stays Degraded until the record changes.
    let held =
        |s: &Service| applied && service_update_state(s).is_some_and(UpdateState::is_degraded);
    let desired = match desired(ctx, &key.name, stored.value, &[]).await? {
        Ok(desired) => desired,
        Err(Invalid(msg)) => return ctx.fail(key, generation, msg).await,
    };
    let mut o = plan_for(ctx, desired, &live, held).await?;
    if !o.plan.waits.is_empty() {
        return wait(ctx, key, generation, &o.plan, &live).await;
    }
    let report_only = !self_heal && applied;
    let (status, remaining) = if report_only {
        let drift = o.plan.drift();
        let mut status = status_of(ctx, &o.desired, &live, generation, drift.clone()).await?;
        if !drift.is_empty() {
            status.phase = Phase::Degraded;
            status.message = "drift found; self-heal is off for this record".into();
        }
        (status, drift)
    } else {
        let executed = execute(ctx, key, &o.plan, &o.desired, &live, &mut o.ids).await?;
        // Only what this pass wrote needs reading back; a pass that wrote
        // nothing reports on what it observed.
        let listed;
        let after = if executed.wrote {
            listed = ctx.docker.list_owned(Some(&owner)).await?;
            &listed
        } else {
            &live
        };
        let lingering = executed.lingering;
        // What was healed is in the events; the status keeps what is left, so a
        // pass after the converging one finds the same status and writes nothing.
        let remaining = plan::stack::plan(&o.desired, after, &o.ids, Vec::new(), held).drift();
        let mut status = status_of(ctx, &o.desired, after, generation, remaining.clone()).await?;
        if lingering && status.phase == Phase::Ready {
            // Not converged while objects the file dropped are still there.
            status.phase = Phase::Progressing;
            status.message = "waiting to remove objects still in use".into();
        }
        (status, remaining)
    };
    ctx.drift.set(key, remaining);
    // Task states raise no Docker event: a stack on its way is looked at again soon.
    let again = match status.phase {
        Phase::Ready => ctx.resync,
        Phase::Degraded if report_only => ctx.resync,
        _ => std::time::Duration::from_secs(2),
    };
    ctx.write_status_over(key, &status, previous.as_ref())
        .await?;
    Ok(Action::requeue(again))
}

/// A stack whose external objects are missing waits, `Pending`, and says for
/// what: once per change of what is missing, not on every retry.
async fn wait(
    ctx: &Context,
    key: &RecordKey,
    generation: i64,
    plan: &Plan,
    live: &Live,
) -> Result<Action, Error> {
    let message = format!("waiting for external {}", plan.waits.join(", "));
    let status = Status {
        owned: owned(live),
        ..Status::new(Phase::Pending, generation).with_message(message.clone())
    };
    let previous = ctx.read_status(key).await?;
    ctx.drift.set_error(key, plan.drift(), &message);
    if previous.is_none_or(|p| p.message != message || p.observed_revision != generation) {
        ctx.event(key, true, "Waiting", message).await;
    }
    ctx.write_status(key, &status).await?;
    Ok(Action::requeue(std::time::Duration::from_secs(10)))
}

/// Whether a converging pass has already finished for this generation of the record.
///
/// With self-heal off a record is still deployed, once per change to it: only
/// what happens to the swarm afterwards is reported rather than corrected.
fn applied(previous: Option<&Status>, generation: i64) -> bool {
    previous.is_some_and(|s| {
        s.observed_revision == generation
            && matches!(s.phase, Phase::Progressing | Phase::Ready | Phase::Degraded)
    })
}

fn owned(live: &Live) -> Vec<Owned> {
    let mut out = Vec::new();
    let mut push = |object: &str, name: Option<&str>, id: &Option<String>| {
        out.push(Owned {
            object: object.to_string(),
            name: name.unwrap_or_default().to_string(),
            id: id.clone().unwrap_or_default(),
        });
    };
    for n in &live.networks {
        push("network", n.name.as_deref(), &n.id);
    }
    for s in &live.secrets {
        push("secret", secret_name(s), &s.id);
    }
    for c in &live.configs {
        push("config", config_name(c), &c.id);
    }
    for s in &live.services {
        push("service", service_name(s), &s.id);
    }
    out
}

/// Phase and per-service conditions from the live services after this pass.
///
/// A service whose tasks do not all run says why, with its last task error.
async fn status_of(
    ctx: &Context,
    desired: &Desired,
    after: &Live,
    generation: i64,
    drift: Vec<ObjectDrift>,
) -> Result<Status, Error> {
    let mut conditions = Vec::new();
    let mut phase = Phase::Ready;
    for svc in &desired.objects.services {
        let live = after
            .services
            .iter()
            .find(|s| service_name(s) == Some(&svc.name));
        let (ready, message) = match live {
            None => (false, "not created".to_string()),
            Some(s) => {
                let counts = TaskCounts::of(s).unwrap_or_default();
                match service_update_state(s) {
                    Some(state) if state.is_degraded() => {
                        phase = Phase::Degraded;
                        (
                            false,
                            format!(
                                "update {state:?}; {}/{} tasks running",
                                counts.running, counts.desired
                            ),
                        )
                    }
                    _ => (
                        counts.is_ready(),
                        format!("{}/{} tasks running", counts.running, counts.desired),
                    ),
                }
            }
        };
        if !ready && phase == Phase::Ready {
            phase = Phase::Progressing;
        }
        let mut message = message;
        if let Some(id) = live.filter(|_| !ready).and_then(|s| s.id.as_deref())
            && let Some(err) = ctx.docker.last_task_error(id).await?
        {
            message = format!("{message}; last task error: {err}");
        }
        conditions.push(Condition {
            type_: format!("service/{}", svc.name),
            ready,
            message,
        });
    }
    Ok(Status {
        conditions,
        owned: owned(after),
        drift,
        ..Status::new(phase, generation)
    })
}

/// The drift of one stack record, for `swarmkeeper drift`: the plan of a
/// pass now, rendered.
///
/// # Errors
/// When etcd or dockerd fails.
pub async fn drift(
    ctx: &Context,
    name: &str,
    stored: Option<Versioned>,
) -> Result<RecordDrift, Error> {
    let live = observe(ctx, &Owner::new("Stack", name)).await?;
    let mut report = RecordDrift {
        kind: "Stack".into(),
        name: name.into(),
        objects: Vec::new(),
        error: None,
    };
    let desired = match stored {
        None => Desired::nothing(),
        Some(stored) => match desired(ctx, name, stored.value, &[]).await? {
            Ok(desired) => desired,
            Err(Invalid(msg)) => {
                report.error = Some(msg);
                return Ok(report);
            }
        },
    };
    let o = plan_for(ctx, desired, &live, |_| false).await?;
    if let Some(missing) = o.plan.waits.last() {
        report.error = Some(format!("external {missing} is missing"));
    }
    report.objects = o.plan.drift();
    Ok(report)
}

/// What a pass would do with a record, without doing it.
pub struct Preview {
    pub plan: Plan,
    /// Self-heal is off and this generation was applied: the plan is only reported.
    pub report_only: bool,
}

/// The plan a pass would execute if `value` were the record `key` (a record
/// in files not applied yet: `diff` and `apply --dry-run` show it), against
/// the live swarm now; `given` holds the secret values the files carry, and
/// `generation` is the stored record's when the files leave it as it is (a
/// pass then holds updates swarm rolled back and honours self-heal, as
/// [`reconcile`] does). Reads only: nothing is written to etcd or dockerd.
///
/// # Errors
/// The outer error is etcd or dockerd failing; the inner one says why the
/// record cannot converge as it is.
pub async fn preview(
    ctx: &Context,
    key: &RecordKey,
    value: serde_json::Value,
    given: &[SecretMaterial],
    generation: Option<i64>,
) -> Result<Result<Preview, String>, Error> {
    let live = observe(ctx, &Owner::new("Stack", &key.name)).await?;
    let applied = match generation {
        Some(generation) => applied(ctx.read_status(key).await?.as_ref(), generation),
        None => false,
    };
    let report_only = applied && !self_heals(&value);
    let held =
        |s: &Service| applied && service_update_state(s).is_some_and(UpdateState::is_degraded);
    let desired = match desired(ctx, &key.name, value, given).await? {
        Ok(desired) => desired,
        Err(Invalid(msg)) => return Ok(Err(msg)),
    };
    let plan = plan_for(ctx, desired, &live, held).await?.plan;
    Ok(Ok(Preview { plan, report_only }))
}
