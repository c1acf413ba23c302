//! Desired records and their status: reads, lists, and compare-and-swap writes.
//!
//! A desired key's `mod_revision` is the record's generation, so a write of a
//! value that did not change is skipped: it must not look like a new
//! generation to the controller.

use std::collections::HashSet;

use etcd_client::{Compare, CompareOp, KeyValue, Txn, TxnOp, TxnOpResponse};
use serde_json::Value;

use super::keys::Section;
use super::txn::Write;
use super::{Store, StoreError};

/// etcd 3.4 refuses transactions with more than 128 operations (`--max-txn-ops`).
const MAX_TXN_OPS: usize = 128;
/// Below etcd's default `--max-request-bytes` (1.5 MiB), with room for the
/// compares and framing of a transaction.
const MAX_TXN_BYTES: usize = 1024 * 1024 + 256 * 1024;

/// A stored value with its etcd revisions.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    pub value: Value,
    /// The revision of the last write: the record's generation.
    pub mod_revision: i64,
    pub create_revision: i64,
}

/// A record with its kind and name.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    pub kind: String,
    pub name: String,
    pub versioned: Versioned,
}

/// What a write expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Whatever is there (still compared against what was read, so the
    /// reported outcome is never stale).
    Any,
    /// No record yet.
    Absent,
    /// The record at exactly this revision.
    ModRevision(i64),
}

/// One record to write.
#[derive(Debug, Clone)]
pub struct RecordPut {
    pub kind: String,
    pub name: String,
    pub value: Value,
    pub expect: Expect,
}

/// What a write did to one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    Configured,
    /// Same value as stored: nothing written, `mod_revision` kept.
    Unchanged,
}

/// A stored value. One that is not JSON (anyone with etcdctl can write one)
/// reads as `null`: the key still exists, so a listing still names it and
/// its record fails on its own ("a record must be a mapping") instead of
/// hiding every other record behind a decode error.
pub(crate) fn decode(kv: &KeyValue, key: &str) -> Versioned {
    let value = serde_json::from_slice(kv.value()).unwrap_or_else(|err| {
        tracing::warn!(key, %err, "stored value is not JSON; it reads as null");
        Value::Null
    });
    Versioned {
        value,
        mod_revision: kv.mod_revision(),
        create_revision: kv.create_revision(),
    }
}

/// Decodes listed key-values of `section`, skipping keys of another shape.
pub(crate) fn decode_records(
    store: &Store,
    section: Section,
    kvs: &[KeyValue],
) -> Vec<StoredRecord> {
    kvs.iter()
        .filter_map(|kv| {
            let key = String::from_utf8_lossy(kv.key());
            let (kind, name) = store.keys().parse_record(section, &key)?;
            Some(StoredRecord {
                kind,
                name,
                versioned: decode(kv, &key),
            })
        })
        .collect()
}

fn encode(key: &str, value: &Value) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Encode {
        key: key.to_owned(),
        source,
    })
}

/// The key-value of every key, `None` where absent, read in transactions of
/// at most [`MAX_TXN_OPS`] gets. A transaction whose answer is over what the
/// client accepts (records near the size cap) is read again in halves.
async fn read_many(store: &Store, keys: &[String]) -> Result<Vec<Option<KeyValue>>, StoreError> {
    let mut client = store.kv();
    let mut out = Vec::with_capacity(keys.len());
    let mut rest = keys;
    let mut limit = MAX_TXN_OPS;
    while !rest.is_empty() {
        let chunk = &rest[..limit.min(rest.len())];
        let gets: Vec<TxnOp> = chunk.iter().map(|k| TxnOp::get(k.as_str(), None)).collect();
        match client.txn(Txn::new().and_then(gets)).await {
            Ok(resp) => {
                out.extend(first_kvs(&resp.op_responses()));
                rest = &rest[chunk.len()..];
            }
            Err(err) if super::error::is_too_large(&err) && chunk.len() > 1 => {
                limit = chunk.len() / 2;
            }
            Err(source) => {
                return Err(StoreError::Get {
                    key: chunk[0].clone(),
                    source,
                });
            }
        }
    }
    Ok(out)
}

fn first_kvs(responses: &[TxnOpResponse]) -> impl Iterator<Item = Option<KeyValue>> + '_ {
    responses.iter().map(|r| match r {
        TxnOpResponse::Get(get) => get.kvs().first().cloned(),
        _ => None,
    })
}

/// A write or delete of one key, guarded by the revision it must still have.
struct Guarded {
    key: String,
    /// 0 for a key that must still be absent.
    revision: i64,
    op: TxnOp,
    /// What the operation adds to a request: its key and value.
    bytes: usize,
}

/// Runs guarded operations in transactions of at most [`MAX_TXN_OPS`].
///
/// Each transaction is atomic; a batch larger than one transaction is not,
/// so a concurrent writer can make a later chunk fail after earlier chunks
/// were written. The caller's expectations were all checked against one read
/// before anything is written, so a conflict here means a concurrent writer.
async fn run_guarded(store: &Store, ops: Vec<Guarded>, write: Write) -> Result<(), StoreError> {
    let mut ops = ops.into_iter().peekable();
    while ops.peek().is_some() {
        // etcd refuses a request over 1.5 MiB (`--max-request-bytes`): a chunk
        // ends before the record that would take it past that, or at 128 ops.
        let mut bytes = 0;
        let mut chunk: Vec<Guarded> = Vec::new();
        while let Some(next) = ops.next_if(|g| {
            chunk.is_empty() || (chunk.len() < MAX_TXN_OPS && bytes + g.bytes <= MAX_TXN_BYTES)
        }) {
            bytes += next.bytes;
            chunk.push(next);
        }
        let compares: Vec<Compare> = chunk
            .iter()
            .map(|g| Compare::mod_revision(g.key.as_str(), CompareOp::Equal, g.revision))
            .collect();
        let gets: Vec<TxnOp> = chunk
            .iter()
            .map(|g| TxnOp::get(g.key.as_str(), None))
            .collect();
        let first_key = chunk[0].key.clone();
        let (keys, writes): (Vec<(String, i64)>, Vec<TxnOp>) = chunk
            .into_iter()
            .map(|g| ((g.key, g.revision), g.op))
            .unzip();
        let resp = store
            .commit(write, &first_key, compares, writes, gets)
            .await?;
        if !resp.succeeded() {
            let responses = resp.op_responses();
            let changed = keys
                .iter()
                .zip(first_kvs(&responses))
                .find(|((_, revision), kv)| {
                    kv.as_ref().map_or(0, KeyValue::mod_revision) != *revision
                })
                .map_or(first_key, |((key, _), _)| key.clone());
            return Err(StoreError::Conflict { key: changed });
        }
    }
    Ok(())
}

fn check_unique<'a>(keys: impl IntoIterator<Item = &'a String>) -> Result<(), StoreError> {
    let mut seen = HashSet::new();
    for key in keys {
        if !seen.insert(key) {
            return Err(StoreError::DuplicateKey { key: key.clone() });
        }
    }
    Ok(())
}

impl Store {
    /// One desired record.
    ///
    /// # Errors
    /// [`StoreError::Get`] when etcd fails, [`StoreError::InvalidKey`] for a
    /// bad kind or name. A stored value that is not JSON reads as `null`.
    pub async fn get_record(
        &self,
        kind: &str,
        name: &str,
    ) -> Result<Option<Versioned>, StoreError> {
        self.get_json(&self.keys().record(Section::Desired, kind, name)?)
            .await
    }

    /// Every desired record (of one kind, or all), and the revision they were read at:
    /// watch from that revision + 1 to miss nothing.
    ///
    /// # Errors
    /// [`StoreError::List`] when etcd fails. A stored value that is not JSON reads as `null`.
    pub async fn list_records(
        &self,
        kind: Option<&str>,
    ) -> Result<(Vec<StoredRecord>, i64), StoreError> {
        self.list_section(Section::Desired, kind).await
    }

    /// Writes records, skipping those whose value did not change.
    ///
    /// Every expectation is checked against one read before anything is
    /// written; then the changed records are written in transactions that
    /// compare each key's `mod_revision` with what was read. Values are
    /// compared structurally, so key order in a JSON object does not count as
    /// a change. Returns one outcome per put, in order.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when a record is not as expected or changed
    /// meanwhile, [`StoreError::DuplicateKey`] when one record appears twice,
    /// [`StoreError::Get`]/[`StoreError::Put`] when etcd fails.
    pub async fn put_records(&self, puts: Vec<RecordPut>) -> Result<Vec<PutOutcome>, StoreError> {
        let keys = puts
            .iter()
            .map(|p| self.keys().record(Section::Desired, &p.kind, &p.name))
            .collect::<Result<Vec<_>, _>>()?;
        check_unique(&keys)?;
        let current = read_many(self, &keys).await?;
        let mut outcomes = Vec::with_capacity(puts.len());
        let mut writes = Vec::new();
        for ((put, key), kv) in puts.iter().zip(keys).zip(current) {
            let revision = kv.as_ref().map_or(0, KeyValue::mod_revision);
            let expected = match put.expect {
                Expect::Any => true,
                Expect::Absent => kv.is_none(),
                Expect::ModRevision(want) => kv.is_some() && revision == want,
            };
            if !expected {
                return Err(StoreError::Conflict { key });
            }
            let outcome = match &kv {
                None => PutOutcome::Created,
                // A stored value that does not decode is overwritten, not an error:
                // this write is what repairs it.
                Some(kv) if decode(kv, &key).value == put.value => PutOutcome::Unchanged,
                Some(_) => PutOutcome::Configured,
            };
            if outcome != PutOutcome::Unchanged {
                let value = encode(&key, &put.value)?;
                let bytes = key.len() + value.len();
                let op = TxnOp::put(key.as_str(), value, None);
                writes.push(Guarded {
                    key,
                    revision,
                    op,
                    bytes,
                });
            }
            outcomes.push(outcome);
        }
        run_guarded(self, writes, Write::Put).await?;
        Ok(outcomes)
    }

    /// Deletes records; each `Some(revision)` must match the record's current
    /// `mod_revision`. Returns, per record in order, whether it existed.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when a record is not at the expected revision
    /// (or is gone although a revision was expected), [`StoreError::Delete`] when etcd fails.
    pub async fn delete_records(
        &self,
        deletes: Vec<(String, String, Option<i64>)>,
    ) -> Result<Vec<bool>, StoreError> {
        let keys = deletes
            .iter()
            .map(|(kind, name, _)| self.keys().record(Section::Desired, kind, name))
            .collect::<Result<Vec<_>, _>>()?;
        check_unique(&keys)?;
        let current = read_many(self, &keys).await?;
        let mut outcomes = Vec::with_capacity(keys.len());
        let mut ops = Vec::new();
        for (((_, _, expect), key), kv) in deletes.iter().zip(keys).zip(current) {
            let revision = kv.as_ref().map_or(0, KeyValue::mod_revision);
            if expect.is_some_and(|want| kv.is_none() || want != revision) {
                return Err(StoreError::Conflict { key });
            }
            if kv.is_none() {
                outcomes.push(false);
                continue;
            }
            let op = TxnOp::delete(key.as_str(), None);
            let bytes = key.len();
            ops.push(Guarded {
                key,
                revision,
                op,
                bytes,
            });
            outcomes.push(true);
        }
        run_guarded(self, ops, Write::Delete).await?;
        Ok(outcomes)
    }

    /// Writes a record's status. Only the controller writes status, so no
    /// compare is needed; status and desired are separate keys so this never
    /// races a GitOps write.
    ///
    /// # Errors
    /// [`StoreError::Put`] when etcd fails.
    pub async fn put_status(
        &self,
        kind: &str,
        name: &str,
        status: &Value,
    ) -> Result<(), StoreError> {
        let key = self.keys().record(Section::Status, kind, name)?;
        let value = encode(&key, status)?;
        self.put_raw(&key, value, None).await
    }

    /// A record's status.
    ///
    /// # Errors
    /// [`StoreError::Get`] when etcd fails. A stored value that is not JSON reads as `null`.
    pub async fn get_status(
        &self,
        kind: &str,
        name: &str,
    ) -> Result<Option<Versioned>, StoreError> {
        self.get_json(&self.keys().record(Section::Status, kind, name)?)
            .await
    }

    /// Every status (of one kind, or all), in one listing: what a pass over
    /// many records left, without a read per record.
    ///
    /// # Errors
    /// [`StoreError::List`] when etcd fails. A stored value that is not JSON reads as `null`.
    pub async fn list_statuses(&self, kind: Option<&str>) -> Result<Vec<StoredRecord>, StoreError> {
        Ok(self.list_section(Section::Status, kind).await?.0)
    }

    /// Removes a record's status; true when there was one.
    ///
    /// # Errors
    /// [`StoreError::Delete`] when etcd fails.
    pub async fn delete_status(&self, kind: &str, name: &str) -> Result<bool, StoreError> {
        self.delete_key(self.keys().record(Section::Status, kind, name)?)
            .await
    }

    async fn get_json(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let resp = self
            .kv()
            .get(key, None)
            .await
            .map_err(|source| StoreError::Get {
                key: key.to_owned(),
                source,
            })?;
        Ok(resp.kvs().first().map(|kv| decode(kv, key)))
    }

    async fn list_section(
        &self,
        section: Section,
        kind: Option<&str>,
    ) -> Result<(Vec<StoredRecord>, i64), StoreError> {
        let prefix = self.keys().section_prefix(section, kind)?;
        let (kvs, revision) = self
            .range(&prefix, 0, false)
            .await
            .map_err(|source| StoreError::List { prefix, source })?;
        Ok((decode_records(self, section, &kvs), revision))
    }

    pub(crate) async fn delete_key(&self, key: String) -> Result<bool, StoreError> {
        self.delete_raw(&key, None).await.map(|deleted| deleted > 0)
    }
}
