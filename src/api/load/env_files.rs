//! Environment read from files at apply time: a service's `env_file:` merged into its
//! `environment:` as `docker stack deploy` merges them, and a Stack's `spec.envFiles`,
//! `.env` files whose variables feed interpolation as `docker compose` reads them.

use std::path::Path;

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::files::read_text;
use crate::api::interpolate::Env;

/// Parses an `env_file:` the way the CLI's `kvfile` does: one `KEY[=VALUE]` a line,
/// leading whitespace dropped, `#` comments and blank lines skipped, the value taken as
/// written (quotes included, trailing whitespace kept), a bare `KEY` taken from `env`
/// (and left out when unset there).
///
/// # Errors
/// The line number of a line without a name or with whitespace in its name; the line
/// itself is never quoted, since it may hold a value.
pub(super) fn parse_env_file(text: &str, env: Env<'_>) -> Result<Vec<(String, String)>, String> {
    let mut entries = Vec::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((key, value)) => (key, Some(value)),
            None => (line, None),
        };
        if key.is_empty() {
            return Err(format!("line {}: no variable name", number + 1));
        }
        if key.contains([' ', '\t']) {
            return Err(format!(
                "line {}: a variable name contains whitespace",
                number + 1
            ));
        }
        match value {
            Some(value) => entries.push((key.to_owned(), value.to_owned())),
            None => {
                if let Some(value) = env(key) {
                    entries.push((key.to_owned(), value));
                }
            }
        }
    }
    Ok(entries)
}

/// A service's environment as the CLI resolves it: its `env_file`s in order, then its
/// `environment:` over them; an entry without a value, or with an empty one, takes the
/// value `env` has for it. Returns the merged map when it differs from what is written
/// (an `env_file` was given, or `env` filled an entry), `None` to leave the service as is.
///
/// # Errors
/// `(field path under the service, message)` for a file that cannot be read or parsed.
pub(super) fn resolve_environment(
    service: &Map<String, Value>,
    base: &Path,
    env: Env<'_>,
) -> Result<Option<Value>, (String, String)> {
    let mut merged: IndexMap<String, Value> = IndexMap::new();
    let mut changed = false;
    let mut update = |merged: &mut IndexMap<String, Value>, key: String, value: Value| {
        let blank = value.is_null() || value.as_str() == Some("");
        match env(&key).filter(|_| blank) {
            Some(found) => {
                changed = true;
                merged.insert(key, Value::String(found));
            }
            None => {
                merged.insert(key, value);
            }
        }
    };
    let files = match service.get("env_file") {
        None => Vec::new(),
        Some(Value::String(one)) => vec![(String::from("env_file"), one.clone())],
        Some(Value::Array(many)) => many
            .iter()
            .enumerate()
            .filter_map(|(i, item)| Some((format!("env_file[{i}]"), item.as_str()?.to_owned())))
            .collect(),
        // Left for the typed pass to reject with its expected type.
        Some(_) => return Ok(None),
    };
    for (field, file) in &files {
        let path = base.join(file);
        let entries = read_text(&path)
            .and_then(|text| {
                parse_env_file(&text, env)
                    .map_err(|message| format!("{}: {message}", path.display()))
            })
            .map_err(|message| (field.clone(), message))?;
        for (key, value) in entries {
            update(&mut merged, key, Value::String(value));
        }
    }
    match service.get("environment") {
        Some(Value::Array(items)) => {
            for item in items {
                let Some(item) = item.as_str() else {
                    return Ok(None);
                };
                match item.split_once('=') {
                    Some((key, value)) => {
                        update(&mut merged, key.to_owned(), Value::String(value.to_owned()))
                    }
                    None => update(&mut merged, item.to_owned(), Value::Null),
                }
            }
        }
        Some(Value::Object(map)) => {
            for (key, value) in map {
                update(&mut merged, key.clone(), value.clone());
            }
        }
        None => {}
        Some(_) => return Ok(None),
    }
    Ok((changed || service.contains_key("env_file"))
        .then(|| Value::Object(merged.into_iter().collect())))
}

/// The variables of a Stack's `spec.envFiles`, later files over earlier ones, parsed as
/// `docker compose` reads a `.env` (quotes, `export`, comments) by `dotenvy`.
///
/// # Errors
/// `(index, message)` for a file that cannot be read or parsed; the message names the file
/// and never quotes a line.
pub(super) fn read_dotenv_files(
    files: &[String],
    folder: &Path,
) -> Result<IndexMap<String, String>, (usize, String)> {
    let mut vars = IndexMap::new();
    for (i, file) in files.iter().enumerate() {
        let path = folder.join(file);
        let text = read_text(&path).map_err(|message| (i, message))?;
        for item in dotenvy::from_read_iter(text.as_bytes()) {
            let (key, value) = item.map_err(|err| (i, dotenv_error(&path, &err)))?;
            vars.insert(key, value);
        }
    }
    Ok(vars)
}

fn dotenv_error(path: &Path, err: &dotenvy::Error) -> String {
    match err {
        dotenvy::Error::LineParse(_, index) => format!(
            "{}: cannot be parsed as a .env file (at character {index} of a line)",
            path.display()
        ),
        _ => format!("{}: cannot be read as a .env file", path.display()),
    }
}

#[cfg(test)]
mod tests;
