//! Runs a reconciler over a work queue fed by trigger streams, until shutdown.

use std::collections::HashSet;
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
    triggers: Vec<BoxStream<'static, K>>,
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

    /// Adds a stream of keys to reconcile. A stream that ends is dropped; the
    /// others, and the requeues, go on.
    #[must_use]
    pub fn trigger(mut self, keys: impl Stream<Item = K> + Send + 'static) -> Self {
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
                    Some(key) => runner.schedule(key, runner.config.debounce),
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
/// at a time, and returns each key with its result in the order given.
pub async fn run_once<K: Key, R: Reconciler<K>>(
    keys: impl IntoIterator<Item = K>,
    reconciler: Arc<R>,
    concurrency: usize,
) -> Vec<(K, Result<Action, R::Error>)> {
    let mut seen = HashSet::new();
    let keys: Vec<K> = keys
        .into_iter()
        .filter(|key| seen.insert(key.clone()))
        .collect();
    stream::iter(keys)
        .map(|key| {
            let reconcile = reconcile_in_span(&reconciler, key.clone());
            async move { (key, reconcile.await) }
        })
        .buffered(concurrency.max(1))
        .collect()
        .await
}

/// One reconcile of `key` in its own span, its outcome logged inside it.
fn reconcile_in_span<K: Key, R: Reconciler<K>>(
    reconciler: &Arc<R>,
    key: K,
) -> impl Future<Output = Result<Action, R::Error>> + Send + 'static {
    let span = tracing::info_span!("reconcile", key = %key);
    let reconcile = Arc::clone(reconciler).reconcile(key);
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
            let reconcile = reconcile_in_span(&self.reconciler, key.clone());
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
                    self.schedule(key, delay);
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

    /// Schedules `key` after `delay`, counting the add.
    fn schedule(&mut self, key: K, delay: Duration) {
        if let Some(adds) = &self.config.queue_adds {
            adds.inc();
        }
        self.queue.schedule(key, delay);
    }

    /// Schedules `key` again after a failure, counting the retry.
    fn retry(&mut self, key: K, delay: Duration) {
        if let Some(retries) = &self.config.queue_retries {
            retries.inc();
        }
        self.schedule(key, delay);
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
mod tests {
    use std::collections::{HashMap, VecDeque};
    use std::sync::Mutex;

    use tokio::sync::mpsc;
    use tokio::task::JoinHandle;
    use tokio_stream::wrappers::UnboundedReceiverStream;

    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const SEC: Duration = Duration::from_secs(1);

    #[derive(Debug, thiserror::Error)]
    #[error("reconcile of {0} failed")]
    struct Failed(&'static str);

    /// What one reconcile of a key does, in order; success when none is left.
    #[derive(Debug, Clone, Copy)]
    enum Step {
        Ok(Action),
        Fail,
        Panic,
    }

    /// A reconciler that records when each key ran and how many ran at once.
    #[derive(Default)]
    struct Probe {
        work: Duration,
        retry_hint: Option<Duration>,
        steps: Mutex<HashMap<&'static str, VecDeque<Step>>>,
        state: Mutex<ProbeState>,
    }

    #[derive(Default)]
    struct ProbeState {
        started: Vec<(&'static str, Instant)>,
        finished: usize,
        in_flight: HashMap<&'static str, usize>,
        max_per_key: usize,
        max_total: usize,
    }

    impl ProbeState {
        fn total(&self) -> usize {
            self.in_flight.values().sum()
        }
    }

    /// Counts a reconcile as in flight until it is dropped, finished or not.
    struct InFlight<'a>(&'a Probe, &'static str);

    impl Drop for InFlight<'_> {
        fn drop(&mut self) {
            let mut state = self.0.state.lock().unwrap();
            *state.in_flight.get_mut(self.1).unwrap() -= 1;
        }
    }

    impl Probe {
        fn with_steps(steps: &[(&'static str, &[Step])]) -> Self {
            let steps = steps
                .iter()
                .map(|(key, steps)| (*key, steps.iter().copied().collect()))
                .collect();
            Self {
                steps: Mutex::new(steps),
                ..Self::default()
            }
        }

        fn working(mut self, work: Duration) -> Self {
            self.work = work;
            self
        }

        fn enter(&self, key: &'static str) -> InFlight<'_> {
            let mut state = self.state.lock().unwrap();
            state.started.push((key, Instant::now()));
            let count = state.in_flight.entry(key).or_default();
            *count += 1;
            let count = *count;
            state.max_per_key = state.max_per_key.max(count);
            state.max_total = state.max_total.max(state.total());
            InFlight(self, key)
        }

        /// When each reconcile of `key` started, relative to `origin`.
        fn starts_of(&self, key: &str, origin: Instant) -> Vec<Duration> {
            let state = self.state.lock().unwrap();
            state
                .started
                .iter()
                .filter(|(started, _)| *started == key)
                .map(|(_, at)| *at - origin)
                .collect()
        }
    }

    impl Reconciler<&'static str> for Probe {
        type Error = Failed;

        async fn reconcile(self: Arc<Self>, key: &'static str) -> Result<Action, Failed> {
            let step = self
                .steps
                .lock()
                .unwrap()
                .get_mut(key)
                .and_then(VecDeque::pop_front);
            let _in_flight = self.enter(key);
            tokio::time::sleep(self.work).await;
            self.state.lock().unwrap().finished += 1;
            match step.unwrap_or(Step::Ok(Action::await_change())) {
                Step::Ok(action) => Ok(action),
                Step::Fail => Err(Failed(key)),
                Step::Panic => panic!("reconcile of {key} panicked"),
            }
        }

        fn error_policy(&self, _key: &&'static str, _error: &Failed) -> Option<Duration> {
            self.retry_hint
        }
    }

    struct Running {
        probe: Arc<Probe>,
        keys: mpsc::UnboundedSender<&'static str>,
        shutdown: Shutdown,
        controller: JoinHandle<()>,
        origin: Instant,
    }

    impl Running {
        fn send(&self, key: &'static str) {
            self.keys.send(key).unwrap();
        }

        fn starts_of(&self, key: &str) -> Vec<Duration> {
            self.probe.starts_of(key, self.origin)
        }

        async fn stop(self) -> Arc<Probe> {
            self.shutdown.trigger();
            self.controller.await.unwrap();
            self.probe
        }
    }

    fn start(probe: Probe, config: Config) -> Running {
        let probe = Arc::new(probe);
        let (keys, rx) = mpsc::unbounded_channel();
        let shutdown = Shutdown::new();
        let controller = Controller::new(Arc::clone(&probe), config)
            .trigger(UnboundedReceiverStream::new(rx))
            .run(shutdown.clone());
        Running {
            probe,
            keys,
            shutdown,
            controller: tokio::spawn(controller),
            origin: Instant::now(),
        }
    }

    /// Lets virtual time pass. With the clock paused, `sleep` moves it from
    /// one timer to the next once every task is idle, so each timer fires at
    /// its own instant; `advance` would fire them all at the end of its jump
    /// and skew every measured delay.
    async fn run_for(duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    fn no_jitter() -> Config {
        Config {
            backoff: Backoff {
                jitter: false,
                ..Backoff::default()
            },
            ..Config::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_triggers_becomes_one_reconcile_after_the_debounce() {
        let running = start(Probe::default(), Config::default());
        for _ in 0..10 {
            running.send("a");
            run_for(10 * MS).await;
        }
        run_for(5 * SEC).await;
        assert_eq!(running.starts_of("a"), [200 * MS]);
        running.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_never_runs_twice_at_once_and_reruns_once_when_triggered_during_its_run() {
        let running = start(Probe::default().working(SEC), Config::default());
        running.send("a");
        run_for(500 * MS).await;
        for _ in 0..5 {
            running.send("a");
        }
        run_for(5 * SEC).await;
        assert_eq!(running.starts_of("a"), [200 * MS, 1200 * MS]);
        let probe = running.stop().await;
        assert_eq!(probe.state.lock().unwrap().max_per_key, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_bounds_reconciles_across_keys_and_the_gauge_counts_the_waiting() {
        let gauge = Gauge::default();
        let config = Config {
            concurrency: 2,
            queue_depth: Some(gauge.clone()),
            ..Config::default()
        };
        let running = start(Probe::default().working(SEC), config);
        for key in ["a", "b", "c", "d", "e"] {
            running.send(key);
        }
        run_for(300 * MS).await;
        assert_eq!(gauge.get(), 3);
        run_for(5 * SEC).await;
        assert_eq!(gauge.get(), 0);
        let probe = running.stop().await;
        let state = probe.state.lock().unwrap();
        assert_eq!(state.max_total, 2);
        assert_eq!(state.finished, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_grows_on_repeated_errors_and_resets_after_a_success() {
        let probe = Probe::with_steps(&[(
            "a",
            &[
                Step::Fail,
                Step::Fail,
                Step::Fail,
                Step::Ok(Action::requeue(10 * SEC)),
                Step::Fail,
            ],
        )]);
        let (adds, retries) = (Counter::default(), Counter::default());
        let config = Config {
            queue_adds: Some(adds.clone()),
            queue_retries: Some(retries.clone()),
            ..no_jitter()
        };
        let running = start(probe, config);
        running.send("a");
        run_for(60 * SEC).await;
        let starts = running.starts_of("a");
        let gaps: Vec<_> = starts.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps, [SEC, 2 * SEC, 4 * SEC, 10 * SEC, SEC]);
        // One trigger, four retries, one requeue; the last run ends with await_change.
        assert_eq!((adds.get(), retries.get()), (6, 4));
        running.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_error_policy_hint_replaces_the_backoff() {
        let mut probe = Probe::with_steps(&[("a", &[Step::Fail, Step::Fail])]);
        probe.retry_hint = Some(7 * SEC);
        let running = start(probe, no_jitter());
        running.send("a");
        run_for(60 * SEC).await;
        assert_eq!(running.starts_of("a"), [200 * MS, 7200 * MS, 14200 * MS]);
        running.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_reconcile_is_retried_with_backoff() {
        let probe = Probe::with_steps(&[("a", &[Step::Panic])]);
        let running = start(probe, no_jitter());
        running.send("a");
        run_for(10 * SEC).await;
        assert_eq!(running.starts_of("a"), [200 * MS, 1200 * MS]);
        running.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn success_requeues_after_the_action_delay_unless_a_trigger_comes_sooner() {
        let probe = Probe::with_steps(&[(
            "a",
            &[
                Step::Ok(Action::requeue(30 * SEC)),
                Step::Ok(Action::requeue(3600 * SEC)),
            ],
        )]);
        let running = start(probe, Config::default());
        running.send("a");
        run_for(40 * SEC).await;
        assert_eq!(running.starts_of("a"), [200 * MS, 30200 * MS]);
        running.send("a");
        run_for(600 * SEC).await;
        assert_eq!(
            running.starts_of("a"),
            [200 * MS, 30200 * MS, 40200 * MS],
            "the trigger beat the one-hour requeue, and await_change ends the loop"
        );
        running.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn first_shutdown_signal_takes_no_new_work_and_waits_for_in_flight_reconciles() {
        let running = start(Probe::default().working(10 * SEC), Config::default());
        running.send("a");
        run_for(SEC).await;
        running.shutdown.trigger();
        running.send("b");
        run_for(5 * SEC).await;
        assert!(!running.controller.is_finished(), "still draining a");
        run_for(5 * SEC).await;
        assert!(running.controller.is_finished());
        let origin = running.origin;
        let probe = running.stop().await;
        assert!(probe.starts_of("b", origin).is_empty());
        assert_eq!(probe.state.lock().unwrap().finished, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn second_shutdown_signal_cancels_in_flight_reconciles() {
        let running = start(Probe::default().working(3600 * SEC), Config::default());
        running.send("a");
        running.send("b");
        run_for(SEC).await;
        assert_eq!(running.probe.state.lock().unwrap().total(), 2);
        running.shutdown.trigger();
        run_for(SEC).await;
        assert!(!running.controller.is_finished(), "draining waits");
        running.shutdown.trigger();
        run_for(MS).await;
        assert!(running.controller.is_finished());
        let probe = running.stop().await;
        let state = probe.state.lock().unwrap();
        assert_eq!(state.total(), 0, "the reconciles were dropped");
        assert_eq!(state.finished, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn run_once_reports_each_key_once_in_order_with_its_error() {
        let probe = Arc::new(Probe::with_steps(&[("b", &[Step::Fail])]).working(SEC));
        let origin = Instant::now();
        let results = run_once(["a", "b", "a", "c"], Arc::clone(&probe), 2).await;
        let summary: Vec<_> = results
            .iter()
            .map(|(key, result)| (*key, result.as_ref().copied().map_err(ToString::to_string)))
            .collect();
        assert_eq!(
            summary,
            [
                ("a", Ok(Action::await_change())),
                ("b", Err("reconcile of b failed".to_owned())),
                ("c", Ok(Action::await_change())),
            ]
        );
        assert_eq!(origin.elapsed(), 2 * SEC, "two at a time");
        assert_eq!(probe.state.lock().unwrap().max_total, 2);
    }
}
