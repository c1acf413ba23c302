//! Source ownership: which GitOps source a stored record belongs to, and the
//! commit its current content came from.
//!
//! Both live as annotations of the stored record, written by `apply --source`
//! (and so by `sync`), so the owner travels with the record: another source or
//! a bare `apply` sees it and is refused without `--force`, and `--prune` of a
//! source deletes only what still carries its name.
//!
//! The commit annotation names the commit that last *changed* the record: a
//! commit that leaves a record as it was does not rewrite it, so its
//! generation (and the controller's work) stays as it is.

use serde_json::{Map, Value};

/// The annotation naming the source that applied a record.
pub const SOURCE_ANNOTATION: &str = "swarmkeeper.dev/source";
/// The annotation naming the commit a record's content came from.
pub const COMMIT_ANNOTATION: &str = "swarmkeeper.dev/commit";

/// The source and commit a stored record came from, as its status shows them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Origin {
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

fn annotation<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// The source that owns a stored record, if one applied it.
pub fn owner(value: &Value) -> Option<&str> {
    annotation(value, SOURCE_ANNOTATION)
}

/// Where a stored record came from, if a source applied it.
pub fn origin(value: &Value) -> Option<Origin> {
    owner(value).map(|source| Origin {
        source: source.to_owned(),
        commit: annotation(value, COMMIT_ANNOTATION).map(str::to_owned),
    })
}

/// The record without the ownership annotations (an empty `annotations` map
/// goes too, as the record types leave it out): what its files say.
#[must_use]
pub fn without_origin(value: &Value) -> Value {
    let mut value = value.clone();
    if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        let empty = match metadata
            .get_mut("annotations")
            .and_then(Value::as_object_mut)
        {
            Some(annotations) => {
                annotations.remove(SOURCE_ANNOTATION);
                annotations.remove(COMMIT_ANNOTATION);
                annotations.is_empty()
            }
            None => false,
        };
        if empty {
            metadata.remove("annotations");
        }
    }
    value
}

/// The value to store for a record read from files: stamped with `source`
/// and `commit`, or with no ownership at all for a bare apply. When the stored
/// record has the same content, its commit is kept, so an unchanged record is
/// not rewritten by each new commit.
#[must_use]
pub fn stamped(
    value: &Value,
    source: Option<&str>,
    commit: Option<&str>,
    stored: Option<&Value>,
) -> Value {
    let mut out = without_origin(value);
    let Some(source) = source else {
        return out;
    };
    let same_content = stored
        .is_some_and(|s| owner(s) == Some(source) && without_origin(s) == without_origin(value));
    let commit = if same_content {
        stored.and_then(|s| annotation(s, COMMIT_ANNOTATION))
    } else {
        commit
    };
    if let Some(metadata) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = metadata
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.insert(SOURCE_ANNOTATION.into(), source.into());
            if let Some(commit) = commit {
                annotations.insert(COMMIT_ANNOTATION.into(), commit.into());
            }
        }
    }
    out
}

/// Why a write must not replace a stored record: it belongs to another source
/// (or to a source, for a bare apply). `None` when the write may go ahead.
pub fn refusal(id: &str, stored: &Value, source: Option<&str>) -> Option<String> {
    let owner = owner(stored)?;
    if Some(owner) == source {
        return None;
    }
    let by = source.map_or_else(|| "a bare apply".to_owned(), |s| format!("source {s:?}"));
    Some(format!(
        "{id} is owned by source {owner:?}: not overwritten by {by} (--force takes it over)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(annotations: Value) -> Value {
        json!({"kind": "Network", "metadata": {"name": "n", "annotations": annotations}, "spec": {}})
    }

    #[test]
    fn a_stamped_record_names_its_source_and_commit() {
        let plain = json!({"kind": "Network", "metadata": {"name": "n"}, "spec": {}});
        let v = stamped(&plain, Some("prod"), Some("abc"), None);
        assert_eq!(
            origin(&v),
            Some(Origin {
                source: "prod".into(),
                commit: Some("abc".into())
            })
        );
        assert_eq!(without_origin(&v), plain);
        assert_eq!(stamped(&v, None, None, None), plain);
    }

    #[test]
    fn an_unchanged_record_keeps_the_commit_that_made_it() {
        let plain = record(json!({"team": "cats"}));
        let stored = stamped(&plain, Some("prod"), Some("old"), None);
        let again = stamped(&plain, Some("prod"), Some("new"), Some(&stored));
        assert_eq!(again, stored);
        let changed = record(json!({"team": "dogs"}));
        let next = stamped(&changed, Some("prod"), Some("new"), Some(&stored));
        assert_eq!(origin(&next).unwrap().commit.as_deref(), Some("new"));
    }

    #[test]
    fn only_the_owner_writes_without_force() {
        let owned = record(json!({SOURCE_ANNOTATION: "a"}));
        assert_eq!(refusal("Network/n", &owned, Some("a")), None);
        let other = refusal("Network/n", &owned, Some("b")).unwrap();
        assert!(other.contains("owned by source \"a\""), "{other}");
        let bare = refusal("Network/n", &owned, None).unwrap();
        assert!(bare.contains("a bare apply"), "{bare}");
        assert_eq!(refusal("Network/n", &record(json!({})), Some("b")), None);
    }
}
