//! A local lease deadline that every write checks first.
//!
//! A leader only knows it has lost its lease at its next keep-alive, and a
//! process that was paused (SIGSTOP, a VM freeze, a long GC-like stall) does
//! not know time passed at all. The [`Fence`] keeps the moment until which the
//! lease is certainly still held (when the last answered keep-alive was sent,
//! plus the TTL etcd granted, minus a margin); past it, the holder may already
//! have been replaced, so it must not write, whatever its keep-alive task
//! believes.
//!
//! # Guarantees
//! - [`Fence::check`] fails once the deadline has passed, or once the fence
//!   was [revoked](Fence::revoke), and never succeeds again until renewed.
//! - The deadline only moves with the monotonic clock: a paused process wakes
//!   up past its deadline.
//!
//! # Caveats
//! A check just before a write cannot stop a write already in flight; writes
//! that matter must also be refused by the other side (etcd compares the
//! leader key, swarm compares the service version).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Why a write was not sent: this process may not be the leader any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not sent: this replica's leader lease is no longer certainly held")]
pub struct Deposed;

/// A shared lease deadline; clones see the same deadline.
#[derive(Debug, Clone)]
pub struct Fence {
    /// `None` once revoked.
    deadline: Arc<Mutex<Option<Instant>>>,
}

impl Fence {
    /// A fence held until `deadline`.
    #[must_use]
    pub fn until(deadline: Instant) -> Self {
        Self {
            deadline: Arc::new(Mutex::new(Some(deadline))),
        }
    }

    /// A lease of `ttl` whose renewal was sent at `sent` is held until then
    /// plus `ttl` minus `margin`: etcd counts the TTL from when it answered, which
    /// is later, so this errs on the side of stopping early.
    #[must_use]
    pub fn deadline_for(sent: Instant, ttl: Duration, margin: Duration) -> Instant {
        sent + ttl.saturating_sub(margin)
    }

    /// Moves the deadline to `deadline` (never backwards), unless revoked.
    pub fn renew(&self, deadline: Instant) {
        let mut held = self.lock();
        if let Some(current) = held.as_mut() {
            *current = (*current).max(deadline);
        }
    }

    /// Ends the fence for good: every later check fails.
    pub fn revoke(&self) {
        *self.lock() = None;
    }

    /// The deadline, `None` once revoked.
    #[must_use]
    pub fn deadline(&self) -> Option<Instant> {
        *self.lock()
    }

    /// Whether a write may be sent now.
    ///
    /// # Errors
    /// [`Deposed`] when the deadline has passed or the fence was revoked.
    pub fn check(&self) -> Result<(), Deposed> {
        match self.deadline() {
            Some(deadline) if Instant::now() < deadline => Ok(()),
            _ => Err(Deposed),
        }
    }

    /// Resolves once the fence no longer holds (deadline passed or revoked).
    pub async fn expired(&self) {
        loop {
            let Some(deadline) = self.deadline() else {
                return;
            };
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
            // Renewed meanwhile: wait for the new deadline.
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // The value is a plain Instant: a panic elsewhere cannot leave it half-written.
        self.deadline.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn a_fence_holds_until_its_deadline_then_never_again() {
        let fence = Fence::until(Instant::now() + 10 * SEC);
        assert_eq!(fence.check(), Ok(()));
        tokio::time::advance(9 * SEC).await;
        assert_eq!(fence.check(), Ok(()));
        tokio::time::advance(SEC).await;
        assert_eq!(fence.check(), Err(Deposed));
    }

    #[tokio::test(start_paused = true)]
    async fn renewal_moves_the_deadline_forward_only() {
        let start = Instant::now();
        let fence = Fence::until(start + 10 * SEC);
        fence.renew(start + 5 * SEC);
        assert_eq!(fence.deadline(), Some(start + 10 * SEC));
        fence.renew(start + 20 * SEC);
        tokio::time::advance(15 * SEC).await;
        assert_eq!(fence.check(), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_revoked_fence_stays_revoked() {
        let fence = Fence::until(Instant::now() + 10 * SEC);
        let clone = fence.clone();
        fence.revoke();
        assert_eq!(clone.check(), Err(Deposed));
        clone.renew(Instant::now() + 100 * SEC);
        assert_eq!(clone.check(), Err(Deposed));
    }

    #[tokio::test(start_paused = true)]
    async fn expired_waits_for_renewed_deadlines() {
        let start = Instant::now();
        let fence = Fence::until(start + 10 * SEC);
        let renewer = fence.clone();
        tokio::spawn(async move {
            tokio::time::sleep(5 * SEC).await;
            renewer.renew(Instant::now() + 10 * SEC);
        });
        fence.expired().await;
        assert_eq!(Instant::now(), start + 15 * SEC);
    }

    #[test]
    fn the_margin_is_taken_off_the_ttl() {
        let sent = Instant::now();
        assert_eq!(
            Fence::deadline_for(sent, 15 * SEC, 3 * SEC),
            sent + 12 * SEC
        );
        assert_eq!(Fence::deadline_for(sent, SEC, 3 * SEC), sent);
    }
}
