//! Type errors that name the field and the expected type, never the value written.
//!
//! serde's messages quote what they were given (`invalid type: string
//! "s3cr3t", expected a boolean`), and a record with a typo in a secret field
//! would put the secret into a CI log. Every record parse error goes through
//! here: the quoted value is dropped everywhere (`invalid type: string,
//! expected a boolean`), and in the specs of kinds that carry secrets (Secret,
//! DatabaseUser, Registry) unknown field names are dropped too, from the
//! message and the path, since a key can be a value typed without its colon
//! (`value: {literal s3cr3t}` is the key `literal s3cr3t`). Anything else
//! serde says there is replaced by a message that quotes nothing.

use serde_path_to_error::{Error, Segment};

use super::FieldError;
use super::compose::join_path;
use super::kind::Kind;

/// What a message in a secret-holding spec says when serde's own could quote a value.
const HIDDEN: &str = "invalid value (not shown: this field may hold a secret)";
const EXPECTED: &str = ", expected ";

/// Whether the spec of `kind` may hold secret values, or passwords typed where a
/// Secret's name belongs.
pub(crate) fn holds_secrets(kind: Kind) -> bool {
    matches!(kind, Kind::Secret | Kind::DatabaseUser | Kind::Registry)
}

/// The problem at the path of `err` (under `base`), with nothing of the value
/// quoted; with `secrets`, nothing of unknown field names either.
pub(crate) fn field_error(base: &str, err: Error<serde_json::Error>, secrets: bool) -> FieldError {
    let path = join_path(base, err.path());
    // For an unknown field, serde_path_to_error's last segment is the field itself.
    let last = err.path().iter().next_back().map(Segment::to_string);
    let message = err.into_inner().to_string();
    if let Some(redacted) = without_value(&message) {
        return FieldError::new(path, redacted);
    }
    if !secrets || is_safe(&message) {
        return FieldError::new(path, message);
    }
    if let Some(redacted) = without_field_name(&message) {
        let parent = last.map_or_else(|| path.clone(), |last| drop_last_segment(&path, &last));
        return FieldError::new(parent, redacted);
    }
    FieldError::new(path, HIDDEN)
}

/// `invalid type|value: <what> <quoted>, expected <exp>` without the quoted
/// part, and `unknown variant `<v>`, ...` without the variant.
fn without_value(message: &str) -> Option<String> {
    for head in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(head) {
            let (unexpected, expected) = rest.rsplit_once(EXPECTED)?;
            return Some(format!("{head}{}{EXPECTED}{expected}", noun(unexpected)));
        }
    }
    let rest = message.strip_prefix("unknown variant `")?;
    Some(match rest.rsplit_once(EXPECTED) {
        Some((_, expected)) => format!("unknown variant{EXPECTED}{expected}"),
        None => "unknown variant".to_owned(),
    })
}

/// The kind of a value as serde names it (`string`, `integer`, `map`), without
/// the value itself (`string "..."`, ``integer `5` ``).
fn noun(unexpected: &str) -> &str {
    let end = [" \"", " `"]
        .iter()
        .filter_map(|quote| unexpected.find(quote))
        .min()
        .unwrap_or(unexpected.len());
    &unexpected[..end]
}

/// `unknown field `<k>`, expected ...` without the field's name.
fn without_field_name(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(match rest.rsplit_once(EXPECTED) {
        Some((_, expected)) => format!("unknown field{EXPECTED}{expected}"),
        None => "unknown field".to_owned(),
    })
}

/// `path` without its last segment `last` (and the dot before it).
fn drop_last_segment(path: &str, last: &str) -> String {
    match path.strip_suffix(last) {
        Some(parent) => parent.strip_suffix('.').unwrap_or(parent).to_owned(),
        None => path.to_owned(),
    }
}

/// serde messages that name only fields, lengths and types, never a value.
fn is_safe(message: &str) -> bool {
    message.starts_with("missing field `")
        || message.starts_with("duplicate field `")
        || message.starts_with("invalid length ")
        || message.starts_with("data did not match any variant")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Spec {
        #[serde(default)]
        value: Option<Value>,
        #[serde(default)]
        count: Option<u16>,
        #[serde(default)]
        mode: Option<Mode>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Value {
        literal: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    #[allow(dead_code)]
    enum Mode {
        Fast,
        Slow,
    }

    fn error(value: serde_json::Value, secrets: bool) -> FieldError {
        let err = serde_path_to_error::deserialize::<_, Spec>(value).unwrap_err();
        field_error("spec", err, secrets)
    }

    const CANARY: &str = "s3cr3t-canary";

    #[test]
    fn type_errors_keep_path_and_expected_type_but_not_the_value() {
        let cases = [
            (
                json!({"value": CANARY}),
                "spec.value",
                "invalid type: string, expected struct Value",
            ),
            (
                json!({"value": {"literal": 4242}}),
                "spec.value.literal",
                "invalid type: integer, expected a string",
            ),
            (
                json!({"value": {"literal": true}}),
                "spec.value.literal",
                "invalid type: boolean, expected a string",
            ),
            (
                json!({"value": {"literal": 1.5}}),
                "spec.value.literal",
                "invalid type: floating point, expected a string",
            ),
            (
                json!({"value": {"literal": [CANARY]}}),
                "spec.value.literal",
                "invalid type: sequence, expected a string",
            ),
            (
                json!({"count": 70000}),
                "spec.count",
                "invalid value: integer, expected u16",
            ),
            (
                json!({"mode": CANARY}),
                "spec.mode",
                "unknown variant, expected `fast` or `slow`",
            ),
        ];
        for secrets in [false, true] {
            for (input, path, message) in &cases {
                let err = error(input.clone(), secrets);
                assert_eq!(
                    (err.path.as_str(), err.message.as_str()),
                    (*path, *message),
                    "{input}"
                );
            }
        }
    }

    #[test]
    fn a_value_that_looks_like_the_message_is_still_dropped() {
        let tricky = format!("{CANARY}\", expected x");
        let err = error(json!({"value": {"literal": 7}, "count": tricky}), false);
        assert!(!err.to_string().contains(CANARY), "{err}");
        let err = error(json!({"value": tricky}), false);
        assert_eq!(err.message, "invalid type: string, expected struct Value");
    }

    #[test]
    fn in_secret_specs_unknown_field_names_are_dropped_from_message_and_path() {
        let typo = format!("literal {CANARY}");
        let err = error(json!({"value": {typo.clone(): null}}), true);
        assert_eq!(err.path, "spec.value");
        assert_eq!(err.message, "unknown field, expected `literal`");
        let err = error(json!({CANARY: 1}), true);
        assert_eq!(err.path, "spec");
        assert!(!err.to_string().contains(CANARY), "{err}");
        // Elsewhere a field name is no secret, and helps to find a typo.
        let err = error(json!({"cuont": 1}), false);
        assert_eq!(err.path, "spec.cuont");
        assert!(
            err.message.starts_with("unknown field `cuont`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn missing_fields_are_named_and_anything_else_is_hidden_in_secret_specs() {
        let err = error(json!({"value": {}}), true);
        assert_eq!(err.message, "missing field `literal`");
        assert_eq!(without_value("invalid type: map"), None);
        assert!(is_safe("invalid length 2, expected 3"));
        assert!(!is_safe(&format!("bad {CANARY}")));
    }

    #[test]
    fn secret_kinds() {
        assert!(holds_secrets(Kind::Secret));
        assert!(holds_secrets(Kind::DatabaseUser));
        assert!(holds_secrets(Kind::Registry));
        assert!(!holds_secrets(Kind::Stack));
    }
}
