//! Compose file to swarm objects, producing what `docker stack deploy` creates for the same
//! file (the docker CLI's `cli/compose/convert` is the reference), as bollard model types.
//!
//! Pure: no IO. Secret and config references carry the swarm object's name and no ID; the
//! controller fills IDs (and versioned names) with [`rename_secret_refs`] and
//! [`rename_config_refs`] once the objects exist.
//!
//! # Layout
//! Split along the seams of docker/cli's `cli/compose/convert/`. This file holds the public
//! API, the object types and the helpers the seams share (naming and labels, as
//! `convert/compose.go`'s `Namespace` and `AddStackLabel`); each seam is a child module:
//! - `service`: the service, task and container spec (`convert/service.go`'s `Service`),
//!   calling the seams below for its parts;
//! - `deploy`: resources, mode and replicas, placement, update and rollback configs;
//! - `ports`: the endpoint spec and its published ports;
//! - `networks`: the stack networks and each service's attachments;
//! - `volumes`: mounts (`convert/volume.go`);
//! - `secrets`: secrets, configs and the file targets services mount them at.

use std::collections::HashMap;
use std::fmt;

use bollard::models::{Driver, NetworkCreateRequest, ServiceSpec, TaskSpecContainerSpec};
use indexmap::IndexMap;

use crate::api::SecretValue;
use crate::api::compose::{ComposeFile, External, ListOrMap, TopLevel};

mod deploy;
mod networks;
mod ports;
mod secrets;
mod service;
mod volumes;

use networks::convert_networks;
use secrets::{convert_configs, convert_secrets};
use service::convert_service;

/// The label `docker stack` commands find a stack's objects by.
pub const LABEL_NAMESPACE: &str = "com.docker.stack.namespace";
/// The label holding the image as written in the compose file.
pub const LABEL_IMAGE: &str = "com.docker.stack.image";

/// Why a compose file cannot be converted. `validate` reports all of these earlier; they
/// surface here only for a record that skipped validation.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("service {service}: {message}")]
    ConvertService { service: String, message: String },
    #[error("secret {key}: {message}")]
    ConvertSecret { key: String, message: String },
    #[error("config {key}: {message}")]
    ConvertConfig { key: String, message: String },
}

/// Everything a stack creates, in the order it must be created.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StackObjects {
    pub networks: Vec<NetworkObject>,
    pub secrets: Vec<SecretObject>,
    pub configs: Vec<ConfigObject>,
    pub services: Vec<ServiceObject>,
    /// Objects the stack uses but does not own: they must already exist.
    pub externals: Externals,
}

/// Swarm names of external objects the stack's services use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Externals {
    pub networks: Vec<String>,
    pub secrets: Vec<String>,
    pub configs: Vec<String>,
}

/// A stack object swarm is asked to create from a spec alone: a network or a service.
#[derive(Debug, Clone, PartialEq)]
pub struct StackObject<S> {
    /// The key in the compose file.
    pub key: String,
    /// The swarm name: `<stack>_<key>`, or a network's `name:`.
    pub name: String,
    pub spec: S,
}

/// A stack network.
pub type NetworkObject = StackObject<NetworkCreateRequest>;

/// A stack service.
pub type ServiceObject = StackObject<ServiceSpec>;

/// Where a secret's or config's bytes come from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The bytes themselves (a config's `content`, or the empty data of a driver
    /// secret), held as secret bytes since this type carries secrets' contents too.
    Content(SecretValue),
    /// The store key of an encrypted value (`x-swarmkeeper-secret`), read by the controller.
    StoreKey(String),
}

impl fmt::Debug for SecretSource {
    /// Never prints the bytes: they may be a secret's.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Content(bytes) => write!(f, "Content(<{} bytes>)", bytes.len()),
            Self::StoreKey(key) => f.debug_tuple("StoreKey").field(key).finish(),
        }
    }
}

/// A stack secret.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretObject {
    /// The key in the compose file.
    pub key: String,
    /// The swarm name: `<stack>_<key>`, or `name:`.
    pub name: String,
    pub labels: HashMap<String, String>,
    pub source: SecretSource,
    /// A secret driver plugin (`driver:`, `driver_opts:`).
    pub driver: Option<Driver>,
    pub templating: Option<Driver>,
}

/// A stack config.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigObject {
    /// The key in the compose file.
    pub key: String,
    /// The swarm name: `<stack>_<key>`, or `name:`.
    pub name: String,
    pub labels: HashMap<String, String>,
    pub source: SecretSource,
    pub templating: Option<Driver>,
}

/// Converts a compose file into the objects `docker stack deploy <stack>` would create.
///
/// # Errors
/// [`ConvertError`] naming the service, secret or config that cannot be converted (an
/// undefined reference, a malformed port or mount, a `file:` the loader did not inline).
pub fn convert_stack(stack: &str, compose: &ComposeFile) -> Result<StackObjects, ConvertError> {
    let mut externals = Externals::default();
    let networks = convert_networks(stack, compose, &mut externals);
    let secrets = convert_secrets(stack, compose, &mut externals)?;
    let configs = convert_configs(stack, compose, &mut externals)?;
    let services = compose
        .services
        .iter()
        .map(|(key, service)| {
            convert_service(stack, compose, key, service)
                .map(|spec| ServiceObject {
                    key: key.clone(),
                    name: scope(stack, key),
                    spec,
                })
                .map_err(|message| ConvertError::ConvertService {
                    service: key.clone(),
                    message,
                })
        })
        .collect::<Result<Vec<ServiceObject>, _>>()?;
    // As the CLI: an external secret or config no service uses is never looked up.
    let used = |kind: fn(&TaskSpecContainerSpec) -> Vec<&String>| {
        services
            .iter()
            .filter_map(|s| s.spec.task_template.as_ref()?.container_spec.as_ref())
            .flat_map(kind)
            .cloned()
            .collect::<std::collections::HashSet<String>>()
    };
    let used_secrets = used(|c| {
        c.secrets
            .iter()
            .flatten()
            .filter_map(|r| r.secret_name.as_ref())
            .collect()
    });
    let used_configs = used(|c| {
        c.configs
            .iter()
            .flatten()
            .filter_map(|r| r.config_name.as_ref())
            .collect()
    });
    externals.secrets.retain(|name| used_secrets.contains(name));
    externals.configs.retain(|name| used_configs.contains(name));
    Ok(StackObjects {
        networks,
        secrets,
        configs,
        services,
        externals,
    })
}

/// Points the service's secret references at new names and IDs: `map` goes from the name in
/// the spec to `(new name, id)`. References not in `map` are left alone.
pub fn rename_secret_refs(spec: &mut ServiceSpec, map: &HashMap<String, (String, String)>) {
    let secrets = container_spec(spec).and_then(|c| c.secrets.as_mut());
    for reference in secrets.into_iter().flatten() {
        rename(&mut reference.secret_name, &mut reference.secret_id, map);
    }
}

/// Points the service's config references at new names and IDs, as [`rename_secret_refs`],
/// and a credential spec's config (a name until now) at its ID, as the CLI sends it.
pub fn rename_config_refs(spec: &mut ServiceSpec, map: &HashMap<String, (String, String)>) {
    let Some(container) = container_spec(spec) else {
        return;
    };
    for reference in container.configs.iter_mut().flatten() {
        rename(&mut reference.config_name, &mut reference.config_id, map);
    }
    let credential = container
        .privileges
        .as_mut()
        .and_then(|p| p.credential_spec.as_mut())
        .and_then(|c| c.config.as_mut());
    if let Some(config) = credential
        && let Some((_, id)) = map.get(config.as_str())
    {
        *config = id.clone();
    }
}

/// The container spec of the service's task template, when it has one.
fn container_spec(spec: &mut ServiceSpec) -> Option<&mut TaskSpecContainerSpec> {
    spec.task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut())
}

/// Points one reference at its new name and ID, when `map` has its name.
fn rename(
    name: &mut Option<String>,
    id: &mut Option<String>,
    map: &HashMap<String, (String, String)>,
) {
    if let Some((new_name, new_id)) = name.as_ref().and_then(|n| map.get(n)) {
        *name = Some(new_name.clone());
        *id = Some(new_id.clone());
    }
}

/// `<stack>_<key>`, as the CLI's `Namespace.Scope`.
fn scope(stack: &str, key: &str) -> String {
    format!("{stack}_{key}")
}

/// Labels with the stack's namespace label added, as the CLI's `AddStackLabel`.
fn stack_labels(stack: &str, labels: Option<&ListOrMap>) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = labels
        .map(ListOrMap::to_string_map)
        .unwrap_or_default()
        .into_iter()
        .collect();
    out.insert(LABEL_NAMESPACE.to_owned(), stack.to_owned());
    out
}

fn non_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}

fn non_empty_map<K, V>(map: HashMap<K, V>) -> Option<HashMap<K, V>> {
    (!map.is_empty()).then_some(map)
}

fn non_empty_str(value: Option<&String>) -> Option<String> {
    value.filter(|v| !v.is_empty()).cloned()
}

fn non_zero(value: i64) -> Option<i64> {
    (value != 0).then_some(value)
}

fn to_hash_map(map: IndexMap<String, String>) -> HashMap<String, String> {
    map.into_iter().collect()
}

/// The swarm name of a top-level object: `name:`, the legacy `external.name`, the bare key
/// for other external objects, or `<stack>_<key>`.
fn object_name(stack: &str, key: &str, def: &impl TopLevel) -> String {
    let legacy = def.external().and_then(External::legacy_name);
    match (def.name(), legacy) {
        (Some(name), _) => name.clone(),
        (None, Some(legacy)) => legacy.to_owned(),
        (None, None) if def.is_external() => key.to_owned(),
        (None, None) => scope(stack, key),
    }
}

/// The swarm name of a top-level object the stack creates; `None` for an external one,
/// which is only named, in `externals`.
fn own_object_name(
    stack: &str,
    key: &str,
    def: &impl TopLevel,
    externals: &mut Vec<String>,
) -> Option<String> {
    let name = object_name(stack, key, def);
    if def.is_external() {
        externals.push(name);
        return None;
    }
    Some(name)
}

/// What the seams' unit tests share: the compose fixtures and the lookups into their result.
#[cfg(test)]
mod fixtures {
    use bollard::models::{ServiceSpec, TaskSpec, TaskSpecContainerSpec};

    use super::{StackObjects, convert_stack};
    pub(super) use crate::api::compose::tests::{
        EVERYTHING, KITTENAPI, LAB3, TRAEFIK, WHOAMI, parse,
    };

    /// The objects of `text` deployed as the stack `demo`.
    pub(super) fn convert(text: &str) -> StackObjects {
        convert_stack("demo", &parse(text)).unwrap()
    }

    pub(super) fn service<'a>(objects: &'a StackObjects, key: &str) -> &'a ServiceSpec {
        &objects.services.iter().find(|s| s.key == key).unwrap().spec
    }

    pub(super) fn container(spec: &ServiceSpec) -> &TaskSpecContainerSpec {
        spec.task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref())
            .unwrap()
    }

    pub(super) fn task(spec: &ServiceSpec) -> &TaskSpec {
        spec.task_template.as_ref().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use bollard::models::{EndpointSpec, TaskSpecResources};

    use super::fixtures::{
        EVERYTHING, KITTENAPI, LAB3, TRAEFIK, WHOAMI, container, convert, parse, service, task,
    };
    use super::*;

    #[test]
    fn kittenapi_uses_external_objects_by_their_plain_names() {
        let objects = convert(KITTENAPI);
        assert!(objects.networks.is_empty());
        assert!(objects.secrets.is_empty());
        assert_eq!(objects.externals.networks, vec!["backend", "frontend"]);
        assert_eq!(objects.externals.secrets, vec!["kittenapi_db_uri"]);
        let spec = service(&objects, "kittenapi");
        assert_eq!(spec.name.as_deref(), Some("demo_kittenapi"));
        let labels = spec.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_NAMESPACE], "demo");
        assert_eq!(labels[LABEL_IMAGE], "sirrtea/kittenapi");
        assert_eq!(labels["traefik.enable"], "true");
        assert_eq!(
            spec.mode
                .as_ref()
                .unwrap()
                .replicated
                .as_ref()
                .unwrap()
                .replicas,
            Some(2)
        );
        let c = container(spec);
        assert_eq!(c.labels.as_ref().unwrap()[LABEL_NAMESPACE], "demo");
        assert_eq!(
            c.env,
            Some(vec![
                "DATABASE_URI_FILE=/run/secrets/kittenapi_db_uri".to_owned()
            ])
        );
        let secret = &c.secrets.as_ref().unwrap()[0];
        assert_eq!(secret.secret_name.as_deref(), Some("kittenapi_db_uri"));
        assert_eq!(secret.secret_id, None);
        let file = secret.file.as_ref().unwrap();
        assert_eq!(
            (
                file.name.as_deref(),
                file.uid.as_deref(),
                file.gid.as_deref(),
                file.mode
            ),
            (Some("kittenapi_db_uri"), Some("0"), Some("0"), Some(0o444))
        );
        let networks = task(spec).networks.as_ref().unwrap();
        let targets: Vec<_> = networks
            .iter()
            .map(|n| n.target.as_deref().unwrap())
            .collect();
        assert_eq!(targets, vec!["backend", "frontend"]);
        assert_eq!(networks[0].aliases, Some(vec!["kittenapi".to_owned()]));
        assert_eq!(
            task(spec).placement.as_ref().unwrap().constraints,
            Some(vec!["node.labels.usage == apps".to_owned()])
        );
    }

    #[test]
    fn traefik_is_global_with_host_ports_and_a_bind_mount() {
        let objects = convert(TRAEFIK);
        let spec = service(&objects, "traefik");
        let mode = spec.mode.as_ref().unwrap();
        assert_eq!(mode.global, Some(HashMap::new()));
        assert_eq!(mode.replicated, None);
        let c = container(spec);
        assert_eq!(c.command, None);
        assert_eq!(c.args.as_ref().unwrap()[0], "--api.insecure=true");
        assert_eq!(c.args.as_ref().unwrap().len(), 4);
        let mount = &c.mounts.as_ref().unwrap()[0];
        assert_eq!(mount.typ, Some(bollard::models::MountType::BIND));
        assert_eq!(mount.source.as_deref(), Some("/var/run/docker.sock"));
        assert_eq!(mount.volume_options, None);
        let ports = spec.endpoint_spec.as_ref().unwrap().ports.as_ref().unwrap();
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0].published_port, Some(80));
        assert_eq!(
            ports[0].publish_mode,
            Some(bollard::models::EndpointPortConfigPublishModeEnum::HOST)
        );
    }

    #[test]
    fn whoami_defaults() {
        let objects = convert(WHOAMI);
        let spec = service(&objects, "whoami");
        assert_eq!(spec.endpoint_spec, Some(EndpointSpec::default()));
        assert_eq!(spec.update_config, None);
        assert_eq!(task(spec).restart_policy, None);
        assert_eq!(task(spec).resources, Some(TaskSpecResources::default()));
    }

    #[test]
    fn lab3_creates_its_networks_and_scopes_its_volume() {
        let objects = convert(LAB3);
        let names: Vec<_> = objects.networks.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "demo_books-io",
                "demo_db-adminer",
                "demo_gateway-books",
                "demo_io-db"
            ]
        );
        let net = &objects.networks[0].spec;
        assert_eq!(net.driver.as_deref(), Some("overlay"));
        assert_eq!(net.labels.as_ref().unwrap()[LABEL_NAMESPACE], "demo");
        assert_eq!(objects.externals.secrets, vec!["db_user", "db_password"]);

        let db = container(service(&objects, "db"));
        let mounts = db.mounts.as_ref().unwrap();
        assert_eq!(mounts[0].source.as_deref(), Some("demo_db-data"));
        assert_eq!(mounts[0].typ, Some(bollard::models::MountType::VOLUME));
        let options = mounts[0].volume_options.as_ref().unwrap();
        assert_eq!(options.labels.as_ref().unwrap()[LABEL_NAMESPACE], "demo");
        assert_eq!(options.driver_config, None);
        assert_eq!(mounts[1].typ, Some(bollard::models::MountType::BIND));
        let names: Vec<_> = db
            .secrets
            .as_ref()
            .unwrap()
            .iter()
            .map(|s| s.secret_name.as_deref().unwrap())
            .collect();
        assert_eq!(names, vec!["db_password", "db_user"]);

        let io = service(&objects, "io-service");
        let resources = task(io).resources.as_ref().unwrap();
        let limits = resources.limits.as_ref().unwrap();
        assert_eq!(limits.nano_cpus, Some(200_000_000));
        assert_eq!(limits.memory_bytes, Some(52_428_800));
        let restart = task(io).restart_policy.as_ref().unwrap();
        assert_eq!(
            restart.condition,
            Some(bollard::models::TaskSpecRestartPolicyConditionEnum::ON_FAILURE)
        );
        assert_eq!(restart.max_attempts, None);
        let gateway = service(&objects, "gateway");
        assert_eq!(
            task(gateway).placement.as_ref().unwrap().max_replicas,
            Some(2)
        );
        let port = &gateway
            .endpoint_spec
            .as_ref()
            .unwrap()
            .ports
            .as_ref()
            .unwrap()[0];
        assert_eq!(
            (port.published_port, port.target_port),
            (Some(3000), Some(80))
        );
    }

    #[test]
    fn undefined_references_and_unloaded_files_are_errors() {
        let err = convert_stack(
            "demo",
            &parse("services:\n  a:\n    image: x\n    networks: [nope]\n"),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "service a: undefined network \"nope\"");
        let err = convert_stack(
            "demo",
            &parse("services: {}\nsecrets:\n  s: {file: ./s.txt}\n"),
        )
        .unwrap_err();
        assert!(matches!(err, ConvertError::ConvertSecret { .. }));
        let err = convert_stack("demo", &parse("services: {}\nconfigs:\n  c: {file: ./c}\n"))
            .unwrap_err();
        assert!(matches!(err, ConvertError::ConvertConfig { .. }));
    }

    #[test]
    fn refs_are_renamed_with_their_ids() {
        let objects = convert(EVERYTHING);
        let mut spec = service(&objects, "web").clone();
        let map = HashMap::from([(
            "demo_token".to_owned(),
            ("demo_token-v2".to_owned(), "id1".to_owned()),
        )]);
        rename_secret_refs(&mut spec, &map);
        let secrets = container(&spec).secrets.clone().unwrap();
        assert!(
            secrets
                .iter()
                .all(|s| s.secret_name.as_deref() == Some("demo_token-v2")
                    && s.secret_id.as_deref() == Some("id1"))
        );
        let map = HashMap::from([(
            "demo_app_conf".to_owned(),
            ("demo_app_conf-v2".to_owned(), "id2".to_owned()),
        )]);
        rename_config_refs(&mut spec, &map);
        let configs = container(&spec).configs.clone().unwrap();
        assert_eq!(configs[0].config_id.as_deref(), Some("id2"));
    }

    #[test]
    fn top_level_objects_are_named_as_the_cli_names_them() {
        let compose = parse(
            "services: {}\nnetworks:\n  own: {}\n  named: {name: custom}\n  ext: {external: true}\n  legacy: {external: {name: old-name}}\n  both: {name: wins, external: {name: loses}}\n",
        );
        let mut externals = Vec::new();
        let own: Vec<_> = compose
            .networks
            .iter()
            .map(|(key, def)| own_object_name("demo", key, def, &mut externals))
            .collect();
        assert_eq!(
            own,
            [
                Some("demo_own".to_owned()),
                Some("custom".to_owned()),
                None,
                None,
                None
            ]
        );
        assert_eq!(externals, ["ext", "old-name", "wins"]);
    }

    #[test]
    fn secret_content_never_shows_in_debug() {
        let source = SecretSource::Content(SecretValue::from("hunter2"));
        assert_eq!(format!("{source:?}"), "Content(<7 bytes>)");
    }
}
