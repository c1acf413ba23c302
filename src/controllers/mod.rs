//! One reconciler per kind, behind a single dispatcher the runtime drives.
//!
//! The dispatcher reads the record, hands it to its kind's reconciler, and
//! writes what came of it (status, events). Reconcilers never branch on why
//! they run: each pass recomputes from the record in etcd and the live swarm.

pub mod network;
pub mod node;
pub mod secret;
pub mod stack;
mod stack_secrets;
pub mod status;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::api::Kind;
use crate::docker::{Docker, DockerError};
use crate::runtime::{Action, Reconciler};
use crate::store::Keyring;
use crate::store::{Event, Store, StoreError};
use status::{Phase, Status};

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

/// A reconcile that could not finish; the runtime retries it with backoff.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// Something the record needs is not there yet (an external network, a secret value).
    #[error("waiting: {0}")]
    Waiting(String),
}

impl Error {
    /// A short, bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Store(e) => e.kind(),
            Error::Docker(e) => e.kind(),
            Error::Waiting(_) => "waiting",
        }
    }
}

/// What every reconciler shares: the store, the swarm, the secret keys.
pub struct Context {
    pub store: Store,
    pub docker: Docker,
    /// The keys that open and seal values, and the digest key; `None` without `--secret-key-file`.
    pub keyring: Option<Keyring>,
    /// How long a converged record waits before it is looked at again when no event comes.
    pub resync: Duration,
}

impl Context {
    /// Writes an event; a failure to record it is logged, never fatal.
    pub async fn event(&self, key: &RecordKey, warning: bool, reason: &str, message: String) {
        if warning {
            tracing::warn!(record = %key, reason, message);
        } else {
            tracing::info!(record = %key, reason, message);
        }
        let event = Event {
            time: jiff::Timestamp::now(),
            type_: if warning { "Warning" } else { "Normal" }.to_string(),
            reason: reason.to_string(),
            message,
        };
        if let Err(err) = self
            .store
            .put_event(key.kind.as_str(), &key.name, &event)
            .await
        {
            tracing::warn!(record = %key, %err, "could not record an event");
        }
    }

    /// Writes a record's status.
    ///
    /// # Errors
    /// When etcd refuses the write.
    pub async fn write_status(&self, key: &RecordKey, status: &Status) -> Result<(), Error> {
        let value = serde_json::to_value(status).unwrap_or_default();
        self.store
            .put_status(key.kind.as_str(), &key.name, &value)
            .await?;
        Ok(())
    }

    /// Marks a record failed: it cannot converge as it is, so it waits for a change.
    async fn fail(
        &self,
        key: &RecordKey,
        generation: i64,
        message: String,
    ) -> Result<Action, Error> {
        self.event(key, true, "Failed", message.clone()).await;
        let status = Status::new(Phase::Failed, generation).with_message(message);
        self.write_status(key, &status).await?;
        Ok(Action::await_change())
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
        if lingering {
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
        self.store
            .delete_status(key.kind.as_str(), &key.name)
            .await?;
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
        match key.kind {
            Kind::Stack => stack::reconcile(&self.ctx, &key, stored).await,
            Kind::Network => network::reconcile(&self.ctx, &key, stored).await,
            Kind::Secret => secret::reconcile(&self.ctx, &key, stored).await,
            Kind::Node => node::reconcile(&self.ctx, &key, stored).await,
            _ => {
                // Other kinds get their reconcilers in later releases; say so rather than
                // pretend they converged.
                if let Some(stored) = stored {
                    let status = Status::new(Phase::Pending, stored.mod_revision).with_message(
                        format!("no controller for {} yet in this version", key.kind),
                    );
                    self.ctx.write_status(&key, &status).await?;
                }
                Ok(Action::await_change())
            }
        }
    }
}

impl Reconciler<RecordKey> for Controllers {
    type Error = Error;

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
    /// Makes a failed reconcile visible: an event, and the error in the
    /// record's status message (its phase stays what the last pass found),
    /// while the runtime retries with backoff.
    async fn record_error(&self, key: &RecordKey, err: &Error) {
        let message = format!("retrying after error: {err}");
        self.event(key, true, "Error", message.clone()).await;
        let current = match self.store.get_status(key.kind.as_str(), &key.name).await {
            Ok(v) => v.and_then(|v| serde_json::from_value::<Status>(v.value).ok()),
            Err(_) => return,
        };
        let status = match current {
            Some(mut s) => {
                s.message = message;
                s.updated_at = jiff::Timestamp::now();
                s
            }
            None => Status::new(Phase::Pending, 0).with_message(message),
        };
        if let Err(err) = self.write_status(key, &status).await {
            tracing::warn!(record = %key, %err, "could not record the error in the status");
        }
    }
}

/// Records that own objects in the swarm, whether or not they still exist in etcd:
/// deletion must not depend on having seen the delete event.
///
/// # Errors
/// When dockerd does not answer.
pub async fn owners_in_swarm(
    docker: &Docker,
) -> Result<std::collections::BTreeSet<RecordKey>, Error> {
    let mut labels = Vec::new();
    labels.extend(
        docker
            .list_services(None)
            .await?
            .into_iter()
            .map(|s| s.spec.and_then(|s| s.labels)),
    );
    labels.extend(
        docker
            .list_networks(None)
            .await?
            .into_iter()
            .map(|n| n.labels),
    );
    labels.extend(
        docker
            .list_secrets(None)
            .await?
            .into_iter()
            .map(|s| s.spec.and_then(|s| s.labels)),
    );
    labels.extend(
        docker
            .list_configs(None)
            .await?
            .into_iter()
            .map(|c| c.spec.and_then(|s| s.labels)),
    );
    Ok(labels
        .iter()
        .filter_map(|l| docker.owner_of(l.as_ref()))
        .filter_map(|o| Some(RecordKey::new(o.kind.parse().ok()?, o.name)))
        .collect())
}

/// Every record to look at: those in etcd and those that own swarm objects.
///
/// # Errors
/// When etcd or dockerd does not answer.
pub async fn all_keys(ctx: &Context) -> Result<Vec<RecordKey>, Error> {
    let (records, _) = ctx.store.list_records(None).await?;
    let mut keys: std::collections::BTreeSet<RecordKey> = records
        .into_iter()
        .filter_map(|r| Some(RecordKey::new(r.kind.parse().ok()?, r.name)))
        .collect();
    // Only this instance's objects: another prefix on the same swarm is another instance.
    let scoped = ctx.docker.clone().scoped(ctx.store.prefix());
    keys.extend(owners_in_swarm(&scoped).await?);
    Ok(keys.into_iter().collect())
}
