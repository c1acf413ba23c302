//! Integration tests of the Stack controller: a real etcd (tests/common), the real
//! swarm, the local image `local/busybox:1`. Each test owns a prefix and stack names
//! of its own, and a guard removes what it made even when it fails.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Etcd;
use common::http::{free_port, http_get, leader_gauge};

/// Sealed values: isolation between stacks, and key rotation under a running stack.
#[path = "stack/secrets.rs"]
mod secrets;
/// A pass's fast paths, by counts: calls sent together, one listing for many stacks.
#[path = "stack/speed.rs"]
mod speed;
use common::swarm::{
    IMAGE, docker, docker_ok, names_with_label, proxy_to_dockerd, require_swarm_manager,
};
use serde_json::{Value, json};
use swarmkeeper::api::Kind;
use swarmkeeper::api::{API_VERSION, Record};
use swarmkeeper::controllers::status::{Phase, Status};
use swarmkeeper::controllers::{self, Controllers, RecordKey, stack};
use swarmkeeper::docker::Docker;
use swarmkeeper::store::{Expect, RecordPut, Store};

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

// ---------------------------------------------------------------------------
// 1. The example stacks converge

fn example_stack(file: &str, name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("manifests/examples")
        .join(file);
    let loaded = swarmkeeper::api::load::load_paths(&[path], &|_| None)
        .unwrap_or_else(|err| panic!("{err}"));
    loaded
        .into_iter()
        .find(|l| l.record.key() == (Kind::Stack, name))
        .unwrap_or_else(|| panic!("no Stack/{name} in {file}"))
        .record
        .to_value()
}

/// The example made runnable here: busybox that sleeps, one replica, no published
/// port (swarm picks one, so tests never collide), no placement on node labels this
/// swarm lacks, no bind mount of a file that is not here, and its external networks
/// and secrets renamed to the ones `names` maps them to.
fn runnable(mut record: Value, name: &str, names: &BTreeMap<&str, String>) -> Value {
    record["metadata"]["name"] = json!(name);
    let mut compose = record["spec"]["compose"].take();
    for svc in compose["services"]
        .as_object_mut()
        .expect("services")
        .values_mut()
    {
        svc["image"] = json!(IMAGE);
        svc["command"] = json!(["sleep", "3600"]);
        if let Some(deploy) = svc.get_mut("deploy").and_then(Value::as_object_mut) {
            if deploy.contains_key("replicas") {
                deploy.insert("replicas".into(), json!(1));
            }
            if let Some(constraints) = deploy
                .get_mut("placement")
                .and_then(|p| p.get_mut("constraints"))
                .and_then(Value::as_array_mut)
            {
                constraints.retain(|c| !c.as_str().unwrap_or("").contains("node.labels"));
            }
        }
        if let Some(ports) = svc.get_mut("ports").and_then(Value::as_array_mut) {
            for port in ports {
                match port {
                    Value::String(short) => {
                        let target = short.rsplit(':').next().unwrap_or(short).to_owned();
                        *port = json!(target);
                    }
                    Value::Object(long) => {
                        long.remove("published");
                    }
                    _ => {}
                }
            }
        }
        if let Some(volumes) = svc.get_mut("volumes").and_then(Value::as_array_mut) {
            volumes.retain(|v| {
                let source = v
                    .as_str()
                    .map(|s| s.split(':').next().unwrap_or(""))
                    .or_else(|| v.get("source").and_then(Value::as_str))
                    .unwrap_or("");
                !(source.starts_with('.') || source.starts_with('/')) || Path::new(source).exists()
            });
        }
    }
    for section in ["networks", "secrets"] {
        if let Some(defs) = compose.get_mut(section).and_then(Value::as_object_mut) {
            for (key, def) in defs.iter_mut() {
                if let Some(unique) = names.get(key.as_str()) {
                    def["name"] = json!(unique);
                }
            }
        }
    }
    with_compose(record, compose)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_stacks_converge_and_docker_stack_lists_them() {
    let mut guard = Guard::new();
    let env = Env::new("examples").await;
    let names: BTreeMap<&str, String> = [
        ("frontend", guard.external("network", "frontend")),
        ("backend", guard.external("network", "backend")),
        (
            "kittenapi_db_uri",
            guard.external("secret", "kittenapi_db_uri"),
        ),
        ("db_user", guard.external("secret", "db_user")),
        ("db_password", guard.external("secret", "db_password")),
    ]
    .into();
    let examples = [
        ("02-kittenapi.yaml", "kittenapi"),
        ("03-traefik.yaml", "traefik"),
        ("03-traefik.yaml", "whoami"),
        ("04-library.yaml", "lab3"),
    ];
    let mut keys = Vec::new();
    for (file, example) in examples {
        let name = guard.stack();
        let record = runnable(example_stack(file, example), &name, &names);
        put(&env.store, "Stack", &name, record).await;
        keys.push((example, name));
    }
    for (example, name) in &keys {
        let status = env.converge(name).await;
        assert!(
            status.conditions.iter().all(|c| c.ready),
            "{example}: {status:#?}"
        );
        let services: Vec<String> =
            docker_ok(&["stack", "services", name, "--format", "{{.Name}}"])
                .lines()
                .map(str::to_owned)
                .collect();
        assert_eq!(
            services.len(),
            status.conditions.len(),
            "{example}: docker stack services {name} lists {services:?}"
        );
        // `stack ps` reads task states the service counts may be ahead of on a busy machine.
        let ps = || {
            docker_ok(&[
                "stack",
                "ps",
                name,
                "--format",
                "{{.Name}} {{.CurrentState}}",
            ])
        };
        eventually(
            &format!("{example}: docker stack ps {name} shows a running task"),
            CONVERGE_TIMEOUT,
            || ps().contains("Running"),
        )
        .await;
        let (code, report) = env.drift(name);
        assert_eq!(
            code, 0,
            "{example} drifts right after converging:\n{report}"
        );
    }
    let lab3 = &keys[3].1;
    let mut lab3_services = owned("service", lab3);
    lab3_services.sort();
    assert_eq!(
        lab3_services,
        ["adminer", "books-service", "db", "gateway", "io-service"].map(|s| format!("{lab3}_{s}"))
    );
    assert_eq!(
        owned("network", lab3),
        ["books-io", "db-adminer", "gateway-books", "io-db"].map(|n| format!("{lab3}_{n}"))
    );
}

/// The first `run --once` after `apply` prints the stack's phase: it once printed
/// `removed`, because a first pass's status (objects still missing) did not read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_once_after_apply_reports_the_phase() {
    let mut guard = Guard::new();
    let env = Env::new("first-run").await;
    let name = guard.stack();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("stack.json");
    std::fs::write(
        &file,
        stack_record(&name, sleepers(&["web", "worker"])).to_string(),
    )
    .expect("write record");
    let applied = env.run_cli(&["apply", "-f", &file.to_string_lossy()]);
    assert!(
        applied.status.success(),
        "apply: {}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let out = env.run_cli(&["run", "--once"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "run --once: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = format!("Stack/{name}: ");
    let phase = stdout
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .unwrap_or_else(|| panic!("no line for the stack in:\n{stdout}"));
    assert!(
        phase.starts_with("Progressing") || phase.starts_with("Ready"),
        "first run --once printed {phase:?}"
    );
    assert_eq!(owned("service", &name).len(), 2);
}

// ---------------------------------------------------------------------------
// 2. Idempotency

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_over_a_converged_stack_makes_no_docker_writes() {
    let mut guard = Guard::new();
    let env = Env::new("idempotent").await;
    let name = guard.stack();
    let mut compose = sleepers(&["web", "worker"]);
    compose["services"]["web"]["environment"] = json!({"A": "1", "B": "two"});
    compose["services"]["web"]["configs"] = json!(["conf"]);
    compose["services"]["web"]["networks"] = json!(["back"]);
    compose["services"]["web"]["deploy"]["labels"] = json!({"tier": "web"});
    compose["services"]["worker"]["healthcheck"] =
        json!({"test": ["CMD", "true"], "interval": "30s"});
    compose["networks"] = json!({"back": {}});
    compose["configs"] = json!({"conf": {"content": "hello"}});
    put(&env.store, "Stack", &name, stack_record(&name, compose)).await;
    env.converge(&name).await;
    let before = env.docker().writes();
    let key = stack_key(&name);
    for _ in 0..2 {
        let stored = env.store.get_record("Stack", &name).await.unwrap();
        stack::reconcile(&env.controllers.ctx, &key, stored)
            .await
            .expect("reconcile");
    }
    env.pass(&[key]).await;
    assert_eq!(
        env.docker().writes(),
        before,
        "passes over a converged stack sent writes to dockerd"
    );
    let status = env.status(&name).await.unwrap();
    assert_eq!(status.phase, Phase::Ready);
    assert!(status.drift.is_empty(), "{:#?}", status.drift);
}

// ---------------------------------------------------------------------------
// 3. Drift detected, then healed

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_reported_by_field_path_then_healed() {
    let mut guard = Guard::new();
    let env = Env::new("drift").await;
    let name = guard.stack();
    let tag = guard.image_tag();
    let mut compose = sleepers(&["web"]);
    compose["services"]["web"]["environment"] = json!({"MODE": "test"});
    compose["services"]["web"]["deploy"]["labels"] = json!({"tier": "web"});
    put(&env.store, "Stack", &name, stack_record(&name, compose)).await;
    env.converge(&name).await;
    let (code, report) = env.drift(&name);
    assert_eq!(code, 0, "drift right after converging:\n{report}");
    let svc = format!("{name}_web");
    let scale = format!("{svc}=2");
    let cases: [(&str, Vec<&str>, &str); 5] = [
        (
            "replicas",
            vec!["service", "scale", "--detach", &scale],
            "services.web.deploy.replicas",
        ),
        (
            "env",
            vec!["service", "update", "--detach", "--env-add", "OOB=1", &svc],
            "services.web.environment",
        ),
        (
            "image",
            vec![
                "service",
                "update",
                "--detach",
                "--no-resolve-image",
                "--image",
                &tag,
                &svc,
            ],
            "services.web.image",
        ),
        (
            "labels",
            vec![
                "service",
                "update",
                "--detach",
                "--label-add",
                "oob=1",
                &svc,
            ],
            "services.web.deploy.labels",
        ),
        (
            "removed service",
            vec!["service", "rm", &svc],
            "\"missing\"",
        ),
    ];
    for (what, args, path) in cases {
        docker_ok(&args);
        let (code, report) = env.drift(&name);
        assert_eq!(code, 2, "{what}: drift --exit-code:\n{report}");
        assert!(
            report.contains(path) && report.contains(&svc),
            "{what}: the report does not name {path} of {svc}:\n{report}"
        );
        env.converge(&name).await;
        let (code, report) = env.drift(&name);
        assert_eq!(code, 0, "{what} was not healed:\n{report}");
    }
    assert_eq!(replicas(&svc), "1");
    let image = docker_ok(&[
        "service",
        "inspect",
        &svc,
        "--format",
        "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
    ]);
    assert_eq!(image, IMAGE);
}

// ---------------------------------------------------------------------------
// 4. Self-heal through `run`

fn with_annotation(mut record: Value, key: &str, value: &str) -> Value {
    record["metadata"]["annotations"] = json!({ key: value });
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_heals_out_of_band_changes_reports_without_self_heal_and_stops_on_sigterm() {
    let mut guard = Guard::new();
    let env = Env::new("self-heal").await;
    let healed = guard.stack();
    let reported = guard.stack();
    put(
        &env.store,
        "Stack",
        &healed,
        stack_record(&healed, sleepers(&["web"])),
    )
    .await;
    put(
        &env.store,
        "Stack",
        &reported,
        with_annotation(
            stack_record(&reported, sleepers(&["web"])),
            stack::SELF_HEAL,
            "false",
        ),
    )
    .await;
    let addr = format!("127.0.0.1:{}", free_port());
    let log = tempfile::NamedTempFile::new().expect("log file");
    let child = env
        .cli()
        .args(["run", "--http-addr", &addr, "--resync", "5m"])
        .stdout(Stdio::null())
        .stderr(log.reopen().expect("log file"))
        .spawn()
        .expect("run starts");
    let pid = child.id();
    guard.children.push(child);
    let log_text = || std::fs::read_to_string(log.path()).unwrap_or_default();

    for name in [&healed, &reported] {
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            if env
                .status(name)
                .await
                .is_some_and(|s| s.phase == Phase::Ready)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "run did not make Stack/{name} Ready; its log:\n{}",
                log_text()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let (code, body) = http_get(&addr, "/healthz").expect("/healthz answers");
    assert_eq!(code, 200, "{body}");
    let (code, body) = http_get(&addr, "/readyz").expect("/readyz answers");
    assert_eq!(code, 200, "the leader is not ready: {body}");
    let (code, body) = http_get(&addr, "/metrics").expect("/metrics answers");
    assert_eq!(code, 200);
    assert!(body.contains("swarmkeeper_reconcile_total"), "{body}");

    let healed_svc = format!("{healed}_web");
    let reported_svc = format!("{reported}_web");
    docker_ok(&["service", "scale", "--detach", &format!("{healed_svc}=2")]);
    docker_ok(&["service", "scale", "--detach", &format!("{reported_svc}=2")]);
    let took = eventually(
        "run restores the replicas of the scaled service",
        Duration::from_secs(30),
        || replicas(&healed_svc) == "1",
    )
    .await;
    println!("run restored {healed_svc} {took:?} after the out-of-band scale");

    // Without self-heal: reported in the status and by drift, left as it is.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = env.status(&reported).await.expect("a status");
        if status.phase == Phase::Degraded {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the unhealed drift never showed in the status: {status:#?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let paths: Vec<&str> = status
        .drift
        .iter()
        .flat_map(|o| o.fields.iter().map(|f| f.path.as_str()))
        .collect();
    assert!(
        paths.contains(&"services.web.deploy.replicas"),
        "{status:#?}"
    );
    assert_eq!(replicas(&reported_svc), "2", "self-heal off, yet corrected");
    let (code, report) = env.drift(&reported);
    assert_eq!(code, 2);
    assert!(report.contains("services.web.deploy.replicas"), "{report}");
    let (code, body) = http_get(&addr, "/drift").expect("/drift answers");
    assert_eq!(code, 200, "{body}");
    let drift: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let drifted: Vec<&str> = drift["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| !r["objects"].as_array().is_none_or(Vec::is_empty))
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(drifted, [reported.as_str()], "{body}");

    let terminated = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(terminated.success());
    let child = guard.children.last_mut().expect("the run process");
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "run did not stop after SIGTERM; its log:\n{}",
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        exit.code(),
        Some(0),
        "run exited with {exit}; log:\n{}",
        log_text()
    );
}

// ---------------------------------------------------------------------------
// 5. Prune

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_dropped_from_the_file_and_deleted_records_are_pruned() {
    let mut guard = Guard::new();
    let env = Env::new("prune").await;
    let name = guard.stack();
    let mut compose = sleepers(&["web", "extra"]);
    compose["services"]["extra"]["networks"] = json!(["side"]);
    compose["networks"] = json!({"side": {}});
    put(&env.store, "Stack", &name, stack_record(&name, compose)).await;
    env.converge(&name).await;
    assert_eq!(
        owned("service", &name),
        [format!("{name}_extra"), format!("{name}_web")]
    );
    assert_eq!(
        owned("network", &name),
        [format!("{name}_default"), format!("{name}_side")]
    );

    put(
        &env.store,
        "Stack",
        &name,
        stack_record(&name, sleepers(&["web"])),
    )
    .await;
    env.pass(&[stack_key(&name)]).await;
    assert_eq!(owned("service", &name), [format!("{name}_web")]);
    env.converge(&name).await;
    // A removed overlay network may still be listed for a moment.
    let side = format!("{name}_side");
    eventually(
        "the dropped network is removed",
        Duration::from_secs(30),
        || !owned("network", &name).contains(&side),
    )
    .await;

    // Deleted without anyone watching: the scan of the swarm finds the owner.
    let existed = env
        .store
        .delete_records(vec![("Stack".into(), name.clone(), None)])
        .await
        .expect("delete");
    assert_eq!(existed, [true]);
    let keys = controllers::all_keys(&env.controllers.ctx)
        .await
        .expect("keys");
    assert_eq!(keys, [stack_key(&name)]);
    env.pass(&keys).await;
    assert!(owned("service", &name).is_empty());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let keys = controllers::all_keys(&env.controllers.ctx)
            .await
            .expect("keys");
        if keys.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still owned after the record was deleted: {:?}",
            owned("network", &name)
        );
        env.pass(&keys).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(owned("network", &name).is_empty());
    assert!(
        env.status(&name).await.is_none(),
        "the status outlived the record"
    );
}

// ---------------------------------------------------------------------------
// 6. Config rotation

fn service_configs(service: &str) -> String {
    docker_ok(&[
        "service",
        "inspect",
        service,
        "--format",
        "{{range .Spec.TaskTemplate.ContainerSpec.Configs}}{{.ConfigName}} {{end}}",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_config_gets_a_new_version_and_the_old_one_is_removed() {
    let mut guard = Guard::new();
    let env = Env::new("rotation").await;
    let name = guard.stack();
    let compose = |content: &str| {
        let mut c = sleepers(&["web"]);
        c["services"]["web"]["configs"] = json!([{"source": "app", "target": "/etc/app.conf"}]);
        c["configs"] = json!({"app": {"content": content}});
        c
    };
    put(
        &env.store,
        "Stack",
        &name,
        stack_record(&name, compose("v=1\n")),
    )
    .await;
    env.converge(&name).await;
    let first = owned("config", &name);
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].starts_with(&format!("{name}_app.v")), "{first:?}");
    let svc = format!("{name}_web");
    assert_eq!(service_configs(&svc), first[0]);

    put(
        &env.store,
        "Stack",
        &name,
        stack_record(&name, compose("v=2\n")),
    )
    .await;
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    let second = loop {
        env.converge(&name).await;
        let now = owned("config", &name);
        if now.len() == 1 && now != first {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "configs after rotation: {now:?} (first {first:?})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(second[0].starts_with(&format!("{name}_app.v")));
    assert_eq!(service_configs(&svc), second[0]);
    let events = env
        .store
        .list_events(Some(("Stack", &name)))
        .await
        .expect("events");
    let said = |text: &str| events.iter().any(|(_, _, e)| e.message.contains(text));
    assert!(said(&format!("removed config {}", first[0])), "{events:#?}");
    assert!(
        said(&format!("created config {}", second[0])),
        "{events:#?}"
    );
}

// ---------------------------------------------------------------------------
// 7. A broken record fails alone

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_record_fails_its_own_status_while_another_converges() {
    let mut guard = Guard::new();
    let env = Env::new("broken").await;
    let good = guard.stack();
    let undefined_network = guard.stack();
    let garbage = guard.stack();
    let not_json = guard.stack();
    put(
        &env.store,
        "Stack",
        &good,
        stack_record(&good, sleepers(&["web"])),
    )
    .await;
    // Written raw, as apply would refuse them.
    let mut compose = sleepers(&["web"]);
    compose["services"]["web"]["networks"] = json!(["nowhere"]);
    put(
        &env.store,
        "Stack",
        &undefined_network,
        json!({
            "apiVersion": API_VERSION,
            "kind": "Stack",
            "metadata": {"name": undefined_network},
            "spec": {"compose": compose},
        }),
    )
    .await;
    put(
        &env.store,
        "Stack",
        &garbage,
        json!({"apiVersion": API_VERSION, "kind": "Stack", "metadata": {"name": garbage}, "spec": {"compose": 42}}),
    )
    .await;
    // Not even JSON, as etcdctl would let anyone write.
    env.store
        .raw_client()
        .put(
            format!("{}/desired/Stack/{not_json}", env.store.prefix()),
            "services: {web: oops",
            None,
        )
        .await
        .expect("raw put");
    let keys = controllers::all_keys(&env.controllers.ctx)
        .await
        .expect("one broken value does not hide the others");
    assert_eq!(keys.len(), 4, "{keys:?}");
    env.pass(&keys).await;
    for broken in [&undefined_network, &garbage, &not_json] {
        let status = env.status(broken).await.expect("a status");
        assert_eq!(status.phase, Phase::Failed, "{status:#?}");
        assert!(!status.message.is_empty(), "{status:#?}");
        assert!(owned("service", broken).is_empty());
        let events = env
            .store
            .list_events(Some(("Stack", broken)))
            .await
            .expect("events");
        assert!(
            events.iter().any(|(_, _, e)| e.reason == "Failed"),
            "{events:#?}"
        );
    }
    assert!(
        env.status(&undefined_network)
            .await
            .unwrap()
            .message
            .contains("nowhere")
    );
    let status = env.status(&not_json).await.unwrap();
    assert!(status.message.contains("not a JSON record"), "{status:#?}");
    env.converge(&good).await;
    assert_eq!(owned("service", &good), [format!("{good}_web")]);
}

// ---------------------------------------------------------------------------
// 8. Restart of `run` mid-converge

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_mid_converge_then_run_once_leaves_exactly_the_desired_state() {
    let mut guard = Guard::new();
    let env = Env::new("restart").await;
    let name = guard.stack();
    let services = ["a", "b", "c", "d", "e"];
    let mut compose = sleepers(&services);
    compose["services"]["a"]["networks"] = json!(["one"]);
    compose["services"]["b"]["networks"] = json!(["one", "two"]);
    compose["services"]["c"]["configs"] = json!(["conf"]);
    compose["networks"] = json!({"one": {}, "two": {}});
    compose["configs"] = json!({"conf": {"content": "x"}});
    put(&env.store, "Stack", &name, stack_record(&name, compose)).await;
    let addr = format!("127.0.0.1:{}", free_port());
    let child = env
        .cli()
        .args(["run", "--http-addr", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run starts");
    guard.children.push(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let events = env
            .store
            .list_events(Some(("Stack", &name)))
            .await
            .expect("events");
        // Services come last: killed now, some exist and some do not.
        if events
            .iter()
            .any(|(_, _, e)| e.message.starts_with("created service"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "run created nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let child = guard.children.last_mut().expect("the run process");
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let partial = owned("service", &name);
    println!(
        "killed with {} of {} services created",
        partial.len(),
        services.len()
    );

    let out = env.run_cli(&["run", "--once"]);
    assert!(
        out.status.success(),
        "run --once: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let want: Vec<String> = services.iter().map(|s| format!("{name}_{s}")).collect();
    assert_eq!(owned("service", &name), want);
    assert_eq!(
        owned("network", &name),
        ["default", "one", "two"].map(|n| format!("{name}_{n}"))
    );
    let configs = owned("config", &name);
    assert_eq!(configs.len(), 1, "{configs:?}");
    // Every object of the stack is ours: none was made twice under another label.
    for object in ["service", "network", "config"] {
        assert_eq!(
            names_with_label(object, &format!("com.docker.stack.namespace={name}")),
            owned(object, &name),
            "{object}s"
        );
    }
    env.converge(&name).await;
    let (code, report) = env.drift(&name);
    assert_eq!(code, 0, "{report}");
}

// ---------------------------------------------------------------------------
// 9. A secret value never leaks

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_secret_reaches_the_swarm_and_never_shows_in_status_events_drift_or_logs() {
    let mut guard = Guard::new();
    let env = Env::new("canary").await;
    let name = guard.stack();
    let canary = format!("canary-{:016x}", rand::random::<u64>());
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("token.txt"), &canary).expect("write secret");
    let key_file = dir.path().join("secret.key");
    std::fs::write(&key_file, rand::random::<[u8; 32]>()).expect("write key");
    let mut compose = sleepers(&["web"]);
    compose["services"]["web"]["secrets"] = json!(["token"]);
    compose["secrets"] = json!({"token": {"file": "./token.txt"}});
    let record = json!({
        "apiVersion": API_VERSION,
        "kind": "Stack",
        "metadata": {"name": name},
        "spec": {"compose": compose},
    });
    std::fs::write(dir.path().join("stack.json"), record.to_string()).expect("write record");
    let key_arg = key_file.to_string_lossy().into_owned();
    let applied = env.run_cli(&[
        "apply",
        "--secret-key-file",
        &key_arg,
        "-f",
        &dir.path().join("stack.json").to_string_lossy(),
    ]);
    let mut seen = String::new();
    seen.push_str(&String::from_utf8_lossy(&applied.stdout));
    seen.push_str(&String::from_utf8_lossy(&applied.stderr));
    assert!(applied.status.success(), "apply: {seen}");

    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let out = env
            .cli()
            .args(["--secret-key-file", &key_arg, "run", "--once"])
            .env("RUST_LOG", "debug")
            .output()
            .expect("run --once");
        seen.push_str(&String::from_utf8_lossy(&out.stdout));
        seen.push_str(&String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "run --once failed:\n{seen}");
        if env
            .status(&name)
            .await
            .is_some_and(|s| s.phase == Phase::Ready)
        {
            break;
        }
        assert!(Instant::now() < deadline, "not Ready:\n{seen}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        seen.contains("debug") || seen.contains("DEBUG"),
        "RUST_LOG=debug had no effect"
    );
    let secrets = owned("secret", &name);
    assert_eq!(secrets.len(), 1, "{secrets:?}");
    // The value inside the task is the canary.
    let container = docker_ok(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.swarm.service.name={name}_web"),
    ]);
    let container = container.lines().next().expect("a running task");
    assert_eq!(
        docker_ok(&["exec", container, "cat", "/run/secrets/token"]),
        canary
    );

    let drift = env
        .cli()
        .args(["--secret-key-file", &key_arg, "drift", "-o", "json"])
        .output()
        .expect("drift");
    seen.push_str(&String::from_utf8_lossy(&drift.stdout));
    seen.push_str(&String::from_utf8_lossy(&drift.stderr));
    for args in [
        vec!["get", "stacks", "-o", "json"],
        vec!["describe", "stack", &name],
        vec!["events"],
    ] {
        let out = env.run_cli(&args);
        seen.push_str(&String::from_utf8_lossy(&out.stdout));
        seen.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    let status = env.store.get_status("Stack", &name).await.unwrap();
    seen.push_str(&format!("{status:?}"));
    let record = env.store.get_record("Stack", &name).await.unwrap();
    seen.push_str(&format!("{record:?}"));
    let events = env.store.list_events(None).await.unwrap();
    seen.push_str(&format!("{events:?}"));
    assert!(
        !seen.contains(&canary),
        "the secret value leaked into status, events, drift or logs"
    );

    // Deleting the record removes its swarm secret and then its sealed value.
    let store_key = format!(
        "{}token",
        swarmkeeper::api::load::stack_secret_prefix(&name)
    );
    assert!(env.store.get_secret(&store_key).await.unwrap().is_some());
    assert!(env.run_cli(&["delete", "stack", &name]).status.success());
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    while env.store.get_secret(&store_key).await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "the sealed value outlived its record"
        );
        let out = env
            .cli()
            .args(["--secret-key-file", &key_arg, "run", "--once"])
            .output()
            .expect("run --once");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(owned("secret", &name).is_empty());
}

// ---------------------------------------------------------------------------
// 10. Leader election

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_another_takes_over_when_it_dies() {
    require_swarm_manager();
    let mut guard = Guard::new();
    let env = Env::new("leader").await;
    let name = guard.stack();
    put(
        &env.store,
        "Stack",
        &name,
        stack_record(&name, sleepers(&["web"])),
    )
    .await;
    let addrs: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    for addr in &addrs {
        let child = env
            .cli()
            .args(["run", "--http-addr", addr, "--resync", "5m"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run starts");
        guard.children.push(child);
    }
    eventually(
        "exactly one of two replicas leads",
        CONVERGE_TIMEOUT,
        || {
            let gauges: Vec<Option<i64>> = addrs.iter().map(|a| leader_gauge(a)).collect();
            gauges.iter().all(Option::is_some) && gauges.iter().flatten().sum::<i64>() == 1
        },
    )
    .await;
    let service = format!("{name}_web");
    eventually("the leader deploys the stack", CONVERGE_TIMEOUT, || {
        docker(&["service", "inspect", &service]).status.success()
    })
    .await;

    let leader = addrs
        .iter()
        .position(|a| leader_gauge(a) == Some(1))
        .expect("a leader");
    guard.children[leader].kill().expect("kill the leader");
    let standby = &addrs[1 - leader];
    // The dead leader's lease has to expire first (its TTL is 15 s).
    let took = eventually("the standby takes over", CONVERGE_TIMEOUT, || {
        leader_gauge(standby) == Some(1)
    })
    .await;
    println!("the standby led {took:?} after the leader died");
    docker_ok(&["service", "rm", &service]);
    eventually(
        "the new leader restores a removed service",
        CONVERGE_TIMEOUT,
        || docker(&["service", "inspect", &service]).status.success(),
    )
    .await;
}

// ---------------------------------------------------------------------------
// 11. dockerd going away

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reconnects_to_dockerd_and_heals_what_changed_while_it_was_away() {
    require_swarm_manager();
    let mut guard = Guard::new();
    let env = Env::new("reconnect").await;
    let name = guard.stack();
    put(
        &env.store,
        "Stack",
        &name,
        stack_record(&name, sleepers(&["web"])),
    )
    .await;
    // The controller reaches dockerd through a proxy the test can cut.
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("docker.sock");
    let listen = || tokio::net::UnixListener::bind(&socket).expect("proxy socket");
    let proxy = proxy_to_dockerd(listen());
    let addr = format!("127.0.0.1:{}", free_port());
    let child = env
        .cli()
        // A resync far away: only the reconnect can bring the heal.
        .args(["run", "--http-addr", &addr, "--resync", "1h"])
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run starts");
    guard.children.push(child);
    let service = format!("{name}_web");
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    while !env
        .status(&name)
        .await
        .is_some_and(|s| s.phase == Phase::Ready)
    {
        assert!(Instant::now() < deadline, "run did not converge the stack");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    proxy.abort();
    let _ = proxy.await;
    std::fs::remove_file(&socket).expect("remove the proxy socket");
    docker_ok(&["service", "scale", "--detach", &format!("{service}=3")]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(replicas(&service), "3", "healed without dockerd?");

    let _proxy = proxy_to_dockerd(listen());
    let took = eventually(
        "the controller reconnects and heals the scale made meanwhile",
        CONVERGE_TIMEOUT,
        || replicas(&service) == "1",
    )
    .await;
    println!("healed {took:?} after dockerd came back");
}

// ---------------------------------------------------------------------------
// 11b. A resync beyond what a timer can hold

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_a_resync_of_20000h_converges_and_keeps_running() {
    let mut guard = Guard::new();
    let env = Env::new("long-resync").await;
    let name = guard.stack();
    put(
        &env.store,
        "Stack",
        &name,
        stack_record(&name, sleepers(&["web"])),
    )
    .await;
    let addr = format!("127.0.0.1:{}", free_port());
    let log = tempfile::NamedTempFile::new().expect("log file");
    let child = env
        .cli()
        // 20000 h (2.3 years) is past the reach of the work queue's timer wheel: a
        // Ready stack's requeue after the resync used to panic ("invalid deadline").
        .args(["run", "--http-addr", &addr, "--resync", "20000h"])
        .stdout(Stdio::null())
        .stderr(log.reopen().expect("log file"))
        .spawn()
        .expect("run starts");
    guard.children.push(child);
    let log_text = || std::fs::read_to_string(log.path()).unwrap_or_default();
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    while !env
        .status(&name)
        .await
        .is_some_and(|s| s.phase == Phase::Ready)
    {
        assert!(
            Instant::now() < deadline,
            "run did not converge the stack; its log:\n{}",
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The requeue is scheduled as soon as the reconcile that wrote Ready returns.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let child = guard.children.last_mut().expect("the run process");
    let exited = child.try_wait().expect("the run process can be polled");
    assert!(
        exited.is_none(),
        "run exited ({exited:?}); its log:\n{}",
        log_text()
    );
    assert!(
        log_text().contains("clamped"),
        "no warning; log:\n{}",
        log_text()
    );
    let (code, body) = http_get(&addr, "/healthz").expect("/healthz answers");
    assert_eq!(code, 200, "{body}");
}

// ---------------------------------------------------------------------------
// 12. An update the swarm rolls back

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_the_swarm_rolls_back_is_degraded_and_not_sent_again() {
    require_swarm_manager();
    let mut guard = Guard::new();
    let env = Env::new("rollback").await;
    let name = guard.stack();
    let key = stack_key(&name);
    let mut compose = sleepers(&["web"]);
    compose["services"]["web"]["deploy"]["update_config"] =
        json!({"failure_action": "rollback", "monitor": "3s"});
    put(
        &env.store,
        "Stack",
        &name,
        stack_record(&name, compose.clone()),
    )
    .await;
    env.converge(&name).await;

    // A command that fails at once: the swarm rolls the update back.
    compose["services"]["web"]["command"] = json!(["sh", "-c", "exit 1"]);
    put(&env.store, "Stack", &name, stack_record(&name, compose)).await;
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    let status = loop {
        env.pass(std::slice::from_ref(&key)).await;
        let status = env.status(&name).await.expect("a status");
        if status.phase == Phase::Degraded {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the rolled-back update never showed as Degraded: {status:#?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let condition = &status.conditions[0];
    assert!(!condition.ready);
    assert!(condition.message.contains("Rollback"), "{condition:?}");

    // Passes over the rolled-back service leave it be: no flapping re-updates.
    let writes = env.docker().writes();
    env.pass(std::slice::from_ref(&key)).await;
    env.pass(std::slice::from_ref(&key)).await;
    assert_eq!(
        env.docker().writes(),
        writes,
        "the failed update was sent again"
    );
    assert_eq!(
        env.status(&name).await.map(|s| s.phase),
        Some(Phase::Degraded)
    );
}

// ---------------------------------------------------------------------------
// 13. Tasks that do not run say why

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_whose_tasks_fail_shows_the_task_error_in_its_condition() {
    require_swarm_manager();
    let mut guard = Guard::new();
    let env = Env::new("task-error").await;
    let name = guard.stack();
    let key = stack_key(&name);
    let mut compose = sleepers(&["web"]);
    // No such image here, and no registry to pull it from.
    compose["services"]["web"]["image"] = json!(format!("local/{name}-missing:1"));
    put(&env.store, "Stack", &name, stack_record(&name, compose)).await;
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    let condition = loop {
        env.pass(std::slice::from_ref(&key)).await;
        let status = env.status(&name).await.expect("a status");
        assert_ne!(status.phase, Phase::Ready, "{status:#?}");
        if let Some(c) = status
            .conditions
            .iter()
            .find(|c| c.message.contains("last task error"))
        {
            break c.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no task error in the status: {status:#?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert!(!condition.ready);
    assert!(
        condition.message.starts_with("0/1 tasks running"),
        "{condition:?}"
    );
    println!("{}", condition.message);
}
