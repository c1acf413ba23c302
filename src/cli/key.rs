//! `key rotate`: re-seal every stored value under a new key.
//!
//! # Expected flow
//! 1. The digest key is stored, if it is not yet, with the current keys: the
//!    digests in records and in swarm secret names then stay as they are, so
//!    no record changes and no service restarts because of the rotation.
//! 2. Each value under `<prefix>/secrets/` is read with its revision, opened
//!    with the current keys, sealed with the new key for the same store key,
//!    and written back only if it is still at that revision; a value changed
//!    meanwhile (by `apply` or the controller) is read again.
//! 3. Values the new key sealed already are left alone, so running the
//!    command again after an interruption finishes the job.
//!
//! # Guarantees
//! A value is either as it was or re-sealed, never lost or overwritten with a
//! stale one. The old key keeps opening every value not re-sealed yet, so a
//! controller given both keys (`--secret-key-file NEW
//! --previous-secret-key-file OLD`) reads every value throughout.
//!
//! # Caveats
//! A writer that still seals with the old key after the rotation (an `apply`
//! with the old `--secret-key-file`) writes values only the old key opens:
//! give every writer the new key first, as the README's steps say.

use std::path::Path;

use crate::api::SecretValue;
use crate::store::{CryptoError, KeyId, Keyring, SecretKey, Store};

use super::{Failure, GlobalOpts};

/// Reads and compare-and-swaps of one value before it is reported as failed.
const ATTEMPTS: usize = 10;

/// What became of one stored value.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Resealed,
    /// The new key sealed it already.
    Current,
    /// Deleted since it was listed.
    Gone,
}

/// Runs `key rotate --new-key-file F`.
///
/// # Errors
/// Bad usage (exit 64): no current key, or a new key file that is not a key.
/// etcd failures, or values that do not open with the current keys (exit 1;
/// they are named, and left as they were).
pub async fn rotate(global: &GlobalOpts, new_key_file: &Path) -> Result<u8, Failure> {
    let old = global.key_files()?.ok_or_else(|| {
        Failure::Invalid(
            "error: key rotate needs the key the values are sealed with now: --secret-key-file"
                .into(),
        )
    })?;
    let new = SecretKey::from_file(new_key_file)
        .map_err(|e| Failure::Invalid(format!("error: --new-key-file: {e}")))?;
    let store = global.store().await?;
    // After a run that finished, the new key sealed the digest key already:
    // it must open too, so that running the command again is harmless.
    store
        .digest_key(&old.clone().also_opening(new.clone()), true)
        .await
        .map_err(|e| Failure::Error(format!("the digest key: {e}")))?;
    let names = store.sealed_names().await.map_err(Failure::error)?;
    let (mut resealed, mut current, mut failed) = (0, 0, Vec::new());
    for name in &names {
        match reseal(&store, &old, &new, name).await? {
            Ok(Outcome::Resealed) => resealed += 1,
            Ok(Outcome::Current) => current += 1,
            Ok(Outcome::Gone) => {}
            Err(why) => failed.push(format!("  {name}: {why}")),
        }
    }
    println!(
        "re-sealed {resealed} values with key {}; {current} were sealed with it already",
        new.id()
    );
    println!("digests are unchanged: no record changes and no service restarts for this rotation");
    if !failed.is_empty() {
        return Err(Failure::Error(format!(
            "{} values do not open with the current keys ({}) and were left as they were:\n{}",
            failed.len(),
            key_ids(&old),
            failed.join("\n")
        )));
    }
    println!(
        "next: run apply and the controller with --secret-key-file {} alone; the old key opens nothing now",
        new_key_file.display()
    );
    Ok(0)
}

fn key_ids(keyring: &Keyring) -> String {
    let ids: Vec<String> = keyring.keys().map(|k| k.id().to_string()).collect();
    ids.join(", ")
}

/// Re-seals the value `name` under `new`, retrying when it changes under us.
///
/// # Errors
/// The outer error is etcd's; the inner one says why the value cannot be opened.
async fn reseal(
    store: &Store,
    old: &Keyring,
    new: &SecretKey,
    name: &str,
) -> Result<Result<Outcome, String>, Failure> {
    for _ in 0..ATTEMPTS {
        let Some(stored) = store.get_sealed(name).await.map_err(Failure::error)? else {
            return Ok(Ok(Outcome::Gone));
        };
        if KeyId::of_sealed(&stored.sealed) == Some(new.id()) {
            return Ok(Ok(Outcome::Current));
        }
        let plaintext = match open_for_rotation(old, name, &stored.sealed) {
            Ok(plaintext) => plaintext,
            Err(err) => return Ok(Err(err.to_string())),
        };
        let sealed = new.seal(name, plaintext.expose());
        if store
            .swap_sealed(name, &sealed, stored.mod_revision)
            .await
            .map_err(Failure::error)?
        {
            return Ok(Ok(Outcome::Resealed));
        }
    }
    Ok(Err(format!(
        "changed on each of {ATTEMPTS} attempts; run key rotate again"
    )))
}

/// Opens a value with the current keys; a value sealed before key ids existed
/// is opened in that format, which is how it moves to the current one.
fn open_for_rotation(old: &Keyring, name: &str, sealed: &[u8]) -> Result<SecretValue, CryptoError> {
    old.open(name, sealed).or_else(|err| {
        // GCM's tag authenticates, so an old-format open never succeeds by chance.
        old.keys()
            .find_map(|k| k.open_old_format(sealed).ok())
            .ok_or(err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_opens_current_and_old_format_values() {
        let key = SecretKey::generate();
        let ring = Keyring::new(key.clone(), None);
        let sealed = key.seal("db", b"pw");
        assert_eq!(
            open_for_rotation(&ring, "db", &sealed).unwrap().expose(),
            b"pw"
        );
        let moved = open_for_rotation(&ring, "other", &sealed).unwrap_err();
        assert!(matches!(moved, CryptoError::Open), "{moved:?}");
        let stranger = open_for_rotation(&ring, "db", &SecretKey::generate().seal("db", b"pw"));
        assert!(matches!(stranger, Err(CryptoError::UnknownKey { .. })));
    }
}
