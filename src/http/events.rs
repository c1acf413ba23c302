//! `/events`: the last events of the log, of every record or of one, as JSON.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use crate::api::Kind;
use crate::store::Event;

/// Events answered when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// The most events one answer holds, whatever `limit` asks.
pub const MAX_LIMIT: usize = 1000;

/// `?record=Kind/name&limit=N`.
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    /// Only this record's events; the kind as `get` takes it (case-insensitive, plural).
    record: Option<String>,
    /// The newest N events, at most [`MAX_LIMIT`].
    limit: Option<usize>,
}

/// One event with the record it is about.
#[derive(Debug, Serialize)]
struct RecordEvent<'a> {
    kind: &'a str,
    name: &'a str,
    #[serde(flatten)]
    event: &'a Event,
}

#[derive(Debug, Serialize)]
struct EventsAnswer<'a> {
    events: Vec<RecordEvent<'a>>,
}

/// Parses `Kind/name` into the kind's canonical name and the record name.
fn parse_record(record: &str) -> Result<(Kind, &str), String> {
    let (kind, name) = record
        .split_once('/')
        .filter(|(_, name)| !name.is_empty())
        .ok_or_else(|| format!("record must be KIND/NAME, not {record:?}"))?;
    let kind = kind
        .parse::<Kind>()
        .map_err(|_| format!("unknown kind {kind:?}"))?;
    Ok((kind, name))
}

/// The last `limit` events, oldest first.
pub async fn events(
    State(state): State<Arc<AppState>>,
    Query(query): Query<EventsQuery>,
) -> Response {
    let filter = match query.record.as_deref().map(parse_record).transpose() {
        Ok(filter) => filter,
        Err(why) => return (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response(),
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let store = &state.controllers.ctx.store;
    let listed = store
        .list_events(filter.map(|(kind, name)| (kind.as_str(), name)))
        .await;
    let all = match listed {
        Ok(all) => all,
        Err(err) => {
            let why = format!("events unavailable: {err}\n");
            return (StatusCode::SERVICE_UNAVAILABLE, why).into_response();
        }
    };
    let newest = &all[all.len().saturating_sub(limit)..];
    let answer = EventsAnswer {
        events: newest
            .iter()
            .map(|(kind, name, event)| RecordEvent { kind, name, event })
            .collect(),
    };
    Json(answer).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_a_kind_as_get_takes_it_and_a_name() {
        assert_eq!(parse_record("stacks/web"), Ok((Kind::Stack, "web")));
        assert_eq!(parse_record("Network/front"), Ok((Kind::Network, "front")));
        assert!(parse_record("web").is_err());
        assert!(parse_record("Stack/").is_err());
        assert!(parse_record("Widget/web").is_err());
    }
}
