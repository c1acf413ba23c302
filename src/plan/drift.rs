//! The drift report model: per record, per owned object, what differs from the desired state.

use serde::{Deserialize, Serialize};

use super::diff::FieldDiff;

/// How one swarm object stands against the desired state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ObjectState {
    /// Desired, but not in the swarm.
    Missing,
    /// In the swarm, with fields that differ.
    Changed,
    /// Owned by the record, but no longer desired (or its record is gone).
    Orphan,
}

/// One swarm object that is not as desired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectDrift {
    /// `service`, `network`, `secret`, `config`, ...
    pub object: String,
    /// The swarm name of the object.
    pub name: String,
    pub state: ObjectState,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldDiff>,
}

/// The drift of one record; `objects` is empty when the record is converged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordDrift {
    pub kind: String,
    pub name: String,
    pub objects: Vec<ObjectDrift>,
    /// Set when the live state could not be compared (a broken record, an unreachable API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RecordDrift {
    pub fn has_drift(&self) -> bool {
        !self.objects.is_empty() || self.error.is_some()
    }
}

/// The drift of every record looked at.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    pub records: Vec<RecordDrift>,
}

impl DriftReport {
    pub fn has_drift(&self) -> bool {
        self.records.iter().any(RecordDrift::has_drift)
    }

    /// Number of drifted objects per kind, for the `swarmkeeper_drift_objects` gauge.
    pub fn objects_by_kind(&self) -> std::collections::BTreeMap<&str, usize> {
        let mut out = std::collections::BTreeMap::new();
        for r in &self.records {
            *out.entry(r.kind.as_str()).or_default() += r.objects.len();
        }
        out
    }
}
