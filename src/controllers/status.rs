//! The status a controller writes for each record: phase, generation seen,
//! conditions, owned objects and last drift. Read back by `get`, `describe`
//! and the drift endpoint.

use serde::{Deserialize, Serialize};

use crate::plan::drift::ObjectDrift;

/// Where a record stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Seen, not converged yet (waiting for something it depends on).
    Pending,
    /// Changes sent; tasks not all running yet.
    Progressing,
    /// Converged and running.
    Ready,
    /// Converged, but the swarm rolled back or paused an update, or tasks fail.
    Degraded,
    /// The record cannot be converged as it is (invalid, or a permanent error).
    Failed,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// One aspect of a record's state, like a service's tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    /// What it is about: `service/<name>`, `network/<name>`, ...
    #[serde(rename = "type")]
    pub type_: String,
    pub ready: bool,
    pub message: String,
}

/// A swarm object the record owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owned {
    pub object: String,
    pub name: String,
    pub id: String,
}

/// The value at `<prefix>/status/<Kind>/<name>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub phase: Phase,
    /// The desired key's mod_revision this status describes.
    pub observed_revision: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owned: Vec<Owned>,
    /// What still differs from the desired state after the last pass: drift
    /// that is reported, not corrected (self-heal off, an immutable network).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<ObjectDrift>,
    /// When the content last changed (anything but the times).
    pub updated_at: jiff::Timestamp,
    /// When the phase last changed: how long the record has been in it.
    #[serde(default = "jiff::Timestamp::now")]
    pub since: jiff::Timestamp,
    /// The GitOps source and commit the record's current content came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<crate::gitops::owner::Origin>,
    /// A DatabaseUser's password rotation, and the spec its cleanup acts on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_user: Option<super::database_user::DatabaseUserStatus>,
}

impl Status {
    /// A status of `phase` for the record's generation, stamped now.
    pub fn new(phase: Phase, observed_revision: i64) -> Self {
        Self {
            phase,
            observed_revision,
            message: String::new(),
            conditions: Vec::new(),
            owned: Vec::new(),
            drift: Vec::new(),
            updated_at: jiff::Timestamp::now(),
            since: jiff::Timestamp::now(),
            source: None,
            database_user: None,
        }
    }

    /// What to write over `previous`: `None` when nothing but the times
    /// differs (a pass that found the record as before writes nothing), else
    /// this status with `since` kept from `previous` unless the phase changed.
    #[must_use]
    pub fn changed_from(&self, previous: Option<&Status>) -> Option<Status> {
        let Some(previous) = previous else {
            return Some(self.clone());
        };
        let timeless = |s: &Status| Status {
            updated_at: jiff::Timestamp::UNIX_EPOCH,
            since: jiff::Timestamp::UNIX_EPOCH,
            ..s.clone()
        };
        if timeless(self) == timeless(previous) {
            return None;
        }
        let mut next = self.clone();
        if next.phase == previous.phase {
            next.since = previous.since;
        }
        Some(next)
    }

    /// The same status with a message.
    #[must_use]
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::drift::ObjectState;

    #[test]
    fn a_status_with_a_missing_object_reads_back() {
        // Objects without field diffs serialise without `fields`: reading them
        // back must not fail, or the status looks absent.
        let status = Status {
            phase: Phase::Progressing,
            observed_revision: 7,
            message: String::new(),
            conditions: Vec::new(),
            owned: Vec::new(),
            drift: vec![ObjectDrift {
                object: "service".into(),
                name: "s_web".into(),
                state: ObjectState::Missing,
                fields: Vec::new(),
            }],
            updated_at: jiff::Timestamp::UNIX_EPOCH,
            since: jiff::Timestamp::UNIX_EPOCH,
            source: None,
            database_user: None,
        };
        let value = serde_json::to_value(&status).unwrap();
        assert_eq!(serde_json::from_value::<Status>(value).unwrap(), status);
    }

    fn at(second: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(second).unwrap()
    }

    fn stamped(phase: Phase, message: &str, second: i64) -> Status {
        Status {
            updated_at: at(second),
            since: at(second),
            ..Status::new(phase, 3).with_message(message)
        }
    }

    #[test]
    fn the_same_status_stamped_later_is_not_a_change() {
        let before = stamped(Phase::Ready, "", 10);
        assert_eq!(
            stamped(Phase::Ready, "", 20).changed_from(Some(&before)),
            None
        );
    }

    #[test]
    fn a_new_message_in_the_same_phase_keeps_the_transition_time() {
        let before = stamped(Phase::Progressing, "1/2 tasks running", 10);
        let next = stamped(Phase::Progressing, "2/2 tasks running", 20)
            .changed_from(Some(&before))
            .unwrap();
        assert_eq!(next.since, at(10));
        assert_eq!(next.updated_at, at(20));
    }

    #[test]
    fn a_new_phase_is_a_transition() {
        let before = stamped(Phase::Progressing, "", 10);
        let next = stamped(Phase::Ready, "", 20)
            .changed_from(Some(&before))
            .unwrap();
        assert_eq!(next.since, at(20));
        assert_eq!(
            stamped(Phase::Ready, "", 5)
                .changed_from(None)
                .unwrap()
                .since,
            at(5)
        );
    }
}
