//! The Stack controller's fast paths, by counts rather than clocks: a pass
//! sends the calls of a phase together and a failed one loses no other's
//! work or event, and an unchanged pass over many stacks lists the swarm once.

use serde_json::json;
use swarmkeeper::controllers::{RecordKey, all_keys};
use swarmkeeper::runtime::{run_once, run_once_since};

use super::common::swarm::{IMAGE, docker_ok};
use super::{Env, Guard, TEST_LABEL, owned, put, sleepers, stack_key, stack_record};

/// `sleepers` with every service at 0 replicas: no task, only the control plane.
fn idle(services: &[&str]) -> serde_json::Value {
    let mut compose = sleepers(services);
    for service in services {
        compose["services"][*service]["deploy"]["replicas"] = json!(0);
    }
    compose
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_service_create_keeps_the_other_services_and_their_events() {
    let mut guard = Guard::new();
    let env = Env::new("one_fails").await;
    let name = guard.stack();
    // A service the stack does not own holds the name of its first service:
    // dockerd refuses that create (a name conflict), not the next one.
    docker_ok(&[
        "service",
        "create",
        "--detach",
        "--replicas",
        "0",
        "--label",
        &format!("{TEST_LABEL}={}", guard.id),
        "--name",
        &format!("{name}_a"),
        IMAGE,
        "sleep",
        "1",
    ]);
    put(
        &env.store,
        "Stack",
        &name,
        stack_record(&name, idle(&["a", "b"])),
    )
    .await;
    let key = stack_key(&name);
    let results = run_once(vec![key.clone()], env.controllers.clone(), 1).await;
    let err = results[0]
        .1
        .as_ref()
        .expect_err("the create of a is refused");
    assert!(err.to_string().contains(&format!("{name}_a")), "{err}");
    assert_eq!(owned("service", &name), [format!("{name}_b")]);
    let events = env
        .store
        .list_events(Some(("Stack", &name)))
        .await
        .expect("etcd");
    let messages: Vec<&str> = events.iter().map(|(_, _, e)| e.message.as_str()).collect();
    assert!(
        messages.contains(&format!("created service {name}_b").as_str()),
        "{messages:?}"
    );
    let status = env.status(&name).await.expect("a status");
    assert!(status.message.contains(&format!("{name}_a")), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_pass_over_many_stacks_lists_the_swarm_once() {
    let mut guard = Guard::new();
    let env = Env::new("list_once").await;
    let names: Vec<String> = (0..3).map(|_| guard.stack()).collect();
    for name in &names {
        put(
            &env.store,
            "Stack",
            name,
            stack_record(name, idle(&["web", "worker"])),
        )
        .await;
    }
    let keys: Vec<RecordKey> = names.iter().map(|n| stack_key(n)).collect();
    env.pass(&keys).await;
    let ctx = &env.controllers.ctx;
    let statuses = |env: &Env| {
        let (store, names) = (env.store.clone(), names.clone());
        async move {
            let mut out = Vec::new();
            for name in &names {
                let status = store.get_status("Stack", name).await.expect("etcd");
                let events = store
                    .list_events(Some(("Stack", name)))
                    .await
                    .expect("etcd");
                out.push((status.map(|s| s.mod_revision), events.len()));
            }
            out
        }
    };
    let before = statuses(&env).await;
    let (reads, writes) = (ctx.docker.reads(), ctx.docker.writes());

    // As `run --once` and a resync do: asked for, then listed once for all.
    let asked = tokio::time::Instant::now();
    let listed = all_keys(ctx).await.expect("all keys");
    assert_eq!(listed.len(), 3, "{listed:?}");
    for (key, result) in run_once_since(keys.clone(), env.controllers.clone(), 4, asked).await {
        result.unwrap_or_else(|err| panic!("{key}: {err}"));
    }
    assert_eq!(
        ctx.docker.reads() - reads,
        4,
        "one listing of services, networks, secrets and configs for the whole pass"
    );
    assert_eq!(
        ctx.docker.writes(),
        writes,
        "an unchanged pass wrote to dockerd"
    );
    assert_eq!(
        statuses(&env).await,
        before,
        "an unchanged pass wrote to etcd"
    );

    // Asked for after that listing: each stack lists its own objects afresh.
    let reads = ctx.docker.reads();
    env.pass(&keys).await;
    assert_eq!(
        ctx.docker.reads() - reads,
        4 * 3,
        "a stale listing was used"
    );
    assert_eq!(ctx.docker.writes(), writes);
}
