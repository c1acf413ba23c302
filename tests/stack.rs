//! Integration tests of the Stack controller: a real etcd (tests/common), the real
//! swarm, the local image `local/busybox:1`. Each test owns a prefix and stack names
//! of its own, and a guard removes what it made even when it fails.

mod common;

use std::process::{Child, Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use swarmkeeper::api::Kind;
use swarmkeeper::api::{API_VERSION, Record};
use swarmkeeper::controllers::status::{Phase, Status};
use swarmkeeper::controllers::{Controllers, RecordKey};
use swarmkeeper::docker::Docker;
use swarmkeeper::store::{Expect, RecordPut, Store};

use common::Etcd;
use common::swarm::{IMAGE, docker, docker_ok, names_with_label, require_swarm_manager};

/// Pruning: dropped services, deleted records, old config versions.
#[path = "stack/cleanup.rs"]
mod cleanup;
/// Converging: the examples, the first phase, no writes when converged.
#[path = "stack/converge.rs"]
mod converge;
/// Drift: reported by field path, healed, or only reported.
#[path = "stack/drift.rs"]
mod drift;
/// Failures: broken records, killed runs, rollbacks, failing tasks.
#[path = "stack/failures.rs"]
mod failures;
/// A file secret: in the swarm, never in status, events, drift or logs.
#[path = "stack/file_secret.rs"]
mod file_secret;
/// `run`: leadership, reconnecting to dockerd, a long resync.
#[path = "stack/run.rs"]
mod run;
/// Sealed values: isolation between stacks, and key rotation under a running stack.
#[path = "stack/secrets.rs"]
mod secrets;
/// A pass's fast paths, by counts: calls sent together, one listing for many stacks.
#[path = "stack/speed.rs"]
mod speed;

const OWNER: &str = "swarmkeeper.owner";

/// External objects a test creates carry this label, so the guard finds them.
const TEST_LABEL: &str = "swarmkeeper.test";

/// Long enough for a busybox task to start on a busy two-core machine.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// The docker CLI and the guard

fn owned(object: &str, stack: &str) -> Vec<String> {
    names_with_label(object, &format!("{OWNER}=Stack.{stack}"))
}

/// A lowercase name of the form `sks<random>`, short enough for `<stack>_<service>`.
fn stack_name() -> String {
    format!("sks{:08x}", rand::random::<u32>())
}

/// Removes, when dropped (even on panic), everything the test's stacks own, the
/// objects it labelled with its id, the image tags it made, and its processes.
struct Guard {
    id: String,
    stacks: Vec<String>,
    images: Vec<String>,
    children: Vec<Child>,
}

impl Guard {
    fn new() -> Self {
        require_swarm_manager();
        Self {
            id: stack_name(),
            stacks: Vec::new(),
            images: Vec::new(),
            children: Vec::new(),
        }
    }

    /// A fresh stack name this guard cleans up after.
    fn stack(&mut self) -> String {
        let name = stack_name();
        self.stacks.push(name.clone());
        name
    }

    /// A unique name for an external object, labelled so the guard removes it.
    fn external(&self, object: &str, base: &str) -> String {
        let name = format!("{}_{base}", self.id);
        match object {
            "network" => docker_ok(&[
                "network",
                "create",
                "--driver",
                "overlay",
                "--attachable",
                "--label",
                &format!("{TEST_LABEL}={}", self.id),
                &name,
            ]),
            "secret" => {
                let file = tempfile::NamedTempFile::new().expect("temp file");
                std::fs::write(file.path(), b"not-a-real-value").expect("write");
                docker_ok(&[
                    "secret",
                    "create",
                    "--label",
                    &format!("{TEST_LABEL}={}", self.id),
                    &name,
                    &file.path().to_string_lossy(),
                ])
            }
            other => panic!("no external {other}"),
        };
        name
    }

    /// A second tag of the test image, removed afterwards.
    fn image_tag(&mut self) -> String {
        let tag = format!("local/busybox:{}", self.id);
        docker_ok(&["tag", IMAGE, &tag]);
        self.images.push(tag.clone());
        tag
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let mut labels: Vec<String> = self
            .stacks
            .iter()
            .map(|s| format!("{OWNER}=Stack.{s}"))
            .collect();
        labels.push(format!("{TEST_LABEL}={}", self.id));
        for label in &labels {
            let services = names_with_label("service", label);
            if !services.is_empty() {
                let mut args = vec!["service", "rm"];
                args.extend(services.iter().map(String::as_str));
                let _ = docker(&args);
            }
        }
        // Named volumes are made by the tasks (and kept by swarm, as by
        // `docker stack rm`); they carry only the stack namespace label.
        let volumes: Vec<String> = self
            .stacks
            .iter()
            .map(|s| format!("com.docker.stack.namespace={s}"))
            .collect();
        // A network or volume stays in use until the tasks of removed services are gone.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut left = 0;
            for label in &labels {
                for object in ["secret", "config", "network"] {
                    for name in names_with_label(object, label) {
                        if !docker(&[object, "rm", &name]).status.success() {
                            left += 1;
                        }
                    }
                }
            }
            for label in &volumes {
                let out = docker(&["volume", "ls", "-q", "--filter", &format!("label={label}")]);
                for name in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if !docker(&["volume", "rm", name]).status.success() {
                        left += 1;
                    }
                }
            }
            if left == 0 || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        for image in &self.images {
            let _ = docker(&["rmi", image]);
        }
    }
}

// ---------------------------------------------------------------------------
// Records, the controller in-process, and the binary

/// A Stack record in its stored form, validated as `apply` would.
fn stack_record(name: &str, compose: Value) -> Value {
    with_compose(
        json!({
            "apiVersion": API_VERSION,
            "kind": "Stack",
            "metadata": {"name": name},
            "spec": {},
        }),
        compose,
    )
}

fn with_compose(mut record: Value, compose: Value) -> Value {
    record["spec"] = json!({ "compose": compose });
    Record::from_value(record.clone())
        .unwrap_or_else(|errors| panic!("invalid test record {record}: {errors:?}"))
        .to_value()
}

/// A compose file of busybox services that sleep, one replica each.
fn sleepers(services: &[&str]) -> Value {
    let services: serde_json::Map<String, Value> = services
        .iter()
        .map(|s| {
            (
                (*s).to_owned(),
                json!({"image": IMAGE, "command": ["sleep", "3600"], "deploy": {"replicas": 1}}),
            )
        })
        .collect();
    json!({ "version": "3.8", "services": services })
}

async fn put(store: &Store, kind: &str, name: &str, value: Value) {
    store
        .put_records(vec![RecordPut {
            kind: kind.into(),
            name: name.into(),
            value,
            expect: Expect::Any,
        }])
        .await
        .unwrap_or_else(|err| panic!("cannot write {kind}/{name}: {err}"));
}

struct Env {
    store: Store,
    controllers: Arc<Controllers>,
}

impl Env {
    async fn new(test: &str) -> Self {
        let store = Etcd::shared().store(test).await;
        let controllers = common::controllers::controllers(&store).await;
        Self { store, controllers }
    }

    fn docker(&self) -> &Docker {
        &self.controllers.ctx.docker
    }

    /// One reconcile of each key; panics on a reconcile error.
    async fn pass(&self, keys: &[RecordKey]) {
        common::controllers::pass(&self.controllers, keys).await;
    }

    async fn status(&self, name: &str) -> Option<Status> {
        common::controllers::status(&self.store, &stack_key(name)).await
    }

    /// Reconciles `name` until its status is Ready.
    async fn converge(&self, name: &str) -> Status {
        let key = RecordKey::new(Kind::Stack, name);
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        let mut last = None;
        while Instant::now() < deadline {
            self.pass(std::slice::from_ref(&key)).await;
            let status = self.status(name).await;
            if let Some(s) = &status
                && s.phase == Phase::Ready
            {
                return s.clone();
            }
            last = status;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!(
            "Stack/{name} did not become Ready within {CONVERGE_TIMEOUT:?}; last status: {last:#?}"
        );
    }

    /// The binary against this test's etcd prefix.
    fn cli(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarmkeeper"));
        cmd.args(["--etcd-endpoints", &Etcd::shared().endpoint()])
            .args(["--prefix", self.store.prefix()])
            .env_remove("RUST_LOG");
        cmd
    }

    fn run_cli(&self, args: &[&str]) -> Output {
        self.cli().args(args).output().expect("the binary runs")
    }

    /// `drift -o json --exit-code` for one stack: exit code and report.
    fn drift(&self, name: &str) -> (i32, String) {
        let out = self.run_cli(&["drift", "stack", name, "-o", "json", "--exit-code"]);
        let code = out.status.code().expect("drift exited");
        assert!(
            code == 0 || code == 2,
            "drift failed ({code}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (code, String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn stack_key(name: &str) -> RecordKey {
    RecordKey::new(Kind::Stack, name)
}

/// Polls `check` every 200 ms until it holds; panics with `what` after `timeout`.
async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if check() {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what}: not within {timeout:?}");
}

fn replicas(service: &str) -> String {
    docker_ok(&[
        "service",
        "inspect",
        service,
        "--format",
        "{{.Spec.Mode.Replicated.Replicas}}",
    ])
}
