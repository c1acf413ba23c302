//! The Network, Secret and Node controllers against a real etcd and a real swarm.
//!
//! Each test has its own etcd prefix and its own object names (`skk<random>`),
//! and a guard removes whatever it created, even when the test fails.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use swarmkeeper::api::{API_VERSION, Kind};
use swarmkeeper::controllers::RecordKey;
use swarmkeeper::controllers::status::Phase;
use swarmkeeper::docker::labels::OWNER;
use swarmkeeper::store::{Expect, RecordPut, Store};

use common::Etcd;
use common::controllers::{controllers, pass, status};
use common::swarm::{docker, docker_ok, names_with_label, require_swarm_manager};

fn unique(base: &str) -> String {
    format!("{base}{:08x}", rand::random::<u32>())
}

fn record(kind: Kind, name: &str, spec: Value) -> Value {
    json!({"apiVersion": API_VERSION, "kind": kind.as_str(), "metadata": {"name": name}, "spec": spec})
}

async fn put(store: &Store, kind: Kind, name: &str, spec: Value) {
    store
        .put_records(vec![RecordPut {
            kind: kind.as_str().into(),
            name: name.into(),
            value: record(kind, name, spec),
            expect: Expect::Any,
        }])
        .await
        .expect("etcd takes the record");
}

async fn delete(store: &Store, kind: Kind, name: &str) {
    store
        .delete_records(vec![(kind.as_str().into(), name.into(), None)])
        .await
        .expect("etcd deletes the record");
}

/// Removes what a test's records own (services first), and node labels it set.
struct Guard {
    owners: Vec<String>,
    node_labels: Vec<String>,
    children: Vec<std::process::Child>,
}

impl Guard {
    fn new(owners: &[String], node_labels: &[String]) -> Self {
        Self {
            owners: owners.to_vec(),
            node_labels: node_labels.to_vec(),
            children: Vec::new(),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for owner in &self.owners {
            for object in ["service", "secret", "config", "network"] {
                for name in names_with_label(object, &format!("{OWNER}={owner}")) {
                    let _ = docker(&[object, "rm", &name]);
                }
            }
        }
        for label in &self.node_labels {
            let _ = docker(&["node", "update", "--label-rm", label, &node_id()]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_record_becomes_an_owned_overlay_network_and_goes_with_it() {
    require_swarm_manager();
    let name = unique("skknet");
    let _guard = Guard::new(&[format!("Network.{name}")], &[]);
    let store = Etcd::shared().store("network").await;
    let controllers = controllers(&store).await;
    let key = RecordKey::new(Kind::Network, &name);
    put(
        &store,
        Kind::Network,
        &name,
        json!({"attachable": true, "encrypted": true, "labels": {"team": "cats"}}),
    )
    .await;
    pass(&controllers, std::slice::from_ref(&key)).await;
    assert_eq!(
        status(&store, &key).await.map(|s| s.phase),
        Some(Phase::Ready)
    );
    let inspect: Value = serde_json::from_str(&docker_ok(&["network", "inspect", &name]))
        .expect("network inspect is JSON");
    let net = &inspect[0];
    assert_eq!(net["Driver"], "overlay");
    assert_eq!(net["Attachable"], true);
    assert!(net["Options"].get("encrypted").is_some(), "{net:#}");
    assert_eq!(net["Labels"]["team"], "cats");
    assert_eq!(net["Labels"][OWNER], format!("Network.{name}"));

    let writes = controllers.ctx.docker.writes();
    pass(&controllers, std::slice::from_ref(&key)).await;
    assert_eq!(
        controllers.ctx.docker.writes(),
        writes,
        "a converged pass wrote"
    );

    delete(&store, Kind::Network, &name).await;
    pass(&controllers, std::slice::from_ref(&key)).await;
    assert!(!docker(&["network", "inspect", &name]).status.success());
    assert!(status(&store, &key).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_of_the_same_name_that_is_not_ours_fails_the_record_and_is_left_alone() {
    require_swarm_manager();
    let name = unique("skkforeign");
    let store = Etcd::shared().store("foreign").await;
    let controllers = controllers(&store).await;
    docker_ok(&["network", "create", "--driver", "overlay", &name]);
    let key = RecordKey::new(Kind::Network, &name);
    put(&store, Kind::Network, &name, json!({})).await;
    pass(&controllers, std::slice::from_ref(&key)).await;
    let s = status(&store, &key).await.expect("a status");
    let _ = docker(&["network", "rm", &name]);
    assert_eq!(s.phase, Phase::Failed);
    assert!(s.message.contains("not managed by swarmkeeper"), "{s:?}");
    assert_eq!(controllers.ctx.docker.writes(), 0);
}

/// A Stack spec whose one service uses the Secret record `secret` as external.
fn using(secret: &str) -> Value {
    json!({"compose": {
        "version": "3.8",
        "services": {"app": {
            "image": common::swarm::IMAGE,
            "command": ["sleep", "3600"],
            "secrets": [secret],
            "deploy": {"replicas": 0},
        }},
        "secrets": {secret: {"external": true}},
    }})
}

/// `<secret name>:<file name>` of the secrets the stack's service uses.
fn used_by(stack: &str) -> String {
    let out = docker(&[
        "service",
        "inspect",
        &format!("{stack}_app"),
        "--format",
        "{{range .Spec.TaskTemplate.ContainerSpec.Secrets}}{{.SecretName}}:{{.File.Name}} {{end}}",
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The swarm secrets a Secret record owns, by name.
fn versions(name: &str) -> Vec<String> {
    names_with_label("secret", &format!("{OWNER}=Secret.{name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_secret_is_versioned_used_by_stacks_rotated_and_removed() {
    require_swarm_manager();
    let secret = unique("skksecret");
    let stack = unique("skkstack");
    let _guard = Guard::new(&[format!("Stack.{stack}"), format!("Secret.{secret}")], &[]);
    let store = Etcd::shared().store("secret").await;
    let controllers = controllers(&store).await;
    let secret_key = RecordKey::new(Kind::Secret, &secret);
    let stack_key = RecordKey::new(Kind::Stack, &stack);
    put(
        &store,
        Kind::Secret,
        &secret,
        json!({"generate": {"length": 24}}),
    )
    .await;
    put(&store, Kind::Stack, &stack, using(&secret)).await;
    pass(&controllers, std::slice::from_ref(&secret_key)).await;
    pass(&controllers, std::slice::from_ref(&stack_key)).await;
    let first = versions(&secret);
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].starts_with(&format!("{secret}.v")), "{first:?}");
    let used = || used_by(&stack);
    assert_eq!(used(), format!("{}:{secret}", first[0]));

    // A second pass keeps the value: same version, no write.
    let writes = controllers.ctx.docker.writes();
    pass(&controllers, &[secret_key.clone(), stack_key.clone()]).await;
    assert_eq!(controllers.ctx.docker.writes(), writes);
    assert_eq!(versions(&secret), first);

    // Rotation: a new version; the stack moves to it; the old one goes once unused.
    put(
        &store,
        Kind::Secret,
        &secret,
        json!({"generate": {"length": 24}, "rotation": 1}),
    )
    .await;
    pass(&controllers, std::slice::from_ref(&secret_key)).await;
    pass(&controllers, std::slice::from_ref(&stack_key)).await;
    let mut current = Vec::new();
    for _ in 0..20 {
        pass(&controllers, std::slice::from_ref(&secret_key)).await;
        current = versions(&secret);
        if current.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(current.len(), 1, "the old version stayed: {current:?}");
    assert_ne!(current, first);
    assert_eq!(used(), format!("{}:{secret}", current[0]));

    // The generated value is stored sealed, and never shows in status or events.
    let sealed = store
        .get_secret(&format!("generated:{secret}:1"))
        .await
        .expect("etcd")
        .expect("the rotated value is stored");
    let store_key = format!("generated:{secret}:1");
    let keyring = controllers.ctx.keyring.as_ref().expect("a key");
    let value = keyring.open(&store_key, &sealed).expect("it opens");
    let value = value.expose_str().expect("text");
    assert_eq!(value.len(), 24);
    let seen = format!(
        "{:?}{:?}{:?}",
        status(&store, &secret_key).await,
        store.list_events(None).await.expect("events"),
        store.get_record("Secret", &secret).await.expect("record"),
    );
    assert!(!seen.contains(value), "the generated value leaked");

    // Deleting both records removes the swarm secret and the stored values.
    delete(&store, Kind::Stack, &stack).await;
    delete(&store, Kind::Secret, &secret).await;
    for _ in 0..20 {
        pass(&controllers, std::slice::from_ref(&stack_key)).await;
        pass(&controllers, std::slice::from_ref(&secret_key)).await;
        if versions(&secret).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(versions(&secret).is_empty());
    for stored in [
        format!("generated:{secret}:0"),
        format!("generated:{secret}:1"),
    ] {
        assert!(
            store.get_secret(&stored).await.expect("etcd").is_none(),
            "{stored} left"
        );
    }
}

/// This node's ID (`docker node update` does not take `self`).
fn node_id() -> String {
    docker_ok(&["info", "--format", "{{.Swarm.NodeID}}"])
}

/// The labels of this node.
fn node_labels() -> BTreeMap<String, String> {
    serde_json::from_str(&docker_ok(&[
        "node",
        "inspect",
        "self",
        "--format",
        "{{json .Spec.Labels}}",
    ]))
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_record_sets_its_labels_and_removes_them_with_the_record() {
    require_swarm_manager();
    let label = unique("skk.usage");
    let dropped = unique("skk.old");
    let _guard = Guard::new(&[], &[label.clone(), dropped.clone()]);
    let hostname = docker_ok(&[
        "node",
        "inspect",
        "self",
        "--format",
        "{{.Description.Hostname}}",
    ]);
    let name = hostname.to_lowercase();
    let store = Etcd::shared().store("node").await;
    let controllers = controllers(&store).await;
    let key = RecordKey::new(Kind::Node, &name);
    put(
        &store,
        Kind::Node,
        &name,
        json!({"labels": {label.clone(): "apps", dropped.clone(): "x"}}),
    )
    .await;
    pass(&controllers, std::slice::from_ref(&key)).await;
    assert_eq!(node_labels().get(&label).map(String::as_str), Some("apps"));
    assert_eq!(
        status(&store, &key).await.map(|s| s.phase),
        Some(Phase::Ready)
    );

    let writes = controllers.ctx.docker.writes();
    pass(&controllers, std::slice::from_ref(&key)).await;
    assert_eq!(
        controllers.ctx.docker.writes(),
        writes,
        "a converged pass wrote"
    );

    // A label dropped from the record is removed; one changed by hand is set back.
    put(
        &store,
        Kind::Node,
        &name,
        json!({"labels": {label.clone(): "apps"}}),
    )
    .await;
    docker_ok(&[
        "node",
        "update",
        "--label-add",
        &format!("{label}=by-hand"),
        &node_id(),
    ]);
    pass(&controllers, std::slice::from_ref(&key)).await;
    let labels = node_labels();
    assert_eq!(labels.get(&label).map(String::as_str), Some("apps"));
    assert!(!labels.contains_key(&dropped), "{labels:?}");

    delete(&store, Kind::Node, &name).await;
    pass(&controllers, std::slice::from_ref(&key)).await;
    assert!(!node_labels().contains_key(&label));
    assert!(status(&store, &key).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_moves_stacks_to_a_rotated_secret_without_waiting_for_a_resync() {
    require_swarm_manager();
    let secret = unique("skkrot");
    let stack = unique("skkrotstack");
    let mut guard = Guard::new(&[format!("Stack.{stack}"), format!("Secret.{secret}")], &[]);
    let store = Etcd::shared().store("rotate-run").await;
    put(
        &store,
        Kind::Secret,
        &secret,
        json!({"generate": {"length": 24}}),
    )
    .await;
    put(&store, Kind::Stack, &stack, using(&secret)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, rand::random::<[u8; 32]>()).expect("write key");
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_swarmkeeper"))
        .args(["--etcd-endpoints", &Etcd::shared().endpoint()])
        .args(["--prefix", store.prefix()])
        .arg("--secret-key-file")
        .arg(&key_file)
        // A resync far away: only the event of the new version can move the stack.
        .args(["run", "--http-addr", &addr, "--resync", "1h"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run starts");
    guard.children.push(child);
    let wait_for = |what: &'static str, check: Box<dyn Fn() -> bool>| async move {
        for _ in 0..240 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("{what}: not within 2 minutes");
    };
    let (s, st) = (secret.clone(), stack.clone());
    wait_for(
        "the stack uses the first version",
        Box::new(move || {
            let v = versions(&s);
            v.len() == 1 && used_by(&st) == format!("{}:{s}", v[0])
        }),
    )
    .await;
    let first = versions(&secret);

    put(
        &store,
        Kind::Secret,
        &secret,
        json!({"generate": {"length": 24}, "rotation": 1}),
    )
    .await;
    let (s, st) = (secret.clone(), stack.clone());
    wait_for(
        "the stack moves to the rotated version and the old one goes",
        Box::new(move || {
            let v = versions(&s);
            v.len() == 1 && v != first && used_by(&st) == format!("{}:{s}", v[0])
        }),
    )
    .await;
}
