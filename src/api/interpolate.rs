//! `${VAR}` interpolation of compose content from apply's environment, as
//! `docker stack deploy` does it.
//!
//! Supported: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`,
//! `${VAR?error}`, `${VAR:+alternative}`, `${VAR+alternative}` and `$$` for a literal `$`.
//! Defaults and alternatives may themselves hold references (`${A:-${B}}`).
//! Any other `$` is an error, as in the docker CLI.

use serde_json::Value;

use super::FieldError;

/// Looks up an environment variable.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

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
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body_and_tail) = after.strip_prefix('{') {
            let end = closing_brace(body_and_tail).ok_or_else(|| {
                format!("invalid interpolation format in {input:?}: unclosed \"${{\"")
            })?;
            out.push_str(&expand_braced(&body_and_tail[..end], input, env, unset)?);
            rest = &body_and_tail[end + 1..];
        } else {
            let len = name_len(after);
            if len == 0 {
                return Err(format!(
                    "invalid interpolation format in {input:?}: \"$\" must be followed by a variable name, \"{{\" or \"$\" (write \"$$\" for a literal \"$\")"
                ));
            }
            let name = &after[..len];
            out.push_str(&lookup_or_blank(name, env, unset));
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Interpolates every string scalar of `value` (not mapping keys), collecting a problem
/// per string that fails, at its path under `path`.
pub fn interpolate_value(
    value: &mut Value,
    path: &str,
    env: Env<'_>,
    errors: &mut Vec<FieldError>,
    unset: &mut Vec<String>,
) {
    match value {
        Value::String(text) if text.contains('$') => match interpolate_str(text, env, unset) {
            Ok(expanded) => *text = expanded,
            Err(message) => errors.push(FieldError::new(path, message)),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_value(item, &format!("{path}[{i}]"), env, errors, unset);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                interpolate_value(item, &format!("{path}.{key}"), env, errors, unset);
            }
        }
        _ => {}
    }
}

/// The length of the variable name at the start of `text` (0 when there is none).
fn name_len(text: &str) -> usize {
    let bytes = text.as_bytes();
    if !bytes
        .first()
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
    {
        return 0;
    }
    bytes
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
        .unwrap_or(bytes.len())
}

/// The index of the `}` that closes an opened `${`, counting nested braces.
fn closing_brace(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn lookup_or_blank(name: &str, env: Env<'_>, unset: &mut Vec<String>) -> String {
    env(name).unwrap_or_else(|| {
        if !unset.iter().any(|known| known == name) {
            unset.push(name.to_owned());
        }
        String::new()
    })
}

/// Expands the inside of `${...}`.
fn expand_braced(
    body: &str,
    input: &str,
    env: Env<'_>,
    unset: &mut Vec<String>,
) -> Result<String, String> {
    let len = name_len(body);
    let (name, operator) = body.split_at(len);
    let invalid = || format!("invalid interpolation format in {input:?}: \"${{{body}}}\"");
    if name.is_empty() {
        return Err(invalid());
    }
    if operator.is_empty() {
        return Ok(lookup_or_blank(name, env, unset));
    }
    let value = env(name);
    // With a colon, an empty value counts as unset.
    let (strict, op) = match operator.strip_prefix(':') {
        Some(op) => (true, op),
        None => (false, operator),
    };
    let is_set = value.as_deref().is_some_and(|v| !(strict && v.is_empty()));
    // Operators are ASCII, so a non-ASCII first character leaves no word and is rejected below.
    let word = op.get(1..).unwrap_or_default();
    match op.chars().next() {
        Some('-') if is_set => Ok(value.unwrap_or_default()),
        Some('-') => interpolate_str(word, env, unset),
        Some('+') if is_set => interpolate_str(word, env, unset),
        Some('+') => Ok(String::new()),
        Some('?') if is_set => Ok(value.unwrap_or_default()),
        Some('?') => {
            let message = interpolate_str(word, env, unset)?;
            Err(format!(
                "required variable {name} is missing a value: {message}"
            ))
        }
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TAG" => Some("1.2".into()),
            "EMPTY" => Some(String::new()),
            "HOST" => Some("db".into()),
            _ => None,
        }
    }

    fn run(input: &str) -> Result<(String, Vec<String>), String> {
        let mut unset = Vec::new();
        interpolate_str(input, &env, &mut unset).map(|out| (out, unset))
    }

    #[test]
    fn expansion_table() {
        for (input, expected, unset) in [
            ("app:${TAG}", "app:1.2", &[][..]),
            ("app:$TAG-x", "app:1.2-x", &[]),
            ("$$TAG costs $$5", "$TAG costs $5", &[]),
            ("${MISSING}x", "x", &["MISSING"]),
            ("$MISSING", "", &["MISSING"]),
            ("${MISSING:-dflt}", "dflt", &[]),
            ("${EMPTY:-dflt}", "dflt", &[]),
            ("${EMPTY-dflt}", "", &[]),
            ("${MISSING-dflt}", "dflt", &[]),
            ("${MISSING:-${HOST}:5432}", "db:5432", &[]),
            ("${MISSING:-${OTHER:-x}}", "x", &[]),
            ("${TAG:+set}", "set", &[]),
            ("${EMPTY:+set}", "", &[]),
            ("${EMPTY+set}", "set", &[]),
            ("${MISSING+set}", "", &[]),
            ("${TAG:?needed}", "1.2", &[]),
            ("${EMPTY?needed}", "", &[]),
            ("no references", "no references", &[]),
            ("${MISSING:-a}{b}", "a{b}", &[]),
        ] {
            let unset: Vec<String> = unset.iter().map(|s| s.to_string()).collect();
            assert_eq!(run(input), Ok((expected.to_owned(), unset)), "{input}");
        }
    }

    #[test]
    fn error_table() {
        for (input, expected) in [
            (
                "${MISSING:?set MISSING}",
                "required variable MISSING is missing a value: set MISSING",
            ),
            (
                "${EMPTY:?no}",
                "required variable EMPTY is missing a value: no",
            ),
            (
                "${MISSING?}",
                "required variable MISSING is missing a value: ",
            ),
            (
                "${TAG",
                "invalid interpolation format in \"${TAG\": unclosed \"${\"",
            ),
            ("${}", "invalid interpolation format in \"${}\": \"${}\""),
            (
                "${TAG%x}",
                "invalid interpolation format in \"${TAG%x}\": \"${TAG%x}\"",
            ),
            (
                "$(date)",
                "invalid interpolation format in \"$(date)\": \"$\" must be followed by a variable name, \"{\" or \"$\" (write \"$$\" for a literal \"$\")",
            ),
            (
                "trailing $",
                "invalid interpolation format in \"trailing $\": \"$\" must be followed by a variable name, \"{\" or \"$\" (write \"$$\" for a literal \"$\")",
            ),
        ] {
            assert_eq!(run(input), Err(expected.to_owned()), "{input}");
        }
    }

    #[test]
    fn values_are_walked_with_paths() {
        let mut value = serde_json::json!({
            "services": {"web": {"image": "app:${TAG}", "ports": [8080, "${MISSING:?port}"], "${KEY}": 1}}
        });
        let (mut errors, mut unset) = (Vec::new(), Vec::new());
        interpolate_value(&mut value, "spec.compose", &env, &mut errors, &mut unset);
        assert_eq!(value["services"]["web"]["image"], "app:1.2");
        assert!(
            value["services"]["web"].get("${KEY}").is_some(),
            "keys are not interpolated"
        );
        assert_eq!(
            errors,
            [FieldError::new(
                "spec.compose.services.web.ports[1]",
                "required variable MISSING is missing a value: port"
            )]
        );
    }
}
