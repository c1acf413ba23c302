//! Sealing a Secret record: its user-written value (`literal:`, or a `file:` read now) is
//! taken out of the record, to be stored encrypted, and `sealed: true` left in its place.

use std::path::Path;

use super::files::read_swarm_object;
use crate::api::FieldError;
use crate::api::secret::SecretSource;
use crate::api::secret_value::SecretValue;

/// Takes a user-written secret value out of the record, leaving `sealed: true`.
pub(super) fn seal(value: &mut SecretSource, folder: &Path) -> Result<SecretValue, FieldError> {
    let material = match (value.literal.take(), value.file.take()) {
        (Some(literal), None) => literal,
        (None, Some(file)) => SecretValue::new(
            read_swarm_object(&folder.join(&file))
                .map_err(|message| FieldError::new("spec.value.file", message))?,
        ),
        _ => {
            return Err(FieldError::new(
                "spec.value",
                "write the value as literal or file; sealed and digest are set by apply",
            ));
        }
    };
    *value = SecretSource::sealed(None);
    Ok(material)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Record;
    use crate::api::load::SecretMaterial;
    use crate::api::load::fixtures::{folder, load_one};

    #[test]
    fn secret_values_are_taken_out_of_the_record() {
        let dir = folder(&[
            (
                "records/secrets.yaml",
                "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Secret\nmetadata: {name: lit}\nspec:\n  value: {literal: canary-literal-1}\n---\napiVersion: swarmkeeper.dev/v1alpha1\nkind: Secret\nmetadata: {name: fromfile}\nspec:\n  value: {file: ../keys/token}\n",
            ),
            ("keys/token", "canary-file-2\n"),
        ]);
        let loaded = load_one(&dir.path().join("records")).unwrap();
        assert_eq!(loaded.len(), 2);
        for (item, key, value) in [
            (&loaded[0], "lit", "canary-literal-1"),
            (&loaded[1], "fromfile", "canary-file-2\n"),
        ] {
            assert_eq!(
                item.secrets,
                [SecretMaterial {
                    store_key: key.into(),
                    value: SecretValue::from(value)
                }]
            );
            let stored = item.record.to_value().to_string();
            assert!(!stored.contains("canary"), "{stored}");
            assert!(!format!("{item:?}").contains("canary"));
            assert_eq!(
                item.record.to_value()["spec"]["value"],
                serde_json::json!({"sealed": true})
            );
            assert!(
                Record::from_value(item.record.to_value()).is_ok(),
                "the stored form is valid"
            );
        }
        let sealed_by_hand = folder(&[(
            "s.yaml",
            "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Secret\nmetadata: {name: s}\nspec:\n  value: {sealed: true}\n",
        )]);
        let err = load_one(sealed_by_hand.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains("(Secret/s): spec.value: write the value as literal or file"),
            "{err}"
        );
    }
}
