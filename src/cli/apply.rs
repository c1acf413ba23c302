//! `apply`: validate record files, then write them to etcd (or, with `--dry-run`, say what would change).
//!
//! # Guarantees
//! Every record of every file is validated before anything is written: one bad
//! record fails the whole apply with exit code 64 and no key is touched.
//! Records that did not change are not written, so their `mod_revision` (the
//! record's generation) stays as it was.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

use crate::api::load::{LoadedRecord, SECRET_REFERENCE_KEY, load_paths};
use crate::gitops::owner;
use crate::store::{Expect, Keyring, PutOutcome, RecordPut, RepoRef, SourceRecord, Store};

use super::{Failure, GlobalOpts, with_digest_key};

/// The largest record `apply` writes, as stored (JSON). etcd refuses requests
/// over 1.5 MiB; a record this size still leaves room for the transaction.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Options of `apply`.
#[derive(Debug, Clone)]
pub struct ApplyOpts {
    pub files: Vec<PathBuf>,
    pub source: Option<String>,
    pub prune: bool,
    pub commit: Option<String>,
    pub dry_run: bool,
    /// Overwrite records another source owns (they become this apply's).
    pub force: bool,
    /// The repository a sync applies from, kept in the source's record.
    pub repo: Option<RepoRef>,
}

/// Loads and validates every record in `files`, with apply's environment for
/// `${VAR}` interpolation; prints warnings on stderr.
///
/// # Errors
/// Invalid records, with file, document, record and field named (exit 64).
pub fn load(files: &[PathBuf]) -> Result<Vec<LoadedRecord>, Failure> {
    let env = |name: &str| std::env::var(name).ok();
    let loaded = load_paths(files, &env).map_err(|e| Failure::Invalid(e.to_string()))?;
    for l in &loaded {
        for w in &l.warnings {
            eprintln!(
                "warning: {}: document {} ({}/{}): {w}",
                l.file.display(),
                l.index + 1,
                l.record.kind,
                l.record.metadata.name
            );
        }
    }
    Ok(loaded)
}

/// Refuses records that carry a secret value when no key can seal it.
pub(super) fn require_key(loaded: &[LoadedRecord], keyed: bool) -> Result<(), Failure> {
    match loaded.iter().find(|l| !l.secrets.is_empty()) {
        Some(l) if !keyed => Err(Failure::Invalid(format!(
            "error: {}: {}/{} carries a secret value: --secret-key-file (SWARMKEEPER_SECRET_KEY_FILE) is required to store it encrypted",
            l.file.display(),
            l.record.kind,
            l.record.metadata.name
        ))),
        _ => Ok(()),
    }
}

/// The record values to store: secret material replaced by keyed digests, so a
/// changed secret changes the record (and its generation) without revealing it.
/// Without a keyring (an unkeyed dry run) the records go without digests.
pub(super) fn stored_values(loaded: &[LoadedRecord], keyring: Option<&Keyring>) -> Vec<Value> {
    loaded
        .iter()
        .map(|l| {
            let mut value = l.record.to_value();
            if let Some(keyring) = keyring {
                for m in &l.secrets {
                    let digest = format!("hmac-sha256:{}", keyring.digest(m.value.expose()));
                    set_digest(&mut value, &m.store_key, &digest);
                }
            }
            value
        })
        .collect()
}

/// The keys with the stored digest key, read only when a record needs digests:
/// records without secret values apply whatever the keys.
pub(super) async fn digest_keyring(
    store: &Store,
    keys: Option<Keyring>,
    carries_secrets: bool,
) -> Result<Option<Keyring>, Failure> {
    if carries_secrets {
        with_digest_key(store, keys, false).await
    } else {
        Ok(keys)
    }
}

/// Refuses records too large for etcd, naming each with the limit.
fn check_sizes(loaded: &[LoadedRecord], values: &[Value]) -> Result<(), Failure> {
    let problems: Vec<String> = loaded
        .iter()
        .zip(values)
        .filter_map(|(l, value)| {
            let size = serde_json::to_vec(value).map_or(usize::MAX, |v| v.len());
            (size > MAX_RECORD_BYTES).then(|| {
                format!(
                    "error: {}: document {} ({}): the record is {size} bytes as stored, over the \
                     limit of {MAX_RECORD_BYTES} bytes (1 MiB; etcd refuses requests over 1.5 MiB)",
                    l.file.display(),
                    l.index + 1,
                    record_id(l)
                )
            })
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::Invalid(problems.join("\n")))
    }
}

/// Puts `digest` next to the reference to `store_key`: a Secret's
/// `spec.value.digest`, or an `x-swarmkeeper-digest` beside a compose
/// secret's `x-swarmkeeper-secret`.
fn set_digest(value: &mut Value, store_key: &str, digest: &str) {
    let is_secret_record = value.pointer("/metadata/name").and_then(Value::as_str)
        == Some(store_key)
        && value.get("kind").and_then(Value::as_str) == Some("Secret");
    if is_secret_record {
        if let Some(v) = value
            .pointer_mut("/spec/value")
            .and_then(Value::as_object_mut)
        {
            v.insert("digest".into(), Value::String(digest.into()));
        }
        return;
    }
    let secrets = value
        .pointer_mut("/spec/compose/secrets")
        .and_then(Value::as_object_mut);
    for secret in secrets.into_iter().flat_map(|m| m.values_mut()) {
        if let Some(obj) = secret.as_object_mut()
            && obj.get(SECRET_REFERENCE_KEY).and_then(Value::as_str) == Some(store_key)
        {
            obj.insert(DIGEST_KEY.into(), Value::String(digest.into()));
        }
    }
}

/// Where a compose secret's digest goes; compose accepts `x-` keys.
const DIGEST_KEY: &str = "x-swarmkeeper-digest";

pub(super) fn record_id(l: &LoadedRecord) -> String {
    format!("{}/{}", l.record.kind, l.record.metadata.name)
}

/// Runs `apply`: validate everything, then write secrets, records and the
/// source; one line per record on stdout.
///
/// # Errors
/// Invalid records (exit 64, nothing written), records another source owns
/// (exit 1, nothing written) or etcd failures (exit 1).
pub async fn apply(global: &GlobalOpts, opts: &ApplyOpts) -> Result<u8, Failure> {
    let loaded = load(&opts.files)?;
    let keys = global.key_files()?;
    if let Some(source) = &opts.source
        && !crate::api::is_valid_name(source)
    {
        return Err(Failure::Invalid(format!(
            "error: --source {source:?} is not a valid name ({})",
            crate::api::NAME_PATTERN
        )));
    }
    let store = global.store().await?;
    for line in apply_loaded(&store, keys, &loaded, opts).await? {
        println!("{line}");
    }
    Ok(0)
}

/// Writes validated records (secrets first, then the records, then the
/// source's bookkeeping) and says what came of each: `Kind/name created`,
/// `configured`, `unchanged` or `deleted`. `sync` applies each commit so.
///
/// # Guarantees
/// Nothing is written when a record carries a secret value and no key is
/// given, when a record is too large, or when a record belongs to another
/// source (or to a source, for a bare apply) without `force`. Each record is
/// written only if it is still as it was read, so an owner that changes
/// meanwhile is never overwritten. `prune` deletes only records the source
/// still owns.
///
/// # Errors
/// As [`apply`].
pub async fn apply_loaded(
    store: &Store,
    keys: Option<Keyring>,
    loaded: &[LoadedRecord],
    opts: &ApplyOpts,
) -> Result<Vec<String>, Failure> {
    // A dry run without the key still validates everything; it only cannot
    // tell whether a secret value changed.
    let unkeyed_dry_run = opts.dry_run && keys.is_none();
    if !unkeyed_dry_run {
        require_key(loaded, keys.is_some())?;
    }
    let carries_secrets = loaded.iter().any(|l| !l.secrets.is_empty());
    let keyring = digest_keyring(store, keys, carries_secrets).await?;
    let mut values = stored_values(loaded, keyring.as_ref());
    check_sizes(loaded, &values)?;
    let suffix = if opts.dry_run { " (dry run)" } else { "" };
    let source = opts.source.as_deref();

    let mut existing = Vec::with_capacity(loaded.len());
    for l in loaded {
        let (kind, name) = l.record.key();
        let stored = store
            .get_record(kind.as_str(), name)
            .await
            .map_err(Failure::error)?;
        existing.push(stored);
    }
    if !opts.force {
        let refused: Vec<String> = loaded
            .iter()
            .zip(&existing)
            .filter_map(|(l, stored)| {
                let stored = stored.as_ref()?;
                owner::refusal(&record_id(l), &stored.value, source)
            })
            .collect();
        if !refused.is_empty() {
            return Err(Failure::Error(format!(
                "nothing applied: {}",
                refused.join("; ")
            )));
        }
    }
    let stamp = |values: Vec<Value>| -> Vec<Value> {
        values
            .iter()
            .zip(&existing)
            .map(|(v, stored)| {
                let stored = stored.as_ref().map(|s| &s.value);
                owner::stamped(v, source, opts.commit.as_deref(), stored)
            })
            .collect()
    };
    values = stamp(values);

    let previous = match source {
        Some(s) => store.get_source(s).await.map_err(Failure::error)?,
        None => None,
    };
    let current: BTreeSet<String> = loaded.iter().map(record_id).collect();
    // Records the source applied before and not now: still its own (pruned
    // with --prune, else kept on its list), or gone or taken over (forgotten).
    let mut leftovers = Vec::new();
    for id in previous.iter().flat_map(|p| &p.records) {
        let Some((kind, name)) = id.split_once('/').filter(|_| !current.contains(id)) else {
            continue;
        };
        let stored = store.get_record(kind, name).await.map_err(Failure::error)?;
        if let Some(stored) = stored.filter(|s| owner::owner(&s.value) == source) {
            leftovers.push((id.clone(), stored.mod_revision));
        }
    }
    let pruned: Vec<(String, i64)> = if opts.prune {
        std::mem::take(&mut leftovers)
    } else {
        Vec::new()
    };

    let mut lines = Vec::new();
    if opts.dry_run {
        for ((l, value), stored) in loaded.iter().zip(&values).zip(&existing) {
            let verb = match stored {
                None => "created",
                Some(_) if unkeyed_dry_run && !l.secrets.is_empty() => {
                    "valid (a secret value is compared only with --secret-key-file)"
                }
                Some(v) if &v.value == value => "unchanged",
                Some(_) => "configured",
            };
            lines.push(format!("{} {verb}{suffix}", record_id(l)));
        }
        lines.extend(pruned.iter().map(|(r, _)| format!("{r} deleted{suffix}")));
        return Ok(lines);
    }

    if let Some(keyring) = keyring.filter(|_| carries_secrets) {
        // The digests were made with the stored digest key or, while none is
        // stored, the one the keys imply: store it now, before a record uses it,
        // so a later key rotation keeps every digest (and every service) as it is.
        let digest = store
            .digest_key(&keyring, true)
            .await
            .map_err(Failure::error)?;
        let keyring = keyring.with_digest_key(digest);
        values = stamp(stored_values(loaded, Some(&keyring)));
        // Secrets first: the controller must never see a record whose value is not stored yet.
        write_secrets(store, &keyring, loaded).await?;
    }
    let puts = loaded
        .iter()
        .zip(values)
        .zip(&existing)
        .map(|((l, value), stored)| {
            let (kind, name) = l.record.key();
            RecordPut {
                kind: kind.as_str().to_string(),
                name: name.to_string(),
                value,
                // As read when ownership was checked: a record that changed
                // hands meanwhile is refused, not overwritten.
                expect: stored
                    .as_ref()
                    .map_or(Expect::Absent, |s| Expect::ModRevision(s.mod_revision)),
            }
        })
        .collect();
    let outcomes = store.put_records(puts).await.map_err(Failure::error)?;
    for (l, outcome) in loaded.iter().zip(outcomes) {
        let verb = match outcome {
            PutOutcome::Created => "created",
            PutOutcome::Configured => "configured",
            PutOutcome::Unchanged => "unchanged",
        };
        lines.push(format!("{} {verb}", record_id(l)));
    }
    delete_ids(store, &pruned).await?;
    lines.extend(pruned.iter().map(|(r, _)| format!("{r} deleted")));
    if let Some(source) = source {
        // Without --prune the records of earlier applies are still the source's:
        // forgetting them here would keep a later --prune from ever deleting them.
        let mut owned = current;
        owned.extend(leftovers.into_iter().map(|(id, _)| id));
        let previous = previous.unwrap_or_else(SourceRecord::empty);
        let record = SourceRecord {
            records: owned.into_iter().collect(),
            commit: opts.commit.clone(),
            applied_at: jiff::Timestamp::now(),
            seen: opts.commit.clone().or(previous.seen),
            error: None,
            repo: opts.repo.clone().or(previous.repo),
        };
        store
            .put_source(source, &record)
            .await
            .map_err(Failure::error)?;
    }
    Ok(lines)
}

/// Seals and stores every secret value that is not stored as it is already.
async fn write_secrets(
    store: &Store,
    keyring: &Keyring,
    loaded: &[LoadedRecord],
) -> Result<(), Failure> {
    for m in loaded.iter().flat_map(|l| &l.secrets) {
        // Sealing draws a fresh nonce: rewriting an unchanged value would churn
        // etcd on every GitOps run. A value sealed with a previous key is
        // rewritten, which moves it to the current key.
        let stored = store
            .get_secret(&m.store_key)
            .await
            .map_err(Failure::error)?;
        let unchanged = stored.is_some_and(|s| {
            keyring.is_current(&s) && keyring.open(&m.store_key, &s).ok().as_ref() == Some(&m.value)
        });
        if unchanged {
            continue;
        }
        let sealed = keyring.seal(&m.store_key, m.value.expose());
        store
            .put_secret(&m.store_key, &sealed)
            .await
            .map_err(Failure::error)?;
    }
    Ok(())
}

/// Deletes records given as `Kind/name`, each only at the revision it was read at.
async fn delete_ids(store: &Store, ids: &[(String, i64)]) -> Result<(), Failure> {
    let deletes = ids
        .iter()
        .filter_map(|(id, revision)| Some((id.split_once('/')?, *revision)))
        .map(|((k, n), revision)| (k.to_string(), n.to_string(), Some(revision)))
        .collect::<Vec<_>>();
    if deletes.is_empty() {
        return Ok(());
    }
    store
        .delete_records(deletes)
        .await
        .map(|_| ())
        .map_err(Failure::error)
}
