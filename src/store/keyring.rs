//! The keys in use together: the current key seals, it and the previous one
//! open, and a digest key of its own makes the keyed digests.
//!
//! Records and swarm secret names carry a keyed digest of a value (so a
//! change shows, but guesses cannot be tested). Its key, the [`DigestKey`], is
//! kept apart from the sealing key, so that rotating the sealing key changes
//! no digest and rolls no service.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::crypto::{CryptoError, KEY_LEN, KeyId, SecretKey, hmac};
use crate::api::SecretValue;

/// Domain separation: the digest key is derived from, never equal to, the sealing key.
const DIGEST_KEY_LABEL: &[u8] = b"swarmkeeper/digest/v1";

/// The key of the keyed digests in records and swarm secret names.
///
/// It is first derived from a sealing key (as digests always were, so
/// upgrading changes none), then stored sealed in etcd and kept across key
/// rotations (see `Store::digest_key`).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DigestKey([u8; KEY_LEN]);

impl fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DigestKey(<redacted>)")
    }
}

impl DigestKey {
    /// The digest key a sealing key implies.
    pub fn derive(key: &SecretKey) -> Self {
        Self(key.derive(DIGEST_KEY_LABEL))
    }

    /// A digest key from its stored bytes; `None` unless there are 32.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        <[u8; KEY_LEN]>::try_from(bytes).ok().map(Self)
    }

    /// The key's bytes, to be stored sealed and nowhere else.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// A hex HMAC-SHA256 of `plaintext`, so a record or status can show that
    /// a secret changed without revealing it.
    pub fn digest(&self, plaintext: &[u8]) -> String {
        hex::encode(hmac(&self.0, plaintext))
    }
}

/// The keys in use: the current one seals, the current and the previous one
/// open (by the key id in each value), and the digest key digests.
///
/// During a rotation the controller runs with the new key as current and the
/// old one as previous, so it reads values whichever key sealed them.
#[derive(Clone)]
pub struct Keyring {
    current: SecretKey,
    /// The previous key first: the digest key is implied from it.
    previous: Vec<SecretKey>,
    digest: DigestKey,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id())
            .field(
                "previous",
                &self.previous.iter().map(SecretKey::id).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// A keyring whose digest key is the one [`Keyring::implied_digest_key`]
    /// gives, until [`Keyring::with_digest_key`] sets the stored one.
    pub fn new(current: SecretKey, previous: Option<SecretKey>) -> Self {
        let digest = DigestKey::derive(previous.as_ref().unwrap_or(&current));
        Self {
            current,
            previous: previous.into_iter().collect(),
            digest,
        }
    }

    /// The same keyring, also opening what `key` sealed (never sealing with it).
    pub fn also_opening(mut self, key: SecretKey) -> Self {
        self.previous.push(key);
        self
    }

    /// The digest key to use while none is stored: the one derived from the
    /// previous key when there is one (the key the existing digests were made
    /// with), else from the current key.
    pub fn implied_digest_key(&self) -> DigestKey {
        DigestKey::derive(self.previous.first().unwrap_or(&self.current))
    }

    /// Uses `digest` (the stored digest key) for digests.
    pub fn with_digest_key(mut self, digest: DigestKey) -> Self {
        self.digest = digest;
        self
    }

    /// The key that seals.
    pub fn current(&self) -> &SecretKey {
        &self.current
    }

    /// Every key that opens: the current one, then the previous ones.
    pub fn keys(&self) -> impl Iterator<Item = &SecretKey> {
        std::iter::once(&self.current).chain(&self.previous)
    }

    /// Seals `plaintext` for `store_key` with the current key.
    pub fn seal(&self, store_key: &str, plaintext: &[u8]) -> Vec<u8> {
        self.current.seal(store_key, plaintext)
    }

    /// Opens a value with whichever key of the ring its key id names.
    ///
    /// # Errors
    /// As [`SecretKey::open`]; [`CryptoError::UnknownKey`] when no key of the
    /// ring sealed it.
    pub fn open(&self, store_key: &str, sealed: &[u8]) -> Result<SecretValue, CryptoError> {
        let key_id = KeyId::of_sealed(sealed).ok_or(CryptoError::OldFormat)?;
        self.keys()
            .find(|k| k.id() == key_id)
            .ok_or(CryptoError::UnknownKey { key_id })?
            .open(store_key, sealed)
    }

    /// Whether the current key sealed this value.
    pub fn is_current(&self, sealed: &[u8]) -> bool {
        KeyId::of_sealed(sealed) == Some(self.current.id())
    }

    /// The keyed digest of `plaintext` (hex HMAC-SHA256 under the digest key).
    pub fn digest(&self, plaintext: &[u8]) -> String {
        self.digest.digest(plaintext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(byte: u8) -> SecretKey {
        SecretKey::from_raw([byte; KEY_LEN])
    }

    #[test]
    fn a_keyring_opens_with_either_key_and_seals_with_the_current() {
        let old = SecretKey::generate();
        let new = SecretKey::generate();
        let sealed_old = old.seal("a", b"one");
        let ring = Keyring::new(new.clone(), Some(old.clone()));
        assert_eq!(ring.open("a", &sealed_old).unwrap().expose(), b"one");
        let sealed_new = ring.seal("b", b"two");
        assert!(ring.is_current(&sealed_new) && !ring.is_current(&sealed_old));
        assert_eq!(new.open("b", &sealed_new).unwrap().expose(), b"two");
        let only_new = Keyring::new(new, None);
        assert!(matches!(
            only_new.open("a", &sealed_old),
            Err(CryptoError::UnknownKey { .. })
        ));
    }

    #[test]
    fn digest_is_stable_per_key_and_differs_across_keys() {
        let key = DigestKey::derive(&fixed(1));
        let other = DigestKey::derive(&fixed(2));
        assert_eq!(key.digest(b"pw"), key.digest(b"pw"));
        assert_ne!(key.digest(b"pw"), key.digest(b"pw2"));
        assert_ne!(key.digest(b"pw"), other.digest(b"pw"));
        assert_eq!(key.digest(b"pw").len(), 64);
    }

    #[test]
    fn digests_are_those_made_before_key_ids() {
        // HMAC under HMAC(key, label): what every stored record already carries.
        let key = fixed(1);
        let derived = hmac(&[1u8; KEY_LEN], DIGEST_KEY_LABEL);
        let expected = hex::encode(hmac(&derived, b"pw"));
        assert_eq!(DigestKey::derive(&key).digest(b"pw"), expected);
    }

    #[test]
    fn a_rotation_keeps_digests_once_the_digest_key_is_set() {
        let old = fixed(1);
        let new = fixed(2);
        let before = Keyring::new(old.clone(), None);
        let during = Keyring::new(new.clone(), Some(old));
        assert_eq!(during.digest(b"pw"), before.digest(b"pw"));
        let after = Keyring::new(new, None).with_digest_key(during.implied_digest_key());
        assert_eq!(after.digest(b"pw"), before.digest(b"pw"));
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let key = fixed(0x41);
        let shown = format!("{:?}", Keyring::new(key.clone(), None));
        assert!(shown.contains(&key.id().to_string()), "{shown}");
        assert!(!shown.contains("65, 65"), "{shown}");
        assert_eq!(
            format!("{:?}", DigestKey::derive(&key)),
            "DigestKey(<redacted>)"
        );
    }
}
