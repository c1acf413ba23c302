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
