//! Prometheus metrics of the controller, served at `/metrics`.
//!
//! Named as controller-runtime names its own (`reconcile_total`,
//! `reconcile_errors_total`, `reconcile_duration_seconds`, `workqueue_*`),
//! under one `swarmkeeper_` prefix, with the unit in the name. The registry
//! applies the prefix, so nothing registered here spells it again; counters
//! get their `_total` suffix from the encoder.
//!
//! Label values are bounded: kinds, results and error kinds, never messages.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The prefix every metric name starts with.
pub const PREFIX: &str = "swarmkeeper";

/// What [`Metrics::reconciled`] is told for a reconcile that succeeded; any
/// other outcome is an error's `kind()`.
pub const OK: &str = "ok";

/// Labels of `swarmkeeper_reconcile_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub kind: String,
    /// `success` or `error`, as controller-runtime has it.
    pub result: &'static str,
}

/// Labels of `swarmkeeper_reconcile_errors_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
    /// The error's bounded `kind()`.
    pub error: String,
}

/// The record kind a metric is about.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

/// Labels of `swarmkeeper_notifications_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotifyLabels {
    /// `sent`, `failed` (after the retries) or `dropped` (a queue was full).
    pub result: &'static str,
}

/// 5 ms doubling to about 41 s: a converged pass takes milliseconds, a
/// stack deploy on a busy machine tens of seconds.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Every metric the controller exports.
pub struct Metrics {
    registry: Registry,
    pub reconcile_total: Family<ReconcileLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Family<KindLabel, Histogram, fn() -> Histogram>,
    /// Set from the drift cache on every change, by [`crate::controllers::DriftCache`].
    pub drift_objects: Family<KindLabel, Gauge>,
    pub workqueue_depth: Gauge,
    pub workqueue_adds: Counter,
    pub workqueue_retries: Counter,
    pub leader: Gauge,
    /// Counted by [`crate::notify::Notifier`].
    pub notifications: Family<NotifyLabels, Counter>,
}

impl Metrics {
    /// Creates and registers the metrics; `docker` adds its request counters.
    pub fn new(docker: &crate::docker::Docker) -> Self {
        let mut metrics = Self {
            registry: Registry::with_prefix(PREFIX),
            reconcile_total: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Family::new_with_constructor(duration_histogram),
            drift_objects: Family::default(),
            workqueue_depth: Gauge::default(),
            workqueue_adds: Counter::default(),
            workqueue_retries: Counter::default(),
            leader: Gauge::default(),
            notifications: Family::default(),
        };
        metrics.register_all();
        docker.register(&mut metrics.registry);
        metrics
    }

    fn register_all(&mut self) {
        let registry = &mut self.registry;
        registry.register(
            "reconcile",
            "Reconciles by kind and result (success or error)",
            self.reconcile_total.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciles by kind and error kind",
            self.reconcile_errors.clone(),
        );
        registry.register_with_unit(
            "reconcile_duration",
            "Time spent in one reconcile",
            Unit::Seconds,
            self.reconcile_duration.clone(),
        );
        registry.register(
            "drift_objects",
            "Objects that differ from the desired state after the last reconcile",
            self.drift_objects.clone(),
        );
        registry.register(
            "workqueue_depth",
            "Records due but not started",
            self.workqueue_depth.clone(),
        );
        registry.register(
            "workqueue_adds",
            "Records scheduled: triggers, requeues and retries",
            self.workqueue_adds.clone(),
        );
        registry.register(
            "workqueue_retries",
            "Records scheduled again after a failed reconcile",
            self.workqueue_retries.clone(),
        );
        registry.register(
            "leader",
            "1 when this replica is the leader",
            self.leader.clone(),
        );
        registry.register(
            "notifications",
            "Notifications by result: sent, failed after retries, dropped from a full queue",
            self.notifications.clone(),
        );
    }

    /// The runtime's default config, reporting to the work-queue metrics.
    #[must_use]
    pub fn runtime_config(&self) -> crate::runtime::Config {
        crate::runtime::Config {
            queue_depth: Some(self.workqueue_depth.clone()),
            queue_adds: Some(self.workqueue_adds.clone()),
            queue_retries: Some(self.workqueue_retries.clone()),
            ..crate::runtime::Config::default()
        }
    }

    /// Records one finished reconcile; `outcome` is [`OK`] or the error's `kind()`.
    pub fn reconciled(&self, kind: &str, outcome: &str, seconds: f64) {
        let result = if outcome == OK { "success" } else { "error" };
        self.reconcile_total
            .get_or_create(&ReconcileLabels {
                kind: kind.to_owned(),
                result,
            })
            .inc();
        if outcome != OK {
            self.reconcile_errors
                .get_or_create(&ErrorLabels {
                    kind: kind.to_owned(),
                    error: outcome.to_owned(),
                })
                .inc();
        }
        self.reconcile_duration
            .get_or_create(&KindLabel {
                kind: kind.to_owned(),
            })
            .observe(seconds);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
