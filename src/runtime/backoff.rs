//! Exponential backoff with jitter: per key, reset by a success; and for a stream
//! that reconnects, reset only by a quiet period ([`ResetTimerBackoff`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::time::Instant;

use super::queue::clamp_delay;

/// How the retry delay of a failing key grows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The delay after the first error.
    pub min_delay: Duration,
    /// No delay is ever longer than this.
    pub max_delay: Duration,
    /// Each further error multiplies the delay by this.
    pub factor: f32,
    /// Spreads retries of keys that failed together (say, while dockerd
    /// restarted) so they do not all come back in the same instant.
    pub jitter: bool,
}

impl Default for Backoff {
    /// 1 s doubling up to 5 min, with jitter.
    fn default() -> Self {
        Self {
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            factor: 2.0,
            jitter: true,
        }
    }
}

impl Backoff {
    /// For reconnecting a stream or retrying a listing: 0.8 s doubling to 30 s, with
    /// jitter, as kube-runtime's watcher does. Fast enough that a blip costs about a
    /// second; slow enough at the cap that a dead dockerd or etcd sees a few calls a
    /// minute.
    pub const RECONNECT: Backoff = Backoff {
        min_delay: Duration::from_millis(800),
        max_delay: Duration::from_secs(30),
        factor: 2.0,
        jitter: true,
    };

    /// A fresh sequence of delays, never longer than `max_delay`.
    pub fn delays(&self) -> impl Iterator<Item = Duration> + Send + use<> {
        let cap = self.cap();
        self.builder().build().map(move |delay| delay.min(cap))
    }

    /// The cap actually used: `max_delay`, at most [`MAX_DELAY`](super::MAX_DELAY).
    /// backon's jitter multiplies the delay by a float, which overflows near
    /// `Duration::MAX`, so the cap is bounded before backon sees it.
    fn cap(&self) -> Duration {
        clamp_delay(self.max_delay)
    }

    fn builder(&self) -> ExponentialBuilder {
        // backon's jitter adds up to one more delay on top; halving its cap
        // keeps the jittered delay under `max_delay` while still spreading
        // keys that have all reached the cap.
        let (cap, builder) = if self.jitter {
            (self.cap() / 2, ExponentialBuilder::default().with_jitter())
        } else {
            (self.cap(), ExponentialBuilder::default())
        };
        builder
            .with_min_delay(clamp_delay(self.min_delay))
            .with_max_delay(cap)
            .with_factor(self.factor)
            .without_max_times()
    }
}

/// The backoff state of every key whose last reconcile failed.
#[derive(Debug)]
pub(super) struct Backoffs<K> {
    builder: ExponentialBuilder,
    max_delay: Duration,
    failing: HashMap<K, <ExponentialBuilder as BackoffBuilder>::Backoff>,
}

impl<K: Eq + Hash> Backoffs<K> {
    pub(super) fn new(config: &Backoff) -> Self {
        Self {
            builder: config.builder(),
            max_delay: config.cap(),
            failing: HashMap::new(),
        }
    }

    /// The delay before retrying `key` after one more error.
    pub(super) fn next_delay(&mut self, key: K) -> Duration {
        let builder = self.builder;
        self.failing
            .entry(key)
            .or_insert_with(|| builder.build())
            .next()
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// Forgets the errors of `key`: its next error starts from the minimum.
    pub(super) fn reset(&mut self, key: &K) {
        self.failing.remove(key);
    }
}

/// The delays of a stream that fails, reconnects and may fail again, reset only
/// after a quiet period.
///
/// A stream that reconnects at once but breaks again soon after (dockerd answers
/// the listing, then drops the events stream) must not start from the minimum each
/// time: resetting on every successful reconnect made such a stream retry about
/// every 0.5 s, and name every record again each time. Here the delays grow with
/// each error and start over only when `reset_after` has passed since the last one,
/// as kube-runtime's `ResetTimerBackoff` does.
#[derive(Debug)]
pub struct ResetTimerBackoff {
    config: Backoff,
    reset_after: Duration,
    delays: ExponentialBackoff,
    last_error: Option<Instant>,
}

impl ResetTimerBackoff {
    /// How long without an error starts the delays over, by default (kube-runtime's
    /// watcher waits as long).
    pub const RESET_AFTER: Duration = Duration::from_secs(120);

    /// Delays as `config` grows them, started over after `reset_after` without an error.
    #[must_use]
    pub fn new(config: Backoff, reset_after: Duration) -> Self {
        Self {
            delays: config.builder().build(),
            config,
            reset_after,
            last_error: None,
        }
    }

    /// How long to wait after an error that happens now.
    pub fn next_delay(&mut self) -> Duration {
        let now = Instant::now();
        if self
            .last_error
            .is_some_and(|last| now.duration_since(last) >= self.reset_after)
        {
            self.delays = self.config.builder().build();
        }
        self.last_error = Some(now);
        let cap = self.config.cap();
        self.delays.next().unwrap_or(cap).min(cap)
    }
}

impl Default for ResetTimerBackoff {
    /// [`Backoff::RECONNECT`], started over after [`ResetTimerBackoff::RESET_AFTER`].
    fn default() -> Self {
        Self::new(Backoff::RECONNECT, Self::RESET_AFTER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(delays: &[Duration]) -> Vec<f32> {
        delays.iter().map(Duration::as_secs_f32).collect()
    }

    #[test]
    fn delay_doubles_to_the_cap_and_reset_starts_over() {
        let mut backoffs = Backoffs::new(&Backoff {
            max_delay: Duration::from_secs(10),
            jitter: false,
            ..Backoff::default()
        });
        let delays: Vec<_> = (0..6).map(|_| backoffs.next_delay("a")).collect();
        assert_eq!(secs(&delays), [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]);
        assert_eq!(backoffs.next_delay("b"), Duration::from_secs(1));
        backoffs.reset(&"a");
        assert_eq!(backoffs.next_delay("a"), Duration::from_secs(1));
    }

    #[test]
    fn jittered_delays_stay_within_bounds_and_differ() {
        let config = Backoff::default();
        let mut backoffs = Backoffs::new(&config);
        for key in 0..50 {
            let delays: Vec<_> = (0..20).map(|_| backoffs.next_delay(key)).collect();
            assert!(delays[0] >= config.min_delay);
            assert!(delays[0] < config.min_delay * 2);
            assert!(delays.iter().all(|d| *d <= config.max_delay));
            assert!(delays[19] >= config.max_delay / 2);
        }
        let firsts: std::collections::HashSet<_> = (100..110)
            .map(|key| backoffs.next_delay(key).as_nanos())
            .collect();
        assert!(firsts.len() > 1, "jitter spreads first retries");
    }

    #[test]
    fn endless_delays_are_bounded_before_backon_multiplies_them() {
        for jitter in [false, true] {
            let mut backoffs = Backoffs::new(&Backoff {
                min_delay: Duration::MAX,
                max_delay: Duration::MAX,
                jitter,
                ..Backoff::default()
            });
            for _ in 0..5 {
                assert!(backoffs.next_delay("a") <= super::super::MAX_DELAY);
            }
        }
    }

    fn exact(config: Backoff) -> Backoff {
        Backoff {
            jitter: false,
            ..config
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reset_timer_backoff_keeps_growing_while_errors_come_close_together() {
        let mut backoff =
            ResetTimerBackoff::new(exact(Backoff::RECONNECT), Duration::from_secs(120));
        let mut delays = Vec::new();
        for _ in 0..8 {
            // A reconnect that works for a moment and breaks again: no reset.
            let delay = backoff.next_delay();
            delays.push(delay);
            tokio::time::sleep(delay + Duration::from_secs(5)).await;
        }
        assert_eq!(secs(&delays), [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0]);
    }

    #[tokio::test(start_paused = true)]
    async fn reset_timer_backoff_starts_over_only_after_a_quiet_period() {
        let mut backoff =
            ResetTimerBackoff::new(exact(Backoff::RECONNECT), Duration::from_secs(120));
        for _ in 0..4 {
            backoff.next_delay();
        }
        tokio::time::sleep(Duration::from_secs(119)).await;
        let after_119 = backoff.next_delay();
        tokio::time::sleep(Duration::from_secs(120)).await;
        let after_120 = [backoff.next_delay(), backoff.next_delay()];
        assert_eq!(secs(&[after_119]), [12.8], "119 s is not quiet enough");
        assert_eq!(secs(&after_120), [0.8, 1.6]);
    }

    #[tokio::test(start_paused = true)]
    async fn reset_timer_backoff_jitters_within_its_cap() {
        let mut backoff = ResetTimerBackoff::default();
        let delays: Vec<_> = (0..20).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(800) && delays[0] < Duration::from_millis(1600));
        assert!(
            delays.iter().all(|d| *d <= Duration::from_secs(30)),
            "{delays:?}"
        );
        assert!(delays[19] >= Duration::from_secs(15), "{delays:?}");
    }

    #[test]
    fn a_fresh_sequence_of_delays_is_capped() {
        let delays: Vec<_> = exact(Backoff::RECONNECT).delays().take(8).collect();
        assert_eq!(secs(&delays), [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0]);
    }
}
