//! `run` as a long-lived operator: one replica leads and another takes over when
//! it dies, it reconnects to dockerd and heals what changed meanwhile, and a
//! resync of 20000h still converges.

use std::process::Stdio;
use std::time::{Duration, Instant};

use swarmkeeper::controllers::status::Phase;

use super::common::http::{free_port, http_get, leader_gauge};
use super::common::swarm::{docker, docker_ok, proxy_to_dockerd, require_swarm_manager};
use super::{CONVERGE_TIMEOUT, Env, Guard, eventually, put, replicas, sleepers, stack_record};

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
