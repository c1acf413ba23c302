//! The errors of the Docker layer, one variant per action, with retry and metric helpers.

use std::borrow::Cow;

use bollard::errors::Error as BollardError;

use crate::text::{MESSAGE_LIMIT, truncate};

/// What went wrong talking to dockerd. Each variant names the action and the object.
///
/// Nothing here carries a request body: a secret's data or a registry auth header can
/// never reach Display or Debug. dockerd's own messages do not echo secret data, and
/// what they quote is cut to a few KiB ([`bounded`]) before it gets here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DockerError {
    #[error("connecting to dockerd at {host}: {source}")]
    Connect {
        host: String,
        #[source]
        source: BollardError,
    },
    #[error("pinging dockerd: {source}")]
    Ping {
        #[source]
        source: BollardError,
    },
    #[error("listing {what}: {source}")]
    List {
        what: &'static str,
        #[source]
        source: BollardError,
    },
    #[error("inspecting {what} {name}: {source}")]
    Inspect {
        what: &'static str,
        name: String,
        #[source]
        source: BollardError,
    },
    #[error("creating network {network}: {source}")]
    CreateNetwork {
        network: String,
        #[source]
        source: BollardError,
    },
    #[error("removing network {network}: {source}")]
    RemoveNetwork {
        network: String,
        #[source]
        source: BollardError,
    },
    #[error("creating secret {secret}: {source}")]
    CreateSecret {
        secret: String,
        #[source]
        source: BollardError,
    },
    #[error("removing secret {secret}: {source}")]
    RemoveSecret {
        secret: String,
        #[source]
        source: BollardError,
    },
    #[error("creating config {config}: {source}")]
    CreateConfig {
        config: String,
        #[source]
        source: BollardError,
    },
    #[error("removing config {config}: {source}")]
    RemoveConfig {
        config: String,
        #[source]
        source: BollardError,
    },
    #[error("creating service {service}: {source}")]
    CreateService {
        service: String,
        #[source]
        source: BollardError,
    },
    #[error("updating service {service}: {source}")]
    UpdateService {
        service: String,
        #[source]
        source: BollardError,
    },
    #[error("removing service {service}: {source}")]
    RemoveService {
        service: String,
        #[source]
        source: BollardError,
    },
    #[error("removing container {container}: {source}")]
    RemoveContainer {
        container: String,
        #[source]
        source: BollardError,
    },
    #[error("updating node {node}: {source}")]
    UpdateNode {
        node: String,
        #[source]
        source: BollardError,
    },
    #[error("watching docker events: {source}")]
    Events {
        #[source]
        source: BollardError,
    },
    /// A write of a leader that may have been replaced: not sent.
    #[error("{op} not sent: this replica's leader lease is no longer certainly held")]
    Deposed { op: &'static str },
}

impl DockerError {
    fn source_error(&self) -> Option<&BollardError> {
        Some(match self {
            Self::Connect { source, .. }
            | Self::Ping { source }
            | Self::List { source, .. }
            | Self::Inspect { source, .. }
            | Self::CreateNetwork { source, .. }
            | Self::RemoveNetwork { source, .. }
            | Self::CreateSecret { source, .. }
            | Self::RemoveSecret { source, .. }
            | Self::CreateConfig { source, .. }
            | Self::RemoveConfig { source, .. }
            | Self::CreateService { source, .. }
            | Self::UpdateService { source, .. }
            | Self::RemoveService { source, .. }
            | Self::RemoveContainer { source, .. }
            | Self::UpdateNode { source, .. }
            | Self::Events { source } => source,
            Self::Deposed { .. } => return None,
        })
    }

    /// A short, bounded name of the failed action, fit for a metric label.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "connect",
            Self::Ping { .. } => "ping",
            Self::List { .. } => "list",
            Self::Inspect { .. } => "inspect",
            Self::CreateNetwork { .. } => "create_network",
            Self::RemoveNetwork { .. } => "remove_network",
            Self::CreateSecret { .. } => "create_secret",
            Self::RemoveSecret { .. } => "remove_secret",
            Self::CreateConfig { .. } => "create_config",
            Self::RemoveConfig { .. } => "remove_config",
            Self::CreateService { .. } => "create_service",
            Self::UpdateService { .. } => "update_service",
            Self::RemoveService { .. } => "remove_service",
            Self::RemoveContainer { .. } => "remove_container",
            Self::UpdateNode { .. } => "update_node",
            Self::Events { .. } => "events",
            Self::Deposed { .. } => "deposed",
        }
    }

    /// Whether trying again later may succeed: dockerd unreachable or busy, a version race.
    ///
    /// A spec dockerd rejects (4xx, or swarmkit's `InvalidArgument`) is not transient:
    /// retrying the same request cannot help until the record changes.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        // A deposed replica campaigns again; the write may then be sent.
        self.source_error().is_none_or(is_transient)
    }

    /// Whether dockerd answered 404: the object does not exist.
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        self.source_error().and_then(status_code) == Some(404)
    }

    /// Whether a remove was refused because something still uses the object (a service
    /// still mounts the secret or config, or is attached to the network): retry after
    /// the services moved on. swarmkit says so with a 400, not with a status of its own.
    #[must_use]
    pub fn is_in_use(&self) -> bool {
        matches!(self.source_error(), Some(BollardError::DockerResponseServerError { message, .. })
            if message.contains("is in use by") || message.contains("has active endpoints"))
    }

    /// Whether a create was refused because an object of that name exists: swarmkit's
    /// `AlreadyExists`, which dockerd answers as 409.
    #[must_use]
    pub fn is_conflict(&self) -> bool {
        self.source_error().and_then(status_code) == Some(409)
    }

    /// Whether the write lost a race against another writer of the same object.
    #[must_use]
    pub fn is_out_of_sequence(&self) -> bool {
        self.source_error().is_some_and(is_out_of_sequence)
    }
}

/// `err` with the text dockerd sent cut to [`MESSAGE_LIMIT`](crate::text::MESSAGE_LIMIT).
///
/// dockerd quotes what it refuses: a 400 for a config value of 1.4 MB carried the whole
/// value, and every retry stored it again as an event, until the event log no longer
/// fit in one etcd answer. The start of a message is what says what went wrong (and
/// what [`is_out_of_sequence`] and [`DockerError::is_in_use`] look for), so it is kept.
pub(crate) fn bounded(err: BollardError) -> BollardError {
    let cut = |text: String| match truncate(&text, MESSAGE_LIMIT) {
        Cow::Borrowed(_) => text,
        Cow::Owned(cut) => cut,
    };
    match err {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => BollardError::DockerResponseServerError {
            status_code,
            message: cut(message),
        },
        BollardError::JsonDataError { message, column } => BollardError::JsonDataError {
            message: cut(message),
            column,
        },
        BollardError::DockerStreamError { error } => {
            BollardError::DockerStreamError { error: cut(error) }
        }
        other => other,
    }
}

pub(crate) fn status_code(err: &BollardError) -> Option<u16> {
    match err {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// swarmkit's "update out of sequence" (the version sent is no longer the current one):
/// dockerd 20.10 answers it as HTTP 500, newer ones may say 409; the text is what is stable.
pub(crate) fn is_out_of_sequence(err: &BollardError) -> bool {
    matches!(err, BollardError::DockerResponseServerError { message, .. }
        if message.contains("update out of sequence"))
}

fn is_transient(err: &BollardError) -> bool {
    match err {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => {
            if is_out_of_sequence(err) {
                return true;
            }
            match status_code {
                408 | 429 => true,
                500..=599 => !message.contains("code = InvalidArgument"),
                _ => false,
            }
        }
        BollardError::RequestTimeoutError
        | BollardError::IOError { .. }
        | BollardError::HyperResponseError { .. }
        | BollardError::HttpClientError { .. }
        | BollardError::HyperLegacyError { .. }
        | BollardError::SocketNotFoundError(_)
        | BollardError::DockerStreamError { .. } => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status_code: u16, message: &str) -> BollardError {
        BollardError::DockerResponseServerError {
            status_code,
            message: message.to_owned(),
        }
    }

    fn update(source: BollardError) -> DockerError {
        DockerError::UpdateService {
            service: "web_api".to_owned(),
            source,
        }
    }

    #[test]
    fn out_of_sequence_is_transient_whatever_the_status() {
        for code in [500, 409] {
            let err = update(server(
                code,
                "rpc error: code = Unknown desc = update out of sequence",
            ));
            assert!(err.is_out_of_sequence());
            assert!(err.is_transient());
        }
    }

    #[test]
    fn invalid_specs_are_not_transient() {
        assert!(!update(server(400, "invalid mount config")).is_transient());
        assert!(
            !update(server(
                500,
                "rpc error: code = InvalidArgument desc = ContainerSpec: image reference must be provided"
            ))
            .is_transient()
        );
        assert!(!update(server(409, "name conflicts with an existing object")).is_transient());
    }

    #[test]
    fn server_and_connection_failures_are_transient() {
        assert!(update(server(503, "swarm is not available")).is_transient());
        assert!(update(BollardError::RequestTimeoutError).is_transient());
        assert!(update(BollardError::SocketNotFoundError("/x.sock".into())).is_transient());
    }

    #[test]
    fn in_use_is_told_by_the_message() {
        let err = DockerError::RemoveSecret {
            secret: "db_password".to_owned(),
            source: server(
                400,
                "rpc error: code = InvalidArgument desc = secret 'db_password' is in use by the following service: web",
            ),
        };
        assert!(err.is_in_use());
        assert!(!err.is_transient());
        assert!(!update(server(400, "invalid mount config")).is_in_use());
    }

    #[test]
    fn a_huge_message_from_dockerd_is_cut_but_still_classified() {
        let value = "v".repeat(1_400_000);
        let err = update(bounded(server(
            500,
            &format!("rpc error: code = Unknown desc = update out of sequence: {value}"),
        )));
        let shown = err.to_string();
        assert!(shown.len() < 2 * MESSAGE_LIMIT, "{} bytes", shown.len());
        assert!(
            shown.ends_with(" bytes more)"),
            "{}",
            &shown[shown.len() - 40..]
        );
        assert!(err.is_out_of_sequence() && err.is_transient());
        let BollardError::DockerStreamError { error } =
            bounded(BollardError::DockerStreamError { error: value })
        else {
            panic!("the variant changed");
        };
        assert!(error.len() <= MESSAGE_LIMIT);
    }

    #[test]
    fn a_short_message_is_left_alone() {
        let BollardError::DockerResponseServerError { message, .. } =
            bounded(server(400, "invalid mount config"))
        else {
            panic!("the variant changed");
        };
        assert_eq!(message, "invalid mount config");
    }

    #[test]
    fn not_found_and_kind() {
        let err = DockerError::RemoveSecret {
            secret: "db_password".to_owned(),
            source: server(404, "secret db_password not found"),
        };
        assert!(err.is_not_found());
        assert!(!err.is_transient());
        assert_eq!(err.kind(), "remove_secret");
        assert_eq!(
            err.to_string(),
            "removing secret db_password: Docker responded with status code 404: secret db_password not found"
        );
    }
}
