//! Reading records from files and folders: hardened YAML/JSON parsing, `composeFile`
//! and `file:` resolution, interpolation, and sealing of secret material.
//!
//! Every problem of every file is collected before the load fails, so one run of
//! `apply` names all of them.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value};

use super::FieldError;
use super::interpolate::{Env, interpolate_value};
use super::kind::Kind;
use super::record::{Record, Spec};
use super::secret::SecretSource;
use super::secret_value::SecretValue;

/// Files larger than this are rejected before they are parsed.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Swarm refuses secrets and configs larger than this (`MaxSecretSize`, `MaxConfigSize`).
const MAX_SWARM_OBJECT_BYTES: usize = 500 * 1024;
/// Deepest nesting of mappings and sequences accepted.
const MAX_DEPTH: usize = 64;

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

fn collect_files(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), String> {
    let metadata = std::fs::metadata(path).map_err(|err| format!("cannot read: {err}"))?;
    if !metadata.is_dir() {
        files.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .and_then(|dir| dir.map(|entry| entry.map(|e| e.path())).collect())
        .map_err(|err| format!("cannot list folder: {err}"))?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            collect_files(&entry, files)?;
        } else if entry
            .extension()
            .and_then(|ext| ext.to_str())
            .is_some_and(|ext| matches!(ext, "yaml" | "yml" | "json"))
        {
            files.push(entry);
        }
    }
    Ok(())
}

/// Reads a file, refusing one over [`MAX_FILE_BYTES`] before reading it.
fn read_limited(path: &Path) -> Result<Vec<u8>, String> {
    let too_big = || {
        format!(
            "{} is larger than the {} MiB limit",
            path.display(),
            MAX_FILE_BYTES >> 20
        )
    };
    let file = std::fs::File::open(path)
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size > MAX_FILE_BYTES {
        return Err(too_big());
    }
    // The size can change between stat and read (or be 0 for a pipe): cap the read too.
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big());
    }
    Ok(bytes)
}

/// Reads the content of a swarm secret or config, which the swarm caps at 500 KiB.
fn read_swarm_object(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = read_limited(path)?;
    if bytes.len() > MAX_SWARM_OBJECT_BYTES {
        return Err(format!(
            "{} is larger than 500 KiB, the swarm's limit for a secret or config",
            path.display()
        ));
    }
    Ok(bytes)
}

fn read_text(path: &Path) -> Result<String, String> {
    utf8(path, read_limited(path)?)
}

fn utf8(path: &Path, bytes: Vec<u8>) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))
}

fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_aliases = 10_000;
    budget.max_anchors = 10_000;
    budget.max_events = 1_000_000;
    budget.max_documents = 10_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    // An alias bomb expands exponentially: cap the replayed events far below what
    // would take noticeable time, and far above what real anchors (`<<: *defaults`) need.
    options.alias_limits.max_total_replayed_events = 20_000;
    options.alias_limits.max_replay_stack_depth = 16;
    options.alias_limits.max_alias_expansions_per_anchor = 1_000;
    // As go-yaml v3 (the docker CLI's parser): `yes`/`on` stay strings, `0640` is octal.
    options.strict_booleans = true;
    options.legacy_octal_numbers = true;
    // Messages are one line each.
    options.with_snippet = false;
    options
}

/// Parses YAML (or JSON, which is YAML) into one value per non-empty document.
pub(crate) fn parse_documents(text: &str, is_json: bool) -> Result<Vec<Value>, String> {
    if is_json {
        // serde_json stops at 128 levels of nesting with an error, never a stack overflow.
        return match serde_json::from_str::<Value>(text).map_err(|err| err.to_string())? {
            Value::Array(items) => Ok(items),
            single => Ok(vec![single]),
        };
    }
    serde_saphyr::from_str_multiple_with_options::<Value, Vec<Value>>(text, yaml_options())
        .map_err(|err| err.to_string().replace('\n', " "))
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
                        .map(|key| format!("{key}: ignored by docker stack deploy")),
                );
            }
        }
        _ => {}
    }
    Ok((record, warnings, secrets))
}

/// Takes a user-written secret value out of the record, leaving `sealed: true`.
fn seal(value: &mut SecretSource, folder: &Path) -> Result<SecretValue, FieldError> {
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

/// Turns a Stack's spec as written into the form stored: compose inline, interpolated,
/// with relative paths resolved and file contents read.
struct StackLoader<'a, 'e> {
    stack: &'a str,
    env: Env<'e>,
    errors: &'a mut Vec<FieldError>,
    warnings: &'a mut Vec<String>,
    secrets: &'a mut Vec<SecretMaterial>,
}

impl StackLoader<'_, '_> {
    fn prepare(&mut self, spec: &mut Map<String, Value>, record_folder: &Path) {
        let mut folder = record_folder.to_owned();
        if !spec.contains_key("compose")
            && let Some(Value::String(relative)) = spec.get("composeFile")
        {
            let path = record_folder.join(relative);
            match read_text(&path).and_then(|text| parse_compose(&text)) {
                Ok(compose) => {
                    spec.remove("composeFile");
                    spec.insert("compose".to_owned(), compose);
                    folder = path.parent().unwrap_or(record_folder).to_owned();
                }
                Err(message) => {
                    return self
                        .errors
                        .push(FieldError::new("spec.composeFile", message));
                }
            }
        }
        let Some(compose) = spec.get_mut("compose") else {
            return;
        };
        let mut unset = Vec::new();
        interpolate_value(compose, "spec.compose", self.env, self.errors, &mut unset);
        self.warnings.extend(unset.into_iter().map(|name| {
            format!("spec.compose: variable {name} is not set, defaulting to a blank string")
        }));
        let Some(compose) = compose.as_object_mut() else {
            return;
        };
        let base = std::path::absolute(&folder).unwrap_or(folder);
        if let Some(Value::Object(services)) = compose.get_mut("services") {
            for service in services.values_mut() {
                if let Some(Value::Array(volumes)) = service.get_mut("volumes") {
                    volumes
                        .iter_mut()
                        .for_each(|volume| resolve_bind(volume, &base));
                }
            }
        }
        if let Some(Value::Object(configs)) = compose.get_mut("configs") {
            for (name, config) in configs.iter_mut() {
                self.inline_config(name, config, &base);
            }
        }
        if let Some(Value::Object(secrets)) = compose.get_mut("secrets") {
            for (name, secret) in secrets.iter_mut() {
                self.seal_stack_secret(name, secret, &base);
            }
        }
    }

    fn inline_config(&mut self, name: &str, config: &mut Value, base: &Path) {
        let Some(config) = config.as_object_mut() else {
            return;
        };
        let Some(Value::String(file)) = config.get("file") else {
            return;
        };
        let path = base.join(file);
        match read_swarm_object(&path).and_then(|bytes| utf8(&path, bytes)) {
            Ok(content) => {
                config.remove("file");
                config.insert("content".to_owned(), Value::String(content));
            }
            Err(message) => self.errors.push(FieldError::new(
                format!("spec.compose.configs.{name}.file"),
                message,
            )),
        }
    }

    fn seal_stack_secret(&mut self, name: &str, secret: &mut Value, base: &Path) {
        let Some(secret) = secret.as_object_mut() else {
            return;
        };
        let Some(Value::String(file)) = secret.get("file") else {
            return;
        };
        match read_swarm_object(&base.join(file)) {
            Ok(bytes) => {
                let store_key = format!("{}{name}", stack_secret_prefix(self.stack));
                secret.remove("file");
                secret.insert(
                    SECRET_REFERENCE_KEY.to_owned(),
                    Value::String(store_key.clone()),
                );
                self.secrets.push(SecretMaterial {
                    store_key,
                    value: SecretValue::new(bytes),
                });
            }
            Err(message) => self.errors.push(FieldError::new(
                format!("spec.compose.secrets.{name}.file"),
                message,
            )),
        }
    }
}

fn parse_compose(text: &str) -> Result<Value, String> {
    let mut documents = parse_documents(text, false)?;
    match (documents.pop(), documents.is_empty()) {
        (Some(compose @ Value::Object(_)), true) => Ok(compose),
        _ => Err("a compose file must hold exactly one mapping".to_owned()),
    }
}

/// Makes a relative bind-mount source absolute against `base`, as the docker CLI does:
/// in the short form (`./data:/data`) a source starting with `.` is a path (anything else
/// without `/` is a volume name); in the long form, any relative `source` of `type: bind`.
fn resolve_bind(volume: &mut Value, base: &Path) {
    match volume {
        Value::String(short) => {
            if let Some((source, rest)) = short.split_once(':')
                && (source == "."
                    || source == ".."
                    || source.starts_with("./")
                    || source.starts_with("../"))
            {
                *short = format!("{}:{rest}", clean(&base.join(source)).display());
            }
        }
        Value::Object(long) => {
            if long.get("type").and_then(Value::as_str) == Some("bind")
                && let Some(Value::String(source)) = long.get_mut("source")
                && !Path::new(source.as_str()).is_absolute()
            {
                *source = clean(&base.join(source.as_str())).display().to_string();
            }
        }
        _ => {}
    }
}

/// Removes `.` and `..` lexically (the path names a file on a node, not here).
fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// Writes `files` (relative path, content) into a fresh folder.
    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        dir
    }

    fn load_one(path: &Path) -> Result<Vec<LoadedRecord>, LoadError> {
        load_paths(&[path.to_owned()], &no_env)
    }

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
    fn an_alias_bomb_is_rejected_fast() {
        let mut bomb = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for level in b'b'..=b'i' {
            let previous = char::from(level - 1);
            let refs = vec![format!("*{previous}"); 9].join(",");
            bomb.push_str(&format!(
                "{}: &{} [{refs}]\n",
                char::from(level),
                char::from(level)
            ));
        }
        let dir = folder(&[("bomb.yaml", &bomb)]);
        let started = Instant::now();
        let err = load_one(&dir.path().join("bomb.yaml")).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(err.problems.len(), 1);
        assert_eq!(err.problems[0].index, None);
        assert!(
            err.to_string().contains("alias replay limit exceeded"),
            "{err}"
        );
    }

    #[test]
    fn deep_nesting_is_rejected_without_overflowing_the_stack() {
        let depth = 10_000;
        let flow_seq = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let flow_map = format!("{}1{}", "{a: ".repeat(depth), "}".repeat(depth));
        let json = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let dir = folder(&[
            ("seq.yaml", &flow_seq),
            ("map.yaml", &flow_map),
            (
                "indent.yaml",
                &format!(
                    "spec:\n{}",
                    (1..200)
                        .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
                        .collect::<String>()
                ),
            ),
            ("deep.json", &json),
        ]);
        let err = load_one(dir.path()).unwrap_err();
        let files: Vec<_> = err
            .problems
            .iter()
            .map(|p| p.file.file_name().unwrap().to_str().unwrap())
            .collect();
        for file in ["seq.yaml", "map.yaml", "indent.yaml", "deep.json"] {
            assert!(files.contains(&file), "{file} accepted: {err}");
        }
    }

    #[test]
    fn oversized_files_are_rejected_before_parsing() {
        let dir = folder(&[]);
        let path = dir.path().join("big.yaml");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(MAX_FILE_BYTES + 1)
            .unwrap();
        let err = load_one(&path).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("big.yaml is larger than the 4 MiB limit"),
            "{err}"
        );
        let secret = folder(&[(
            "s.yaml",
            "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Secret\nmetadata: {name: s}\nspec:\n  value: {file: big.bin}\n",
        )]);
        std::fs::write(secret.path().join("big.bin"), vec![b'x'; 600 * 1024]).unwrap();
        let err = load_one(&secret.path().join("s.yaml")).unwrap_err();
        assert!(
            err.to_string().contains("(Secret/s): spec.value.file: ")
                && err.to_string().ends_with(
                    "big.bin is larger than 500 KiB, the swarm's limit for a secret or config"
                ),
            "{err}"
        );
    }

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

    const STACK_RECORD: &str = "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Stack\nmetadata: {name: web}\nspec:\n  composeFile: compose/web.yml\n";

    const COMPOSE: &str = r#"
services:
  web:
    image: "nginx:${TAG:-1.25}"
    command: ["sh", "-c", "echo $$HOME ${UNSET_ONE}"]
    volumes:
      - ./html:/usr/share/nginx/html:ro
      - ../shared:/shared
      - data:/data
      - type: bind
        source: ./conf
        target: /etc/nginx/conf.d
      - type: volume
        source: cache
        target: /cache
    configs: [site]
    secrets: [token]
volumes:
  data: {}
  cache: {}
configs:
  site:
    file: ./site.conf
secrets:
  token:
    file: ./token.txt
    labels: {a: b}
"#;

    #[test]
    fn compose_file_is_read_interpolated_and_stored_inline() {
        let dir = folder(&[
            ("stacks/web.yaml", STACK_RECORD),
            ("stacks/compose/web.yml", COMPOSE),
            ("stacks/compose/site.conf", "server { listen 80; }\n"),
            ("stacks/compose/token.txt", "canary-stack-3"),
        ]);
        let env = |name: &str| (name == "TAG").then(|| "1.27".to_owned());
        let loaded = load_paths(&[dir.path().join("stacks/web.yaml")], &env).unwrap();
        let item = &loaded[0];
        let spec = &item.record.to_value()["spec"];
        assert!(spec.get("composeFile").is_none());
        let compose = &spec["compose"];
        let web = &compose["services"]["web"];
        assert_eq!(web["image"], "nginx:1.27");
        assert_eq!(web["command"][2], "echo $HOME ");
        let base = std::path::absolute(dir.path().join("stacks/compose")).unwrap();
        let volumes = web["volumes"].as_array().unwrap();
        assert_eq!(
            volumes[0],
            format!("{}:/usr/share/nginx/html:ro", base.join("html").display())
        );
        assert_eq!(
            volumes[1],
            format!(
                "{}:/shared",
                base.parent().unwrap().join("shared").display()
            )
        );
        assert_eq!(volumes[2], "data:/data");
        assert_eq!(
            volumes[3]["source"],
            base.join("conf").display().to_string()
        );
        assert_eq!(volumes[4]["source"], "cache");
        assert_eq!(
            compose["configs"]["site"],
            serde_json::json!({"content": "server { listen 80; }\n"})
        );
        assert_eq!(
            compose["secrets"]["token"],
            serde_json::json!({"labels": {"a": "b"}, "x-swarmkeeper-secret": "stack:web:token"})
        );
        assert_eq!(
            item.secrets,
            [SecretMaterial {
                store_key: "stack:web:token".into(),
                value: SecretValue::from("canary-stack-3")
            }]
        );
        assert!(!item.record.to_value().to_string().contains("canary"));
        assert_eq!(
            item.warnings,
            ["spec.compose: variable UNSET_ONE is not set, defaulting to a blank string"]
        );
    }

    #[test]
    fn compose_problems_name_their_path() {
        let dir = folder(&[
            (
                "web.yaml",
                "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Stack\nmetadata: {name: web}\nspec:\n  compose:\n    services:\n      web: {image: \"app:${TAG:?set TAG}\"}\n    configs:\n      c: {file: missing.conf}\n",
            ),
            (
                "other.yaml",
                "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Stack\nmetadata: {name: other}\nspec:\n  composeFile: nope.yml\n",
            ),
        ]);
        let err = load_one(dir.path()).unwrap_err();
        let lines: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 3, "{err}");
        assert!(
            lines[0]
                .contains("other.yaml: document 1 (Stack/other): spec.composeFile: cannot read"),
            "{}",
            lines[0]
        );
        assert!(lines[1].contains("web.yaml: document 1 (Stack/web): spec.compose.services.web.image: required variable TAG is missing a value: set TAG"), "{}", lines[1]);
        assert!(
            lines[2].contains("(Stack/web): spec.compose.configs.c.file: cannot read"),
            "{}",
            lines[2]
        );
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
