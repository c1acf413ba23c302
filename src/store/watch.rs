//! List-then-watch of desired records that survives compaction and etcd restarts.
//!
//! # Expected flow
//! The caller lists ([`Store::list_records`]), gets a revision `R`, and calls
//! [`Store::watch_desired`] with `R + 1`. The stream then yields every change
//! after the list.
//!
//! # Guarantees
//! - When etcd answers that the revision to watch from was compacted (etcd
//!   3.4 first answers `created`, then a response with `canceled` and a
//!   `compact_revision`), the stream re-lists, yields a `Delete` for every
//!   key it knew that vanished and a `Put` for every key that is new or newer
//!   than what it knew, then watches on from the list's revision.
//! - When the connection breaks, it reconnects with backoff and resumes from
//!   the last revision it yielded events of, skipping the events it already
//!   yielded; it never ends by itself.
//! - No answer outgrows what the client accepts (4 MiB), however large the
//!   values: the watch asks etcd for fragments, so an answer over etcd's
//!   request limit (1.5 MiB) comes in several. A watch catching up through
//!   several large records after a reconnect otherwise failed on every attempt.
//!   A fragment can end in the middle of a revision, which is why a reconnect
//!   reads the last revision again.
//!
//! # Caveats
//! Events between two re-lists are folded: a key put and deleted while
//! compacted away is never seen. That is all a level-triggered controller needs.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use etcd_client::{Client, EventType, KeyValue, WatchOptions, WatchStream};
use futures::stream::{BoxStream, StreamExt};

use super::keys::Section;
use super::records::{Versioned, decode};
use super::{Store, StoreError};

/// A change to a desired record.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    Put {
        kind: String,
        name: String,
        versioned: Versioned,
    },
    Delete {
        kind: String,
        name: String,
    },
}

fn backoff() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(30))
        .without_max_times()
        .build()
}

/// What one step of a raw watch produced.
pub(crate) enum RawBatch {
    Events(Vec<etcd_client::Event>),
    /// The revision to watch from is gone; the caller must choose where to
    /// go on ([`ResumableWatch::resume_from`]), typically after a re-list.
    /// `compact_revision` is the oldest revision still available.
    Compacted {
        compact_revision: i64,
    },
}

/// A watch on a prefix that reconnects by itself from the next revision it needs.
pub(crate) struct ResumableWatch {
    client: Client,
    prefix: String,
    /// The revision to (re)start from; 0 means "now".
    next_revision: i64,
    /// The revision of the last event yielded and the keys yielded at it: a
    /// reconnect starts at that revision again (a fragment may have cut it) and
    /// skips these.
    last: Option<(i64, HashSet<Vec<u8>>)>,
    stream: Option<WatchStream>,
    backoff: ExponentialBackoff,
}

impl ResumableWatch {
    pub(crate) fn new(client: Client, prefix: String, from_revision: i64) -> Self {
        Self {
            client,
            prefix,
            next_revision: from_revision,
            last: None,
            stream: None,
            backoff: backoff(),
        }
    }

    pub(crate) fn resume_from(&mut self, revision: i64) {
        self.next_revision = revision;
        self.last = None;
        self.stream = None;
    }

    /// The events of an answer not yielded before, noting them as yielded.
    fn take_new(&mut self, events: &[etcd_client::Event]) -> Vec<etcd_client::Event> {
        let mut fresh = Vec::with_capacity(events.len());
        for event in events {
            if let Some(kv) = event.kv() {
                let revision = kv.mod_revision();
                match &mut self.last {
                    Some((last, _)) if *last > revision => continue,
                    Some((last, keys)) if *last == revision => {
                        if !keys.insert(kv.key().to_vec()) {
                            continue;
                        }
                    }
                    _ => self.last = Some((revision, HashSet::from([kv.key().to_vec()]))),
                }
                self.next_revision = revision;
            }
            fresh.push(event.clone());
        }
        fresh
    }

    async fn establish(&mut self) -> Result<(), etcd_client::Error> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_fragment()
            .with_start_revision(self.next_revision);
        self.stream = Some(
            self.client
                .watch(self.prefix.as_str(), Some(options))
                .await?,
        );
        Ok(())
    }

    async fn pause(&mut self, reason: &str) {
        let delay = self.backoff.next().unwrap_or(Duration::from_secs(30));
        tracing::warn!(prefix = %self.prefix, reason, ?delay, "etcd watch interrupted, reconnecting");
        tokio::time::sleep(delay).await;
    }

    pub(crate) async fn next(&mut self) -> RawBatch {
        loop {
            let Some(stream) = self.stream.as_mut() else {
                if let Err(err) = self.establish().await {
                    self.pause(&err.to_string()).await;
                }
                continue;
            };
            let reason = match stream.message().await {
                Ok(Some(resp)) if resp.canceled() => {
                    self.stream = None;
                    if resp.compact_revision() > 0 {
                        return RawBatch::Compacted {
                            compact_revision: resp.compact_revision(),
                        };
                    }
                    format!("watch canceled: {}", resp.cancel_reason())
                }
                Ok(Some(resp)) => {
                    self.backoff = backoff();
                    if self.next_revision == 0 {
                        // A watch "from now" must resume after what it was created at.
                        if let Some(header) = resp.header() {
                            self.next_revision = header.revision() + 1;
                        }
                    }
                    let events = self.take_new(resp.events());
                    if events.is_empty() {
                        continue;
                    }
                    return RawBatch::Events(events);
                }
                Ok(None) => "watch stream closed".to_owned(),
                Err(err) => err.to_string(),
            };
            self.stream = None;
            self.pause(&reason).await;
        }
    }
}

/// The stream's state: the raw watch, what it knows, and what it has yet to yield.
struct DesiredWatch {
    store: Store,
    raw: ResumableWatch,
    /// `mod_revision` of every key the consumer has been told about.
    known: HashMap<(String, String), i64>,
    pending: VecDeque<Result<WatchEvent, StoreError>>,
}

impl DesiredWatch {
    async fn next(mut self) -> Option<(Result<WatchEvent, StoreError>, Self)> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some((item, self));
            }
            match self.raw.next().await {
                RawBatch::Events(events) => {
                    for event in &events {
                        self.apply(event);
                    }
                }
                RawBatch::Compacted { .. } => self.relist().await,
            }
        }
    }

    fn record_of(&self, kv: &KeyValue) -> Option<(String, String, String)> {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        let (kind, name) = self.store.keys().parse_record(Section::Desired, &key)?;
        Some((key, kind, name))
    }

    fn apply(&mut self, event: &etcd_client::Event) {
        let Some(kv) = event.kv() else { return };
        let Some((key, kind, name)) = self.record_of(kv) else {
            return;
        };
        match event.event_type() {
            EventType::Put => self.put(key, kind, name, kv),
            EventType::Delete => {
                self.known.remove(&(kind.clone(), name.clone()));
                self.pending
                    .push_back(Ok(WatchEvent::Delete { kind, name }));
            }
        }
    }

    fn put(&mut self, key: String, kind: String, name: String, kv: &KeyValue) {
        self.known
            .insert((kind.clone(), name.clone()), kv.mod_revision());
        self.pending.push_back(Ok(WatchEvent::Put {
            kind,
            name,
            versioned: decode(kv, &key),
        }));
    }

    /// Re-lists after a compaction, retrying until etcd answers.
    async fn relist(&mut self) {
        let prefix = self.raw.prefix.clone();
        let mut retry = backoff();
        let (kvs, revision) = loop {
            match self.store.range(&prefix, 0, false).await {
                Ok(listed) => break listed,
                Err(err) => {
                    let delay = retry.next().unwrap_or(Duration::from_secs(30));
                    tracing::warn!(%prefix, %err, ?delay, "re-list after compaction failed, retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        };
        tracing::info!(%prefix, revision, "watch revision was compacted, re-listed");
        let mut vanished = std::mem::take(&mut self.known);
        for kv in &kvs {
            let Some((key, kind, name)) = self.record_of(kv) else {
                continue;
            };
            match vanished.remove(&(kind.clone(), name.clone())) {
                Some(seen) if seen >= kv.mod_revision() => {
                    self.known.insert((kind, name), seen);
                }
                _ => self.put(key, kind, name, kv),
            }
        }
        let mut gone: Vec<_> = vanished.into_keys().collect();
        gone.sort();
        for (kind, name) in gone {
            self.pending
                .push_back(Ok(WatchEvent::Delete { kind, name }));
        }
        self.raw.resume_from(revision + 1);
    }
}

impl Store {
    /// Changes to desired records from `from_revision` on (the revision of a
    /// [`Store::list_records`] plus one).
    ///
    /// The keys that existed just before `from_revision` are read now, so a
    /// later re-list can tell which of them vanished; the watch itself starts
    /// at the first poll. See the module docs for what survives what.
    ///
    /// # Errors
    /// [`StoreError::List`] when the keys at `from_revision - 1` cannot be
    /// read. If that revision is already compacted the stream starts knowing
    /// nothing: a re-list then reports every record as a `Put` but cannot
    /// report deletions that happened before it.
    pub async fn watch_desired(
        &self,
        from_revision: i64,
    ) -> Result<BoxStream<'static, Result<WatchEvent, StoreError>>, StoreError> {
        let prefix = self.keys().section_prefix(Section::Desired, None)?;
        let mut known = HashMap::new();
        if from_revision > 1 {
            match self.range(&prefix, from_revision - 1, true).await {
                Ok((kvs, _)) => {
                    for kv in &kvs {
                        let key = String::from_utf8_lossy(kv.key());
                        if let Some(record) = self.keys().parse_record(Section::Desired, &key) {
                            known.insert(record, kv.mod_revision());
                        }
                    }
                }
                Err(err) if super::error::is_compacted(&err) => {
                    tracing::warn!(from_revision, "watch start revision already compacted");
                }
                Err(source) => return Err(StoreError::List { prefix, source }),
            }
        }
        let state = DesiredWatch {
            store: self.clone(),
            raw: ResumableWatch::new(self.inner.streams.clone(), prefix, from_revision),
            known,
            pending: VecDeque::new(),
        };
        Ok(futures::stream::unfold(state, DesiredWatch::next).boxed())
    }
}
