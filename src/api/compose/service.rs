//! A compose service: the container it runs (image, command, environment, healthcheck,
//! limits, logging...), with the keys swarm ignores accepted and listed for a warning.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    Command, Deploy, FileRef, GoDuration, ListOrMap, PortEntry, ScalarMap, ServiceNetworks,
    StringOrList, VolumeEntry,
};

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
    // Keys of the compose specification (`docker compose`) that the docker CLI refuses and
    // swarm has no use for: accepted, so files written for compose deploy, and warned about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

/// Why `docker stack deploy` ignores a key, as it warns (its "unsupported" and "deprecated"
/// options), or why swarmkeeper does for the keys of the compose specification.
const UNSUPPORTED: &str = "unsupported by swarm services";
const IGNORED_KEYS: [(&str, &str); 23] = [
    (
        "build",
        "swarm does not build images: build and push it, then deploy the image",
    ),
    ("cgroup_parent", UNSUPPORTED),
    ("cgroupns_mode", UNSUPPORTED),
    (
        "container_name",
        "setting the container name is not supported",
    ),
    (
        "depends_on",
        "swarm starts services in no order: a service must wait for what it needs",
    ),
    ("devices", UNSUPPORTED),
    ("domainname", UNSUPPORTED),
    (
        "expose",
        "exposing ports is unnecessary: services on the same network reach each other's containers on any port",
    ),
    ("external_links", UNSUPPORTED),
    ("ipc", UNSUPPORTED),
    ("links", UNSUPPORTED),
    ("mac_address", UNSUPPORTED),
    ("network_mode", UNSUPPORTED),
    ("pid", UNSUPPORTED),
    (
        "platform",
        "swarm schedules by placement constraints: use node.platform.os/arch",
    ),
    ("privileged", UNSUPPORTED),
    (
        "profiles",
        "docker stack deploy has no profiles: every service is deployed",
    ),
    (
        "pull_policy",
        "each node pulls the image when it has not got it",
    ),
    (
        "restart",
        "unsupported by the CLI; used only when deploy.restart_policy is absent",
    ),
    ("security_opt", UNSUPPORTED),
    ("shm_size", UNSUPPORTED),
    (
        "tmpfs",
        "accepted by the CLI and never converted: use a tmpfs mount under volumes",
    ),
    ("userns_mode", UNSUPPORTED),
];

impl Service {
    /// Keys of this service swarm ignores, sorted, each with why.
    pub(super) fn ignored_keys(&self) -> Vec<(&'static str, &'static str)> {
        let i = self;
        let set: [bool; 23] = [
            i.build.is_some(),
            i.cgroup_parent.is_some(),
            i.cgroupns_mode.is_some(),
            i.container_name.is_some(),
            i.depends_on.is_some(),
            i.devices.is_some(),
            i.domainname.is_some(),
            i.expose.is_some(),
            i.external_links.is_some(),
            i.ipc.is_some(),
            i.links.is_some(),
            i.mac_address.is_some(),
            i.network_mode.is_some(),
            i.pid.is_some(),
            i.platform.is_some(),
            i.privileged.is_some(),
            i.profiles.is_some(),
            i.pull_policy.is_some(),
            i.restart.is_some(),
            i.security_opt.is_some(),
            i.shm_size.is_some(),
            i.tmpfs.is_some(),
            i.userns_mode.is_some(),
        ];
        IGNORED_KEYS
            .into_iter()
            .zip(set)
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
