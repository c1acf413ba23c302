//! A Node record against its node: which node it names, the spec it wants
//! (its labels set, labels it set before and no longer wants removed, its
//! availability), and what differs. Pure: the reconciler reads and updates.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{Node, NodeSpec as SwarmNodeSpec, NodeSpecAvailabilityEnum};

use super::diff::FieldDiff;
use crate::api::node::{Availability, NodeSpec};

/// The node called `name`: by ID, or by hostname (case-insensitive, as DNS is).
pub fn find<'a>(nodes: &'a [Node], name: &str) -> Option<&'a Node> {
    nodes.iter().find(|n| {
        n.id.as_deref() == Some(name)
            || n.description
                .as_ref()
                .and_then(|d| d.hostname.as_deref())
                .is_some_and(|h| h.eq_ignore_ascii_case(name))
    })
}

fn availability(a: Availability) -> NodeSpecAvailabilityEnum {
    match a {
        Availability::Active => NodeSpecAvailabilityEnum::ACTIVE,
        Availability::Pause => NodeSpecAvailabilityEnum::PAUSE,
        Availability::Drain => NodeSpecAvailabilityEnum::DRAIN,
    }
}

/// The node spec the record wants: live spec, desired labels set, labels set
/// before but no longer desired (`previous`) removed, availability when given.
pub fn desired_spec(live: &SwarmNodeSpec, want: &NodeSpec, previous: &[String]) -> SwarmNodeSpec {
    let mut spec = live.clone();
    let labels = spec.labels.get_or_insert_with(HashMap::new);
    for key in previous.iter().filter(|k| !want.labels.contains_key(*k)) {
        labels.remove(key);
    }
    for (k, v) in &want.labels {
        labels.insert(k.clone(), v.clone());
    }
    if let Some(a) = want.availability {
        spec.availability = Some(availability(a));
    }
    spec
}

/// The fields of the live node that differ from what the record wants.
pub fn compare(live: &SwarmNodeSpec, want: &NodeSpec, previous: &[String]) -> Vec<FieldDiff> {
    let wanted = desired_spec(live, want, previous);
    let sorted = |s: &SwarmNodeSpec| -> BTreeMap<String, String> {
        s.labels.clone().unwrap_or_default().into_iter().collect()
    };
    let desired =
        serde_json::json!({"Labels": sorted(&wanted), "Availability": wanted.availability});
    let have = serde_json::json!({"Labels": sorted(live), "Availability": live.availability});
    super::diff::diff(&desired, &have, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(labels: &[(&str, &str)]) -> SwarmNodeSpec {
        SwarmNodeSpec {
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            availability: Some(NodeSpecAvailabilityEnum::ACTIVE),
            ..Default::default()
        }
    }

    fn want(labels: &[(&str, &str)], availability: Option<Availability>) -> NodeSpec {
        NodeSpec {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            availability,
        }
    }

    #[test]
    fn labels_it_does_not_own_are_left_alone() {
        let spec = desired_spec(
            &live(&[("zone", "a")]),
            &want(&[("usage", "apps")], None),
            &[],
        );
        let labels = spec.labels.unwrap();
        assert_eq!(labels.get("zone").map(String::as_str), Some("a"));
        assert_eq!(labels.get("usage").map(String::as_str), Some("apps"));
    }

    #[test]
    fn a_label_dropped_from_the_record_is_removed() {
        let node = live(&[("usage", "apps"), ("old", "x")]);
        let spec = desired_spec(&node, &want(&[("usage", "apps")], None), &["old".into()]);
        assert!(!spec.labels.unwrap().contains_key("old"));
    }

    #[test]
    fn converged_node_has_no_drift_and_availability_is_compared() {
        let node = live(&[("usage", "apps")]);
        assert!(compare(&node, &want(&[("usage", "apps")], None), &[]).is_empty());
        let diffs = compare(
            &node,
            &want(&[("usage", "apps")], Some(Availability::Drain)),
            &[],
        );
        assert_eq!(diffs[0].path, "Availability");
    }
}
