//! Secret material held in memory: printing it never shows the value, and
//! dropping it wipes the bytes.
//!
//! Built on `secrecy` (a boxed value whose `Debug` is redacted and that is
//! zeroized on drop) rather than by hand, so every holder of plaintext — a
//! Secret's literal, a compose `file:` secret, a generated or a decrypted
//! value — shares one audited type.

use std::fmt;

use schemars::JsonSchema;
use secrecy::{ExposeSecret as _, SecretSlice};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroize as _;

/// A secret's bytes. `Debug` and `Display` print `<redacted>`, so a value that
/// ends up in a log line, an error or a panic message does not leak; the bytes
/// are zeroized when the value is dropped.
#[derive(Clone)]
pub struct SecretValue(SecretSlice<u8>);

impl SecretValue {
    /// Wraps secret bytes, leaving no copy behind in freed memory.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        let mut bytes = bytes.into();
        // `SecretSlice::from(Vec)` shrinks the vector to a boxed slice, which
        // reallocates when there is spare capacity and frees the old buffer
        // unwiped: copy into an exact allocation and wipe the original instead.
        if bytes.capacity() == bytes.len() {
            return Self(SecretSlice::from(bytes));
        }
        let exact = SecretSlice::from(bytes.as_slice().to_vec());
        bytes.zeroize();
        Self(exact)
    }

    /// The secret's bytes; call this only where the value is sent to its destination.
    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }

    /// The secret as text, when it is UTF-8.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(self.expose()).ok()
    }

    pub fn len(&self) -> usize {
        self.expose().len()
    }

    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

/// Equal bytes are equal values (used to skip rewriting an unchanged value).
impl PartialEq for SecretValue {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for SecretValue {}

impl From<String> for SecretValue {
    fn from(value: String) -> Self {
        Self::new(value.into_bytes())
    }
}

impl From<&str> for SecretValue {
    fn from(value: &str) -> Self {
        Self::new(value.as_bytes())
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Serializes as a string: only records in flight (before `apply` seals them)
/// carry a literal, and a literal was read from a string.
impl Serialize for SecretValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.expose_str() {
            Some(text) => serializer.serialize_str(text),
            None => Err(serde::ser::Error::custom("secret value is not UTF-8 text")),
        }
    }
}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::from)
    }
}

impl JsonSchema for SecretValue {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SecretValue".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "writeOnly": true})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let value = SecretValue::from("hunter2-canary");
        assert_eq!(format!("{value:?}"), "<redacted>");
        assert_eq!(format!("{value}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(&value)), "Some(<redacted>)");
        assert_eq!(value.expose(), b"hunter2-canary");
    }

    #[test]
    fn round_trips_through_serde_as_a_string() {
        let value: SecretValue = serde_json::from_str("\"s3cret\"").unwrap();
        assert_eq!(value.expose_str(), Some("s3cret"));
        assert_eq!(serde_json::to_string(&value).unwrap(), "\"s3cret\"");
        assert!(serde_json::to_string(&SecretValue::new(vec![0xff])).is_err());
    }

    #[test]
    fn spare_capacity_is_not_carried_over() {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(b"pw");
        let value = SecretValue::new(bytes);
        assert_eq!(value.expose(), b"pw");
        assert_eq!(value.len(), 2);
        assert_eq!(value.clone(), value);
        assert_ne!(value, SecretValue::from("other"));
    }
}
