//! A BackupJob's runs in the swarm: the run services found by owner label and how their
//! tasks ended, what the job's secrets and networks resolve to, and the start of a run
//! (scheduled by the controller, or asked for by `backup run`).

use bollard::models::Service;
use jiff::Timestamp;

use super::secret_versions::current_secret;
use super::{Context, Error};
use crate::api::backup_job::BackupJobSpec;
use crate::docker::JobTask;
use crate::docker::labels::Owner;
use crate::plan::backup_job::{
    Attachments, BackupJobStatus, LABEL_SCHEDULED, LABEL_TRIGGER, LiveRun, LiveState, RunResult,
    TAIL_LINES, run_spec,
};

/// The owner label value of a job's run services.
pub fn owner(job: &str) -> Owner {
    Owner::new("BackupJob", job)
}

/// A run service as found, with its ID for the writes.
pub struct Found {
    pub id: String,
    pub run: LiveRun,
    task: Option<JobTask>,
}

fn labels(service: &Service) -> Option<&std::collections::HashMap<String, String>> {
    service.spec.as_ref()?.labels.as_ref()
}

fn parse_time(text: Option<&str>) -> Option<Timestamp> {
    text?.parse().ok()
}

/// The job's run services and their tasks' states; the log tail is read for a run that
/// ended and is not recorded as ended in `known` (never with `sensitiveLogs`).
///
/// # Errors
/// When dockerd fails.
pub async fn observe(
    ctx: &Context,
    job: &str,
    spec: Option<&BackupJobSpec>,
    known: Option<&BackupJobStatus>,
) -> Result<Vec<Found>, Error> {
    let services = ctx.docker.list_services(Some(&owner(job))).await?;
    let mut found = Vec::new();
    for service in services {
        let name = service
            .spec
            .as_ref()
            .and_then(|s| s.name.clone())
            .unwrap_or_default();
        let id = service.id.clone().unwrap_or_default();
        let created = parse_time(service.created_at.as_deref()).unwrap_or_else(Timestamp::now);
        let scheduled = parse_time(
            labels(&service)
                .and_then(|l| l.get(LABEL_SCHEDULED))
                .map(String::as_str),
        )
        .unwrap_or(created);
        let manual = labels(&service)
            .and_then(|l| l.get(LABEL_TRIGGER))
            .is_some_and(|t| t == "manual");
        // A run the history already records as ended is not looked at again: a pass
        // reads the tasks of the active runs only, however many services are kept.
        let recorded = known.and_then(|k| k.runs.iter().find(|r| r.name == name));
        let ended = recorded.filter(|r| r.result != RunResult::Running);
        let task = match ended {
            Some(_) => None,
            None => ctx.docker.job_task(&id).await?,
        };
        let state = match (&task, ended) {
            (_, Some(run)) => LiveState::Ended {
                at: run.finished.unwrap_or(run.started),
                exit_code: run.exit_code,
                error: run.message.clone(),
            },
            (Some(t), None) if t.ended => LiveState::Ended {
                at: parse_time(t.timestamp.as_deref()).unwrap_or_else(Timestamp::now),
                exit_code: t.exit_code,
                error: t.error.clone(),
            },
            _ => LiveState::Active,
        };
        let sensitive = spec.is_none_or(|s| s.sensitive_logs);
        let log = match &task {
            Some(t) if t.ended && !sensitive => ctx.docker.task_log_tail(&t.id, TAIL_LINES).await?,
            _ => Vec::new(),
        };
        found.push(Found {
            id,
            run: LiveRun {
                name,
                scheduled,
                manual,
                created,
                state,
                log,
            },
            task,
        });
    }
    Ok(found)
}

impl Found {
    /// The output of a run that is stopped before it ended (a timeout), read before its
    /// service goes.
    ///
    /// # Errors
    /// When dockerd fails.
    pub async fn log_before_stop(
        &self,
        ctx: &Context,
        spec: &BackupJobSpec,
    ) -> Result<Vec<String>, Error> {
        match &self.task {
            Some(task) if !spec.sensitive_logs => {
                Ok(ctx.docker.task_log_tail(&task.id, TAIL_LINES).await?)
            }
            _ => Ok(Vec::new()),
        }
    }
}

/// The stopped containers of the job's tasks on this node, listed before its services
/// are: a container whose service is then not found belongs to a removed run.
///
/// # Errors
/// When dockerd fails.
pub async fn stopped_containers(ctx: &Context, job: &str) -> Result<Vec<(String, String)>, Error> {
    Ok(ctx.docker.stopped_task_containers(&owner(job)).await?)
}

/// Removes the containers among `containers` whose run service is not in `found`:
/// dockerd 20.10 leaves them behind, holding the volumes they mount.
///
/// # Errors
/// When dockerd fails.
pub async fn remove_leftovers(
    ctx: &Context,
    containers: &[(String, String)],
    found: &[Found],
) -> Result<(), Error> {
    for (id, service) in containers {
        if !found.iter().any(|f| f.run.name == *service) {
            tracing::debug!(container = %id, service, "removing a removed run's container");
            ctx.docker.remove_container(id).await?;
        }
    }
    Ok(())
}

/// What the job's secrets and networks are in the swarm now, or what is missing.
///
/// # Errors
/// When dockerd fails.
pub async fn attachments(
    ctx: &Context,
    spec: &BackupJobSpec,
) -> Result<Result<Attachments, Vec<String>>, Error> {
    let mut found = Attachments::default();
    let mut missing = Vec::new();
    let delivered = if spec.secrets.is_empty() {
        Vec::new()
    } else {
        ctx.docker.list_secrets(None).await?
    };
    for name in &spec.secrets {
        match current_secret(ctx, name, &delivered).await? {
            Some((versioned, id)) => found.secrets.push((name.clone(), versioned, id)),
            None => missing.push(format!(
                "secret {name:?}{}",
                super::stack::deliverer(ctx, name).await?
            )),
        }
    }
    for name in &spec.networks {
        match ctx.docker.inspect_network_by_name(name).await? {
            Some(network) => found.networks.push(network.id.unwrap_or_default()),
            None => missing.push(format!("network {name:?}")),
        }
    }
    Ok(if missing.is_empty() {
        Ok(found)
    } else {
        Err(missing)
    })
}

/// Creates the service of `job`'s run at `scheduled`. A run time has one name, so a
/// second create of it (another replica, a retry after a lost answer) finds the run
/// there and counts as done.
///
/// # Errors
/// When dockerd refuses the spec or fails, or the image's registry
/// credentials cannot be read.
pub async fn start(
    ctx: &Context,
    job: &str,
    spec: &BackupJobSpec,
    scheduled: Timestamp,
    manual: bool,
    attachments: &Attachments,
) -> Result<String, Error> {
    let owner_labels = ctx.docker.owner_labels(&owner(job));
    let service = run_spec(job, spec, scheduled, manual, owner_labels, attachments);
    let name = service.name.clone().unwrap_or_default();
    // Images of a Registry record's registry are pulled with its credentials, as a stack's are.
    let auth = super::registry_auth::auth_for_image(ctx, &spec.image).await?;
    match ctx.docker.create_service(service, auth.as_ref()).await {
        Ok(_) => Ok(name),
        Err(err) if err.is_conflict() => {
            let existing = ctx.docker.inspect_service(&name).await?;
            let ours = existing
                .as_ref()
                .and_then(|s| ctx.docker.owner_of(labels(s)))
                .is_some_and(|o| o == owner(job));
            if ours {
                Ok(name)
            } else {
                Err(Error::Invalid(format!(
                    "a service named {name} exists that this BackupJob does not own"
                )))
            }
        }
        Err(err) => Err(err.into()),
    }
}
