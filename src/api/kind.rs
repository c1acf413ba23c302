//! The seven record kinds and their names, as records and the command line spell them.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A record kind. Serializes as its canonical name (`"DatabaseUser"`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum Kind {
    Stack,
    Network,
    Node,
    Secret,
    DatabaseUser,
    Registry,
    BackupJob,
}

impl Kind {
    /// Every kind, in the order in which their swarm objects are usually needed.
    pub const ALL: [Kind; 7] = [
        Kind::Node,
        Kind::Network,
        Kind::Secret,
        Kind::Registry,
        Kind::DatabaseUser,
        Kind::Stack,
        Kind::BackupJob,
    ];

    /// The canonical name, as written in a record's `kind:` and in etcd keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Stack => "Stack",
            Kind::Network => "Network",
            Kind::Node => "Node",
            Kind::Secret => "Secret",
            Kind::DatabaseUser => "DatabaseUser",
            Kind::Registry => "Registry",
            Kind::BackupJob => "BackupJob",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Kind::Registry => "registries",
            Kind::Stack => "stacks",
            Kind::Network => "networks",
            Kind::Node => "nodes",
            Kind::Secret => "secrets",
            Kind::DatabaseUser => "databaseusers",
            Kind::BackupJob => "backupjobs",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown kind {0:?} (expected one of Stack, Network, Node, Secret, DatabaseUser, Registry, BackupJob)"
)]
pub struct UnknownKind(pub String);

/// Parses a kind as the command line allows: any case, singular or plural
/// (`stack`, `Stacks`, `databaseusers`).
impl FromStr for Kind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|kind| {
                s.eq_ignore_ascii_case(kind.as_str()) || s.eq_ignore_ascii_case(kind.plural())
            })
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_any_case_singular_and_plural() {
        for (text, kind) in [
            ("stack", Kind::Stack),
            ("Stacks", Kind::Stack),
            ("NETWORK", Kind::Network),
            ("nodes", Kind::Node),
            ("secret", Kind::Secret),
            ("databaseusers", Kind::DatabaseUser),
            ("DatabaseUser", Kind::DatabaseUser),
            ("registry", Kind::Registry),
            ("Registries", Kind::Registry),
            ("backupjob", Kind::BackupJob),
            ("BackupJobs", Kind::BackupJob),
        ] {
            assert_eq!(text.parse::<Kind>(), Ok(kind), "{text}");
        }
        assert_eq!(
            "registrys".parse::<Kind>(),
            Err(UnknownKind("registrys".into()))
        );
        assert!("".parse::<Kind>().is_err());
    }

    #[test]
    fn canonical_name_round_trips() {
        for kind in Kind::ALL {
            assert_eq!(kind.to_string(), kind.as_str());
            assert_eq!(kind.as_str().parse::<Kind>(), Ok(kind));
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, serde_json::Value::String(kind.as_str().into()));
            assert_eq!(serde_json::from_value::<Kind>(json).unwrap(), kind);
        }
        assert!(serde_json::from_str::<Kind>("\"stack\"").is_err());
    }
}
