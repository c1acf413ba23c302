//! The compose file a Stack carries: version 3.x / compose-spec as `docker stack deploy`
//! accepts it, with the `deploy:` section, as serde + schemars types.
//!
//! Parsing is strict: a key compose does not know (`servics`) is an error naming its path,
//! while `x-*` extension keys are accepted anywhere and dropped, and keys that swarm ignores
//! (`build`, `depends_on`...) are accepted and listed by [`ComposeFile::ignored_keys`] so the
//! caller can warn as the docker CLI does. Cross-field rules live in [`ComposeFile::validate`].
//!
//! # Layout
//! This file holds [`ComposeFile`] and its parsing (extensions dropped, `null` entries read
//! as empty); the types are split by the part of the file they describe:
//! - `service`: a service and its container settings; `deploy`: its `deploy:` section;
//! - `ports`, `mounts`, `refs`: its `ports:`, `volumes:`, and `secrets:`/`configs:`/`networks:`
//!   entries, each in its short and long form;
//! - `top_level`: the networks, volumes, secrets and configs the file defines;
//! - `values`: the value types with more than one spelling, `units`: durations, sizes, CPUs;
//! - `validate`: the cross-field rules; `tests`: the shared compose examples and their tests.

mod deploy;
mod mounts;
mod ports;
mod refs;
mod service;
mod top_level;
mod units;
mod validate;
mod values;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

pub use deploy::{
    Deploy, DeployMode, DiscreteResource, EndpointMode, FailureAction, GenericResource, Placement,
    PlacementPreference, ResourceLimits, ResourceReservations, Resources, RestartCondition,
    RestartPolicy, UpdateConfig, UpdateOrder,
};
pub use mounts::{BindOptions, TmpfsOptions, VolumeEntry, VolumeMount, VolumeOptions};
pub use ports::{PortEntry, PortLong, PortSpec};
pub use refs::{FileRef, FileRefLong, ServiceNetwork, ServiceNetworks};
pub use service::{CredentialSpec, Healthcheck, Logging, Service, Ulimit, UlimitPair};
pub(crate) use top_level::TopLevel;
pub use top_level::{ConfigDef, Ipam, IpamPool, NetworkDef, SecretDef, VolumeDef};
pub use units::{parse_cpus, parse_go_duration, parse_ram_bytes};
pub use validate::parse_restart;
pub use values::{
    ByteSize, Command, Cpus, External, ExternalName, GoDuration, ListOrMap, ScalarMap, StringOrList,
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

/// Service keys the docker CLI refuses ("forbidden properties"), with its reasons.
const FORBIDDEN: &[(&str, &str)] = &[
    ("extends", "support for extends is not implemented"),
    (
        "volume_driver",
        "define a volume under the top-level volumes with its driver, and use it from the service",
    ),
    (
        "volumes_from",
        "to share a volume between services, define it under the top-level volumes and use it from each service",
    ),
    ("cpu_quota", "set resource limits under deploy.resources"),
    ("cpu_shares", "set resource limits under deploy.resources"),
    ("cpuset", "set resource limits under deploy.resources"),
    ("mem_limit", "set resource limits under deploy.resources"),
    (
        "memswap_limit",
        "set resource limits under deploy.resources",
    ),
];

/// The first forbidden key of any service, with the CLI's reason.
fn forbidden(value: &Value, base_path: &str) -> Result<(), FieldError> {
    let services = value.get("services").and_then(Value::as_object);
    for (name, service) in services.into_iter().flatten() {
        for (key, reason) in FORBIDDEN {
            if service.get(key).is_some() {
                let path = format!("services.{name}.{key}");
                let path = match base_path {
                    "" => path,
                    base => format!("{base}.{path}"),
                };
                return Err(FieldError::new(
                    path,
                    format!("{key} is not supported by docker stack deploy: {reason}"),
                ));
            }
        }
    }
    Ok(())
}

impl ComposeFile {
    /// Parses a compose file held as a JSON value (`x-*` keys dropped, `null` entries read
    /// as empty); a problem names its path under `base_path`.
    ///
    /// # Errors
    /// The first type error, at its full path (`spec.compose.services.web.deploy.replicas`).
    pub fn from_value(mut value: Value, base_path: &str) -> Result<Self, FieldError> {
        normalize_top(&mut value);
        forbidden(&value, base_path)?;
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

    /// The keys swarm ignores, one entry per key (the docker CLI too warns once per key,
    /// "Ignoring unsupported options: build"), with the paths that use it
    /// (`services.web.build`) and why it is ignored.
    pub fn ignored_keys(&self) -> Vec<IgnoredKey> {
        let mut keys: IndexMap<&'static str, IgnoredKey> = IndexMap::new();
        let mut add = |key: &'static str, reason: &'static str, path: String| {
            keys.entry(key)
                .or_insert_with(|| IgnoredKey {
                    key,
                    reason,
                    paths: Vec::new(),
                })
                .paths
                .push(path);
        };
        for (name, service) in &self.services {
            for (key, reason) in service.ignored_keys() {
                add(key, reason, format!("services.{name}.{key}"));
            }
            if let Some(networks) = &service.networks {
                for (net, options) in networks.entries() {
                    for (key, set) in [
                        ("ipv4_address", options.ipv4_address.is_some()),
                        ("ipv6_address", options.ipv6_address.is_some()),
                    ] {
                        if set {
                            let path = format!("services.{name}.networks.{net}.{key}");
                            add(key, "swarm assigns addresses from the network's pool", path);
                        }
                    }
                }
            }
        }
        if self.name.is_some() {
            let reason = "the stack is named by the record's metadata.name";
            add("name", reason, "name".to_owned());
        }
        let mut keys: Vec<IgnoredKey> = keys.into_values().collect();
        keys.sort_by_key(|k| k.key);
        keys
    }
}

/// A key swarm ignores, as [`ComposeFile::ignored_keys`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredKey {
    pub key: &'static str,
    pub reason: &'static str,
    /// Where it is used, in file order.
    pub paths: Vec<String>,
}

impl std::fmt::Display for IgnoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: ignored ({})", self.paths.join(", "), self.reason)
    }
}

#[cfg(test)]
pub(crate) mod tests;
