//! The drift each record had after its last reconcile, kept in memory for
//! `/drift` and the `swarmkeeper_drift_objects` gauge.
//!
//! Reconcilers already compare desired and live state on every pass; keeping
//! what they found is what lets `/drift` answer without decrypting secrets or
//! listing the swarm once per record on every GET.
//!
//! # Guarantees
//! - Each reconciler records the drift that remains after its pass: none for a
//!   record it converged, the differences for one it only reports
//!   (self-heal off, an immutable network), the reason for one it cannot compare.
//! - A deleted record is forgotten.
//! - The gauge of a kind is set on every change, to 0 once its last drift is gone.
//!
//! # Caveats
//! Only the replica that reconciles fills it: a standby's cache is empty, and
//! it is cleared when leadership is won, so a record deleted meanwhile is not
//! reported from an older term.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::RecordKey;
use crate::metrics::KindLabel;
use crate::plan::drift::{DriftReport, ObjectDrift, RecordDrift};

/// The last drift of every record reconciled, by record.
#[derive(Debug, Default)]
pub struct DriftCache {
    records: Mutex<BTreeMap<RecordKey, RecordDrift>>,
    /// `swarmkeeper_drift_objects{kind}`, when metrics are exported.
    gauge: Option<Family<KindLabel, Gauge>>,
}

impl DriftCache {
    /// An empty cache that keeps `gauge` (drifted objects per kind) current.
    #[must_use]
    pub fn with_gauge(gauge: Family<KindLabel, Gauge>) -> Self {
        Self {
            records: Mutex::default(),
            gauge: Some(gauge),
        }
    }

    /// Records what still differs for `key` after a pass; empty when converged.
    pub fn set(&self, key: &RecordKey, objects: Vec<ObjectDrift>) {
        self.put(key, objects, None);
    }

    /// Records that `key` could not be compared (an invalid record, a missing
    /// external object), with what was found anyway.
    pub fn set_error(&self, key: &RecordKey, objects: Vec<ObjectDrift>, error: &str) {
        self.put(key, objects, Some(error.to_owned()));
    }

    /// Forgets a record that was deleted.
    pub fn forget(&self, key: &RecordKey) {
        let mut records = self.lock();
        if records.remove(key).is_some() {
            self.publish(&records, key);
        }
    }

    /// Forgets every record: what a new leadership term starts from.
    pub fn clear(&self) {
        let mut records = self.lock();
        let keys: Vec<RecordKey> = records.keys().cloned().collect();
        records.clear();
        for key in &keys {
            self.publish(&records, key);
        }
    }

    /// The last drift of one record, if it was reconciled.
    #[must_use]
    pub fn get(&self, key: &RecordKey) -> Option<RecordDrift> {
        self.lock().get(key).cloned()
    }

    /// Every record's last drift, by kind then name: the shape `swarmkeeper drift` prints.
    #[must_use]
    pub fn report(&self) -> DriftReport {
        DriftReport {
            records: self.lock().values().cloned().collect(),
        }
    }

    fn put(&self, key: &RecordKey, objects: Vec<ObjectDrift>, error: Option<String>) {
        let drift = RecordDrift {
            kind: key.kind.as_str().to_owned(),
            name: key.name.clone(),
            objects,
            error,
        };
        let mut records = self.lock();
        records.insert(key.clone(), drift);
        self.publish(&records, key);
    }

    /// Sets the gauge of `key`'s kind from the records held, under the lock,
    /// so two reconciles of one kind cannot publish out of order.
    fn publish(&self, records: &BTreeMap<RecordKey, RecordDrift>, key: &RecordKey) {
        let Some(gauge) = &self.gauge else {
            return;
        };
        let objects: usize = records
            .iter()
            .filter(|(k, _)| k.kind == key.kind)
            .map(|(_, d)| d.objects.len())
            .sum();
        gauge
            .get_or_create(&KindLabel {
                kind: key.kind.as_str().to_owned(),
            })
            .set(i64::try_from(objects).unwrap_or(i64::MAX));
    }

    /// The map; a reconcile that panicked while holding the lock left it
    /// consistent (every change is one insert or remove), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, BTreeMap<RecordKey, RecordDrift>> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Kind;
    use crate::plan::drift::ObjectState;

    fn changed(name: &str) -> ObjectDrift {
        ObjectDrift {
            object: "service".into(),
            name: name.into(),
            state: ObjectState::Changed,
            fields: Vec::new(),
        }
    }

    fn gauge_of(gauge: &Family<KindLabel, Gauge>, kind: Kind) -> i64 {
        gauge
            .get_or_create(&KindLabel {
                kind: kind.as_str().to_owned(),
            })
            .get()
    }

    #[test]
    fn the_gauge_counts_drifted_objects_per_kind_and_reads_zero_once_healed() {
        let gauge = Family::<KindLabel, Gauge>::default();
        let cache = DriftCache::with_gauge(gauge.clone());
        let (a, b) = (
            RecordKey::new(Kind::Stack, "a"),
            RecordKey::new(Kind::Stack, "b"),
        );
        let net = RecordKey::new(Kind::Network, "n");
        cache.set(&a, vec![changed("a_web"), changed("a_db")]);
        cache.set(&b, vec![changed("b_web")]);
        cache.set(&net, Vec::new());
        assert_eq!(gauge_of(&gauge, Kind::Stack), 3);
        assert_eq!(gauge_of(&gauge, Kind::Network), 0);
        cache.set(&a, Vec::new());
        assert_eq!(gauge_of(&gauge, Kind::Stack), 1);
        cache.forget(&b);
        assert_eq!(
            gauge_of(&gauge, Kind::Stack),
            0,
            "a forgotten record's drift"
        );
        assert!(cache.get(&b).is_none());
    }

    #[test]
    fn the_report_lists_every_record_by_kind_and_name_with_its_error() {
        let cache = DriftCache::default();
        cache.set(
            &RecordKey::new(Kind::Stack, "web"),
            vec![changed("web_api")],
        );
        cache.set_error(&RecordKey::new(Kind::Network, "front"), Vec::new(), "bad");
        cache.set(&RecordKey::new(Kind::Stack, "api"), Vec::new());
        let report = cache.report();
        let listed: Vec<(&str, &str, bool)> = report
            .records
            .iter()
            .map(|r| (r.kind.as_str(), r.name.as_str(), r.has_drift()))
            .collect();
        let mut expected = vec![
            ("Stack", "api", false),
            ("Stack", "web", true),
            ("Network", "front", true),
        ];
        expected.sort_by_key(|(kind, name, _)| (kind.parse::<Kind>().unwrap(), *name));
        assert_eq!(listed, expected);
        assert_eq!(
            report
                .records
                .iter()
                .filter_map(|r| r.error.as_deref())
                .collect::<Vec<_>>(),
            ["bad"]
        );
    }

    #[test]
    fn clearing_zeroes_every_gauge_it_had_set() {
        let gauge = Family::<KindLabel, Gauge>::default();
        let cache = DriftCache::with_gauge(gauge.clone());
        cache.set(&RecordKey::new(Kind::Node, "n1"), vec![changed("n1")]);
        cache.clear();
        assert_eq!(gauge_of(&gauge, Kind::Node), 0);
        assert!(cache.report().records.is_empty());
    }
}
