//! Runs a reconciler over a work queue fed by trigger streams, until shutdown.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, BoxStream, SelectAll};
use futures::{FutureExt, Stream, StreamExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tracing::Instrument;

use super::backoff::Backoffs;
use super::queue::Queue;
use super::{Action, Backoff, Key, Phase, Reconciler, Shutdown};

/// How a [`Controller`] runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// At most this many reconciles run at once (at least one).
    pub concurrency: usize,
    /// A trigger runs its key this long after it arrives, so a burst of
    /// events about one key (a stack deploy emits one per object) becomes one
    /// reconcile.
    pub debounce: Duration,
    /// Retry delays after errors.
    pub backoff: Backoff,
    /// Set to the number of keys that are due but not started, waiting for a
    /// free slot or for their own previous reconcile to finish.
    pub queue_depth: Option<Gauge>,
    /// Counts every key scheduled: by a trigger, a requeue or a retry.
    pub queue_adds: Option<Counter>,
    /// Counts the keys scheduled again after a failed (or panicked) reconcile.
    pub queue_retries: Option<Counter>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            concurrency: 4,
            debounce: Duration::from_millis(200),
            backoff: Backoff::default(),
            queue_depth: None,
            queue_adds: None,
            queue_retries: None,
        }
    }
}

/// A reconciler, its triggers and its config, ready to [`run`](Self::run).
///
/// ```ignore
/// Controller::new(reconciler, Config::default())
///     .trigger(watch_events)
///     .trigger(docker_events)
///     .trigger(resync(Duration::from_secs(300), list_all_keys))
///     .run(Shutdown::on_signals()?)
///     .await;
/// ```
pub struct Controller<K, R> {
    reconciler: Arc<R>,
    config: Config,
    /// Keys with the instant each was asked for, and the stream's own debounce.
    triggers: Vec<BoxStream<'static, (K, Instant, Option<Duration>)>>,
}

impl<K: Key, R: Reconciler<K>> Controller<K, R> {
    /// A controller with no triggers yet.
    #[must_use]
    pub fn new(reconciler: Arc<R>, config: Config) -> Self {
        Self {
            reconciler,
            config,
            triggers: Vec::new(),
        }
    }

    /// Adds a stream of keys to reconcile, each asked for when it arrives. A
    /// stream that ends is dropped; the others, and the requeues, go on.
    #[must_use]
    pub fn trigger(self, keys: impl Stream<Item = K> + Send + 'static) -> Self {
        self.stamped_trigger(keys.map(|key| (key, Instant::now())))
    }

    /// [`Controller::trigger`], with its own debounce instead of
    /// [`Config::debounce`]: a source whose changes arrive whole (an etcd
    /// watch answers one transaction at once) needs none.
    #[must_use]
    pub fn trigger_debounced(
        mut self,
        keys: impl Stream<Item = K> + Send + 'static,
        debounce: Duration,
    ) -> Self {
        let keys = keys.map(move |key| (key, Instant::now(), Some(debounce)));
        self.triggers.push(keys.boxed());
        self
    }

    /// Adds a stream of keys, each with the instant it was asked for (see
    /// [`triggered_at`]): a resync names its keys as of the listing that found
    /// them, so a view taken by that listing is fresh enough for them.
    #[must_use]
    pub fn stamped_trigger(
        mut self,
        keys: impl Stream<Item = (K, Instant)> + Send + 'static,
    ) -> Self {
        let keys = keys.map(|(key, asked)| (key, asked, None));
        self.triggers.push(keys.boxed());
        self
    }

    /// Runs until `shutdown`: returns once in-flight reconciles have finished
    /// (first phase) or been cancelled (second phase).
    pub async fn run(self, shutdown: Shutdown) {
        let mut triggers: SelectAll<_> = stream::select_all(self.triggers);
        let mut triggers_open = !triggers.is_empty();
        let mut phases = shutdown.subscribe();
        let mut runner = Runner::new(self.reconciler, self.config);
        loop {
            let phase = *phases.borrow_and_update();
            match phase {
                Phase::Running => runner.start_due(),
                Phase::Draining if runner.tasks.is_empty() => break,
                Phase::Draining => {}
                Phase::Aborting => {
                    runner.abort().await;
                    break;
                }
            }
            runner.report_depth();
            tokio::select! {
                // Shutdown is looked at first, so no work starts after it.
                biased;
                // `shutdown` holds the sender, so this never errs while we run.
                _ = phases.changed() => {
                    tracing::info!(phase = ?*phases.borrow(), running = runner.tasks.len(), "controller shutting down");
                }
                Some(joined) = runner.tasks.join_next() => runner.finish(joined),
                () = runner.queue.wait_due(), if phase == Phase::Running => {}
                trigger = triggers.next(), if triggers_open && phase == Phase::Running => match trigger {
                    Some((key, asked, debounce)) => {
                        let debounce = debounce.unwrap_or(runner.config.debounce);
                        runner.schedule(key, debounce, asked);
                    }
                    None => {
                        tracing::warn!("every trigger stream has ended; only requeues remain");
                        triggers_open = false;
                    }
                },
            }
        }
        runner.report_depth();
    }
}

/// Reconciles each of `keys` once (duplicates once), at most `concurrency`
/// at a time, and returns each key with its result in the order given; each
/// is asked for now.
pub async fn run_once<K: Key, R: Reconciler<K>>(
    keys: impl IntoIterator<Item = K>,
    reconciler: Arc<R>,
    concurrency: usize,
) -> Vec<(K, Result<Action, R::Error>)> {
    run_once_since(keys, reconciler, concurrency, Instant::now()).await
}

/// [`run_once`], with every key asked for at `asked` ([`triggered_at`]): a
/// pass that listed the world at `asked` may use that listing.
pub async fn run_once_since<K: Key, R: Reconciler<K>>(
    keys: impl IntoIterator<Item = K>,
    reconciler: Arc<R>,
    concurrency: usize,
    asked: Instant,
) -> Vec<(K, Result<Action, R::Error>)> {
    let mut seen = HashSet::new();
    let keys: Vec<K> = keys
        .into_iter()
        .filter(|key| seen.insert(key.clone()))
        .collect();
    stream::iter(keys)
        .map(|key| {
            let reconcile = reconcile_in_span(&reconciler, key.clone(), asked);
            async move { (key, reconcile.await) }
        })
        .buffered(concurrency.max(1))
        .collect()
        .await
}

tokio::task_local! {
    /// The instant the running reconcile was last asked for.
    static ASKED: Instant;
}

/// The latest instant at which the running reconcile was asked for: by a
/// trigger (when it arrived, or as of the listing that named the key), or by
/// a requeue or retry (its deadline). What the reconcile observes must be at
/// least this fresh; a view taken before it may miss what the trigger is
/// about. `None` outside a reconcile run by this runtime.
#[must_use]
pub fn triggered_at() -> Option<Instant> {
    ASKED.try_with(|asked| *asked).ok()
}

/// One reconcile of `key` in its own span, its outcome logged inside it,
/// with [`triggered_at`] saying `asked`.
fn reconcile_in_span<K: Key, R: Reconciler<K>>(
    reconciler: &Arc<R>,
    key: K,
    asked: Instant,
) -> impl Future<Output = Result<Action, R::Error>> + Send + 'static {
    let span = tracing::info_span!("reconcile", key = %key);
    let reconcile = ASKED.scope(asked, Arc::clone(reconciler).reconcile(key));
    async move {
        let started = Instant::now();
        let result = reconcile.await;
        let elapsed = started.elapsed();
        match &result {
            Ok(action) => tracing::debug!(?elapsed, ?action, "reconciled"),
            Err(error) => tracing::warn!(?elapsed, %error, "reconcile failed"),
        }
        result
    }
    .instrument(span)
}

/// A finished reconcile; `None` when it panicked.
type Finished<K, E> = (K, Option<Result<Action, E>>);

/// The state of a running controller: the queue, what runs, what failed.
struct Runner<K: Key, R: Reconciler<K>> {
    reconciler: Arc<R>,
    config: Config,
    queue: Queue<K>,
    backoffs: Backoffs<K>,
    running: HashSet<K>,
    /// When each scheduled key was last asked for; taken when it starts.
    asked: HashMap<K, Instant>,
    tasks: JoinSet<Finished<K, R::Error>>,
}

impl<K: Key, R: Reconciler<K>> Runner<K, R> {
    fn new(reconciler: Arc<R>, config: Config) -> Self {
        Self {
            reconciler,
            backoffs: Backoffs::new(&config.backoff),
            config,
            queue: Queue::new(),
            running: HashSet::new(),
            asked: HashMap::new(),
            tasks: JoinSet::new(),
        }
    }

    /// Starts due keys that are not running while slots are free.
    fn start_due(&mut self) {
        while self.tasks.len() < self.config.concurrency.max(1) {
            let Some(key) = self.queue.take_due(|key| !self.running.contains(key)) else {
                break;
            };
            self.running.insert(key.clone());
            let asked = self.asked.remove(&key).unwrap_or_else(Instant::now);
            let reconcile = reconcile_in_span(&self.reconciler, key.clone(), asked);
            // A panicking reconcile must not lose its key: it is retried
            // with backoff like an error.
            self.tasks.spawn(async move {
                let result = AssertUnwindSafe(reconcile).catch_unwind().await.ok();
                (key, result)
            });
        }
    }

    /// Schedules the next run of a key whose reconcile has ended.
    fn finish(&mut self, joined: Result<Finished<K, R::Error>, JoinError>) {
        let Ok((key, result)) = joined else {
            // Tasks are only cancelled by `abort`, which drains them itself.
            return;
        };
        self.running.remove(&key);
        match result {
            Some(Ok(action)) => {
                self.backoffs.reset(&key);
                if let Some(delay) = action.requeue_after() {
                    self.schedule(key, delay, Instant::now() + delay);
                }
            }
            Some(Err(error)) => {
                let delay = self
                    .reconciler
                    .error_policy(&key, &error)
                    .unwrap_or_else(|| self.backoffs.next_delay(key.clone()));
                tracing::debug!(key = %key, ?delay, "retry scheduled");
                self.retry(key, delay);
            }
            None => {
                let delay = self.backoffs.next_delay(key.clone());
                tracing::error!(key = %key, ?delay, "reconcile panicked; retry scheduled");
                self.retry(key, delay);
            }
        }
    }

    /// Schedules `key` after `delay`, asked for at `asked`, counting the add.
    ///
    /// A key asked for several times before it starts keeps the latest ask:
    /// its one reconcile must see what the last trigger is about.
    fn schedule(&mut self, key: K, delay: Duration, asked: Instant) {
        if let Some(adds) = &self.config.queue_adds {
            adds.inc();
        }
        let latest = self.asked.entry(key.clone()).or_insert(asked);
        *latest = (*latest).max(asked);
        self.queue.schedule(key, delay);
    }

    /// Schedules `key` again after a failure, counting the retry.
    fn retry(&mut self, key: K, delay: Duration) {
        if let Some(retries) = &self.config.queue_retries {
            retries.inc();
        }
        self.schedule(key, delay, Instant::now() + delay);
    }

    /// Cancels every running reconcile and waits until they are gone.
    async fn abort(&mut self) {
        tracing::warn!(running = self.tasks.len(), "aborting in-flight reconciles");
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        self.running.clear();
    }

    fn report_depth(&self) {
        if let Some(gauge) = &self.config.queue_depth {
            gauge.set(i64::try_from(self.queue.due_len()).unwrap_or(i64::MAX));
        }
    }
}

#[cfg(test)]
mod tests;
