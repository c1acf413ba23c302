//! The work queue: delays and deduplicates keys until they are due.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::poll_fn;
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::time::{DelayQueue, delay_queue};

/// The longest delay the runtime waits for anything: 180 days.
///
/// tokio-util's `DelayQueue` keeps its deadlines in a timer wheel of six levels of
/// 64 slots of 1 ms, so it reaches at most 2^36 ms (about 2.2 years) ahead and
/// panics with "invalid deadline" beyond: `run --resync 20000h` (2.3 years) killed
/// the controller at its first requeue, and `Instant::now() + Duration::MAX`
/// overflows outright. Six months is far inside the wheel, and longer than any wait
/// a controller means: a key that far out is in effect waiting for a change.
pub const MAX_DELAY: Duration = Duration::from_secs(180 * 24 * 3600);

/// `delay`, or [`MAX_DELAY`] when it is longer.
///
/// Every delay the runtime waits goes through here: requeues and retries (in the
/// queue), the resync interval and the backoff caps.
#[must_use]
pub fn clamp_delay(delay: Duration) -> Duration {
    delay.min(MAX_DELAY)
}

/// Keys waiting for their deadline, and keys already due.
///
/// A key is in at most one of the two places, so however often it is
/// scheduled it runs once; when it is scheduled again before it is due, the
/// earlier deadline wins.
#[derive(Debug)]
pub(super) struct Queue<K> {
    delays: DelayQueue<K>,
    deadlines: HashMap<K, (delay_queue::Key, Instant)>,
    /// Due keys in the order they became due, waiting for a free slot or for
    /// their own previous reconcile to finish.
    due: VecDeque<K>,
    due_set: HashSet<K>,
}

impl<K: Clone + Eq + Hash> Queue<K> {
    pub(super) fn new() -> Self {
        Self {
            delays: DelayQueue::new(),
            deadlines: HashMap::new(),
            due: VecDeque::new(),
            due_set: HashSet::new(),
        }
    }

    /// Asks for `key` to run after `delay` (at most [`MAX_DELAY`]), or earlier if it
    /// already is scheduled so.
    pub(super) fn schedule(&mut self, key: K, delay: Duration) {
        if self.due_set.contains(&key) {
            return;
        }
        let at = Instant::now() + clamp_delay(delay);
        match self.deadlines.entry(key) {
            Entry::Occupied(mut entry) => {
                let (slot, deadline) = entry.get_mut();
                if at < *deadline {
                    self.delays.reset_at(slot, at);
                    *deadline = at;
                }
            }
            Entry::Vacant(entry) => {
                let slot = self.delays.insert_at(entry.key().clone(), at);
                entry.insert((slot, at));
            }
        }
    }

    /// Waits until the next scheduled key is due and moves it to the due list.
    ///
    /// Pending forever when nothing is scheduled, so it can sit in a `select!`.
    pub(super) async fn wait_due(&mut self) {
        if self.delays.is_empty() {
            return std::future::pending().await;
        }
        if let Some(expired) = poll_fn(|cx| self.delays.poll_expired(cx)).await {
            let key = expired.into_inner();
            self.deadlines.remove(&key);
            self.due_set.insert(key.clone());
            self.due.push_back(key);
        }
    }

    /// Takes the first due key that `runnable` accepts.
    pub(super) fn take_due(&mut self, runnable: impl Fn(&K) -> bool) -> Option<K> {
        let index = self.due.iter().position(runnable)?;
        let key = self.due.remove(index)?;
        self.due_set.remove(&key);
        Some(key)
    }

    /// How many keys are due and not yet started.
    pub(super) fn due_len(&self) -> usize {
        self.due.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    async fn due_after(queue: &mut Queue<&'static str>, wait: Duration) -> Vec<&'static str> {
        let until = Instant::now() + wait;
        while tokio::time::timeout_at(until, queue.wait_due())
            .await
            .is_ok()
        {}
        let mut due: Vec<_> = std::iter::from_fn(|| queue.take_due(|_| true)).collect();
        due.sort_unstable();
        due
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_scheduled_many_times_comes_out_once() {
        let mut queue = Queue::new();
        for _ in 0..5 {
            queue.schedule("a", SEC);
        }
        queue.schedule("b", SEC);
        assert_eq!(due_after(&mut queue, 2 * SEC).await, ["a", "b"]);
        assert!(due_after(&mut queue, 10 * SEC).await.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_earlier_deadline_wins() {
        let mut queue = Queue::new();
        queue.schedule("a", 60 * SEC);
        queue.schedule("a", SEC);
        queue.schedule("a", 30 * SEC);
        assert_eq!(due_after(&mut queue, 2 * SEC).await, ["a"]);
        assert!(due_after(&mut queue, 60 * SEC).await.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_due_key_is_not_scheduled_again_and_can_be_skipped() {
        let mut queue = Queue::new();
        queue.schedule("a", Duration::ZERO);
        queue.schedule("b", Duration::ZERO);
        while queue.due_len() < 2 {
            queue.wait_due().await;
        }
        queue.schedule("a", SEC);
        assert_eq!(queue.take_due(|key| *key != "a"), Some("b"));
        assert_eq!(queue.due_len(), 1);
        assert_eq!(due_after(&mut queue, 2 * SEC).await, ["a"]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_endless_delay_is_clamped_instead_of_panicking() {
        let mut queue = Queue::new();
        // Both used to panic: the first overflows `Instant`, the second is past the
        // reach of the timer wheel (`run --resync 20000h`).
        queue.schedule("a", Duration::MAX);
        queue.schedule("b", Duration::from_secs(20_000 * 3600));
        assert!(due_after(&mut queue, MAX_DELAY - SEC).await.is_empty());
        assert_eq!(due_after(&mut queue, 2 * SEC).await, ["a", "b"]);
    }

    #[test]
    fn clamp_keeps_short_delays_and_bounds_long_ones() {
        assert_eq!(clamp_delay(SEC), SEC);
        assert_eq!(clamp_delay(MAX_DELAY), MAX_DELAY);
        assert_eq!(clamp_delay(Duration::MAX), MAX_DELAY);
    }
}
