//! `/metrics`: every name once, prefixed with its type and unit.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::json;
use swarmkeeper::api::Kind;
use swarmkeeper::controllers::RecordKey;
use swarmkeeper::runtime::{Controller, Shutdown};

use super::common::Etcd;
use super::common::controllers::status;
use super::{Exposition, Served, proxied_dockerd, put, record};

/// Polls `check` every 100 ms until it holds; panics with `what` after 30 s.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_carries_each_name_once_prefixed_with_its_type_and_unit() {
    let store = Etcd::shared().store("http-metrics").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (docker, proxy) = proxied_dockerd(dir.path()).await;
    let served = Served::new(&store, docker, None);
    // A Node record for a node that is not there: a reconcile with no Docker
    // write and one drifted (missing) object, then one that fails because
    // dockerd went away, through the runtime as `run` drives it.
    let name = format!("sknode{:08x}", rand::random::<u32>());
    put(
        &store,
        Kind::Node,
        &name,
        record(Kind::Node, &name, json!({})),
    )
    .await;
    let key = RecordKey::new(Kind::Node, &name);
    let (triggers, keys) = futures::channel::mpsc::unbounded();
    let shutdown = Shutdown::new();
    let controller = Controller::new(served.controllers.clone(), served.metrics.runtime_config())
        .trigger(keys)
        .run(shutdown.clone());
    let controller = tokio::spawn(controller);
    triggers
        .unbounded_send(key.clone())
        .expect("the controller runs");
    eventually("the first reconcile", async || {
        status(&store, &key).await.is_some()
    })
    .await;
    proxy.abort();
    let _ = proxy.await;
    triggers
        .unbounded_send(key.clone())
        .expect("the controller runs");
    let retries = "swarmkeeper_workqueue_retries_total";
    eventually("a failed reconcile", async || {
        served.sample(retries).await.is_some_and(|n| n >= 1.0)
    })
    .await;
    shutdown.trigger();
    controller.await.expect("the controller stops");

    let (code, body) = served.get("/metrics", None).await;
    assert_eq!(code, StatusCode::OK);
    let text = Exposition::parse(&body);
    let expected: BTreeMap<String, String> = [
        ("swarmkeeper_reconcile", "counter"),
        ("swarmkeeper_reconcile_errors", "counter"),
        ("swarmkeeper_reconcile_duration_seconds", "histogram"),
        ("swarmkeeper_drift_objects", "gauge"),
        ("swarmkeeper_workqueue_depth", "gauge"),
        ("swarmkeeper_workqueue_adds", "counter"),
        ("swarmkeeper_workqueue_retries", "counter"),
        ("swarmkeeper_docker_requests", "counter"),
        ("swarmkeeper_leader", "gauge"),
    ]
    .into_iter()
    .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
    .collect();
    assert_eq!(text.types, expected, "{body}");
    assert_eq!(
        text.units
            .get("swarmkeeper_reconcile_duration_seconds")
            .map(String::as_str),
        Some("seconds"),
        "{body}"
    );
    for series in text.samples.keys() {
        assert!(
            text.family_of(series).is_some(),
            "{series} belongs to no declared family:\n{body}"
        );
    }
    let value = |series: &str| {
        *text
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("no sample {series}:\n{body}"))
    };
    assert_eq!(
        value(r#"swarmkeeper_reconcile_total{kind="Node",result="success"}"#),
        1.0
    );
    let failures = value(r#"swarmkeeper_reconcile_total{kind="Node",result="error"}"#);
    assert!(failures >= 1.0);
    assert_eq!(
        value(r#"swarmkeeper_reconcile_duration_seconds_count{kind="Node"}"#),
        1.0 + failures
    );
    assert_eq!(value(r#"swarmkeeper_drift_objects{kind="Node"}"#), 1.0);
    assert!(value("swarmkeeper_workqueue_adds_total") >= 1.0);
    assert!(value("swarmkeeper_workqueue_retries_total") >= 1.0);
    let failed: Vec<(&String, &f64)> = text
        .samples
        .iter()
        .filter(|(series, _)| {
            series.starts_with("swarmkeeper_reconcile_errors_total{kind=\"Node\",error=\"")
        })
        .collect();
    assert!(
        matches!(&failed[..], [(series, n)] if **n >= 1.0 && !series.contains(' ')),
        "one bounded error kind: {failed:?}"
    );
    assert!(value(r#"swarmkeeper_docker_requests_total{op="node_list",result="error"}"#) >= 1.0);
    assert_eq!(value("swarmkeeper_workqueue_depth"), 0.0);
    assert!(value(r#"swarmkeeper_docker_requests_total{op="node_list",result="ok"}"#) >= 1.0);
    assert_eq!(value("swarmkeeper_leader"), 0.0);
    assert!(body.ends_with("# EOF\n"), "{body}");
}

// ---------------------------------------------------------------------------
// 2. /readyz
