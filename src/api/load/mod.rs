//! Reading records from files and folders: hardened YAML/JSON parsing, `composeFile`
//! and `file:` resolution, interpolation, and sealing of secret material.
//!
//! Every problem of every file is collected before the load fails, so one run of
//! `apply` names all of them.
//!
//! # Layout
//! This file holds the public API, the problems a load reports, and the walk over files
//! and their documents; each step of reading one is a child module:
//! - `files`: which files are read, and the size caps on reading them;
//! - `yaml`: the parser's budgets (depth, aliases) and the docker CLI's YAML scalars;
//! - `compose_file`: a Stack's compose file made inline, interpolated and resolved, its
//!   `file:` configs and secrets read;
//! - `env_files`: a service's `env_file`s merged as the CLI merges them, and a Stack's
//!   `envFiles` read for interpolation;
//! - `seal`: a Secret record's value taken out of the record.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::FieldError;
use super::interpolate::Env;
use super::kind::Kind;
use super::record::{Record, Spec};
use super::secret_value::SecretValue;

mod compose_file;
mod env_files;
mod files;
mod seal;
mod yaml;

use compose_file::StackLoader;
use files::{collect_files, read_text};
use seal::seal;

pub use files::MAX_FILE_BYTES;
pub(crate) use yaml::parse_documents;

/// The key under which a stack's `file:` secret is replaced by a reference to the
/// encrypted secret store.
pub const SECRET_REFERENCE_KEY: &str = "x-swarmkeeper-secret";

pub use super::sealing::stack_secret_prefix;

/// A record read from a file, ready to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedRecord {
    pub record: Record,
    pub file: PathBuf,
    /// 0-based position of the document in its file (messages print it 1-based).
    pub index: usize,
    /// Things `docker stack deploy` would warn about (ignored keys, unset variables).
    pub warnings: Vec<String>,
    /// Secret values taken out of the record, to be stored encrypted before it is written.
    pub secrets: Vec<SecretMaterial>,
}

/// A secret value read at load time, and where it goes in the secret store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMaterial {
    /// `<name>` of a `Secret` record, or `stack:<stack>:<secret>` for a stack's `file:` secret.
    pub store_key: String,
    pub value: SecretValue,
}

/// One problem with the inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 0-based document index; `None` when the whole file is at fault.
    pub index: Option<usize>,
    /// `Kind/name` when the document says.
    pub record: Option<String>,
    /// The field path inside the record.
    pub path: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.file.display())?;
        if let Some(index) = self.index {
            write!(f, " document {}", index + 1)?;
        }
        if let Some(record) = &self.record {
            write!(f, " ({record})")?;
        }
        if self.index.is_some() || self.record.is_some() {
            f.write_str(":")?;
        }
        if let Some(path) = self.path.as_deref().filter(|p| !p.is_empty()) {
            write!(f, " {path}:")?;
        }
        write!(f, " {}", self.message)
    }
}

/// Loading failed; one line per problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// Loads every record of `paths`: files (any extension) and folders (recursively, their
/// `*.yaml`, `*.yml` and `*.json` files, in sorted order). `env` feeds interpolation.
///
/// # Errors
/// Every problem in every input: unreadable or oversized files, YAML or JSON that does
/// not parse or breaks the limits (aliases, depth), invalid records, duplicate names.
pub fn load_paths(paths: &[PathBuf], env: Env<'_>) -> Result<Vec<LoadedRecord>, LoadError> {
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        if let Err(message) = collect_files(path, &mut files) {
            problems.push(file_problem(path, message));
        }
    }
    let mut loaded = Vec::new();
    for file in &files {
        load_file(file, env, &mut loaded, &mut problems);
    }
    let mut seen: HashMap<(Kind, &str), &LoadedRecord> = HashMap::new();
    for item in &loaded {
        if let Some(first) = seen.insert(item.record.key(), item) {
            let (kind, name) = item.record.key();
            problems.push(Problem {
                file: item.file.clone(),
                index: Some(item.index),
                record: Some(format!("{kind}/{name}")),
                path: Some("metadata.name".to_owned()),
                message: format!(
                    "duplicate {kind}/{name}: already defined in {} document {}",
                    first.file.display(),
                    first.index + 1
                ),
            });
        }
    }
    if problems.is_empty() {
        Ok(loaded)
    } else {
        Err(LoadError { problems })
    }
}

fn file_problem(file: &Path, message: String) -> Problem {
    Problem {
        file: file.to_owned(),
        index: None,
        record: None,
        path: None,
        message,
    }
}

fn load_file(
    file: &Path,
    env: Env<'_>,
    loaded: &mut Vec<LoadedRecord>,
    problems: &mut Vec<Problem>,
) {
    let is_json = file.extension().is_some_and(|ext| ext == "json");
    // A record file may hold a literal secret: its text is wiped once parsed.
    let text = read_text(file).map(zeroize::Zeroizing::new);
    let documents = match text.and_then(|text| parse_documents(&text, is_json)) {
        Ok(documents) => documents,
        Err(message) => return problems.push(file_problem(file, message)),
    };
    let folder = file.parent().unwrap_or(Path::new("."));
    for (index, document) in documents.into_iter().enumerate() {
        let label = record_label(&document);
        match load_document(document, folder, env) {
            Ok((record, warnings, secrets)) => loaded.push(LoadedRecord {
                record,
                file: file.to_owned(),
                index,
                warnings,
                secrets,
            }),
            Err(errors) => problems.extend(errors.into_iter().map(|error| Problem {
                file: file.to_owned(),
                index: Some(index),
                record: label.clone(),
                path: Some(error.path),
                message: error.message,
            })),
        }
    }
}

/// `Kind/name` from a raw document, with `?` for a part it lacks.
fn record_label(document: &Value) -> Option<String> {
    let kind = document.get("kind").and_then(Value::as_str);
    let name = document.pointer("/metadata/name").and_then(Value::as_str);
    (kind.is_some() || name.is_some())
        .then(|| format!("{}/{}", kind.unwrap_or("?"), name.unwrap_or("?")))
}

type Loaded = (Record, Vec<String>, Vec<SecretMaterial>);

fn load_document(
    mut document: Value,
    folder: &Path,
    env: Env<'_>,
) -> Result<Loaded, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut secrets = Vec::new();
    if document.get("kind").and_then(Value::as_str) == Some(Kind::Stack.as_str()) {
        let stack = document
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Some(spec) = document.get_mut("spec").and_then(Value::as_object_mut) {
            let mut stack_loader = StackLoader {
                stack: &stack,
                env,
                errors: &mut errors,
                warnings: &mut warnings,
                secrets: &mut secrets,
            };
            stack_loader.prepare(spec, folder);
        }
    }
    // A compose file that could not be read or interpolated would only repeat its
    // problems as validation errors of the text left in place.
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut record = match Record::from_value(document) {
        Ok(record) => record,
        Err(record_errors) => {
            errors.extend(record_errors);
            return Err(errors);
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    match &mut record.spec {
        Spec::Secret(spec) => {
            if let Some(value) = &mut spec.value {
                let material = seal(value, folder).map_err(|error| vec![error])?;
                secrets.push(SecretMaterial {
                    store_key: record.metadata.name.clone(),
                    value: material,
                });
            }
        }
        Spec::Stack(spec) => {
            if let Some(compose) = &spec.compose {
                warnings.extend(
                    compose
                        .ignored_keys()
                        .into_iter()
                        .map(|key| key.to_string()),
                );
            }
        }
        _ => {}
    }
    Ok((record, warnings, secrets))
}

#[cfg(test)]
mod arbitrary;

/// What the child modules' tests share: a folder of files, loaded.
#[cfg(test)]
mod fixtures {
    use std::path::Path;

    use super::{LoadError, LoadedRecord, load_paths};

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// Writes `files` (relative path, content) into a fresh folder.
    pub(super) fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        dir
    }

    pub(super) fn load_one(path: &Path) -> Result<Vec<LoadedRecord>, LoadError> {
        load_paths(&[path.to_owned()], &no_env)
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{folder, load_one};
    use super::*;

    const NETWORK: &str =
        "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Network\nmetadata:\n  name: front\nspec: {}\n";

    #[test]
    fn invalid_inputs_name_file_document_record_and_field() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "unknown kind",
                "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Widget\nmetadata: {name: w}\nspec: {}\n",
                "document 1 (Widget/w): kind: unknown kind \"Widget\"",
            ),
            (
                "missing kind",
                "apiVersion: swarmkeeper.dev/v1alpha1\nmetadata: {name: w}\nspec: {}\n",
                "document 1 (?/w): kind: missing field",
            ),
            (
                "bad name",
                "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Network\nmetadata: {name: Front_End}\nspec: {}\n",
                "document 1 (Network/Front_End): metadata.name: \"Front_End\" is not a valid name",
            ),
            (
                "wrong type",
                "apiVersion: swarmkeeper.dev/v1alpha1\nkind: DatabaseUser\nmetadata: {name: u}\nspec:\n  engine: postgres\n  server: {host: db, port: x, adminUser: a, adminPasswordSecret: s}\n  user: u\n  passwordSecret: p\n",
                "document 1 (DatabaseUser/u): spec.server.port: invalid type: string, expected u16",
            ),
            (
                "unknown field",
                "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Secret\nmetadata: {name: s}\nspec:\n  generate: {lenght: 32}\n",
                "document 1 (Secret/s): spec.generate: unknown field, expected `length` or `charset`",
            ),
            (
                "bad second document",
                "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Network\nmetadata: {name: front}\nspec: {}\n---\napiVersion: swarmkeeper.dev/v1alpha1\nkind: BackupJob\nmetadata: {name: nightly}\nspec: {schedule: 'every night', image: pg}\n",
                "document 2 (BackupJob/nightly): spec.schedule: \"every night\" is not a five-field cron expression",
            ),
            ("not yaml", "apiVersion: [unclosed\n", "bad.yaml: "),
        ];
        for (what, content, expected) in cases {
            let dir = folder(&[("bad.yaml", content)]);
            let err = load_one(&dir.path().join("bad.yaml")).unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("{}: ", dir.path().join("bad.yaml").display())),
                "{what}: {text}"
            );
            assert!(text.contains(expected), "{what}: {text}");
        }
    }

    #[test]
    fn problems_of_all_files_are_collected() {
        let dir = folder(&[
            ("a.yaml", "kind: Network\nmetadata: {name: a}\nspec: {}\n"),
            (
                "b/c.yml",
                "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Node\nmetadata: {name: n}\nspec: {availability: off}\n",
            ),
            ("b/ignored.txt", "not: a record"),
        ]);
        let err = load_one(dir.path()).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert_eq!(err.problems[0].path.as_deref(), Some("apiVersion"));
        assert_eq!(err.problems[1].record.as_deref(), Some("Node/n"));
        assert_eq!(err.problems[1].index, Some(0));
        assert_eq!(err.to_string().lines().count(), 2);
    }

    #[test]
    fn duplicates_across_files_are_an_error() {
        let dir = folder(&[("a.yaml", NETWORK), ("b.json", &serde_json::json!({
            "apiVersion": "swarmkeeper.dev/v1alpha1", "kind": "Network", "metadata": {"name": "front"}, "spec": {}
        }).to_string())]);
        let err = load_one(dir.path()).unwrap_err();
        assert_eq!(err.problems.len(), 1);
        let text = err.to_string();
        assert!(text.contains("b.json: document 1 (Network/front): metadata.name: duplicate Network/front: already defined in"), "{text}");
    }

    #[test]
    fn problem_display() {
        let problem = Problem {
            file: "examples/bad.yaml".into(),
            index: Some(1),
            record: Some("Stack/web".into()),
            path: Some("spec.compose.services.web.networks[0]".into()),
            message: "network \"nope\" is not defined".into(),
        };
        assert_eq!(
            problem.to_string(),
            "examples/bad.yaml: document 2 (Stack/web): spec.compose.services.web.networks[0]: network \"nope\" is not defined"
        );
        let whole_file = Problem {
            index: None,
            record: None,
            path: None,
            ..problem
        };
        assert_eq!(
            whole_file.to_string(),
            "examples/bad.yaml: network \"nope\" is not defined"
        );
    }
}
