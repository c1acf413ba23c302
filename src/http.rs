//! The controller's HTTP endpoints.
//!
//! | path | what | on a standby |
//! |---|---|---|
//! | `/healthz` | the process answers | 200 |
//! | `/readyz` | this replica leads | 503 |
//! | `/metrics` | Prometheus metrics; leadership is `swarmkeeper_leader` | its own |
//! | `/drift` | each record's drift after its last reconcile, as `drift -o json` | 503: only the leader reconciles |

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::controllers::Controllers;
use crate::metrics::Metrics;

/// What the endpoints read.
pub struct AppState {
    pub controllers: Arc<Controllers>,
    pub metrics: Arc<Metrics>,
    /// Whether this replica leads, and so whether its drift cache is filled.
    leading: AtomicBool,
}

impl AppState {
    /// The state of a replica that does not lead (yet).
    #[must_use]
    pub fn new(controllers: Arc<Controllers>, metrics: Arc<Metrics>) -> Self {
        Self {
            controllers,
            metrics,
            leading: AtomicBool::new(false),
        }
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
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/drift", get(drift))
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    if state.leading.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
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
