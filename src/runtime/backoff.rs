//! Per-key exponential backoff with jitter, reset by a success.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

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
    fn builder(&self) -> ExponentialBuilder {
        // backon's jitter adds up to one more delay on top; halving its cap
        // keeps the jittered delay under `max_delay` while still spreading
        // keys that have all reached the cap.
        let (cap, builder) = if self.jitter {
            (
                self.max_delay / 2,
                ExponentialBuilder::default().with_jitter(),
            )
        } else {
            (self.max_delay, ExponentialBuilder::default())
        };
        builder
            .with_min_delay(self.min_delay)
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
            max_delay: config.max_delay,
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
}
