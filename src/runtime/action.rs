//! What a reconcile asks the runtime to do next.

use std::time::Duration;

/// The outcome of a successful reconcile: when to look at the key again.
///
/// Prefer [`Action::requeue`] with a long period over [`Action::await_change`]:
/// a trigger that was missed (a dropped watch event, a Docker event during a
/// reconnect) is then healed by the requeue even without a resync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    requeue_after: Option<Duration>,
}

impl Action {
    /// Reconcile the key again after `delay`, unless a trigger comes sooner.
    ///
    /// Any delay is accepted, even `Duration::MAX`: the queue waits at most
    /// [`MAX_DELAY`](super::MAX_DELAY) (about six months).
    #[must_use]
    pub const fn requeue(delay: Duration) -> Self {
        Self {
            requeue_after: Some(delay),
        }
    }

    /// Reconcile the key again only when a trigger names it.
    #[must_use]
    pub const fn await_change() -> Self {
        Self {
            requeue_after: None,
        }
    }

    /// The delay before the next reconcile, if one was asked for.
    #[must_use]
    pub const fn requeue_after(&self) -> Option<Duration> {
        self.requeue_after
    }
}
