//! The compose file a Stack carries: version 3.x / compose-spec as `docker stack deploy`
//! accepts it, with the `deploy:` section, as serde + schemars types.
//!
//! Parsing is strict: a key compose does not know (`servics`) is an error naming its path,
//! while `x-*` extension keys are accepted anywhere and dropped, and keys that swarm ignores
//! (`build`, `depends_on`...) are accepted and listed by [`ComposeFile::ignored_keys`] so the
//! caller can warn as the docker CLI does. Cross-field rules live in [`ComposeFile::validate`].

mod units;
mod validate;
mod values;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

pub use units::{parse_cpus, parse_go_duration, parse_ram_bytes};
pub use validate::parse_restart;
pub use values::{
    BindOptions, ByteSize, Command, Cpus, External, ExternalName, FileRef, FileRefLong, GoDuration,
    ListOrMap, PortEntry, PortLong, PortSpec, ScalarMap, ServiceNetwork, ServiceNetworks,
    StringOrList, TmpfsOptions, VolumeEntry, VolumeMount, VolumeOptions,
};

use super::FieldError;

/// The secret key the `apply` loader writes in place of a secret's `file:`: the name of the
/// encrypted value in the store, so file contents never sit in etcd in plain text.
pub const STORE_KEY_FIELD: &str = "x-swarmkeeper-secret";

/// A compose file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct ComposeFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub services: IndexMap<String, Service>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub networks: IndexMap<String, NetworkDef>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub volumes: IndexMap<String, VolumeDef>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub secrets: IndexMap<String, SecretDef>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub configs: IndexMap<String, ConfigDef>,
}

impl Serialize for ComposeFile {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ComposeFile::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for ComposeFile {
    /// Goes through a JSON value so `x-*` keys can be dropped and `null` entries
    /// (`volumes: {data: }`) read as empty objects before the strict typed pass; the typed
    /// pass's error carries the path inside the compose file.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        ComposeFile::from_value(value, "").map_err(|err| match err.path.as_str() {
            "" => D::Error::custom(err.message),
            _ => D::Error::custom(err),
        })
    }
}

/// `base` and a path inside it as one dotted path (`spec.compose.services.web`,
/// `spec.ports[0]`); serde_path_to_error writes the root as `.`.
pub(crate) fn join_path(base: &str, inner: &serde_path_to_error::Path) -> String {
    match inner.to_string().as_str() {
        "." => base.to_owned(),
        inner if base.is_empty() || inner.starts_with('[') => format!("{base}{inner}"),
        inner => format!("{base}.{inner}"),
    }
}

/// A wrapper so the strict, derived deserializer can be driven by `serde_path_to_error`.
struct Strict(ComposeFile);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ComposeFile::deserialize(deserializer).map(Strict)
    }
}

/// Keys whose values are user maps: their keys are data, never extensions.
const USER_MAPS: &[&str] = &[
    "labels",
    "environment",
    "sysctls",
    "extra_hosts",
    "driver_opts",
    "options",
    "args",
    "ulimits",
];

fn strip_extensions(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| !k.starts_with("x-") || k == STORE_KEY_FIELD);
            for (key, child) in map.iter_mut() {
                if !USER_MAPS.contains(&key.as_str()) {
                    strip_extensions(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_extensions),
        _ => {}
    }
}

/// Strips extensions below a map of named objects (service names, network keys) without
/// touching the names themselves, and reads `name: null` as `name: {}`.
fn normalize_named(value: &mut Value) {
    if let Value::Object(map) = value {
        for child in map.values_mut() {
            if child.is_null() {
                *child = Value::Object(serde_json::Map::new());
            }
            strip_extensions(child);
        }
    }
}

fn normalize_top(value: &mut Value) {
    let Value::Object(top) = value else { return };
    top.retain(|k, _| !k.starts_with("x-"));
    if let Some(version) = top.get_mut("version")
        && let Value::Number(n) = version
    {
        *version = Value::String(n.to_string());
    }
    for key in ["networks", "volumes", "secrets", "configs"] {
        if let Some(named) = top.get_mut(key) {
            normalize_named(named);
        }
    }
    if let Some(Value::Object(services)) = top.get_mut("services") {
        for service in services.values_mut() {
            let Value::Object(fields) = service else {
                continue;
            };
            fields.retain(|k, _| !k.starts_with("x-"));
            for (key, child) in fields.iter_mut() {
                match key.as_str() {
                    "networks" => normalize_named(child),
                    "deploy" if child.is_null() => *child = Value::Object(serde_json::Map::new()),
                    k if USER_MAPS.contains(&k) => {}
                    _ => strip_extensions(child),
                }
            }
        }
    }
}

impl ComposeFile {
    /// Parses a compose file held as a JSON value (`x-*` keys dropped, `null` entries read
    /// as empty); a problem names its path under `base_path`.
    ///
    /// # Errors
    /// The first type error, at its full path (`spec.compose.services.web.deploy.replicas`).
    pub fn from_value(mut value: Value, base_path: &str) -> Result<Self, FieldError> {
        normalize_top(&mut value);
        serde_path_to_error::deserialize::<_, Strict>(value)
            .map(|strict| strict.0)
            .map_err(|err| super::redact::field_error(base_path, err, false))
    }

    /// Cross-field checks (undefined networks, secrets, configs and volumes, missing images,
    /// replicas in global mode, malformed ports and mounts...), with paths prefixed by
    /// `base_path` (`spec.compose.services.web.networks[0]`).
    pub fn validate(&self, base_path: &str) -> Vec<FieldError> {
        validate::validate(self, base_path)
    }

    /// Paths of the keys swarm ignores (`services.web.build`), for the warnings the docker CLI
    /// prints as "Ignoring unsupported options".
    pub fn ignored_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        for (name, service) in &self.services {
            for key in service.ignored_keys() {
                keys.push(format!("services.{name}.{key}"));
            }
            if let Some(networks) = &service.networks {
                for (net, options) in networks.entries() {
                    if options.ipv4_address.is_some() {
                        keys.push(format!("services.{name}.networks.{net}.ipv4_address"));
                    }
                    if options.ipv6_address.is_some() {
                        keys.push(format!("services.{name}.networks.{net}.ipv6_address"));
                    }
                }
            }
        }
        keys
    }
}

/// One service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Command>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Command>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<ListOrMap>,
    /// Read by the docker CLI from files beside the compose file; swarmkeeper stores the
    /// compose file alone, so this is rejected by `validate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_file: Option<StringOrList>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<ListOrMap>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<ServiceNetworks>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<FileRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<FileRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// Accepted by the CLI's schema but never converted: swarm ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<StringOrList>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sysctls: Option<ListOrMap>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub ulimits: IndexMap<String, Ulimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_hosts: Option<ListOrMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<StringOrList>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_search: Option<StringOrList>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin_open: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_spec: Option<CredentialSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<Deploy>,
    /// Legacy restart policy: listed as unsupported by the CLI, yet used when
    /// `deploy.restart_policy` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    // Keys the docker CLI accepts and swarm ignores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroupns_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_parent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domainname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expose: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_links: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_opt: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns_mode: Option<String>,
}

impl Service {
    /// Keys of this service swarm ignores, in the order the CLI lists them (sorted).
    fn ignored_keys(&self) -> Vec<&'static str> {
        let i = self;
        let set: [(&'static str, bool); 20] = [
            ("build", i.build.is_some()),
            ("cgroup_parent", i.cgroup_parent.is_some()),
            ("cgroupns_mode", i.cgroupns_mode.is_some()),
            ("container_name", i.container_name.is_some()),
            ("depends_on", i.depends_on.is_some()),
            ("devices", i.devices.is_some()),
            ("domainname", i.domainname.is_some()),
            ("expose", i.expose.is_some()),
            ("external_links", i.external_links.is_some()),
            ("ipc", i.ipc.is_some()),
            ("links", i.links.is_some()),
            ("mac_address", i.mac_address.is_some()),
            ("network_mode", i.network_mode.is_some()),
            ("pid", i.pid.is_some()),
            ("privileged", i.privileged.is_some()),
            ("restart", self.restart.is_some()),
            ("security_opt", i.security_opt.is_some()),
            ("shm_size", i.shm_size.is_some()),
            ("tmpfs", self.tmpfs.is_some()),
            ("userns_mode", i.userns_mode.is_some()),
        ];
        set.into_iter()
            .filter_map(|(key, present)| present.then_some(key))
            .collect()
    }
}

/// A `ulimits:` entry: one number for both limits, or `{soft, hard}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Ulimit {
    Single(i64),
    Pair(UlimitPair),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UlimitPair {
    pub soft: i64,
    pub hard: i64,
}

impl Ulimit {
    /// `(soft, hard)`.
    pub fn limits(&self) -> (i64, i64) {
        match self {
            Self::Single(n) => (*n, *n),
            Self::Pair(p) => (p.soft, p.hard),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Healthcheck {
    /// A string runs with the shell (`CMD-SHELL`); a list starts with `CMD`, `CMD-SHELL` or `NONE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<StringOrList>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<ScalarMap>,
}

/// Windows credential spec; exactly one key may be set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
}

/// The `deploy:` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<DeployMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<ListOrMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_config: Option<UpdateConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_config: Option<UpdateConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_mode: Option<EndpointMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DeployMode {
    Replicated,
    Global,
    ReplicatedJob,
    GlobalJob,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EndpointMode {
    Vip,
    Dnsrr,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferences: Vec<PlacementPreference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas_per_node: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementPreference {
    pub spread: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceLimits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservations: Option<ResourceReservations>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<Cpus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceReservations {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<Cpus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generic_resources: Vec<GenericResource>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenericResource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discrete_resource_spec: Option<DiscreteResource>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscreteResource {
    pub kind: String,
    pub value: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<RestartCondition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<GoDuration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    None,
    OnFailure,
    Any,
}

/// `update_config` and `rollback_config`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_action: Option<FailureAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failure_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<UpdateOrder>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    Continue,
    Pause,
    Rollback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    StartFirst,
    StopFirst,
}

/// The spelling of a compose enum, which is also the Docker API's spelling.
macro_rules! compose_names {
    ($($ty:ident { $($variant:ident => $name:literal),+ $(,)? })+) => {
        $(impl $ty {
            /// The value as written in compose and sent to Docker.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name),+
                }
            }
        })+
    };
}

compose_names! {
    DeployMode { Replicated => "replicated", Global => "global", ReplicatedJob => "replicated-job", GlobalJob => "global-job" }
    EndpointMode { Vip => "vip", Dnsrr => "dnsrr" }
    RestartCondition { None => "none", OnFailure => "on-failure", Any => "any" }
    FailureAction { Continue => "continue", Pause => "pause", Rollback => "rollback" }
    UpdateOrder { StartFirst => "start-first", StopFirst => "stop-first" }
}

/// A top-level network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkDef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_opts: Option<ScalarMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<External>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<ListOrMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Ipam>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ipam {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<IpamPool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IpamPool {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
}

/// A top-level volume.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeDef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_opts: Option<ScalarMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<External>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<ListOrMap>,
}

/// A top-level secret.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretDef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A path the `apply` loader reads and replaces with `x-swarmkeeper-secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<External>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<ListOrMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_opts: Option<ScalarMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_driver: Option<String>,
    /// The store key of the secret's encrypted value (written by the `apply` loader).
    #[serde(
        rename = "x-swarmkeeper-secret",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub store_key: Option<String>,
}

/// A top-level config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigDef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A path the `apply` loader reads into `content`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<External>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<ListOrMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_driver: Option<String>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The compose parts of the shared examples, as users write them.
    pub(crate) const KITTENAPI: &str = r#"
version: '3.8'
services:
  kittenapi:
    image: sirrtea/kittenapi
    environment:
      DATABASE_URI_FILE: /run/secrets/kittenapi_db_uri
    secrets:
      - kittenapi_db_uri
    networks:
      - frontend
      - backend
    deploy:
      replicas: 2
      labels:
        traefik.http.routers.kittenapi.rule: Host(`kittenapi.example.com`)
        traefik.http.services.kittenapi.loadbalancer.server.port: "8080"
        traefik.enable: "true"
      placement:
        constraints:
          - node.labels.usage == apps
networks:
  frontend:
    external: true
  backend:
    external: true
secrets:
  kittenapi_db_uri:
    external: true
"#;

    pub(crate) const TRAEFIK: &str = r#"
version: '3.2'
services:
  traefik:
    image: traefik:v2.10
    command: --api.insecure=true --providers.docker --providers.docker.swarmMode --providers.docker.exposedbydefault=false
    ports:
      - target: 80
        published: 80
        protocol: tcp
        mode: host
      - target: 8080
        published: 8080
        protocol: tcp
        mode: host
    volumes:
      - /var/run/docker.sock:/var/run/docker.sock
    networks:
      - frontend
    deploy:
      mode: global
      placement:
        constraints:
          - node.role == manager
networks:
  frontend:
    external: true
"#;

    pub(crate) const WHOAMI: &str = r#"
version: '3'
services:
  whoami:
    image: emilevauge/whoami
    networks:
      - frontend
    deploy:
      replicas: 4
      labels:
        traefik.http.routers.whoami.rule: Host(`whoami.docker.localhost`)
        traefik.http.services.whoami.loadbalancer.server.port: "80"
        traefik.enable: "true"
networks:
  frontend:
    external: true
"#;

    pub(crate) const LAB3: &str = r#"
version: '3.8'
services:
  gateway:
    image: mobylab/cc-laborator3-gateway
    environment:
      BOOKS_SERVICE_API_ROUTE: books-service/api
      NODE_ENV: development
    ports:
      - "3000:80"
    networks: [gateway-books]
    deploy:
      replicas: 3
      placement:
        max_replicas_per_node: 2
  books-service:
    image: mobylab/cc-laborator3-books
    environment:
      IO_SERVICE_API_ROUTE: io-service/api
      NODE_ENV: development
    networks: [gateway-books, books-io]
    deploy:
      replicas: 2
      placement:
        max_replicas_per_node: 1
  io-service:
    image: mobylab/cc-laborator3-io
    environment:
      PGUSER_FILE: db_user
      PGPASSWORD_FILE: db_password
      PGHOST: db
      PGPORT: "5432"
      PGDATABASE: books
      NODE_ENV: staging
    secrets: [db_user, db_password]
    networks: [books-io, io-db]
    deploy:
      replicas: 3
      resources:
        limits:
          cpus: "0.2"
          memory: 50M
      restart_policy:
        condition: on-failure
  db:
    image: postgres:12
    environment:
      POSTGRES_DB: books
      POSTGRES_USER_FILE: /run/secrets/db_user
      POSTGRES_PASSWORD_FILE: /run/secrets/db_password
    secrets: [db_user, db_password]
    volumes:
      - db-data:/var/lib/postgresql/data
      - ./database/init-db.sql:/docker-entrypoint-initdb.d/init-db.sql
    networks: [io-db, db-adminer]
  adminer:
    image: adminer
    ports:
      - "8080:8080"
    networks: [db-adminer]
volumes:
  db-data: {}
networks:
  gateway-books: {}
  books-io: {}
  io-db: {}
  db-adminer: {}
secrets:
  db_user:
    external: true
  db_password:
    external: true
"#;

    /// Every key swarm honours, in both spellings where there are two.
    pub(crate) const EVERYTHING: &str = r#"
version: "3.13"
x-common: &common
  TZ: UTC
services:
  web:
    image: local/busybox:1
    x-note: ignored
    command: ["sh", "-c", "sleep 1000"]
    entrypoint: /bin/sh -c
    environment:
      <<: *common
      PORT: 8080
      DEBUG: true
      EMPTY:
    labels: ["com.example.a=1", "com.example.b"]
    ports:
      - "3000:80"
      - "8080:80/udp"
      - 9000
      - target: 443
        published: 8443
        protocol: tcp
        mode: host
    networks:
      front:
        aliases: [www]
      back: {}
    volumes:
      - data:/data:ro
      - /etc/hosts:/host/hosts:ro
      - type: volume
        source: data
        target: /other
        volume: {nocopy: true}
      - type: bind
        source: /tmp
        target: /tmp2
        bind: {propagation: rshared}
      - type: tmpfs
        target: /scratch
        tmpfs: {size: 1048576}
    secrets:
      - token
      - source: token
        target: /etc/token
        uid: "100"
        gid: "101"
        mode: 0400
    configs:
      - app_conf
      - source: app_conf
        target: /etc/app.conf
    healthcheck:
      test: ["CMD", "true"]
      interval: 10s
      timeout: 1m30s
      retries: 3
      start_period: 1.5s
    hostname: web1
    user: "1000:1000"
    working_dir: /srv
    stop_grace_period: 20s
    stop_signal: SIGINT
    init: true
    read_only: true
    cap_add: [net_admin]
    cap_drop: [ALL]
    sysctls:
      net.core.somaxconn: 1024
    ulimits:
      nproc: 65535
      nofile: {soft: 20000, hard: 40000}
    extra_hosts:
      - "somehost:162.242.195.82"
      - "otherhost=50.31.209.229"
    dns: 8.8.8.8
    dns_search: [example.com]
    logging:
      driver: json-file
      options: {max-size: 10m, max-file: 3}
    tty: true
    stdin_open: true
    deploy:
      mode: replicated
      replicas: 2
      endpoint_mode: dnsrr
      labels: {team: cats}
      placement:
        constraints: [node.role == worker]
        preferences: [{spread: node.labels.zone}]
        max_replicas_per_node: 1
      resources:
        limits: {cpus: 0.5, memory: 50M, pids: 100}
        reservations:
          cpus: '0.25'
          memory: 20M
          generic_resources:
            - discrete_resource_spec: {kind: gpu, value: 2}
      restart_policy:
        condition: on-failure
        delay: 5s
        max_attempts: 3
        window: 2m
      update_config:
        parallelism: 2
        delay: 10s
        order: start-first
      rollback_config:
        failure_action: continue
        monitor: 30s
        max_failure_ratio: 0.5
  job:
    image: local/busybox:1
    build: .
    depends_on: [web]
    container_name: thejob
    restart: on-failure:3
    expose: ["80"]
    privileged: true
    deploy:
      mode: global-job
networks:
  front:
    driver: overlay
    attachable: true
    driver_opts: {encrypted: ""}
    labels: [a=b]
    ipam:
      config: [{subnet: 10.77.0.0/24}]
  back:
    name: shared-back
    external: true
volumes:
  data:
    driver: local
    labels: {kind: data}
secrets:
  token:
    x-swarmkeeper-secret: stacks/demo/token
configs:
  app_conf:
    content: "listen 80\n"
    template_driver: golang
"#;

    /// Reads a compose file as `apply` does: the hardened YAML loader (budgets against
    /// alias bombs, `0440` octal and `yes` a string as in the docker CLI), then the
    /// typed pass.
    fn try_parse(text: &str) -> Result<ComposeFile, String> {
        let mut documents = crate::api::load::parse_documents(text, false)?;
        if documents.len() != 1 {
            return Err(format!("{} documents, not one", documents.len()));
        }
        ComposeFile::from_value(documents.remove(0), "").map_err(|err| err.to_string())
    }

    pub(crate) fn parse(text: &str) -> ComposeFile {
        try_parse(text).unwrap_or_else(|e| panic!("parse failed: {e}"))
    }

    #[test]
    fn the_examples_parse_and_validate() {
        for text in [KITTENAPI, TRAEFIK, WHOAMI, LAB3, EVERYTHING] {
            let compose = parse(text);
            assert_eq!(compose.validate("spec.compose"), vec![]);
        }
        let lab3 = parse(LAB3);
        assert_eq!(lab3.services.len(), 5);
        let io = &lab3.services["io-service"];
        let limits = io
            .deploy
            .as_ref()
            .and_then(|d| d.resources.as_ref())
            .and_then(|r| r.limits.as_ref())
            .unwrap();
        assert_eq!(
            limits.memory.as_ref().map(ByteSize::bytes),
            Some(52_428_800)
        );
        assert_eq!(limits.cpus.as_ref().map(Cpus::nanos), Some(200_000_000));
    }

    #[test]
    fn serialization_round_trips() {
        for text in [KITTENAPI, TRAEFIK, LAB3, EVERYTHING] {
            let compose = parse(text);
            let json = serde_json::to_value(&compose).unwrap();
            let back: ComposeFile = serde_json::from_value(json).unwrap();
            assert_eq!(back, compose);
        }
    }

    #[test]
    fn extension_keys_are_dropped_but_labels_keep_x_keys() {
        let compose = parse(
            "x-top: 1\nservices:\n  a:\n    image: i\n    x-s: 2\n    labels: {x-keep: v}\n    deploy: {x-d: 3}\n",
        );
        let labels = compose.services["a"]
            .labels
            .as_ref()
            .unwrap()
            .to_string_map();
        assert_eq!(labels.get("x-keep").map(String::as_str), Some("v"));
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_path() {
        let cases = [
            ("servics: {}\n", "servics"),
            ("services:\n  web:\n    imag: x\n", "services.web"),
            (
                "services:\n  web:\n    image: x\n    deploy: {replica: 2}\n",
                "services.web.deploy",
            ),
            (
                "services:\n  web:\n    image: x\n    ports: [{target: 80, publised: 1}]\n",
                "publised",
            ),
            (
                "services:\n  web:\n    image: x\n    stop_grace_period: 10\n",
                "services.web.stop_grace_period",
            ),
            (
                "services:\n  web:\n    image: x\n    healthcheck: {interval: 10x}\n",
                "services.web.healthcheck.interval",
            ),
            (
                "services:\n  web:\n    image: x\n    deploy: {resources: {limits: {memory: lots}}}\n",
                "services.web.deploy.resources.limits.memory",
            ),
            (
                "services:\n  web:\n    image: x\n    deploy: {mode: everywhere}\n",
                "services.web.deploy.mode",
            ),
        ];
        for (text, needle) in cases {
            let err = try_parse(text).expect_err(text);
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    fn errors_of(text: &str) -> Vec<String> {
        parse(text)
            .validate("spec.compose")
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn validation_names_the_field() {
        let cases = [
            (
                "services:\n  web:\n    image: x\n    networks: [nope]\n",
                "spec.compose.services.web.networks[0]: service \"web\" refers to undefined network \"nope\"",
            ),
            (
                "services:\n  web:\n    image: x\n    networks: {nope: {}}\n",
                "spec.compose.services.web.networks.nope:",
            ),
            (
                "services:\n  web:\n    image: x\n    secrets: [s]\n",
                "spec.compose.services.web.secrets[0]: service \"web\" refers to undefined secret \"s\"",
            ),
            (
                "services:\n  web:\n    image: x\n    configs: [{source: c}]\n",
                "spec.compose.services.web.configs[0]:",
            ),
            (
                "services:\n  web:\n    image: x\n    volumes: [data:/d]\n",
                "spec.compose.services.web.volumes[0]: undefined volume \"data\"",
            ),
            ("services:\n  web: {}\n", "spec.compose.services.web.image:"),
            (
                "services:\n  web:\n    image: x\n    deploy: {mode: global, replicas: 2}\n",
                "spec.compose.services.web.deploy.replicas:",
            ),
            (
                "services:\n  web:\n    image: x\n    ports: ['70000:80']\n",
                "spec.compose.services.web.ports[0]:",
            ),
            (
                "services:\n  web:\n    image: x\n    env_file: .env\n",
                "spec.compose.services.web.env_file:",
            ),
            (
                "services:\n  web:\n    image: x\n    volumes: [{type: tmpfs, source: x, target: /t}]\n",
                "invalid tmpfs source",
            ),
            (
                "services:\n  web:\n    image: x\n    volumes: [{type: bind, source: /x, target: /t, volume: {nocopy: true}}]\n",
                "spec.compose.services.web.volumes[0].volume: volume options are incompatible",
            ),
            (
                "services:\n  web:\n    image: x\n    healthcheck: {test: [CMD, 'true'], disable: true}\n",
                "test and disable",
            ),
            (
                "services:\n  web:\n    image: x\n    restart: sometimes\n",
                "spec.compose.services.web.restart:",
            ),
            (
                "services:\n  web:\n    image: x\nsecrets:\n  s: {}\n",
                "spec.compose.secrets.s:",
            ),
            (
                "services:\n  web:\n    image: x\nvolumes:\n  v: {external: true, driver: local}\n",
                "spec.compose.volumes.v.driver:",
            ),
            ("version: '2.4'\nservices: {}\n", "spec.compose.version:"),
        ];
        for (text, needle) in cases {
            let errors = errors_of(text);
            assert!(
                errors.iter().any(|e| e.contains(needle)),
                "{text}: {errors:?}"
            );
        }
    }

    #[test]
    fn the_default_network_needs_no_definition() {
        assert!(errors_of("services:\n  web:\n    image: x\n    networks: [default]\n").is_empty());
    }

    #[test]
    fn ignored_keys_are_listed_as_the_cli_warns() {
        let compose = parse(EVERYTHING);
        assert_eq!(
            compose.ignored_keys(),
            vec![
                "services.job.build",
                "services.job.container_name",
                "services.job.depends_on",
                "services.job.expose",
                "services.job.privileged",
                "services.job.restart",
            ]
        );
    }

    #[test]
    fn enum_names_match_their_serde_spelling() {
        for mode in [
            DeployMode::Replicated,
            DeployMode::Global,
            DeployMode::ReplicatedJob,
            DeployMode::GlobalJob,
        ] {
            assert_eq!(serde_json::to_value(mode).unwrap(), mode.as_str());
        }
        for order in [UpdateOrder::StartFirst, UpdateOrder::StopFirst] {
            assert_eq!(serde_json::to_value(order).unwrap(), order.as_str());
        }
        for condition in [
            RestartCondition::None,
            RestartCondition::OnFailure,
            RestartCondition::Any,
        ] {
            assert_eq!(serde_json::to_value(condition).unwrap(), condition.as_str());
        }
    }

    #[test]
    fn schema_generates() {
        let schema = schemars::schema_for!(ComposeFile);
        let text = serde_json::to_string(&schema).unwrap();
        assert!(text.contains("max_replicas_per_node"));
        assert!(text.contains("x-swarmkeeper-secret"));
    }
}
