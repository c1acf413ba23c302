//! The Registry reconciler: a private registry run as a swarm service owned
//! by the record (when `deploy` is set), and the check that it answers.
//!
//! # Expected flow
//! Read the users' passwords and the TLS certificate and key (Secret
//! records); deliver the versions the service mounts (the config file as a
//! swarm config, the htpasswd file and the TLS pair as swarm secrets, each
//! named after a digest of what it is made from); converge the service;
//! remove versions no longer used. Then ask `GET /v2/` with the record's
//! credentials and list the services that pull from the registry.
//!
//! # Guarantees
//! - Passwords reach the swarm only as bcrypt hashes (cost
//!   [`BCRYPT_COST`](super::registry_mounts::BCRYPT_COST)) inside the htpasswd secret; logs, events, status and
//!   drift name versions, never values.
//! - A changed user or password makes a new htpasswd version, and the
//!   service rolls to it; the old version goes once unused.
//! - A pass over a converged registry sends no write to dockerd.
//!
//! # Caveats
//! The data volume is kept when the record is deleted: it holds the images.
//! Stacks that pull from the registry are in [`super::registry_auth`].

use std::time::Duration;

use bollard::models::{Secret, Service};

use super::registry_auth::api_for;
use super::registry_mounts::{Inputs, config_version, deliver_mounts, inputs, users_digest, value};
use super::secret_versions::remove_versions;
use super::status::{Condition, Owned, Phase, Status};
use super::{Context, Error, RecordKey};
use crate::api::Spec;
use crate::api::registry::{RegistryDeploy, RegistrySpec};
use crate::distribution::Basic;
use crate::docker::labels::Owner;
use crate::docker::{OwnedObjects, ServiceUpdate, TaskCounts};
use crate::plan::drift::{ObjectDrift, ObjectState, RecordDrift};
use crate::plan::registry::{
    Mounted, Ref, ServiceChange, drift as service_drift, object_base, plan_service, registry_of,
    service_name, service_spec,
};
use crate::plan::stack::{compare_service, config_name, secret_name, versioned_name};
use crate::runtime::Action;
use crate::store::Versioned;

fn spec_of(stored: Versioned) -> Result<RegistrySpec, String> {
    match super::parse_record(stored.value)?.spec {
        Spec::Registry(spec) => Ok(spec),
        _ => Err("record is not a Registry".into()),
    }
}

/// Removes the record's objects that `keep` does not name, services first;
/// those still in use stay for a later pass, and are returned as orphans.
async fn remove_others(
    ctx: &Context,
    key: &RecordKey,
    live: &OwnedObjects,
    keep: &[&str],
) -> Result<Vec<ObjectDrift>, Error> {
    let mut lingering = Vec::new();
    for s in &live.services {
        let name = s.spec.as_ref().and_then(|s| s.name.as_deref());
        if name.is_some_and(|n| !keep.contains(&n)) {
            ctx.docker
                .remove_service(s.id.as_deref().unwrap_or_default())
                .await?;
            let message = format!("removed service {}", name.unwrap_or_default());
            ctx.event(key, false, "Removed", message).await;
        }
    }
    for c in &live.configs {
        let name = config_name(c).unwrap_or_default();
        if keep.contains(&name) {
            continue;
        }
        match ctx
            .docker
            .remove_config(c.id.as_deref().unwrap_or_default())
            .await
        {
            Ok(()) => {
                ctx.event(key, false, "Removed", format!("removed config {name}"))
                    .await;
            }
            Err(err) if err.is_in_use() || err.is_transient() => lingering.push(ObjectDrift {
                object: "config".into(),
                name: name.to_owned(),
                state: ObjectState::Orphan,
                fields: Vec::new(),
            }),
            Err(err) => return Err(err.into()),
        }
    }
    let secrets: Vec<&Secret> = live
        .secrets
        .iter()
        .filter(|s| !keep.contains(&secret_name(s).unwrap_or_default()))
        .collect();
    lingering.extend(remove_versions(ctx, key, &secrets).await?);
    Ok(lingering)
}

/// Converges the registry's service to `desired`; what was done, if anything.
async fn converge_service(
    ctx: &Context,
    key: &RecordKey,
    desired: &bollard::models::ServiceSpec,
    current: Option<&Service>,
) -> Result<Option<String>, Error> {
    let name = desired.name.clone().unwrap_or_default();
    let message = match plan_service(desired, current) {
        ServiceChange::Unchanged => return Ok(None),
        ServiceChange::Create => {
            ctx.docker.create_service(desired.clone(), None).await?;
            format!("created service {name}")
        }
        ServiceChange::Update(fields) => {
            let Some(current) = current else {
                return Ok(None);
            };
            let update = ctx
                .docker
                .update_service(current, None, |fresh| {
                    (!compare_service(desired, fresh).is_empty()).then(|| desired.clone())
                })
                .await?;
            if update == ServiceUpdate::Unchanged {
                return Ok(None);
            }
            let paths: Vec<&str> = fields.iter().map(|f| f.path.as_str()).collect();
            format!("updated service {name} ({})", paths.join(", "))
        }
    };
    let reason = if current.is_some() {
        "Updated"
    } else {
        "Created"
    };
    ctx.event(key, false, reason, message.clone()).await;
    Ok(Some(message))
}

/// Runs the registry: its mounts, its service, and the removal of what it no
/// longer uses. The condition of its service, and whether the pass is still
/// on its way (a change sent, tasks not running, old versions in use).
async fn run_registry(
    ctx: &Context,
    key: &RecordKey,
    deploy: &RegistryDeploy,
    inputs: Inputs,
    live: &OwnedObjects,
    status: &mut Status,
) -> Result<Option<String>, Error> {
    let owner = Owner::new("Registry", &key.name);
    let (mounted, owned, mut lingering) =
        deliver_mounts(ctx, key, &owner, deploy, inputs, live).await?;
    let name = service_name(&key.name);
    let labels = ctx.docker.owner_labels(&owner).into_iter().collect();
    let desired = service_spec(&key.name, deploy, &mounted, &labels);
    let current = live
        .services
        .iter()
        .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(name.as_str()));
    let changed = converge_service(ctx, key, &desired, current).await?;
    // What the delivery just failed to remove (still in use) is not tried twice.
    let mut keep: Vec<&str> = owned.iter().map(|o| o.name.as_str()).collect();
    keep.extend(lingering.iter().map(|o| o.name.as_str()));
    keep.push(&name);
    let others = remove_others(ctx, key, live, &keep).await?;
    lingering.extend(others);
    status.owned.extend(owned);
    let (ready, mut message) = match current.and_then(TaskCounts::of) {
        Some(counts) if changed.is_none() => (
            counts.is_ready(),
            format!("{}/{} tasks running", counts.running, counts.desired),
        ),
        _ => (false, changed.clone().unwrap_or_default()),
    };
    if let Some(id) = current.filter(|_| !ready).and_then(|s| s.id.as_deref())
        && let Some(err) = ctx.docker.last_task_error(id).await?
    {
        message = format!("{message}; last task error: {err}");
    }
    if let Some(s) = current {
        status.owned.push(Owned {
            object: "service".into(),
            name: name.clone(),
            id: s.id.clone().unwrap_or_default(),
        });
    }
    status.conditions.push(Condition {
        type_: format!("service/{name}"),
        ready,
        message: message.clone(),
    });
    if !lingering.is_empty() {
        ctx.drift.set(key, lingering);
        return Ok(Some("older versions are still used by the service".into()));
    }
    ctx.drift.set(key, Vec::new());
    Ok((!ready).then_some(message))
}

/// The services of this instance that pull from `address`, as conditions.
async fn pullers(ctx: &Context, record: &str, address: &str) -> Result<Vec<Condition>, Error> {
    let own = service_name(record);
    let mut out: Vec<Condition> = ctx
        .docker
        .list_services(None)
        .await?
        .iter()
        .filter_map(|s| {
            let spec = s.spec.as_ref()?;
            let name = spec.name.as_deref()?;
            let image = spec
                .task_template
                .as_ref()?
                .container_spec
                .as_ref()?
                .image
                .as_deref()?;
            (registry_of(image) == Some(address) && name != own).then(|| {
                let counts = TaskCounts::of(s).unwrap_or_default();
                Condition {
                    type_: format!("pull/{name}"),
                    ready: counts.is_ready(),
                    message: format!(
                        "{image}: {}/{} tasks running",
                        counts.running, counts.desired
                    ),
                }
            })
        })
        .collect();
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    Ok(out)
}

/// `GET /v2/` with the record's credentials: `Ok(Err(why))` when it does not answer 200.
async fn check(ctx: &Context, spec: &RegistrySpec) -> Result<Result<(), String>, Error> {
    let password = match &spec.credentials {
        None => None,
        Some(c) => match value(ctx, &c.password_secret, "the password of the credentials").await? {
            Ok(password) => Some((c.username.as_str(), password)),
            Err(waiting) => return Ok(Err(waiting)),
        },
    };
    let basic = password
        .as_ref()
        .map(|(username, password)| Basic { username, password });
    let answer = match api_for(ctx, spec).await? {
        Ok(api) => api.check(basic.as_ref()).await,
        Err(err) => Err(err),
    };
    Ok(answer.map_err(|err| format!("GET /v2/ failed: {err}")))
}

/// Converges one Registry record.
///
/// # Errors
/// Failures of etcd or dockerd; a permanent one makes the record `Failed`.
pub async fn reconcile(
    ctx: &Context,
    key: &RecordKey,
    stored: Option<Versioned>,
) -> Result<Action, Error> {
    let owner = Owner::new("Registry", &key.name);
    let live = ctx.docker.list_owned(Some(&owner)).await?;
    let Some(stored) = stored else {
        let lingering = remove_others(ctx, key, &live, &[]).await?;
        return ctx.forget(key, !lingering.is_empty()).await;
    };
    let generation = stored.mod_revision;
    let spec = match spec_of(stored) {
        Ok(spec) => spec,
        Err(msg) => return ctx.fail(key, generation, msg).await,
    };
    let mut status = Status::new(Phase::Ready, generation);
    let mut progressing = None;
    match &spec.deploy {
        Some(deploy) => match inputs(ctx, deploy).await? {
            Ok(inputs) => {
                progressing = run_registry(ctx, key, deploy, inputs, &live, &mut status).await?;
            }
            Err(waiting) => {
                let status = Status::new(Phase::Pending, generation).with_message(waiting);
                ctx.write_status(key, &status).await?;
                return Ok(Action::requeue(Duration::from_secs(10)));
            }
        },
        None => {
            let lingering = remove_others(ctx, key, &live, &[]).await?;
            let on_its_way = !lingering.is_empty();
            ctx.drift.set(key, lingering);
            if on_its_way {
                progressing = Some("removing the registry it no longer runs".into());
            }
        }
    }
    status
        .conditions
        .extend(pullers(ctx, &key.name, &spec.address).await?);
    let checked = check(ctx, &spec).await?;
    // A registry that does not answer is Degraded, even on its way up: that
    // is what its pullers see. A pass on its way is looked at again soon.
    let again = match (checked, progressing) {
        (Err(why), progressing) => {
            status.phase = Phase::Degraded;
            status.message = match &progressing {
                Some(on_its_way) => format!("{why}; {on_its_way}"),
                None => why,
            };
            let soon = progressing.is_some();
            Duration::from_secs(if soon { 2 } else { 10 })
        }
        (Ok(()), Some(message)) => {
            status.phase = Phase::Progressing;
            status.message = message;
            Duration::from_secs(2)
        }
        (Ok(()), None) => ctx.resync,
    };
    let previous = ctx.read_status(key).await?;
    if status.phase == Phase::Degraded && previous.is_none_or(|p| p.phase != Phase::Degraded) {
        ctx.event(key, true, "Degraded", status.message.clone())
            .await;
    }
    ctx.write_status(key, &status).await?;
    Ok(Action::requeue(again))
}

/// The drift of one Registry record, for `swarmkeeper drift`: its service
/// against the one a pass would make, and the versions a pass would create.
///
/// # Errors
/// When etcd or dockerd fails.
pub async fn drift(
    ctx: &Context,
    name: &str,
    stored: Option<Versioned>,
) -> Result<RecordDrift, Error> {
    let owner = Owner::new("Registry", name);
    let live = ctx.docker.list_owned(Some(&owner)).await?;
    let mut report = RecordDrift {
        kind: "Registry".into(),
        name: name.into(),
        objects: Vec::new(),
        error: None,
    };
    let spec = match stored.map(spec_of) {
        None => None,
        Some(Ok(spec)) => Some(spec),
        Some(Err(msg)) => {
            report.error = Some(msg);
            return Ok(report);
        }
    };
    let Some(deploy) = spec.as_ref().and_then(|s| s.deploy.as_ref()) else {
        report.objects = orphans(&live, &[]);
        return Ok(report);
    };
    let inputs = match inputs(ctx, deploy).await? {
        Ok(inputs) => inputs,
        Err(waiting) => {
            report.error = Some(waiting);
            return Ok(report);
        }
    };
    let mut missing = Vec::new();
    let mut find = |object: &str, versioned: String, names: &[(&str, &str)]| {
        let id = names
            .iter()
            .find(|(n, _)| *n == versioned)
            .map(|(_, id)| (*id).to_owned());
        if id.is_none() {
            missing.push(ObjectDrift {
                object: object.into(),
                name: versioned.clone(),
                state: ObjectState::Missing,
                fields: Vec::new(),
            });
        }
        Ref {
            name: versioned,
            id: id.unwrap_or_default(),
        }
    };
    let secrets: Vec<(&str, &str)> = live
        .secrets
        .iter()
        .map(|s| {
            (
                secret_name(s).unwrap_or_default(),
                s.id.as_deref().unwrap_or_default(),
            )
        })
        .collect();
    let configs: Vec<(&str, &str)> = live
        .configs
        .iter()
        .map(|c| {
            (
                config_name(c).unwrap_or_default(),
                c.id.as_deref().unwrap_or_default(),
            )
        })
        .collect();
    let version =
        |logical: &str, digest: &str| versioned_name(logical, digest).map_err(Error::Invalid);
    let mut mounted = Mounted::default();
    if !inputs.users.is_empty() {
        let logical = object_base(name, "htpasswd");
        let versioned = version(&logical, &users_digest(ctx, &inputs.users))?;
        mounted.htpasswd = Some(find("secret", versioned, &secrets));
    }
    if let Some((cert, tls_key)) = &inputs.tls {
        let mut pair = Vec::new();
        for (what, content) in [("tls-cert", cert), ("tls-key", tls_key)] {
            let logical = object_base(name, what);
            let digest = ctx.keyring.as_ref().map(|k| k.digest(content.expose()));
            let versioned = version(&logical, &digest.unwrap_or_default())?;
            pair.push(find("secret", versioned, &secrets));
        }
        let mut pair = pair.into_iter();
        mounted.tls = Some((
            pair.next().unwrap_or_default(),
            pair.next().unwrap_or_default(),
        ));
    }
    let (config, _) = config_version(name, deploy)?;
    mounted.config = find("config", config.clone(), &configs);
    let labels = ctx.docker.owner_labels(&owner).into_iter().collect();
    let desired = service_spec(name, deploy, &mounted, &labels);
    let service = service_name(name);
    let current = live
        .services
        .iter()
        .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(service.as_str()));
    report.objects = missing;
    report
        .objects
        .extend(service_drift(&service, &plan_service(&desired, current)));
    let mut keep: Vec<&str> = vec![service.as_str(), config.as_str()];
    if let Some(h) = &mounted.htpasswd {
        keep.push(&h.name);
    }
    if let Some((c, k)) = &mounted.tls {
        keep.extend([c.name.as_str(), k.name.as_str()]);
    }
    report.objects.extend(orphans(&live, &keep));
    Ok(report)
}

/// The record's objects that `keep` does not name, as orphans.
fn orphans(live: &OwnedObjects, keep: &[&str]) -> Vec<ObjectDrift> {
    let services = live
        .services
        .iter()
        .map(|s| ("service", s.spec.as_ref().and_then(|s| s.name.as_deref())));
    let secrets = live.secrets.iter().map(|s| ("secret", secret_name(s)));
    let configs = live.configs.iter().map(|c| ("config", config_name(c)));
    services
        .chain(secrets)
        .chain(configs)
        .filter_map(|(object, name)| {
            let name = name?;
            (!keep.contains(&name)).then(|| ObjectDrift {
                object: object.into(),
                name: name.into(),
                state: ObjectState::Orphan,
                fields: Vec::new(),
            })
        })
        .collect()
}
