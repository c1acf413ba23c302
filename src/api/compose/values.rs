//! Compose value types with more than one spelling: string-or-list, list-or-map, durations,
//! sizes, CPU counts, `external:`. The short and long forms of ports, mounts and references
//! to secrets, configs and networks have files of their own.

use std::borrow::Cow;

use indexmap::IndexMap;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::units::{parse_cpus, parse_go_duration, parse_ram_bytes};

/// Deserializes the object form of a short-or-long value, keeping the inner error message
/// (an untagged enum would only say "did not match any variant").
pub(super) fn long_form<T: DeserializeOwned, E: serde::de::Error>(value: Value) -> Result<T, E> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        if path == "." {
            E::custom(err.into_inner())
        } else {
            E::custom(format!("{path}: {}", err.into_inner()))
        }
    })
}

/// Go's `fmt.Sprint` of a YAML scalar, as the CLI applies to map values.
fn scalar_to_string<E: serde::de::Error>(value: &Value) -> Result<Option<String>, E> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        other => Err(E::custom(format!(
            "expected a string, number, boolean or null, found {other}"
        ))),
    }
}

/// A string or a list of strings (`dns`, `env_file`, `tmpfs`, `command`...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    /// The values as a list (a single string is a list of one).
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

/// A `command`/`entrypoint`: a string split the way a POSIX shell would, or a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Command {
    Shell(String),
    Exec(Vec<String>),
}

impl Command {
    /// The argument vector the CLI sends (a string is split with shell quoting rules).
    ///
    /// # Errors
    /// A message when a string has an unterminated quote.
    pub fn to_args(&self) -> Result<Vec<String>, String> {
        match self {
            Self::Exec(v) => Ok(v.clone()),
            Self::Shell(s) => shell_split(s),
        }
    }
}

/// Splits a command line with POSIX shell quoting (single and double quotes, backslashes),
/// as the CLI's shlex does.
fn shell_split(input: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = input.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => word.push(ch),
                        None => return Err(format!("unterminated single quote in {input:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(ch @ ('"' | '\\' | '$' | '`')) => word.push(ch),
                            Some('\n') => {}
                            Some(ch) => {
                                word.push('\\');
                                word.push(ch);
                            }
                            None => return Err(format!("unterminated double quote in {input:?}")),
                        },
                        Some(ch) => word.push(ch),
                        None => return Err(format!("unterminated double quote in {input:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') | None => {}
                    Some(ch) => word.push(ch),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// A list of `KEY=VALUE` strings or a map whose values are strings, numbers, booleans or null
/// (`environment`, `labels`, `sysctls`, `extra_hosts`).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ListOrMap {
    List(Vec<String>),
    Map(IndexMap<String, Option<String>>),
}

impl<'de> Deserialize<'de> for ListOrMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s),
                    other => Err(D::Error::custom(format!(
                        "expected a string list entry, found {other}"
                    ))),
                })
                .collect::<Result<_, _>>()
                .map(Self::List),
            Value::Object(map) => map
                .into_iter()
                .map(|(k, v)| Ok((k, scalar_to_string::<D::Error>(&v)?)))
                .collect::<Result<_, _>>()
                .map(Self::Map),
            other => Err(D::Error::custom(format!(
                "expected a list of KEY=VALUE strings or a map, found {other}"
            ))),
        }
    }
}

impl ListOrMap {
    /// Entries split on `sep`; a list entry without `sep`, or a null map value, has no value.
    pub fn entries(&self, sep: char) -> Vec<(String, Option<String>)> {
        match self {
            Self::List(items) => items
                .iter()
                .map(|item| match item.split_once(sep) {
                    Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                    None => (item.clone(), None),
                })
                .collect(),
            Self::Map(map) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }

    /// `extra_hosts` entries as `(host, ip)` in the CLI's order: a list keeps its order and
    /// splits each entry at its first `=`, else its first `:`; a map is sorted as `host:ip`
    /// strings and drops null values. Brackets around an IPv6 address are removed.
    ///
    /// # Errors
    /// The index and text of a list entry with neither separator.
    pub fn host_entries(&self) -> Result<Vec<(String, String)>, (usize, String)> {
        let pairs: Vec<(String, String)> = match self {
            Self::List(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    item.split_once('=')
                        .or_else(|| item.split_once(':'))
                        .map(|(h, ip)| (h.to_owned(), ip.to_owned()))
                        .ok_or_else(|| (i, item.clone()))
                })
                .collect::<Result<_, _>>()?,
            Self::Map(map) => {
                let mut joined: Vec<String> = map
                    .iter()
                    .filter_map(|(h, ip)| ip.as_ref().map(|ip| format!("{h}:{ip}")))
                    .collect();
                joined.sort();
                joined
                    .iter()
                    .filter_map(|j| j.split_once(':'))
                    .map(|(h, ip)| (h.to_owned(), ip.to_owned()))
                    .collect()
            }
        };
        Ok(pairs
            .into_iter()
            .map(|(host, ip)| {
                let ip = match ip.strip_prefix('[').and_then(|i| i.strip_suffix(']')) {
                    Some(inner) if !inner.is_empty() => inner.to_owned(),
                    _ => ip,
                };
                (host, ip)
            })
            .collect())
    }

    /// A string map as the CLI's `Mapping`/`Labels`: an entry without value maps to "".
    pub fn to_string_map(&self) -> IndexMap<String, String> {
        self.entries('=')
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect()
    }
}

/// A map of strings whose values may be written as numbers (`driver_opts`, `logging.options`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct ScalarMap(pub IndexMap<String, Option<String>>);

impl<'de> Deserialize<'de> for ScalarMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = IndexMap::<String, Value>::deserialize(deserializer)?;
        map.into_iter()
            .map(|(k, v)| Ok((k, scalar_to_string::<D::Error>(&v)?)))
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl ScalarMap {
    /// The map with null values as "" (Go's `map[string]string`).
    pub fn to_string_map(&self) -> IndexMap<String, String> {
        self.0
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
            .collect()
    }
}

/// A Go duration string ("10s", "1m30s", "1.5h"), kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoDuration {
    text: String,
    nanos: i64,
}

impl GoDuration {
    /// The duration in nanoseconds, the unit of every Docker API duration.
    pub fn nanos(&self) -> i64 {
        self.nanos
    }
}

impl std::str::FromStr for GoDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(Self {
            text: s.to_owned(),
            nanos: parse_go_duration(s)?,
        })
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(D::Error::custom)
    }
}

impl JsonSchema for GoDuration {
    fn schema_name() -> Cow<'static, str> {
        "GoDuration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A Go duration: a sequence of numbers with units ns, us, ms, s, m, h (\"1m30s\", \"1.5h\").",
            "pattern": "^[-+]?(0|([0-9]*(\\.[0-9]*)?(ns|us|µs|μs|ms|s|m|h))+)$"
        })
    }
}

/// Declares a number-or-string value parsed once at deserialization, kept as written.
macro_rules! parsed_scalar {
    ($(#[$doc:meta])* $name:ident, $field:ident, $parse:path, $desc:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            raw: Value,
            $field: i64,
        }

        impl $name {
            /// The parsed value.
            pub fn $field(&self) -> i64 {
                self.$field
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.raw.serialize(serializer)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = Value::deserialize(deserializer)?;
                let text = match &raw {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    other => {
                        return Err(D::Error::custom(format!(
                            "expected a string or a number, found {other}"
                        )));
                    }
                };
                let $field = $parse(&text).map_err(D::Error::custom)?;
                Ok(Self { raw, $field })
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "type": ["string", "number"], "description": $desc })
            }
        }
    };
}

parsed_scalar!(
    /// A byte size: a number of bytes or a string with a binary unit ("50M", "1g").
    ByteSize,
    bytes,
    parse_ram_bytes,
    "Bytes, or a size with a binary unit: \"50M\", \"1.5g\"."
);

parsed_scalar!(
    /// A CPU count ("0.5" or 0.5), as nano-CPUs.
    Cpus,
    nanos,
    parse_cpus,
    "A number of CPUs: \"0.5\" or 0.5."
);

/// `external:` as a boolean, or the legacy `{name: ...}` form (which implies true).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum External {
    Flag(bool),
    Named(ExternalName),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExternalName {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl External {
    /// Whether the object is external.
    pub fn is_external(&self) -> bool {
        match self {
            Self::Flag(flag) => *flag,
            Self::Named(_) => true,
        }
    }

    /// The legacy `external.name`, if given.
    pub fn legacy_name(&self) -> Option<&str> {
        match self {
            Self::Flag(_) => None,
            Self::Named(named) => named.name.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_like_a_shell() {
        let cmd = Command::Shell(r#"sh -c 'echo "hi there"' a\ b "x\"y""#.to_owned());
        assert_eq!(
            cmd.to_args().unwrap(),
            vec!["sh", "-c", r#"echo "hi there""#, "a b", r#"x"y"#]
        );
        assert!(Command::Shell("echo 'oops".to_owned()).to_args().is_err());
    }

    #[test]
    fn list_or_map_accepts_both_forms() {
        let map: ListOrMap =
            serde_json::from_value(serde_json::json!({"A": "x", "B": 5, "C": null, "D": true}))
                .unwrap();
        assert_eq!(
            map.entries('='),
            vec![
                ("A".to_owned(), Some("x".to_owned())),
                ("B".to_owned(), Some("5".to_owned())),
                ("C".to_owned(), None),
                ("D".to_owned(), Some("true".to_owned())),
            ]
        );
        let list: ListOrMap =
            serde_json::from_value(serde_json::json!(["A=x", "B=", "C"])).unwrap();
        assert_eq!(list.to_string_map().get("C").map(String::as_str), Some(""));
        assert_eq!(list.entries('=')[1], ("B".to_owned(), Some(String::new())));
        assert!(serde_json::from_value::<ListOrMap>(serde_json::json!({"A": [1]})).is_err());
    }
}
