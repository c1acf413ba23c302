//! The event log: one key per event under `<prefix>/events/<Kind>/<name>/`, expired by leases.
//!
//! Granting a lease per event would leave etcd with one lease per event, so
//! events share leases: a lease of TTL `event_ttl + event_ttl/24` is granted
//! and used for every event written during the next `event_ttl/24` (one hour
//! at the default 24 h), then a new one is granted. Each event thus lives
//! between `event_ttl` and `event_ttl * 25/24`, and at most about 25 event
//! leases exist at once. No keep-alive is needed.

use std::time::Duration;

use etcd_client::{EventType as WatchEventType, PutOptions};
use futures::stream::{BoxStream, StreamExt};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::watch::{RawBatch, ResumableWatch};
use super::{Store, StoreError};

/// The share of `event_ttl` during which one lease is reused.
const LEASE_ROTATIONS_PER_TTL: u32 = 24;

/// [`Event::type_`] of progress.
pub const NORMAL: &str = "Normal";
/// [`Event::type_`] of failures.
pub const WARNING: &str = "Warning";

/// One entry of the event log. Never put a secret value in `message`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub time: Timestamp,
    /// [`NORMAL`] or [`WARNING`], as Kubernetes events have it.
    #[serde(rename = "type")]
    pub type_: String,
    /// A short CamelCase cause, e.g. `ServiceCreated`.
    pub reason: String,
    pub message: String,
}

impl Event {
    /// A [`NORMAL`] event at the current time.
    pub fn normal(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self::now(NORMAL, reason.into(), message.into())
    }

    /// A [`WARNING`] event at the current time.
    pub fn warning(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self::now(WARNING, reason.into(), message.into())
    }

    fn now(type_: &str, reason: String, message: String) -> Self {
        Self {
            time: Timestamp::now(),
            type_: type_.to_owned(),
            reason,
            message,
        }
    }
}

/// The lease events are currently written under, and when to stop using it.
#[derive(Default)]
pub(crate) struct LeaseCache(Mutex<Option<(i64, Instant)>>);

/// Sorts by time; the random suffix keeps two events of one nanosecond apart.
fn event_id(time: Timestamp) -> String {
    let nanos = time.as_nanosecond().max(0);
    let suffix: u32 = rand::random();
    format!("{nanos:020}-{suffix:08x}")
}

impl Store {
    /// Appends an event to a record's log; it expires after about `event_ttl`.
    ///
    /// # Errors
    /// [`StoreError::Lease`] when no lease can be granted, [`StoreError::Put`]
    /// when etcd fails.
    pub async fn put_event(&self, kind: &str, name: &str, event: &Event) -> Result<(), StoreError> {
        let key = self.keys().event(kind, name, &event_id(event.time))?;
        let value = serde_json::to_vec(event).map_err(|source| StoreError::Encode {
            key: key.clone(),
            source,
        })?;
        let lease = self.event_lease(false).await?;
        let put = |lease| {
            let mut client = self.kv();
            let (key, value) = (key.clone(), value.clone());
            async move {
                client
                    .put(key, value, Some(PutOptions::new().with_lease(lease)))
                    .await
            }
        };
        match put(lease).await {
            Ok(_) => Ok(()),
            // The lease can vanish under us (revoked by hand, or expired while
            // this process was paused): take a fresh one and try once more.
            Err(err) if err.to_string().contains("lease not found") => {
                let lease = self.event_lease(true).await?;
                put(lease)
                    .await
                    .map(drop)
                    .map_err(|source| StoreError::Put { key, source })
            }
            Err(source) => Err(StoreError::Put { key, source }),
        }
    }

    async fn event_lease(&self, renew: bool) -> Result<i64, StoreError> {
        let ttl = self.inner.event_ttl;
        let rotation = ttl / LEASE_ROTATIONS_PER_TTL;
        let mut cache = self.inner.event_lease.0.lock().await;
        match *cache {
            Some((id, until)) if !renew && Instant::now() < until => Ok(id),
            _ => {
                let secs = (ttl + rotation).as_secs_f64().ceil() as i64;
                let resp = self
                    .kv()
                    .lease_grant(secs.max(1), None)
                    .await
                    .map_err(|source| StoreError::Lease { source })?;
                *cache = Some((
                    resp.id(),
                    Instant::now() + rotation.max(Duration::from_millis(1)),
                ));
                Ok(resp.id())
            }
        }
    }

    /// The events of one record, or of all records, oldest first.
    ///
    /// An event that does not decode is skipped with a warning: the log is
    /// for people, and one bad entry must not hide the rest.
    ///
    /// # Errors
    /// [`StoreError::List`] when etcd fails.
    pub async fn list_events(
        &self,
        filter: Option<(&str, &str)>,
    ) -> Result<Vec<(String, String, Event)>, StoreError> {
        let prefix = self.keys().events_prefix(filter)?;
        let (kvs, _) = self
            .range(&prefix, 0, false)
            .await
            .map_err(|source| StoreError::List { prefix, source })?;
        let mut events: Vec<_> = kvs.iter().filter_map(|kv| self.decode_event(kv)).collect();
        events.sort_by_key(|(_, _, event)| event.time);
        Ok(events)
    }

    /// Events written from the first poll on (of one record, or of all),
    /// for `events --watch`. It reconnects by itself when etcd goes away and
    /// never ends; its only error is a malformed filter.
    pub fn watch_events(
        &self,
        filter: Option<(&str, &str)>,
    ) -> BoxStream<'static, Result<(String, String, Event), StoreError>> {
        let prefix = match self.keys().events_prefix(filter) {
            Ok(prefix) => prefix,
            Err(err) => return futures::stream::once(async { Err(err) }).boxed(),
        };
        let watch = ResumableWatch::new(self.inner.streams.clone(), prefix, 0);
        let store = self.clone();
        let batches = futures::stream::unfold(watch, |mut watch| async move {
            loop {
                match watch.next().await {
                    RawBatch::Events(events) => return Some((events, watch)),
                    // Events are only a log: go on from the oldest revision
                    // still kept rather than re-list it.
                    RawBatch::Compacted { compact_revision } => watch.resume_from(compact_revision),
                }
            }
        });
        batches
            .flat_map(move |events| {
                let decoded: Vec<_> = events
                    .iter()
                    .filter(|e| e.event_type() == WatchEventType::Put)
                    .filter_map(|e| e.kv().and_then(|kv| store.decode_event(kv)))
                    .map(Ok)
                    .collect();
                futures::stream::iter(decoded)
            })
            .boxed()
    }

    fn decode_event(&self, kv: &etcd_client::KeyValue) -> Option<(String, String, Event)> {
        let key = String::from_utf8_lossy(kv.key());
        let (kind, name) = self.keys().parse_event(&key)?;
        match serde_json::from_slice(kv.value()) {
            Ok(event) => Some((kind, name, event)),
            Err(err) => {
                tracing::warn!(%key, %err, "skipping an event that does not decode");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time() {
        let early = event_id(Timestamp::from_second(1_000).unwrap());
        let late = event_id(Timestamp::from_second(10_000_000).unwrap());
        assert!(early < late, "{early} {late}");
        assert_eq!(early.len(), 29);
    }

    #[test]
    fn event_serializes_type_as_type() {
        let event = Event {
            time: Timestamp::from_second(0).unwrap(),
            type_: WARNING.to_owned(),
            reason: "Failed".into(),
            message: "boom".into(),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "Warning");
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), event);
    }
}
