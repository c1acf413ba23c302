//! The controller's HTTP endpoints as `run` serves them: the production router
//! ([`swarmkeeper::http::router`]) over the production [`Metrics`], against a
//! real etcd (tests/common) and the local dockerd, requested in-process.
//!
//! Each test has its own etcd prefix and object names; a guard removes what
//! the test's records own in the swarm, even when it fails.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use swarmkeeper::api::{API_VERSION, Kind, Record};
use swarmkeeper::controllers::status::Phase;
use swarmkeeper::controllers::{Context, Controllers, DriftCache, RecordKey, stack};
use swarmkeeper::docker::Docker;
use swarmkeeper::docker::labels::OWNER;
use swarmkeeper::http::{self, AppState, BearerToken};
use swarmkeeper::metrics::Metrics;
use swarmkeeper::runtime::{Controller, Shutdown};
use swarmkeeper::store::{Event, Expect, Keyring, RecordPut, SecretKey, Store};
use tower::ServiceExt as _;

use common::Etcd;
use common::controllers::{pass, status};
use common::swarm::{
    IMAGE, docker, docker_ok, names_with_label, proxy_to_dockerd, require_swarm_manager,
};

const TOKEN: &str = "t0ken-for-the-http-tests";
/// Long enough for a busybox task to start on a busy two-core machine.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// The controller as `run` wires it, and requests to its router

/// What `run` builds: controllers whose drift cache feeds the metrics, and the router.
struct Served {
    controllers: Arc<Controllers>,
    metrics: Arc<Metrics>,
    state: Arc<AppState>,
    router: Router,
}

impl Served {
    fn new(store: &Store, docker: Docker, token: Option<&str>) -> Self {
        let metrics = Arc::new(Metrics::new(&docker));
        let controllers = Arc::new(Controllers {
            ctx: Context::new(
                store.clone(),
                docker,
                Some(Keyring::new(SecretKey::generate(), None)),
                Duration::from_secs(300),
            )
            .with_drift(DriftCache::with_gauge(metrics.drift_objects.clone())),
            metrics: Some(metrics.clone()),
        });
        let token = token.map(|t| BearerToken::new(t.as_bytes()));
        let state = Arc::new(AppState::new(controllers.clone(), metrics.clone(), token));
        let router = http::router(state.clone());
        Self {
            controllers,
            metrics,
            state,
            router,
        }
    }

    async fn on_dockerd(store: &Store, token: Option<&str>) -> Self {
        let docker = Docker::connect()
            .await
            .expect("dockerd must answer: run hack/setup.sh")
            .scoped(store.prefix());
        Self::new(store, docker, token)
    }

    fn docker(&self) -> &Docker {
        &self.controllers.ctx.docker
    }

    /// `GET path`, with the bearer token when given: status and body.
    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, String) {
        let mut request = Request::get(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Body::empty()).expect("a valid request");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router answers");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("a body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// `/drift` with the token, parsed.
    async fn drift(&self) -> Value {
        let (code, body) = self.get("/drift", Some(TOKEN)).await;
        assert_eq!(code, StatusCode::OK, "{body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    /// One sample of `/metrics`, by its name with labels as exposed.
    async fn sample(&self, series: &str) -> Option<f64> {
        let (code, body) = self.get("/metrics", None).await;
        assert_eq!(code, StatusCode::OK, "{body}");
        Exposition::parse(&body).samples.get(series).copied()
    }
}

/// An OpenMetrics text exposition: the `# TYPE` and `# UNIT` of each family, and every sample.
struct Exposition {
    types: BTreeMap<String, String>,
    units: BTreeMap<String, String>,
    samples: BTreeMap<String, f64>,
}

impl Exposition {
    fn parse(text: &str) -> Self {
        let mut parsed = Self {
            types: BTreeMap::new(),
            units: BTreeMap::new(),
            samples: BTreeMap::new(),
        };
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["#", "TYPE", name, kind] => {
                    parsed.types.insert((*name).to_owned(), (*kind).to_owned());
                }
                ["#", "UNIT", name, unit] => {
                    parsed.units.insert((*name).to_owned(), (*unit).to_owned());
                }
                ["#", ..] | [] => {}
                _ => {
                    let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
                    let value = value
                        .parse()
                        .unwrap_or_else(|_| panic!("bad sample {line}"));
                    parsed.samples.insert(series.to_owned(), value);
                }
            }
        }
        parsed
    }

    /// The family a sample belongs to, by the suffixes OpenMetrics adds to its name.
    fn family_of(&self, series: &str) -> Option<&str> {
        let name = series.split('{').next().unwrap_or(series);
        ["", "_total", "_bucket", "_sum", "_count", "_created"]
            .iter()
            .filter_map(|suffix| name.strip_suffix(suffix))
            .find(|family| self.types.contains_key(*family))
            .and_then(|family| self.types.get_key_value(family).map(|(k, _)| k.as_str()))
    }
}

// ---------------------------------------------------------------------------
// Records and the swarm

fn record(kind: Kind, name: &str, spec: Value) -> Value {
    let value = json!({
        "apiVersion": API_VERSION, "kind": kind.as_str(), "metadata": {"name": name}, "spec": spec,
    });
    Record::from_value(value.clone())
        .unwrap_or_else(|errors| panic!("invalid test record {value}: {errors:?}"))
        .to_value()
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

/// Removes what the test's stacks own, services first, even when the test fails.
struct Guard(Vec<String>);

impl Drop for Guard {
    fn drop(&mut self) {
        for stack in &self.0 {
            let label = format!("{OWNER}=Stack.{stack}");
            for object in ["service", "secret", "config", "network"] {
                for name in names_with_label(object, &label) {
                    let _ = docker(&[object, "rm", &name]);
                }
            }
        }
    }
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

/// dockerd through a proxy the test owns: aborting it is dockerd going away.
async fn proxied_dockerd(dir: &std::path::Path) -> (Docker, tokio::task::JoinHandle<()>) {
    let socket = dir.join("docker.sock");
    let proxy = proxy_to_dockerd(tokio::net::UnixListener::bind(&socket).expect("bind"));
    let docker = Docker::connect_to(&format!("unix://{}", socket.display()))
        .await
        .expect("dockerd through the proxy");
    (docker, proxy)
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_needs_etcd_and_dockerd_not_leadership_and_names_what_is_down() {
    let mut etcd = Etcd::start();
    let store = etcd.store("http-readyz").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (docker, proxy) = proxied_dockerd(dir.path()).await;
    let served = Served::new(&store, docker, Some(TOKEN));

    // A standby (never led) with both answering is ready; no token is asked.
    let (code, body) = served.get("/readyz", None).await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, "ready\n"));

    proxy.abort();
    let _ = proxy.await;
    let started = Instant::now();
    let (code, body) = served.get("/readyz", None).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.starts_with("dockerd: "), "{body}");
    assert!(!body.contains("etcd"), "etcd still answers: {body}");

    etcd.stop();
    let (code, body) = served.get("/readyz", None).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body.contains("etcd: ") && body.contains("dockerd: "),
        "{body}"
    );
    // Both checks at once, each bounded: a probe never waits for the store's 10 s timeout.
    assert!(
        started.elapsed() < http::READY_TIMEOUT * 2 + Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// 3. The token

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_and_events_need_the_token_and_the_rest_stays_open() {
    let store = Etcd::shared().store("http-token").await;
    let served = Served::on_dockerd(&store, Some(TOKEN)).await;
    served.state.set_leading(true);
    for path in ["/drift", "/events"] {
        for token in [None, Some("wrong"), Some(&TOKEN[..TOKEN.len() - 1])] {
            let (code, body) = served.get(path, token).await;
            assert_eq!(
                code,
                StatusCode::UNAUTHORIZED,
                "{path} with {token:?}: {body}"
            );
            assert!(!body.contains(TOKEN), "{body}");
        }
        let (code, body) = served.get(path, Some(TOKEN)).await;
        assert_eq!(code, StatusCode::OK, "{path}: {body}");
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (code, body) = served.get(path, None).await;
        assert_eq!(code, StatusCode::OK, "{path}: {body}");
        assert!(!body.contains(TOKEN), "{body}");
    }

    // Without a token configured, nothing asks for one; a standby has no drift to serve.
    let open = Served::on_dockerd(&store, None).await;
    let (code, body) = open.get("/drift", None).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("standby"), "{body}");
    open.state.set_leading(true);
    let (code, body) = open.get("/drift", None).await;
    assert_eq!(
        (code, body.trim()),
        (
            StatusCode::OK,
            r#"{
  "records": []
}"#
        )
    );
}

#[test]
fn run_refuses_an_empty_token_file_named_by_its_environment_variable() {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), "\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_swarmkeeper"))
        .arg("run")
        .env("SWARMKEEPER_HTTP_TOKEN_FILE", file.path())
        // Nothing listens there: the token is checked before etcd is asked.
        .env("SWARMKEEPER_ETCD_ENDPOINTS", "http://127.0.0.1:1")
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("--http-token-file") && stderr.contains("holds no token"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------
// 4. /events

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
