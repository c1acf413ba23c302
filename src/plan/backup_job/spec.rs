//! The swarm service of one run: a `replicated-job` of one task that is never restarted,
//! labelled with its owner and run time, so the run can be found again (and never made
//! twice) after any restart.

use std::collections::HashMap;

use bollard::models::{
    Mount, MountType, NetworkAttachmentConfig, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicatedJob, TaskSpec, TaskSpecContainerSpec, TaskSpecContainerSpecFile,
    TaskSpecContainerSpecSecrets, TaskSpecPlacement, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};
use jiff::Timestamp;

use super::run_name;
use crate::api::backup_job::{BackupJobSpec, MountType as JobMount};

/// The label holding the run time a run service was made for (RFC 3339).
pub const LABEL_SCHEDULED: &str = "swarmkeeper.backup.scheduled";

/// The label saying what started the run: `schedule` or `manual`.
pub const LABEL_TRIGGER: &str = "swarmkeeper.backup.trigger";

/// How many lines of a run's output are kept with it.
pub const TAIL_LINES: usize = 20;

/// What the job's logical names resolve to in the swarm now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attachments {
    /// logical name -> (swarm secret name, ID), for each of `spec.secrets`.
    pub secrets: Vec<(String, String, String)>,
    /// network ID, for each of `spec.networks`.
    pub networks: Vec<String>,
}

/// The service of `job`'s run at `scheduled`, carrying `owner_labels`.
#[must_use]
pub fn run_spec(
    job: &str,
    spec: &BackupJobSpec,
    scheduled: Timestamp,
    manual: bool,
    owner_labels: HashMap<String, String>,
    attachments: &Attachments,
) -> ServiceSpec {
    // The containers carry the owner too: dockerd 20.10 leaves them behind with the service.
    let container_labels = owner_labels.clone();
    let mut labels = owner_labels;
    labels.insert(LABEL_SCHEDULED.into(), scheduled.to_string());
    let trigger = if manual { "manual" } else { "schedule" };
    labels.insert(LABEL_TRIGGER.into(), trigger.into());
    let secrets = attachments
        .secrets
        .iter()
        .map(|(logical, name, id)| TaskSpecContainerSpecSecrets {
            file: Some(TaskSpecContainerSpecFile {
                name: Some(logical.clone()),
                uid: Some("0".into()),
                gid: Some("0".into()),
                mode: Some(0o444),
            }),
            secret_id: Some(id.clone()),
            secret_name: Some(name.clone()),
        })
        .collect();
    let mounts = spec
        .mounts
        .iter()
        .map(|m| Mount {
            target: Some(m.target.clone()),
            source: Some(m.source.clone()),
            typ: Some(match m.kind {
                JobMount::Volume => MountType::VOLUME,
                JobMount::Bind => MountType::BIND,
            }),
            read_only: m.read_only.then_some(true),
            ..Mount::default()
        })
        .collect();
    let container = TaskSpecContainerSpec {
        image: Some(spec.image.clone()),
        labels: Some(container_labels),
        // As `docker run IMAGE COMMAND`: the image's entrypoint, if any, runs it.
        args: (!spec.command.is_empty()).then(|| spec.command.clone()),
        env: (!spec.env.is_empty())
            .then(|| spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        secrets: Some(secrets),
        mounts: Some(mounts),
        ..TaskSpecContainerSpec::default()
    };
    let networks = attachments
        .networks
        .iter()
        .map(|id| NetworkAttachmentConfig {
            target: Some(id.clone()),
            ..NetworkAttachmentConfig::default()
        })
        .collect();
    ServiceSpec {
        name: Some(run_name(job, scheduled)),
        labels: Some(labels),
        task_template: Some(TaskSpec {
            container_spec: Some(container),
            placement: Some(TaskSpecPlacement {
                constraints: Some(spec.placement.constraints.clone()),
                ..TaskSpecPlacement::default()
            }),
            // A failed run is recorded as failed: swarm must not run it again.
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                ..TaskSpecRestartPolicy::default()
            }),
            networks: Some(networks),
            ..TaskSpec::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated_job: Some(ServiceSpecModeReplicatedJob {
                max_concurrent: Some(1),
                total_completions: Some(1),
            }),
            ..ServiceSpecMode::default()
        }),
        ..ServiceSpec::default()
    }
}
