//! The controller machinery: triggers, work queue, backoff, concurrency, shutdown.
//!
//! Nothing here knows about etcd or Docker. A [`Controller`] merges trigger
//! streams of keys (the etcd watch, Docker events, a periodic [`resync`]),
//! debounces and deduplicates them in a work queue, and runs a
//! [`Reconciler`] for each due key:
//!
//! - at most [`Config::concurrency`] reconciles at a time, and never two of
//!   the same key (a key triggered while it runs is run once more after);
//! - on success it follows the returned [`Action`]; on error it retries after
//!   the reconciler's hint or a per-key exponential [`Backoff`] with jitter,
//!   forgotten at the next success;
//! - it stops on [`Shutdown`]: the first signal drains, the second aborts;
//! - it never waits longer than [`MAX_DELAY`] (about six months) for anything,
//!   whatever delay it is asked for.
//!
//! [`run_once`] reconciles a list of keys once each, for `run --once`.
//! [`triggered_at`] tells a running reconcile how fresh its view must be.
//!
//! # Layout
//! - `action.rs`: [`Action`], what a successful reconcile asks for next.
//! - `queue.rs`: the delay queue that deduplicates keys until they are due, and
//!   [`clamp_delay`], the one bound on every delay.
//! - `backoff.rs`: [`Backoff`], per-key retry delays; [`ResetTimerBackoff`], the
//!   delays of a stream that reconnects.
//! - `controller.rs`: [`Controller`], [`Config`], [`run_once`], the run loop (its tests,
//!   on a paused clock, in `controller/tests.rs`).
//! - `fence.rs`: [`Fence`], the local lease deadline every write checks.
//! - `resync.rs`: [`resync`], the periodic trigger.
//! - `reconnect.rs`: [`reconnecting`], a trigger that reopens its source with backoff.
//! - `shutdown.rs`: [`Shutdown`], signals and phases.

mod action;
mod backoff;
mod controller;
mod fence;
mod queue;
mod reconnect;
mod resync;
mod shutdown;

use std::fmt::Display;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

pub use action::Action;
pub use backoff::{Backoff, ResetTimerBackoff};
pub use controller::{Config, Controller, run_once, run_once_since, triggered_at};
pub use fence::{Deposed, Fence};
pub use queue::{MAX_DELAY, clamp_delay};
pub use reconnect::{Session, reconnecting};
pub use resync::resync;
pub use shutdown::{Phase, Shutdown};

/// The errors of the runtime itself; reconcile errors belong to reconcilers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A handler for a shutdown signal could not be installed.
    #[error("cannot listen for {signal}")]
    ListenSignal {
        /// The signal, as `SIGTERM`.
        signal: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// What names one unit of work in the queue, such as `Stack/kittenapi`.
///
/// Its `Display` is what the reconcile span and logs show as `key`.
pub trait Key: Clone + Eq + Hash + Display + Send + Sync + 'static {}

impl<T: Clone + Eq + Hash + Display + Send + Sync + 'static> Key for T {}

/// Brings the world in line with the desired state of one key.
///
/// The reconciler is never told why it runs (a watch event, a Docker event, a
/// resync, a retry): it reads the current desired and live state and
/// converges them, so running it twice is harmless. The reconciler value is
/// the context shared by every reconcile (store and Docker clients, config).
pub trait Reconciler<K: Key>: Send + Sync + 'static {
    /// Why a reconcile failed. Its `Display` is logged, so it must never
    /// carry a secret value.
    type Error: std::error::Error + Send + 'static;

    /// Converges `key` and says when to look at it again.
    fn reconcile(
        self: Arc<Self>,
        key: K,
    ) -> impl Future<Output = Result<Action, Self::Error>> + Send + 'static;

    /// How long to wait before retrying `key` after `error`.
    ///
    /// `None` (the default) uses the key's exponential backoff; `Some` is for
    /// errors that know better, such as a rate limit that says when to retry.
    fn error_policy(&self, key: &K, error: &Self::Error) -> Option<Duration> {
        let _ = (key, error);
        None
    }
}
