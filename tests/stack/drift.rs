//! Drift: reported by field path then healed, and `run` heals out-of-band
//! changes, only reports them without self-heal, and stops on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use swarmkeeper::controllers::stack;
use swarmkeeper::controllers::status::Phase;

use super::common::http::{free_port, http_get};
use super::common::swarm::{IMAGE, docker_ok};
use super::{CONVERGE_TIMEOUT, Env, Guard, eventually, put, replicas, sleepers, stack_record};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_reported_by_field_path_then_healed() {
    let mut guard = Guard::new();
    let env = Env::new("drift").await;
    let name = guard.stack();
    let tag = guard.image_tag();
    let mut compose = sleepers(&["web"]);
    compose["services"]["web"]["environment"] = json!({"MODE": "test"});
    compose["services"]["web"]["deploy"]["labels"] = json!({"tier": "web"});
    put(&env.store, "Stack", &name, stack_record(&name, compose)).await;
    env.converge(&name).await;
    let (code, report) = env.drift(&name);
    assert_eq!(code, 0, "drift right after converging:\n{report}");
    let svc = format!("{name}_web");
    let scale = format!("{svc}=2");
    let cases: [(&str, Vec<&str>, &str); 5] = [
        (
            "replicas",
            vec!["service", "scale", "--detach", &scale],
            "services.web.deploy.replicas",
        ),
        (
            "env",
            vec!["service", "update", "--detach", "--env-add", "OOB=1", &svc],
            "services.web.environment",
        ),
        (
            "image",
            vec![
                "service",
                "update",
                "--detach",
                "--no-resolve-image",
                "--image",
                &tag,
                &svc,
            ],
            "services.web.image",
        ),
        (
            "labels",
            vec![
                "service",
                "update",
                "--detach",
                "--label-add",
                "oob=1",
                &svc,
            ],
            "services.web.deploy.labels",
        ),
        (
            "removed service",
            vec!["service", "rm", &svc],
            "\"missing\"",
        ),
    ];
    for (what, args, path) in cases {
        docker_ok(&args);
        let (code, report) = env.drift(&name);
        assert_eq!(code, 2, "{what}: drift --exit-code:\n{report}");
        assert!(
            report.contains(path) && report.contains(&svc),
            "{what}: the report does not name {path} of {svc}:\n{report}"
        );
        env.converge(&name).await;
        let (code, report) = env.drift(&name);
        assert_eq!(code, 0, "{what} was not healed:\n{report}");
    }
    assert_eq!(replicas(&svc), "1");
    let image = docker_ok(&[
        "service",
        "inspect",
        &svc,
        "--format",
        "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
    ]);
    assert_eq!(image, IMAGE);
}

fn with_annotation(mut record: Value, key: &str, value: &str) -> Value {
    record["metadata"]["annotations"] = json!({ key: value });
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_heals_out_of_band_changes_reports_without_self_heal_and_stops_on_sigterm() {
    let mut guard = Guard::new();
    let env = Env::new("self-heal").await;
    let healed = guard.stack();
    let reported = guard.stack();
    put(
        &env.store,
        "Stack",
        &healed,
        stack_record(&healed, sleepers(&["web"])),
    )
    .await;
    put(
        &env.store,
        "Stack",
        &reported,
        with_annotation(
            stack_record(&reported, sleepers(&["web"])),
            stack::SELF_HEAL,
            "false",
        ),
    )
    .await;
    let addr = format!("127.0.0.1:{}", free_port());
    let log = tempfile::NamedTempFile::new().expect("log file");
    let child = env
        .cli()
        .args(["run", "--http-addr", &addr, "--resync", "5m"])
        .stdout(Stdio::null())
        .stderr(log.reopen().expect("log file"))
        .spawn()
        .expect("run starts");
    let pid = child.id();
    guard.children.push(child);
    let log_text = || std::fs::read_to_string(log.path()).unwrap_or_default();

    for name in [&healed, &reported] {
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            if env
                .status(name)
                .await
                .is_some_and(|s| s.phase == Phase::Ready)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "run did not make Stack/{name} Ready; its log:\n{}",
                log_text()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let (code, body) = http_get(&addr, "/healthz").expect("/healthz answers");
    assert_eq!(code, 200, "{body}");
    let (code, body) = http_get(&addr, "/readyz").expect("/readyz answers");
    assert_eq!(code, 200, "the leader is not ready: {body}");
    let (code, body) = http_get(&addr, "/metrics").expect("/metrics answers");
    assert_eq!(code, 200);
    assert!(body.contains("swarmkeeper_reconcile_total"), "{body}");

    let healed_svc = format!("{healed}_web");
    let reported_svc = format!("{reported}_web");
    docker_ok(&["service", "scale", "--detach", &format!("{healed_svc}=2")]);
    docker_ok(&["service", "scale", "--detach", &format!("{reported_svc}=2")]);
    let took = eventually(
        "run restores the replicas of the scaled service",
        Duration::from_secs(30),
        || replicas(&healed_svc) == "1",
    )
    .await;
    println!("run restored {healed_svc} {took:?} after the out-of-band scale");

    // Without self-heal: reported in the status and by drift, left as it is.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = env.status(&reported).await.expect("a status");
        if status.phase == Phase::Degraded {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the unhealed drift never showed in the status: {status:#?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let paths: Vec<&str> = status
        .drift
        .iter()
        .flat_map(|o| o.fields.iter().map(|f| f.path.as_str()))
        .collect();
    assert!(
        paths.contains(&"services.web.deploy.replicas"),
        "{status:#?}"
    );
    assert_eq!(replicas(&reported_svc), "2", "self-heal off, yet corrected");
    let (code, report) = env.drift(&reported);
    assert_eq!(code, 2);
    assert!(report.contains("services.web.deploy.replicas"), "{report}");
    let (code, body) = http_get(&addr, "/drift").expect("/drift answers");
    assert_eq!(code, 200, "{body}");
    let drift: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let drifted: Vec<&str> = drift["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| !r["objects"].as_array().is_none_or(Vec::is_empty))
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(drifted, [reported.as_str()], "{body}");

    let terminated = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(terminated.success());
    let child = guard.children.last_mut().expect("the run process");
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "run did not stop after SIGTERM; its log:\n{}",
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        exit.code(),
        Some(0),
        "run exited with {exit}; log:\n{}",
        log_text()
    );
}
