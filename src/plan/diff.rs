//! Field-by-field comparison of a desired object with its live counterpart,
//! normalised for the defaults Docker fills in.
//!
//! The same comparison decides whether the reconciler writes and renders the
//! drift report, so "what would change" and "what differs" never disagree.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One field whose live value differs from the desired one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldDiff {
    /// Dotted path, with `[i]` for list items (`TaskTemplate.ContainerSpec.Env[0]`).
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<Value>,
}

/// A value Docker fills in when the desired spec leaves a field out.
///
/// `path` is dotted; `*` matches any one segment (a key or a list index).
/// `value: None` accepts whatever Docker put there (server-chosen fields).
#[derive(Debug, Clone, Copy)]
pub struct DaemonDefault {
    pub path: &'static str,
    pub value: Option<&'static str>,
}

impl DaemonDefault {
    fn matches(&self, path: &[Segment<'_>], live: &Value) -> bool {
        let pattern: Vec<&str> = self.path.split('.').collect();
        pattern.len() == path.len()
            && pattern.iter().zip(path).all(|(p, s)| *p == "*" || s.is(p))
            && self.value.is_none_or(|want| value_text(live) == want)
    }
}

/// Compares `desired` with `live` and returns every differing field.
///
/// Fields only the live side has are drift unless they are empty (null, `{}`,
/// `[]`, `""`, `0`, `false`, or objects of only such values) or listed in
/// `defaults`. An empty desired value equals a missing live one. Lists differ
/// item by item when their lengths match, and as a whole otherwise.
pub fn diff(desired: &Value, live: &Value, defaults: &[DaemonDefault]) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    walk(desired, live, &mut Vec::new(), defaults, &mut out);
    out
}

#[derive(Clone, Copy)]
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

impl Segment<'_> {
    fn is(&self, pattern: &str) -> bool {
        match self {
            Segment::Key(k) => *k == pattern,
            Segment::Index(i) => pattern.parse() == Ok(*i),
        }
    }
}

fn render(path: &[Segment<'_>]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Segment::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Segment::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// True for values Docker treats as "not set".
pub fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_empty),
    }
}

fn walk<'a>(
    desired: &'a Value,
    live: &'a Value,
    path: &mut Vec<Segment<'a>>,
    defaults: &[DaemonDefault],
    out: &mut Vec<FieldDiff>,
) {
    match (desired, live) {
        (Value::Object(d), Value::Object(_) | Value::Null) => {
            for (k, dv) in d {
                path.push(Segment::Key(k));
                walk(
                    dv,
                    live.get(k.as_str()).unwrap_or(&Value::Null),
                    path,
                    defaults,
                    out,
                );
                path.pop();
            }
            let live_only = live.as_object().into_iter().flatten();
            for (k, lv) in live_only.filter(|(k, _)| !d.contains_key(*k)) {
                path.push(Segment::Key(k));
                walk_live_only(lv, path, defaults, out);
                path.pop();
            }
        }
        (Value::Array(d), Value::Array(l)) if d.len() == l.len() => {
            for (i, (dv, lv)) in d.iter().zip(l).enumerate() {
                path.push(Segment::Index(i));
                walk(dv, lv, path, defaults, out);
                path.pop();
            }
        }
        (d, Value::Null) if is_empty(d) => {}
        (Value::Null, l) => walk_live_only(l, path, defaults, out),
        (d, l) if same_scalar(d, l) => {}
        // An empty desired value (`Order: ""`) is the daemon's default once stored.
        (d, l) if is_empty(d) && defaults.iter().any(|x| x.matches(path, l)) => {}
        (d, l) => out.push(FieldDiff {
            path: render(path),
            desired: Some(d.clone()),
            live: (!l.is_null()).then(|| l.clone()),
        }),
    }
}

/// Numbers compare by value so that `1` and `1.0` (or u64 vs i64) agree.
fn same_scalar(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn walk_live_only<'a>(
    live: &'a Value,
    path: &mut Vec<Segment<'a>>,
    defaults: &[DaemonDefault],
    out: &mut Vec<FieldDiff>,
) {
    if is_empty(live) || defaults.iter().any(|d| d.matches(path, live)) {
        return;
    }
    if let Value::Object(l) = live {
        // Recurse so that defaults deeper down (UpdateConfig.Order) still apply.
        for (k, lv) in l {
            path.push(Segment::Key(k));
            walk_live_only(lv, path, defaults, out);
            path.pop();
        }
        return;
    }
    out.push(FieldDiff {
        path: render(path),
        desired: None,
        live: Some(live.clone()),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEFAULTS: &[DaemonDefault] = &[
        DaemonDefault {
            path: "EndpointSpec.Mode",
            value: Some("vip"),
        },
        DaemonDefault {
            path: "Options.*",
            value: None,
        },
    ];

    #[test]
    fn equal_values_have_no_diff() {
        let v = json!({"a": {"b": [1, 2]}, "c": "x"});
        assert!(diff(&v, &v, DEFAULTS).is_empty());
    }

    #[test]
    fn changed_scalar_is_reported_with_its_path() {
        let d = json!({"Mode": {"Replicated": {"Replicas": 3}}});
        let l = json!({"Mode": {"Replicated": {"Replicas": 1}}});
        assert_eq!(
            diff(&d, &l, DEFAULTS),
            vec![FieldDiff {
                path: "Mode.Replicated.Replicas".into(),
                desired: Some(json!(3)),
                live: Some(json!(1)),
            }]
        );
    }

    #[test]
    fn docker_defaults_and_empty_live_fields_are_not_drift() {
        let d = json!({"Name": "x"});
        let l = json!({
            "Name": "x",
            "EndpointSpec": {"Mode": "vip"},
            "Resources": {"Limits": {}, "Reservations": {}},
            "ForceUpdate": 0,
            "Options": {"com.docker.network.driver.overlay.vxlanid_list": "4097"},
        });
        assert!(diff(&d, &l, DEFAULTS).is_empty());
    }

    #[test]
    fn an_empty_desired_value_equals_the_default_the_daemon_stored() {
        let d = json!({"EndpointSpec": {"Mode": ""}});
        let l = json!({"EndpointSpec": {"Mode": "vip"}});
        assert!(diff(&d, &l, DEFAULTS).is_empty());
        let other = json!({"EndpointSpec": {"Mode": "dnsrr"}});
        assert_eq!(diff(&d, &other, DEFAULTS).len(), 1);
    }

    #[test]
    fn a_non_default_live_only_field_is_drift() {
        let d = json!({"Name": "x"});
        let l = json!({"Name": "x", "EndpointSpec": {"Mode": "dnsrr"}});
        let diffs = diff(&d, &l, DEFAULTS);
        assert_eq!(diffs.len(), 1);
        assert_eq!(diffs[0].path, "EndpointSpec.Mode");
        assert_eq!(diffs[0].desired, None);
    }

    #[test]
    fn an_added_label_is_drift() {
        let d = json!({"Labels": {"a": "1"}});
        let l = json!({"Labels": {"a": "1", "b": "2"}});
        let diffs = diff(&d, &l, DEFAULTS);
        assert_eq!(diffs.len(), 1);
        assert_eq!(diffs[0].path, "Labels.b");
    }

    #[test]
    fn lists_of_different_length_differ_as_a_whole() {
        let d = json!({"Env": ["A=1"]});
        let l = json!({"Env": ["A=1", "B=2"]});
        let diffs = diff(&d, &l, DEFAULTS);
        assert_eq!(diffs.len(), 1);
        assert_eq!(diffs[0].path, "Env");
        assert_eq!(diffs[0].live, Some(json!(["A=1", "B=2"])));
    }

    #[test]
    fn list_items_differ_by_index() {
        let d = json!({"Env": ["A=1", "B=2"]});
        let l = json!({"Env": ["A=1", "B=3"]});
        assert_eq!(diff(&d, &l, DEFAULTS)[0].path, "Env[1]");
    }

    #[test]
    fn empty_desired_equals_missing_live_and_numbers_compare_by_value() {
        let d = json!({"Labels": {}, "Replicas": 2, "Init": false});
        let l = json!({"Replicas": 2.0});
        assert!(diff(&d, &l, DEFAULTS).is_empty());
    }

    #[test]
    fn a_missing_live_object_is_reported() {
        let d = json!({"Name": "x", "Port": 80});
        let diffs = diff(&d, &Value::Null, DEFAULTS);
        assert_eq!(diffs.len(), 2);
        assert!(diffs.iter().all(|f| f.live.is_none()));
    }
}
