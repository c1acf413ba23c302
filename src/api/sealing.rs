//! Which sealed values a record may use: a Stack only those under its own key
//! prefix, so no record can have the controller decrypt another's secrets.
//!
//! The `x-swarmkeeper-secret` field of a compose secret names a sealed value
//! in the store. `apply` writes it when it seals a `file:` secret, always as
//! `stack:<stack>:<secret>`; anyone who can write a record can write it too,
//! so the rule is checked wherever a record is parsed (`apply` and the
//! controller alike) and again before the controller reads a value.

use super::FieldError;
use super::compose::{ComposeFile, STORE_KEY_FIELD};

/// What the secret-store names of a stack's `file:` secrets start with. Record
/// names cannot contain `:`, so no Secret record's name collides with them, and
/// no stack's prefix is another's.
pub fn stack_secret_prefix(stack: &str) -> String {
    format!("stack:{stack}:")
}

/// Whether `stack` may use the sealed value named `store_key`.
///
/// # Errors
/// Why not, naming the prefix it may use and never the value.
pub fn check_stack_reference(stack: &str, store_key: &str) -> Result<(), String> {
    let own = stack_secret_prefix(stack);
    match store_key.strip_prefix(&own) {
        Some(rest) if !rest.is_empty() => Ok(()),
        _ => Err(format!(
            "{store_key:?} is not this stack's: a stack may only use the sealed values of its \
             own `file:` secrets ({own}<secret>), which apply writes here; use an `external` \
             secret for a Secret record"
        )),
    }
}

/// Every compose secret of `stack` that references a sealed value it may not use.
pub fn check_stack_compose(stack: &str, compose: &ComposeFile, base_path: &str) -> Vec<FieldError> {
    compose
        .secrets
        .iter()
        .filter_map(|(name, def)| {
            let store_key = def.store_key.as_deref()?;
            let message = check_stack_reference(stack, store_key).err()?;
            Some(FieldError::new(
                format!("{base_path}.secrets.{name}.{STORE_KEY_FIELD}"),
                message,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_stack_may_use_only_values_under_its_own_prefix() {
        assert!(check_stack_reference("web", "stack:web:token").is_ok());
        for foreign in [
            "stack:other:token",
            "stack:web:",
            "stack:webx:token",
            "stack:we:b:token",
            "db_admin",
            "generated:db_admin:0",
            "keyring:digest",
            "",
        ] {
            let err = check_stack_reference("web", foreign).unwrap_err();
            assert!(err.contains("stack:web:<secret>"), "{foreign}: {err}");
        }
    }

    #[test]
    fn foreign_references_are_named_by_their_field() {
        let compose = ComposeFile::from_value(
            json!({
                "services": {"app": {"image": "x", "secrets": ["own", "stolen"]}},
                "secrets": {
                    "own": {"x-swarmkeeper-secret": "stack:web:own"},
                    "stolen": {"x-swarmkeeper-secret": "stack:first:token"},
                    "ext": {"external": true},
                }
            }),
            "spec.compose",
        )
        .unwrap();
        let errors = check_stack_compose("web", &compose, "spec.compose");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].path,
            "spec.compose.secrets.stolen.x-swarmkeeper-secret"
        );
        assert!(
            errors[0]
                .message
                .contains("\"stack:first:token\" is not this stack's"),
            "{}",
            errors[0].message
        );
    }
}
