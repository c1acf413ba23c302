//! What goes away: services dropped from the file and deleted records are
//! pruned, and a changed config gets a new version while the old one is removed.

use std::time::{Duration, Instant};

use serde_json::json;
use swarmkeeper::controllers;

use super::common::swarm::docker_ok;
use super::{
    CONVERGE_TIMEOUT, Env, Guard, eventually, owned, put, sleepers, stack_key, stack_record,
};

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
