//! Converging: every example stack converges and `docker stack` lists it, the
//! first `run-once` reports the phase, and a pass over a converged stack makes no
//! Docker write.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use swarmkeeper::api::Kind;
use swarmkeeper::controllers::stack;
use swarmkeeper::controllers::status::Phase;

use super::common::swarm::{IMAGE, docker_ok};
use super::{
    CONVERGE_TIMEOUT, Env, Guard, eventually, owned, put, sleepers, stack_key, stack_record,
    with_compose,
};

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
