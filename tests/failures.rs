//! The failure policy and what passes write to etcd: a permanent error marks
//! its record Failed and waits for a change, a record that keeps failing adds
//! one event (with a count), and passes over converged records write nothing.
//!
//! A real etcd (tests/common), the real swarm, the controllers in-process and
//! the binary. Each test owns its prefix and names.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Etcd;
use common::controllers::{controllers, pass, status};
use common::http::{free_port, last_write, metric};
use common::swarm::{IMAGE, docker, docker_ok, names_with_label, require_swarm_manager};
use serde_json::{Value, json};
use swarmkeeper::api::{API_VERSION, Kind, Record};
use swarmkeeper::controllers::RecordKey;
use swarmkeeper::controllers::status::Phase;
use swarmkeeper::store::{Expect, RecordPut, Store};

const TIMEOUT: Duration = Duration::from_secs(90);

/// Kills the test's processes and removes what its records own and the foreign
/// services it made, even on panic.
struct Guard {
    owners: Vec<String>,
    foreign: Vec<String>,
    children: Vec<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for service in &self.foreign {
            let _ = docker(&["service", "rm", service]);
        }
        for owner in &self.owners {
            for object in ["service", "secret", "config", "network"] {
                for name in names_with_label(object, &format!("swarmkeeper.owner={owner}")) {
                    let _ = docker(&[object, "rm", &name]);
                }
            }
        }
    }
}

fn unique(base: &str) -> String {
    format!("{base}{:08x}", rand::random::<u32>())
}

fn record(kind: Kind, name: &str, spec: Value) -> Value {
    let record = json!({
        "apiVersion": API_VERSION,
        "kind": kind.as_str(),
        "metadata": {"name": name},
        "spec": spec,
    });
    Record::from_value(record.clone())
        .map(|r| r.to_value())
        .unwrap_or(record)
}

/// A stack of one busybox service, with no task to start.
fn stack_spec(env: &str) -> Value {
    json!({"compose": {
        "version": "3.8",
        "services": {"web": {
            "image": IMAGE,
            "command": ["sleep", "3600"],
            "environment": {"CHANGE": env},
            "deploy": {"replicas": 0},
        }},
    }})
}

async fn put(store: &Store, kind: Kind, name: &str, value: Value) {
    store
        .put_records(vec![RecordPut {
            kind: kind.as_str().into(),
            name: name.into(),
            value,
            expect: Expect::Any,
        }])
        .await
        .expect("etcd takes the record");
}

async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_taken_by_a_foreign_service_fails_the_record_until_it_changes() {
    require_swarm_manager();
    let store = Etcd::shared().store("permanent").await;
    let name = unique("skp");
    let service = format!("{name}_web");
    let mut guard = Guard {
        owners: vec![format!("Stack.{name}")],
        foreign: vec![service.clone()],
        children: Vec::new(),
    };
    // Not ours: no swarmkeeper labels, so the stack's create is refused (409).
    docker_ok(&[
        "service",
        "create",
        "--detach",
        "--replicas",
        "0",
        "--name",
        &service,
        IMAGE,
        "sleep",
        "3600",
    ]);
    put(
        &store,
        Kind::Stack,
        &name,
        record(Kind::Stack, &name, stack_spec("1")),
    )
    .await;
    let addr = format!("127.0.0.1:{}", free_port());
    let run = Command::new(env!("CARGO_BIN_EXE_swarmkeeper"))
        .args(["--etcd-endpoints", &Etcd::shared().endpoint()])
        .args(["--prefix", store.prefix()])
        .args(["run", "--http-addr", &addr, "--resync", "1h"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run starts");
    guard.children.push(run);
    let key = RecordKey::new(Kind::Stack, &name);
    let failed = eventually("the record is Failed", async || {
        status(&store, &key)
            .await
            .filter(|s| s.phase == Phase::Failed)
    })
    .await;
    assert!(
        failed.message.contains(&service) && failed.message.contains("already exists"),
        "the status names the service and says what dockerd said: {failed:?}"
    );
    let creates = r#"swarmkeeper_docker_requests_total{op="service_create",result="error"}"#;
    // Every trigger names the record once at start (the watch's listing, the
    // resync, the Docker events stream); let those pass.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tried = metric(&addr, creates).expect("/metrics answers");
    assert!((1.0..=2.0).contains(&tried), "{tried} creates at start");
    // Backoff would have retried three or four times by now (0.8 s doubling).
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        metric(&addr, creates),
        Some(tried),
        "a permanent error was retried"
    );
    let events = store.list_events(Some(("Stack", &name))).await.unwrap();
    let failures: Vec<_> = events
        .iter()
        .filter(|(_, _, e)| e.reason == "Failed")
        .collect();
    assert_eq!(failures.len(), 1, "{events:?}");

    // A change of the record is looked at at once.
    put(
        &store,
        Kind::Stack,
        &name,
        record(Kind::Stack, &name, stack_spec("2")),
    )
    .await;
    eventually("the changed record is tried", async || {
        (metric(&addr, creates)? > tried).then_some(())
    })
    .await;
    docker_ok(&["service", "rm", &service]);
    put(
        &store,
        Kind::Stack,
        &name,
        record(Kind::Stack, &name, stack_spec("3")),
    )
    .await;
    eventually("the record converges once the name is free", async || {
        status(&store, &key)
            .await
            .filter(|s| s.phase == Phase::Ready)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_keeps_failing_adds_one_event_with_a_count_and_one_status() {
    let store = Etcd::shared().store("folding").await;
    let controllers = controllers(&store).await;
    let name = unique("skfold");
    // Written straight into etcd, as etcdctl would: not a compose file.
    let broken = json!({
        "apiVersion": API_VERSION,
        "kind": "Stack",
        "metadata": {"name": name},
        "spec": {"compose": 5},
    });
    put(&store, Kind::Stack, &name, broken).await;
    let key = RecordKey::new(Kind::Stack, &name);
    pass(&controllers, std::slice::from_ref(&key)).await;
    let first = store.get_status("Stack", &name).await.unwrap().unwrap();
    for _ in 0..4 {
        pass(&controllers, std::slice::from_ref(&key)).await;
    }
    let events = store.list_events(Some(("Stack", &name))).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let (_, _, event) = &events[0];
    assert_eq!((event.reason.as_str(), event.count), ("Failed", 5));
    assert!(event.last_seen.is_some_and(|seen| seen > event.time));
    let last = store.get_status("Stack", &name).await.unwrap().unwrap();
    assert_eq!(
        last.mod_revision, first.mod_revision,
        "the same Failed status was written again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_over_converged_records_write_nothing_to_etcd() {
    require_swarm_manager();
    let store = Etcd::shared().store("quiet").await;
    let controllers = controllers(&store).await;
    let (stack, network, secret) = (unique("skq"), unique("skqnet"), unique("skqsec"));
    let _guard = Guard {
        owners: vec![
            format!("Stack.{stack}"),
            format!("Network.{network}"),
            format!("Secret.{secret}"),
        ],
        foreign: Vec::new(),
        children: Vec::new(),
    };
    put(
        &store,
        Kind::Network,
        &network,
        record(Kind::Network, &network, json!({})),
    )
    .await;
    let generated = json!({"generate": {"length": 24}});
    put(
        &store,
        Kind::Secret,
        &secret,
        record(Kind::Secret, &secret, generated),
    )
    .await;
    put(
        &store,
        Kind::Stack,
        &stack,
        record(Kind::Stack, &stack, stack_spec("1")),
    )
    .await;
    let keys = [
        RecordKey::new(Kind::Network, &network),
        RecordKey::new(Kind::Secret, &secret),
        RecordKey::new(Kind::Stack, &stack),
    ];
    eventually("every record is Ready", async || {
        pass(&controllers, &keys).await;
        for key in &keys {
            status(&store, key)
                .await
                .filter(|s| s.phase == Phase::Ready)?;
        }
        Some(())
    })
    .await;
    let revision = last_write(&store, None).await;
    let writes = controllers.ctx.docker.writes();
    for _ in 0..3 {
        pass(&controllers, &keys).await;
    }
    assert_eq!(
        last_write(&store, None).await,
        revision,
        "a converged pass wrote to etcd"
    );
    assert_eq!(
        controllers.ctx.docker.writes(),
        writes,
        "a converged pass wrote to dockerd"
    );
}
