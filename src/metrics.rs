//! Prometheus metrics of the controller, served at `/metrics`.
//!
//! Label values are bounded: kinds, results and error kinds, never messages.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub kind: String,
    /// `ok` or the error's `kind()`.
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Every metric the controller exports.
pub struct Metrics {
    pub registry: Registry,
    pub reconcile_total: Family<ReconcileLabels, Counter>,
    pub reconcile_duration: Family<KindLabel, Histogram, fn() -> Histogram>,
    pub drift_objects: Family<KindLabel, Gauge>,
    pub queue_depth: Gauge,
    pub leader: Gauge,
}

impl Metrics {
    /// Creates and registers the metrics; `docker` adds its request counters.
    pub fn new(docker: &crate::docker::Docker) -> Self {
        let mut registry = Registry::with_prefix("swarmkeeper");
        let reconcile_total = Family::<ReconcileLabels, Counter>::default();
        let reconcile_duration =
            Family::<KindLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        let drift_objects = Family::<KindLabel, Gauge>::default();
        let queue_depth = Gauge::default();
        let leader = Gauge::default();
        registry.register(
            "reconcile",
            "Reconciles by kind and result",
            reconcile_total.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            reconcile_duration.clone(),
        );
        registry.register(
            "drift_objects",
            "Objects that differ from the desired state",
            drift_objects.clone(),
        );
        registry.register(
            "queue_depth",
            "Records due but not started",
            queue_depth.clone(),
        );
        registry.register(
            "leader",
            "1 when this replica is the leader",
            leader.clone(),
        );
        docker.register(&mut registry);
        Self {
            registry,
            reconcile_total,
            reconcile_duration,
            drift_objects,
            queue_depth,
            leader,
        }
    }

    /// Records one finished reconcile.
    pub fn reconciled(&self, kind: &str, result: &str, seconds: f64) {
        self.reconcile_total
            .get_or_create(&ReconcileLabels {
                kind: kind.to_string(),
                result: result.to_string(),
            })
            .inc();
        self.reconcile_duration
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .observe(seconds);
    }

    /// Publishes a drift report's counts.
    pub fn drift(&self, report: &crate::plan::drift::DriftReport) {
        for (kind, n) in report.objects_by_kind() {
            self.drift_objects
                .get_or_create(&KindLabel {
                    kind: kind.to_string(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
