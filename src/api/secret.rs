//! `Secret`: a swarm secret whose value is generated, or given once and sealed.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::rules::Errors;
use super::secret_value::SecretValue;

/// The desired state of a swarm secret. Exactly one of `generate` or `value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSpec {
    /// Generate a random value once (and again on each rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<Generate>,
    /// A given value. Users write `literal` or `file`; `apply` moves the value to the
    /// encrypted secret store and keeps `sealed: true` (plus its digest) in the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<SecretSource>,
    /// Raise to rotate: a new value is generated and stored as a new secret version.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rotation: u32,
    /// Labels on the swarm secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// How a value is generated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Generate {
    /// Length in characters.
    #[schemars(range(min = 8, max = 4096))]
    pub length: u16,
    #[serde(default)]
    pub charset: Charset,
}

/// The characters a generated value is drawn from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Charset {
    /// `A-Z a-z 0-9`: safe in URIs, shells and config files.
    #[default]
    Alnum,
    /// `0-9 a-f`.
    Hex,
    /// Printable ASCII without space, quotes and backslash.
    Printable,
}

impl Charset {
    /// The alphabet a generator draws from.
    pub fn alphabet(self) -> &'static [u8] {
        match self {
            Charset::Alnum => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            Charset::Hex => b"0123456789abcdef",
            Charset::Printable => {
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&()*+,-./:;<=>?@[]^_{|}~"
            }
        }
    }
}

/// Where a given value comes from. Exactly one of `literal`, `file` (what users write)
/// or `sealed` (what `apply` stores).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSource {
    /// The value itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub literal: Option<SecretValue>,
    /// A file holding the value, relative to the record's file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Set by `apply`: the value lives in the encrypted secret store under the record's name.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sealed: bool,
    /// Set by `apply`: `hmac-sha256:<hex>`, keyed with the operator's key, of the sealed value, so a changed value changes the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl SecretSource {
    /// The stored form of a value that was moved to the secret store.
    pub fn sealed(digest: Option<String>) -> Self {
        Self {
            sealed: true,
            digest,
            ..Self::default()
        }
    }
}

impl SecretSpec {
    pub(crate) fn validate(&self, errors: &mut Errors) {
        match (&self.generate, &self.value) {
            (Some(_), Some(_)) => errors.push("spec", "set either generate or value, not both"),
            (None, None) => errors.push("spec", "set one of generate or value"),
            _ => {}
        }
        if let Some(generate) = &self.generate
            && !(8..=4096).contains(&generate.length)
        {
            errors.push("spec.generate.length", "must be between 8 and 4096");
        }
        if let Some(value) = &self.value {
            let given = [value.literal.is_some(), value.file.is_some(), value.sealed];
            if given.iter().filter(|set| **set).count() != 1 {
                errors.push("spec.value", "set exactly one of literal or file");
            }
            if value.digest.is_some() && !value.sealed {
                errors.push("spec.value.digest", "only a sealed value has a digest");
            }
            if value.file.as_deref().is_some_and(str::is_empty) {
                errors.push("spec.value.file", "must not be empty");
            }
            if self.rotation != 0 {
                errors.push("spec.rotation", "only a generated value can be rotated");
            }
        }
        errors.labels("spec.labels", &self.labels);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(spec: serde_json::Value) -> Vec<String> {
        let spec: SecretSpec = serde_json::from_value(spec).unwrap();
        Errors::found_by(|errors| spec.validate(errors))
    }

    #[test]
    fn exactly_one_source() {
        assert!(errors_of(serde_json::json!({"generate": {"length": 32}})).is_empty());
        assert!(errors_of(serde_json::json!({"value": {"literal": "x"}})).is_empty());
        assert!(
            errors_of(serde_json::json!({"value": {"sealed": true, "digest": "sha256:00"}}))
                .is_empty()
        );
        assert_eq!(
            errors_of(serde_json::json!({})),
            ["spec: set one of generate or value"]
        );
        assert_eq!(
            errors_of(serde_json::json!({"generate": {"length": 8}, "value": {"file": "a"}})),
            ["spec: set either generate or value, not both"]
        );
        assert_eq!(
            errors_of(serde_json::json!({"value": {"literal": "x", "file": "a"}})),
            ["spec.value: set exactly one of literal or file"]
        );
        assert_eq!(
            errors_of(serde_json::json!({"generate": {"length": 4}})),
            ["spec.generate.length: must be between 8 and 4096"]
        );
    }

    #[test]
    fn debug_never_shows_a_literal() {
        let spec: SecretSpec =
            serde_json::from_value(serde_json::json!({"value": {"literal": "canary-7781"}}))
                .unwrap();
        assert!(!format!("{spec:?}").contains("canary-7781"));
    }

    #[test]
    fn alphabets_have_no_quotes_or_spaces() {
        for charset in [Charset::Alnum, Charset::Hex, Charset::Printable] {
            assert!(
                charset
                    .alphabet()
                    .iter()
                    .all(|c| c.is_ascii_graphic() && !b"'\"\\`".contains(c))
            );
        }
    }
}
