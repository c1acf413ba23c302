//! `${VAR}` interpolation of compose content from apply's environment, exactly as
//! `docker stack deploy` does it (docker/cli's `compose/template`), and the CLI's type casts
//! of interpolated values at typed paths (its loader's `interpolateTypeCastMapping`).
//!
//! The CLI's grammar, quirks included, because a file must mean what it means to the CLI:
//! - `$$` is a literal `$`; `$VAR` and `${VAR}` expand (unset is blank, with a warning);
//! - `${VAR:-default}` (unset or empty), `${VAR-default}` (unset), `${VAR:?err}`,
//!   `${VAR?err}`: the text after the operator runs to the first `}` and is taken
//!   literally, never interpolated again, so `${A:-$$}` is `$$` and `${A:-${B}}` is the
//!   default `${B` followed by the `}` left over;
//! - the unbraced form takes an operator too (`$VAR-x` is `$VAR` with the default `x`);
//! - the operator is found by searching the text for `:-`, `-`, `:?`, `?` in that order;
//! - any other `$` is an error.
//!
//! One addition the CLI refuses (so no file the CLI accepts changes meaning):
//! `${VAR:+alt}` and `${VAR+alt}`, as `docker compose` has them.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::FieldError;

/// Looks up an environment variable.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// One reference: `$$`, `$NAME[op...]`, `${NAME[op...]}`, or a `$` that is none of those.
/// The braced body admits `+` after the name for the `docker compose` alternative.
static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\$(?i:(?P<escaped>\$)|(?P<named>[_a-z][_a-z0-9]*(?::?[-?][^}]*)?)|\{(?P<braced>[_a-z][_a-z0-9]*(?::?[-?+][^}]*)?)\}|(?P<invalid>))",
    )
    .expect("the reference pattern compiles")
});

/// Interpolates one string. Variables that are unset and have no default expand to
/// the empty string and are added to `unset` (the CLI warns about them).
///
/// # Errors
/// A malformed reference, or a required variable (`${VAR?err}`) that is unset.
pub fn interpolate_str(
    input: &str,
    env: Env<'_>,
    unset: &mut Vec<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut last = 0;
    for captures in REFERENCE.captures_iter(input) {
        let whole = captures.get(0).expect("group 0 is the match");
        out.push_str(&input[last..whole.start()]);
        last = whole.end();
        if captures.name("escaped").is_some() {
            out.push('$');
            continue;
        }
        let Some(body) = captures.name("named").or_else(|| captures.name("braced")) else {
            return Err(format!(
                "invalid interpolation format in {input:?}: a \"$\" must start $NAME or ${{NAME}}; you may need to escape any $ with another $"
            ));
        };
        out.push_str(&substitute(body.as_str(), env, unset)?);
    }
    out.push_str(&input[last..]);
    Ok(out)
}

/// Expands one reference's body (`NAME`, `NAME:-default`...), trying the operators in the
/// CLI's order: each one applies when the body contains it anywhere.
fn substitute(body: &str, env: Env<'_>, unset: &mut Vec<String>) -> Result<String, String> {
    let name_len = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    let after_name = &body[name_len..];
    if let Some(alternative) = after_name.strip_prefix(":+") {
        let value = env(&body[..name_len]).filter(|v| !v.is_empty());
        return Ok(value.map(|_| alternative.to_owned()).unwrap_or_default());
    }
    if let Some(alternative) = after_name.strip_prefix('+') {
        let value = env(&body[..name_len]);
        return Ok(value.map(|_| alternative.to_owned()).unwrap_or_default());
    }
    if let Some((name, default)) = body.split_once(":-") {
        return Ok(env(name)
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_owned()));
    }
    if let Some((name, default)) = body.split_once('-') {
        return Ok(env(name).unwrap_or_else(|| default.to_owned()));
    }
    for (operator, empty_is_missing) in [(":?", true), ("?", false)] {
        if let Some((name, message)) = body.split_once(operator) {
            return match env(name) {
                Some(value) if !(empty_is_missing && value.is_empty()) => Ok(value),
                _ => Err(format!(
                    "required variable {name} is missing a value: {message}"
                )),
            };
        }
    }
    Ok(env(body).unwrap_or_else(|| {
        if !unset.iter().any(|known| known == body) {
            unset.push(body.to_owned());
        }
        String::new()
    }))
}

/// What an interpolated string becomes at a typed path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cast {
    Int,
    Float,
    Bool,
}

/// The CLI's cast table: compose paths (`*` any key, `[]` any list item) whose
/// interpolated strings become numbers or booleans.
const CASTS: &[(&str, Cast)] = &[
    ("services.*.configs.[].mode", Cast::Int),
    ("services.*.secrets.[].mode", Cast::Int),
    ("services.*.healthcheck.retries", Cast::Int),
    ("services.*.healthcheck.disable", Cast::Bool),
    ("services.*.deploy.replicas", Cast::Int),
    ("services.*.deploy.update_config.parallelism", Cast::Int),
    (
        "services.*.deploy.update_config.max_failure_ratio",
        Cast::Float,
    ),
    ("services.*.deploy.rollback_config.parallelism", Cast::Int),
    (
        "services.*.deploy.rollback_config.max_failure_ratio",
        Cast::Float,
    ),
    ("services.*.deploy.restart_policy.max_attempts", Cast::Int),
    (
        "services.*.deploy.placement.max_replicas_per_node",
        Cast::Int,
    ),
    ("services.*.ports.[].target", Cast::Int),
    ("services.*.ports.[].published", Cast::Int),
    ("services.*.ulimits.*", Cast::Int),
    ("services.*.ulimits.*.hard", Cast::Int),
    ("services.*.ulimits.*.soft", Cast::Int),
    ("services.*.privileged", Cast::Bool),
    ("services.*.oom_score_adj", Cast::Int),
    ("services.*.read_only", Cast::Bool),
    ("services.*.stdin_open", Cast::Bool),
    ("services.*.tty", Cast::Bool),
    ("services.*.volumes.[].read_only", Cast::Bool),
    ("services.*.volumes.[].volume.nocopy", Cast::Bool),
    ("networks.*.external", Cast::Bool),
    ("networks.*.internal", Cast::Bool),
    ("networks.*.attachable", Cast::Bool),
    ("volumes.*.external", Cast::Bool),
    ("secrets.*.external", Cast::Bool),
    ("configs.*.external", Cast::Bool),
];

fn cast_for(segments: &[String]) -> Option<Cast> {
    CASTS.iter().find_map(|(pattern, cast)| {
        let parts: Vec<&str> = pattern.split('.').collect();
        (parts.len() == segments.len()
            && parts
                .iter()
                .zip(segments)
                .all(|(part, segment)| *part == "*" || part == segment))
        .then_some(*cast)
    })
}

impl Cast {
    /// Go's `strconv.Atoi`, `strconv.ParseFloat` and YAML 1.1 booleans, as the CLI casts.
    fn apply(self, text: &str) -> Result<Value, String> {
        let failed = |what: &str| format!("failed to cast to expected type: invalid {what}");
        match self {
            Self::Int => text
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| failed("integer")),
            Self::Float => text
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| failed("number")),
            Self::Bool => match text.to_ascii_lowercase().as_str() {
                "y" | "yes" | "true" | "on" => Ok(Value::Bool(true)),
                "n" | "no" | "false" | "off" => Ok(Value::Bool(false)),
                _ => Err(failed("boolean")),
            },
        }
    }
}

/// Interpolates every string scalar of a compose file (not mapping keys), casting the
/// strings interpolation changed at the CLI's typed paths, and collecting a problem per
/// string that fails, at its path under `path`.
pub fn interpolate_compose(
    value: &mut Value,
    path: &str,
    env: Env<'_>,
    errors: &mut Vec<FieldError>,
    unset: &mut Vec<String>,
) {
    let mut walk = Walk {
        env,
        errors,
        unset,
        segments: Vec::new(),
    };
    walk.value(value, path);
}

struct Walk<'a, 'e> {
    env: Env<'e>,
    errors: &'a mut Vec<FieldError>,
    unset: &'a mut Vec<String>,
    /// The compose path of the value, as the cast table spells it.
    segments: Vec<String>,
}

impl Walk<'_, '_> {
    fn value(&mut self, value: &mut Value, path: &str) {
        match value {
            Value::String(text) if text.contains('$') => {
                match interpolate_str(text, self.env, self.unset) {
                    // As the CLI: a string interpolation left unchanged is never cast.
                    Ok(expanded) if expanded == *text => {}
                    Ok(expanded) => match cast_for(&self.segments) {
                        None => *text = expanded,
                        Some(cast) => match cast.apply(&expanded) {
                            Ok(cast) => *value = cast,
                            Err(message) => self.errors.push(FieldError::new(path, message)),
                        },
                    },
                    Err(message) => self.errors.push(FieldError::new(path, message)),
                }
            }
            Value::Array(items) => {
                self.segments.push("[]".to_owned());
                for (i, item) in items.iter_mut().enumerate() {
                    self.value(item, &format!("{path}[{i}]"));
                }
                self.segments.pop();
            }
            Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    self.segments.push(key.clone());
                    self.value(item, &format!("{path}.{key}"));
                    self.segments.pop();
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
