//! What `/events` and `/drift` report: a record's newest events oldest first,
//! and the drift the last reconcile left, which a GET does not recompute.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};
use swarmkeeper::api::Kind;
use swarmkeeper::controllers::status::Phase;
use swarmkeeper::controllers::{RecordKey, stack};
use swarmkeeper::store::Event;

use super::common::Etcd;
use super::common::controllers::{pass, status};
use super::common::swarm::{IMAGE, docker_ok, require_swarm_manager};
use super::{Guard, Served, TOKEN, put, record};

/// Long enough for a busybox task to start on a busy two-core machine.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// The controller as `run` wires it, and requests to its router

/// A stack of one busybox service that sleeps, with one replica.
fn one_sleeper(name: &str, self_heal: bool) -> Value {
    let compose = json!({
        "version": "3.8",
        "services": {"web": {"image": IMAGE, "command": ["sleep", "3600"], "deploy": {"replicas": 1}}},
    });
    let mut value = record(Kind::Stack, name, json!({ "compose": compose }));
    if !self_heal {
        value["metadata"]["annotations"] = json!({ stack::SELF_HEAL: "false" });
    }
    value
}

/// Reconciles `key` until its status is Ready (its tasks run).
async fn converge(served: &Served, key: &RecordKey) {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        pass(&served.controllers, std::slice::from_ref(key)).await;
        let status = status(&served.controllers.ctx.store, key).await;
        if status.as_ref().is_some_and(|s| s.phase == Phase::Ready) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{key} did not become Ready; last status: {status:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The drift entry of one record in a `/drift` answer.
fn entry<'a>(drift: &'a Value, name: &str) -> Option<&'a Value> {
    drift["records"]
        .as_array()
        .expect("records")
        .iter()
        .find(|r| r["name"] == name)
}

// ---------------------------------------------------------------------------
// 1. /metrics

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_the_newest_of_a_record_oldest_first() {
    let store = Etcd::shared().store("http-events").await;
    let served = Served::on_dockerd(&store, None).await;
    for (second, name, reason) in [
        (1, "a", "First"),
        (2, "b", "Other"),
        (3, "a", "Second"),
        (4, "a", "Third"),
    ] {
        let event = Event {
            time: jiff::Timestamp::from_second(1_700_000_000 + second).expect("a time"),
            ..Event::normal(reason, format!("event {second}"))
        };
        store
            .put_event("Stack", name, &event)
            .await
            .expect("etcd takes the event");
    }
    let reasons = |body: &str| -> Vec<(String, String)> {
        let answer: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        answer["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| {
                assert_eq!(e["kind"], "Stack", "{e}");
                assert_eq!(e["type"], "Normal", "{e}");
                (
                    e["name"].as_str().unwrap().to_owned(),
                    e["reason"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let (code, body) = served.get("/events?record=stacks/a&limit=2", None).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(
        reasons(&body),
        [("a".into(), "Second".into()), ("a".into(), "Third".into())]
    );
    let (code, body) = served.get("/events", None).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(reasons(&body).len(), 4, "{body}");
    for bad in [
        "/events?record=web",
        "/events?record=Widget/a",
        "/events?limit=x",
    ] {
        let (code, body) = served.get(bad, None).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
}

// ---------------------------------------------------------------------------
// 5. /drift from what the reconciles found

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_what_the_last_reconcile_left_and_a_get_recomputes_nothing() {
    require_swarm_manager();
    let (healed, reported) = (
        format!("skh{:08x}", rand::random::<u32>()),
        format!("skr{:08x}", rand::random::<u32>()),
    );
    let _guard = Guard(vec![healed.clone(), reported.clone()]);
    let store = Etcd::shared().store("http-drift").await;
    let served = Served::on_dockerd(&store, Some(TOKEN)).await;
    served.state.set_leading(true);
    put(&store, Kind::Stack, &healed, one_sleeper(&healed, true)).await;
    put(
        &store,
        Kind::Stack,
        &reported,
        one_sleeper(&reported, false),
    )
    .await;
    let keys = [
        RecordKey::new(Kind::Stack, &healed),
        RecordKey::new(Kind::Stack, &reported),
    ];
    for key in &keys {
        converge(&served, key).await;
    }
    let stack_gauge = r#"swarmkeeper_drift_objects{kind="Stack"}"#;
    assert_eq!(served.sample(stack_gauge).await, Some(0.0));

    // Out-of-band changes to both; one pass each.
    for name in [&healed, &reported] {
        docker_ok(&["service", "scale", "--detach", &format!("{name}_web=2")]);
    }
    pass(&served.controllers, &keys).await;

    let (reads, writes) = (served.docker().reads(), served.docker().writes());
    let drift = served.drift().await;
    let healed_entry = entry(&drift, &healed).expect("the healed stack is listed");
    assert_eq!(healed_entry["objects"], json!([]), "{drift:#}");
    let reported_entry = entry(&drift, &reported).expect("the reported stack is listed");
    let paths: Vec<&str> = reported_entry["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .flat_map(|o| o["fields"].as_array().into_iter().flatten())
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert_eq!(paths, ["services.web.deploy.replicas"], "{drift:#}");
    assert_eq!(served.sample(stack_gauge).await, Some(1.0));
    assert_eq!(
        (served.docker().reads(), served.docker().writes()),
        (reads, writes),
        "GET /drift or /metrics asked dockerd"
    );

    // Healed by hand: the next pass finds nothing, and the gauge reads 0.
    docker_ok(&["service", "scale", "--detach", &format!("{reported}_web=1")]);
    pass(&served.controllers, &keys[1..]).await;
    assert_eq!(
        entry(&served.drift().await, &reported).unwrap()["objects"],
        json!([])
    );
    assert_eq!(served.sample(stack_gauge).await, Some(0.0));

    // A deleted record is forgotten.
    store
        .delete_records(vec![("Stack".into(), reported.clone(), None)])
        .await
        .expect("etcd deletes the record");
    pass(&served.controllers, &keys[1..]).await;
    let drift = served.drift().await;
    assert!(entry(&drift, &reported).is_none(), "{drift:#}");
    assert!(entry(&drift, &healed).is_some(), "{drift:#}");
}
