//! The run loop's tests, on a paused clock: debounce, one reconcile per key at a time,
//! the concurrency bound, backoff and its reset, requeues, panics and both shutdown phases.

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
    /// What [`triggered_at`] said to each reconcile, in start order.
    asked: Vec<(&'static str, Option<Instant>)>,
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
        state.asked.push((key, triggered_at()));
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

impl Probe {
    /// When each reconcile of `key` was last asked for, relative to `origin`.
    fn asked_of(&self, key: &str, origin: Instant) -> Vec<Option<Duration>> {
        let state = self.state.lock().unwrap();
        state
            .asked
            .iter()
            .filter(|(asked, _)| *asked == key)
            .map(|(_, at)| at.map(|at| at - origin))
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

#[tokio::test(start_paused = true)]
async fn a_reconcile_is_told_its_latest_trigger_or_requeue_deadline() {
    let probe = Probe::with_steps(&[("b", &[Step::Ok(Action::requeue(3 * SEC))])]).working(SEC);
    let running = start(probe, Config::default());
    let origin = running.origin;
    running.send("a");
    running.send("b");
    run_for(500 * MS).await;
    // Two triggers while the first run is in flight: the next run must see the later one.
    running.send("a");
    run_for(10 * MS).await;
    running.send("a");
    run_for(10 * SEC).await;
    let probe = running.stop().await;
    assert_eq!(
        probe.asked_of("a", origin),
        [Some(Duration::ZERO), Some(510 * MS)]
    );
    // b's first run ended at 1.2 s and asked to be looked at 3 s later.
    assert_eq!(
        probe.asked_of("b", origin),
        [Some(Duration::ZERO), Some(4200 * MS)]
    );
    assert_eq!(triggered_at(), None, "outside a reconcile");
}

#[tokio::test(start_paused = true)]
async fn run_once_since_asks_every_key_at_the_given_instant() {
    let probe = Arc::new(Probe::default());
    let asked = Instant::now() - SEC;
    run_once_since(["a", "b"], Arc::clone(&probe), 2, asked).await;
    let state = probe.state.lock().unwrap();
    assert!(
        state.asked.iter().all(|(_, at)| *at == Some(asked)),
        "{:?}",
        state.asked
    );
}

#[tokio::test(start_paused = true)]
async fn a_trigger_with_its_own_debounce_is_scheduled_by_it() {
    let probe = Arc::new(Probe::default());
    let (whole, whole_rx) = mpsc::unbounded_channel();
    let (bursty, bursty_rx) = mpsc::unbounded_channel();
    let shutdown = Shutdown::new();
    let origin = Instant::now();
    let controller = Controller::new(Arc::clone(&probe), Config::default())
        .trigger_debounced(UnboundedReceiverStream::new(whole_rx), Duration::ZERO)
        .trigger(UnboundedReceiverStream::new(bursty_rx))
        .run(shutdown.clone());
    let running = tokio::spawn(controller);
    whole.send("a").unwrap();
    bursty.send("b").unwrap();
    run_for(SEC).await;
    shutdown.trigger();
    running.await.unwrap();
    assert_eq!(probe.starts_of("a", origin), [Duration::ZERO]);
    assert_eq!(probe.starts_of("b", origin), [200 * MS]);
}
