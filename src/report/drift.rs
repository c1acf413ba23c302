//! Renders a drift report as a table, JSON, or Markdown fit for a pull request.

use std::fmt::Write as _;

use serde_json::Value;

use super::table::Table;
use crate::plan::drift::{DriftReport, ObjectState};

/// A value as reports show it: strings unquoted, `<unset>` when absent.
pub(super) fn show(v: Option<&Value>) -> String {
    match v {
        None => "<unset>".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn state(s: ObjectState) -> &'static str {
    match s {
        ObjectState::Missing => "missing",
        ObjectState::Changed => "changed",
        ObjectState::Orphan => "orphan",
    }
}

/// One row per differing field (or per missing/orphan object, or per record error).
pub fn table(report: &DriftReport) -> String {
    let mut t = Table::new(["RECORD", "OBJECT", "STATE", "FIELD", "DESIRED", "LIVE"]);
    for r in &report.records {
        let record = format!("{}/{}", r.kind, r.name);
        if let Some(err) = &r.error {
            t.row([record.as_str(), "-", "error", "-", "-", err.as_str()]);
        }
        for o in &r.objects {
            let object = format!("{} {}", o.object, o.name);
            if o.fields.is_empty() {
                t.row([record.as_str(), &object, state(o.state), "-", "-", "-"]);
            }
            for f in &o.fields {
                t.row([
                    record.clone(),
                    object.clone(),
                    state(o.state).to_string(),
                    f.path.clone(),
                    show(f.desired.as_ref()),
                    show(f.live.as_ref()),
                ]);
            }
        }
    }
    if t.is_empty() {
        return "No drift.\n".to_string();
    }
    t.render()
}

/// The report as pretty JSON.
pub fn json(report: &DriftReport) -> String {
    let mut s = serde_json::to_string_pretty(report).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// A Markdown section per drifted record, with a table of its fields.
pub fn markdown(report: &DriftReport) -> String {
    let drifted: Vec<_> = report.records.iter().filter(|r| r.has_drift()).collect();
    if drifted.is_empty() {
        return "### Drift\n\nNo drift: the swarm matches the desired state.\n".to_string();
    }
    let mut out = format!(
        "### Drift\n\n{} record(s) differ from the swarm.\n",
        drifted.len()
    );
    for r in drifted {
        let _ = write!(out, "\n#### `{}/{}`\n\n", r.kind, r.name);
        if let Some(err) = &r.error {
            let _ = writeln!(out, "Could not compare: {}\n", md_cell(err));
        }
        if r.objects.is_empty() {
            continue;
        }
        out.push_str("| object | state | field | desired | live |\n|---|---|---|---|---|\n");
        for o in &r.objects {
            let object = format!("{} `{}`", o.object, o.name);
            if o.fields.is_empty() {
                let _ = writeln!(out, "| {object} | {} | | | |", state(o.state));
            }
            for f in &o.fields {
                let _ = writeln!(
                    out,
                    "| {object} | {} | `{}` | `{}` | `{}` |",
                    state(o.state),
                    md_cell(&f.path),
                    md_cell(&show(f.desired.as_ref())),
                    md_cell(&show(f.live.as_ref())),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::diff::FieldDiff;
    use crate::plan::drift::{ObjectDrift, RecordDrift};
    use serde_json::json;

    fn report() -> DriftReport {
        DriftReport {
            records: vec![RecordDrift {
                kind: "Stack".into(),
                name: "web".into(),
                objects: vec![
                    ObjectDrift {
                        object: "service".into(),
                        name: "web_api".into(),
                        state: ObjectState::Changed,
                        fields: vec![FieldDiff {
                            path: "services.api.deploy.replicas".into(),
                            desired: Some(json!(3)),
                            live: Some(json!(1)),
                        }],
                    },
                    ObjectDrift {
                        object: "service".into(),
                        name: "web_old".into(),
                        state: ObjectState::Orphan,
                        fields: vec![],
                    },
                ],
                error: None,
            }],
        }
    }

    #[test]
    fn table_lists_each_field_and_orphan() {
        let t = table(&report());
        assert!(t.contains("services.api.deploy.replicas"), "{t}");
        assert!(t.contains("orphan"), "{t}");
    }

    #[test]
    fn markdown_has_a_section_and_a_row_per_field() {
        let md = markdown(&report());
        assert!(md.contains("#### `Stack/web`"), "{md}");
        assert!(
            md.contains(
                "| service `web_api` | changed | `services.api.deploy.replicas` | `3` | `1` |"
            ),
            "{md}"
        );
    }

    #[test]
    fn no_drift_says_so() {
        assert_eq!(table(&DriftReport::default()), "No drift.\n");
        assert!(markdown(&DriftReport::default()).contains("No drift"));
    }
}
