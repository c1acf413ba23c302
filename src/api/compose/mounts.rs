//! A service's `volumes:` entries: the short syntax (`src:dst[:ro]`, `dst`) or the long
//! form of a volume, bind or tmpfs mount, read as the docker CLI's `ParseVolume` does.

use schemars::JsonSchema;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::ByteSize;
use super::values::long_form;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
