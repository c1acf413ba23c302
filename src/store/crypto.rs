//! The operator's secret key: sealing secret values for etcd.
//!
//! # Format
//! A sealed value is `"skv1" || key id (8) || nonce (12) || ciphertext || tag (16)`,
//! AES-256-GCM with the header and the value's store key (its name under
//! `<prefix>/secrets/`, `stack:web:token`) as associated data. So a sealed value
//! copied under another store key, or given another key id, does not open; and
//! the key id says which key of a keyring opens it, which is what lets the
//! key be rotated (`swarmkeeper key rotate`) while both keys are in use.
//!
//! The key id is an HMAC of the key under a label of its own: it names a key
//! without revealing anything of it.
//!
//! The keys in use together, and the digest key, are in [`super::keyring`].

use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::TryRngCore as _;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::api::SecretValue;

pub(super) const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// The format every sealed value starts with; values sealed before it had no header.
const FORMAT_TAG: &[u8; 4] = b"skv1";
const KEY_ID_LEN: usize = 8;
const HEADER_LEN: usize = FORMAT_TAG.len() + KEY_ID_LEN;
/// Domain separation for key ids, so an id is no digest of anything else.
const KEY_ID_LABEL: &[u8] = b"swarmkeeper/key-id/v1";

type HmacSha256 = Hmac<Sha256>;

/// Why a key could not be loaded or a sealed value could not be opened.
///
/// No variant carries key material or plaintext; a key id names a key safely.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    #[error("cannot read secret key file {path}")]
    ReadKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "secret key file {path} must hold 32 raw bytes or the base64 of 32 bytes \
         (generate one with `head -c 32 /dev/urandom | base64`)"
    )]
    KeyFormat { path: PathBuf },
    #[error("cannot decrypt a sealed value: tampered data, or sealed for another store key")]
    Open,
    #[error(
        "the value was sealed with key {key_id}, which is not configured \
         (--secret-key-file, --previous-secret-key-file)"
    )]
    UnknownKey { key_id: KeyId },
    #[error(
        "the value is sealed in the format before key ids: re-seal it with \
         `swarmkeeper key rotate` (the old format is read by that command only)"
    )]
    OldFormat,
}

/// The public name of a key: the first 8 bytes of an HMAC of it under a label, in hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl KeyId {
    /// The key id in a sealed value's header; `None` for a value without one.
    pub fn of_sealed(sealed: &[u8]) -> Option<KeyId> {
        let id = sealed.strip_prefix(FORMAT_TAG)?.get(..KEY_ID_LEN)?;
        <[u8; KEY_ID_LEN]>::try_from(id).ok().map(KeyId)
    }
}

/// A 32-byte AES-256-GCM key. Debug output shows only its id; the bytes are
/// wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey {
    bytes: [u8; KEY_LEN],
    #[zeroize(skip)]
    id: KeyId,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({}, <redacted>)", self.id)
    }
}

/// Fills `buf` from the operating system's generator. It fails only when the
/// OS has no randomness to give, and then no key or nonce may be made.
fn os_random(buf: &mut [u8]) {
    rand::rngs::OsRng
        .try_fill_bytes(buf)
        .expect("the operating system's random generator failed");
}

/// HMAC-SHA256 of `data` under `key`.
pub(super) fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

impl SecretKey {
    pub(super) fn from_raw(bytes: [u8; KEY_LEN]) -> Self {
        let digest = Zeroizing::new(hmac(&bytes, KEY_ID_LABEL));
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        Self {
            bytes,
            id: KeyId(id),
        }
    }

    /// Reads a key file holding 32 raw bytes, or the base64 of 32 bytes
    /// (surrounding whitespace ignored).
    ///
    /// # Errors
    /// [`CryptoError::ReadKey`] when the file cannot be read,
    /// [`CryptoError::KeyFormat`] when it holds anything else; the error never
    /// quotes the file's content.
    pub fn from_file(path: &Path) -> Result<Self, CryptoError> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| CryptoError::ReadKey {
            path: path.to_owned(),
            source,
        })?);
        Self::from_bytes_or_base64(&bytes).ok_or_else(|| CryptoError::KeyFormat {
            path: path.to_owned(),
        })
    }

    fn from_bytes_or_base64(bytes: &[u8]) -> Option<Self> {
        if let Ok(raw) = <[u8; KEY_LEN]>::try_from(bytes) {
            return Some(Self::from_raw(raw));
        }
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(bytes.trim_ascii())
                .ok()?,
        );
        <[u8; KEY_LEN]>::try_from(decoded.as_slice())
            .ok()
            .map(Self::from_raw)
    }

    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Self {
        let mut key = [0u8; KEY_LEN];
        os_random(&mut key);
        Self::from_raw(key)
    }

    /// An HMAC of `label` under this key: what keys derived from it are made of.
    pub(super) fn derive(&self, label: &[u8]) -> [u8; KEY_LEN] {
        hmac(&self.bytes, label)
    }

    /// This key's public name, as sealed values carry it.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// Encrypts `plaintext` for `store_key` with a fresh random 96-bit nonce
    /// (see the module docs for the format).
    pub fn seal(&self, store_key: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut sealed = Vec::with_capacity(HEADER_LEN + NONCE_LEN + plaintext.len() + TAG_LEN);
        sealed.extend_from_slice(FORMAT_TAG);
        sealed.extend_from_slice(&self.id.0);
        let mut nonce = [0u8; NONCE_LEN];
        os_random(&mut nonce);
        let aad = associated_data(&sealed, store_key);
        let ciphertext = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("AES-GCM only refuses plaintexts longer than 64 GiB");
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// Decrypts what [`SecretKey::seal`] produced for the same `store_key`.
    ///
    /// # Errors
    /// [`CryptoError::OldFormat`] for a value without a header,
    /// [`CryptoError::UnknownKey`] when another key sealed it, and
    /// [`CryptoError::Open`] when it is truncated, was tampered with, or was
    /// sealed for another store key.
    pub fn open(&self, store_key: &str, sealed: &[u8]) -> Result<SecretValue, CryptoError> {
        let key_id = KeyId::of_sealed(sealed).ok_or(CryptoError::OldFormat)?;
        if key_id != self.id {
            return Err(CryptoError::UnknownKey { key_id });
        }
        let (header, body) = sealed.split_at(HEADER_LEN);
        if body.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Open);
        }
        let (nonce, ciphertext) = body.split_at(NONCE_LEN);
        let aad = associated_data(header, store_key);
        self.cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map(SecretValue::new)
            .map_err(|_| CryptoError::Open)
    }

    /// Decrypts a value sealed before key ids and associated data existed
    /// (`nonce || ciphertext || tag`). Only `key rotate` calls this, to move
    /// such values to the current format; nothing else accepts them, since
    /// they are not bound to their store key.
    ///
    /// # Errors
    /// [`CryptoError::Open`] when the data is not such a value of this key.
    pub fn open_old_format(&self, sealed: &[u8]) -> Result<SecretValue, CryptoError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Open);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map(SecretValue::new)
            .map_err(|_| CryptoError::Open)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.bytes.into())
    }
}

/// The header and the store key: what a sealed value is bound to.
fn associated_data(header: &[u8], store_key: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + store_key.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(store_key.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn key_file(content: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(content).unwrap();
        file
    }

    fn fixed(byte: u8) -> SecretKey {
        SecretKey::from_bytes_or_base64(&[byte; KEY_LEN]).unwrap()
    }

    #[test]
    fn seal_then_open_round_trips() {
        let key = SecretKey::generate();
        let sealed = key.seal("stack:web:token", b"hunter2");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(
            key.open("stack:web:token", &sealed).unwrap().expose(),
            b"hunter2"
        );
    }

    #[test]
    fn sealed_values_carry_the_format_and_key_id_never_the_key() {
        let key = fixed(7);
        let sealed = key.seal("db", b"pw");
        assert!(sealed.starts_with(b"skv1"));
        assert_eq!(KeyId::of_sealed(&sealed), Some(key.id()));
        assert!(!sealed.windows(KEY_LEN).any(|w| w == [7u8; KEY_LEN]));
        assert_ne!(key.id(), fixed(8).id(), "ids tell keys apart");
        assert_eq!(key.id(), fixed(7).id(), "and name one key stably");
        assert_eq!(key.id().to_string().len(), 16);
        assert_eq!(KeyId::of_sealed(b"sk"), None);
    }

    #[test]
    fn sealing_twice_gives_different_ciphertexts() {
        let key = SecretKey::generate();
        assert_ne!(key.seal("a", b"same"), key.seal("a", b"same"));
    }

    #[test]
    fn a_value_copied_under_another_store_key_does_not_open() {
        let key = SecretKey::generate();
        let sealed = key.seal("stack:first:token", b"hunter2");
        assert!(matches!(
            key.open("stack:second:stolen", &sealed),
            Err(CryptoError::Open)
        ));
    }

    #[test]
    fn a_changed_header_does_not_open() {
        let key = SecretKey::generate();
        let mut sealed = key.seal("a", b"hunter2");
        sealed[3] = b'2';
        assert!(key.open("a", &sealed).is_err());
        // A key id rewritten to another key's is refused by that key too.
        let other = SecretKey::generate();
        let mut forged = key.seal("a", b"hunter2");
        forged[FORMAT_TAG.len()..HEADER_LEN].copy_from_slice(&other.id().0);
        assert!(matches!(other.open("a", &forged), Err(CryptoError::Open)));
    }

    #[test]
    fn tampered_or_truncated_data_is_rejected() {
        let key = SecretKey::generate();
        let mut sealed = key.seal("a", b"hunter2");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(matches!(key.open("a", &sealed), Err(CryptoError::Open)));
        assert!(matches!(
            key.open("a", &sealed[..HEADER_LEN + NONCE_LEN]),
            Err(CryptoError::Open)
        ));
    }

    #[test]
    fn another_key_cannot_open_and_says_which_key_sealed() {
        let key = SecretKey::generate();
        let sealed = key.seal("a", b"hunter2");
        match SecretKey::generate().open("a", &sealed) {
            Err(err @ CryptoError::UnknownKey { key_id }) => {
                assert_eq!(key_id, key.id());
                assert!(err.to_string().contains(&key.id().to_string()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn old_format_values_open_only_through_the_rotation_path() {
        let key = SecretKey::generate();
        // The format before key ids: nonce || ciphertext || tag, no associated data.
        let nonce = [9u8; NONCE_LEN];
        let mut old = nonce.to_vec();
        old.extend(
            key.cipher()
                .encrypt(Nonce::from_slice(&nonce), b"hunter2".as_slice())
                .unwrap(),
        );
        assert!(matches!(key.open("a", &old), Err(CryptoError::OldFormat)));
        let ring = super::super::keyring::Keyring::new(key.clone(), None);
        assert!(matches!(ring.open("a", &old), Err(CryptoError::OldFormat)));
        assert_eq!(key.open_old_format(&old).unwrap().expose(), b"hunter2");
        assert!(SecretKey::generate().open_old_format(&old).is_err());
    }

    #[test]
    fn key_file_accepts_raw_bytes_and_base64() {
        let raw = [7u8; KEY_LEN];
        let from_raw = SecretKey::from_file(key_file(&raw).path()).unwrap();
        let encoded = format!(
            "  {}\n",
            base64::engine::general_purpose::STANDARD.encode(raw)
        );
        let from_b64 = SecretKey::from_file(key_file(encoded.as_bytes()).path()).unwrap();
        assert_eq!(from_raw.bytes, raw);
        assert_eq!(from_b64.bytes, raw);
        // Both keys are the same, so one opens what the other sealed.
        let sealed = from_raw.seal("x", b"x");
        assert_eq!(from_b64.open("x", &sealed).unwrap().expose(), b"x");
    }

    #[test]
    fn bad_key_file_error_does_not_quote_the_content() {
        let content = "c2VjcmV0LXRvby1zaG9ydA==";
        let file = key_file(content.as_bytes());
        let err = SecretKey::from_file(file.path()).unwrap_err();
        assert!(matches!(err, CryptoError::KeyFormat { .. }));
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(content), "{shown}");
        assert!(!shown.contains("secret-too-short"), "{shown}");
    }

    #[test]
    fn missing_key_file_is_a_read_error() {
        let err = SecretKey::from_file(Path::new("/nonexistent/key")).unwrap_err();
        assert!(matches!(err, CryptoError::ReadKey { .. }));
    }

    #[test]
    fn debug_is_redacted() {
        let key = fixed(0x41);
        let shown = format!("{key:?}");
        assert!(shown.contains(&key.id().to_string()), "{shown}");
        assert!(!shown.contains("65, 65"), "{shown}");
    }
}
