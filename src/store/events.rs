//! The event log: one key per event under `<prefix>/events/<Kind>/<name>/`, expired by leases.
//!
//! Granting a lease per event would leave etcd with one lease per event, so
//! events share leases: a lease of TTL `event_ttl + event_ttl/24` is granted
//! and used for every event written during the next `event_ttl/24` (one hour
//! at the default 24 h), then a new one is granted. Each event thus lives
//! between `event_ttl` and `event_ttl * 25/24`, and at most about 25 event
//! leases exist at once. No keep-alive is needed.

use std::time::Duration;

use etcd_client::{EventType as WatchEventType, PutOptions, TxnOp};
use futures::stream::{BoxStream, StreamExt};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::txn::Write;
use super::watch::{RawBatch, ResumableWatch};
use super::{Store, StoreError};

/// Events written in one transaction: etcd refuses more than 128 operations
/// in one (`--max-txn-ops`), and the fence adds its own.
pub const EVENTS_PER_TXN: usize = 100;

/// The share of `event_ttl` during which one lease is reused.
const LEASE_ROTATIONS_PER_TTL: u32 = 24;

/// [`Event::type_`] of progress.
pub const NORMAL: &str = "Normal";
/// [`Event::type_`] of failures.
pub const WARNING: &str = "Warning";

/// One entry of the event log. Never put a secret value in `message`.
///
/// The same event repeated (a record that keeps failing the same way) is one
/// entry whose `count` grows and whose `last_seen` moves, as Kubernetes folds
/// events, rather than one entry per retry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// When it first happened.
    pub time: Timestamp,
    /// [`NORMAL`] or [`WARNING`], as Kubernetes events have it.
    #[serde(rename = "type")]
    pub type_: String,
    /// A short CamelCase cause, e.g. `ServiceCreated`.
    pub reason: String,
    pub message: String,
    /// How many times it happened.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub count: u32,
    /// When it last happened, once it happened more than once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Timestamp>,
}

fn one() -> u32 {
    1
}

fn is_one(count: &u32) -> bool {
    *count == 1
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
            count: 1,
            last_seen: None,
        }
    }

    /// Whether `other` is this event happening again (same type, reason and message).
    #[must_use]
    pub fn repeats(&self, other: &Event) -> bool {
        self.type_ == other.type_ && self.reason == other.reason && self.message == other.message
    }

    /// This event, seen once more at `at`.
    #[must_use]
    pub fn seen_again(mut self, at: Timestamp) -> Self {
        self.count = self.count.saturating_add(1);
        self.last_seen = Some(at);
        self
    }

    /// When it last happened.
    #[must_use]
    pub fn last_time(&self) -> Timestamp {
        self.last_seen.unwrap_or(self.time)
    }
}

/// The lease events are currently written under, and when to stop using it.
#[derive(Default)]
pub(crate) struct LeaseCache(Mutex<Option<(i64, Instant)>>);

/// Folds `events`, in the order they happened, onto a record's `last`
/// entry: each repeat of the entry before it (same type, reason and message)
/// becomes that entry seen again, anything else a new entry with a new id.
/// Returns the entries to write, the record's new last entry last.
#[must_use]
pub fn fold_events(last: Option<(String, Event)>, events: Vec<Event>) -> Vec<(String, Event)> {
    let mut out: Vec<(String, Event)> = Vec::with_capacity(events.len());
    let mut previous = last;
    for event in events {
        let entry = fold_one(previous.take(), event);
        // Written again: drop it from the batch, so it goes once, folded.
        out.retain(|(written, _)| *written != entry.0);
        previous = Some(entry.clone());
        out.push(entry);
    }
    out
}

/// `event` folded into `last` when it repeats it, else a new entry with a new id.
fn fold_one(last: Option<(String, Event)>, event: Event) -> (String, Event) {
    match last {
        Some((id, last)) if last.repeats(&event) => (id, last.seen_again(event.time)),
        _ => (event_id(event.time), event),
    }
}

/// Sorts by time; the random suffix keeps two events of one nanosecond apart.
fn event_id(time: Timestamp) -> String {
    let nanos = time.as_nanosecond().max(0);
    let suffix: u32 = rand::random();
    format!("{nanos:020}-{suffix:08x}")
}

impl Store {
    /// Appends an event to a record's log and returns its id; it expires after
    /// about `event_ttl`.
    ///
    /// # Errors
    /// [`StoreError::Lease`] when no lease can be granted, [`StoreError::Put`]
    /// when etcd fails.
    pub async fn put_event(
        &self,
        kind: &str,
        name: &str,
        event: &Event,
    ) -> Result<String, StoreError> {
        let id = event_id(event.time);
        self.update_event(kind, name, &id, event).await?;
        Ok(id)
    }

    /// Appends `event` to a record's log, or folds it into `last` (the log's
    /// previous event, as `(id, event)`) when it repeats it; returns the log's
    /// last event now.
    ///
    /// # Errors
    /// As [`Store::put_event`].
    pub async fn put_or_fold_event(
        &self,
        kind: &str,
        name: &str,
        last: Option<(String, Event)>,
        event: Event,
    ) -> Result<(String, Event), StoreError> {
        let (id, event) = fold_one(last, event);
        self.update_event(kind, name, &id, &event).await?;
        Ok((id, event))
    }

    /// Writes the event `id` of a record again (a repeat folded into it), on a
    /// current lease, so it lives `event_ttl` from its last occurrence.
    ///
    /// # Errors
    /// [`StoreError::Lease`] when no lease can be granted, [`StoreError::Put`]
    /// when etcd fails.
    pub async fn update_event(
        &self,
        kind: &str,
        name: &str,
        id: &str,
        event: &Event,
    ) -> Result<(), StoreError> {
        self.put_events(kind, name, &[(id.to_owned(), event.clone())])
            .await
    }

    /// Writes the entries of a record's log (`(id, event)`, new or folded
    /// again), [`EVENTS_PER_TXN`] to a transaction, on a current lease: a
    /// pass that created 200 services writes its 200 events in a few round
    /// trips, not 200.
    ///
    /// # Errors
    /// [`StoreError::Lease`] when no lease can be granted, [`StoreError::Put`]
    /// when etcd fails; the batches before the failing one are written.
    pub async fn put_events(
        &self,
        kind: &str,
        name: &str,
        entries: &[(String, Event)],
    ) -> Result<(), StoreError> {
        let mut encoded = Vec::with_capacity(entries.len());
        for (id, event) in entries {
            let key = self.keys().event(kind, name, id)?;
            let value = serde_json::to_vec(event).map_err(|source| StoreError::Encode {
                key: key.clone(),
                source,
            })?;
            encoded.push((key, value));
        }
        for batch in encoded.chunks(EVENTS_PER_TXN) {
            let lease = self.event_lease(false).await?;
            let put = |lease| {
                let ops = batch
                    .iter()
                    .map(|(key, value)| {
                        let options = PutOptions::new().with_lease(lease);
                        TxnOp::put(key.as_str(), value.clone(), Some(options))
                    })
                    .collect();
                let first = batch.first().map(|(key, _)| key.as_str()).unwrap_or("");
                self.commit(Write::Put, first, Vec::new(), ops, Vec::new())
            };
            match put(lease).await {
                // The lease can vanish under us (revoked by hand, or expired while
                // this process was paused): take a fresh one and try once more.
                Err(StoreError::Put { source, .. })
                    if source.to_string().contains("lease not found") =>
                {
                    put(self.event_lease(true).await?).await?;
                }
                outcome => {
                    outcome?;
                }
            }
        }
        Ok(())
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
        Ok(self.list_events_at_revision(filter).await?.0)
    }

    /// [`Store::list_events`], and the revision they were read at: watch from the
    /// next one ([`Store::watch_events`]) to follow the log without a gap or a repeat.
    ///
    /// # Errors
    /// [`StoreError::List`] when etcd fails.
    pub async fn list_events_at_revision(
        &self,
        filter: Option<(&str, &str)>,
    ) -> Result<(Vec<(String, String, Event)>, i64), StoreError> {
        let prefix = self.keys().events_prefix(filter)?;
        let (kvs, revision) = self
            .range(&prefix, 0, false)
            .await
            .map_err(|source| StoreError::List { prefix, source })?;
        let mut events: Vec<_> = kvs.iter().filter_map(|kv| self.decode_event(kv)).collect();
        events.sort_by_key(|(_, _, event)| event.last_time());
        Ok((events, revision))
    }

    /// Events written from `from_revision` on (of one record, or of all), for
    /// `events --watch`: pass the revision of [`Store::list_events_at_revision`]
    /// plus one, so that what was written between the listing and the watch is
    /// shown, and nothing listed is shown again. `0` means from the first poll on.
    ///
    /// It reconnects by itself when etcd goes away and never ends; its only
    /// error is a malformed filter.
    pub fn watch_events(
        &self,
        filter: Option<(&str, &str)>,
        from_revision: i64,
    ) -> BoxStream<'static, Result<(String, String, Event), StoreError>> {
        let prefix = match self.keys().events_prefix(filter) {
            Ok(prefix) => prefix,
            Err(err) => return futures::stream::once(async { Err(err) }).boxed(),
        };
        let watch = ResumableWatch::new(self.inner.streams.clone(), prefix, from_revision);
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
            count: 1,
            last_seen: None,
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "Warning");
        assert!(
            json.get("count").is_none(),
            "a single event has no count: {json}"
        );
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), event);
    }

    #[test]
    fn a_repeat_folds_into_a_count_and_a_last_seen_time() {
        let first = Event::warning("Failed", "boom");
        let again = Event::warning("Failed", "boom");
        assert!(first.repeats(&again));
        assert!(!first.repeats(&Event::warning("Failed", "other")));
        assert!(!first.repeats(&Event::normal("Failed", "boom")));
        let later = Timestamp::from_second(2_000_000_000).unwrap();
        let folded = first.clone().seen_again(later).seen_again(later);
        assert_eq!(folded.count, 3);
        assert_eq!(folded.last_time(), later);
        assert_eq!(folded.time, first.time);
        let json = serde_json::to_value(&folded).unwrap();
        assert_eq!(json["count"], 3);
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), folded);
    }

    #[test]
    fn a_batch_folds_repeats_onto_the_last_entry_and_each_other() {
        let last = (
            "1".to_owned(),
            Event::normal("Created", "created service a"),
        );
        let batch = vec![
            Event::normal("Created", "created service a"),
            Event::normal("Created", "created service b"),
            Event::warning("Failed", "boom"),
            Event::warning("Failed", "boom"),
        ];
        let out = fold_events(Some(last), batch);
        let summary: Vec<_> = out
            .iter()
            .map(|(id, e)| (id == "1", e.message.as_str(), e.count))
            .collect();
        assert_eq!(
            summary,
            [
                (true, "created service a", 2),
                (false, "created service b", 1),
                (false, "boom", 2),
            ]
        );
        let ids: std::collections::HashSet<_> = out.iter().map(|(id, _)| id).collect();
        assert_eq!(ids.len(), 3, "each entry written once");
        assert!(fold_events(None, Vec::new()).is_empty());
    }
}
