//! Notifications (`--notify-webhook URL`): a JSON POST when a record starts
//! failing or recovers, drifts, a sync fails or recovers, or a backup fails
//! or goes stale.
//!
//! # Guarantees
//! - [`Notifier::notify`] never waits: transitions go into a bounded queue,
//!   and what does not fit is dropped and counted
//!   (`swarmkeeper_notifications_total{result="dropped"}`). A slow or failing
//!   receiver never slows a reconcile.
//! - One message per transition, at most one per subject per window (a
//!   minute by default), the transitions in between folded into the next
//!   message with their count ([`fold`]).
//! - Each receiver has its own queue and task: a request is bounded by
//!   [`SEND_TIMEOUT`] and retried with backoff; a receiver that hangs holds
//!   up only its own messages.
//! - No secret: messages carry status and sync messages, which never hold a
//!   secret value; a receiver's URL (a Slack webhook's path is its secret) is
//!   logged by host only.
//!
//! # Layout
//! [`fold`] is the pure dedupe, [`message`] the documented bodies,
//! `deliver.rs` the queues and the HTTP client.

mod deliver;
pub mod fold;
pub mod message;

use std::fmt;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::controllers::status::{Phase, Status};
use crate::metrics::NotifyLabels;
pub use message::Format;

/// A `tracing_subscriber::EnvFilter` directive keeping the HTTP client's debug
/// lines (which name the connection and a proxy's target) out of the logs: a
/// receiver's URL may be its credential.
pub const QUIET_CLIENT_DIRECTIVE: &str = "reqwest=info";

/// How long one POST may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Transitions waiting to be folded, and messages waiting per receiver.
pub const QUEUE: usize = 256;

/// What happened to a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum What {
    /// A record became `Failed` or `Degraded`.
    Failing,
    /// A failing record is `Ready` again.
    Recovered,
    /// A record's live objects differ and are not corrected (self-heal off).
    Drifting,
    DriftResolved,
    /// A source's last commit could not be fetched or applied.
    SyncFailing,
    SyncRecovered,
    /// A BackupJob's run failed, or none succeeded for too long.
    BackupFailing,
    BackupStale,
    BackupRecovered,
}

/// One change of state worth a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// `Kind/name` of a record, or `Source/<name>`.
    pub subject: String,
    pub what: What,
    /// Why, in words; never a secret value.
    pub message: String,
}

impl Transition {
    pub fn new(subject: impl fmt::Display, what: What, message: impl Into<String>) -> Self {
        Self {
            subject: subject.to_string(),
            what,
            message: message.into(),
        }
    }
}

/// Where notifications go.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Receivers; each gets every message.
    pub urls: Vec<String>,
    pub format: Format,
    /// Names the installation in each message.
    pub prefix: String,
    /// At most one message per subject per window.
    pub window: Duration,
}

/// The handle reconcilers and syncs notify through; cheap to clone. A
/// disabled one (no receiver) drops everything without counting.
#[derive(Clone)]
pub struct Notifier {
    queue: Option<mpsc::Sender<Transition>>,
    counts: Family<NotifyLabels, Counter>,
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier")
            .field("enabled", &self.queue.is_some())
            .finish()
    }
}

impl Default for Notifier {
    fn default() -> Self {
        Self::disabled()
    }
}

/// Counts one notification outcome.
fn count(counts: &Family<NotifyLabels, Counter>, result: &'static str) {
    counts.get_or_create(&NotifyLabels { result }).inc();
}

impl Notifier {
    /// A notifier with no receiver.
    pub fn disabled() -> Self {
        Self {
            queue: None,
            counts: Family::default(),
        }
    }

    /// Starts the fold task and one delivery task per receiver (on the
    /// current Tokio runtime); with no receiver, a disabled notifier.
    /// `counts` is `swarmkeeper_notifications_total`.
    pub fn start(config: NotifyConfig, counts: Family<NotifyLabels, Counter>) -> Self {
        if config.urls.is_empty() {
            return Self::disabled();
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        deliver::spawn(config, rx, counts.clone());
        Self {
            queue: Some(tx),
            counts,
        }
    }

    /// Queues a transition; never waits. A full queue drops it (counted).
    pub fn notify(&self, transition: Transition) {
        let Some(queue) = &self.queue else {
            return;
        };
        if queue.try_send(transition).is_err() {
            count(&self.counts, "dropped");
        }
    }

    /// Queues what a record's status change means, if anything.
    pub fn status_changed(
        &self,
        subject: impl fmt::Display,
        before: Option<&Status>,
        after: &Status,
    ) {
        for transition in of_status(&subject.to_string(), before, after) {
            self.notify(transition);
        }
    }
}

fn failing(phase: Phase) -> bool {
    matches!(phase, Phase::Failed | Phase::Degraded)
}

/// The transitions from one status of a record to the next: failing (from
/// anything else), recovered (from failing to `Ready`), drift appearing and
/// going. A steady state, and passing through `Pending` or `Progressing`,
/// say nothing.
pub fn of_status(subject: &str, before: Option<&Status>, after: &Status) -> Vec<Transition> {
    let mut out = Vec::new();
    let was_failing = before.is_some_and(|b| failing(b.phase));
    if failing(after.phase) && !was_failing {
        out.push(Transition::new(
            subject,
            What::Failing,
            after.message.clone(),
        ));
    } else if was_failing && after.phase == Phase::Ready {
        out.push(Transition::new(
            subject,
            What::Recovered,
            after.message.clone(),
        ));
    }
    let drifted = before.is_some_and(|b| !b.drift.is_empty());
    if !after.drift.is_empty() && !drifted {
        let objects: Vec<String> = after
            .drift
            .iter()
            .map(|d| format!("{} {}", d.object, d.name))
            .collect();
        let message = format!("not corrected: {}", objects.join(", "));
        out.push(Transition::new(subject, What::Drifting, message));
    } else if drifted && after.drift.is_empty() {
        out.push(Transition::new(subject, What::DriftResolved, String::new()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::drift::{ObjectDrift, ObjectState};

    fn status(phase: Phase) -> Status {
        Status::new(phase, 1).with_message("why")
    }

    fn whats(before: Option<&Status>, after: &Status) -> Vec<What> {
        of_status("Stack/a", before, after)
            .into_iter()
            .map(|t| t.what)
            .collect()
    }

    #[test]
    fn failing_and_recovering_are_transitions_and_a_steady_state_is_not() {
        let ready = status(Phase::Ready);
        let failed = status(Phase::Failed);
        assert_eq!(whats(None, &failed), [What::Failing]);
        assert_eq!(
            whats(Some(&ready), &status(Phase::Degraded)),
            [What::Failing]
        );
        assert_eq!(whats(Some(&failed), &ready), [What::Recovered]);
        assert!(whats(Some(&failed), &status(Phase::Degraded)).is_empty());
        assert!(whats(Some(&failed), &status(Phase::Progressing)).is_empty());
        assert!(whats(Some(&ready), &ready).is_empty());
        assert!(whats(None, &ready).is_empty());
    }

    #[test]
    fn drift_appearing_and_going_are_transitions() {
        let ready = status(Phase::Ready);
        let mut drifting = status(Phase::Ready);
        drifting.drift.push(ObjectDrift {
            object: "service".into(),
            name: "a_web".into(),
            state: ObjectState::Missing,
            fields: Vec::new(),
        });
        let t = of_status("Stack/a", Some(&ready), &drifting);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].what, What::Drifting);
        assert!(t[0].message.contains("service a_web"), "{}", t[0].message);
        assert!(whats(Some(&drifting), &drifting).is_empty());
        assert_eq!(whats(Some(&drifting), &ready), [What::DriftResolved]);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        let counts = Family::<NotifyLabels, Counter>::default();
        let (tx, _rx) = mpsc::channel(1);
        let notifier = Notifier {
            queue: Some(tx),
            counts: counts.clone(),
        };
        for _ in 0..3 {
            notifier.notify(Transition::new("Stack/a", What::Failing, ""));
        }
        let dropped = counts
            .get_or_create(&NotifyLabels { result: "dropped" })
            .get();
        assert_eq!(dropped, 2);
    }
}
