//! Job services' tasks: how a run's task ended (state, exit code, error), the last
//! lines of its output, and the containers a removed job service leaves behind.
//!
//! # Caveats
//! dockerd 20.10 keeps the exited container of a job's task after the service is
//! removed (with the volumes it mounts in use): the containers carry their owner's
//! labels so that they can be found and removed. Only this node's are seen.

use bollard::container::LogOutput;
use bollard::models::TaskState;
use bollard::query_parameters::{ListContainersOptions, LogsOptions, RemoveContainerOptions};
use futures::StreamExt;

use super::labels::{self, Owner};
use super::{Access, Docker, DockerError};

/// The label swarm puts on a task's container: the name of its service.
const SERVICE_NAME: &str = "com.docker.swarm.service.name";
use crate::text::truncate;

/// The longest line of output kept; longer ones are cut.
const LINE_LIMIT: usize = 200;

/// The newest task of a job service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobTask {
    pub id: String,
    /// Whether the task is done: complete, failed, rejected, shut down.
    pub ended: bool,
    /// When it reached its state (RFC 3339, as dockerd sends it).
    pub timestamp: Option<String>,
    pub exit_code: Option<i64>,
    /// swarm's error for a task that failed or was rejected.
    pub error: String,
}

impl Docker {
    /// The newest task of the job service `service_id`; `None` before swarm made one.
    ///
    /// # Errors
    /// [`DockerError::List`] when dockerd fails to answer.
    pub async fn job_task(&self, service_id: &str) -> Result<Option<JobTask>, DockerError> {
        let tasks = self.service_tasks(service_id).await?;
        // RFC 3339 times order as text.
        let newest = tasks
            .into_iter()
            .max_by(|a, b| a.created_at.cmp(&b.created_at));
        Ok(newest.map(|task| {
            let status = task.status.unwrap_or_default();
            let ended = matches!(
                status.state,
                Some(
                    TaskState::COMPLETE
                        | TaskState::FAILED
                        | TaskState::REJECTED
                        | TaskState::SHUTDOWN
                        | TaskState::ORPHANED
                        | TaskState::REMOVE
                )
            );
            JobTask {
                id: task.id.unwrap_or_default(),
                ended,
                timestamp: status.timestamp,
                exit_code: status.container_status.and_then(|c| c.exit_code),
                error: status.err.unwrap_or_default(),
            }
        }))
    }

    /// This node's stopped containers of `owner`'s tasks: (container ID, service name).
    ///
    /// # Errors
    /// [`DockerError::List`] when dockerd fails to answer.
    pub async fn stopped_task_containers(
        &self,
        owner: &Owner,
    ) -> Result<Vec<(String, String)>, DockerError> {
        let mut filters = labels::filters(Some(owner), self.scope());
        filters.insert("status".into(), vec!["exited".into(), "dead".into()]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..ListContainersOptions::default()
        };
        let containers = self
            .call(
                Access::Read("container_list"),
                self.inner.list_containers(Some(options)),
            )
            .await
            .map_err(|source| DockerError::List {
                what: "containers",
                source,
            })?;
        Ok(containers
            .into_iter()
            .filter_map(|c| {
                let service = c.labels.as_ref()?.get(SERVICE_NAME)?.clone();
                Some((c.id?, service))
            })
            .collect())
    }

    /// Removes a stopped container; one already gone counts as removed.
    ///
    /// # Errors
    /// [`DockerError::RemoveContainer`] when dockerd refuses or does not answer.
    pub async fn remove_container(&self, id: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptions {
            v: false,
            force: true,
            link: false,
        };
        self.remove(
            self.write("container_remove")?,
            self.inner.remove_container(id, Some(options)),
        )
        .await
        .map_err(|source| DockerError::RemoveContainer {
            container: id.to_owned(),
            source,
        })
    }

    /// The last `lines` lines a task wrote to stdout and stderr, each cut to a bounded length.
    ///
    /// # Errors
    /// [`DockerError::Inspect`] when dockerd fails to answer.
    pub async fn task_log_tail(
        &self,
        task_id: &str,
        lines: usize,
    ) -> Result<Vec<String>, DockerError> {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..LogsOptions::default()
        };
        let read = async {
            let mut stream = self.inner.task_logs(task_id, Some(options));
            let mut text = Vec::new();
            while let Some(chunk) = stream.next().await {
                match chunk? {
                    LogOutput::StdOut { message } | LogOutput::StdErr { message } => {
                        text.extend_from_slice(&message);
                    }
                    _ => {}
                }
            }
            Ok(text)
        };
        let text = self
            .call(Access::Read("task_logs"), read)
            .await
            .map_err(|source| DockerError::Inspect {
                what: "task logs",
                name: task_id.to_owned(),
                source,
            })?;
        let text = String::from_utf8_lossy(&text);
        let all: Vec<String> = text
            .lines()
            .map(|line| truncate(line, LINE_LIMIT).into_owned())
            .collect();
        Ok(all[all.len().saturating_sub(lines)..].to_vec())
    }
}
