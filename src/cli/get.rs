//! `get`, `describe`, `delete` and `events`: reading and removing records.

use std::path::PathBuf;

use futures::StreamExt;
use serde_json::Value;

use crate::api::Kind;
use crate::controllers::status::Status;
use crate::report::table::Table;
use crate::store::{Event, Store, StoredRecord};

use super::{Failure, GlobalOpts, Output, parse_kind};

fn status_of(value: Option<crate::store::Versioned>) -> Option<Status> {
    value.and_then(|v| serde_json::from_value(v.value).ok())
}

fn age(t: jiff::Timestamp) -> String {
    let secs = jiff::Timestamp::now().as_second() - t.as_second();
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// What `get -o wide` adds about a record's status, by kind.
fn detail(status: &Status) -> String {
    match &status.database_user {
        Some(user) => format!("password {}", user.summary()),
        None => String::new(),
    }
}

/// A record as `get -o yaml|json` prints it: its status beside its spec, as
/// kubectl shows it (`apply` reads such a record without the status).
async fn with_status(store: &Store, record: &StoredRecord) -> Result<Value, Failure> {
    let mut value = record.versioned.value.clone();
    let status = store
        .get_status(&record.kind, &record.name)
        .await
        .map_err(Failure::error)?;
    if let (Value::Object(fields), Some(status)) = (&mut value, status) {
        fields.insert("status".to_owned(), status.value);
    }
    Ok(value)
}

/// Runs `get`: records (all, of a kind, or one) with their status.
///
/// # Errors
/// An unknown kind (exit 64), a missing named record or etcd failures (exit 1).
pub async fn get(
    global: &GlobalOpts,
    kind: Option<&str>,
    name: Option<&str>,
    output: Output,
) -> Result<u8, Failure> {
    if kind.is_some_and(super::sources::is_sources) {
        return super::sources::get(global, name, output).await;
    }
    let kind = kind.map(parse_kind).transpose()?;
    let store = global.store().await?;
    let (records, _) = store
        .list_records(kind.map(Kind::as_str))
        .await
        .map_err(Failure::error)?;
    let records: Vec<_> = records
        .into_iter()
        .filter(|r| name.is_none_or(|n| r.name == n))
        .collect();
    if let (Some(n), true) = (name, records.is_empty()) {
        let k = kind.map_or("record", Kind::as_str);
        return Err(Failure::Error(format!("{k} {n:?} not found")));
    }
    match output {
        Output::Json => {
            let mut values = Vec::with_capacity(records.len());
            for r in &records {
                values.push(with_status(&store, r).await?);
            }
            let out = if name.is_some() {
                serde_json::to_string_pretty(&values[0])
            } else {
                serde_json::to_string_pretty(&values)
            };
            println!("{}", out.map_err(Failure::error)?);
        }
        Output::Yaml => {
            for r in &records {
                let value = with_status(&store, r).await?;
                let yaml = serde_saphyr::to_string(&value).map_err(Failure::error)?;
                print!("---\n{yaml}");
            }
        }
        Output::Table | Output::Wide => {
            let wide = output == Output::Wide;
            let mut header = vec!["KIND", "NAME", "PHASE", "GENERATION", "OBSERVED", "AGE"];
            if wide {
                header.extend(["SOURCE", "COMMIT"]);
            }
            header.push("MESSAGE");
            header.extend(wide.then_some("DETAIL"));
            let mut t = Table::new(header);
            for r in &records {
                let status = status_of(
                    store
                        .get_status(&r.kind, &r.name)
                        .await
                        .map_err(Failure::error)?,
                );
                let (phase, observed, updated, message) = match &status {
                    Some(s) => (
                        s.phase.to_string(),
                        s.observed_revision.to_string(),
                        age(s.updated_at),
                        s.message.clone(),
                    ),
                    None => ("-".into(), "-".into(), "-".into(), String::new()),
                };
                let mut row = vec![
                    r.kind.clone(),
                    r.name.clone(),
                    phase,
                    r.versioned.mod_revision.to_string(),
                    observed,
                    updated,
                ];
                if wide {
                    let origin = status.as_ref().and_then(|s| s.source.as_ref());
                    row.push(origin.map_or_else(|| "-".into(), |o| o.source.clone()));
                    row.push(
                        origin
                            .and_then(|o| o.commit.as_deref())
                            .map_or_else(|| "-".into(), |c| short(c).to_owned()),
                    );
                }
                row.push(message);
                if wide {
                    row.push(status.as_ref().map(detail).unwrap_or_default());
                }
                t.row(row);
            }
            if t.is_empty() {
                println!("No records.");
            } else {
                print!("{}", t.render());
            }
        }
    }
    Ok(0)
}

/// Runs `describe`: the record, its status, the objects it owns and its recent events.
///
/// # Errors
/// An unknown kind (exit 64), a missing record or etcd failures (exit 1).
pub async fn describe(global: &GlobalOpts, kind: &str, name: &str) -> Result<u8, Failure> {
    let kind = parse_kind(kind)?;
    let store = global.store().await?;
    let record = store
        .get_record(kind.as_str(), name)
        .await
        .map_err(Failure::error)?
        .ok_or_else(|| Failure::Error(format!("{kind} {name:?} not found")))?;
    println!("Kind:        {kind}");
    println!("Name:        {name}");
    println!("Generation:  {}", record.mod_revision);
    let status = status_of(
        store
            .get_status(kind.as_str(), name)
            .await
            .map_err(Failure::error)?,
    );
    match &status {
        None => println!("Status:      not observed yet"),
        Some(s) => {
            println!("Phase:       {}", s.phase);
            println!("Observed:    {}", s.observed_revision);
            if let Some(origin) = &s.source {
                println!("Source:      {}", origin.source);
                println!("Commit:      {}", origin.commit.as_deref().unwrap_or("-"));
            }
            if !s.message.is_empty() {
                println!("Message:     {}", s.message);
            }
            if !s.conditions.is_empty() {
                println!("Conditions:");
                for c in &s.conditions {
                    let mark = if c.ready { "ok" } else { "--" };
                    println!("  [{mark}] {}: {}", c.type_, c.message);
                }
            }
            if !s.owned.is_empty() {
                println!("Owned objects:");
                for o in &s.owned {
                    println!("  {} {} ({})", o.object, o.name, o.id);
                }
            }
            if let Some(user) = &s.database_user {
                println!("Password:    {}", user.summary());
            }
            if !s.drift.is_empty() {
                println!("Last drift:");
                for d in &s.drift {
                    println!("  {} {}: {:?}", d.object, d.name, d.state);
                }
            }
        }
    }
    let spec = serde_saphyr::to_string(&record.value).map_err(Failure::error)?;
    println!("Record:");
    for line in spec.lines() {
        println!("  {line}");
    }
    let events = store
        .list_events(Some((kind.as_str(), name)))
        .await
        .map_err(Failure::error)?;
    print_events(
        events
            .iter()
            .map(|(_, _, e)| (format!("{kind}/{name}"), e))
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev(),
    );
    Ok(0)
}

/// A commit id as tables show it: 12 characters, as `git log --oneline` does for big repositories.
pub(super) fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

pub(super) fn print_events<'a>(events: impl Iterator<Item = (String, &'a Event)>) {
    // A repeated event is one line: when it last happened and how often.
    let mut t = Table::new(["LAST SEEN", "RECORD", "TYPE", "REASON", "COUNT", "MESSAGE"]);
    for (record, e) in events {
        t.row([
            e.last_time().to_string(),
            record,
            e.type_.clone(),
            e.reason.clone(),
            e.count.to_string(),
            e.message.clone(),
        ]);
    }
    if t.is_empty() {
        println!("Events: none");
    } else {
        println!("Events:");
        print!("{}", t.render());
    }
}

/// Runs `delete`: records by kind and name, or every record in files.
///
/// # Errors
/// Bad usage or invalid files (exit 64), a missing record or etcd failures (exit 1).
pub async fn delete(
    global: &GlobalOpts,
    kind: Option<&str>,
    name: Option<&str>,
    files: &[PathBuf],
) -> Result<u8, Failure> {
    let targets: Vec<(String, String)> = match (kind, name, files.is_empty()) {
        (Some(k), Some(n), true) => vec![(parse_kind(k)?.as_str().to_string(), n.to_string())],
        (None, None, false) => super::apply::load(files)?
            .iter()
            .map(|l| {
                (
                    l.record.kind.as_str().to_string(),
                    l.record.metadata.name.clone(),
                )
            })
            .collect(),
        _ => {
            return Err(Failure::Invalid(
                "error: delete takes KIND NAME or -f PATH..".into(),
            ));
        }
    };
    let store = global.store().await?;
    let deletes = targets
        .iter()
        .map(|(k, n)| (k.clone(), n.clone(), None))
        .collect();
    let found = store
        .delete_records(deletes)
        .await
        .map_err(Failure::error)?;
    let mut missing = false;
    for ((k, n), existed) in targets.iter().zip(found) {
        if existed {
            println!("{k}/{n} deleted");
        } else {
            missing = true;
            eprintln!("{k}/{n} not found");
        }
    }
    Ok(u8::from(missing))
}

/// Runs `events`: the event log of every record or of one, optionally following it.
///
/// # Errors
/// A malformed target (exit 64) or etcd failures (exit 1).
pub async fn events(global: &GlobalOpts, target: Option<&str>, watch: bool) -> Result<u8, Failure> {
    let filter = target
        .map(|t| {
            let (k, n) = t
                .split_once('/')
                .ok_or_else(|| Failure::Invalid(format!("error: {t:?}: expected KIND/NAME")))?;
            // A GitOps source's events are filed under the pseudo-kind `Source`.
            let kind = if super::sources::is_sources(k) {
                crate::gitops::sync::SOURCE_KIND
            } else {
                parse_kind(k)?.as_str()
            };
            Ok::<_, Failure>((kind, n.to_string()))
        })
        .transpose()?;
    let store: Store = global.store().await?;
    let filter_ref = filter.as_ref().map(|(k, n)| (*k, n.as_str()));
    let (events, revision) = store
        .list_events_at_revision(filter_ref)
        .await
        .map_err(Failure::error)?;
    print_events(events.iter().map(|(k, n, e)| (format!("{k}/{n}"), e)));
    if watch {
        // From right after the listing: an event written meanwhile is shown once,
        // and none of those listed is shown again.
        let mut stream = std::pin::pin!(store.watch_events(filter_ref, revision + 1));
        while let Some(item) = stream.next().await {
            let (k, n, e) = item.map_err(Failure::error)?;
            println!(
                "{}  {k}/{n}  {}  {}  {}  {}",
                e.last_time(),
                e.type_,
                e.reason,
                e.count,
                e.message
            );
        }
    }
    Ok(0)
}
