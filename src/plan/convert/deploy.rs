//! The `deploy:` section apart from restarts: resources, the service mode and its replicas,
//! placement, and the update and rollback configs, as `convertResources`, `convertDeployMode`,
//! `getPlacementPreference` and `convertUpdateConfig` in docker/cli's `convert/service.go`.

use std::collections::HashMap;

use bollard::models::{
    GenericResourcesInner, GenericResourcesInnerDiscreteResourceSpec, Limit, ResourceObject,
    ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecModeReplicatedJob,
    ServiceSpecRollbackConfig, ServiceSpecUpdateConfig, TaskSpecPlacement,
    TaskSpecPlacementPreferences, TaskSpecPlacementSpread, TaskSpecResources,
};

use super::{non_empty, non_zero};
use crate::api::compose::{Deploy, DeployMode, UpdateConfig};

/// `deploy.resources`: limits and reservations, a zero value left unset.
pub(super) fn convert_resources(deploy: &Deploy) -> TaskSpecResources {
    let resources = deploy.resources.clone().unwrap_or_default();
    let limits = resources.limits.map(|l| Limit {
        nano_cpus: l.cpus.as_ref().map(|c| c.nanos()).and_then(non_zero),
        memory_bytes: l.memory.as_ref().map(|m| m.bytes()).and_then(non_zero),
        pids: l.pids.and_then(non_zero),
    });
    let reservations = resources.reservations.map(|r| ResourceObject {
        nano_cpus: r.cpus.as_ref().map(|c| c.nanos()).and_then(non_zero),
        memory_bytes: r.memory.as_ref().map(|m| m.bytes()).and_then(non_zero),
        generic_resources: non_empty(
            r.generic_resources
                .iter()
                .map(|g| GenericResourcesInner {
                    discrete_resource_spec: g.discrete_resource_spec.as_ref().map(|d| {
                        GenericResourcesInnerDiscreteResourceSpec {
                            kind: Some(d.kind.clone()),
                            value: Some(d.value),
                        }
                    }),
                    named_resource_spec: None,
                })
                .collect(),
        ),
    });
    TaskSpecResources {
        limits,
        reservations,
        ..TaskSpecResources::default()
    }
}

/// `deploy.mode` and `deploy.replicas`: replicated (one replica unless given), global, or a
/// job; a count with a global mode is an error.
pub(super) fn convert_mode(
    mode: Option<DeployMode>,
    replicas: Option<u64>,
) -> Result<ServiceSpecMode, String> {
    let replicas = replicas
        .map(i64::try_from)
        .transpose()
        .map_err(|_| "replicas out of range".to_owned())?;
    let mode = mode.unwrap_or(DeployMode::Replicated);
    if replicas.is_some() && matches!(mode, DeployMode::Global | DeployMode::GlobalJob) {
        return Err("replicas can only be used with replicated or replicated-job mode".to_owned());
    }
    Ok(match mode {
        DeployMode::Replicated => ServiceSpecMode {
            // The daemon defaults an unset count to 1; spell it out so desired equals live.
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(replicas.unwrap_or(1)),
            }),
            ..ServiceSpecMode::default()
        },
        DeployMode::Global => ServiceSpecMode {
            global: Some(HashMap::new()),
            ..ServiceSpecMode::default()
        },
        DeployMode::ReplicatedJob => ServiceSpecMode {
            replicated_job: Some(ServiceSpecModeReplicatedJob {
                max_concurrent: replicas,
                total_completions: replicas,
            }),
            ..ServiceSpecMode::default()
        },
        DeployMode::GlobalJob => ServiceSpecMode {
            global_job: Some(HashMap::new()),
            ..ServiceSpecMode::default()
        },
    })
}

/// `deploy.placement`: constraints, spread preferences and the cap of replicas per node.
pub(super) fn convert_placement(deploy: &Deploy) -> TaskSpecPlacement {
    let placement = deploy.placement.clone().unwrap_or_default();
    TaskSpecPlacement {
        constraints: non_empty(placement.constraints),
        preferences: non_empty(
            placement
                .preferences
                .into_iter()
                .map(|p| TaskSpecPlacementPreferences {
                    spread: Some(TaskSpecPlacementSpread {
                        spread_descriptor: Some(p.spread),
                    }),
                })
                .collect(),
        ),
        max_replicas: placement
            .max_replicas_per_node
            .and_then(|m| i64::try_from(m).ok())
            .and_then(non_zero),
        platforms: None,
    }
}

/// Declares the update and rollback conversions, which differ only in their bollard types.
/// The CLI sends `Parallelism` (default 1), `MaxFailureRatio` and `Order` even when unset.
macro_rules! update_config_fn {
    ($name:ident, $ty:ident, $order:ident) => {
        pub(super) fn $name(source: &UpdateConfig) -> $ty {
            $ty {
                parallelism: Some(
                    source
                        .parallelism
                        .and_then(|p| i64::try_from(p).ok())
                        .unwrap_or(1),
                ),
                delay: source.delay.as_ref().map(|d| d.nanos()).and_then(non_zero),
                failure_action: source.failure_action.and_then(|a| a.as_str().parse().ok()),
                monitor: source
                    .monitor
                    .as_ref()
                    .map(|d| d.nanos())
                    .and_then(non_zero),
                max_failure_ratio: Some(source.max_failure_ratio.unwrap_or(0.0)),
                order: Some(
                    source
                        .order
                        .and_then(|o| o.as_str().parse().ok())
                        .unwrap_or(bollard::models::$order::EMPTY),
                ),
            }
        }
    };
}

update_config_fn!(
    update_config,
    ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigOrderEnum
);
update_config_fn!(
    rollback_config,
    ServiceSpecRollbackConfig,
    ServiceSpecRollbackConfigOrderEnum
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::convert::fixtures::{EVERYTHING, convert, service, task};

    #[test]
    fn everything_deploy_converts_as_the_cli_does() {
        let objects = convert(EVERYTHING);
        let web = service(&objects, "web");
        let t = task(web);
        let placement = t.placement.as_ref().unwrap();
        assert_eq!(
            placement.preferences.as_ref().unwrap()[0]
                .spread
                .as_ref()
                .unwrap()
                .spread_descriptor
                .as_deref(),
            Some("node.labels.zone")
        );
        let resources = t.resources.as_ref().unwrap();
        assert_eq!(
            resources.limits.as_ref().unwrap().nano_cpus,
            Some(500_000_000)
        );
        assert_eq!(resources.limits.as_ref().unwrap().pids, Some(100));
        let reservations = resources.reservations.as_ref().unwrap();
        assert_eq!(reservations.nano_cpus, Some(250_000_000));
        assert_eq!(reservations.memory_bytes, Some(20 * 1024 * 1024));
        assert_eq!(reservations.generic_resources.as_ref().unwrap().len(), 1);

        let update = web.update_config.as_ref().unwrap();
        assert_eq!(update.parallelism, Some(2));
        assert_eq!(update.delay, Some(10_000_000_000));
        assert_eq!(
            update.order,
            Some(bollard::models::ServiceSpecUpdateConfigOrderEnum::START_FIRST)
        );
        let rollback = web.rollback_config.as_ref().unwrap();
        assert_eq!(rollback.parallelism, Some(1));
        assert_eq!(rollback.monitor, Some(30_000_000_000));
        assert_eq!(rollback.max_failure_ratio, Some(0.5));
        assert_eq!(
            rollback.failure_action,
            Some(bollard::models::ServiceSpecRollbackConfigFailureActionEnum::CONTINUE)
        );

        let job = service(&objects, "job");
        assert_eq!(job.mode.as_ref().unwrap().global_job, Some(HashMap::new()));
    }

    #[test]
    fn replicated_jobs_carry_their_count() {
        let objects = convert(
            "services:\n  j:\n    image: x\n    deploy: {mode: replicated-job, replicas: 3}\n",
        );
        let job = service(&objects, "j")
            .mode
            .clone()
            .unwrap()
            .replicated_job
            .unwrap();
        assert_eq!(
            (job.max_concurrent, job.total_completions),
            (Some(3), Some(3))
        );
    }

    #[test]
    fn a_count_is_refused_only_in_the_global_modes() {
        for mode in [DeployMode::Global, DeployMode::GlobalJob] {
            assert_eq!(
                convert_mode(Some(mode), Some(2)).unwrap_err(),
                "replicas can only be used with replicated or replicated-job mode"
            );
            assert!(convert_mode(Some(mode), None).is_ok());
        }
        for mode in [
            None,
            Some(DeployMode::Replicated),
            Some(DeployMode::ReplicatedJob),
        ] {
            assert!(convert_mode(mode, Some(2)).is_ok());
        }
        assert_eq!(
            convert_mode(Some(DeployMode::Global), Some(u64::MAX)).unwrap_err(),
            "replicas out of range"
        );
    }
}
