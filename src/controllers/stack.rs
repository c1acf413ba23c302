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

use std::collections::{BTreeMap, HashMap, HashSet};

use base64::Engine as _;
use bollard::models::{
    Config, ConfigSpec, Driver, Network, Secret, SecretSpec, Service, ServiceSpec,
};
use sha2::{Digest, Sha256};

use super::status::{Condition, Owned, Phase, Status};
use super::{Context, Error, RecordKey, stack_secrets};
use crate::api::{SecretValue, Spec};
use crate::docker::labels::{Owner, SPEC_HASH};
use crate::docker::{ServiceUpdate, TaskCounts, UpdateState, service_update_state};
use crate::plan::convert::{self, SecretSource, StackObjects};
use crate::plan::diff::FieldDiff;
use crate::plan::drift::{ObjectDrift, ObjectState, RecordDrift};
use crate::plan::stack::{
    add_labels, compare_service, compose_path, json_hash, keep_pinned_digest, network_ids,
    versioned_name,
};
use crate::runtime::Action;
use crate::store::Versioned;

/// The annotation that turns self-heal off: each change to the record is still
/// deployed, but drift made in the swarm afterwards is reported, not corrected.
pub const SELF_HEAL: &str = "swarmkeeper.dev/self-heal";

/// The live objects one stack record owns.
#[derive(Debug, Default)]
pub struct Live {
    pub services: Vec<Service>,
    pub networks: Vec<Network>,
    pub secrets: Vec<Secret>,
    pub configs: Vec<Config>,
}

impl Live {
    /// Reads every object the owner has.
    ///
    /// # Errors
    /// When dockerd does not answer.
    pub async fn observe(ctx: &Context, owner: &Owner) -> Result<Self, Error> {
        Ok(Self {
            services: ctx.docker.list_services(Some(owner)).await?,
            networks: ctx.docker.list_networks(Some(owner)).await?,
            secrets: ctx.docker.list_secrets(Some(owner)).await?,
            configs: ctx.docker.list_configs(Some(owner)).await?,
        })
    }
}

/// A secret or config version: immutable content under a versioned name.
#[derive(Debug, Clone)]
struct Blob {
    /// The name the compose file gives it (`<stack>_<key>`, or its `name:`).
    logical: String,
    versioned: String,
    labels: HashMap<String, String>,
    /// The content, redacted in Debug output: it may be a secret's.
    content: SecretValue,
    /// A secret's driver plugin, when not the built-in store.
    driver: Option<Driver>,
    /// The template driver (`template_driver:`), when the content is a template.
    templating: Option<Driver>,
}

impl Blob {
    /// The content in base64, as the Engine API takes it: made only for the request.
    fn data(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.content.expose())
    }
}

/// How a secret or config version is stored, besides its content.
#[derive(Default)]
struct Drivers<'a> {
    driver: Option<&'a Driver>,
    templating: Option<&'a Driver>,
}

/// Everything the record wants, converted and with secret values resolved.
struct Desired {
    objects: StackObjects,
    secrets: Vec<Blob>,
    configs: Vec<Blob>,
    owner_labels: BTreeMap<String, String>,
}

impl Desired {
    /// What a deleted record wants: nothing, so everything it owned is an orphan.
    fn nothing() -> Self {
        Self {
            objects: StackObjects::default(),
            secrets: Vec::new(),
            configs: Vec::new(),
            owner_labels: BTreeMap::new(),
        }
    }
}

/// Why a record cannot be converged as it is: its status says so, it is not retried.
struct Invalid(String);

fn hash_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The network as swarmkeeper creates it: the converted request plus ownership labels.
fn network_request(
    net: &convert::NetworkObject,
    desired: &Desired,
) -> bollard::models::NetworkCreateRequest {
    let mut spec = net.spec.clone();
    add_labels(&mut spec.labels, &desired.owner_labels);
    let hash = json_hash(&spec);
    spec.labels
        .get_or_insert_with(HashMap::new)
        .insert(SPEC_HASH.into(), hash);
    spec
}

/// Parses the record and converts its compose file into swarm objects.
async fn desired(
    ctx: &Context,
    name: &str,
    value: serde_json::Value,
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
        let content = match stack_secrets::content(ctx, name, s).await? {
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
        secrets.push(blob(
            &s.name,
            &s.labels,
            &owner_labels,
            &digest,
            content,
            drivers,
        )?);
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
        configs.push(blob(
            &c.name,
            &c.labels,
            &owner_labels,
            &hash_hex(content.expose()),
            content.clone(),
            drivers,
        )?);
    }
    Ok(Ok(Desired {
        objects,
        secrets,
        configs,
        owner_labels,
    }))
}

fn blob(
    name: &str,
    labels: &HashMap<String, String>,
    owner_labels: &BTreeMap<String, String>,
    digest: &str,
    content: SecretValue,
    drivers: Drivers<'_>,
) -> Result<Blob, Error> {
    // Drivers are immutable too: a change of driver is a new version.
    let digest = match (drivers.driver, drivers.templating) {
        (None, None) => digest.to_string(),
        (driver, templating) => json_hash(&(digest, driver, templating)),
    };
    let versioned = versioned_name(name, &digest).map_err(Error::Invalid)?;
    let mut labels = labels.clone();
    labels.extend(owner_labels.clone());
    labels.insert(SPEC_HASH.to_string(), digest);
    Ok(Blob {
        logical: name.to_string(),
        versioned,
        labels,
        content,
        driver: drivers.driver.cloned(),
        templating: drivers.templating.cloned(),
    })
}

/// IDs of the objects services refer to, by swarm name.
#[derive(Debug, Default)]
struct Ids {
    networks: HashMap<String, String>,
    /// Logical name -> (versioned name, ID).
    secrets: HashMap<String, (String, String)>,
    configs: HashMap<String, (String, String)>,
}

/// The spec a service should have, with references resolved as far as `ids` knows.
fn service_spec(obj: &convert::ServiceObject, desired: &Desired, ids: &Ids) -> ServiceSpec {
    let mut spec = obj.spec.clone();
    convert::rename_secret_refs(&mut spec, &ids.secrets);
    convert::rename_config_refs(&mut spec, &ids.configs);
    add_labels(&mut spec.labels, &desired.owner_labels);
    // The hash covers what the record asked for, before IDs that change on recreate.
    let hash = json_hash(&spec);
    network_ids(&mut spec, &ids.networks);
    spec.labels
        .get_or_insert_with(HashMap::new)
        .insert(SPEC_HASH.to_string(), hash);
    spec
}

fn owned_name<T>(items: &[T], name: impl Fn(&T) -> Option<&str>, want: &str) -> Option<usize> {
    items.iter().position(|i| name(i) == Some(want))
}

fn service_name(s: &Service) -> Option<&str> {
    s.spec.as_ref().and_then(|s| s.name.as_deref())
}

fn secret_name(s: &Secret) -> Option<&str> {
    s.spec.as_ref().and_then(|s| s.name.as_deref())
}

fn config_name(c: &Config) -> Option<&str> {
    c.spec.as_ref().and_then(|s| s.name.as_deref())
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
    for name in &ext.secrets {
        // A Secret record's value lives in versioned swarm secrets: the newest is current.
        let versions = ctx
            .docker
            .list_secrets(Some(&Owner::new("Secret", name)))
            .await?;
        if let Some(s) = super::secret::newest(&versions) {
            let versioned = s
                .spec
                .as_ref()
                .and_then(|s| s.name.clone())
                .unwrap_or_default();
            ids.secrets
                .insert(name.clone(), (versioned, s.id.clone().unwrap_or_default()));
            continue;
        }
        match ctx.docker.secret_by_name(name).await? {
            Some(s) => {
                ids.secrets
                    .insert(name.clone(), (name.clone(), s.id.unwrap_or_default()));
            }
            None => missing.push(format!("secret {name:?}")),
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

/// The drift of a stack: what differs between desired and live, object by object.
fn drift_of(desired: &Desired, live: &Live, ids: &Ids) -> Vec<ObjectDrift> {
    let mut out = Vec::new();
    for net in &desired.objects.networks {
        match live
            .networks
            .iter()
            .find(|n| n.name.as_deref() == Some(&net.name))
        {
            None => out.push(object("network", &net.name, ObjectState::Missing, vec![])),
            Some(l) => {
                let fields = crate::plan::network::compare(&network_request(net, desired), l);
                if !fields.is_empty() {
                    out.push(object("network", &net.name, ObjectState::Changed, fields));
                }
            }
        }
    }
    for (what, blobs, names) in [
        (
            "secret",
            &desired.secrets,
            live.secrets
                .iter()
                .filter_map(secret_name)
                .collect::<Vec<_>>(),
        ),
        (
            "config",
            &desired.configs,
            live.configs.iter().filter_map(config_name).collect(),
        ),
    ] {
        for b in blobs {
            if !names.contains(&b.versioned.as_str()) {
                out.push(object(what, &b.versioned, ObjectState::Missing, vec![]));
            }
        }
    }
    for svc in &desired.objects.services {
        let spec = service_spec(svc, desired, ids);
        match live
            .services
            .iter()
            .find(|s| service_name(s) == Some(&svc.name))
        {
            None => out.push(object("service", &svc.name, ObjectState::Missing, vec![])),
            Some(l) => {
                let fields: Vec<FieldDiff> = compare_service(&spec, l)
                    .into_iter()
                    .map(|f| FieldDiff {
                        path: compose_path(&svc.key, &f.path),
                        ..f
                    })
                    .collect();
                if !fields.is_empty() {
                    out.push(object("service", &svc.name, ObjectState::Changed, fields));
                }
            }
        }
    }
    for o in orphans(desired, live) {
        out.push(object(o.object, &o.name, ObjectState::Orphan, vec![]));
    }
    out
}

fn object(what: &str, name: &str, state: ObjectState, fields: Vec<FieldDiff>) -> ObjectDrift {
    ObjectDrift {
        object: what.to_string(),
        name: name.to_string(),
        state,
        fields,
    }
}

struct Orphan {
    object: &'static str,
    name: String,
    id: String,
}

/// Owned objects the record no longer wants.
fn orphans(desired: &Desired, live: &Live) -> Vec<Orphan> {
    let services: HashSet<&str> = desired
        .objects
        .services
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    let networks: HashSet<&str> = desired
        .objects
        .networks
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    let secrets: HashSet<&str> = desired
        .secrets
        .iter()
        .map(|b| b.versioned.as_str())
        .collect();
    let configs: HashSet<&str> = desired
        .configs
        .iter()
        .map(|b| b.versioned.as_str())
        .collect();
    let mut out = Vec::new();
    let mut push = |object, name: Option<&str>, id: &Option<String>, keep: &HashSet<&str>| {
        if let Some(name) = name
            && !keep.contains(name)
        {
            out.push(Orphan {
                object,
                name: name.to_string(),
                id: id.clone().unwrap_or_default(),
            });
        }
    };
    for s in &live.services {
        push("service", service_name(s), &s.id, &services);
    }
    for s in &live.secrets {
        push("secret", secret_name(s), &s.id, &secrets);
    }
    for c in &live.configs {
        push("config", config_name(c), &c.id, &configs);
    }
    for n in &live.networks {
        push("network", n.name.as_deref(), &n.id, &networks);
    }
    out
}

/// Removes orphans: services first, then the secrets, configs and networks they used.
///
/// Swarm refuses to remove a secret, config or network still in use (a task
/// of a removed service may linger); that is not an error, the next pass retries.
async fn remove_orphans(
    ctx: &Context,
    key: &RecordKey,
    orphans: Vec<Orphan>,
) -> Result<bool, Error> {
    let mut lingering = false;
    for o in orphans.iter().filter(|o| o.object == "service") {
        ctx.docker.remove_service(&o.id).await?;
        ctx.event(key, false, "Removed", format!("removed service {}", o.name))
            .await;
    }
    for o in orphans.iter().filter(|o| o.object != "service") {
        let removed = match o.object {
            "secret" => ctx.docker.remove_secret(&o.id).await,
            "config" => ctx.docker.remove_config(&o.id).await,
            _ => ctx.docker.remove_network(&o.id).await,
        };
        match removed {
            Ok(()) => {
                ctx.event(
                    key,
                    false,
                    "Removed",
                    format!("removed {} {}", o.object, o.name),
                )
                .await;
            }
            Err(err) if err.is_transient() || err.is_in_use() => {
                tracing::debug!(record = %key, object = o.object, name = %o.name, %err, "not removable yet");
                lingering = true;
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(lingering)
}

/// Converges one Stack record.
///
/// # Errors
/// Transient failures of etcd or dockerd, retried with backoff by the runtime.
pub async fn reconcile(
    ctx: &Context,
    key: &RecordKey,
    stored: Option<Versioned>,
) -> Result<Action, Error> {
    let owner = Owner::new("Stack", &key.name);
    let live = Live::observe(ctx, &owner).await?;
    let Some(stored) = stored else {
        // The record is gone: everything it owned is an orphan.
        let lingering = remove_orphans(ctx, key, orphans(&Desired::nothing(), &live)).await?;
        if !lingering {
            let values = crate::api::load::stack_secret_prefix(&key.name);
            ctx.store.delete_secrets_with_prefix(&values).await?;
        }
        return ctx.forget(key, lingering).await;
    };
    let generation = stored.mod_revision;
    let self_heal = stored
        .value
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(SELF_HEAL))
        .and_then(|v| v.as_str())
        != Some("false");
    let desired = match desired(ctx, &key.name, stored.value).await? {
        Ok(d) => d,
        Err(Invalid(msg)) => return ctx.fail(key, generation, msg).await,
    };
    let mut ids = Ids::default();
    let missing = externals(ctx, &desired, &mut ids).await?;
    if !missing.is_empty() {
        let message = format!("waiting for external {}", missing.join(", "));
        let status = Status {
            owned: owned(&live),
            ..Status::new(Phase::Pending, generation).with_message(message.clone())
        };
        // Said once per change of what is missing, not on every retry.
        let previous = ctx
            .store
            .get_status(key.kind.as_str(), &key.name)
            .await?
            .and_then(|v| serde_json::from_value::<Status>(v.value).ok());
        known_ids(&desired, &live, &mut ids);
        ctx.drift
            .set_error(key, drift_of(&desired, &live, &ids), &message);
        if previous.is_none_or(|p| p.message != message || p.observed_revision != generation) {
            ctx.event(key, true, "Waiting", message).await;
        }
        ctx.write_status(key, &status).await?;
        return Ok(Action::requeue(std::time::Duration::from_secs(10)));
    }
    known_ids(&desired, &live, &mut ids);
    let drift = drift_of(&desired, &live, &ids);
    let applied = applied(ctx, key, generation).await?;
    let report_only = !self_heal && applied;
    // What still differs once this pass is done, for `/drift`.
    let (status, remaining) = if report_only {
        let mut status = status_of(ctx, &desired, &live, generation, drift).await?;
        if !status.drift.is_empty() {
            status.phase = Phase::Degraded;
            status.message = "drift found; self-heal is off for this record".into();
        }
        let remaining = status.drift.clone();
        (status, remaining)
    } else {
        converge(ctx, key, &desired, &live, &mut ids, applied).await?;
        let lingering = remove_orphans(ctx, key, orphans(&desired, &live)).await?;
        let after = Live::observe(ctx, &owner).await?;
        // What was healed is in the events; the status keeps what is left, so a
        // pass after the converging one finds the same status and writes nothing.
        let remaining = drift_of(&desired, &after, &ids);
        let mut status = status_of(ctx, &desired, &after, generation, remaining.clone()).await?;
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
    ctx.write_status(key, &status).await?;
    Ok(Action::requeue(again))
}

/// Whether a converging pass has already finished for this generation of the record.
///
/// With self-heal off a record is still deployed, once per change to it: only
/// what happens to the swarm afterwards is reported rather than corrected.
async fn applied(ctx: &Context, key: &RecordKey, generation: i64) -> Result<bool, Error> {
    let Some(stored) = ctx.store.get_status(key.kind.as_str(), &key.name).await? else {
        return Ok(false);
    };
    Ok(
        serde_json::from_value::<Status>(stored.value).is_ok_and(|s| {
            s.observed_revision == generation
                && matches!(s.phase, Phase::Progressing | Phase::Ready | Phase::Degraded)
        }),
    )
}

/// Fills `ids` with the live objects that already match the desired ones.
fn known_ids(desired: &Desired, live: &Live, ids: &mut Ids) {
    for n in &live.networks {
        if let (Some(name), Some(id)) = (&n.name, &n.id) {
            ids.networks.insert(name.clone(), id.clone());
        }
    }
    for (blobs, map, names) in [
        (
            &desired.secrets,
            &mut ids.secrets,
            live.secrets
                .iter()
                .map(|s| (secret_name(s), &s.id))
                .collect::<Vec<_>>(),
        ),
        (
            &desired.configs,
            &mut ids.configs,
            live.configs
                .iter()
                .map(|c| (config_name(c), &c.id))
                .collect(),
        ),
    ] {
        for b in blobs {
            if let Some((_, Some(id))) =
                names.iter().find(|(n, _)| *n == Some(b.versioned.as_str()))
            {
                map.insert(b.logical.clone(), (b.versioned.clone(), id.clone()));
            }
        }
    }
}

/// Creates what is missing and updates what differs, in dependency order.
///
/// Once this generation was applied (`applied`), a service whose update the
/// swarm rolled back or paused is left as the swarm left it: sending the same
/// spec again would only fail the same way. It stays Degraded until the record
/// changes.
async fn converge(
    ctx: &Context,
    key: &RecordKey,
    desired: &Desired,
    live: &Live,
    ids: &mut Ids,
    applied: bool,
) -> Result<(), Error> {
    for net in &desired.objects.networks {
        if ids.networks.contains_key(&net.name) {
            continue;
        }
        // The same request drift compares with, so a fresh network is not drift.
        let id = ctx
            .docker
            .create_network(network_request(net, desired))
            .await?;
        ctx.event(
            key,
            false,
            "Created",
            format!("created network {}", net.name),
        )
        .await;
        ids.networks.insert(net.name.clone(), id);
    }
    for b in &desired.secrets {
        if ids.secrets.contains_key(&b.logical) {
            continue;
        }
        let spec = SecretSpec {
            name: Some(b.versioned.clone()),
            labels: Some(b.labels.clone()),
            data: Some(b.data()),
            driver: b.driver.clone(),
            templating: b.templating.clone(),
        };
        let id = ctx.docker.create_secret(spec).await?;
        ctx.event(
            key,
            false,
            "Created",
            format!("created secret {}", b.versioned),
        )
        .await;
        ids.secrets
            .insert(b.logical.clone(), (b.versioned.clone(), id));
    }
    for b in &desired.configs {
        if ids.configs.contains_key(&b.logical) {
            continue;
        }
        let spec = ConfigSpec {
            name: Some(b.versioned.clone()),
            labels: Some(b.labels.clone()),
            data: Some(b.data()),
            templating: b.templating.clone(),
        };
        let id = ctx.docker.create_config(spec).await?;
        ctx.event(
            key,
            false,
            "Created",
            format!("created config {}", b.versioned),
        )
        .await;
        ids.configs
            .insert(b.logical.clone(), (b.versioned.clone(), id));
    }
    for svc in &desired.objects.services {
        let spec = service_spec(svc, desired, ids);
        let current =
            owned_name(&live.services, service_name, &svc.name).map(|i| &live.services[i]);
        match current {
            None => {
                ctx.docker.create_service(spec, None).await?;
                ctx.event(
                    key,
                    false,
                    "Created",
                    format!("created service {}", svc.name),
                )
                .await;
            }
            Some(current)
                if applied
                    && service_update_state(current).is_some_and(UpdateState::is_degraded) => {}
            Some(current) => {
                let update = ctx
                    .docker
                    .update_service(current, None, |fresh| {
                        let live_spec = fresh.spec.clone().unwrap_or_default();
                        (!compare_service(&spec, fresh).is_empty())
                            .then(|| keep_pinned_digest(&spec, &live_spec))
                    })
                    .await?;
                if update == ServiceUpdate::Updated {
                    ctx.event(
                        key,
                        false,
                        "Updated",
                        format!("updated service {}", svc.name),
                    )
                    .await;
                }
            }
        }
    }
    Ok(())
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

/// The drift of one stack record, for `swarmkeeper drift` and `/drift`.
///
/// # Errors
/// When etcd or dockerd fails.
pub async fn drift(
    ctx: &Context,
    name: &str,
    stored: Option<Versioned>,
) -> Result<RecordDrift, Error> {
    let owner = Owner::new("Stack", name);
    let live = Live::observe(ctx, &owner).await?;
    let mut report = RecordDrift {
        kind: "Stack".into(),
        name: name.into(),
        objects: Vec::new(),
        error: None,
    };
    let Some(stored) = stored else {
        report.objects = drift_of(&Desired::nothing(), &live, &Ids::default());
        return Ok(report);
    };
    let desired = match desired(ctx, name, stored.value).await? {
        Ok(d) => d,
        Err(Invalid(msg)) => {
            report.error = Some(msg);
            return Ok(report);
        }
    };
    let mut ids = Ids::default();
    let missing = externals(ctx, &desired, &mut ids).await?;
    for m in missing {
        report.error = Some(format!("external {m} is missing"));
    }
    known_ids(&desired, &live, &mut ids);
    report.objects = drift_of(&desired, &live, &ids);
    Ok(report)
}
