//! The store layer's error type: one variant per action that failed.

use std::path::PathBuf;
use std::time::Duration;

use super::crypto::CryptoError;

/// Why a store operation failed.
///
/// Keys in messages are etcd keys; values (records, secrets, passwords) never
/// appear in an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file named in the configuration (CA, client certificate, password) could not be read.
    #[error("cannot read {what} file {path}")]
    ReadConfigFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The configuration is inconsistent (for example a client certificate without its key).
    #[error("invalid etcd configuration: {0}")]
    Config(String),
    /// etcd refused the connection or the credentials.
    #[error("cannot connect to etcd at {endpoint}")]
    Connect {
        endpoint: String,
        #[source]
        source: etcd_client::Error,
    },
    /// etcd did not answer the first request in time.
    #[error("etcd at {endpoint} did not answer within {timeout:?}")]
    ConnectTimeout { endpoint: String, timeout: Duration },
    /// A kind, name or id would not make a well-formed key.
    #[error("invalid key part {part:?}: must be non-empty and contain no '/'")]
    InvalidKey { part: String },
    /// The same key appears twice in one batch of writes.
    #[error("key {key} appears more than once in one write")]
    DuplicateKey { key: String },
    #[error("cannot read {key} from etcd")]
    Get {
        key: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("cannot list {prefix} in etcd")]
    List {
        prefix: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("cannot write {key} to etcd")]
    Put {
        key: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("cannot delete {key} from etcd")]
    Delete {
        key: String,
        #[source]
        source: etcd_client::Error,
    },
    /// A compare-and-swap found the key at another revision than expected.
    #[error("{key} was changed by someone else (revision conflict)")]
    Conflict { key: String },
    #[error("cannot decode the value of {key}")]
    Decode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot encode the value of {key}")]
    Encode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot watch {prefix} in etcd")]
    Watch {
        prefix: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("cannot grant or keep an etcd lease")]
    Lease {
        #[source]
        source: etcd_client::Error,
    },
    #[error("cannot campaign for leadership on {key}")]
    Campaign {
        key: String,
        #[source]
        source: etcd_client::Error,
    },
    /// The lease behind a campaign was lost before leadership was won.
    #[error("lost the lease while campaigning on {key}")]
    LeaseLost { key: String },
    #[error("cannot resign leadership on {key}")]
    Resign {
        key: String,
        #[source]
        source: etcd_client::Error,
    },
    /// A fenced write was not made: this replica no longer certainly leads
    /// (its lease deadline passed, or etcd no longer holds its leader key).
    #[error("not writing {key}: this replica is no longer the leader")]
    Deposed { key: String },
    #[error("cannot compact etcd at revision {revision}")]
    Compact {
        revision: i64,
        #[source]
        source: etcd_client::Error,
    },
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

impl StoreError {
    /// Whether retrying the same operation later may succeed.
    ///
    /// A [`StoreError::Conflict`] is transient: a retry that re-reads the
    /// record first can succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { source, .. }
            | Self::Get { source, .. }
            | Self::List { source, .. }
            | Self::Put { source, .. }
            | Self::Delete { source, .. }
            | Self::Watch { source, .. }
            | Self::Lease { source }
            | Self::Campaign { source, .. }
            | Self::Resign { source, .. }
            | Self::Compact { source, .. } => etcd_is_transient(source),
            // A deposed replica campaigns again; a retry after that can succeed.
            Self::ConnectTimeout { .. }
            | Self::Conflict { .. }
            | Self::LeaseLost { .. }
            | Self::Deposed { .. } => true,
            Self::ReadConfigFile { .. }
            | Self::Config(_)
            | Self::InvalidKey { .. }
            | Self::DuplicateKey { .. }
            | Self::Decode { .. }
            | Self::Encode { .. }
            | Self::Crypto(_) => false,
        }
    }

    /// A short, bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ReadConfigFile { .. } => "read_config_file",
            Self::Config(_) => "config",
            Self::Connect { .. } => "connect",
            Self::ConnectTimeout { .. } => "connect_timeout",
            Self::InvalidKey { .. } => "invalid_key",
            Self::DuplicateKey { .. } => "duplicate_key",
            Self::Get { .. } => "get",
            Self::List { .. } => "list",
            Self::Put { .. } => "put",
            Self::Delete { .. } => "delete",
            Self::Conflict { .. } => "conflict",
            Self::Decode { .. } => "decode",
            Self::Encode { .. } => "encode",
            Self::Watch { .. } => "watch",
            Self::Lease { .. } => "lease",
            Self::Campaign { .. } => "campaign",
            Self::LeaseLost { .. } => "lease_lost",
            Self::Resign { .. } => "resign",
            Self::Deposed { .. } => "deposed",
            Self::Compact { .. } => "compact",
            Self::Crypto(_) => "crypto",
        }
    }
}

/// Transport failures and an unavailable cluster heal by themselves;
/// permission, argument and "not found" answers do not.
fn etcd_is_transient(err: &etcd_client::Error) -> bool {
    use etcd_client::Error as E;
    use tonic::Code;
    match err {
        E::IoError(_) | E::TransportError(_) | E::WatchError(_) | E::LeaseKeepAliveError(_) => true,
        E::GRpcStatus(status) => matches!(
            status.code(),
            Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Aborted
                | Code::ResourceExhausted
                | Code::Internal
                | Code::Unknown
                | Code::Cancelled
        ),
        _ => false,
    }
}

/// Whether etcd refused a read or watch because the revision was compacted
/// (`OutOfRange`, "mvcc: required revision has been compacted").
///
/// The code alone does not tell: tonic answers `OutOfRange` too when an answer is
/// larger than the client accepts ([`is_too_large`]), and etcd when a revision is
/// in the future.
pub(crate) fn is_compacted(err: &etcd_client::Error) -> bool {
    matches!(err, etcd_client::Error::GRpcStatus(s)
        if s.code() == tonic::Code::OutOfRange && s.message().contains("compacted"))
}

/// Whether an answer was refused for its size: tonic's "decoded message length too
/// large" (`OutOfRange`) when it exceeds the client's 4 MiB, or `ResourceExhausted`
/// ("received message larger than max") when a server or proxy enforces a limit.
pub(crate) fn is_too_large(err: &etcd_client::Error) -> bool {
    use tonic::Code;
    matches!(err, etcd_client::Error::GRpcStatus(s)
        if s.code() == Code::ResourceExhausted
            || (s.code() == Code::OutOfRange && s.message().contains("too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_is_transient_and_decode_is_not() {
        let conflict = StoreError::Conflict {
            key: "/p/desired/Stack/a".into(),
        };
        assert!(conflict.is_transient());
        assert_eq!(conflict.kind(), "conflict");
        let decode = StoreError::Decode {
            key: "k".into(),
            source: serde_json::from_str::<serde_json::Value>("{").unwrap_err(),
        };
        assert!(!decode.is_transient());
    }

    #[test]
    fn an_answer_too_large_is_not_a_compaction() {
        let status = |code, message: &str| {
            etcd_client::Error::GRpcStatus(tonic::Status::new(code, message.to_owned()))
        };
        let too_large = status(
            tonic::Code::OutOfRange,
            "Error, decoded message length too large: found 4800000 bytes, the limit is: 4194304 bytes",
        );
        let compacted = status(
            tonic::Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
        );
        let exhausted = status(
            tonic::Code::ResourceExhausted,
            "grpc: received message larger than max (4800000 vs. 4194304)",
        );
        assert!(is_too_large(&too_large) && !is_compacted(&too_large));
        assert!(is_compacted(&compacted) && !is_too_large(&compacted));
        assert!(is_too_large(&exhausted));
    }

    #[test]
    fn unavailable_is_transient_permission_denied_is_not() {
        let unavailable = etcd_client::Error::GRpcStatus(tonic::Status::unavailable("down"));
        let denied = etcd_client::Error::GRpcStatus(tonic::Status::permission_denied("no"));
        assert!(etcd_is_transient(&unavailable));
        assert!(!etcd_is_transient(&denied));
    }
}
