//! The controller's HTTP endpoints: `/healthz`, `/readyz`, `/metrics` and `/drift`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::controllers::Controllers;
use crate::metrics::Metrics;

/// What the endpoints read.
pub struct AppState {
    pub controllers: Arc<Controllers>,
    pub metrics: Arc<Metrics>,
    /// Set once the store and dockerd answered and the controller runs.
    pub ready: AtomicBool,
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
    if state.ready.load(Ordering::Relaxed) {
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

async fn drift(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    match crate::cli::drift::report(&state.controllers.ctx, None, None).await {
        Ok(report) => {
            state.metrics.drift(&report);
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                crate::report::drift::json(&report),
            )
        }
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain")],
            format!("drift unavailable: {err}\n"),
        ),
    }
}
