//! What the fault scenarios share: a fixture (prefix, key, canary), the
//! operator as a child process with its log in a file, stack records of many
//! services, the live state of a stack read through the docker CLI, and the
//! canary check.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use etcd_client::GetOptions;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use swarmkeeper::api::{API_VERSION, Kind, Record};
use swarmkeeper::controllers::RecordKey;
use swarmkeeper::controllers::status::{Phase, Status};
use swarmkeeper::store::{Expect, Keyring, RecordPut, SecretKey, Store};

use super::common::controllers::status;
use super::common::http::free_port;
use super::common::swarm::{IMAGE, docker, docker_ok, names_with_label, require_swarm_manager};

/// Generous for a loaded machine, bounded all the same.
pub const TIMEOUT: Duration = Duration::from_secs(90);

/// The random source of one scenario, from `SWARMKEEPER_FAULT_SEED` or a fixed default.
pub fn seeded(scenario: &str) -> StdRng {
    let seed = std::env::var("SWARMKEEPER_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f417);
    eprintln!("{scenario}: SWARMKEEPER_FAULT_SEED={seed}");
    StdRng::seed_from_u64(seed)
}

/// A stack name of the form `skx<random>`, short enough for `<stack>_<service>`.
pub fn stack_name() -> String {
    format!("skx{:08x}", rand::random::<u32>())
}

/// One scenario's prefix, secret key and canary, and everything it has seen
/// (operator logs, CLI output) for the canary check.
pub struct Fixture {
    pub store: Store,
    pub endpoint: String,
    pub canary: String,
    keyring: Keyring,
    key_file: PathBuf,
    pub dir: tempfile::TempDir,
    seen: Mutex<String>,
    stacks: Mutex<Vec<String>>,
}

impl Fixture {
    /// A fixture on `store` (reached at `endpoint`); panics unless the swarm is up.
    pub fn new(store: Store, endpoint: &str) -> Self {
        require_swarm_manager();
        let dir = tempfile::tempdir().expect("temp dir");
        let key_file = dir.path().join("secret.key");
        let key: [u8; 32] = rand::random();
        std::fs::write(&key_file, key).expect("write the key");
        let keyring = Keyring::new(SecretKey::from_file(&key_file).expect("a key"), None);
        Self {
            store,
            endpoint: endpoint.to_owned(),
            canary: format!("canary-{:016x}", rand::random::<u64>()),
            keyring,
            key_file,
            dir,
            seen: Mutex::default(),
            stacks: Mutex::default(),
        }
    }

    /// A fresh stack name the fixture removes the objects of when dropped.
    pub fn stack(&self) -> String {
        let name = stack_name();
        self.stacks.lock().unwrap().push(name.clone());
        name
    }

    /// The canary sealed as `stack`'s secret `token`; the compose definition that uses it.
    pub async fn canary_secret(&self, stack: &str) -> Value {
        let key = format!("stack:{stack}:token");
        self.store
            .put_secret(&key, &self.keyring.seal(&key, self.canary.as_bytes()))
            .await
            .expect("etcd takes the sealed value");
        json!({"x-swarmkeeper-secret": key})
    }

    /// Writes a record as `apply` would store it (straight into etcd).
    pub async fn put(&self, value: Value) {
        let record = Record::from_value(value).expect("a valid record");
        let (kind, name) = record.key();
        let put = RecordPut {
            kind: kind.as_str().into(),
            name: name.into(),
            value: record.to_value(),
            expect: Expect::Any,
        };
        // Right after etcd restarts, the client may need a few tries to reconnect.
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Err(err) = self.store.put_records(vec![put.clone()]).await {
            assert!(Instant::now() < deadline, "etcd refuses the record: {err}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The binary with this fixture's etcd, prefix and key.
    pub fn cli(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarmkeeper"));
        cmd.args(["--etcd-endpoints", &self.endpoint])
            .args(["--prefix", self.store.prefix()])
            .arg("--secret-key-file")
            .arg(&self.key_file)
            .env_remove("RUST_LOG")
            .env_remove("DOCKER_HOST");
        cmd
    }

    /// Runs the binary; its output is kept for the canary check.
    pub fn run_cli(&self, args: &[&str]) -> Output {
        let out = self.cli().args(args).output().expect("the binary runs");
        self.saw(&String::from_utf8_lossy(&out.stdout));
        self.saw(&String::from_utf8_lossy(&out.stderr));
        out
    }

    pub fn saw(&self, text: &str) {
        self.seen.lock().unwrap().push_str(text);
    }

    /// `swarmkeeper run` against `etcd` (an endpoint, maybe a proxy) and
    /// `docker_host` (a socket, maybe a proxy), logging at debug into a file of its own.
    pub fn operator(&self, etcd: &str, docker_host: Option<&Path>) -> Operator {
        let addr = format!("127.0.0.1:{}", free_port());
        let log = self
            .dir
            .path()
            .join(format!("operator-{}.log", rand::random::<u32>()));
        let file = std::fs::File::create(&log).expect("a log file");
        let mut cmd = self.cli();
        cmd.args(["--etcd-endpoints", etcd])
            .args(["run", "--http-addr", &addr, "--resync", "1h"])
            .env("RUST_LOG", "info,swarmkeeper=debug")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file);
        if let Some(socket) = docker_host {
            cmd.env("DOCKER_HOST", format!("unix://{}", socket.display()));
        }
        Operator {
            child: cmd.spawn().expect("run starts"),
            addr,
            log,
        }
    }

    /// The status of a stack.
    pub async fn status(&self, stack: &str) -> Option<Status> {
        status(&self.store, &RecordKey::new(Kind::Stack, stack)).await
    }

    /// Whether a stack's status is Ready for its current generation.
    pub async fn ready(&self, stack: &str) -> bool {
        let Some(record) = self.store.get_record("Stack", stack).await.expect("etcd") else {
            return false;
        };
        self.status(stack)
            .await
            .is_some_and(|s| s.phase == Phase::Ready && s.observed_revision == record.mod_revision)
    }

    /// `drift stack NAME --exit-code`: 0 when the swarm is what the record says.
    pub fn drift_code(&self, stack: &str) -> i32 {
        let out = self.run_cli(&["drift", "stack", stack, "-o", "json", "--exit-code"]);
        out.status.code().expect("drift exited")
    }

    /// Revokes the leader leases a killed operator left, as their expiry (15 s) would.
    pub async fn revoke_leader_leases(&self) {
        let mut client = self.store.raw_client();
        let prefix = format!("{}/leader", self.store.prefix());
        let leaders = client
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .expect("etcd answers");
        for kv in leaders.kvs() {
            let _: Result<_, _> = client.lease_revoke(kv.lease()).await;
        }
    }

    /// Panics if the canary shows in anything seen, the operator logs in
    /// the fixture's folder, or any etcd value under the prefix.
    pub async fn assert_no_canary(&self) {
        let mut seen = self.seen.lock().unwrap().clone();
        for entry in std::fs::read_dir(self.dir.path()).expect("the fixture's folder") {
            let path = entry.expect("an entry").path();
            if path.extension().is_some_and(|e| e == "log") {
                seen.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
        let all = self
            .store
            .raw_client()
            .get(
                format!("{}/", self.store.prefix()),
                Some(GetOptions::new().with_prefix()),
            )
            .await
            .expect("etcd answers");
        for kv in all.kvs() {
            seen.push_str(&String::from_utf8_lossy(kv.value()));
        }
        let events = self.store.list_events(None).await.expect("etcd answers");
        let _ = write!(seen, "{events:?}");
        assert!(
            !seen.contains(&self.canary),
            "the canary secret value leaked into logs, events, status, drift or etcd"
        );
        assert!(
            !seen.contains("panicked"),
            "a swarmkeeper process panicked:\n{}",
            tail(&seen)
        );
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for stack in self.stacks.lock().unwrap().iter() {
            remove_stack_objects(stack);
        }
    }
}

fn tail(text: &str) -> &str {
    let start = text.len().saturating_sub(4000);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    &text[start..]
}

/// Removes everything a stack owns, services first (they hold the rest).
pub fn remove_stack_objects(stack: &str) {
    let label = format!("swarmkeeper.owner=Stack.{stack}");
    for object in ["service", "secret", "config", "network"] {
        let names = names_with_label(object, &label);
        if !names.is_empty() {
            let mut args = vec![object, "rm"];
            args.extend(names.iter().map(String::as_str));
            let _ = docker(&args);
        }
    }
}

/// A `swarmkeeper run` child; killed when dropped (woken first, if stopped).
pub struct Operator {
    pub child: Child,
    pub addr: String,
    pub log: PathBuf,
}

impl Operator {
    pub fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status();
    }

    /// Panics unless the process still runs.
    pub fn assert_running(&mut self) {
        let exited = self.child.try_wait().expect("wait");
        assert!(
            exited.is_none(),
            "the operator exited ({exited:?}):\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.signal("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A stack of `services` busybox services (`s00`, `s01`, …) at `generation`,
/// all on one stack network, with one config (its content changes with the
/// generation, so each generation rotates it) and the canary secret `token`.
pub fn stack_record(name: &str, services: usize, generation: u32, token: &Value) -> Value {
    let service = json!({
        "image": IMAGE,
        "command": ["sleep", "3600"],
        "environment": {"GENERATION": generation.to_string()},
        "networks": ["net"],
        "configs": ["conf"],
        "secrets": ["token"],
        "deploy": {"replicas": 0},
    });
    let services: serde_json::Map<String, Value> = (0..services)
        .map(|i| (format!("s{i:02}"), service.clone()))
        .collect();
    json!({
        "apiVersion": API_VERSION,
        "kind": "Stack",
        "metadata": {"name": name},
        "spec": {"compose": {
            "version": "3.8",
            "services": services,
            "networks": {"net": {}},
            "configs": {"conf": {"content": format!("generation {generation}")}},
            "secrets": {"token": token},
        }},
    })
}

/// What the swarm holds of a stack: per object type, the names owned by it
/// (by owner label) and those in its namespace (by the docker stack label).
#[derive(Debug)]
pub struct LiveStack {
    /// Service name and its `GENERATION`.
    pub services: Vec<(String, String)>,
    pub networks: Vec<String>,
    pub secrets: Vec<String>,
    pub configs: Vec<String>,
    /// Objects in the stack's namespace but not owned by the record.
    pub strangers: Vec<String>,
}

impl LiveStack {
    pub fn read(stack: &str) -> Self {
        let owner = format!("swarmkeeper.owner=Stack.{stack}");
        let namespace = format!("com.docker.stack.namespace={stack}");
        let mut strangers = Vec::new();
        let mut by = |object: &str| {
            let owned = names_with_label(object, &owner);
            for name in names_with_label(object, &namespace) {
                if !owned.contains(&name) {
                    strangers.push(format!("{object} {name}"));
                }
            }
            owned
        };
        let names = by("service");
        let (networks, secrets, configs) = (by("network"), by("secret"), by("config"));
        let services = if names.is_empty() {
            Vec::new()
        } else {
            let mut args = vec![
                "service",
                "inspect",
                "--format",
                "{{.Spec.Name}} {{range .Spec.TaskTemplate.ContainerSpec.Env}}{{.}} {{end}}",
            ];
            args.extend(names.iter().map(String::as_str));
            let out = docker(&args);
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|line| {
                    let mut words = line.split_whitespace();
                    let name = words.next()?.to_owned();
                    let generation = words
                        .find_map(|e| e.strip_prefix("GENERATION="))
                        .unwrap_or_default()
                        .to_owned();
                    Some((name, generation))
                })
                .collect()
        };
        Self {
            services,
            networks,
            secrets,
            configs,
            strangers,
        }
    }

    /// Whether this is exactly `services` services at `generation`, one
    /// network, one secret and one config (of `generation`), and nothing else.
    pub fn is_exactly(&self, stack: &str, services: usize, generation: u32) -> bool {
        let want: Vec<(String, String)> = (0..services)
            .map(|i| (format!("{stack}_s{i:02}"), generation.to_string()))
            .collect();
        let mut have = self.services.clone();
        have.sort();
        have == want
            && self.networks == [format!("{stack}_net")]
            && self.secrets.len() == 1
            && self.configs.len() == 1
            && config_content(&self.configs[0]) == format!("generation {generation}")
            && self.strangers.is_empty()
    }
}

/// The content of a swarm config (configs, unlike secrets, give it back).
fn config_content(name: &str) -> String {
    use base64::Engine as _;
    let data = docker_ok(&["config", "inspect", "--format", "{{json .Spec.Data}}", name]);
    let data: String = serde_json::from_str(&data).unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Polls `check` every 250 ms until it gives a value; panics with `what` after `timeout`.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until a stack is exactly `services` services at `generation`, Ready
/// for its current generation, and `drift` finds nothing.
pub async fn converged(
    fx: &Fixture,
    stack: &str,
    services: usize,
    generation: u32,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let live = LiveStack::read(stack);
        if fx.ready(stack).await && live.is_exactly(stack, services, generation) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Stack/{stack} did not converge to generation {generation} within {timeout:?}: \
             status {:#?}, live {live:#?}",
            fx.status(stack).await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        fx.drift_code(stack),
        0,
        "drift of Stack/{stack} once converged"
    );
}
