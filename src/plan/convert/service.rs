//! A service's spec: its labels, task template and container spec (command, environment,
//! capabilities, healthcheck, restart policy, logging and the rest), calling the other seams for
//! mounts, references, networks, ports and `deploy:`, as `Service` in docker/cli's
//! `convert/service.go`.

use std::collections::{BTreeSet, HashMap};

use bollard::models::{
    HealthConfig, ResourcesUlimits, ServiceSpec, TaskSpec, TaskSpecContainerSpec,
    TaskSpecContainerSpecDnsConfig, TaskSpecContainerSpecPrivileges,
    TaskSpecContainerSpecPrivilegesCredentialSpec, TaskSpecLogDriver, TaskSpecRestartPolicy,
};

use super::deploy::{
    convert_mode, convert_placement, convert_resources, rollback_config, update_config,
};
use super::networks::convert_service_networks;
use super::ports::convert_endpoint_spec;
use super::secrets::{convert_config_refs, convert_secret_refs};
use super::volumes::convert_mount;
use super::{
    LABEL_IMAGE, non_empty, non_empty_map, non_empty_str, non_zero, scope, stack_labels,
    to_hash_map,
};
use crate::api::compose::{
    Command, ComposeFile, GoDuration, ListOrMap, Service, StringOrList, parse_restart,
};

/// The spec of the service `<stack>_<key>`, labelled with the stack and the image.
pub(super) fn convert_service(
    stack: &str,
    compose: &ComposeFile,
    key: &str,
    service: &Service,
) -> Result<ServiceSpec, String> {
    let deploy = service.deploy.clone().unwrap_or_default();
    let image = service.image.clone().unwrap_or_default();
    let mut labels = stack_labels(stack, deploy.labels.as_ref());
    labels.insert(LABEL_IMAGE.to_owned(), image.clone());

    let container = convert_container(stack, compose, service, image)?;
    let task_template = TaskSpec {
        container_spec: Some(container),
        resources: Some(convert_resources(&deploy)),
        restart_policy: convert_restart_policy(service)?,
        placement: Some(convert_placement(&deploy)),
        networks: Some(convert_service_networks(stack, compose, key, service)?),
        log_driver: service.logging.as_ref().map(|logging| TaskSpecLogDriver {
            name: Some(logging.driver.clone().unwrap_or_default()),
            options: logging
                .options
                .as_ref()
                .map(|o| to_hash_map(o.to_string_map()))
                .and_then(non_empty_map),
        }),
        ..TaskSpec::default()
    };
    Ok(ServiceSpec {
        name: Some(scope(stack, key)),
        labels: Some(labels),
        task_template: Some(task_template),
        mode: Some(convert_mode(deploy.mode, deploy.replicas)?),
        update_config: deploy.update_config.as_ref().map(update_config),
        rollback_config: deploy.rollback_config.as_ref().map(rollback_config),
        networks: None,
        endpoint_spec: Some(convert_endpoint_spec(&deploy, service)?),
    })
}

/// The container spec: what of the service runs inside each task's container.
fn convert_container(
    stack: &str,
    compose: &ComposeFile,
    service: &Service,
    image: String,
) -> Result<TaskSpecContainerSpec, String> {
    let command = |c: &Option<Command>| -> Result<_, String> {
        Ok(c.as_ref()
            .map(Command::to_args)
            .transpose()?
            .and_then(non_empty))
    };
    let hosts = match &service.extra_hosts {
        Some(hosts) => hosts
            .host_entries()
            .map_err(|(_, entry)| format!("invalid extra host {entry:?}"))?
            .into_iter()
            // SwarmKit's notation: "IP-address hostname".
            .map(|(host, ip)| format!("{ip} {host}"))
            .collect(),
        None => Vec::new(),
    };
    let dns = service.dns.as_ref().map(|d| d.to_vec()).unwrap_or_default();
    let dns_search = service
        .dns_search
        .as_ref()
        .map(|d| d.to_vec())
        .unwrap_or_default();
    let dns_config =
        (!dns.is_empty() || !dns_search.is_empty()).then(|| TaskSpecContainerSpecDnsConfig {
            nameservers: non_empty(dns),
            search: non_empty(dns_search),
            options: None,
        });
    let (cap_add, cap_drop) = effective_capabilities(&service.cap_add, &service.cap_drop);
    let mut ulimits: Vec<ResourcesUlimits> = service
        .ulimits
        .iter()
        .map(|(name, limit)| {
            let (soft, hard) = limit.limits();
            ResourcesUlimits {
                name: Some(name.clone()),
                soft: Some(soft),
                hard: Some(hard),
            }
        })
        .collect();
    ulimits.sort_by(|a, b| a.name.cmp(&b.name));
    let credential_key = service
        .credential_spec
        .as_ref()
        .and_then(|c| c.config.as_ref());
    let (configs, credential_config) =
        convert_config_refs(stack, compose, &service.configs, credential_key)?;
    Ok(TaskSpecContainerSpec {
        image: Some(image),
        labels: Some(stack_labels(stack, service.labels.as_ref())),
        command: command(&service.entrypoint)?,
        args: command(&service.command)?,
        hostname: non_empty_str(service.hostname.as_ref()),
        env: non_empty(convert_environment(service.environment.as_ref())),
        dir: non_empty_str(service.working_dir.as_ref()),
        user: non_empty_str(service.user.as_ref()),
        privileges: Some(TaskSpecContainerSpecPrivileges {
            credential_spec: service.credential_spec.as_ref().and_then(|spec| {
                (credential_config.is_some() || spec.file.is_some() || spec.registry.is_some())
                    .then(|| TaskSpecContainerSpecPrivilegesCredentialSpec {
                        config: credential_config.clone(),
                        file: spec.file.clone(),
                        registry: spec.registry.clone(),
                    })
            }),
            ..TaskSpecContainerSpecPrivileges::default()
        }),
        tty: service.tty.filter(|t| *t),
        open_stdin: service.stdin_open.filter(|t| *t),
        read_only: service.read_only.filter(|t| *t),
        mounts: non_empty(
            service
                .volumes
                .iter()
                .map(|v| convert_mount(stack, compose, v))
                .collect::<Result<_, _>>()?,
        ),
        stop_signal: non_empty_str(service.stop_signal.as_ref()),
        stop_grace_period: service.stop_grace_period.as_ref().map(|d| d.nanos()),
        health_check: convert_healthcheck(service),
        hosts: non_empty(hosts),
        dns_config,
        secrets: non_empty(convert_secret_refs(stack, compose, &service.secrets)?),
        oom_score_adj: service.oom_score_adj.and_then(non_zero),
        configs: non_empty(configs),
        isolation: non_empty_str(service.isolation.as_ref())
            .map(|i| i.parse())
            .transpose()?,
        init: service.init,
        sysctls: service
            .sysctls
            .as_ref()
            .map(|s| to_hash_map(s.to_string_map()))
            .and_then(non_empty_map),
        capability_add: non_empty(cap_add),
        capability_drop: non_empty(cap_drop),
        ulimits: non_empty(ulimits),
        groups: None,
    })
}

/// `KEY=VALUE` (or a bare `KEY` for a variable without value), sorted. A key listed twice
/// keeps its last value: the CLI loads the list into a map.
fn convert_environment(environment: Option<&ListOrMap>) -> Vec<String> {
    let unique: HashMap<String, Option<String>> = environment
        .map(|e| e.entries('='))
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut env: Vec<String> = unique
        .into_iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k,
        })
        .collect();
    env.sort();
    env
}

/// Capabilities normalised to `CAP_*`, with `ALL` absorbing the rest and an added capability
/// winning over a dropped one, as the CLI's `EffectiveCapAddCapDrop`.
fn effective_capabilities(add: &[String], drop: &[String]) -> (Vec<String>, Vec<String>) {
    fn normalize(caps: &[String]) -> BTreeSet<String> {
        let set: BTreeSet<String> = caps
            .iter()
            .map(|c| {
                let c = c.trim().to_ascii_uppercase();
                if c == "ALL" || c == "RESET" || c.starts_with("CAP_") {
                    c
                } else {
                    format!("CAP_{c}")
                }
            })
            .collect();
        if set.contains("ALL") {
            BTreeSet::from(["ALL".to_owned()])
        } else {
            set
        }
    }
    let (add, drop) = (normalize(add), normalize(drop));
    let cap_drop = drop
        .iter()
        .filter(|c| !add.contains(*c) && *c != "RESET")
        .cloned()
        .collect();
    let cap_add = add.into_iter().filter(|c| c != "RESET").collect();
    (cap_add, cap_drop)
}

/// `healthcheck:` as the daemon's health config; `disable: true` is the test `NONE`.
fn convert_healthcheck(service: &Service) -> Option<HealthConfig> {
    let healthcheck = service.healthcheck.as_ref()?;
    if healthcheck.disable == Some(true) {
        return Some(HealthConfig {
            test: Some(vec!["NONE".to_owned()]),
            ..HealthConfig::default()
        });
    }
    let nanos = |d: &Option<GoDuration>| d.as_ref().map(|d| d.nanos()).and_then(non_zero);
    Some(HealthConfig {
        test: healthcheck.test.as_ref().map(|test| match test {
            StringOrList::One(shell) => {
                vec!["CMD-SHELL".to_owned(), shell.clone()]
            }
            StringOrList::Many(list) => list.clone(),
        }),
        interval: nanos(&healthcheck.interval),
        timeout: nanos(&healthcheck.timeout),
        retries: healthcheck
            .retries
            .and_then(|r| i64::try_from(r).ok())
            .and_then(non_zero),
        start_period: nanos(&healthcheck.start_period),
        start_interval: nanos(&healthcheck.start_interval),
    })
}

/// `deploy.restart_policy`, else the legacy `restart:` key, as the CLI does.
fn convert_restart_policy(service: &Service) -> Result<Option<TaskSpecRestartPolicy>, String> {
    if let Some(policy) = service
        .deploy
        .as_ref()
        .and_then(|d| d.restart_policy.as_ref())
    {
        return Ok(Some(TaskSpecRestartPolicy {
            condition: policy.condition.map(|c| c.as_str().parse()).transpose()?,
            delay: policy.delay.as_ref().map(|d| d.nanos()),
            max_attempts: policy.max_attempts.and_then(|m| i64::try_from(m).ok()),
            window: policy.window.as_ref().map(|d| d.nanos()),
        }));
    }
    let Some(restart) = &service.restart else {
        return Ok(None);
    };
    let (name, count) = parse_restart(restart)?;
    let condition = match name {
        "always" | "unless-stopped" => "any",
        "on-failure" => "on-failure",
        _ => return Ok(None),
    };
    Ok(Some(TaskSpecRestartPolicy {
        condition: Some(condition.parse()?),
        max_attempts: (name == "on-failure")
            .then(|| i64::try_from(count.unwrap_or(0)).unwrap_or(i64::MAX)),
        ..TaskSpecRestartPolicy::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::convert::fixtures::{EVERYTHING, container, convert, service, task};

    #[test]
    fn capabilities_follow_the_cli_rules() {
        let caps = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            effective_capabilities(
                &caps(&["net_admin", "CAP_SYS_TIME"]),
                &caps(&["net_admin", "chown"])
            ),
            (
                caps(&["CAP_NET_ADMIN", "CAP_SYS_TIME"]),
                caps(&["CAP_CHOWN"])
            )
        );
        assert_eq!(
            effective_capabilities(&caps(&["all", "chown"]), &caps(&["RESET"])),
            (caps(&["ALL"]), caps(&[]))
        );
    }

    #[test]
    fn a_variable_listed_twice_keeps_its_last_value() {
        let objects =
            convert("services:\n  a:\n    image: x\n    environment: [A=0, B, A.B=1, A=1]\n");
        assert_eq!(
            container(service(&objects, "a")).env,
            Some(vec!["A.B=1".to_owned(), "A=1".to_owned(), "B".to_owned()])
        );
    }

    #[test]
    fn legacy_restart_values_map_to_swarm_conditions() {
        let cases = [
            ("always", Some(("any", None))),
            ("unless-stopped", Some(("any", None))),
            ("on-failure", Some(("on-failure", Some(0)))),
            ("on-failure:5", Some(("on-failure", Some(5)))),
            ("no", None),
        ];
        for (restart, expected) in cases {
            let objects = convert(&format!(
                "services:\n  a:\n    image: x\n    restart: \"{restart}\"\n"
            ));
            let policy = task(service(&objects, "a")).restart_policy.clone();
            let got = policy.map(|p| (p.condition.unwrap().to_string(), p.max_attempts));
            assert_eq!(got, expected.map(|(c, m)| (c.to_owned(), m)), "{restart}");
        }
    }

    #[test]
    fn everything_service_and_container_convert_as_the_cli_does() {
        let objects = convert(EVERYTHING);
        let web = service(&objects, "web");
        let c = container(web);
        assert_eq!(c.command, Some(vec!["/bin/sh".to_owned(), "-c".to_owned()]));
        assert_eq!(
            c.env,
            Some(vec![
                "DEBUG=true".to_owned(),
                "EMPTY".to_owned(),
                "PORT=8080".to_owned(),
                "TZ=UTC".to_owned(),
            ])
        );
        let labels = c.labels.as_ref().unwrap();
        assert_eq!(labels["com.example.b"], "");
        assert_eq!(
            c.hosts,
            Some(vec![
                "162.242.195.82 somehost".to_owned(),
                "50.31.209.229 otherhost".to_owned()
            ])
        );
        assert_eq!(c.capability_add, Some(vec!["CAP_NET_ADMIN".to_owned()]));
        assert_eq!(c.capability_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(c.stop_grace_period, Some(20_000_000_000));
        assert_eq!(
            (c.init, c.read_only, c.tty, c.open_stdin),
            (Some(true), Some(true), Some(true), Some(true))
        );
        assert_eq!(c.sysctls.as_ref().unwrap()["net.core.somaxconn"], "1024");
        let ulimits = c.ulimits.as_ref().unwrap();
        assert_eq!(ulimits[0].name.as_deref(), Some("nofile"));
        assert_eq!(
            (ulimits[0].soft, ulimits[0].hard),
            (Some(20000), Some(40000))
        );
        assert_eq!(
            (ulimits[1].soft, ulimits[1].hard),
            (Some(65535), Some(65535))
        );
        let dns = c.dns_config.as_ref().unwrap();
        assert_eq!(dns.nameservers, Some(vec!["8.8.8.8".to_owned()]));
        let health = c.health_check.as_ref().unwrap();
        assert_eq!(health.test, Some(vec!["CMD".to_owned(), "true".to_owned()]));
        assert_eq!(health.interval, Some(10_000_000_000));
        assert_eq!(health.timeout, Some(90_000_000_000));
        assert_eq!(health.start_period, Some(1_500_000_000));
        assert_eq!(health.retries, Some(3));

        let t = task(web);
        let restart = t.restart_policy.as_ref().unwrap();
        assert_eq!(
            (restart.delay, restart.max_attempts, restart.window),
            (Some(5_000_000_000), Some(3), Some(120_000_000_000))
        );
        let log = t.log_driver.as_ref().unwrap();
        assert_eq!(log.name.as_deref(), Some("json-file"));
        assert_eq!(log.options.as_ref().unwrap()["max-file"], "3");

        let job = service(&objects, "job");
        let restart = task(job).restart_policy.as_ref().unwrap();
        assert_eq!(
            (restart.condition, restart.max_attempts),
            (
                Some(bollard::models::TaskSpecRestartPolicyConditionEnum::ON_FAILURE),
                Some(3)
            )
        );
    }
}
