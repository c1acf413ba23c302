//! Services: listing by owner, task counts, update state, and versioned writes.

use std::borrow::Cow;

use bollard::models::{Service, ServiceSpec, ServiceUpdateStatusStateEnum, Task};
use bollard::query_parameters::{ListServicesOptions, ListTasksOptions, UpdateServiceOptions};

use super::labels::{self, Owner};
use super::{Access, Docker, DockerCredentials, DockerError};

/// How many times an update is sent when other writers keep bumping the version.
const UPDATE_ATTEMPTS: u32 = 5;

/// Running versus wanted tasks of a service, counted by dockerd as `docker service ls` does:
/// `desired` is the replica count of a replicated service and, for a global one, the
/// number of tasks the orchestrator wants running (one per eligible node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskCounts {
    pub running: u64,
    pub desired: u64,
}

impl TaskCounts {
    /// The counts of a service returned by [`Docker::list_services`], which asks for them.
    #[must_use]
    pub fn of(service: &Service) -> Option<Self> {
        let status = service.service_status.as_ref()?;
        Some(Self {
            running: status.running_tasks.unwrap_or(0),
            desired: status.desired_tasks.unwrap_or(0),
        })
    }

    /// Whether every wanted task runs.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.running >= self.desired
    }
}

/// Where the swarm is with the last update of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateState {
    Updating,
    Paused,
    Completed,
    RollbackStarted,
    RollbackPaused,
    RollbackCompleted,
}

impl UpdateState {
    /// Whether the swarm gave up on the update: paused it on failures or rolled it back.
    /// The service then runs something other than what was asked, which is not success.
    #[must_use]
    pub fn is_degraded(self) -> bool {
        matches!(
            self,
            Self::Paused | Self::RollbackStarted | Self::RollbackPaused | Self::RollbackCompleted
        )
    }
}

/// The state of a service's last update; `None` when it was never updated.
#[must_use]
pub fn service_update_state(service: &Service) -> Option<UpdateState> {
    use ServiceUpdateStatusStateEnum as S;
    Some(match service.update_status.as_ref()?.state? {
        S::EMPTY => return None,
        S::UPDATING => UpdateState::Updating,
        S::PAUSED => UpdateState::Paused,
        S::COMPLETED => UpdateState::Completed,
        S::ROLLBACK_STARTED => UpdateState::RollbackStarted,
        S::ROLLBACK_PAUSED => UpdateState::RollbackPaused,
        S::ROLLBACK_COMPLETED => UpdateState::RollbackCompleted,
    })
}

/// What [`Docker::update_service`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceUpdate {
    /// dockerd accepted a new spec.
    Updated,
    /// The caller wanted no change to the (possibly refreshed) live service.
    Unchanged,
}

fn service_name(spec: Option<&ServiceSpec>) -> String {
    spec.and_then(|spec| spec.name.clone()).unwrap_or_default()
}

impl Docker {
    /// Managed services, of one owner if given, with their task counts ([`TaskCounts::of`]).
    ///
    /// # Errors
    /// [`DockerError::List`] when dockerd fails to answer.
    pub async fn list_services(&self, owner: Option<&Owner>) -> Result<Vec<Service>, DockerError> {
        self.services(labels::filters(owner, self.scope())).await
    }

    /// Services matching `filters`, with their task counts.
    async fn services(
        &self,
        filters: std::collections::HashMap<String, Vec<String>>,
    ) -> Result<Vec<Service>, DockerError> {
        let options = ListServicesOptions {
            filters: Some(filters),
            status: Some(true),
        };
        self.call(
            Access::Read("service_list"),
            self.inner.list_services(Some(options)),
        )
        .await
        .map_err(|source| DockerError::List {
            what: "services",
            source,
        })
    }

    /// Every task swarm keeps of the service `service_id`.
    ///
    /// # Errors
    /// [`DockerError::List`] when dockerd fails to answer.
    pub async fn service_tasks(&self, service_id: &str) -> Result<Vec<Task>, DockerError> {
        let options = ListTasksOptions {
            filters: Some([("service".to_owned(), vec![service_id.to_owned()])].into()),
        };
        self.call(
            Access::Read("task_list"),
            self.inner.list_tasks(Some(options)),
        )
        .await
        .map_err(|source| DockerError::List {
            what: "tasks",
            source,
        })
    }

    /// The error of the service's most recent failed task, if any: why its
    /// tasks do not run ("No such image", "invalid mount config").
    ///
    /// # Errors
    /// [`DockerError::List`] when dockerd fails to answer.
    pub async fn last_task_error(&self, service_id: &str) -> Result<Option<String>, DockerError> {
        let tasks = self.service_tasks(service_id).await?;
        Ok(tasks
            .into_iter()
            .filter_map(|t| {
                let status = t.status?;
                let err = status.err.filter(|e| !e.is_empty())?;
                // RFC 3339 times order as text.
                Some((status.timestamp.map(|t| t.to_string()), err))
            })
            .max_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, err)| err))
    }

    /// One service by ID or name, managed or not; `None` when it does not exist.
    ///
    /// # Errors
    /// [`DockerError::Inspect`] when dockerd fails to answer.
    pub async fn inspect_service(&self, service: &str) -> Result<Option<Service>, DockerError> {
        match self
            .call(
                Access::Read("service_inspect"),
                self.inner.inspect_service(service, None),
            )
            .await
        {
            Ok(found) => Ok(Some(found)),
            Err(err) if super::error::status_code(&err) == Some(404) => Ok(None),
            Err(source) => Err(DockerError::Inspect {
                what: "service",
                name: service.to_owned(),
                source,
            }),
        }
    }

    /// Creates a service and returns its ID. Registry credentials, when given, go in the
    /// `X-Registry-Auth` header so the nodes can pull; the image is not resolved.
    ///
    /// # Errors
    /// [`DockerError::CreateService`] when dockerd refuses the spec or does not answer.
    pub async fn create_service(
        &self,
        spec: ServiceSpec,
        registry_auth: Option<&DockerCredentials>,
    ) -> Result<String, DockerError> {
        let service = service_name(Some(&spec));
        let created = self
            .call(
                self.write("service_create")?,
                self.inner.create_service(spec, registry_auth.cloned()),
            )
            .await
            .map_err(|source| DockerError::CreateService {
                service: service.clone(),
                source,
            })?;
        log_warnings(&service, created.warnings.as_deref());
        Ok(created.id.unwrap_or_default())
    }

    /// Updates a service to the spec `want` computes from the live one.
    ///
    /// `want` sees `current` first; it returns `None` when the live service needs no
    /// change. swarm accepts an update only at the current `Version.Index`: when another
    /// writer got there first ("update out of sequence"), the service is read again and
    /// `want` recomputes against the fresh one, so a change made meanwhile is neither
    /// overwritten blindly nor updated for nothing. Gives up after a few lost races.
    ///
    /// # Errors
    /// [`DockerError::UpdateService`] when dockerd refuses the spec, keeps answering out of
    /// sequence, or does not answer; [`DockerError::Inspect`] when the re-read fails, or the
    /// service vanished (not found) while retrying.
    pub async fn update_service(
        &self,
        current: &Service,
        registry_auth: Option<&DockerCredentials>,
        mut want: impl FnMut(&Service) -> Option<ServiceSpec>,
    ) -> Result<ServiceUpdate, DockerError> {
        let id = current.id.clone().unwrap_or_default();
        let mut current = Cow::Borrowed(current);
        let mut attempt = 1;
        loop {
            let Some(spec) = want(&current) else {
                return Ok(ServiceUpdate::Unchanged);
            };
            let service = service_name(current.spec.as_ref());
            let version = current
                .version
                .as_ref()
                .and_then(|version| version.index)
                .unwrap_or(0);
            let options = UpdateServiceOptions {
                // bollard types the version as i32; a larger index saturates, dockerd then
                // answers out of sequence and the error surfaces instead of a wrong write.
                version: i32::try_from(version).unwrap_or(i32::MAX),
                ..UpdateServiceOptions::default()
            };
            let sent = self
                .call(
                    self.write("service_update")?,
                    self.inner
                        .update_service(&id, spec, options, registry_auth.cloned()),
                )
                .await;
            match sent {
                Ok(updated) => {
                    log_warnings(&service, updated.warnings.as_deref());
                    return Ok(ServiceUpdate::Updated);
                }
                Err(source)
                    if super::error::is_out_of_sequence(&source) && attempt < UPDATE_ATTEMPTS =>
                {
                    tracing::debug!(
                        service,
                        version,
                        attempt,
                        "service update out of sequence, re-reading"
                    );
                    let fresh = self.inspect_service(&id).await?.ok_or_else(|| {
                        DockerError::UpdateService {
                            service: service.clone(),
                            source,
                        }
                    })?;
                    current = Cow::Owned(fresh);
                    attempt += 1;
                }
                Err(source) => return Err(DockerError::UpdateService { service, source }),
            }
        }
    }

    /// Removes a service; one that is already gone counts as removed.
    ///
    /// # Errors
    /// [`DockerError::RemoveService`] when dockerd refuses or does not answer.
    pub async fn remove_service(&self, service: &str) -> Result<(), DockerError> {
        self.remove(
            self.write("service_remove")?,
            self.inner.delete_service(service),
        )
        .await
        .map_err(|source| DockerError::RemoveService {
            service: service.to_owned(),
            source,
        })
    }
}

fn log_warnings(service: &str, warnings: Option<&[String]>) {
    for warning in warnings.unwrap_or_default() {
        tracing::warn!(service, warning, "dockerd warned about a service");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ServiceServiceStatus, ServiceUpdateStatus};

    fn with_update_state(state: ServiceUpdateStatusStateEnum) -> Service {
        Service {
            update_status: Some(ServiceUpdateStatus {
                state: Some(state),
                ..ServiceUpdateStatus::default()
            }),
            ..Service::default()
        }
    }

    #[test]
    fn paused_and_rolled_back_updates_are_degraded() {
        use ServiceUpdateStatusStateEnum as S;
        for (state, degraded) in [
            (S::UPDATING, false),
            (S::COMPLETED, false),
            (S::PAUSED, true),
            (S::ROLLBACK_STARTED, true),
            (S::ROLLBACK_PAUSED, true),
            (S::ROLLBACK_COMPLETED, true),
        ] {
            let got = service_update_state(&with_update_state(state)).unwrap();
            assert_eq!(got.is_degraded(), degraded, "{state:?}");
        }
        assert_eq!(service_update_state(&with_update_state(S::EMPTY)), None);
        assert_eq!(service_update_state(&Service::default()), None);
    }

    #[test]
    fn task_counts_come_from_service_status() {
        let service = Service {
            service_status: Some(ServiceServiceStatus {
                running_tasks: Some(1),
                desired_tasks: Some(3),
                completed_tasks: None,
            }),
            ..Service::default()
        };
        let counts = TaskCounts::of(&service).unwrap();
        assert_eq!(
            counts,
            TaskCounts {
                running: 1,
                desired: 3
            }
        );
        assert!(!counts.is_ready());
        assert!(TaskCounts::of(&Service::default()).is_none());
    }
}
