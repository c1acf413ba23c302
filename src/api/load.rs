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

use super::interpolate::{Env, interpolate_value};
use super::kind::Kind;
use super::record::{Record, Spec};
use super::secret::SecretSource;
use super::secret_value::SecretValue;
use super::FieldError;

/// Files larger than this are rejected before they are parsed.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Deepest nesting of mappings and sequences accepted.
const MAX_DEPTH: usize = 64;

/// The key under which a stack's `file:` secret is replaced by a reference to the
/// encrypted secret store.
pub const SECRET_REFERENCE_KEY: &str = "x-swarmkeeper-secret";

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
    let too_big = || format!("{} is larger than the {} MiB limit", path.display(), MAX_FILE_BYTES >> 20);
    let file = std::fs::File::open(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
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

fn read_text(path: &Path) -> Result<String, String> {
    String::from_utf8(read_limited(path)?).map_err(|_| format!("{} is not UTF-8 text", path.display()))
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
    options.alias_limits.max_total_replayed_events = 100_000;
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
fn parse_documents(text: &str, is_json: bool) -> Result<Vec<Value>, String> {
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

fn load_file(file: &Path, env: Env<'_>, loaded: &mut Vec<LoadedRecord>, problems: &mut Vec<Problem>) {
    let is_json = file.extension().is_some_and(|ext| ext == "json");
    let documents = match read_text(file).and_then(|text| parse_documents(&text, is_json)) {
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
    (kind.is_some() || name.is_some()).then(|| format!("{}/{}", kind.unwrap_or("?"), name.unwrap_or("?")))
}

type Loaded = (Record, Vec<String>, Vec<SecretMaterial>);

fn load_document(mut document: Value, folder: &Path, env: Env<'_>) -> Result<Loaded, Vec<FieldError>> {
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
            let mut stack_loader = StackLoader { stack: &stack, env, errors: &mut errors, warnings: &mut warnings, secrets: &mut secrets };
            stack_loader.prepare(spec, folder);
        }
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
                warnings.extend(compose.ignored_keys().into_iter().map(|key| format!("{key}: ignored by docker stack deploy")));
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
        (None, Some(file)) => SecretValue::new(read_limited(&folder.join(&file)).map_err(|message| FieldError::new("spec.value.file", message))?),
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
                Err(message) => return self.errors.push(FieldError::new("spec.composeFile", message)),
            }
        }
        let Some(compose) = spec.get_mut("compose") else { return };
        let mut unset = Vec::new();
        interpolate_value(compose, "spec.compose", self.env, self.errors, &mut unset);
        self.warnings.extend(
            unset
                .into_iter()
                .map(|name| format!("spec.compose: variable {name} is not set, defaulting to a blank string")),
        );
        let Some(compose) = compose.as_object_mut() else { return };
        let base = std::path::absolute(&folder).unwrap_or(folder);
        if let Some(Value::Object(services)) = compose.get_mut("services") {
            for service in services.values_mut() {
                if let Some(Value::Array(volumes)) = service.get_mut("volumes") {
                    volumes.iter_mut().for_each(|volume| resolve_bind(volume, &base));
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
        let Some(config) = config.as_object_mut() else { return };
        let Some(Value::String(file)) = config.get("file") else { return };
        match read_text(&base.join(file)) {
            Ok(content) => {
                config.remove("file");
                config.insert("content".to_owned(), Value::String(content));
            }
            Err(message) => self.errors.push(FieldError::new(format!("spec.compose.configs.{name}.file"), message)),
        }
    }

    fn seal_stack_secret(&mut self, name: &str, secret: &mut Value, base: &Path) {
        let Some(secret) = secret.as_object_mut() else { return };
        let Some(Value::String(file)) = secret.get("file") else { return };
        match read_limited(&base.join(file)) {
            Ok(bytes) => {
                let store_key = format!("stack:{}:{name}", self.stack);
                secret.remove("file");
                secret.insert(SECRET_REFERENCE_KEY.to_owned(), Value::String(store_key.clone()));
                self.secrets.push(SecretMaterial {
                    store_key,
                    value: SecretValue::new(bytes),
                });
            }
            Err(message) => self.errors.push(FieldError::new(format!("spec.compose.secrets.{name}.file"), message)),
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
                && (source == "." || source == ".." || source.starts_with("./") || source.starts_with("../"))
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
