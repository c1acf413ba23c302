//! Failures: a broken record fails only its own status, a killed run leaves
//! exactly the desired state after `run-once`, a rolled-back update is degraded
//! and not sent again, and failing tasks show their error.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use swarmkeeper::api::API_VERSION;
use swarmkeeper::controllers;
use swarmkeeper::controllers::status::Phase;

use super::common::http::free_port;
use super::common::swarm::{names_with_label, require_swarm_manager};
use super::{CONVERGE_TIMEOUT, Env, Guard, owned, put, sleepers, stack_key, stack_record};

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
