//! `POST /hooks/git/<source>`, the push webhook that makes a sync fetch at
//! once, and `GET /sources`, every source's status.
//!
//! The webhook is not behind the bearer token (GitHub and Gitea cannot send
//! one): its signature is its authentication ([`crate::gitops::webhook`]).
//! Only the leader syncs, so a standby answers 503 and the leader's polling
//! picks the commit up.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::Notify;

use super::AppState;
use crate::gitops::webhook::WebhookSecret;

/// GitHub sends payloads of up to 25 MiB.
pub const MAX_PAYLOAD: usize = 25 * 1024 * 1024;

/// One source's webhook: its secret, and the trigger of its sync.
#[derive(Debug, Clone)]
pub struct Hook {
    /// Without a secret the webhook is off: nothing unsigned is ever accepted.
    pub secret: Option<WebhookSecret>,
    pub wake: Arc<Notify>,
}

/// The webhooks by source name.
pub type Hooks = HashMap<String, Hook>;

/// Checks the signature, then wakes the source's sync: 202 when woken.
pub async fn push(
    State(state): State<Arc<AppState>>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(hook) = state.hooks.get(&source) else {
        return (StatusCode::NOT_FOUND, "no sync of that source here\n").into_response();
    };
    let Some(secret) = &hook.secret else {
        return (
            StatusCode::NOT_FOUND,
            "this source's sync has no webhook-secret-file: its webhook is off\n",
        )
            .into_response();
    };
    if let Err(refusal) = secret.verify(&headers, &body) {
        tracing::warn!(source, %refusal, "push webhook refused");
        return (StatusCode::UNAUTHORIZED, format!("{refusal}\n")).into_response();
    }
    if !state.leading.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "this replica is a standby: only the leader syncs (its polling picks the commit up)\n",
        )
            .into_response();
    }
    hook.wake.notify_one();
    (StatusCode::ACCEPTED, "fetching\n").into_response()
}

/// Every source with its last commit seen, last applied, when, and its error.
pub async fn sources(State(state): State<Arc<AppState>>) -> Response {
    match state.controllers.ctx.store.list_sources().await {
        Ok(sources) => {
            let list: Vec<Value> = sources
                .into_iter()
                .map(|(name, record)| record.named_json(&name))
                .collect();
            (
                [(header::CONTENT_TYPE, "application/json")],
                Value::Array(list).to_string(),
            )
                .into_response()
        }
        Err(err) => (StatusCode::SERVICE_UNAVAILABLE, format!("etcd: {err}\n")).into_response(),
    }
}
