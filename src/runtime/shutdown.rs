//! Graceful shutdown: the first signal drains in-flight work, the second aborts it.

use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use super::Error;

/// How far a shutdown has gone. Phases only ever move forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Work is taken and run as usual.
    Running,
    /// No new work is started; reconciles already running finish.
    Draining,
    /// Reconciles still running are cancelled at their next await point.
    Aborting,
}

/// A shutdown signal shared by everything that must stop with the process.
///
/// Cloning gives another handle on the same signal. It is fired by
/// SIGTERM/SIGINT (see [`Shutdown::on_signals`]) or by code: the leader
/// election calls [`Shutdown::abort`] when the lease is lost, because another
/// replica may already be reconciling.
#[derive(Debug, Clone)]
pub struct Shutdown {
    phase: Arc<watch::Sender<Phase>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A signal that only fires when [`trigger`](Self::trigger) or
    /// [`abort`](Self::abort) is called.
    #[must_use]
    pub fn new() -> Self {
        Self {
            phase: Arc::new(watch::Sender::new(Phase::Running)),
        }
    }

    /// A signal that also fires on SIGTERM and SIGINT: the first one drains,
    /// the second aborts.
    ///
    /// Must be called inside a Tokio runtime; the listener is a spawned task
    /// that lives as long as the runtime.
    ///
    /// # Errors
    /// [`Error::ListenSignal`] when a signal handler cannot be installed.
    pub fn on_signals() -> Result<Self, Error> {
        let listen = |kind: SignalKind, name: &'static str| {
            signal(kind).map_err(|source| Error::ListenSignal {
                signal: name,
                source,
            })
        };
        let mut term = listen(SignalKind::terminate(), "SIGTERM")?;
        let mut int = listen(SignalKind::interrupt(), "SIGINT")?;
        let shutdown = Self::new();
        let handle = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let name = tokio::select! {
                    Some(()) = term.recv() => "SIGTERM",
                    Some(()) = int.recv() => "SIGINT",
                    else => return,
                };
                let phase = handle.trigger();
                tracing::info!(signal = name, ?phase, "shutdown signal received");
                if phase == Phase::Aborting {
                    return;
                }
            }
        });
        Ok(shutdown)
    }

    /// Moves the shutdown one phase forward (running, then draining, then
    /// aborting) and returns the phase reached.
    pub fn trigger(&self) -> Phase {
        self.advance_to(|phase| match phase {
            Phase::Running => Phase::Draining,
            Phase::Draining | Phase::Aborting => Phase::Aborting,
        })
    }

    /// Goes straight to [`Phase::Aborting`].
    pub fn abort(&self) {
        self.advance_to(|_| Phase::Aborting);
    }

    /// The phase reached so far.
    #[must_use]
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Resolves once the phase is at least `phase`.
    pub async fn reached(&self, phase: Phase) {
        let mut rx = self.phase.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|now| *now >= phase).await;
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    fn advance_to(&self, next: impl Fn(Phase) -> Phase) -> Phase {
        let mut reached = Phase::Running;
        self.phase.send_if_modified(|phase| {
            let old = *phase;
            *phase = next(old).max(old);
            reached = *phase;
            reached != old
        });
        reached
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn trigger_moves_through_draining_to_aborting_and_stays_there() {
        let shutdown = Shutdown::new();
        assert_eq!(shutdown.phase(), Phase::Running);
        assert_eq!(shutdown.trigger(), Phase::Draining);
        assert_eq!(shutdown.clone().trigger(), Phase::Aborting);
        assert_eq!(shutdown.trigger(), Phase::Aborting);
        assert_eq!(shutdown.phase(), Phase::Aborting);
    }

    #[test]
    fn abort_skips_draining() {
        let shutdown = Shutdown::new();
        shutdown.abort();
        assert_eq!(shutdown.phase(), Phase::Aborting);
    }

    #[tokio::test]
    async fn sigterm_drains_then_a_second_signal_aborts() {
        let shutdown = Shutdown::on_signals().expect("install signal handlers");
        let pid = std::process::id().to_string();
        let kill = |sig: &str| {
            let status = std::process::Command::new("kill")
                .args([sig, &pid])
                .status()
                .expect("run kill");
            assert!(status.success());
        };
        kill("-TERM");
        tokio::time::timeout(Duration::from_secs(10), shutdown.reached(Phase::Draining))
            .await
            .expect("SIGTERM starts draining");
        assert_eq!(shutdown.phase(), Phase::Draining);
        kill("-INT");
        tokio::time::timeout(Duration::from_secs(10), shutdown.reached(Phase::Aborting))
            .await
            .expect("second signal aborts");
    }
}
