//! The tasks behind a [`super::Notifier`]: one folds transitions, one per
//! receiver POSTs the messages, each behind a bounded queue.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::fold::{Folder, Message};
use super::message::{Format, render};
use super::{NotifyConfig, QUEUE, SEND_TIMEOUT, Transition, count};
use crate::metrics::NotifyLabels;

/// Retries of one POST after the first attempt, 0.5 s doubling to 4 s.
const RETRIES: usize = 3;

/// Starts the fold task and the receivers' tasks.
pub(super) fn spawn(
    config: NotifyConfig,
    transitions: mpsc::Receiver<Transition>,
    counts: Family<NotifyLabels, Counter>,
) {
    let client = match reqwest::Client::builder().timeout(SEND_TIMEOUT).build() {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(%err, "cannot build the notification client; notifications are off");
            return;
        }
    };
    let receivers: Vec<mpsc::Sender<Message>> = config
        .urls
        .iter()
        .map(|url| {
            let (tx, rx) = mpsc::channel(QUEUE);
            let receiver = Receiver {
                url: url.clone(),
                client: client.clone(),
                format: config.format,
                prefix: config.prefix.clone(),
                counts: counts.clone(),
            };
            tokio::spawn(receiver.run(rx));
            tx
        })
        .collect();
    tokio::spawn(fold(
        transitions,
        Folder::new(config.window),
        receivers,
        counts,
    ));
}

/// Folds transitions, handing each message to every receiver's queue.
async fn fold(
    mut transitions: mpsc::Receiver<Transition>,
    mut folder: Folder,
    receivers: Vec<mpsc::Sender<Message>>,
    counts: Family<NotifyLabels, Counter>,
) {
    let hand_over = |message: Message| {
        for receiver in &receivers {
            if receiver.try_send(message.clone()).is_err() {
                count(&counts, "dropped");
            }
        }
    };
    loop {
        // With nothing waiting, sleep until the next transition.
        let due = folder.next_due().map_or_else(
            || Instant::now() + Duration::from_secs(3600),
            Instant::from_std,
        );
        tokio::select! {
            next = transitions.recv() => match next {
                Some(t) => {
                    if let Some(message) = folder.offer(t, std::time::Instant::now()) {
                        hand_over(message);
                    }
                }
                None => return,
            },
            () = tokio::time::sleep_until(due) => {
                folder.due(std::time::Instant::now()).into_iter().for_each(&hand_over);
            }
        }
    }
}

/// One receiver: its URL is a secret of sorts (a Slack webhook's path is
/// its credential), so only its host is ever logged.
struct Receiver {
    url: String,
    client: reqwest::Client,
    format: Format,
    prefix: String,
    counts: Family<NotifyLabels, Counter>,
}

impl Receiver {
    fn host(&self) -> String {
        reqwest::Url::parse(&self.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| "<unparsable url>".into())
    }

    async fn run(self, mut messages: mpsc::Receiver<Message>) {
        while let Some(message) = messages.recv().await {
            let body = render(self.format, &self.prefix, &message);
            let post = || async {
                self.client
                    .post(&self.url)
                    .json(&body)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map(drop)
            };
            let backoff = ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(500))
                .with_max_delay(Duration::from_secs(4))
                .with_max_times(RETRIES);
            match post.retry(backoff).await {
                Ok(()) => count(&self.counts, "sent"),
                Err(err) => {
                    count(&self.counts, "failed");
                    // reqwest's errors quote the URL: without it.
                    let err = err.without_url();
                    tracing::warn!(receiver = %self.host(), %err, subject = %message.transition.subject,
                        "notification not delivered");
                }
            }
        }
    }
}
