//! The plan of a Registry, pure: which images it serves, the registry's
//! config file, the swarm service that runs it, and what differs between that
//! service and the live one (which `run` converges and `drift` reports).
//!
//! # Image references
//! An image's registry is read the way docker reads it: the part before the
//! first `/` when it has a `.` or a `:` or is `localhost`; anything else is
//! Docker Hub, which no Registry record describes. A reference that already
//! names a digest is never resolved again.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use bollard::auth::DockerCredentials;
use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, HealthConfig, Mount, MountType, Service, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec, TaskSpecContainerSpecConfigs,
    TaskSpecContainerSpecFile, TaskSpecContainerSpecFile1, TaskSpecContainerSpecSecrets,
    TaskSpecPlacement, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};

use super::diff::FieldDiff;
use super::drift::{ObjectDrift, ObjectState};
use super::stack::{compare_service, json_hash};
use crate::api::registry::RegistryDeploy;
use crate::docker::SPEC_HASH;

/// The port the registry listens on inside its container; `deploy.port` is published to it.
pub const CONTAINER_PORT: u16 = 5000;
/// Where the registry keeps its images (the named volume is mounted there).
const DATA_DIR: &str = "/var/lib/registry";
/// Where both the `registry:2` image and `local/registry:2` read their config.
const CONFIG_PATH: &str = "/etc/docker/registry/config.yml";
/// File names under `/run/secrets` of the secrets the service mounts.
const HTPASSWD_FILE: &str = "htpasswd";
const CERT_FILE: &str = "registry.crt";
const KEY_FILE: &str = "registry.key";
/// One nanosecond-typed second, as swarm specs count time.
const SECOND: i64 = 1_000_000_000;

/// The swarm service that runs the registry of record `record`.
#[must_use]
pub fn service_name(record: &str) -> String {
    format!("registry-{record}")
}

/// The unversioned name of one of the record's secrets or configs (`htpasswd`, `config`, ...).
#[must_use]
pub fn object_base(record: &str, what: &str) -> String {
    format!("registry-{record}-{what}")
}

/// The registry an image reference names, when it names one (not Docker Hub).
#[must_use]
pub fn registry_of(image: &str) -> Option<&str> {
    let (first, _) = image.split_once('/')?;
    (first.contains(['.', ':']) || first == "localhost").then_some(first)
}

/// A tag to resolve: the image's registry, its repository and tag (`latest`
/// when none is given); `None` for an image of Docker Hub or one pinned already.
#[must_use]
pub fn tag_to_resolve(image: &str) -> Option<(&str, &str, &str)> {
    if image.contains('@') {
        return None;
    }
    let registry = registry_of(image)?;
    let path = &image[registry.len() + 1..];
    // A ':' after the last '/' starts the tag.
    let last = path.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match path[last..].rfind(':') {
        Some(i) => (&path[..last + i], &path[last + i + 1..]),
        None => (path, "latest"),
    };
    (!repository.is_empty() && !tag.is_empty()).then_some((registry, repository, tag))
}

/// The image pinned to `digest`, as `docker stack deploy` pins it: the
/// reference as written plus `@sha256:...`, which [`super::stack::keep_pinned_digest`]
/// recognises as the same image.
#[must_use]
pub fn pinned(image: &str, digest: &str) -> String {
    format!("{image}@{digest}")
}

/// Registry credentials a service is created or updated with (the
/// `X-Registry-Auth` header); its `Debug` never shows them.
#[derive(Clone, Default)]
pub struct PullAuth(pub DockerCredentials);

impl fmt::Debug for PullAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = self.0.username.as_deref().unwrap_or("anonymous");
        write!(f, "PullAuth({who}, <redacted>)")
    }
}

impl PullAuth {
    /// Credentials for `address`; `None` for the user makes an anonymous auth,
    /// which replaces one swarm kept from an earlier update.
    #[must_use]
    pub fn new(address: &str, user: Option<(&str, &str)>) -> Self {
        Self(DockerCredentials {
            username: user.map(|(u, _)| u.to_owned()),
            password: user.map(|(_, p)| p.to_owned()),
            serveraddress: Some(address.to_owned()),
            ..DockerCredentials::default()
        })
    }
}

/// The registry's config file: storage on the data volume, the listening
/// address, htpasswd auth when there are users, TLS when it is set.
#[must_use]
pub fn config_file(record: &str, deploy: &RegistryDeploy) -> String {
    let mut config = format!(
        "version: 0.1
log:
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: {DATA_DIR}
  delete:
    enabled: true
http:
  addr: :{CONTAINER_PORT}
  headers:
    X-Content-Type-Options: [nosniff]
"
    );
    if deploy.tls.is_some() {
        config.push_str(&format!(
            "  tls:\n    certificate: /run/secrets/{CERT_FILE}\n    key: /run/secrets/{KEY_FILE}\n"
        ));
    }
    if !deploy.users.is_empty() {
        config.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: swarmkeeper-{record}\n    path: /run/secrets/{HTPASSWD_FILE}\n"
        ));
    }
    config
}

/// A swarm object version the service mounts: its versioned name and ID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ref {
    pub name: String,
    pub id: String,
}

/// The config and secret versions the service mounts.
#[derive(Debug, Clone, Default)]
pub struct Mounted {
    pub config: Ref,
    pub htpasswd: Option<Ref>,
    /// Certificate and key.
    pub tls: Option<(Ref, Ref)>,
}

fn secret(file: &str, r: &Ref) -> TaskSpecContainerSpecSecrets {
    TaskSpecContainerSpecSecrets {
        file: Some(TaskSpecContainerSpecFile {
            name: Some(file.to_owned()),
            uid: Some("0".into()),
            gid: Some("0".into()),
            mode: Some(0o444),
        }),
        secret_id: Some(r.id.clone()),
        secret_name: Some(r.name.clone()),
    }
}

/// The health check on `/v2/`: the API answers, 200 (open) or 401
/// (credentials wanted). It runs in the registry's own container, which has
/// no credentials, through `nc` (a static busybox `wget` crashes resolving
/// even an IP address in a `FROM scratch` image). With TLS the plain request
/// gets Go's "HTTP request to an HTTPS server" 400: the listener answers.
fn health_check(tls: bool) -> HealthConfig {
    let answers = if tls { "400" } else { "200|401" };
    let probe = format!(
        "printf 'GET /v2/ HTTP/1.0\\r\\n\\r\\n' | nc -w 2 127.0.0.1 {CONTAINER_PORT} | grep -qE '^HTTP/[0-9.]+ ({answers})'"
    );
    HealthConfig {
        test: Some(vec!["CMD-SHELL".into(), probe]),
        interval: Some(3 * SECOND),
        timeout: Some(2 * SECOND),
        retries: Some(3),
        start_period: Some(10 * SECOND),
        ..HealthConfig::default()
    }
}

/// The service that runs the registry: one replica, its port published in
/// host mode (the routing mesh needs IPVS), its data on the named volume.
#[must_use]
pub fn service_spec(
    record: &str,
    deploy: &RegistryDeploy,
    mounted: &Mounted,
    labels: &BTreeMap<String, String>,
) -> ServiceSpec {
    let mut secrets = Vec::new();
    if let Some(htpasswd) = &mounted.htpasswd {
        secrets.push(secret(HTPASSWD_FILE, htpasswd));
    }
    if let Some((cert, key)) = &mounted.tls {
        secrets.push(secret(CERT_FILE, cert));
        secrets.push(secret(KEY_FILE, key));
    }
    let config = TaskSpecContainerSpecConfigs {
        file: Some(TaskSpecContainerSpecFile1 {
            name: Some(CONFIG_PATH.into()),
            uid: Some("0".into()),
            gid: Some("0".into()),
            mode: Some(0o444),
        }),
        runtime: None,
        config_id: Some(mounted.config.id.clone()),
        config_name: Some(mounted.config.name.clone()),
    };
    let mounts = deploy.volume.as_ref().map(|volume| {
        vec![Mount {
            target: Some(DATA_DIR.into()),
            source: Some(volume.clone()),
            typ: Some(MountType::VOLUME),
            ..Mount::default()
        }]
    });
    let constraints = &deploy.placement.constraints;
    let mut spec = ServiceSpec {
        name: Some(service_name(record)),
        labels: Some(labels.clone().into_iter().collect::<HashMap<_, _>>()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(deploy.image.clone()),
                mounts,
                secrets: (!secrets.is_empty()).then_some(secrets),
                configs: Some(vec![config]),
                health_check: Some(health_check(deploy.tls.is_some())),
                ..TaskSpecContainerSpec::default()
            }),
            placement: (!constraints.is_empty()).then(|| TaskSpecPlacement {
                constraints: Some(constraints.clone()),
                ..TaskSpecPlacement::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
                delay: Some(5 * SECOND),
                ..TaskSpecRestartPolicy::default()
            }),
            ..TaskSpec::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
            ..ServiceSpecMode::default()
        }),
        endpoint_spec: Some(EndpointSpec {
            ports: Some(vec![EndpointPortConfig {
                protocol: Some(EndpointPortConfigProtocolEnum::TCP),
                target_port: Some(i64::from(CONTAINER_PORT)),
                published_port: Some(i64::from(deploy.port)),
                publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
                ..EndpointPortConfig::default()
            }]),
            ..EndpointSpec::default()
        }),
        ..ServiceSpec::default()
    };
    // The hash lets the comparison ignore fields dockerd does not read back (the health check).
    let hash = json_hash(&spec);
    spec.labels
        .get_or_insert_with(HashMap::new)
        .insert(SPEC_HASH.into(), hash);
    spec
}

/// What the registry's service needs.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceChange {
    Create,
    Update(Vec<FieldDiff>),
    Unchanged,
}

/// Compares the desired service with the live one.
#[must_use]
pub fn plan_service(desired: &ServiceSpec, live: Option<&Service>) -> ServiceChange {
    match live {
        None => ServiceChange::Create,
        Some(live) => match compare_service(desired, live) {
            fields if fields.is_empty() => ServiceChange::Unchanged,
            fields => ServiceChange::Update(fields),
        },
    }
}

/// The change as a drift report entry; `None` when the service is as desired.
#[must_use]
pub fn drift(name: &str, change: &ServiceChange) -> Option<ObjectDrift> {
    let (state, fields) = match change {
        ServiceChange::Create => (ObjectState::Missing, Vec::new()),
        ServiceChange::Update(fields) => (ObjectState::Changed, fields.clone()),
        ServiceChange::Unchanged => return None,
    };
    Some(ObjectDrift {
        object: "service".into(),
        name: name.to_owned(),
        state,
        fields,
    })
}

#[cfg(test)]
mod tests;
