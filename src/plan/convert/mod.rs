//! Compose file to swarm objects, producing what `docker stack deploy` creates for the same
//! file (the docker CLI's `cli/compose/convert` is the reference), as bollard model types.
//!
//! Pure: no IO. Secret and config references carry the swarm object's name and no ID; the
//! controller fills IDs (and versioned names) with [`rename_secret_refs`] and
//! [`rename_config_refs`] once the objects exist.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use bollard::models::{
    Driver, HealthConfig, NetworkCreateRequest, ResourcesUlimits, ServiceSpec, TaskSpec,
    TaskSpecContainerSpec, TaskSpecContainerSpecDnsConfig, TaskSpecContainerSpecPrivileges,
    TaskSpecContainerSpecPrivilegesCredentialSpec, TaskSpecLogDriver, TaskSpecRestartPolicy,
};
use indexmap::IndexMap;

use crate::api::compose::{
    Command, ComposeFile, External, GoDuration, ListOrMap, Service, StringOrList, parse_restart,
};

mod deploy;
mod networks;
mod ports;
mod secrets;
mod volumes;

use deploy::{convert_mode, convert_placement, convert_resources, rollback_config, update_config};
use networks::{convert_networks, convert_service_networks};
use ports::convert_endpoint_spec;
use secrets::{convert_config_refs, convert_configs, convert_secret_refs, convert_secrets};
use volumes::convert_mount;

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

/// A stack network.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkObject {
    /// The key in the compose file.
    pub key: String,
    /// The swarm name: `<stack>_<key>`, or `name:`.
    pub name: String,
    pub spec: NetworkCreateRequest,
}

/// Where a secret's or config's bytes come from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The bytes themselves (a config's `content`, or the empty data of a driver secret).
    Content(Vec<u8>),
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

/// A stack service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceObject {
    /// The key in the compose file.
    pub key: String,
    /// The swarm name: `<stack>_<key>`.
    pub name: String,
    pub spec: ServiceSpec,
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
        .collect::<Result<_, _>>()?;
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
    let secrets = spec
        .task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut())
        .and_then(|c| c.secrets.as_mut());
    for reference in secrets.into_iter().flatten() {
        if let Some((name, id)) = reference.secret_name.as_ref().and_then(|n| map.get(n)) {
            reference.secret_name = Some(name.clone());
            reference.secret_id = Some(id.clone());
        }
    }
}

/// Points the service's config references at new names and IDs, as [`rename_secret_refs`].
pub fn rename_config_refs(spec: &mut ServiceSpec, map: &HashMap<String, (String, String)>) {
    let configs = spec
        .task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut())
        .and_then(|c| c.configs.as_mut());
    for reference in configs.into_iter().flatten() {
        if let Some((name, id)) = reference.config_name.as_ref().and_then(|n| map.get(n)) {
            reference.config_name = Some(name.clone());
            reference.config_id = Some(id.clone());
        }
    }
}

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
fn object_name(
    stack: &str,
    key: &str,
    name: Option<&String>,
    external: Option<&External>,
) -> String {
    let legacy = external.and_then(External::legacy_name);
    match (name, legacy) {
        (Some(name), _) => name.clone(),
        (None, Some(legacy)) => legacy.to_owned(),
        (None, None) if external.is_some_and(External::is_external) => key.to_owned(),
        (None, None) => scope(stack, key),
    }
}

fn is_external(external: Option<&External>) -> bool {
    external.is_some_and(External::is_external)
}

fn convert_service(
    stack: &str,
    compose: &ComposeFile,
    key: &str,
    service: &Service,
) -> Result<ServiceSpec, String> {
    let deploy = service.deploy.clone().unwrap_or_default();
    let image = service.image.clone().unwrap_or_default();
    let mut labels = stack_labels(stack, deploy.labels.as_ref());
    labels.insert(LABEL_IMAGE.to_owned(), image.clone());

    let container = convert_container(stack, compose, service, image)?;
    let task_template = TaskSpec {
        container_spec: Some(container),
        resources: Some(convert_resources(&deploy)),
        restart_policy: convert_restart_policy(service)?,
        placement: Some(convert_placement(&deploy)),
        networks: Some(convert_service_networks(stack, compose, key, service)?),
        log_driver: service.logging.as_ref().map(|logging| TaskSpecLogDriver {
            name: Some(logging.driver.clone().unwrap_or_default()),
            options: logging
                .options
                .as_ref()
                .map(|o| to_hash_map(o.to_string_map()))
                .and_then(non_empty_map),
        }),
        ..TaskSpec::default()
    };
    Ok(ServiceSpec {
        name: Some(scope(stack, key)),
        labels: Some(labels),
        task_template: Some(task_template),
        mode: Some(convert_mode(deploy.mode, deploy.replicas)?),
        update_config: deploy.update_config.as_ref().map(update_config),
        rollback_config: deploy.rollback_config.as_ref().map(rollback_config),
        networks: None,
        endpoint_spec: Some(convert_endpoint_spec(&deploy, service)?),
    })
}

fn convert_container(
    stack: &str,
    compose: &ComposeFile,
    service: &Service,
    image: String,
) -> Result<TaskSpecContainerSpec, String> {
    let command = |c: &Option<Command>| -> Result<_, String> {
        Ok(c.as_ref()
            .map(Command::to_args)
            .transpose()?
            .and_then(non_empty))
    };
    let hosts = match &service.extra_hosts {
        Some(hosts) => hosts
            .host_entries()
            .map_err(|(_, entry)| format!("invalid extra host {entry:?}"))?
            .into_iter()
            // SwarmKit's notation: "IP-address hostname".
            .map(|(host, ip)| format!("{ip} {host}"))
            .collect(),
        None => Vec::new(),
    };
    let dns = service.dns.as_ref().map(|d| d.to_vec()).unwrap_or_default();
    let dns_search = service
        .dns_search
        .as_ref()
        .map(|d| d.to_vec())
        .unwrap_or_default();
    let dns_config =
        (!dns.is_empty() || !dns_search.is_empty()).then(|| TaskSpecContainerSpecDnsConfig {
            nameservers: non_empty(dns),
            search: non_empty(dns_search),
            options: None,
        });
    let (cap_add, cap_drop) = effective_capabilities(&service.cap_add, &service.cap_drop);
    let mut ulimits: Vec<ResourcesUlimits> = service
        .ulimits
        .iter()
        .map(|(name, limit)| {
            let (soft, hard) = limit.limits();
            ResourcesUlimits {
                name: Some(name.clone()),
                soft: Some(soft),
                hard: Some(hard),
            }
        })
        .collect();
    ulimits.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(TaskSpecContainerSpec {
        image: Some(image),
        labels: Some(stack_labels(stack, service.labels.as_ref())),
        command: command(&service.entrypoint)?,
        args: command(&service.command)?,
        hostname: non_empty_str(service.hostname.as_ref()),
        env: non_empty(convert_environment(service.environment.as_ref())),
        dir: non_empty_str(service.working_dir.as_ref()),
        user: non_empty_str(service.user.as_ref()),
        privileges: Some(TaskSpecContainerSpecPrivileges {
            credential_spec: service.credential_spec.as_ref().and_then(|spec| {
                (spec.file.is_some() || spec.registry.is_some()).then(|| {
                    TaskSpecContainerSpecPrivilegesCredentialSpec {
                        file: spec.file.clone(),
                        registry: spec.registry.clone(),
                        ..TaskSpecContainerSpecPrivilegesCredentialSpec::default()
                    }
                })
            }),
            ..TaskSpecContainerSpecPrivileges::default()
        }),
        tty: service.tty.filter(|t| *t),
        open_stdin: service.stdin_open.filter(|t| *t),
        read_only: service.read_only.filter(|t| *t),
        mounts: non_empty(
            service
                .volumes
                .iter()
                .map(|v| convert_mount(stack, compose, v))
                .collect::<Result<_, _>>()?,
        ),
        stop_signal: non_empty_str(service.stop_signal.as_ref()),
        stop_grace_period: service.stop_grace_period.as_ref().map(|d| d.nanos()),
        health_check: convert_healthcheck(service),
        hosts: non_empty(hosts),
        dns_config,
        secrets: non_empty(convert_secret_refs(stack, compose, &service.secrets)?),
        oom_score_adj: service.oom_score_adj.and_then(non_zero),
        configs: non_empty(convert_config_refs(stack, compose, &service.configs)?),
        isolation: non_empty_str(service.isolation.as_ref())
            .map(|i| i.parse())
            .transpose()?,
        init: service.init,
        sysctls: service
            .sysctls
            .as_ref()
            .map(|s| to_hash_map(s.to_string_map()))
            .and_then(non_empty_map),
        capability_add: non_empty(cap_add),
        capability_drop: non_empty(cap_drop),
        ulimits: non_empty(ulimits),
        groups: None,
    })
}

/// `KEY=VALUE` (or a bare `KEY` for a variable without value), sorted. A key listed twice
/// keeps its last value: the CLI loads the list into a map.
fn convert_environment(environment: Option<&ListOrMap>) -> Vec<String> {
    let unique: HashMap<String, Option<String>> = environment
        .map(|e| e.entries('='))
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut env: Vec<String> = unique
        .into_iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k,
        })
        .collect();
    env.sort();
    env
}

/// Capabilities normalised to `CAP_*`, with `ALL` absorbing the rest and an added capability
/// winning over a dropped one, as the CLI's `EffectiveCapAddCapDrop`.
fn effective_capabilities(add: &[String], drop: &[String]) -> (Vec<String>, Vec<String>) {
    fn normalize(caps: &[String]) -> BTreeSet<String> {
        let set: BTreeSet<String> = caps
            .iter()
            .map(|c| {
                let c = c.trim().to_ascii_uppercase();
                if c == "ALL" || c == "RESET" || c.starts_with("CAP_") {
                    c
                } else {
                    format!("CAP_{c}")
                }
            })
            .collect();
        if set.contains("ALL") {
            BTreeSet::from(["ALL".to_owned()])
        } else {
            set
        }
    }
    let (add, drop) = (normalize(add), normalize(drop));
    let cap_drop = drop
        .iter()
        .filter(|c| !add.contains(*c) && *c != "RESET")
        .cloned()
        .collect();
    let cap_add = add.into_iter().filter(|c| c != "RESET").collect();
    (cap_add, cap_drop)
}

fn convert_healthcheck(service: &Service) -> Option<HealthConfig> {
    let healthcheck = service.healthcheck.as_ref()?;
    if healthcheck.disable == Some(true) {
        return Some(HealthConfig {
            test: Some(vec!["NONE".to_owned()]),
            ..HealthConfig::default()
        });
    }
    let nanos = |d: &Option<GoDuration>| d.as_ref().map(|d| d.nanos()).and_then(non_zero);
    Some(HealthConfig {
        test: healthcheck.test.as_ref().map(|test| match test {
            StringOrList::One(shell) => {
                vec!["CMD-SHELL".to_owned(), shell.clone()]
            }
            StringOrList::Many(list) => list.clone(),
        }),
        interval: nanos(&healthcheck.interval),
        timeout: nanos(&healthcheck.timeout),
        retries: healthcheck
            .retries
            .and_then(|r| i64::try_from(r).ok())
            .and_then(non_zero),
        start_period: nanos(&healthcheck.start_period),
        start_interval: nanos(&healthcheck.start_interval),
    })
}

/// `deploy.restart_policy`, else the legacy `restart:` key, as the CLI does.
fn convert_restart_policy(service: &Service) -> Result<Option<TaskSpecRestartPolicy>, String> {
    if let Some(policy) = service
        .deploy
        .as_ref()
        .and_then(|d| d.restart_policy.as_ref())
    {
        return Ok(Some(TaskSpecRestartPolicy {
            condition: policy.condition.map(|c| c.as_str().parse()).transpose()?,
            delay: policy.delay.as_ref().map(|d| d.nanos()),
            max_attempts: policy.max_attempts.and_then(|m| i64::try_from(m).ok()),
            window: policy.window.as_ref().map(|d| d.nanos()),
        }));
    }
    let Some(restart) = &service.restart else {
        return Ok(None);
    };
    let (name, count) = parse_restart(restart)?;
    let condition = match name {
        "always" | "unless-stopped" => "any",
        "on-failure" => "on-failure",
        _ => return Ok(None),
    };
    Ok(Some(TaskSpecRestartPolicy {
        condition: Some(condition.parse()?),
        max_attempts: (name == "on-failure")
            .then(|| i64::try_from(count.unwrap_or(0)).unwrap_or(i64::MAX)),
        ..TaskSpecRestartPolicy::default()
    }))
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
    fn everything_service_and_container_convert_as_the_cli_does() {
        let objects = convert(EVERYTHING);
        let web = service(&objects, "web");
        let c = container(web);
        assert_eq!(c.command, Some(vec!["/bin/sh".to_owned(), "-c".to_owned()]));
        assert_eq!(
            c.env,
            Some(vec![
                "DEBUG=true".to_owned(),
                "EMPTY".to_owned(),
                "PORT=8080".to_owned(),
                "TZ=UTC".to_owned(),
            ])
        );
        let labels = c.labels.as_ref().unwrap();
        assert_eq!(labels["com.example.b"], "");
        assert_eq!(
            c.hosts,
            Some(vec![
                "162.242.195.82 somehost".to_owned(),
                "50.31.209.229 otherhost".to_owned()
            ])
        );
        assert_eq!(c.capability_add, Some(vec!["CAP_NET_ADMIN".to_owned()]));
        assert_eq!(c.capability_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(c.stop_grace_period, Some(20_000_000_000));
        assert_eq!(
            (c.init, c.read_only, c.tty, c.open_stdin),
            (Some(true), Some(true), Some(true), Some(true))
        );
        assert_eq!(c.sysctls.as_ref().unwrap()["net.core.somaxconn"], "1024");
        let ulimits = c.ulimits.as_ref().unwrap();
        assert_eq!(ulimits[0].name.as_deref(), Some("nofile"));
        assert_eq!(
            (ulimits[0].soft, ulimits[0].hard),
            (Some(20000), Some(40000))
        );
        assert_eq!(
            (ulimits[1].soft, ulimits[1].hard),
            (Some(65535), Some(65535))
        );
        let dns = c.dns_config.as_ref().unwrap();
        assert_eq!(dns.nameservers, Some(vec!["8.8.8.8".to_owned()]));
        let health = c.health_check.as_ref().unwrap();
        assert_eq!(health.test, Some(vec!["CMD".to_owned(), "true".to_owned()]));
        assert_eq!(health.interval, Some(10_000_000_000));
        assert_eq!(health.timeout, Some(90_000_000_000));
        assert_eq!(health.start_period, Some(1_500_000_000));
        assert_eq!(health.retries, Some(3));

        let t = task(web);
        let restart = t.restart_policy.as_ref().unwrap();
        assert_eq!(
            (restart.delay, restart.max_attempts, restart.window),
            (Some(5_000_000_000), Some(3), Some(120_000_000_000))
        );
        let log = t.log_driver.as_ref().unwrap();
        assert_eq!(log.name.as_deref(), Some("json-file"));
        assert_eq!(log.options.as_ref().unwrap()["max-file"], "3");

        let job = service(&objects, "job");
        let restart = task(job).restart_policy.as_ref().unwrap();
        assert_eq!(
            (restart.condition, restart.max_attempts),
            (
                Some(bollard::models::TaskSpecRestartPolicyConditionEnum::ON_FAILURE),
                Some(3)
            )
        );
    }

    #[test]
    fn capabilities_follow_the_cli_rules() {
        let caps = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            effective_capabilities(
                &caps(&["net_admin", "CAP_SYS_TIME"]),
                &caps(&["net_admin", "chown"])
            ),
            (
                caps(&["CAP_NET_ADMIN", "CAP_SYS_TIME"]),
                caps(&["CAP_CHOWN"])
            )
        );
        assert_eq!(
            effective_capabilities(&caps(&["all", "chown"]), &caps(&["RESET"])),
            (caps(&["ALL"]), caps(&[]))
        );
    }

    #[test]
    fn a_variable_listed_twice_keeps_its_last_value() {
        let objects =
            convert("services:\n  a:\n    image: x\n    environment: [A=0, B, A.B=1, A=1]\n");
        assert_eq!(
            container(service(&objects, "a")).env,
            Some(vec!["A.B=1".to_owned(), "A=1".to_owned(), "B".to_owned()])
        );
    }

    #[test]
    fn legacy_restart_values_map_to_swarm_conditions() {
        let cases = [
            ("always", Some(("any", None))),
            ("unless-stopped", Some(("any", None))),
            ("on-failure", Some(("on-failure", Some(0)))),
            ("on-failure:5", Some(("on-failure", Some(5)))),
            ("no", None),
        ];
        for (restart, expected) in cases {
            let objects = convert(&format!(
                "services:\n  a:\n    image: x\n    restart: \"{restart}\"\n"
            ));
            let policy = task(service(&objects, "a")).restart_policy.clone();
            let got = policy.map(|p| (p.condition.unwrap().to_string(), p.max_attempts));
            assert_eq!(got, expected.map(|(c, m)| (c.to_owned(), m)), "{restart}");
        }
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
    fn secret_content_never_shows_in_debug() {
        let source = SecretSource::Content(b"hunter2".to_vec());
        assert_eq!(format!("{source:?}"), "Content(<7 bytes>)");
    }
}
