//! The parity harness: one compose file deployed by `docker stack deploy` and by
//! swarmkeeper, both read back and normalised (names, IDs, versions, bookkeeping labels),
//! and compared field by field.
//!
//! The reference client is Debian's `/usr/bin/docker` 20.10, the release of the dockerd
//! running here: a client's version decides what it sends (a newer one fills in other
//! `UpdateConfig` defaults and knows keys the 1.41 API does not), and the operator of a
//! 20.10 swarm deploys with the matching CLI.
//!
//! swarmkeeper's side is the real binary on an etcd prefix of its own: `apply -f` reads
//! the compose file and its `file:` secrets and configs, `run --once` converges. Objects
//! are scoped to the prefix, so tests running at once never prune each other's stacks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Map, Value};

use super::swarm::{
    DOCKER, docker, docker_ok, names_with_label, require_swarm_manager, stack_deploy,
};
use super::{Etcd, unique_name};

pub const NAMESPACE: &str = "com.docker.stack.namespace";
/// Placeholder both stack names are replaced by.
pub const STACK: &str = "STACK";

/// Like [`docker_ok`], ignoring failures: for cleanup.
pub fn docker_quiet(args: &[&str]) {
    let _ = docker(args);
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/parity")
        .join(name)
}

/// External objects a fixture uses (`<base>_net`, `<base>_secret`, `<base>_config`),
/// created before the stacks and removed after them.
pub struct ExternalObjects {
    pub base: String,
}

impl ExternalObjects {
    pub fn create() -> Self {
        let base = alphanumeric_name("skpx");
        docker_ok(&[
            "network",
            "create",
            "--driver",
            "overlay",
            "--attachable",
            &format!("{base}_net"),
        ]);
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("value");
        std::fs::write(&file, "external value\n").expect("write value");
        let file = file.display().to_string();
        docker_ok(&["secret", "create", &format!("{base}_secret"), &file]);
        docker_ok(&["config", "create", &format!("{base}_config"), &file]);
        Self { base }
    }
}

impl Drop for ExternalObjects {
    fn drop(&mut self) {
        for (object, suffix) in [
            ("secret", "secret"),
            ("config", "config"),
            ("network", "net"),
        ] {
            docker_quiet(&[object, "rm", &format!("{}_{suffix}", self.base)]);
        }
    }
}

/// [`unique_name`] without its dashes: stack names become parts of other names.
pub fn alphanumeric_name(base: &str) -> String {
    unique_name(base)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect()
}

/// Removes both stacks, whatever the test's outcome, and anything swarmkeeper left
/// under its owner label.
pub struct Cleanup {
    pub cli: String,
    pub swarmkeeper: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        docker_quiet(&["stack", "rm", &self.cli, &self.swarmkeeper]);
        let owner = format!("swarmkeeper.owner=Stack.{}", self.swarmkeeper);
        for object in ["service", "secret", "config", "network"] {
            let names = names_with_label(object, &owner);
            if !names.is_empty() {
                let mut args = vec![object, "rm"];
                args.extend(names.iter().map(String::as_str));
                docker_quiet(&args);
            }
        }
    }
}

/// swarmkeeper's side: the real binary, on a prefix of its own in the test etcd.
pub struct Swarmkeeper {
    /// Holds the secret key and the record file.
    dir: tempfile::TempDir,
    endpoint: String,
    prefix: String,
}

impl Swarmkeeper {
    /// Stores `compose` as the Stack record `stack` with `swarmkeeper apply`; `env` is
    /// the environment `apply` interpolates the compose file with.
    pub fn apply(stack: &str, compose: &Path, env: &[(&str, &str)]) -> Self {
        Self::apply_with(stack, compose, env, "")
    }

    /// [`Swarmkeeper::apply`] with more of the record's spec (`extra_spec`: YAML lines
    /// indented under `spec:`).
    pub fn apply_with(stack: &str, compose: &Path, env: &[(&str, &str)], extra_spec: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("key"), rand::random::<[u8; 32]>()).expect("write key");
        let record = dir.path().join("stack.yaml");
        std::fs::write(
            &record,
            format!(
                "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Stack\nmetadata:\n  name: {stack}\nspec:\n  composeFile: {}\n{extra_spec}",
                compose.display()
            ),
        )
        .expect("write record");
        let config = Etcd::shared().config("parity");
        let swarmkeeper = Self {
            dir,
            endpoint: config.endpoints[0].clone(),
            prefix: config.prefix,
        };
        let record = record.display().to_string();
        swarmkeeper.run(&["apply", "-f", &record], env);
        swarmkeeper
    }

    /// `swarmkeeper run --once`: converges every record of the prefix, which is
    /// ours alone; returns its summary line.
    pub fn converge(&self) -> String {
        self.run(&["run", "--once"], &[])
    }

    /// The record file `apply` wrote, to apply again after its compose file changed.
    pub fn record(&self) -> String {
        self.dir.path().join("stack.yaml").display().to_string()
    }

    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_swarmkeeper"))
            .args(["--etcd-endpoints", &self.endpoint, "--prefix", &self.prefix])
            .arg("--secret-key-file")
            .arg(self.dir.path().join("key"))
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("run swarmkeeper");
        assert!(
            out.status.success(),
            "swarmkeeper {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A stack as deployed, normalised: objects by kind and logical name.
pub type Deployed = BTreeMap<String, BTreeMap<String, Value>>;

/// Reads back every object of `stack` and normalises it for comparison.
pub fn observe(stack: &str, network_names: &BTreeMap<String, String>) -> Deployed {
    let namespace = format!("{NAMESPACE}={stack}");
    let mut deployed = Deployed::new();
    for object in ["service", "network", "secret", "config"] {
        let mut by_name = BTreeMap::new();
        for name in names_with_label(object, &namespace) {
            let out = Command::new(DOCKER)
                .args([object, "inspect", &name])
                .output()
                .expect("run docker inspect");
            if !out.status.success() {
                // Removed since it was listed: the caller sees a missing object.
                continue;
            }
            let inspected: Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("docker {object} inspect {name}: {e}"));
            let mut value = inspected[0].clone();
            normalise(object, &mut value, network_names);
            let mut text = value.to_string();
            text = text.replace(stack, STACK);
            let value: Value = serde_json::from_str(&text).expect("normalised JSON");
            by_name.insert(logical_name(&name.replace(stack, STACK)), value);
        }
        deployed.insert(object.to_owned(), by_name);
    }
    deployed
}

/// `<stack>_<key>.v<hash10>`, swarmkeeper's versioned secret and config names, without
/// the version.
pub fn logical_name(name: &str) -> String {
    let versioned = regex::Regex::new(r"\.v[0-9a-f]{10}$").expect("regex");
    versioned.replace(name, "").into_owned()
}

/// Drops what differs between any two deployments (IDs, versions, times, addresses) and
/// swarmkeeper's bookkeeping labels; points references at names rather than IDs.
pub fn normalise(object: &str, value: &mut Value, network_names: &BTreeMap<String, String>) {
    let Some(map) = value.as_object_mut() else {
        return;
    };
    for field in [
        "ID",
        "Id",
        "Version",
        "CreatedAt",
        "UpdatedAt",
        "Created",
        "Endpoint",
        "UpdateStatus",
        "ServiceStatus",
        "PreviousSpec",
        "Containers",
        "Peers",
    ] {
        map.remove(field);
    }
    if object == "network" {
        // Subnets and VXLAN IDs are allocated per network: two deployments never share them.
        if let Some(ipam) = map.get_mut("IPAM").and_then(Value::as_object_mut) {
            ipam.remove("Config");
        }
        if let Some(options) = map.get_mut("Options").and_then(Value::as_object_mut) {
            options.remove("com.docker.network.driver.overlay.vxlanid_list");
        }
    }
    if let Some(Value::String(name)) = value.pointer_mut("/Spec/Name") {
        *name = logical_name(name);
    }
    if let Some(container) = value.pointer_mut("/Spec/TaskTemplate/ContainerSpec") {
        credential_spec_config_by_name(container);
        for (list, id, name) in [
            ("Secrets", "SecretID", "SecretName"),
            ("Configs", "ConfigID", "ConfigName"),
        ] {
            for reference in container
                .get_mut(list)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(reference) = reference.as_object_mut() {
                    reference.remove(id);
                    if let Some(Value::String(n)) = reference.get_mut(name) {
                        *n = logical_name(n);
                    }
                }
            }
        }
    }
    if let Some(networks) = value
        .pointer_mut("/Spec/TaskTemplate/Networks")
        .and_then(Value::as_array_mut)
    {
        for attachment in networks {
            if let Some(Value::String(target)) = attachment.get_mut("Target")
                && let Some(name) = network_names.get(target.as_str())
            {
                target.clone_from(name);
            }
        }
    }
    drop_bookkeeping_labels(value);
}

/// A credential spec names its config by ID: put the logical name of the config
/// reference with that ID in its place.
fn credential_spec_config_by_name(container: &mut Value) {
    let Some(id) = container
        .pointer("/Privileges/CredentialSpec/Config")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
    else {
        return;
    };
    let name = container["Configs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|reference| reference["ConfigID"].as_str() == Some(id))
        .and_then(|reference| reference["ConfigName"].as_str())
        .map(logical_name);
    if let (Some(name), Some(config)) = (
        name,
        container.pointer_mut("/Privileges/CredentialSpec/Config"),
    ) {
        *config = Value::String(name);
    }
}

/// Removes `swarmkeeper.*` keys from every `Labels` map, at any depth.
pub fn drop_bookkeeping_labels(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(labels)) = map.get_mut("Labels") {
                labels.retain(|k, _| !k.starts_with("swarmkeeper."));
            }
            map.values_mut().for_each(drop_bookkeeping_labels);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_bookkeeping_labels),
        _ => {}
    }
}

/// Network IDs to names, for every network of the swarm.
pub fn network_names() -> BTreeMap<String, String> {
    docker_ok(&[
        "network",
        "ls",
        "--no-trunc",
        "--format",
        "{{.ID}} {{.Name}}",
    ])
    .lines()
    .filter_map(|line| line.split_once(' '))
    .map(|(id, name)| (id.to_owned(), name.to_owned()))
    .collect()
}

/// Paths (`service.STACK_web.Spec.Labels`) where the two values differ, with both sides.
pub fn differences(path: &str, cli: &Value, ours: &Value, out: &mut Vec<String>) {
    match (cli, ours) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            let null = Value::Null;
            for k in keys {
                differences(
                    &format!("{path}.{k}"),
                    a.get(k).unwrap_or(&null),
                    b.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(&format!("{path}[{i}]"), x, y, out);
            }
        }
        _ if cli != ours => out.push(format!(
            "{path}:\n    docker stack deploy: {cli}\n    swarmkeeper:         {ours}"
        )),
        _ => {}
    }
}

pub fn to_value(deployed: &Deployed) -> Value {
    let kinds: Map<String, Value> = deployed
        .iter()
        .map(|(kind, objects)| {
            let objects: Map<String, Value> = objects
                .iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect();
            (kind.clone(), Value::Object(objects))
        })
        .collect();
    Value::Object(kinds)
}

/// Deploys `file` both ways and asserts the stacks are equal after normalisation.
pub fn assert_parity(file: &str) {
    assert_parity_with(file, &[]);
}

/// [`assert_parity`] with environment variables for the compose file's interpolation.
pub fn assert_parity_with(file: &str, env: &[(&str, &str)]) {
    assert_parity_sides(file, env, env, "");
}

/// [`assert_parity`] with each side's environment, and more of the record's spec
/// (`extra_spec`, as [`Swarmkeeper::apply_with`]) for swarmkeeper's side.
pub fn assert_parity_sides(
    file: &str,
    cli_env: &[(&str, &str)],
    our_env: &[(&str, &str)],
    extra_spec: &str,
) {
    require_swarm_manager();
    let base = alphanumeric_name("skp");
    // Same length, neither a prefix of the other: replacing one never touches the other.
    let cleanup = Cleanup {
        cli: format!("{base}c"),
        swarmkeeper: format!("{base}s"),
    };
    let compose = fixture(file);
    stack_deploy(&compose.display().to_string(), &cleanup.cli, cli_env);
    let swarmkeeper = Swarmkeeper::apply_with(&cleanup.swarmkeeper, &compose, our_env, extra_spec);

    let cli = observe(&cleanup.cli, &network_names());
    swarmkeeper.converge();
    let ours = observe(&cleanup.swarmkeeper, &network_names());
    assert!(
        !cli["service"].is_empty(),
        "docker stack deploy created no service for {file}"
    );
    let mut diffs = Vec::new();
    differences(file, &to_value(&cli), &to_value(&ours), &mut diffs);
    assert!(
        diffs.is_empty(),
        "{file}: swarmkeeper and docker stack deploy differ:\n  {}",
        diffs.join("\n  ")
    );
    // Whatever the daemon filled in, the next pass finds nothing to change.
    let again = swarmkeeper.converge();
    assert!(
        again.contains("with 0 writes to dockerd"),
        "{file}: a second pass over converged state wrote:\n{again}\nwhat differs:\n{}",
        swarmkeeper.run(&["drift"], &[])
    );
}
