//! swarmkeeper deployed as manifests/swarmkeeper.yml says: etcd and two controller replicas as
//! swarm services (images from `hack/images.sh`), a record applied from the host converged by
//! the one replica that leads. A guard removes the stacks, the record's objects, the key secret
//! and the etcd volume, even when the test fails.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::swarm::{DOCKER, IMAGE, docker, docker_ok, require_swarm_manager, stack_deploy};

/// The images the manifest runs; `hack/images.sh` builds them (`hack/test.sh` runs it first).
const IMAGES: [&str; 2] = ["local/etcd:3.4", "local/swarmkeeper:dev"];
/// Long enough for etcd and two replicas to start, fail once while etcd is not up yet, and be
/// restarted, on a busy two-core machine.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Everything one deployment made, removed on drop.
struct Deployment {
    /// The stack running etcd and swarmkeeper.
    stack: String,
    /// The swarm secret holding the controller's key.
    secret: String,
    /// The stack the applied record makes.
    record: String,
    etcd_port: u16,
}

impl Deployment {
    fn service(&self, name: &str) -> String {
        format!("{}_{name}", self.stack)
    }

    fn prefix(&self) -> String {
        format!("/{}", self.stack)
    }

    /// The host binary pointed at the in-swarm etcd, without the runner's `SWARMKEEPER_*`.
    fn swarmkeeper(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_swarmkeeper"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SWARMKEEPER_") {
                command.env_remove(name);
            }
        }
        command
            .args([
                "--etcd-endpoints",
                &format!("http://127.0.0.1:{}", self.etcd_port),
            ])
            .args(["--prefix", &self.prefix()])
            .args(args)
            .output()
            .expect("cannot run the swarmkeeper binary")
    }

    /// What the operator looks at when something did not come up.
    fn diagnostics(&self) -> String {
        let ps = docker(&["stack", "ps", "--no-trunc", &self.stack]);
        let logs = |service: &str| {
            let out = docker(&["service", "logs", "--no-task-ids", &self.service(service)]);
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        };
        format!(
            "docker stack ps:\n{}{}\netcd logs:\n{}\nswarmkeeper logs:\n{}",
            String::from_utf8_lossy(&ps.stdout),
            String::from_utf8_lossy(&ps.stderr),
            logs("etcd"),
            logs("swarmkeeper"),
        )
    }

    /// Waits for `done` (polled every half second), panicking with the diagnostics on timeout.
    fn wait(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + TIMEOUT;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "timed out after {TIMEOUT:?} waiting for {what}\n{}",
                self.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        // The record first, while its controller runs: it removes what the record made.
        if etcd_healthy(self.etcd_port) {
            let _ = self.swarmkeeper(&["delete", "stack", &self.record]);
        }
        let _ = docker(&["stack", "rm", &self.stack]);
        // The network and the volume go once no container uses them.
        let namespace = format!("label=com.docker.stack.namespace={}", self.stack);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let containers = docker(&["ps", "-aq", "--filter", &namespace]);
            if containers.stdout.iter().all(u8::is_ascii_whitespace) {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        // What the controller had no time to remove: the record's objects are a stack too.
        let _ = docker(&["stack", "rm", &self.record]);
        let _ = docker(&["network", "rm", &self.service("swarmkeeper")]);
        let _ = docker(&["secret", "rm", &self.secret]);
        let _ = docker(&["volume", "rm", &self.service("etcd-data")]);
    }
}

/// A port nobody listens on, for etcd's host-mode published port: picked below the kernel's
/// ephemeral range, so outgoing connections do not take it before dockerd binds it.
fn free_port() -> u16 {
    (0..100)
        .map(|_| 20_000 + rand::random::<u16>() % 12_000)
        .find(|&port| TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok())
        .expect("no free port in 20000-31999")
}

/// The whole HTTP/1.0 answer to `GET path`, or `None` when nothing answers.
fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .ok()?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// etcd's `/health` on the published port answers `{"health":"true"}`.
fn etcd_healthy(port: u16) -> bool {
    http_get(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), "/health")
        .is_some_and(|answer| answer.contains(r#""health":"true""#))
}

/// Each running replica's whole answer to `GET path` on its HTTP port, which the manifest
/// does not publish: the host reaches a task through the address dockerd gives it on
/// `docker_gwbridge`, the bridge of containers on overlay networks.
fn replica_answers(service: &str, path: &str) -> Vec<String> {
    let ids = docker_ok(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=com.docker.swarm.service.name={service}"),
    ]);
    ids.lines()
        .map(|id| {
            let cidr = docker_ok(&[
                "network",
                "inspect",
                "docker_gwbridge",
                "--format",
                &format!(
                    "{{{{ with index .Containers \"{id}\" }}}}{{{{ .IPv4Address }}}}{{{{ end }}}}"
                ),
            ]);
            let ip: Ipv4Addr = cidr
                .split('/')
                .next()
                .and_then(|ip| ip.parse().ok())
                .unwrap_or_else(|| panic!("container {id} has no docker_gwbridge address"));
            http_get(SocketAddr::from((ip, 8080)), path)
                .unwrap_or_else(|| format!("no answer from {ip}:8080"))
        })
        .collect()
}

/// The status line of an HTTP answer.
fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or_default()
}

/// The value of the `swarmkeeper_leader` gauge in a `/metrics` answer.
fn leader_gauge(answer: &str) -> Option<&str> {
    answer
        .lines()
        .find_map(|line| line.strip_prefix("swarmkeeper_leader "))
}

/// Creates the swarm secret `name` holding 32 random bytes, as the operator does with
/// `head -c 32 /dev/urandom | docker secret create swarmkeeper_key -`.
fn create_key_secret(name: &str) {
    let mut child = Command::new(DOCKER)
        .args(["secret", "create", name, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run docker secret create");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(&rand::random::<[u8; 32]>())
        .expect("cannot write the key to docker secret create");
    let out = child.wait_with_output().expect("docker secret create");
    assert!(
        out.status.success(),
        "docker secret create {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The PHASE column of `get stack NAME`, if the record is listed.
fn phase(deployment: &Deployment) -> Option<String> {
    let out = deployment.swarmkeeper(&["get", "stack", &deployment.record]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.len() > 2 && cols[1] == deployment.record)
        .map(|cols| cols[2].to_owned())
}

fn record_file(dir: &Path, name: &str) -> String {
    let path = dir.join("web.yaml");
    let record = format!(
        "apiVersion: swarmkeeper.dev/v1alpha1
kind: Stack
metadata:
  name: {name}
spec:
  compose:
    services:
      web:
        image: {IMAGE}
        command: [sleep, infinity]
        deploy:
          replicas: 0
"
    );
    std::fs::write(&path, record).expect("cannot write the record file");
    path.to_str().expect("utf-8 temp path").to_owned()
}

#[test]
fn the_manifest_runs_a_leader_that_converges_records_applied_from_the_host() {
    require_swarm_manager();
    for image in IMAGES {
        assert!(
            docker(&["image", "inspect", image]).status.success(),
            "{image} is missing: run hack/images.sh"
        );
    }
    let stack = format!("ski{:08x}", rand::random::<u32>());
    let deployment = Deployment {
        secret: format!("{stack}_key"),
        record: format!("{stack}web"),
        etcd_port: free_port(),
        stack,
    };
    create_key_secret(&deployment.secret);
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/swarmkeeper.yml");
    let port = deployment.etcd_port.to_string();
    let prefix = deployment.prefix();
    stack_deploy(
        manifest,
        &deployment.stack,
        &[
            ("SWARMKEEPER_ETCD_PORT", &port),
            ("SWARMKEEPER_PREFIX", &prefix),
            ("SWARMKEEPER_KEY_SECRET", &deployment.secret),
        ],
    );
    deployment.wait("etcd on the published port", || {
        etcd_healthy(deployment.etcd_port)
    });

    let dir = tempfile::tempdir().expect("temp dir");
    let file = record_file(dir.path(), &deployment.record);
    let applied = deployment.swarmkeeper(&["apply", "-f", &file]);
    assert!(
        applied.status.success(),
        "apply failed: {}",
        String::from_utf8_lossy(&applied.stderr)
    );

    let web = format!("{}_web", deployment.record);
    deployment.wait("the in-swarm controller to converge the record", || {
        phase(&deployment).as_deref() == Some("Ready")
    });
    // Made by the controller of this deployment: its scope is the prefix the manifest gave it.
    let scope = docker_ok(&[
        "service",
        "inspect",
        &web,
        "--format",
        "{{ index .Spec.Labels \"swarmkeeper.scope\" }}",
    ]);
    assert_eq!(
        scope, prefix,
        "{web} is not owned by the in-swarm controller"
    );

    // Both replicas up, and only one of them ever led.
    let controller = deployment.service("swarmkeeper");
    deployment.wait("both swarmkeeper replicas to run", || {
        let states = docker_ok(&[
            "service",
            "ps",
            &controller,
            "--filter",
            "desired-state=running",
            "--format",
            "{{.CurrentState}}",
        ]);
        states.lines().filter(|s| s.starts_with("Running")).count() == 2
    });
    let logs = docker(&["service", "logs", "--no-task-ids", &controller]);
    let logs =
        String::from_utf8_lossy(&logs.stdout).into_owned() + &String::from_utf8_lossy(&logs.stderr);
    let leading = logs.lines().filter(|l| l.contains(" leading ")).count();
    assert_eq!(
        leading, 1,
        "exactly one replica should lead; the logs:\n{logs}"
    );
    // Both alive and ready (etcd and dockerd answer both); leadership is a metric.
    let ready = replica_answers(&controller, "/readyz");
    assert!(
        ready.len() == 2 && ready.iter().all(|a| status_line(a).contains(" 200 ")),
        "/readyz should answer 200 on the leader and on the standby, got {ready:?}"
    );
    for health in replica_answers(&controller, "/healthz") {
        assert!(
            status_line(&health).contains(" 200 "),
            "/healthz answered {health}"
        );
    }
    let metrics = replica_answers(&controller, "/metrics");
    let mut leaders: Vec<Option<&str>> = metrics.iter().map(|a| leader_gauge(a)).collect();
    leaders.sort_unstable();
    assert_eq!(
        leaders,
        [Some("0"), Some("1")],
        "swarmkeeper_leader should be 1 on exactly one replica; /metrics answered {metrics:?}"
    );
}
