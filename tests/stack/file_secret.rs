//! A file secret reaches the swarm, and its value never shows in status,
//! events, drift or logs.

use std::time::{Duration, Instant};

use serde_json::json;
use swarmkeeper::api::API_VERSION;
use swarmkeeper::controllers::status::Phase;

use super::common::swarm::docker_ok;
use super::{CONVERGE_TIMEOUT, Env, Guard, owned, sleepers};

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
