//! Compose value types with more than one spelling: string-or-list, list-or-map, durations,
//! sizes, CPU counts, and the short and long forms of ports, volumes, secrets and configs.

use std::borrow::Cow;

use indexmap::IndexMap;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::units::{parse_cpus, parse_go_duration, parse_ram_bytes};

/// Deserializes the object form of a short-or-long value, keeping the inner error message
/// (an untagged enum would only say "did not match any variant").
fn long_form<T: DeserializeOwned, E: serde::de::Error>(value: Value) -> Result<T, E> {
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

/// One `ports:` entry: short syntax (`"3000:80"`, `"8080:80/udp"`, `"127.0.0.1:80:80"`,
/// `"9000-9002:9000-9002"`, `80`) or the long form.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum PortEntry {
    Short(String),
    Long(PortLong),
}

/// The long form of a port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortLong {
    pub target: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

impl<'de> Deserialize<'de> for PortEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(s) => Ok(Self::Short(s)),
            Value::Number(n) => Ok(Self::Short(n.to_string())),
            value @ Value::Object(_) => long_form(value).map(Self::Long),
            other => Err(D::Error::custom(format!(
                "expected a port string, number or object, found {other}"
            ))),
        }
    }
}

/// A port as swarm takes it, after expansion of the short syntax.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortSpec {
    pub published: u32,
    pub target: u32,
    pub protocol: String,
    pub mode: String,
}

fn parse_port_range(text: &str, what: &str) -> Result<(u32, u32), String> {
    let parse = |s: &str| -> Result<u32, String> {
        match s.parse::<u32>() {
            Ok(p) if (1..=65535).contains(&p) => Ok(p),
            _ => Err(format!("invalid {what} port {s:?}: must be 1-65535")),
        }
    };
    match text.split_once('-') {
        Some((start, end)) => {
            let (start, end) = (parse(start)?, parse(end)?);
            if end < start {
                return Err(format!("invalid {what} port range {text:?}"));
            }
            Ok((start, end))
        }
        None => parse(text).map(|p| (p, p)),
    }
}

impl PortEntry {
    /// The swarm ports this entry stands for; a range is one port per number, as the CLI
    /// expands it. Short-form ports are published in ingress mode; a host IP is ignored, as the
    /// CLI ignores it (with a warning).
    ///
    /// # Errors
    /// A message describing the malformed entry.
    pub fn expand(&self) -> Result<Vec<PortSpec>, String> {
        match self {
            Self::Long(long) => {
                if !(1..=65535).contains(&long.target) {
                    return Err(format!(
                        "invalid target port {}: must be 1-65535",
                        long.target
                    ));
                }
                if long.published.is_some_and(|p| p > 65535) {
                    return Err("invalid published port: must be 0-65535".to_owned());
                }
                let protocol = long.protocol.clone().unwrap_or_default();
                if !["", "tcp", "udp", "sctp"].contains(&protocol.as_str()) {
                    return Err(format!("invalid protocol {protocol:?}: tcp, udp or sctp"));
                }
                let mode = long.mode.clone().unwrap_or_default();
                if !["", "ingress", "host"].contains(&mode.as_str()) {
                    return Err(format!("invalid port mode {mode:?}: ingress or host"));
                }
                Ok(vec![PortSpec {
                    published: long.published.unwrap_or(0),
                    target: long.target,
                    protocol,
                    mode,
                }])
            }
            Self::Short(text) => expand_short_port(text),
        }
    }
}

fn expand_short_port(text: &str) -> Result<Vec<PortSpec>, String> {
    let (spec, protocol) = match text.rsplit_once('/') {
        Some((spec, proto)) => (spec, proto.to_ascii_lowercase()),
        None => (text, "tcp".to_owned()),
    };
    if !["tcp", "udp", "sctp"].contains(&protocol.as_str()) {
        return Err(format!("invalid protocol {protocol:?} in port {text:?}"));
    }
    // "ip:published:target", "published:target" or "target"; an IPv6 host ip is bracketed.
    let (host, container) = match spec.rsplit_once(':') {
        Some((host, container)) => (Some(host), container),
        None => (None, spec),
    };
    let published = host.map(|h| match h.rsplit_once(':') {
        Some((_ip, published)) => published,
        None => h,
    });
    let (target_start, target_end) = parse_port_range(container, "target")?;
    let published = match published.filter(|p| !p.is_empty()) {
        Some(p) => Some(parse_port_range(p, "published")?),
        None => None,
    };
    let mut ports = Vec::new();
    match published {
        None => {
            for target in target_start..=target_end {
                ports.push((0, target));
            }
        }
        Some((pub_start, pub_end)) if target_start == target_end => {
            for published in pub_start..=pub_end {
                ports.push((published, target_start));
            }
        }
        Some((pub_start, pub_end)) => {
            if pub_end - pub_start != target_end - target_start {
                return Err(format!(
                    "port ranges in {text:?} differ in size: published and target must match"
                ));
            }
            for offset in 0..=(target_end - target_start) {
                ports.push((pub_start + offset, target_start + offset));
            }
        }
    }
    // The CLI walks the entry's ports by their `target/protocol` key sorted as strings,
    // so `99-100` comes out as 100 then 99; published ports of one target keep their order.
    ports.sort_by_cached_key(|(_, target)| format!("{target}/{protocol}"));
    Ok(ports
        .into_iter()
        .map(|(published, target)| PortSpec {
            published,
            target,
            protocol: protocol.clone(),
            mode: "ingress".to_owned(),
        })
        .collect())
}

/// One service `volumes:` entry: short syntax (`src:dst[:ro]`, `dst`) or the long form.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum VolumeEntry {
    Short(String),
    Long(Box<VolumeMount>),
}

impl<'de> Deserialize<'de> for VolumeEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(s) => Ok(Self::Short(s)),
            value @ Value::Object(_) => long_form(value).map(|long| Self::Long(Box::new(long))),
            other => Err(D::Error::custom(format!(
                "expected a volume string or object, found {other}"
            ))),
        }
    }
}

/// The long form of a service mount.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeMount {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<BindOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<TmpfsOptions>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BindOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nocopy: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subpath: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TmpfsOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<ByteSize>,
}

const PROPAGATIONS: &[&str] = &[
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

impl VolumeEntry {
    /// The long form of this entry; the short syntax is parsed as the CLI's `ParseVolume`
    /// does (a source starting with `.`, `/` or `~` is a bind mount, anything else a volume).
    ///
    /// # Errors
    /// A message describing the malformed short syntax.
    pub fn to_mount(&self) -> Result<VolumeMount, String> {
        match self {
            Self::Long(long) => Ok((**long).clone()),
            Self::Short(spec) => parse_short_volume(spec),
        }
    }
}

fn parse_short_volume(spec: &str) -> Result<VolumeMount, String> {
    if spec.is_empty() {
        return Err("invalid empty volume spec".to_owned());
    }
    let parts: Vec<&str> = spec.split(':').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!(
            "invalid volume spec {spec:?}: empty section between colons"
        ));
    }
    let mut mount = VolumeMount::default();
    match parts.as_slice() {
        [target] => mount.target = Some((*target).to_owned()),
        [source, target] => {
            mount.source = Some((*source).to_owned());
            mount.target = Some((*target).to_owned());
        }
        [source, target, options] => {
            mount.source = Some((*source).to_owned());
            mount.target = Some((*target).to_owned());
            for option in options.split(',') {
                match option {
                    "ro" => mount.read_only = Some(true),
                    "rw" => mount.read_only = Some(false),
                    "nocopy" => {
                        mount.volume = Some(VolumeOptions {
                            nocopy: Some(true),
                            subpath: None,
                        });
                    }
                    p if PROPAGATIONS.contains(&p) => {
                        mount.bind = Some(BindOptions {
                            propagation: Some(p.to_owned()),
                        });
                    }
                    // The CLI ignores options it does not know (z, Z, cached...).
                    _ => {}
                }
            }
        }
        _ => return Err(format!("invalid volume spec {spec:?}: too many colons")),
    }
    let is_path = mount
        .source
        .as_deref()
        .is_some_and(|s| s.starts_with(['.', '/', '~']));
    mount.kind = if is_path { "bind" } else { "volume" }.to_owned();
    Ok(mount)
}

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

    fn ports(entry: &str) -> Vec<(u32, u32, String, String)> {
        PortEntry::Short(entry.to_owned())
            .expand()
            .unwrap()
            .into_iter()
            .map(|p| (p.published, p.target, p.protocol, p.mode))
            .collect()
    }

    #[test]
    fn short_ports_expand_like_the_cli() {
        let ing = || "ingress".to_owned();
        let tcp = || "tcp".to_owned();
        assert_eq!(ports("3000:80"), vec![(3000, 80, tcp(), ing())]);
        assert_eq!(ports("80"), vec![(0, 80, tcp(), ing())]);
        assert_eq!(ports("8080:80/udp"), vec![(8080, 80, "udp".into(), ing())]);
        assert_eq!(
            ports("127.0.0.1:5000:5000"),
            vec![(5000, 5000, tcp(), ing())]
        );
        assert_eq!(ports("[::1]:5000:5000"), vec![(5000, 5000, tcp(), ing())]);
        assert_eq!(
            ports("9000-9001:8000-8001"),
            vec![(9000, 8000, tcp(), ing()), (9001, 8001, tcp(), ing())]
        );
        assert_eq!(
            ports("9000-9001:80"),
            vec![(9000, 80, tcp(), ing()), (9001, 80, tcp(), ing())]
        );
        assert_eq!(
            ports("53-54"),
            vec![(0, 53, tcp(), ing()), (0, 54, tcp(), ing())]
        );
    }

    #[test]
    fn a_port_range_comes_out_in_the_cli_string_order() {
        let targets = |entry| ports(entry).into_iter().map(|p| p.1).collect::<Vec<_>>();
        assert_eq!(targets("99-101"), vec![100, 101, 99]);
        assert_eq!(targets("9-10/udp"), vec![10, 9]);
        let pairs = ports("29996-29997:98-99");
        assert_eq!((pairs[0].0, pairs[0].1), (29996, 98));
        assert_eq!((pairs[1].0, pairs[1].1), (29997, 99));
    }

    #[test]
    fn bad_ports_are_rejected() {
        for entry in [
            "0", "70000", "80:http", "1-2:3-5", "80/icmp", "a:b:c:80", "5-3",
        ] {
            assert!(
                PortEntry::Short(entry.to_owned()).expand().is_err(),
                "{entry}"
            );
        }
        let long = PortLong {
            target: 0,
            published: None,
            protocol: None,
            mode: None,
        };
        assert!(PortEntry::Long(long).expand().is_err());
    }

    #[test]
    fn short_volumes_parse_like_the_cli() {
        let m = parse_short_volume("db-data:/var/lib/postgresql/data").unwrap();
        assert_eq!(m.kind, "volume");
        assert_eq!(m.source.as_deref(), Some("db-data"));
        let m = parse_short_volume("./init.sql:/docker-entrypoint-initdb.d/init.sql:ro").unwrap();
        assert_eq!(m.kind, "bind");
        assert_eq!(m.read_only, Some(true));
        let m =
            parse_short_volume("/var/run/docker.sock:/var/run/docker.sock:rshared,nocopy").unwrap();
        assert_eq!(m.bind.unwrap().propagation.as_deref(), Some("rshared"));
        assert_eq!(m.volume.unwrap().nocopy, Some(true));
        let m = parse_short_volume("/data").unwrap();
        assert_eq!((m.kind.as_str(), m.source), ("volume", None));
        assert!(parse_short_volume("a::b").is_err());
        assert!(parse_short_volume("a:b:ro:x").is_err());
    }

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
