//! A Stack's `composeFiles`: several compose files read, each resolved on its own as the
//! docker CLI loads each `-c` file (interpolated, `env_file`s merged, paths made absolute,
//! `file:` objects read), then merged in order with the CLI's rules (`compose::merge`).
//!
//! Relative paths in every file start from the first file's folder: the CLI takes its
//! working directory from the first `-c` file alone.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::compose_file::{StackLoader, parse_compose};
use super::files::read_text;
use crate::api::FieldError;
use crate::api::compose::{Layer, merge_layers};

/// Reads every file of `composeFiles` (relative to `record_folder`), each with the path
/// its problems are named under (`spec.composeFiles[1]`), and the first file's folder.
/// Every unreadable file is named before giving up.
pub(super) fn read_compose_files(
    files: &Value,
    record_folder: &Path,
    errors: &mut Vec<FieldError>,
) -> Option<(Vec<(String, Value)>, PathBuf)> {
    let Some(files) = files.as_array().filter(|files| !files.is_empty()) else {
        errors.push(FieldError::new(
            "spec.composeFiles",
            "expected a list of compose file names",
        ));
        return None;
    };
    let mut layers = Vec::new();
    let mut folder = None;
    let errors_before = errors.len();
    for (i, file) in files.iter().enumerate() {
        let field = format!("spec.composeFiles[{i}]");
        let Some(relative) = file.as_str() else {
            errors.push(FieldError::new(field, "expected a file name"));
            continue;
        };
        let path = record_folder.join(relative);
        match read_text(&path).and_then(|text| parse_compose(&text)) {
            Ok(compose) => layers.push((field, compose)),
            Err(message) => errors.push(FieldError::new(field, message)),
        }
        folder.get_or_insert_with(|| path.parent().unwrap_or(record_folder).to_owned());
    }
    (errors.len() == errors_before).then(|| (layers, folder.unwrap_or_default()))
}

impl StackLoader<'_, '_> {
    /// The resolved files merged into one compose file; `sealed_before` is where this
    /// stack's secret values start in `self.secrets`.
    pub(super) fn merge(
        &mut self,
        layers: Vec<(String, Value)>,
        sealed_before: usize,
    ) -> Option<Value> {
        let mut paths = Vec::new();
        let mut parsed = Vec::new();
        for (path, compose) in layers {
            match Layer::from_value(compose, &path) {
                Ok(layer) => parsed.push(layer),
                Err(error) => self.errors.push(error),
            }
            paths.push(path);
        }
        if parsed.len() != paths.len() {
            return None;
        }
        let merged = match merge_layers(parsed) {
            Ok(merged) => merged,
            Err((i, path, message)) => {
                let path = format!("{}.{path}", paths[i]);
                self.errors.push(FieldError::new(path, message));
                return None;
            }
        };
        // A later file's secret replaces an earlier one's whole: keep the value of the
        // definition that won, under the one store key they share.
        let used: HashSet<&String> = merged
            .secrets
            .values()
            .filter_map(|secret| secret.store_key.as_ref())
            .collect();
        let mut ours = self.secrets.split_off(sealed_before);
        let mut seen = HashSet::new();
        ours.reverse();
        ours.retain(|m| used.contains(&m.store_key) && seen.insert(m.store_key.clone()));
        ours.reverse();
        self.secrets.extend(ours);
        match serde_json::to_value(&merged) {
            Ok(value) => Some(value),
            Err(error) => {
                self.errors.push(FieldError::new(
                    "spec.composeFiles",
                    format!("the merged compose file does not serialize: {error}"),
                ));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::api::load::fixtures::{folder, load_one};
    use crate::api::load::{SecretMaterial, load_paths};
    use crate::api::secret_value::SecretValue;

    const RECORD: &str = "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Stack\nmetadata: {name: web}\nspec:\n  composeFiles: [compose/base.yml, compose/prod/prod.yml]\n";

    #[test]
    fn files_are_resolved_one_by_one_from_the_first_files_folder_and_merged() {
        let dir = folder(&[
            ("web.yaml", RECORD),
            (
                "compose/base.yml",
                "version: '3.8'\nservices:\n  web:\n    image: app:${TAG}\n    env_file: web.env\n    volumes: ['./data:/data']\n    secrets: [token]\n    deploy: {replicas: 0}\nsecrets:\n  token: {file: ./token.txt}\n",
            ),
            (
                "compose/prod/prod.yml",
                "version: '3.8'\nservices:\n  web:\n    environment: {WHO: prod, TIER: '${TIER}'}\n    volumes: ['./logs:/logs']\n    configs: [site]\nconfigs:\n  site: {file: ./site.conf}\nsecrets:\n  token: {file: ./prod-token.txt}\n",
            ),
            ("compose/web.env", "WHO=file\nFROM_FILE=1\n"),
            ("compose/token.txt", "canary-base-1"),
            ("compose/prod-token.txt", "canary-prod-2"),
            ("compose/site.conf", "listen 80;\n"),
        ]);
        let env = |name: &str| match name {
            "TAG" => Some("1.0".to_owned()),
            "TIER" => Some("prod".to_owned()),
            _ => None,
        };
        let loaded = load_paths(&[dir.path().join("web.yaml")], &env).unwrap();
        let item = &loaded[0];
        let spec = &item.record.to_value()["spec"];
        assert!(spec.get("composeFiles").is_none(), "stored merged, inline");
        let compose = &spec["compose"];
        let web = &compose["services"]["web"];
        assert_eq!(web["image"], "app:1.0");
        assert_eq!(
            web["environment"],
            json!({"WHO": "prod", "FROM_FILE": "1", "TIER": "prod"})
        );
        // The CLI's working directory is the first file's: prod.yml's `./logs` too.
        let base = std::path::absolute(dir.path().join("compose")).unwrap();
        assert_eq!(
            web["volumes"],
            json!([
                format!("{}:/data", base.join("data").display()),
                format!("{}:/logs", base.join("logs").display()),
            ])
        );
        assert_eq!(
            compose["configs"]["site"],
            json!({"content": "listen 80;\n"})
        );
        assert_eq!(
            compose["secrets"]["token"],
            json!({"x-swarmkeeper-secret": "stack:web:token"})
        );
        assert_eq!(
            item.secrets,
            [SecretMaterial {
                store_key: "stack:web:token".into(),
                value: SecretValue::from("canary-prod-2"),
            }],
            "the later file's secret replaced the earlier one"
        );
        assert!(!item.record.to_value().to_string().contains("canary"));
    }

    #[test]
    fn problems_name_the_file_they_are_in() {
        let dir = folder(&[
            ("web.yaml", RECORD),
            (
                "compose/base.yml",
                "version: '3.8'\nservices:\n  web: {image: x}\n",
            ),
            (
                "compose/prod/prod.yml",
                "version: '3.8'\nservices:\n  web: {deploy: {replicas: many}}\n",
            ),
        ]);
        let err = load_one(&dir.path().join("web.yaml")).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert_eq!(
            err.problems[0].path.as_deref(),
            Some("spec.composeFiles[1].services.web.deploy.replicas"),
            "{err}"
        );

        let dir = folder(&[
            ("web.yaml", RECORD),
            (
                "compose/base.yml",
                "version: '3.1'\nservices:\n  web: {image: x}\n",
            ),
            ("compose/prod/prod.yml", "version: '3.4'\nservices: {}\n"),
        ]);
        let err = load_one(&dir.path().join("web.yaml")).unwrap_err();
        assert_eq!(
            err.problems[0].path.as_deref(),
            Some("spec.composeFiles[1].version"),
            "{err}"
        );

        let dir = folder(&[("web.yaml", RECORD)]);
        let err = load_one(&dir.path().join("web.yaml")).unwrap_err();
        let paths: Vec<_> = err.problems.iter().filter_map(|p| p.path.clone()).collect();
        assert_eq!(
            paths,
            ["spec.composeFiles[0]", "spec.composeFiles[1]"],
            "{err}"
        );
        assert!(
            err.to_string().contains("web.yaml: document 1 (Stack/web)"),
            "{err}"
        );
    }

    #[test]
    fn compose_files_exclude_the_other_sources() {
        let dir = folder(&[
            (
                "web.yaml",
                "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Stack\nmetadata: {name: web}\nspec:\n  composeFile: a.yml\n  composeFiles: [a.yml]\n",
            ),
            ("a.yml", "services:\n  web: {image: x}\n"),
            (
                "empty.yaml",
                "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Stack\nmetadata: {name: empty}\nspec:\n  composeFiles: []\n",
            ),
        ]);
        let err = load_one(dir.path()).unwrap_err();
        let lines: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
        assert!(
            lines.iter().any(|l| l.contains("empty.yaml")
                && l.contains("spec.composeFiles: expected a list of compose file names")),
            "{err}"
        );
        assert!(
            lines.iter().any(|l| l.contains(
                "(Stack/web): spec: set only one of compose, composeFile or composeFiles"
            )),
            "{err}"
        );
    }
}
