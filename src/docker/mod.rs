//! The live swarm through bollard: reads by owner label, counted writes, events.
//!
//! Every call to dockerd goes through [`Docker`], which counts reads and writes (the
//! idempotency tests assert that a converged pass makes zero writes) and feeds the
//! `swarmkeeper_docker_requests_total{op,result}` metric.
//!
//! # Caveats
//! - bollard logs every request body through `log` at debug level, and a secret's
//!   body holds its data: the log filter must carry [`QUIET_BOLLARD_DIRECTIVE`].
//! - Images are never resolved against a registry: bollard sends the spec as given,
//!   and dockerd only queries a registry itself for clients older than API 1.30.
//!   Registry credentials travel only in the `X-Registry-Auth` header, and only when
//!   a caller passes them. bollard's [`DockerCredentials`] derives a Debug that prints
//!   the password: never log one.
//! - Swarm events (dockerd 20.10) carry only the object's `name` attribute, never its
//!   labels: [`Docker::events`] finds the owner by looking the object up.

mod error;
mod events;
mod job;
pub mod labels;
mod node;
mod objects;
mod service;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bollard::errors::Error as BollardError;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::runtime::Fence;

pub use bollard::auth::DockerCredentials;
pub use bollard::models::{
    Config, ConfigSpec, Network, NetworkCreateRequest, Node, NodeSpec, Secret, SecretSpec, Service,
    ServiceSpec,
};
pub use error::DockerError;
pub use events::{DockerEvent, EventType};
pub use job::JobTask;
pub use labels::{MANAGED, OWNER, Owner, ParseOwnerError, SPEC_HASH, STACK_NAMESPACE};
pub use objects::{Labels, OwnedObjects};
pub use service::{ServiceUpdate, TaskCounts, UpdateState, service_update_state};

/// Where dockerd listens when `DOCKER_HOST` is unset or empty, as for the docker CLI.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// A `tracing_subscriber::EnvFilter` directive that keeps bollard's debug lines, which
/// print request bodies (secret data included), out of the logs.
pub const QUIET_BOLLARD_DIRECTIVE: &str = "bollard=info";

/// Labels of `swarmkeeper_docker_requests_total`: the operation and how it ended
/// (`ok`, `not_found` or `error`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DockerOpLabels {
    pub op: &'static str,
    pub result: &'static str,
}

/// Whether a call changes the swarm; only writes count against idempotency.
#[derive(Clone, Copy)]
enum Access {
    /// A read, named by its operation.
    Read(&'static str),
    /// A write, with the proof that the fence was checked just before it.
    Write(Fenced),
}

/// Made only by [`Docker::write`], so no write can be sent without checking the fence.
#[derive(Clone, Copy)]
struct Fenced {
    op: &'static str,
}

impl Access {
    fn op(self) -> &'static str {
        match self {
            Access::Read(op) | Access::Write(Fenced { op }) => op,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    reads: AtomicU64,
    writes: AtomicU64,
    requests: Family<DockerOpLabels, Counter>,
}

/// A connection to dockerd; cheap to clone, clones share the counters.
#[derive(Debug, Clone)]
pub struct Docker {
    inner: bollard::Docker,
    counters: Arc<Counters>,
    /// When set, only objects labelled with this scope are seen as managed.
    scope: Option<Arc<str>>,
    /// On a leader's connection, the lease deadline every write checks first.
    fence: Option<Fence>,
}

impl Docker {
    /// Connects to `DOCKER_HOST` (`unix://` or `tcp://`), or to [`DEFAULT_HOST`] when it is
    /// unset or empty, as the docker CLI does.
    ///
    /// # Errors
    /// [`DockerError::Connect`] when the host is malformed or dockerd does not answer.
    pub async fn connect() -> Result<Self, DockerError> {
        let host = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|host| !host.is_empty());
        Self::connect_to(host.as_deref().unwrap_or(DEFAULT_HOST)).await
    }

    /// Connects to `host` and settles on the API version dockerd speaks.
    ///
    /// bollard speaks API 1.53 by default and dockerd 20.10 only 1.41, so the version is
    /// negotiated down; that also makes dockerd treat us as a modern client that never
    /// wants it to resolve image digests.
    ///
    /// # Errors
    /// [`DockerError::Connect`] when the host is malformed or dockerd does not answer.
    pub async fn connect_to(host: &str) -> Result<Self, DockerError> {
        let connect_error = |source| DockerError::Connect {
            host: host.to_owned(),
            source,
        };
        let inner = bollard::Docker::connect_with_host(host)
            .map_err(connect_error)?
            .negotiate_version()
            .await
            .map_err(connect_error)?;
        Ok(Self {
            inner,
            counters: Arc::default(),
            scope: None,
            fence: None,
        })
    }

    /// The same connection, seeing and labelling only the objects of `scope`
    /// (the controller uses its etcd prefix).
    #[must_use]
    pub fn scoped(mut self, scope: &str) -> Self {
        self.scope = Some(Arc::from(scope));
        self
    }

    /// The same connection, sending writes only while `fence` holds: a
    /// leader that may have been replaced writes nothing, not even the retry
    /// of an update that lost a race.
    #[must_use]
    pub fn fenced(mut self, fence: Fence) -> Self {
        self.fence = Some(fence);
        self
    }

    /// A write of `op` that may be sent now: the fence, if any, still holds.
    fn write(&self, op: &'static str) -> Result<Access, DockerError> {
        match &self.fence {
            Some(fence) if fence.check().is_err() => {
                tracing::warn!(op, "write not sent: the leader lease is no longer held");
                Err(DockerError::Deposed { op })
            }
            _ => Ok(Access::Write(Fenced { op })),
        }
    }

    /// The scope this connection is limited to, if any.
    #[must_use]
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The labels an object owned by `owner` carries: managed, owner, and scope.
    #[must_use]
    pub fn owner_labels(&self, owner: &Owner) -> std::collections::HashMap<String, String> {
        let mut labels = owner.labels();
        if let Some(scope) = self.scope() {
            labels.insert(labels::SCOPE.to_owned(), scope.to_owned());
        }
        labels
    }

    /// The owner named by an object's labels, when the object is managed and in this scope.
    #[must_use]
    pub fn owner_of(
        &self,
        labels: Option<&std::collections::HashMap<String, String>>,
    ) -> Option<Owner> {
        let in_scope = match self.scope() {
            None => true,
            Some(scope) => {
                labels
                    .and_then(|l| l.get(labels::SCOPE))
                    .map(String::as_str)
                    == Some(scope)
            }
        };
        if in_scope {
            Owner::from_labels(labels)
        } else {
            None
        }
    }

    /// Asks dockerd whether it is there, for readiness checks and reconnect loops; a
    /// connection made once keeps working after dockerd restarts.
    ///
    /// # Errors
    /// [`DockerError::Ping`] when dockerd does not answer.
    pub async fn ping(&self) -> Result<(), DockerError> {
        self.call(Access::Read("ping"), self.inner.ping())
            .await
            .map(drop)
            .map_err(|source| DockerError::Ping { source })
    }

    /// Create, update and remove calls sent to dockerd so far, retries included.
    #[must_use]
    pub fn writes(&self) -> u64 {
        self.counters.writes.load(Ordering::Relaxed)
    }

    /// List and inspect calls sent to dockerd so far.
    #[must_use]
    pub fn reads(&self) -> u64 {
        self.counters.reads.load(Ordering::Relaxed)
    }

    /// The per-operation request counter, shared by every clone of this connection.
    #[must_use]
    pub fn requests(&self) -> &Family<DockerOpLabels, Counter> {
        &self.counters.requests
    }

    /// Registers `docker_requests_total{op,result}` in `registry`, which carries the
    /// `swarmkeeper` prefix ([`crate::metrics::Metrics::new`] makes it): the name here
    /// must not spell the prefix again.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "docker_requests",
            "Requests sent to dockerd, by operation and result",
            self.counters.requests.clone(),
        );
    }

    /// Sends one request, counting it before it leaves so a failed write still counts.
    async fn call<T>(
        &self,
        access: Access,
        request: impl Future<Output = Result<T, BollardError>>,
    ) -> Result<T, BollardError> {
        let op = access.op();
        let counter = match access {
            Access::Read(_) => &self.counters.reads,
            Access::Write(_) => &self.counters.writes,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let outcome = request.await.map_err(error::bounded);
        let result = match &outcome {
            Ok(_) => "ok",
            Err(err) if error::status_code(err) == Some(404) => "not_found",
            Err(_) => "error",
        };
        self.counters
            .requests
            .get_or_create(&DockerOpLabels { op, result })
            .inc();
        outcome
    }

    /// Sends a remove: an object that is already gone counts as removed.
    async fn remove(
        &self,
        write: Access,
        request: impl Future<Output = Result<(), BollardError>>,
    ) -> Result<(), BollardError> {
        match self.call(write, request).await {
            Err(err) if error::status_code(&err) == Some(404) => Ok(()),
            outcome => outcome,
        }
    }
}
