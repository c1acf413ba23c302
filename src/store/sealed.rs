//! What key rotation needs of the sealed values under `<prefix>/secrets/`: their
//! names, each value with its revision, compare-and-swap writes, and the
//! digest key that stays the same across rotations.

use etcd_client::{Compare, CompareOp, TxnOp};

use super::crypto::CryptoError;
use super::keyring::{DigestKey, Keyring};
use super::txn::Write;
use super::{Store, StoreError};

/// The store name of the digest key. Record names cannot contain `:`, and a
/// Stack may only reference names under `stack:<itself>:`, so no record can
/// name this value.
pub const DIGEST_KEY_NAME: &str = "keyring:digest";

/// A sealed value and the revision it was read at.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedValue {
    pub sealed: Vec<u8>,
    pub mod_revision: i64,
}

impl std::fmt::Debug for SealedValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SealedValue(<{} bytes> at {})",
            self.sealed.len(),
            self.mod_revision
        )
    }
}

impl Store {
    /// The names of every sealed value, sorted.
    ///
    /// Only keys are listed (a page of values could pass etcd's 4 MiB answer
    /// limit); read each value with [`Store::get_sealed`].
    ///
    /// # Errors
    /// [`StoreError::List`] when etcd fails.
    pub async fn sealed_names(&self) -> Result<Vec<String>, StoreError> {
        let prefix = format!("{}/secrets/", self.prefix());
        let (kvs, _) = self
            .range(&prefix, 0, true)
            .await
            .map_err(|source| StoreError::List {
                prefix: prefix.clone(),
                source,
            })?;
        Ok(kvs
            .iter()
            .filter_map(|kv| {
                let key = std::str::from_utf8(kv.key()).ok()?;
                let name = key.strip_prefix(&prefix)?;
                (!name.is_empty() && !name.contains('/')).then(|| name.to_owned())
            })
            .collect())
    }

    /// The sealed value stored under `name`, with its revision.
    ///
    /// # Errors
    /// [`StoreError::Get`] when etcd fails.
    pub async fn get_sealed(&self, name: &str) -> Result<Option<SealedValue>, StoreError> {
        let key = self.keys().secret(name)?;
        let resp = self
            .kv()
            .get(key.as_str(), None)
            .await
            .map_err(|source| StoreError::Get { key, source })?;
        Ok(resp.kvs().first().map(|kv| SealedValue {
            sealed: kv.value().to_vec(),
            mod_revision: kv.mod_revision(),
        }))
    }

    /// Writes `sealed` under `name` only if the value is still at
    /// `mod_revision` (0: only if there is none); false when it was not.
    ///
    /// # Errors
    /// [`StoreError::Put`] when etcd fails.
    pub async fn swap_sealed(
        &self,
        name: &str,
        sealed: &[u8],
        mod_revision: i64,
    ) -> Result<bool, StoreError> {
        let key = self.keys().secret(name)?;
        let unchanged = Compare::mod_revision(key.as_str(), CompareOp::Equal, mod_revision);
        let put = TxnOp::put(key.as_str(), sealed, None);
        self.commit(Write::Put, &key, vec![unchanged], vec![put], Vec::new())
            .await
            .map(|resp| resp.succeeded())
    }

    /// The digest key: the stored one, opened with `keyring`; while none is
    /// stored, the one the keyring implies, stored first when `create` is set
    /// (only if still absent, so concurrent writers keep one value).
    ///
    /// Commands that store digests (`apply`, `key rotate`) create it; the
    /// controller and `drift` only read, and compute the same value while it
    /// is absent.
    ///
    /// # Errors
    /// [`StoreError::Get`]/[`StoreError::Put`] when etcd fails,
    /// [`StoreError::Crypto`] when the stored key does not open with `keyring`.
    pub async fn digest_key(
        &self,
        keyring: &Keyring,
        create: bool,
    ) -> Result<DigestKey, StoreError> {
        loop {
            if let Some(stored) = self.get_sealed(DIGEST_KEY_NAME).await? {
                let bytes = keyring.open(DIGEST_KEY_NAME, &stored.sealed)?;
                return Ok(DigestKey::from_bytes(bytes.expose()).ok_or(CryptoError::Open)?);
            }
            let implied = keyring.implied_digest_key();
            if !create {
                return Ok(implied);
            }
            let sealed = keyring.seal(DIGEST_KEY_NAME, implied.expose());
            if self.swap_sealed(DIGEST_KEY_NAME, &sealed, 0).await? {
                return Ok(implied);
            }
            // Another writer stored one first: read theirs.
        }
    }
}
