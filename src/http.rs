//! The controller's HTTP endpoints.
//!
//! | path | what | on a standby |
//! |---|---|---|
//! | `/healthz` | the process answers | 200 |
//! | `/readyz` | etcd and dockerd answer, each within [`READY_TIMEOUT`] | the same check |
//! | `/metrics` | Prometheus metrics; leadership is `swarmkeeper_leader` | its own |
//! | `/drift` | each record's drift after its last reconcile, as `drift -o json` | 503: only the leader reconciles |
//! | `/events` | the last events (`?record=Kind/name`, `?limit=N`) | read from etcd |
//! | `/sources` | each GitOps source: last commit seen, applied, when, error | read from etcd |
//! | `POST /hooks/git/<source>` | a signed push webhook: the sync fetches at once ([`hooks`]) | 503 |
//!
//! `/drift` and `/events` show object names and environment values: with a
//! token configured they need `Authorization: Bearer <token>` ([`auth`]).

pub mod auth;
mod events;
pub mod hooks;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::controllers::Controllers;
use crate::metrics::Metrics;
pub use auth::BearerToken;

/// How long `/readyz` waits for etcd and for dockerd (at once) before it calls one down.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// What the endpoints read.
pub struct AppState {
    pub controllers: Arc<Controllers>,
    pub metrics: Arc<Metrics>,
    /// When set, `/drift` and `/events` need it as a bearer token.
    pub token: Option<BearerToken>,
    /// Whether this replica leads, and so whether its drift cache is filled.
    leading: AtomicBool,
    /// The push webhooks of `run --sync`, by source.
    pub hooks: hooks::Hooks,
}

impl AppState {
    /// The state of a replica that does not lead (yet).
    #[must_use]
    pub fn new(
        controllers: Arc<Controllers>,
        metrics: Arc<Metrics>,
        token: Option<BearerToken>,
    ) -> Self {
        Self {
            controllers,
            metrics,
            token,
            leading: AtomicBool::new(false),
            hooks: hooks::Hooks::new(),
        }
    }

    /// The same state, serving the push webhooks of `hooks`.
    #[must_use]
    pub fn with_hooks(mut self, hooks: hooks::Hooks) -> Self {
        self.hooks = hooks;
        self
    }

    /// Says whether this replica leads: the `swarmkeeper_leader` gauge, and
    /// an empty drift cache for a term that starts or ends, so no record is
    /// reported from another term's passes.
    pub fn set_leading(&self, leading: bool) {
        self.controllers.ctx.drift.clear();
        self.leading.store(leading, Ordering::Relaxed);
        self.metrics.leader.set(i64::from(leading));
    }
}

/// The router serving every endpoint.
pub fn router(state: Arc<AppState>) -> Router {
    let guarded = Router::new()
        .route("/drift", get(drift))
        .route("/events", get(events::events))
        .route("/sources", get(hooks::sources))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/hooks/git/{source}",
            post(hooks::push).layer(axum::extract::DefaultBodyLimit::max(hooks::MAX_PAYLOAD)),
        )
        .merge(guarded)
        .with_state(state)
}

/// 200 when etcd and dockerd both answer; 503 naming each that did not.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let ctx = &state.controllers.ctx;
    let (etcd, docker) = tokio::join!(probe(ctx.store.ping()), probe(ctx.docker.ping()));
    let failed: Vec<String> = [("etcd", etcd), ("dockerd", docker)]
        .into_iter()
        .filter_map(|(what, answer)| answer.err().map(|why| format!("{what}: {why}\n")))
        .collect();
    if failed.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, failed.concat()).into_response()
    }
}

/// Runs one readiness check, bounded by [`READY_TIMEOUT`]; the error with its causes.
async fn probe<E: std::error::Error>(
    check: impl Future<Output = Result<(), E>>,
) -> Result<(), String> {
    match tokio::time::timeout(READY_TIMEOUT, check).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(causes(&err)),
        Err(_) => Err(format!("no answer within {READY_TIMEOUT:?}")),
    }
}

/// An error and its sources, joined: the top message alone rarely says why.
fn causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

/// What the reconciles found, never recomputed here: a GET costs no call to
/// etcd or dockerd.
async fn drift(State(state): State<Arc<AppState>>) -> Response {
    if !state.leading.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "this replica is a standby: only the leader (swarmkeeper_leader 1) reconciles and knows the drift\n",
        )
            .into_response();
    }
    let report = state.controllers.ctx.drift.report();
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::report::drift::json(&report),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn causes_name_every_source() {
        let err = Outer(std::io::Error::other("connection refused"));
        assert_eq!(causes(&err), "outer: connection refused");
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_hangs_fails_after_the_timeout() {
        let hang = std::future::pending::<Result<(), std::io::Error>>();
        let answer = probe(hang).await;
        assert_eq!(answer, Err(format!("no answer within {READY_TIMEOUT:?}")));
    }
}
