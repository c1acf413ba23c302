//! A service's references to the file's top-level objects: `secrets:` and `configs:`
//! entries (a key, or the long form with a file target) and `networks:` (a list of keys,
//! or a map of keys to attachment options).

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::ScalarMap;
use super::values::long_form;

/// A service's reference to a secret or config: its key, or the long form.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum FileRef {
    Short(String),
    Long(FileRefLong),
}

/// The long form of a secret or config reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileRefLong {
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    #[serde(
        default,
        deserialize_with = "file_mode",
        skip_serializing_if = "Option::is_none"
    )]
    pub mode: Option<u32>,
}

/// A file mode: an integer (YAML `0440` is octal), or an octal string ("0440").
fn file_mode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    let mode = match Value::deserialize(deserializer)? {
        Value::Null => return Ok(None),
        Value::Number(n) => n.as_u64().ok_or_else(|| {
            D::Error::custom(format!(
                "file mode {n} is not an integer; write it in octal as 0o440 or \"0440\""
            ))
        })?,
        Value::String(s) => {
            let digits = s.strip_prefix("0o").unwrap_or(&s);
            u64::from_str_radix(digits, 8)
                .map_err(|_| D::Error::custom(format!("invalid octal file mode {s:?}")))?
        }
        other => return Err(D::Error::custom(format!("invalid file mode {other}"))),
    };
    match u32::try_from(mode) {
        Ok(mode) if mode <= 0o7777 => Ok(Some(mode)),
        _ => Err(D::Error::custom(format!(
            "file mode {mode:#o} is out of range"
        ))),
    }
}

impl<'de> Deserialize<'de> for FileRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(s) => Ok(Self::Short(s)),
            value @ Value::Object(_) => long_form(value).map(Self::Long),
            other => Err(D::Error::custom(format!(
                "expected a name or an object with source, found {other}"
            ))),
        }
    }
}

impl FileRef {
    /// The long form (a short reference is `{source: <key>}`).
    pub fn to_long(&self) -> FileRefLong {
        match self {
            Self::Short(source) => FileRefLong {
                source: source.clone(),
                target: None,
                uid: None,
                gid: None,
                mode: None,
            },
            Self::Long(long) => long.clone(),
        }
    }
}

/// A service's `networks:`: a list of names, or a map of names to attachment options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ServiceNetworks {
    List(Vec<String>),
    Map(IndexMap<String, ServiceNetwork>),
}

/// Options of one network attachment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceNetwork {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_opts: Option<ScalarMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<String>,
}

impl ServiceNetworks {
    /// Network keys with their options (a listed network has none).
    pub fn entries(&self) -> Vec<(String, ServiceNetwork)> {
        match self {
            Self::List(names) => names
                .iter()
                .map(|n| (n.clone(), ServiceNetwork::default()))
                .collect(),
            Self::Map(map) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }
}
