//! The record envelope (`apiVersion`, `kind`, `metadata`, `spec`) and its parsing.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::FieldError;
use super::backup_job::BackupJobSpec;
use super::compose::ComposeFile;
use super::database_user::DatabaseUserSpec;
use super::kind::Kind;
use super::network::NetworkSpec;
use super::node::NodeSpec;
use super::redact;
use super::registry::RegistrySpec;
use super::rules::{Errors, NAME_PATTERN};
use super::sealing::check_stack_compose;
use super::secret::SecretSpec;
use super::stack::StackSpec;

/// The only API version this build reads and writes.
pub const API_VERSION: &str = "swarmkeeper.dev/v1alpha1";

/// A record's name and its free-form labels and annotations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// Unique per kind.
    #[schemars(pattern(NAME_PATTERN))]
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Metadata {
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }
}

/// A record's spec, one variant per kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    Stack(StackSpec),
    Network(NetworkSpec),
    Node(NodeSpec),
    Secret(SecretSpec),
    DatabaseUser(DatabaseUserSpec),
    Registry(RegistrySpec),
    BackupJob(BackupJobSpec),
}

impl Spec {
    pub fn kind(&self) -> Kind {
        match self {
            Spec::Stack(_) => Kind::Stack,
            Spec::Network(_) => Kind::Network,
            Spec::Node(_) => Kind::Node,
            Spec::Secret(_) => Kind::Secret,
            Spec::DatabaseUser(_) => Kind::DatabaseUser,
            Spec::Registry(_) => Kind::Registry,
            Spec::BackupJob(_) => Kind::BackupJob,
        }
    }

    /// Parses `value` as the spec of `kind`; a problem names its path (`spec.server.port`).
    fn from_value(kind: Kind, value: Value) -> Result<Spec, FieldError> {
        let secrets = redact::holds_secrets(kind);
        /// The compose file is parsed on its own, so its errors carry their whole path
        /// (`spec.compose.services.web.deploy.replicas`) instead of stopping at `spec.compose`.
        fn stack(mut value: Value) -> Result<StackSpec, FieldError> {
            let compose = match value
                .as_object_mut()
                .and_then(|spec| spec.remove("compose"))
            {
                None | Some(Value::Null) => None,
                Some(compose) => Some(Box::new(ComposeFile::from_value(compose, "spec.compose")?)),
            };
            let spec: StackSpec = typed_spec(value, false)?;
            Ok(StackSpec { compose, ..spec })
        }
        Ok(match kind {
            Kind::Stack => Spec::Stack(stack(value)?),
            Kind::Network => Spec::Network(typed_spec(value, secrets)?),
            Kind::Node => Spec::Node(typed_spec(value, secrets)?),
            Kind::Secret => Spec::Secret(typed_spec(value, secrets)?),
            Kind::DatabaseUser => Spec::DatabaseUser(typed_spec(value, secrets)?),
            Kind::Registry => Spec::Registry(typed_spec(value, secrets)?),
            Kind::BackupJob => Spec::BackupJob(typed_spec(value, secrets)?),
        })
    }

    fn to_value(&self) -> Value {
        let value = match self {
            Spec::Stack(spec) => serde_json::to_value(spec),
            Spec::Network(spec) => serde_json::to_value(spec),
            Spec::Node(spec) => serde_json::to_value(spec),
            Spec::Secret(spec) => serde_json::to_value(spec),
            Spec::DatabaseUser(spec) => serde_json::to_value(spec),
            Spec::Registry(spec) => serde_json::to_value(spec),
            Spec::BackupJob(spec) => serde_json::to_value(spec),
        };
        // Specs are plain data with string keys; the only fallible leaf is a secret literal
        // that is not UTF-8, which deserialization (from a string) cannot produce.
        value.expect("a spec serializes to JSON")
    }

    fn validate(&self, errors: &mut Errors) {
        match self {
            Spec::Stack(spec) => spec.validate(errors),
            Spec::Network(spec) => spec.validate(errors),
            Spec::Node(spec) => spec.validate(errors),
            Spec::Secret(spec) => spec.validate(errors),
            Spec::DatabaseUser(spec) => spec.validate(errors),
            Spec::Registry(spec) => spec.validate(errors),
            Spec::BackupJob(spec) => spec.validate(errors),
        }
    }
}

/// One record. Its JSON form (what etcd holds) is
/// `{"apiVersion", "kind", "metadata", "spec"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub api_version: String,
    pub kind: Kind,
    pub metadata: Metadata,
    pub spec: Spec,
}

impl Record {
    /// A record of the current API version; the kind follows from the spec.
    pub fn new(metadata: Metadata, spec: Spec) -> Self {
        Self {
            api_version: API_VERSION.to_owned(),
            kind: spec.kind(),
            metadata,
            spec,
        }
    }

    /// The record's identity: unique per kind.
    pub fn key(&self) -> (Kind, &str) {
        (self.kind, &self.metadata.name)
    }

    /// Parses and validates a record.
    ///
    /// # Errors
    /// Every problem found, each at its field path (`metadata.name`, `spec.server.port`).
    /// Type errors stop at the first one of the part they are in (envelope or spec).
    pub fn from_value(value: Value) -> Result<Record, Vec<FieldError>> {
        let Value::Object(mut object) = value else {
            return Err(vec![FieldError::new("", "a record must be a mapping")]);
        };
        let mut errors = Errors::default();
        let api_version = take_string(&mut object, "apiVersion", &mut errors);
        if let Some(version) = &api_version
            && version != API_VERSION
        {
            errors.push(
                "apiVersion",
                format!("unsupported apiVersion {version:?} (expected {API_VERSION:?})"),
            );
        }
        let kind = take_string(&mut object, "kind", &mut errors).and_then(|kind| {
            serde_json::from_value::<Kind>(Value::String(kind.clone()))
                .map_err(|_| {
                    errors.push(
                        "kind",
                        format!("unknown kind {kind:?} (expected one of Stack, Network, Node, Secret, DatabaseUser, Registry, BackupJob)"),
                    )
                })
                .ok()
        });
        let metadata = match object.remove("metadata") {
            None => {
                errors.push("metadata", "missing field");
                None
            }
            Some(value) => serde_path_to_error::deserialize::<_, Metadata>(value)
                .map_err(|err| errors.0.push(redact::field_error("metadata", err, false)))
                .ok(),
        };
        let spec_value = object.remove("spec");
        // The controller's, kept under its own key: `get -o yaml` shows it, apply ignores it.
        object.remove("status");
        for unknown in object.keys() {
            errors.push(
                unknown.clone(),
                "unknown field (expected apiVersion, kind, metadata, spec)",
            );
        }
        let spec = match (kind, spec_value) {
            (_, None) => {
                errors.push("spec", "missing field");
                None
            }
            (Some(kind), Some(value)) => Spec::from_value(kind, value)
                .map_err(|err| errors.0.push(err))
                .ok(),
            (None, Some(_)) => None,
        };
        match (api_version, metadata, spec) {
            (Some(api_version), Some(metadata), Some(spec)) if errors.0.is_empty() => {
                let record = Record {
                    api_version,
                    kind: spec.kind(),
                    metadata,
                    spec,
                };
                let problems = record.validate();
                if problems.is_empty() {
                    Ok(record)
                } else {
                    Err(problems)
                }
            }
            (_, Some(metadata), _) => {
                // Report the name's problems alongside the envelope's, in one pass.
                errors.name("metadata.name", &metadata.name);
                Err(errors.0)
            }
            _ => Err(errors.0),
        }
    }

    /// The JSON form stored in etcd.
    pub fn to_value(&self) -> Value {
        serde_json::json!({
            "apiVersion": self.api_version,
            "kind": self.kind,
            "metadata": self.metadata,
            "spec": self.spec.to_value(),
        })
    }

    /// Checks the rules types cannot express: names, ranges, references, cross-field rules.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Errors::default();
        if self.api_version != API_VERSION {
            errors.push(
                "apiVersion",
                format!(
                    "unsupported apiVersion {:?} (expected {API_VERSION:?})",
                    self.api_version
                ),
            );
        }
        if self.kind != self.spec.kind() {
            errors.push(
                "kind",
                format!("a {} record has a {} spec", self.kind, self.spec.kind()),
            );
        }
        errors.name("metadata.name", &self.metadata.name);
        self.spec.validate(&mut errors);
        // The record's name decides which sealed values it may use.
        if let Spec::Stack(StackSpec {
            compose: Some(compose),
            ..
        }) = &self.spec
        {
            let name = &self.metadata.name;
            errors
                .0
                .extend(check_stack_compose(name, compose, "spec.compose"));
        }
        errors.0
    }
}

/// Parses a spec; a type error names its path (`spec.server.port`), never the value.
fn typed_spec<T: DeserializeOwned>(value: Value, secrets: bool) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|err| redact::field_error("spec", err, secrets))
}

fn take_string(
    object: &mut Map<String, Value>,
    field: &str,
    errors: &mut Errors,
) -> Option<String> {
    match object.remove(field) {
        Some(Value::String(text)) => Some(text),
        None => {
            errors.push(field, "missing field");
            None
        }
        Some(other) => {
            errors.push(field, format!("expected a string, found {other}"));
            None
        }
    }
}

impl Serialize for Record {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

/// Deserializes through [`Record::from_value`], so a record read back (from etcd) is
/// validated as one read from a file.
impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Record::from_value(value).map_err(|errors| {
            let joined: Vec<String> = errors.iter().map(ToString::to_string).collect();
            serde::de::Error::custom(joined.join("; "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(value: Value) -> Vec<String> {
        Record::from_value(value)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn network(spec: Value) -> Value {
        json!({"apiVersion": API_VERSION, "kind": "Network", "metadata": {"name": "front"}, "spec": spec})
    }

    #[test]
    fn round_trips_through_json() {
        let value = json!({
            "apiVersion": API_VERSION,
            "kind": "Network",
            "metadata": {"name": "front", "labels": {"team": "cats"}},
            "spec": {"driver": "overlay", "attachable": true, "encrypted": false, "internal": false}
        });
        let record = Record::from_value(value.clone()).unwrap();
        assert_eq!(record.key(), (Kind::Network, "front"));
        assert_eq!(record.to_value(), value);
        let text = serde_json::to_string(&record).unwrap();
        assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), record);
        // As `get -o yaml` prints it, with the controller's status: read without it.
        let mut shown = value.clone();
        shown["status"] = json!({"phase": "Ready"});
        assert_eq!(Record::from_value(shown).unwrap(), record);
        let keys: Vec<_> = record
            .to_value()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["apiVersion", "kind", "metadata", "spec"]);
    }

    #[test]
    fn envelope_problems_are_all_reported() {
        assert_eq!(
            messages(
                json!({"apiVersion": "v1", "kind": "Widget", "metadata": {"name": "Bad Name"}, "spec": {}, "extra": 1})
            ),
            [
                "apiVersion: unsupported apiVersion \"v1\" (expected \"swarmkeeper.dev/v1alpha1\")",
                "kind: unknown kind \"Widget\" (expected one of Stack, Network, Node, Secret, DatabaseUser, Registry, BackupJob)",
                "extra: unknown field (expected apiVersion, kind, metadata, spec)",
                "metadata.name: \"Bad Name\" is not a valid name (lowercase letters, digits, '_', '.', '-'; at most 63; starting with a letter or digit)",
            ]
        );
        assert_eq!(
            messages(json!({"apiVersion": API_VERSION, "metadata": {"name": "x"}})),
            ["kind: missing field", "spec: missing field"]
        );
        assert_eq!(messages(json!([1])), [": a record must be a mapping"]);
    }

    #[test]
    fn spec_errors_name_their_path() {
        assert_eq!(
            messages(network(json!({"attachable": "yes"}))),
            ["spec.attachable: invalid type: string, expected a boolean"]
        );
        let unknown = messages(network(json!({"atachable": true})));
        assert_eq!(unknown.len(), 1);
        assert!(
            unknown[0].starts_with("spec.atachable: unknown field `atachable`"),
            "{unknown:?}"
        );
        let port = json!({
            "apiVersion": API_VERSION, "kind": "DatabaseUser", "metadata": {"name": "u"},
            "spec": {"engine": "postgres", "server": {"host": "db", "port": "x", "adminUser": "a",
                     "adminPasswordSecret": "s"}, "user": "u", "passwordSecret": "p"}
        });
        assert_eq!(
            messages(port),
            ["spec.server.port: invalid type: string, expected u16"]
        );
        let replicas = json!({
            "apiVersion": API_VERSION, "kind": "Stack", "metadata": {"name": "s"},
            "spec": {"compose": {"services": {"web": {"image": "x", "deploy": {"replicas": "two"}}}}}
        });
        assert_eq!(
            messages(replicas),
            ["spec.compose.services.web.deploy.replicas: invalid type: string, expected u64"]
        );
        assert_eq!(
            messages(
                json!({"apiVersion": API_VERSION, "kind": "Node", "metadata": {"name": "n", "lables": {}}, "spec": {}})
            ),
            [
                "metadata.lables: unknown field `lables`, expected one of `name`, `labels`, `annotations`"
            ]
        );
    }

    #[test]
    fn validate_catches_a_kind_spec_mismatch() {
        let mut record = Record::new(
            Metadata::named("n"),
            Spec::Node(serde_json::from_value(json!({})).unwrap()),
        );
        assert!(record.validate().is_empty());
        record.kind = Kind::Stack;
        assert_eq!(
            record.validate(),
            [FieldError::new("kind", "a Stack record has a Node spec")]
        );
    }
}
