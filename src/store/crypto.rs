//! The operator's secret key: sealing secret values for etcd and keyed digests of them.

use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::TryRngCore as _;
use sha2::Sha256;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Domain separation: the digest key is derived from, never equal to, the sealing key.
const DIGEST_KEY_LABEL: &[u8] = b"swarmkeeper/digest/v1";

type HmacSha256 = Hmac<Sha256>;

/// Why a key could not be loaded or a sealed value could not be opened.
///
/// No variant carries key material or plaintext.
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
    #[error("cannot decrypt a sealed value: wrong key or tampered data")]
    Open,
}

/// A 32-byte AES-256-GCM key. Debug output is redacted.
#[derive(Clone)]
pub struct SecretKey([u8; KEY_LEN]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// Fills `buf` from the operating system's generator. It fails only when the
/// OS has no randomness to give, and then no key or nonce may be made.
fn os_random(buf: &mut [u8]) {
    rand::rngs::OsRng
        .try_fill_bytes(buf)
        .expect("the operating system's random generator failed");
}

impl SecretKey {
    /// Reads a key file holding 32 raw bytes, or the base64 of 32 bytes
    /// (surrounding whitespace ignored).
    ///
    /// # Errors
    /// [`CryptoError::ReadKey`] when the file cannot be read,
    /// [`CryptoError::KeyFormat`] when it holds anything else; the error never
    /// quotes the file's content.
    pub fn from_file(path: &Path) -> Result<Self, CryptoError> {
        let bytes = std::fs::read(path).map_err(|source| CryptoError::ReadKey {
            path: path.to_owned(),
            source,
        })?;
        Self::from_bytes_or_base64(&bytes).ok_or_else(|| CryptoError::KeyFormat {
            path: path.to_owned(),
        })
    }

    fn from_bytes_or_base64(bytes: &[u8]) -> Option<Self> {
        if let Ok(raw) = <[u8; KEY_LEN]>::try_from(bytes) {
            return Some(Self(raw));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(bytes.trim_ascii())
            .ok()?;
        <[u8; KEY_LEN]>::try_from(decoded.as_slice()).ok().map(Self)
    }

    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Self {
        let mut key = [0u8; KEY_LEN];
        os_random(&mut key);
        Self(key)
    }

    /// Encrypts `plaintext` with a fresh random 96-bit nonce, returned as
    /// `nonce || ciphertext || tag`.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        os_random(&mut nonce);
        let ciphertext = self
            .cipher()
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .expect("AES-GCM only refuses plaintexts longer than 64 GiB");
        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// Decrypts what [`SecretKey::seal`] produced.
    ///
    /// # Errors
    /// [`CryptoError::Open`] when the data is truncated, was tampered with, or
    /// was sealed with another key.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Open);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| CryptoError::Open)
    }

    /// A hex HMAC-SHA256 of `plaintext` under a key derived from this one, so a
    /// record or status can show that a secret changed without revealing it.
    pub fn digest(&self, plaintext: &[u8]) -> String {
        let mut mac = self.digest_mac();
        mac.update(plaintext);
        hex::encode(mac.finalize().into_bytes())
    }

    fn digest_mac(&self) -> HmacSha256 {
        let mut derive =
            <HmacSha256 as Mac>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        derive.update(DIGEST_KEY_LABEL);
        <HmacSha256 as Mac>::new_from_slice(&derive.finalize().into_bytes())
            .expect("HMAC takes keys of any length")
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.0.into())
    }
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

    #[test]
    fn seal_then_open_round_trips() {
        let key = SecretKey::generate();
        let sealed = key.seal(b"hunter2");
        assert_ne!(&sealed[NONCE_LEN..], b"hunter2");
        assert_eq!(key.open(&sealed).unwrap(), b"hunter2");
    }

    #[test]
    fn sealing_twice_gives_different_ciphertexts() {
        let key = SecretKey::generate();
        assert_ne!(key.seal(b"same"), key.seal(b"same"));
    }

    #[test]
    fn tampered_or_truncated_data_is_rejected() {
        let key = SecretKey::generate();
        let mut sealed = key.seal(b"hunter2");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(matches!(key.open(&sealed), Err(CryptoError::Open)));
        assert!(matches!(
            key.open(&sealed[..NONCE_LEN]),
            Err(CryptoError::Open)
        ));
    }

    #[test]
    fn another_key_cannot_open() {
        let sealed = SecretKey::generate().seal(b"hunter2");
        assert!(matches!(
            SecretKey::generate().open(&sealed),
            Err(CryptoError::Open)
        ));
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
        assert_eq!(from_raw.0, raw);
        assert_eq!(from_b64.0, raw);
        // Both keys are the same, so one opens what the other sealed.
        assert_eq!(from_b64.open(&from_raw.seal(b"x")).unwrap(), b"x");
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
    fn digest_is_stable_per_key_and_differs_across_keys() {
        let key = SecretKey::from_bytes_or_base64(&[1u8; KEY_LEN]).unwrap();
        let other = SecretKey::from_bytes_or_base64(&[2u8; KEY_LEN]).unwrap();
        assert_eq!(key.digest(b"pw"), key.digest(b"pw"));
        assert_ne!(key.digest(b"pw"), key.digest(b"pw2"));
        assert_ne!(key.digest(b"pw"), other.digest(b"pw"));
        assert_eq!(key.digest(b"pw").len(), 64);
    }

    #[test]
    fn debug_is_redacted() {
        let key = SecretKey::from_bytes_or_base64(&[0x41u8; KEY_LEN]).unwrap();
        assert_eq!(format!("{key:?}"), "SecretKey(<redacted>)");
    }
}
