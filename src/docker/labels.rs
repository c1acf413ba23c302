//! Ownership labels: how swarmkeeper marks, finds and maps back the swarm objects it owns.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// Present (`true`) on every object swarmkeeper creates; objects without it are never touched.
pub const MANAGED: &str = "swarmkeeper.managed";
/// `<Kind>.<name>` of the record that owns the object.
pub const OWNER: &str = "swarmkeeper.owner";
/// Hex hash of the desired spec the object was last written from.
pub const SPEC_HASH: &str = "swarmkeeper.spec-hash";
/// The etcd prefix of the swarmkeeper instance that owns the object: instances
/// with different prefixes share a swarm without touching each other's objects.
pub const SCOPE: &str = "swarmkeeper.scope";
/// The stack label the docker CLI sets, so `docker stack ps/services/rm` see our objects.
pub const STACK_NAMESPACE: &str = "com.docker.stack.namespace";

/// The record that owns a swarm object, written as `<Kind>.<name>` in the [`OWNER`] label.
///
/// Record names may contain dots, kinds may not, so the first dot is the separator.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    pub kind: String,
    pub name: String,
}

/// An [`OWNER`] label value that is not `<Kind>.<name>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("owner label {0:?} is not <Kind>.<name>")]
pub struct ParseOwnerError(String);

impl Owner {
    pub fn new(kind: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            name: name.into(),
        }
    }

    /// The labels every object owned by this record carries, spec hash aside.
    #[must_use]
    pub fn labels(&self) -> HashMap<String, String> {
        HashMap::from([
            (MANAGED.to_owned(), "true".to_owned()),
            (OWNER.to_owned(), self.to_string()),
        ])
    }

    /// The owner named by a label map, if the object is managed by swarmkeeper.
    ///
    /// An object that has an owner label but not `swarmkeeper.managed=true` is not ours.
    #[must_use]
    pub fn from_labels(labels: Option<&HashMap<String, String>>) -> Option<Self> {
        let labels = labels?;
        if labels.get(MANAGED).map(String::as_str) != Some("true") {
            return None;
        }
        labels.get(OWNER)?.parse().ok()
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kind, self.name)
    }
}

impl FromStr for Owner {
    type Err = ParseOwnerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('.') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok(Self::new(kind, name)),
            _ => Err(ParseOwnerError(s.to_owned())),
        }
    }
}

/// The `filters` query of a list call that selects managed objects, of one owner
/// and one scope if given.
pub(crate) fn filters(owner: Option<&Owner>, scope: Option<&str>) -> HashMap<String, Vec<String>> {
    let mut labels = vec![format!("{MANAGED}=true")];
    if let Some(owner) = owner {
        labels.push(format!("{OWNER}={owner}"));
    }
    if let Some(scope) = scope {
        labels.push(format!("{SCOPE}={scope}"));
    }
    HashMap::from([("label".to_owned(), labels)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_round_trips_and_splits_on_first_dot() {
        let owner: Owner = "Stack.kitten.api".parse().unwrap();
        assert_eq!(owner, Owner::new("Stack", "kitten.api"));
        assert_eq!(owner.to_string(), "Stack.kitten.api");
    }

    #[test]
    fn owner_rejects_missing_parts() {
        for bad in ["Stack", "Stack.", ".web", ""] {
            assert!(bad.parse::<Owner>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn from_labels_requires_managed_true() {
        let owner = Owner::new("Network", "frontend");
        let mut labels = owner.labels();
        assert_eq!(Owner::from_labels(Some(&labels)), Some(owner));
        labels.insert(MANAGED.to_owned(), "false".to_owned());
        assert_eq!(Owner::from_labels(Some(&labels)), None);
        assert_eq!(Owner::from_labels(None), None);
    }

    #[test]
    fn filters_select_managed_and_owner() {
        let owner = Owner::new("Stack", "web");
        assert_eq!(
            filters(Some(&owner), None)["label"],
            vec!["swarmkeeper.managed=true", "swarmkeeper.owner=Stack.web"]
        );
        assert_eq!(
            filters(None, None)["label"],
            vec!["swarmkeeper.managed=true"]
        );
        assert_eq!(
            filters(None, Some("/prod"))["label"],
            vec!["swarmkeeper.managed=true", "swarmkeeper.scope=/prod"]
        );
    }
}
