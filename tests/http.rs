//! The controller's HTTP endpoints as `run` serves them: the production router
//! ([`swarmkeeper::http::router`]) over the production [`Metrics`], against a
//! real etcd (tests/common) and the local dockerd, requested in-process.
//!
//! Each test has its own etcd prefix and object names; a guard removes what
//! the test's records own in the swarm, even when it fails.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use swarmkeeper::api::{API_VERSION, Kind, Record};
use swarmkeeper::controllers::{Context, Controllers, DriftCache};
use swarmkeeper::docker::Docker;
use swarmkeeper::docker::labels::OWNER;
use swarmkeeper::http::{self, AppState, BearerToken};
use swarmkeeper::metrics::Metrics;
use swarmkeeper::store::{Expect, Keyring, RecordPut, SecretKey, Store};
use tower::ServiceExt as _;

use common::swarm::{docker, names_with_label, proxy_to_dockerd};

/// Readiness, the token, and an empty token file.
#[path = "http/access.rs"]
mod access;
/// `/metrics`: each name once, with its type and unit.
#[path = "http/metrics.rs"]
mod metrics;
/// `/events` and `/drift`: what they report.
#[path = "http/reports.rs"]
mod reports;

const TOKEN: &str = "t0ken-for-the-http-tests";

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

/// dockerd through a proxy the test owns: aborting it is dockerd going away.
async fn proxied_dockerd(dir: &std::path::Path) -> (Docker, tokio::task::JoinHandle<()>) {
    let socket = dir.join("docker.sock");
    let proxy = proxy_to_dockerd(tokio::net::UnixListener::bind(&socket).expect("bind"));
    let docker = Docker::connect_to(&format!("unix://{}", socket.display()))
        .await
        .expect("dockerd through the proxy");
    (docker, proxy)
}
