//! A trigger stream that names every key again at a fixed interval.

use std::fmt::Display;
use std::time::Duration;

use futures::{Stream, StreamExt, stream};
use tokio::time::MissedTickBehavior;

/// Lists every key now and then every `interval`, and yields each one.
///
/// This is what makes the controller level-triggered in practice: whatever
/// events were missed, every record is looked at again within one interval.
/// A failed listing is logged and skipped; the next tick tries again.
pub fn resync<K, E, F, Fut>(interval: Duration, list: F) -> impl Stream<Item = K> + Send
where
    K: Send + 'static,
    E: Display,
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<Vec<K>, E>> + Send,
{
    let mut ticks = tokio::time::interval(interval);
    // A slow listing must not be followed by a burst of catch-up ticks.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    stream::unfold((ticks, list), |(mut ticks, mut list)| async move {
        ticks.tick().await;
        let keys = match list().await {
            Ok(keys) => keys,
            Err(error) => {
                tracing::warn!(%error, "resync could not list keys");
                Vec::new()
            }
        };
        Some((stream::iter(keys), (ticks, list)))
    })
    .flatten()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn lists_at_once_then_every_interval_and_survives_a_failed_listing() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let start = tokio::time::Instant::now();
        let keys = resync(Duration::from_secs(60), move || {
            let call = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if call == 1 {
                    Err("etcd unavailable")
                } else {
                    Ok(vec![call * 10, call * 10 + 1])
                }
            }
        });
        let got: Vec<_> = keys
            .map(|key| (key, start.elapsed().as_secs()))
            .take(4)
            .collect()
            .await;
        assert_eq!(got, [(0, 0), (1, 0), (20, 120), (21, 120)]);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
