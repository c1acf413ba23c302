//! JSON Schemas of the record kinds, generated from the Rust types (the `crds/` folder).

use std::path::{Path, PathBuf};

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Value, json};

use super::backup_job::BackupJobSpec;
use super::database_user::DatabaseUserSpec;
use super::kind::Kind;
use super::network::NetworkSpec;
use super::node::NodeSpec;
use super::record::{API_VERSION, Metadata};
use super::registry::RegistrySpec;
use super::secret::SecretSpec;
use super::stack::StackSpec;

/// The JSON Schema (draft 2020-12) of a whole record of `kind`, envelope included.
pub fn schema_for(kind: Kind) -> Value {
    let mut generator = SchemaGenerator::new(SchemaSettings::draft2020_12());
    let metadata = generator.subschema_for::<Metadata>();
    let spec = match kind {
        Kind::Stack => spec_schema::<StackSpec>(&mut generator),
        Kind::Network => spec_schema::<NetworkSpec>(&mut generator),
        Kind::Node => spec_schema::<NodeSpec>(&mut generator),
        Kind::Secret => spec_schema::<SecretSpec>(&mut generator),
        Kind::DatabaseUser => spec_schema::<DatabaseUserSpec>(&mut generator),
        Kind::Registry => spec_schema::<RegistrySpec>(&mut generator),
        Kind::BackupJob => spec_schema::<BackupJobSpec>(&mut generator),
    };
    let mut schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("https://swarmkeeper.dev/schemas/v1alpha1/{}.json", file_stem(kind)),
        "title": kind.as_str(),
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": false,
        "properties": {
            "apiVersion": {"const": API_VERSION},
            "kind": {"const": kind.as_str()},
            "metadata": metadata,
            "spec": spec,
        },
    });
    let definitions = generator.take_definitions(true);
    if !definitions.is_empty() {
        schema["$defs"] = Value::Object(definitions);
    }
    schema
}

fn spec_schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Value {
    generator.subschema_for::<T>().to_value()
}

fn file_stem(kind: Kind) -> String {
    kind.as_str().to_ascii_lowercase()
}

/// The schemas of every kind, as file name and pretty JSON with a trailing newline.
fn rendered() -> Vec<(String, String)> {
    Kind::ALL
        .into_iter()
        .map(|kind| {
            let text =
                serde_json::to_string_pretty(&schema_for(kind)).expect("a schema serializes");
            (format!("{}.json", file_stem(kind)), text + "\n")
        })
        .collect()
}

/// Writes `<dir>/<kind lowercase>.json` for every kind, creating `dir` if needed.
///
/// # Errors
/// The folder cannot be created or a file cannot be written.
pub fn write_all(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    rendered()
        .into_iter()
        .map(|(name, text)| {
            let path = dir.join(name);
            std::fs::write(&path, text)?;
            Ok(path)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_crds_are_current() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
        // `UPDATE_CRDS=1 cargo test committed_crds` regenerates them, as the CLI would.
        if std::env::var_os("UPDATE_CRDS").is_some() {
            write_all(&dir).unwrap();
        }
        for (name, text) in rendered() {
            let committed = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
            assert!(
                committed == text,
                "crds/{name} is stale: run `swarmkeeper schema --out crds/`"
            );
        }
    }

    #[test]
    fn envelope_is_fixed_per_kind() {
        let schema = schema_for(Kind::DatabaseUser);
        assert_eq!(schema["properties"]["kind"]["const"], "DatabaseUser");
        assert_eq!(schema["properties"]["apiVersion"]["const"], API_VERSION);
        let text = schema.to_string();
        assert!(text.contains("adminPasswordSecret"), "camelCase fields");
        assert!(
            text.contains("\"pattern\":\"^[a-z0-9][a-z0-9_.-]{0,62}$\""),
            "name rule"
        );
    }

    #[test]
    fn write_all_writes_one_file_per_kind() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_all(&dir.path().join("crds")).unwrap();
        assert_eq!(written.len(), Kind::ALL.len());
        assert!(written.iter().any(|p| p.ends_with("backupjob.json")));
        let text = std::fs::read_to_string(&written[0]).unwrap();
        assert!(text.ends_with("}\n"));
    }
}
