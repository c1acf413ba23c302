//! A trigger stream that names every key again at a fixed interval.

use std::fmt::Display;
use std::time::Duration;

use futures::{Stream, StreamExt, stream};

use super::Backoff;
use super::queue::clamp_delay;

/// The shortest interval: tokio's timers refuse a period of zero.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// Lists every key now and then every `interval`, and yields each one.
///
/// This is what makes the controller level-triggered in practice: whatever
/// events were missed, every record is looked at again within one interval.
///
/// A failed listing is retried with backoff ([`Backoff::RECONNECT`], never
/// slower than `interval`) until one succeeds; only then does the interval
/// start again. Waiting the whole interval instead meant that when the first
/// listing failed (etcd refused an answer too large), a record applied
/// meanwhile was not looked at for the whole `--resync`.
///
/// `interval` is bounded to [`MAX_DELAY`](super::MAX_DELAY) (about six months),
/// and to at least 1 ms.
pub fn resync<K, E, F, Fut>(interval: Duration, list: F) -> impl Stream<Item = K> + Send
where
    K: Send + 'static,
    E: Display,
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<Vec<K>, E>> + Send,
{
    let interval = clamp_delay(interval).max(MIN_INTERVAL);
    stream::unfold((list, true), move |(mut list, first)| async move {
        if !first {
            // Measured from the end of the last listing, so a slow listing is
            // never followed by a burst of catch-up listings.
            tokio::time::sleep(interval).await;
        }
        let keys = list_until_it_works(&mut list, interval).await;
        Some((stream::iter(keys), (list, false)))
    })
    .flatten()
}

/// Calls `list` until it succeeds, waiting a growing delay (at most `cap`) after each failure.
async fn list_until_it_works<K, E, F, Fut>(list: &mut F, cap: Duration) -> Vec<K>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Vec<K>, E>>,
{
    let mut delays = Backoff::RECONNECT.delays();
    loop {
        let delay = match list().await {
            Ok(keys) => return keys,
            Err(error) => {
                let delay = delays.next().unwrap_or(cap).min(cap);
                tracing::warn!(%error, ?delay, "resync could not list keys; retrying");
                delay
            }
        };
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::time::Instant;

    use super::*;
    use crate::runtime::MAX_DELAY;

    type Listed = std::future::Ready<Result<Vec<usize>, &'static str>>;

    /// A listing whose calls number `failing` fail; the others name `call * 10`.
    /// Also returns how many calls it had.
    fn listing(
        failing: &'static [usize],
    ) -> (Arc<AtomicUsize>, impl FnMut() -> Listed + Send + 'static) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let list = move || {
            let call = counter.fetch_add(1, Ordering::SeqCst);
            std::future::ready(if failing.contains(&call) {
                Err("etcd unavailable")
            } else {
                Ok(vec![call * 10])
            })
        };
        (calls, list)
    }

    /// The first `n` keys with the virtual time each came at.
    async fn first(keys: impl Stream<Item = usize>, n: usize) -> Vec<(usize, Duration)> {
        let start = Instant::now();
        keys.map(|key| (key, start.elapsed()))
            .take(n)
            .collect()
            .await
    }

    #[tokio::test(start_paused = true)]
    async fn lists_at_once_then_every_interval() {
        let (calls, list) = listing(&[]);
        let got = first(resync(Duration::from_secs(60), list), 3).await;
        let at: Vec<_> = got.iter().map(|(key, at)| (*key, at.as_secs())).collect();
        assert_eq!(at, [(0, 0), (10, 60), (20, 120)]);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_first_listing_is_retried_with_backoff_not_after_the_interval() {
        let (calls, list) = listing(&[0, 1, 2]);
        let got = first(resync(Duration::from_secs(300), list), 2).await;
        // Three failures wait about 0.8 + 1.6 + 3.2 s (each up to twice that with
        // jitter): the keys come within seconds, not after the 300 s interval.
        let (key, at) = got[0];
        assert_eq!(key, 30);
        assert!(
            at >= Duration::from_millis(5600) && at < Duration::from_millis(11_200),
            "{at:?}"
        );
        // Back to the interval once a listing worked.
        assert_eq!(got[1], (40, at + Duration::from_secs(300)));
        assert_eq!(calls.load(Ordering::SeqCst), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_never_slower_than_the_interval() {
        let (_, list) = listing(&[0, 1, 2, 3, 4, 5, 6, 7]);
        let got = first(resync(Duration::from_secs(1), list), 1).await;
        assert_eq!(got[0].0, 80);
        assert!(got[0].1 <= Duration::from_secs(8), "{:?}", got[0].1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_endless_interval_is_clamped_instead_of_panicking() {
        for interval in [Duration::from_secs(20_000 * 3600), Duration::MAX] {
            let (_, list) = listing(&[]);
            let got = first(resync(interval, list), 2).await;
            assert_eq!(got, [(0, Duration::ZERO), (10, MAX_DELAY)]);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_interval_does_not_panic() {
        let (_, list) = listing(&[]);
        let got = first(resync(Duration::ZERO, list), 3).await;
        assert_eq!(got[2], (20, 2 * MIN_INTERVAL));
    }
}
