//! `get sources`: each GitOps source with the last commit seen, the last
//! applied, when, and why the last one seen is not applied.

use serde_json::Value;

use crate::report::table::Table;
use crate::store::SourceRecord;

use super::get::short;
use super::{Failure, GlobalOpts, Output};

/// Whether a KIND argument means the GitOps sources (`source`, `sources`, any case).
pub(super) fn is_sources(kind: &str) -> bool {
    kind.eq_ignore_ascii_case("source") || kind.eq_ignore_ascii_case("sources")
}

/// Runs `get sources [NAME]`.
///
/// # Errors
/// A missing named source or etcd failures (exit 1).
pub(super) async fn get(
    global: &GlobalOpts,
    name: Option<&str>,
    output: Output,
) -> Result<u8, Failure> {
    let store = global.store().await?;
    let sources: Vec<(String, SourceRecord)> = store
        .list_sources()
        .await
        .map_err(Failure::error)?
        .into_iter()
        .filter(|(n, _)| name.is_none_or(|want| want == n))
        .collect();
    if let (Some(n), true) = (name, sources.is_empty()) {
        return Err(Failure::Error(format!("source {n:?} not found")));
    }
    match output {
        Output::Json => {
            let values: Vec<Value> = sources.iter().map(|(n, r)| r.named_json(n)).collect();
            let out = match (name, values.first()) {
                (Some(_), Some(one)) => serde_json::to_string_pretty(one),
                _ => serde_json::to_string_pretty(&values),
            };
            println!("{}", out.map_err(Failure::error)?);
        }
        Output::Yaml => {
            for (n, r) in &sources {
                let yaml = serde_saphyr::to_string(&r.named_json(n)).map_err(Failure::error)?;
                print!("---\n{yaml}");
            }
        }
        Output::Table | Output::Wide => {
            let mut headers = vec!["SOURCE", "SEEN", "APPLIED", "APPLIED AT", "RECORDS"];
            if output == Output::Wide {
                headers.push("REPOSITORY");
            }
            headers.push("ERROR");
            let mut t = Table::new(headers);
            for (n, r) in &sources {
                let mut row = vec![
                    n.clone(),
                    r.seen.as_deref().map_or("-", short).to_owned(),
                    r.commit.as_deref().map_or("-", short).to_owned(),
                    if r.commit.is_some() || !r.records.is_empty() {
                        r.applied_at.to_string()
                    } else {
                        "-".into()
                    },
                    r.records.len().to_string(),
                ];
                if output == Output::Wide {
                    row.push(r.repo.as_ref().map_or_else(
                        || "-".into(),
                        |repo| format!("{} {} {}", repo.url, repo.branch, repo.path),
                    ));
                }
                row.push(
                    r.error
                        .as_ref()
                        .map_or_else(String::new, |e| e.message.clone()),
                );
                t.row(row);
            }
            if t.is_empty() {
                println!("No sources.");
            } else {
                print!("{}", t.render());
            }
        }
    }
    Ok(0)
}
