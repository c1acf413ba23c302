//! Comparing a stack's objects with the live ones: a service spec against the
//! live service (normalised for what dockerd fills in), field paths in compose
//! terms, and the names and hashes that make objects comparable at all.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{Service, ServiceSpec};
use serde_json::Value;

use crate::plan::diff::{self, DaemonDefault, FieldDiff};

/// Values Docker (or the docker CLI's defaults, applied by the daemon) fills
/// into a service spec that the compose file left out.
pub const SERVICE_DEFAULTS: &[DaemonDefault] = &[
    d(
        "TaskTemplate.ContainerSpec.StopGracePeriod",
        Some("10000000000"),
    ),
    d("TaskTemplate.ContainerSpec.Isolation", Some("default")),
    d("TaskTemplate.ContainerSpec.Privileges", None),
    d("TaskTemplate.ContainerSpec.DNSConfig", None),
    d("TaskTemplate.RestartPolicy.Condition", Some("any")),
    d("TaskTemplate.RestartPolicy.Delay", Some("5000000000")),
    d("TaskTemplate.Runtime", Some("container")),
    d("TaskTemplate.ForceUpdate", None),
    d("UpdateConfig.Parallelism", Some("1")),
    d("UpdateConfig.FailureAction", Some("pause")),
    d("UpdateConfig.Monitor", Some("5000000000")),
    d("UpdateConfig.Order", Some("stop-first")),
    d("RollbackConfig.Parallelism", Some("1")),
    d("RollbackConfig.FailureAction", Some("pause")),
    d("RollbackConfig.Monitor", Some("5000000000")),
    d("RollbackConfig.Order", Some("stop-first")),
    d("EndpointSpec.Mode", Some("vip")),
    d("EndpointSpec.Ports.*.Protocol", Some("tcp")),
    d("EndpointSpec.Ports.*.PublishMode", Some("ingress")),
];

const fn d(path: &'static str, value: Option<&'static str>) -> DaemonDefault {
    DaemonDefault { path, value }
}

/// Compares a desired service spec with the live service.
///
/// An image that did not change keeps the digest the live spec pins
/// (`image:tag@sha256:...`), as `docker stack deploy` keeps it, so a pinned
/// digest is never reported or rewritten.
///
/// Some fields never read back ([`unreadable`]). When the live service
/// carries the desired spec hash, it was written from this very spec, those
/// fields included, and their absence is not drift.
pub fn compare_service(desired: &ServiceSpec, live: &Service) -> Vec<FieldDiff> {
    let live_spec = live.spec.clone().unwrap_or_default();
    let desired = keep_pinned_digest(desired, &live_spec);
    let hash = |s: &ServiceSpec| s.labels.as_ref().and_then(|l| l.get(SPEC_HASH)).cloned();
    let written_from_desired = hash(&desired).is_some() && hash(&desired) == hash(&live_spec);
    diff::diff(&to_json(&desired), &to_json(&live_spec), SERVICE_DEFAULTS)
        .into_iter()
        .filter(|f| !(written_from_desired && f.live.is_none() && unreadable(&f.path)))
        .collect()
}

/// Fields dockerd takes but does not give back as sent: bollard reads the
/// healthcheck under `HealthCheck` where dockerd writes `Healthcheck`, and
/// dockerd drops a mount's `Consistency` (it means nothing on Linux).
fn unreadable(path: &str) -> bool {
    path.starts_with("TaskTemplate.ContainerSpec.HealthCheck")
        || (path.starts_with("TaskTemplate.ContainerSpec.Mounts[")
            && path.ends_with("].Consistency"))
}

/// The label holding the hash of the spec an object was written from.
const SPEC_HASH: &str = crate::docker::labels::SPEC_HASH;

/// The desired spec with the live image when that is the desired image plus a digest.
pub fn keep_pinned_digest(desired: &ServiceSpec, live: &ServiceSpec) -> ServiceSpec {
    let mut out = desired.clone();
    let live_image = live
        .task_template
        .as_ref()
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.image.as_deref());
    let container = out
        .task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut());
    if let (Some(c), Some(live_image)) = (container, live_image)
        && let Some(want) = c.image.as_deref()
        && live_image
            .strip_prefix(want)
            .is_some_and(|rest| rest.starts_with("@sha256:"))
    {
        c.image = Some(live_image.to_string());
    }
    out
}

/// A hash of the JSON form with object keys sorted: label maps are `HashMap`s,
/// whose order changes from one process to the next.
pub fn json_hash<T: serde::Serialize>(v: &T) -> String {
    use sha2::{Digest, Sha256};
    fn sorted(v: Value) -> Value {
        match v {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Object(entries.into_iter().collect())
            }
            Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
            other => other,
        }
    }
    hex::encode(Sha256::digest(sorted(to_json(v)).to_string().as_bytes()))
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Where a swarm service field comes from in the compose file, so that drift
/// reads as `services.web.deploy.replicas` rather than `Mode.Replicated.Replicas`.
const COMPOSE_PATHS: &[(&str, &str)] = &[
    ("Mode.Replicated.Replicas", "deploy.replicas"),
    ("Mode", "deploy.mode"),
    ("Labels", "deploy.labels"),
    ("TaskTemplate.ContainerSpec.Image", "image"),
    ("TaskTemplate.ContainerSpec.Env", "environment"),
    ("TaskTemplate.ContainerSpec.Args", "command"),
    ("TaskTemplate.ContainerSpec.Command", "entrypoint"),
    ("TaskTemplate.ContainerSpec.Labels", "labels"),
    ("TaskTemplate.ContainerSpec.Mounts", "volumes"),
    ("TaskTemplate.ContainerSpec.Secrets", "secrets"),
    ("TaskTemplate.ContainerSpec.Configs", "configs"),
    ("TaskTemplate.ContainerSpec.Healthcheck", "healthcheck"),
    ("TaskTemplate.ContainerSpec.Hostname", "hostname"),
    ("TaskTemplate.ContainerSpec.User", "user"),
    ("TaskTemplate.ContainerSpec.Dir", "working_dir"),
    (
        "TaskTemplate.ContainerSpec.StopGracePeriod",
        "stop_grace_period",
    ),
    ("TaskTemplate.ContainerSpec.StopSignal", "stop_signal"),
    ("TaskTemplate.ContainerSpec.Hosts", "extra_hosts"),
    ("TaskTemplate.ContainerSpec.DNSConfig", "dns"),
    ("TaskTemplate.ContainerSpec.Sysctls", "sysctls"),
    ("TaskTemplate.ContainerSpec.Ulimits", "ulimits"),
    ("TaskTemplate.ContainerSpec", "container"),
    (
        "TaskTemplate.Placement.Constraints",
        "deploy.placement.constraints",
    ),
    (
        "TaskTemplate.Placement.Preferences",
        "deploy.placement.preferences",
    ),
    (
        "TaskTemplate.Placement.MaxReplicas",
        "deploy.placement.max_replicas_per_node",
    ),
    ("TaskTemplate.Resources", "deploy.resources"),
    ("TaskTemplate.RestartPolicy", "deploy.restart_policy"),
    ("TaskTemplate.Networks", "networks"),
    ("TaskTemplate.LogDriver", "logging"),
    ("UpdateConfig", "deploy.update_config"),
    ("RollbackConfig", "deploy.rollback_config"),
    ("EndpointSpec.Ports", "ports"),
    ("EndpointSpec.Mode", "deploy.endpoint_mode"),
];

/// Renders a service spec path in compose terms: `services.<service>.<compose path>`.
pub fn compose_path(service: &str, swarm_path: &str) -> String {
    for (prefix, compose) in COMPOSE_PATHS {
        if let Some(rest) = swarm_path.strip_prefix(prefix)
            && (rest.is_empty() || rest.starts_with(['.', '[']))
        {
            return format!("services.{service}.{compose}{rest}");
        }
    }
    format!("services.{service}.{swarm_path}")
}

/// A name for one content version of an immutable swarm object: swarm secrets
/// and configs cannot change, so new content means a new name.
///
/// # Errors
/// When the name would exceed the 64 characters swarm allows.
pub fn versioned_name(base: &str, digest: &str) -> Result<String, String> {
    let short = &digest[..digest.len().min(10)];
    let name = format!("{base}.v{short}");
    if name.len() > 64 {
        return Err(format!(
            "name {base:?} is too long for a versioned swarm object (at most {} characters)",
            64 - short.len() - 2
        ));
    }
    Ok(name)
}

/// Replaces network names with their IDs in a service spec's attachments,
/// since the live spec records IDs; names with no known ID are left as they are.
pub fn network_ids(spec: &mut ServiceSpec, ids: &HashMap<String, String>) {
    let task = spec.task_template.get_or_insert_with(Default::default);
    for net in task.networks.iter_mut().flatten() {
        if let Some(id) = net.target.as_ref().and_then(|t| ids.get(t)) {
            net.target = Some(id.clone());
        }
    }
}

/// Adds labels to a label map, creating it if needed.
pub fn add_labels(labels: &mut Option<HashMap<String, String>>, extra: &BTreeMap<String, String>) {
    let map = labels.get_or_insert_with(HashMap::new);
    for (k, v) in extra {
        map.insert(k.clone(), v.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{
        ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec,
        TaskSpecContainerSpec as ContainerSpec,
    };

    fn spec(image: &str, replicas: i64, env: &[&str]) -> ServiceSpec {
        ServiceSpec {
            name: Some("s_web".into()),
            task_template: Some(TaskSpec {
                container_spec: Some(ContainerSpec {
                    image: Some(image.into()),
                    env: Some(env.iter().map(|s| s.to_string()).collect()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated {
                    replicas: Some(replicas),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn live(spec: ServiceSpec) -> Service {
        Service {
            spec: Some(spec),
            ..Default::default()
        }
    }

    #[test]
    fn a_pinned_digest_of_the_same_image_is_not_drift() {
        let desired = spec("local/busybox:1", 1, &[]);
        let pinned = spec("local/busybox:1@sha256:abcd", 1, &[]);
        assert!(compare_service(&desired, &live(pinned)).is_empty());
    }

    #[test]
    fn a_different_image_is_drift() {
        let desired = spec("local/busybox:1", 1, &[]);
        let other = spec("local/busybox:2@sha256:abcd", 1, &[]);
        let diffs = compare_service(&desired, &live(other));
        assert_eq!(diffs[0].path, "TaskTemplate.ContainerSpec.Image");
    }

    #[test]
    fn replicas_and_env_drift_read_in_compose_terms() {
        let desired = spec("i", 3, &["A=1"]);
        let scaled = spec("i", 1, &["A=1", "B=2"]);
        let paths: Vec<String> = compare_service(&desired, &live(scaled))
            .iter()
            .map(|f| compose_path("web", &f.path))
            .collect();
        assert_eq!(
            paths,
            ["services.web.environment", "services.web.deploy.replicas"]
        );
    }

    #[test]
    fn daemon_defaults_are_not_drift() {
        let desired = spec("i", 1, &[]);
        let mut filled = to_json(&desired);
        filled["UpdateConfig"] = serde_json::json!({
            "Parallelism": 1, "FailureAction": "pause", "Monitor": 5000000000u64,
            "MaxFailureRatio": 0, "Order": "stop-first"
        });
        filled["EndpointSpec"] = serde_json::json!({"Mode": "vip"});
        filled["TaskTemplate"]["RestartPolicy"] =
            serde_json::json!({"Condition": "any", "Delay": 5000000000u64, "MaxAttempts": 0});
        filled["TaskTemplate"]["ContainerSpec"]["Isolation"] = "default".into();
        let filled: ServiceSpec = serde_json::from_value(filled).unwrap();
        assert_eq!(compare_service(&desired, &live(filled)), vec![]);
    }

    #[test]
    fn compose_path_keeps_the_suffix_and_falls_back_to_the_swarm_path() {
        assert_eq!(
            compose_path("db", "TaskTemplate.ContainerSpec.Env[1]"),
            "services.db.environment[1]"
        );
        assert_eq!(
            compose_path("db", "TaskTemplate.ContainerSpec.Image"),
            "services.db.image"
        );
        assert_eq!(compose_path("db", "Foo.Bar"), "services.db.Foo.Bar");
    }

    #[test]
    fn json_hash_ignores_map_order() {
        let a: HashMap<&str, i32> = [("x", 1), ("y", 2), ("z", 3)].into();
        let b: BTreeMap<&str, i32> = [("z", 3), ("y", 2), ("x", 1)].into();
        assert_eq!(json_hash(&a), json_hash(&b));
        assert_ne!(json_hash(&a), json_hash(&[1, 2]));
    }

    #[test]
    fn versioned_names_are_stable_and_bounded() {
        assert_eq!(
            versioned_name("app_conf", "0123456789abcdef").unwrap(),
            "app_conf.v0123456789"
        );
        assert!(versioned_name(&"x".repeat(60), "0123456789").is_err());
    }
}
