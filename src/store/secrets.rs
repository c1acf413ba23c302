//! Sealed secret values the operator must read back, and what each GitOps source last applied.

use etcd_client::{Compare, CompareOp, TxnOp, TxnOpResponse};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::txn::Write;
use super::{Store, StoreError};

/// What one GitOps source (`apply --source NAME`) last applied; `--prune`
/// deletes the records listed here that are gone from the files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceRecord {
    /// `Kind/name` of every record the source applied.
    pub records: Vec<String>,
    /// The commit the files came from, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub applied_at: Timestamp,
    /// The last commit a sync fetched, applied or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen: Option<String>,
    /// Why the last commit seen is not applied, until one applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SourceError>,
    /// The repository a sync follows (its URL without credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<RepoRef>,
}

impl SourceRecord {
    /// The record as `get sources -o json` and `/sources` show it: with its name.
    pub fn named_json(&self, name: &str) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let serde_json::Value::Object(fields) = &mut value {
            fields.insert("name".into(), name.into());
        }
        value
    }

    /// A source that has applied nothing yet.
    pub fn empty() -> Self {
        Self {
            records: Vec::new(),
            commit: None,
            applied_at: Timestamp::UNIX_EPOCH,
            seen: None,
            error: None,
            repo: None,
        }
    }
}

/// Why a source's last commit is not applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceError {
    /// The commit refused, when one was fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// What is wrong: the file, record and field of an invalid record, or the failure.
    pub message: String,
    pub at: Timestamp,
    /// The commit's records are invalid: the same commit is never tried again.
    #[serde(default)]
    pub invalid: bool,
}

/// Where a synced source's records come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoRef {
    /// The repository URL with any credentials taken out.
    pub url: String,
    pub branch: String,
    pub path: String,
}

impl Store {
    /// Stores a value sealed with [`super::SecretKey::seal`]; the store
    /// never sees plaintext.
    ///
    /// # Errors
    /// [`StoreError::Put`] when etcd fails.
    pub async fn put_secret(&self, name: &str, sealed: &[u8]) -> Result<(), StoreError> {
        let key = self.keys().secret(name)?;
        self.put_raw(&key, sealed.to_vec(), None).await
    }

    /// Stores a sealed value only if `name` holds none yet, and returns the
    /// value that is stored now: `sealed`, or what another writer stored first.
    /// Two replicas that each generate a value can thus never deliver two.
    ///
    /// # Errors
    /// [`StoreError::Put`] when etcd fails, [`StoreError::Deposed`] on a
    /// fenced store that no longer leads.
    pub async fn create_secret(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        let key = self.keys().secret(name)?;
        let absent = Compare::create_revision(key.as_str(), CompareOp::Equal, 0);
        let put = TxnOp::put(key.as_str(), sealed.to_vec(), None);
        let read = TxnOp::get(key.as_str(), None);
        let resp = self
            .commit(Write::Put, &key, vec![absent], vec![put], vec![read])
            .await?;
        if resp.succeeded() {
            return Ok(sealed.to_vec());
        }
        match resp.op_responses().first() {
            Some(TxnOpResponse::Get(get)) if !get.kvs().is_empty() => {
                Ok(get.kvs()[0].value().to_vec())
            }
            // Deleted between the compare and the read: the caller's next pass tries again.
            _ => Err(StoreError::Conflict { key }),
        }
    }

    /// The sealed value stored under `name`.
    ///
    /// # Errors
    /// [`StoreError::Get`] when etcd fails.
    pub async fn get_secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get_sealed(name).await?.map(|value| value.sealed))
    }

    /// Removes a sealed value; true when there was one.
    ///
    /// # Errors
    /// [`StoreError::Delete`] when etcd fails.
    pub async fn delete_secret(&self, name: &str) -> Result<bool, StoreError> {
        self.delete_key(self.keys().secret(name)?).await
    }

    /// Removes every sealed value whose name starts with `name_prefix`
    /// (`generated:db:` for all rotations of `db`); how many there were.
    ///
    /// # Errors
    /// [`StoreError::Delete`] when etcd fails.
    pub async fn delete_secrets_with_prefix(&self, name_prefix: &str) -> Result<i64, StoreError> {
        let key = self.keys().secret(name_prefix)?;
        self.delete_raw(&key, Some(etcd_client::DeleteOptions::new().with_prefix()))
            .await
    }

    /// Records what a source applied.
    ///
    /// # Errors
    /// [`StoreError::Put`] when etcd fails.
    pub async fn put_source(
        &self,
        name: &str,
        source_record: &SourceRecord,
    ) -> Result<(), StoreError> {
        let key = self.keys().source(name)?;
        let value = serde_json::to_vec(source_record).map_err(|source| StoreError::Encode {
            key: key.clone(),
            source,
        })?;
        self.put_raw(&key, value, None).await
    }

    /// Every source, by name, with what it last applied. A value that does not
    /// decode is left out (and logged) rather than hiding every other source.
    ///
    /// # Errors
    /// [`StoreError::List`] when etcd fails.
    pub async fn list_sources(&self) -> Result<Vec<(String, SourceRecord)>, StoreError> {
        let prefix = self.keys().sources_prefix();
        let (kvs, _) = self
            .range(&prefix, 0, false)
            .await
            .map_err(|source| StoreError::List {
                prefix: prefix.clone(),
                source,
            })?;
        Ok(kvs
            .iter()
            .filter_map(|kv| {
                let key = String::from_utf8_lossy(kv.key());
                let name = key.strip_prefix(&prefix)?.to_owned();
                match serde_json::from_slice(kv.value()) {
                    Ok(record) => Some((name, record)),
                    Err(err) => {
                        tracing::warn!(%key, %err, "source record does not decode; left out");
                        None
                    }
                }
            })
            .collect())
    }

    /// What a source last applied, if it ever applied.
    ///
    /// # Errors
    /// [`StoreError::Get`] when etcd fails, [`StoreError::Decode`] when the value is not a source record.
    pub async fn get_source(&self, name: &str) -> Result<Option<SourceRecord>, StoreError> {
        let key = self.keys().source(name)?;
        let resp = self
            .kv()
            .get(key.as_str(), None)
            .await
            .map_err(|source| StoreError::Get {
                key: key.clone(),
                source,
            })?;
        resp.kvs()
            .first()
            .map(|kv| {
                serde_json::from_slice(kv.value())
                    .map_err(|source| StoreError::Decode { key, source })
            })
            .transpose()
    }
}
