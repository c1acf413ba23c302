//! Sealed secret values the operator must read back, and what each GitOps source last applied.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

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
}

impl Store {
    /// Stores a value sealed with [`super::SecretKey::seal`]; the store
    /// never sees plaintext.
    ///
    /// # Errors
    /// [`StoreError::Put`] when etcd fails.
    pub async fn put_secret(&self, name: &str, sealed: &[u8]) -> Result<(), StoreError> {
        let key = self.keys().secret(name)?;
        self.kv()
            .put(key.as_str(), sealed, None)
            .await
            .map(drop)
            .map_err(|source| StoreError::Put { key, source })
    }

    /// The sealed value stored under `name`.
    ///
    /// # Errors
    /// [`StoreError::Get`] when etcd fails.
    pub async fn get_secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.keys().secret(name)?;
        let resp = self
            .kv()
            .get(key.as_str(), None)
            .await
            .map_err(|source| StoreError::Get { key, source })?;
        Ok(resp.kvs().first().map(|kv| kv.value().to_vec()))
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
        self.kv()
            .delete(
                key.as_str(),
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            )
            .await
            .map(|resp| resp.deleted())
            .map_err(|source| StoreError::Delete { key, source })
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
        self.kv()
            .put(key.as_str(), value, None)
            .await
            .map(drop)
            .map_err(|source| StoreError::Put { key, source })
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
