//! Fenced writes: a leader that lost its lease writes nothing that lands, in
//! etcd or in dockerd, and `run --once` is not a second writer.
//!
//! A real etcd (tests/common), the real swarm and the binary. The pause test
//! holds the leader's service update in a proxy the test owns, freezes the
//! leader past its lease, lets a second replica take over (within the lease's
//! TTL + 2 s of the pause) and converge newer generations, then wakes the old
//! one up.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::Etcd;
use common::http::{free_port, last_write, leader_gauge};
use common::swarm::{IMAGE, docker, names_with_label, require_swarm_manager};
use serde_json::{Value, json};
use swarmkeeper::api::{API_VERSION, Record};
use swarmkeeper::store::{Expect, RecordPut, Store, StoreError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// Long enough for a lease to expire (15 s) and a stack to converge on a busy machine.
const TIMEOUT: Duration = Duration::from_secs(90);
/// The lease `swarmkeeper run` campaigns with.
const LEASE_TTL: Duration = Duration::from_secs(15);

/// Kills the test's processes and removes the services its stack owns, even on panic.
struct Guard {
    stack: String,
    children: Vec<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for child in &mut self.children {
            // A stopped process must be woken up to die of SIGKILL's cleanup.
            signal(child, "CONT");
            let _ = child.kill();
            let _ = child.wait();
        }
        let label = format!("swarmkeeper.owner=Stack.{}", self.stack);
        for service in names_with_label("service", &label) {
            let _ = docker(&["service", "rm", &service]);
        }
    }
}

fn signal(child: &Child, name: &str) {
    let _ = Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status();
}

fn stack_record(name: &str, generation: u32) -> Value {
    let compose = json!({
        "version": "3.8",
        "services": {"web": {
            "image": IMAGE,
            "command": ["sleep", "3600"],
            "environment": {"GENERATION": generation.to_string()},
            // No task to start: the test is about the control plane.
            "deploy": {"replicas": 0},
        }},
    });
    let record = json!({
        "apiVersion": API_VERSION,
        "kind": "Stack",
        "metadata": {"name": name},
        "spec": {"compose": compose},
    });
    Record::from_value(record)
        .expect("a valid record")
        .to_value()
}

async fn put(store: &Store, name: &str, generation: u32) {
    store
        .put_records(vec![RecordPut {
            kind: "Stack".into(),
            name: name.into(),
            value: stack_record(name, generation),
            expect: Expect::Any,
        }])
        .await
        .expect("write the record");
}

fn cli(store: &Store) -> Command {
    cli_via(store, &Etcd::shared().endpoint())
}

fn cli_via(store: &Store, endpoint: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarmkeeper"));
    cmd.args(["--etcd-endpoints", endpoint])
        .args(["--prefix", store.prefix()])
        .env_remove("RUST_LOG");
    cmd
}

/// The `GENERATION` a service runs and its version index, if it exists.
fn service_state(service: &str) -> Option<(String, String)> {
    let out = docker(&[
        "service",
        "inspect",
        "--format",
        "{{range .Spec.TaskTemplate.ContainerSpec.Env}}{{.}} {{end}}|{{.Version.Index}}",
        service,
    ]);
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let (env, version) = text.split_once('|')?;
    let generation = env
        .split_whitespace()
        .find_map(|e| e.strip_prefix("GENERATION="))?;
    Some((generation.to_owned(), version.to_owned()))
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A proxy to dockerd that, while armed, holds every service update until
/// released, and counts the updates it let through.
#[derive(Clone)]
struct HoldingProxy {
    armed: watch::Sender<bool>,
    held: Arc<AtomicUsize>,
    forwarded_updates: Arc<AtomicUsize>,
}

fn is_service_update(chunk: &[u8]) -> bool {
    chunk.starts_with(b"POST ")
        && chunk
            .split(|b| *b == b'\r')
            .next()
            .is_some_and(|line| line.windows(7).any(|w| w == b"/update"))
}

impl HoldingProxy {
    fn start(listener: tokio::net::UnixListener) -> Self {
        let proxy = Self {
            armed: watch::channel(false).0,
            held: Arc::default(),
            forwarded_updates: Arc::default(),
        };
        let accept = proxy.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(accept.clone().serve(client));
            }
        });
        proxy
    }

    async fn serve(self, client: tokio::net::UnixStream) {
        let Ok(daemon) = tokio::net::UnixStream::connect("/var/run/docker.sock").await else {
            return;
        };
        let (mut client_read, mut client_write) = client.into_split();
        let (mut daemon_read, mut daemon_write) = daemon.into_split();
        let answers = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut daemon_read, &mut client_write).await;
        });
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if is_service_update(&buf[..n]) {
                let mut armed = self.armed.subscribe();
                if *armed.borrow() {
                    self.held.fetch_add(1, Ordering::SeqCst);
                    let _ = armed.wait_for(|armed| !*armed).await;
                }
                self.forwarded_updates.fetch_add(1, Ordering::SeqCst);
            }
            if daemon_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        answers.abort();
    }
}

/// A TCP link to etcd that the test can freeze: while frozen nothing moves in
/// either direction, as when a network partition or a paused peer holds it.
struct FreezableLink {
    frozen: watch::Sender<bool>,
    endpoint: String,
}

impl FreezableLink {
    async fn to(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let frozen = watch::channel(false).0;
        let link = frozen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(client_read, server_write, link.subscribe()));
                tokio::spawn(pump(server_read, client_write, link.subscribe()));
            }
        });
        Self { frozen, endpoint }
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Read before the freeze, sent after it.
        if frozen.wait_for(|f| !*f).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_past_its_lease_lands_no_write_after_it_wakes() {
    require_swarm_manager();
    let store = Etcd::shared().store("paused-leader").await;
    let name = format!("skf{:08x}", rand::random::<u32>());
    let service = format!("{name}_web");
    let mut guard = Guard {
        stack: name.clone(),
        children: Vec::new(),
    };
    put(&store, &name, 1).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("docker.sock");
    let proxy = HoldingProxy::start(tokio::net::UnixListener::bind(&socket).expect("socket"));
    let etcd_link = FreezableLink::to(
        Etcd::shared()
            .endpoint()
            .trim_start_matches("http://")
            .to_owned(),
    )
    .await;
    let old = cli_via(&store, &etcd_link.endpoint)
        .args(["run", "--http-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--resync", "1h"])
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run starts");
    guard.children.push(old);
    eventually("the first leader deploys generation 1", || {
        service_state(&service).is_some_and(|(g, _)| g == "1")
    })
    .await;

    // A second writer next to a live leader is refused, and says who leads.
    let once = cli(&store).args(["run", "--once"]).output().expect("runs");
    let said = String::from_utf8_lossy(&once.stderr);
    assert_eq!(
        once.status.code(),
        Some(1),
        "run --once next to a leader: {said}"
    );
    assert!(said.contains("leads") && said.contains("--force"), "{said}");

    proxy.armed.send_replace(true);
    put(&store, &name, 2).await;
    eventually("the first leader's update is in flight", || {
        proxy.held.load(Ordering::SeqCst) == 1
    })
    .await;
    // Frozen with its etcd link: when it wakes, its keep-alive learns nothing
    // for a while, and only its own deadline can stop it.
    etcd_link.frozen.send_replace(true);
    signal(&guard.children[0], "STOP");
    let stopped = Instant::now();

    let new_addr = format!("127.0.0.1:{}", free_port());
    let new = cli(&store)
        .args(["run", "--http-addr", &new_addr])
        .args(["--resync", "1h"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run starts");
    guard.children.push(new);
    // The old lease was last kept alive before the pause: the second replica
    // leads once it expires, within its TTL, plus the election's own moves.
    eventually("the second replica leads", || {
        leader_gauge(&new_addr) == Some(1)
    })
    .await;
    assert!(
        stopped.elapsed() <= LEASE_TTL + Duration::from_secs(2),
        "the takeover took {:?}, more than the lease's TTL + 2 s",
        stopped.elapsed()
    );
    eventually("the new leader converges generation 2", || {
        service_state(&service).is_some_and(|(g, _)| g == "2")
    })
    .await;
    put(&store, &name, 3).await;
    eventually("the new leader converges generation 3", || {
        service_state(&service).is_some_and(|(g, _)| g == "3")
    })
    .await;
    // Let the new leader finish its pass (status, events) before taking stock.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, version) = service_state(&service).expect("the service");
    let etcd_before = last_write(&store, Some("leader")).await;

    // The stale update reaches dockerd (which refuses its old version), then
    // the old leader wakes up to the answer and to a deadline long passed.
    proxy.armed.send_replace(false);
    signal(&guard.children[0], "CONT");
    // Within its keep-alive timeout (5 s) the old leader still believes it leads.
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Then whatever it queued for etcd meanwhile may flow.
    etcd_link.frozen.send_replace(false);
    tokio::time::sleep(Duration::from_secs(4)).await;

    assert_eq!(
        service_state(&service),
        Some(("3".to_owned(), version)),
        "a write of the deposed leader reached the service"
    );
    assert_eq!(
        proxy.forwarded_updates.load(Ordering::SeqCst),
        1,
        "the deposed leader retried its update"
    );
    assert_eq!(
        last_write(&store, Some("leader")).await,
        etcd_before,
        "a write landed in etcd after the old leader woke up"
    );
}

#[tokio::test]
async fn a_fenced_store_refuses_writes_once_etcd_dropped_the_leader_key() {
    let store = Etcd::shared().store("fenced-store").await;
    let leadership = store
        .campaign("test", Duration::from_secs(30))
        .await
        .expect("leads");
    let fenced = store.fenced(leadership.fence());
    fenced
        .put_status("Stack", "a", &json!({"phase": "Ready"}))
        .await
        .expect("the leader writes");
    // As etcd does when the lease expires while this process believes it is alive.
    let leader_keys = format!("{}/leader/", store.prefix());
    store
        .raw_client()
        .delete(
            leader_keys.as_str(),
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .expect("drop the leader key");
    let refused = fenced
        .put_status("Stack", "a", &json!({"phase": "Failed"}))
        .await;
    assert!(
        matches!(refused, Err(StoreError::Deposed { .. })),
        "{refused:?}"
    );
    let stored = store.get_status("Stack", "a").await.unwrap().unwrap();
    assert_eq!(stored.value["phase"], "Ready");
    // Refused locally from now on, without asking etcd.
    assert!(matches!(
        fenced.put_secret("x", b"sealed").await,
        Err(StoreError::Deposed { .. })
    ));
    assert!(store.get_secret("x").await.unwrap().is_none());
}

#[tokio::test]
async fn a_generated_value_is_created_only_if_absent() {
    let store = Etcd::shared().store("create-secret").await;
    let first = store
        .create_secret("generated:db:0", b"first")
        .await
        .unwrap();
    let second = store
        .create_secret("generated:db:0", b"second")
        .await
        .unwrap();
    assert_eq!(first, b"first");
    assert_eq!(
        second, b"first",
        "a second writer must get the value delivered"
    );
    assert_eq!(
        store.get_secret("generated:db:0").await.unwrap().as_deref(),
        Some(&b"first"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_waits_out_a_dead_leaders_lease_and_force_skips_the_election() {
    require_swarm_manager();
    let store = Etcd::shared().store("once-election").await;
    // A leader that dies without resigning leaves its key until the lease expires.
    let dead = store
        .campaign("dead-replica", Duration::from_secs(3))
        .await
        .expect("leads");
    drop(dead);
    assert_eq!(
        store.leader_identity().await.unwrap().as_deref(),
        Some("dead-replica")
    );
    let once = cli(&store).args(["run", "--once"]).output().expect("runs");
    assert!(
        once.status.success(),
        "{}",
        String::from_utf8_lossy(&once.stderr)
    );
    // It won once the dead lease expired, and resigned when done.
    assert_eq!(store.leader_identity().await.unwrap(), None);
    let forced = cli(&store)
        .args(["run", "--once", "--force"])
        .output()
        .expect("runs");
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_etcd_restarts_the_leader_leads_again_without_waiting_out_its_old_lease() {
    require_swarm_manager();
    let mut etcd = Etcd::start();
    let store = Store::connect(etcd.config("etcd-restart"))
        .await
        .expect("connect");
    let addr = format!("127.0.0.1:{}", free_port());
    let run = Command::new(env!("CARGO_BIN_EXE_swarmkeeper"))
        .args(["--etcd-endpoints", &etcd.endpoint()])
        .args(["--prefix", store.prefix()])
        .args(["run", "--http-addr", &addr, "--resync", "1h"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run starts");
    let _guard = Guard {
        stack: String::new(),
        children: vec![run],
    };
    eventually("the replica leads", || leader_gauge(&addr) == Some(1)).await;
    etcd.stop();
    eventually("the replica notices etcd is gone", || {
        leader_gauge(&addr) == Some(0)
    })
    .await;
    etcd.resume();
    let resumed = Instant::now();
    eventually("the replica leads again", || leader_gauge(&addr) == Some(1)).await;
    // etcd restores the old lease with its whole TTL (15 s) on restart: a
    // replica that waited for it to expire could not lead again before that.
    assert!(
        resumed.elapsed() < Duration::from_secs(12),
        "leading again took {:?}: the old candidacy was waited out",
        resumed.elapsed()
    );
}
