//! The Docker events stream, narrowed to swarm objects and mapped back to their owners.

use std::collections::HashMap;

use bollard::errors::Error as BollardError;
use bollard::models::{EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::EventsOptions;
use futures::stream::{self, BoxStream, Stream, StreamExt};
use jiff::Timestamp;

use super::error::{bounded, status_code};
use super::labels::Owner;
use super::{Access, Docker, DockerError};

/// The kinds of swarm object whose events swarmkeeper follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Service,
    Network,
    Secret,
    Config,
    Node,
}

impl EventType {
    const ALL: [Self; 5] = [
        Self::Service,
        Self::Network,
        Self::Secret,
        Self::Config,
        Self::Node,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::Network => "network",
            Self::Secret => "secret",
            Self::Config => "config",
            Self::Node => "node",
        }
    }

    fn from_message(typ: EventMessageTypeEnum) -> Option<Self> {
        Some(match typ {
            EventMessageTypeEnum::SERVICE => Self::Service,
            EventMessageTypeEnum::NETWORK => Self::Network,
            EventMessageTypeEnum::SECRET => Self::Secret,
            EventMessageTypeEnum::CONFIG => Self::Config,
            EventMessageTypeEnum::NODE => Self::Node,
            _ => return None,
        })
    }
}

/// One change to a swarm object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerEvent {
    pub typ: EventType,
    /// `create`, `update` or `remove`.
    pub action: String,
    pub id: String,
    /// The object's name (a node's hostname), from the event's attributes.
    pub name: Option<String>,
    /// The record owning the object, when it is managed; always `None` for nodes.
    pub owner: Option<Owner>,
}

type Labels = Option<HashMap<String, String>>;

/// The state of one events subscription: the raw stream and what it knows of owners.
///
/// dockerd 20.10 puts only `name` in a swarm event's attributes, so the owner is read
/// from the object on create and update, and remembered by ID for its remove, when the
/// object can no longer be read. The memory is seeded from a listing of managed objects
/// so the removal of an object created before the subscription is mapped too.
struct Watch {
    docker: Docker,
    raw: BoxStream<'static, Result<EventMessage, BollardError>>,
    owners: HashMap<String, Owner>,
    seeded: bool,
    ended: bool,
}

impl Docker {
    /// Events of services, networks, secrets, configs and nodes from `since` on (from now
    /// when `None`), each with the owning record when the object is managed.
    ///
    /// The stream yields one error and ends when dockerd goes away or a lookup fails;
    /// reconnecting and resyncing is the caller's job. It ends without error when dockerd
    /// closes the stream.
    pub fn events(
        &self,
        since: Option<Timestamp>,
    ) -> impl Stream<Item = Result<DockerEvent, DockerError>> + Send + 'static {
        // Starting from the instant of the call, not of the first poll, means nothing is
        // lost between the seeding listings and the subscription.
        let since = since.unwrap_or_else(Timestamp::now);
        let filters = HashMap::from([(
            "type".to_owned(),
            EventType::ALL
                .iter()
                .map(|typ| typ.as_str().to_owned())
                .collect(),
        )]);
        let options = EventsOptions {
            since: Some(format!(
                "{}.{:09}",
                since.as_second(),
                since.subsec_nanosecond()
            )),
            until: None,
            filters: Some(filters),
        };
        let watch = Watch {
            docker: self.clone(),
            raw: self.inner.events(Some(options)).boxed(),
            owners: HashMap::new(),
            seeded: false,
            ended: false,
        };
        stream::unfold(watch, |mut watch| async move {
            if watch.ended {
                return None;
            }
            match watch.next().await {
                Some(Ok(event)) => Some((Ok(event), watch)),
                Some(Err(err)) => {
                    watch.ended = true;
                    Some((Err(err), watch))
                }
                None => None,
            }
        })
    }

    /// The labels of a swarm object; `None` when it no longer exists.
    async fn labels_of(&self, typ: EventType, id: &str) -> Result<Option<Labels>, DockerError> {
        let inner = &self.inner;
        let read = match typ {
            EventType::Service => self
                .call(
                    Access::Read("service_inspect"),
                    inner.inspect_service(id, None),
                )
                .await
                .map(|service| service.spec.and_then(|spec| spec.labels)),
            EventType::Network => self
                .call(
                    Access::Read("network_inspect"),
                    inner.inspect_network(id, None),
                )
                .await
                .map(|network| network.labels),
            EventType::Secret => self
                .call(Access::Read("secret_inspect"), inner.inspect_secret(id))
                .await
                .map(|secret| secret.spec.and_then(|spec| spec.labels)),
            EventType::Config => self
                .call(Access::Read("config_inspect"), inner.inspect_config(id))
                .await
                .map(|config| config.spec.and_then(|spec| spec.labels)),
            EventType::Node => return Ok(Some(None)),
        };
        match read {
            Ok(labels) => Ok(Some(labels)),
            Err(err) if status_code(&err) == Some(404) => Ok(None),
            Err(source) => Err(DockerError::Inspect {
                what: typ.as_str(),
                name: id.to_owned(),
                source,
            }),
        }
    }
}

impl Watch {
    async fn next(&mut self) -> Option<Result<DockerEvent, DockerError>> {
        if !self.seeded {
            if let Err(err) = self.seed().await {
                return Some(Err(err));
            }
            self.seeded = true;
        }
        loop {
            let message = match self.raw.next().await? {
                Ok(message) => message,
                Err(source) => {
                    return Some(Err(DockerError::Events {
                        source: bounded(source),
                    }));
                }
            };
            match self.resolve(message).await {
                Ok(Some(event)) => return Some(Ok(event)),
                Ok(None) => {}
                Err(err) => return Some(Err(err)),
            }
        }
    }

    async fn seed(&mut self) -> Result<(), DockerError> {
        let docker = &self.docker;
        let labelled = docker.list_owned(None).await?.labelled();
        for (id, labels) in labelled {
            if let (Some(id), Some(owner)) = (id, docker.owner_of(labels.as_ref())) {
                self.owners.insert(id, owner);
            }
        }
        Ok(())
    }

    /// Turns a raw event into ours; `None` for types we do not follow.
    async fn resolve(&mut self, message: EventMessage) -> Result<Option<DockerEvent>, DockerError> {
        let Some(typ) = message.typ.and_then(EventType::from_message) else {
            return Ok(None);
        };
        let action = message.action.unwrap_or_default();
        let actor = message.actor.unwrap_or_default();
        let id = actor.id.unwrap_or_default();
        let attributes = actor.attributes.unwrap_or_default();
        let owner = if typ == EventType::Node {
            None
        } else if let Some(owner) = self.docker.owner_of(Some(&attributes)) {
            // Not seen on dockerd 20.10, but cheaper than a lookup if a daemon sends labels.
            Some(owner)
        } else if action == "remove" {
            self.owners.remove(&id)
        } else {
            match self.docker.labels_of(typ, &id).await? {
                Some(labels) => {
                    let owner = self.docker.owner_of(labels.as_ref());
                    match &owner {
                        Some(owner) => self.owners.insert(id.clone(), owner.clone()),
                        None => self.owners.remove(&id),
                    };
                    owner
                }
                // Gone before we could look: its remove event follows and needs the memory.
                None => self.owners.get(&id).cloned(),
            }
        };
        Ok(Some(DockerEvent {
            typ,
            action,
            id,
            name: attributes.get("name").cloned(),
            owner,
        }))
    }
}
