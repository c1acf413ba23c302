//! A trigger stream that reopens its source, with backoff, each time it ends.

use futures::{Stream, StreamExt, stream};

use super::ResetTimerBackoff;

/// Whether a session is the first one or a reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// The first session: nothing was missed before it.
    First,
    /// A session after one that ended or failed to open: whatever the source said
    /// meanwhile was missed, so the opener should name every key again.
    Reconnect,
}

/// The items of one session after another: `open` starts a session (`None` when
/// it could not), and when a session ends, or fails to open, the next one opens
/// after a delay of `backoff`.
///
/// The delay grows with every end or failure and starts over only once
/// `backoff`'s quiet period has passed since the last one
/// ([`ResetTimerBackoff`]): a source that opens fine but breaks again at once
/// (dockerd answering its listings but dropping its events stream) is reopened
/// at 0.8 s, 1.6 s, 3.2 s … up to 30 s apart, not every half second.
pub fn reconnecting<T, F, Fut, S>(
    backoff: ResetTimerBackoff,
    open: F,
) -> impl Stream<Item = T> + Send + 'static
where
    T: Send + 'static,
    F: FnMut(Session) -> Fut + Send + 'static,
    Fut: Future<Output = Option<S>> + Send,
    S: Stream<Item = T> + Send + 'static,
{
    let state = (open, backoff, Session::First);
    stream::unfold(state, |(mut open, mut backoff, session)| async move {
        if session == Session::Reconnect {
            let delay = backoff.next_delay();
            tracing::debug!(?delay, "reopening a trigger stream");
            tokio::time::sleep(delay).await;
        }
        // A session that could not open is an empty one: the next is a reconnect.
        let items = open(session).await.map(StreamExt::boxed);
        let items = items.unwrap_or_else(|| stream::empty().boxed());
        Some((items, (open, backoff, Session::Reconnect)))
    })
    .flatten()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::runtime::Backoff;

    fn exact() -> ResetTimerBackoff {
        let config = Backoff {
            jitter: false,
            ..Backoff::RECONNECT
        };
        ResetTimerBackoff::new(config, ResetTimerBackoff::RESET_AFTER)
    }

    /// Each session asked for, and when, in virtual seconds since the start.
    type Opened = Arc<Mutex<Vec<(Session, f32)>>>;

    /// Opens sessions that each yield their number after `lifetime`, then end;
    /// the sessions numbered in `failing` do not open.
    fn sessions(
        lifetime: Duration,
        failing: &'static [usize],
    ) -> (Opened, impl Stream<Item = usize> + Send + 'static) {
        let opened = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&opened);
        let start = Instant::now();
        let stream = reconnecting(exact(), move |session| {
            let log = Arc::clone(&log);
            async move {
                let number = {
                    let mut log = log.lock().unwrap();
                    log.push((session, start.elapsed().as_secs_f32()));
                    log.len() - 1
                };
                (!failing.contains(&number)).then(|| {
                    stream::once(async move {
                        tokio::time::sleep(lifetime).await;
                        number
                    })
                })
            }
        });
        (opened, stream)
    }

    fn rounded(opened: &Mutex<Vec<(Session, f32)>>) -> Vec<(Session, f32)> {
        let opened = opened.lock().unwrap();
        opened
            .iter()
            .map(|(session, at)| (*session, (at * 10.0).round() / 10.0))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_source_that_keeps_breaking_is_reopened_ever_more_slowly() {
        // Each session works for 0.1 s and ends: a reset on every successful open
        // would reopen it every 0.9 s forever.
        let (opened, stream) = sessions(Duration::from_millis(100), &[]);
        let got: Vec<_> = stream.take(6).collect().await;
        assert_eq!(got, [0, 1, 2, 3, 4, 5]);
        let at: Vec<_> = rounded(&opened).into_iter().map(|(_, at)| at).collect();
        // Each gap is the session's 0.1 s plus a delay that doubles: 0.8, 1.6, 3.2, 6.4, 12.8.
        assert_eq!(at, [0.0, 0.9, 2.6, 5.9, 12.4, 25.3]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_open_is_retried_with_the_next_delay_and_asks_for_a_reconnect() {
        let (opened, stream) = sessions(Duration::ZERO, &[1, 2]);
        let got: Vec<_> = stream.take(2).collect().await;
        assert_eq!(got, [0, 3]);
        assert_eq!(
            rounded(&opened),
            [
                (Session::First, 0.0),
                (Session::Reconnect, 0.8),
                (Session::Reconnect, 2.4),
                (Session::Reconnect, 5.6),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_source_that_stayed_up_for_the_quiet_period_starts_over_from_the_shortest_delay() {
        let (opened, stream) = sessions(Duration::from_secs(200), &[]);
        let _: Vec<_> = stream.take(4).collect().await;
        let at: Vec<_> = rounded(&opened).into_iter().map(|(_, at)| at).collect();
        // The first end is the first error (0.8 s); every later one comes 200 s
        // after the one before, past the 120 s quiet period, so it starts over.
        assert_eq!(at, [0.0, 200.8, 401.6, 602.4]);
    }
}
