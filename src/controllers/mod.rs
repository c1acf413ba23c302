//! One reconciler per kind, behind a single dispatcher the runtime drives.
//!
//! The dispatcher reads the record, hands it to its kind's reconciler, and
//! writes what came of it (status, events). Reconcilers never branch on why
//! they run: each pass recomputes from the record in etcd and the live swarm.

pub mod backup_job;
mod backup_run;
pub mod database_user;
pub mod drift_cache;
pub mod listing;
pub mod network;
pub mod node;
pub mod registry;
pub mod registry_auth;
mod registry_mounts;
pub mod secret;
mod secret_versions;
pub mod stack;
mod stack_execute;
mod stack_secrets;
pub mod status;
pub mod triggers;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::api::Kind;
use crate::docker::{Docker, DockerError};
use crate::gitops::owner::Origin;
use crate::notify::Notifier;
use crate::plan::drift::DriftReport;
use crate::runtime::{Action, Reconciler};
use crate::store::{Event, Keyring, Store, StoreError, WriteFence, fold_events};
use crate::text::{MESSAGE_LIMIT, truncate};
pub use drift_cache::DriftCache;
use status::{Phase, Status};
pub use triggers::all_keys;

/// The unit of work: one record, `Kind/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey {
    pub kind: Kind,
    pub name: String,
}

impl RecordKey {
    pub fn new(kind: Kind, name: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.into(),
        }
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// A reconcile that could not finish.
///
/// # Failure policy
/// A transient error (etcd or dockerd unreachable, a 5xx, a lost version
/// race) is retried with the key's backoff; the status keeps its phase and
/// says what is retried. A permanent one (dockerd refusing the spec with a
/// 4xx, a sealed value that does not open, a name that cannot be made) marks
/// the record `Failed` with the cause, and is retried only when the record
/// changes, or slowly, at the resync interval, since what stood in the way (a
/// foreign object holding a name) may go away.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    /// The record cannot converge as it is, however often it is retried.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// A short, bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Store(e) => e.kind(),
            Error::Docker(e) => e.kind(),
            Error::Db(e) => e.kind(),
            Error::Invalid(_) => "invalid",
        }
    }

    /// Whether retrying soon may succeed; otherwise the record is `Failed`.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Store(e) => e.is_transient(),
            Error::Docker(e) => e.is_transient(),
            Error::Db(e) => e.is_transient(),
            Error::Invalid(_) => false,
        }
    }

    /// Whether the write was refused because this replica no longer leads.
    fn is_deposed(&self) -> bool {
        matches!(
            self,
            Error::Store(StoreError::Deposed { .. }) | Error::Docker(DockerError::Deposed { .. })
        )
    }
}

/// What every reconciler shares: the store, the swarm, the secret keys.
#[derive(Clone)]
pub struct Context {
    pub store: Store,
    pub docker: Docker,
    /// The keys that open and seal values, and the digest key; `None` without `--secret-key-file`.
    pub keyring: Option<Keyring>,
    /// How long a converged record waits before it is looked at again when no event comes.
    pub resync: Duration,
    /// The last event of each record, to fold repeats into it.
    last_events: Arc<Mutex<HashMap<RecordKey, (String, Event)>>>,
    /// What each record's last reconcile left different from its desired state.
    pub drift: Arc<DriftCache>,
    /// The latest listing of the swarm, shared by the reconciles of a pass.
    pub listings: Arc<listing::Listings>,
    /// Told of every status transition (failing, recovered, drifting); the
    /// BackupJob controller tells it of failed and stale backups.
    pub notifier: Notifier,
    /// The GitOps source and commit of each record, as last read: its status shows them.
    origins: Arc<Mutex<HashMap<RecordKey, Origin>>>,
    /// Image digests resolved from Registry records' registries.
    pub digests: Arc<registry_auth::DigestCache>,
}

impl Context {
    /// A context of `store` and `docker`, with no event written yet.
    pub fn new(store: Store, docker: Docker, keyring: Option<Keyring>, resync: Duration) -> Self {
        Self {
            store,
            docker,
            keyring,
            resync,
            last_events: Arc::default(),
            drift: Arc::default(),
            listings: Arc::default(),
            notifier: Notifier::disabled(),
            origins: Arc::default(),
            digests: Arc::default(),
        }
    }

    /// The same context, telling `notifier` of status transitions.
    #[must_use]
    pub fn with_notifier(mut self, notifier: Notifier) -> Self {
        self.notifier = notifier;
        self
    }

    /// Remembers where a record read for a reconcile came from, for its status.
    fn note_origin(&self, key: &RecordKey, stored: Option<&crate::store::Versioned>) {
        let mut origins = self
            .origins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match stored.and_then(|s| crate::gitops::owner::origin(&s.value)) {
            Some(origin) => origins.insert(key.clone(), origin),
            None => origins.remove(key),
        };
    }

    fn origin(&self, key: &RecordKey) -> Option<Origin> {
        let origins = self
            .origins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        origins.get(key).cloned()
    }

    /// The same context, keeping its records' drift in `drift` (one with the
    /// gauge, shared with the HTTP endpoints).
    #[must_use]
    pub fn with_drift(mut self, drift: DriftCache) -> Self {
        self.drift = Arc::new(drift);
        self
    }

    /// The same context for a leader: every write to etcd and dockerd is
    /// fenced by its lease.
    #[must_use]
    pub fn fenced(&self, fence: &WriteFence) -> Self {
        Self {
            store: self.store.fenced(fence.clone()),
            docker: self.docker.clone().fenced(fence.local().clone()),
            ..self.clone()
        }
    }

    /// Writes an event; a failure to record it is logged, never fatal.
    ///
    /// An event that repeats the record's previous one (same type, reason
    /// and message) is folded into it: its count grows, no entry is added.
    pub async fn event(&self, key: &RecordKey, warning: bool, reason: &str, message: String) {
        let event = happened(key, warning, reason, message);
        self.write_events(key, vec![event]).await;
    }

    /// Writes the events of a pass, collected while it ran (see
    /// [`happened`]), in few etcd round trips; folded as [`Context::event`]
    /// folds them. A failure to record them is logged, never fatal.
    pub async fn write_events(&self, key: &RecordKey, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let previous = self.last_events().get(key).cloned();
        let entries = fold_events(previous, events);
        let (kind, name) = (key.kind.as_str(), key.name.as_str());
        match self.store.put_events(kind, name, &entries).await {
            Ok(()) => {
                if let Some(last) = entries.into_iter().last() {
                    self.last_events().insert(key.clone(), last);
                }
            }
            Err(err) => tracing::warn!(record = %key, %err, "could not record events"),
        }
    }

    fn last_events(&self) -> std::sync::MutexGuard<'_, HashMap<RecordKey, (String, Event)>> {
        // Plain data: a panic elsewhere cannot leave it half-written.
        self.last_events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A record's status as last written, if it reads back.
    ///
    /// # Errors
    /// When etcd fails.
    pub async fn read_status(&self, key: &RecordKey) -> Result<Option<Status>, Error> {
        let stored = self.store.get_status(key.kind.as_str(), &key.name).await?;
        Ok(stored.and_then(|v| serde_json::from_value(v.value).ok()))
    }

    /// Writes a record's status, unless only its times would change: a pass
    /// that finds a record as the last one did writes nothing to etcd.
    ///
    /// # Errors
    /// When etcd refuses the write.
    pub async fn write_status(&self, key: &RecordKey, status: &Status) -> Result<(), Error> {
        let previous = self.read_status(key).await?;
        self.write_status_over(key, status, previous.as_ref()).await
    }

    /// [`Context::write_status`] against `previous`, the status as this
    /// reconcile already read it (a key is never reconciled twice at once,
    /// so no other pass wrote it meanwhile): one etcd read fewer per pass.
    ///
    /// # Errors
    /// When etcd refuses the write.
    pub async fn write_status_over(
        &self,
        key: &RecordKey,
        status: &Status,
        previous: Option<&Status>,
    ) -> Result<(), Error> {
        let status = Status {
            message: bounded(status.message.clone()),
            source: self.origin(key),
            ..status.clone()
        };
        let Some(status) = status.changed_from(previous) else {
            return Ok(());
        };
        let value = serde_json::to_value(&status).unwrap_or_default();
        self.store
            .put_status(key.kind.as_str(), &key.name, &value)
            .await?;
        // Only once written: a deposed leader's refused write tells no one.
        self.notifier.status_changed(key, previous, &status);
        Ok(())
    }

    /// Marks a record failed: it cannot converge as it is, so it waits for a change.
    async fn fail(
        &self,
        key: &RecordKey,
        generation: i64,
        message: String,
    ) -> Result<Action, Error> {
        let status = Status::new(Phase::Failed, generation).with_message(message);
        self.fail_with(key, status).await
    }

    /// [`Context::fail`] with a status of the caller's making (one that keeps
    /// kind-specific memory); its message is the cause.
    async fn fail_with(&self, key: &RecordKey, status: Status) -> Result<Action, Error> {
        self.event(key, true, "Failed", status.message.clone())
            .await;
        self.drift.set_error(key, Vec::new(), &status.message);
        self.write_status(key, &status).await?;
        Ok(Action::await_change())
    }
}

/// An event of `key` that happened now, logged now, to be written with
/// [`Context::write_events`]: a pass collects them so that no Docker write
/// waits on an etcd write.
#[must_use]
pub fn happened(key: &RecordKey, warning: bool, reason: &str, message: String) -> Event {
    // dockerd may quote a whole value back: a log line and an event stay bounded.
    let message = bounded(message);
    if warning {
        tracing::warn!(record = %key, reason, message);
        Event::warning(reason, message)
    } else {
        tracing::info!(record = %key, reason, message);
        Event::normal(reason, message)
    }
}

/// `message` cut to [`MESSAGE_LIMIT`] bytes.
fn bounded(message: String) -> String {
    match truncate(&message, MESSAGE_LIMIT) {
        std::borrow::Cow::Borrowed(_) => message,
        cut => cut.into_owned(),
    }
}

/// Parses a stored record; for an invalid one, the message its status shows.
///
/// # Errors
/// Every problem of the record, joined.
pub fn parse_record(value: serde_json::Value) -> Result<crate::api::Record, String> {
    if value.is_null() {
        // What the store reads for a value that is not JSON.
        return Err("invalid record: the stored value is not a JSON record".into());
    }
    crate::api::Record::from_value(value).map_err(|errors| {
        let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!("invalid record: {}", all.join("; "))
    })
}

impl Context {
    /// Ends the pass over a deleted record: its status (the memory of what it
    /// owned) goes once nothing is left; until then it is looked at again soon.
    async fn forget(&self, key: &RecordKey, lingering: bool) -> Result<Action, Error> {
        self.drift.forget(key);
        if lingering {
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
        self.store
            .delete_status(key.kind.as_str(), &key.name)
            .await?;
        self.last_events().remove(key);
        self.note_origin(key, None);
        Ok(Action::await_change())
    }
}

/// Dispatches each record to its kind's reconciler.
pub struct Controllers {
    pub ctx: Context,
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Controllers {
    async fn reconcile_key(&self, key: RecordKey) -> Result<Action, Error> {
        let stored = self
            .ctx
            .store
            .get_record(key.kind.as_str(), &key.name)
            .await?;
        self.ctx.note_origin(&key, stored.as_ref());
        match key.kind {
            Kind::Stack => stack::reconcile(&self.ctx, &key, stored).await,
            Kind::Network => network::reconcile(&self.ctx, &key, stored).await,
            Kind::Secret => secret::reconcile(&self.ctx, &key, stored).await,
            Kind::Node => node::reconcile(&self.ctx, &key, stored).await,
            Kind::DatabaseUser => database_user::reconcile(&self.ctx, &key, stored).await,
            Kind::Registry => registry::reconcile(&self.ctx, &key, stored).await,
            Kind::BackupJob => {
                let metrics = self.metrics.as_deref();
                backup_job::reconcile(&self.ctx, &key, stored, metrics).await
            }
        }
    }
}

/// The drift of every record that has a drift model (all, of a kind, or
/// one), as `swarmkeeper drift` reports it: computed now, from etcd and the
/// live swarm, by each kind's own comparison.
///
/// # Errors
/// When etcd or dockerd fails.
pub async fn drift(
    ctx: &Context,
    kind: Option<Kind>,
    name: Option<&str>,
) -> Result<DriftReport, Error> {
    let mut out = DriftReport::default();
    for key in all_keys(ctx).await? {
        if kind.is_some_and(|k| k != key.kind) || name.is_some_and(|n| n != key.name) {
            continue;
        }
        let stored = ctx.store.get_record(key.kind.as_str(), &key.name).await?;
        let record = match key.kind {
            Kind::Stack => stack::drift(ctx, &key.name, stored).await?,
            Kind::Network => network::drift(ctx, &key.name, stored).await?,
            Kind::Node => node::drift(ctx, &key.name, stored).await?,
            Kind::DatabaseUser => database_user::drift(ctx, &key.name, stored).await?,
            Kind::Registry => registry::drift(ctx, &key.name, stored).await?,
            _ => continue,
        };
        out.records.push(record);
    }
    Ok(out)
}

impl Reconciler<RecordKey> for Controllers {
    type Error = Error;

    /// Permanent errors wait for a change of the record (its watch event
    /// schedules it at once), or the slow retry at the resync interval.
    fn error_policy(&self, _key: &RecordKey, error: &Error) -> Option<Duration> {
        (!error.is_transient()).then_some(self.ctx.resync)
    }

    async fn reconcile(self: Arc<Self>, key: RecordKey) -> Result<Action, Error> {
        let started = std::time::Instant::now();
        let kind = key.kind.as_str();
        let result = self.reconcile_key(key.clone()).await;
        if let Some(m) = &self.metrics {
            let outcome = result.as_ref().map_or_else(Error::kind, |_| "ok");
            m.reconciled(kind, outcome, started.elapsed().as_secs_f64());
        }
        if let Err(err) = &result {
            self.ctx.record_error(&key, err).await;
        }
        result
    }
}

impl Context {
    /// Makes a failed reconcile visible, by the failure policy of [`Error`]:
    /// a transient error is an event and the status message (its phase stays
    /// what the last pass found) while the runtime retries with backoff; a
    /// permanent one makes the record `Failed` with the cause. The status keeps
    /// what the record owns: it is the memory of what to clean up.
    async fn record_error(&self, key: &RecordKey, err: &Error) {
        if err.is_deposed() {
            // Another replica leads now; it records what it finds itself.
            return;
        }
        let (phase, reason, message) = if err.is_transient() {
            (None, "Error", format!("retrying after error: {err}"))
        } else {
            let message = err.to_string();
            self.drift.set_error(key, Vec::new(), &message);
            (Some(Phase::Failed), "Failed", message)
        };
        self.event(key, true, reason, message.clone()).await;
        let generation = match self.store.get_record(key.kind.as_str(), &key.name).await {
            Ok(record) => record.map_or(0, |r| r.mod_revision),
            Err(_) => return,
        };
        let Ok(current) = self.read_status(key).await else {
            return;
        };
        let mut status = current.unwrap_or_else(|| Status::new(Phase::Pending, generation));
        status.message = message;
        if let Some(phase) = phase {
            status.phase = phase;
            status.observed_revision = generation;
        }
        status.updated_at = jiff::Timestamp::now();
        if let Err(err) = self.write_status(key, &status).await {
            tracing::warn!(record = %key, %err, "could not record the error in the status");
        }
    }
}
