//! Cross-field rules of a compose file, as `docker stack deploy` enforces them.

use std::sync::LazyLock;

use regex::Regex;

use super::{ComposeFile, DeployMode, FailureAction, Service, TopLevel, VolumeEntry};
use crate::api::FieldError;

static OBJECT_KEY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9._-]+$").expect("static regex"));
static ULIMIT_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z]+$").expect("static regex"));

/// Collects errors with paths under one prefix.
struct Errors<'a> {
    base: &'a str,
    found: Vec<FieldError>,
}

impl Errors<'_> {
    fn push(&mut self, path: impl AsRef<str>, message: impl Into<String>) {
        let path = path.as_ref();
        let full = match (self.base.is_empty(), path.is_empty()) {
            (true, _) => path.to_owned(),
            (false, true) => self.base.to_owned(),
            (false, false) => format!("{}.{path}", self.base),
        };
        self.found.push(FieldError::new(full, message));
    }
}

pub(super) fn validate(compose: &ComposeFile, base_path: &str) -> Vec<FieldError> {
    let mut errors = Errors {
        base: base_path,
        found: Vec::new(),
    };
    if let Some(version) = &compose.version
        && !(version == "3" || version.starts_with("3."))
    {
        errors.push(
            "version",
            format!("unsupported compose file version {version:?}: docker stack deploy takes 3.x"),
        );
    }
    for (kind, keys) in [
        ("services", compose.services.keys().collect::<Vec<_>>()),
        ("networks", compose.networks.keys().collect()),
        ("volumes", compose.volumes.keys().collect()),
        ("secrets", compose.secrets.keys().collect()),
        ("configs", compose.configs.keys().collect()),
    ] {
        for key in keys {
            if !OBJECT_KEY.is_match(key) {
                errors.push(
                    format!("{kind}.{key}"),
                    "invalid name: use letters, digits, '.', '_' and '-'",
                );
            }
        }
    }
    check_top_level(compose, &mut errors);
    for (name, service) in &compose.services {
        check_service(compose, name, service, &mut errors);
    }
    errors.found
}

fn check_external(path: &str, kind: &str, def: &impl TopLevel, errors: &mut Errors<'_>) {
    if let Some(external) = def.external()
        && external.legacy_name().is_some()
        && def.name().is_some()
    {
        errors.push(
            format!("{path}.external.name"),
            format!("{kind}.external.name and {kind}.name conflict; only use {kind}.name"),
        );
    }
}

fn check_top_level(compose: &ComposeFile, errors: &mut Errors<'_>) {
    for (key, network) in &compose.networks {
        let path = format!("networks.{key}");
        check_external(&path, "network", network, errors);
    }
    for (key, volume) in &compose.volumes {
        let path = format!("volumes.{key}");
        check_external(&path, "volume", volume, errors);
        if volume.is_external() {
            for (field, set) in [
                ("driver", volume.driver.is_some()),
                ("driver_opts", volume.driver_opts.is_some()),
                ("labels", volume.labels.is_some()),
            ] {
                if set {
                    errors.push(
                        format!("{path}.{field}"),
                        format!("conflicting parameters \"external\" and {field:?} specified for volume {key:?}"),
                    );
                }
            }
        }
    }
    for (key, secret) in &compose.secrets {
        let path = format!("secrets.{key}");
        check_external(&path, "secret", secret, errors);
        let external = secret.is_external();
        if secret.driver.is_some() && secret.file.is_some() {
            errors.push(
                format!("{path}.driver"),
                "secret.driver and secret.file conflict; only use secret.driver",
            );
        }
        if !external
            && secret.driver.is_none()
            && secret.file.is_none()
            && secret.store_key.is_none()
        {
            errors.push(&path, "a secret needs one of file, external or driver");
        }
    }
    for (key, config) in &compose.configs {
        let path = format!("configs.{key}");
        check_external(&path, "config", config, errors);
        let external = config.is_external();
        if config.file.is_some() && config.content.is_some() {
            errors.push(&path, "a config takes file or content, not both");
        }
        if !external && config.file.is_none() && config.content.is_none() {
            errors.push(&path, "a config needs one of file, content or external");
        }
    }
}

fn check_service(compose: &ComposeFile, name: &str, service: &Service, errors: &mut Errors<'_>) {
    let path = format!("services.{name}");
    match service.image.as_deref() {
        None | Some("") => errors.push(
            format!("{path}.image"),
            format!("invalid image reference for service {name}: no image specified"),
        ),
        Some(image) if image.chars().any(char::is_whitespace) || image != image.trim() => errors
            .push(
                format!("{path}.image"),
                format!("invalid image reference {image:?}"),
            ),
        Some(_) => {}
    }
    if service.env_file.is_some() {
        errors.push(
            format!("{path}.env_file"),
            "env_file is read by `swarmkeeper apply`, which stores it merged into environment; \
             a record written without apply lists the variables under environment",
        );
    }
    for (field, command) in [
        ("command", &service.command),
        ("entrypoint", &service.entrypoint),
    ] {
        if let Some(command) = command
            && let Err(message) = command.to_args()
        {
            errors.push(format!("{path}.{field}"), message);
        }
    }
    check_references(compose, name, service, &path, errors);
    for (i, port) in service.ports.iter().enumerate() {
        if let Err(message) = port.expand() {
            errors.push(format!("{path}.ports[{i}]"), message);
        }
    }
    for (i, volume) in service.volumes.iter().enumerate() {
        check_volume(compose, volume, &format!("{path}.volumes[{i}]"), errors);
    }
    if let Some(healthcheck) = &service.healthcheck
        && healthcheck.disable == Some(true)
        && healthcheck.test.is_some()
    {
        errors.push(
            format!("{path}.healthcheck"),
            "test and disable can't be set at the same time",
        );
    }
    for limit in service.ulimits.keys() {
        if !ULIMIT_NAME.is_match(limit) {
            errors.push(format!("{path}.ulimits.{limit}"), "invalid ulimit name");
        }
    }
    if let Some(hosts) = &service.extra_hosts
        && let Err((i, entry)) = hosts.host_entries()
    {
        errors.push(
            format!("{path}.extra_hosts[{i}]"),
            format!("invalid extra host {entry:?}: expected HOST:IP or HOST=IP"),
        );
    }
    if let Some(restart) = &service.restart
        && let Err(message) = parse_restart(restart)
    {
        errors.push(format!("{path}.restart"), message);
    }
    if let Some(spec) = &service.credential_spec {
        let set = [&spec.config, &spec.file, &spec.registry]
            .iter()
            .filter(|v| v.is_some())
            .count();
        if set > 1 {
            errors.push(
                format!("{path}.credential_spec"),
                "invalid credential spec: set only one of config, file and registry",
            );
        }
        if let Some(config) = &spec.config
            && !compose.configs.contains_key(config)
        {
            errors.push(
                format!("{path}.credential_spec.config"),
                format!("service {name:?} refers to undefined config {config:?}: invalid compose project"),
            );
        }
    }
    if let Some(deploy) = &service.deploy {
        let global = matches!(
            deploy.mode,
            Some(DeployMode::Global | DeployMode::GlobalJob)
        );
        if global && deploy.replicas.is_some() {
            errors.push(
                format!("{path}.deploy.replicas"),
                "replicas can only be used with replicated or replicated-job mode",
            );
        }
        if let Some(rollback) = &deploy.rollback_config
            && rollback.failure_action == Some(FailureAction::Rollback)
        {
            errors.push(
                format!("{path}.deploy.rollback_config.failure_action"),
                "a rollback's failure_action is continue or pause",
            );
        }
        for (field, config) in [
            ("update_config", &deploy.update_config),
            ("rollback_config", &deploy.rollback_config),
        ] {
            if let Some(ratio) = config.as_ref().and_then(|c| c.max_failure_ratio)
                && !(0.0..=1.0).contains(&ratio)
            {
                errors.push(
                    format!("{path}.deploy.{field}.max_failure_ratio"),
                    "must be between 0 and 1",
                );
            }
        }
    }
}

/// Parses the legacy `restart:` value: `no`, `always`, `unless-stopped`, `on-failure[:N]`.
///
/// # Errors
/// A message naming the unknown policy.
pub fn parse_restart(restart: &str) -> Result<(&str, Option<u64>), String> {
    let (name, count) = match restart.split_once(':') {
        Some((name, count)) => (
            name,
            Some(
                count
                    .parse::<u64>()
                    .map_err(|_| format!("invalid restart policy count {count:?}"))?,
            ),
        ),
        None => (restart, None),
    };
    match name {
        "" | "no" | "always" | "unless-stopped" if count.is_none() => Ok((name, None)),
        "on-failure" => Ok((name, count)),
        _ => Err(format!(
            "invalid restart policy {restart:?}: no, always, on-failure[:N] or unless-stopped"
        )),
    }
}

fn check_references(
    compose: &ComposeFile,
    name: &str,
    service: &Service,
    path: &str,
    errors: &mut Errors<'_>,
) {
    if let Some(networks) = &service.networks {
        let listed = matches!(networks, super::ServiceNetworks::List(_));
        for (i, (network, _)) in networks.entries().into_iter().enumerate() {
            if network != "default" && !compose.networks.contains_key(&network) {
                let at = if listed {
                    format!("{path}.networks[{i}]")
                } else {
                    format!("{path}.networks.{network}")
                };
                errors.push(
                    at,
                    format!("service {name:?} refers to undefined network {network:?}: invalid compose project"),
                );
            }
        }
    }
    for (field, refs, defined) in [
        (
            "secrets",
            &service.secrets,
            compose.secrets.keys().collect::<Vec<_>>(),
        ),
        (
            "configs",
            &service.configs,
            compose.configs.keys().collect(),
        ),
    ] {
        let kind = &field[..field.len() - 1];
        for (i, reference) in refs.iter().enumerate() {
            let long = reference.to_long();
            if !defined.contains(&&long.source) {
                errors.push(
                    format!("{path}.{field}[{i}]"),
                    format!(
                        "service {name:?} refers to undefined {kind} {:?}: invalid compose project",
                        long.source
                    ),
                );
            }
        }
    }
}

fn check_volume(compose: &ComposeFile, volume: &VolumeEntry, path: &str, errors: &mut Errors<'_>) {
    let mount = match volume.to_mount() {
        Ok(mount) => mount,
        Err(message) => return errors.push(path, message),
    };
    if mount.target.as_deref().unwrap_or("").is_empty() {
        errors.push(path, "a mount needs a target");
    }
    let source = mount.source.as_deref().unwrap_or("");
    let conflicts: &[(&str, bool)] = &[
        ("bind", mount.bind.is_some()),
        ("volume", mount.volume.is_some()),
        ("tmpfs", mount.tmpfs.is_some()),
    ];
    let allowed: &[&str] = match mount.kind.as_str() {
        "volume" => {
            if !source.is_empty() && !compose.volumes.contains_key(source) {
                errors.push(
                    path,
                    format!("undefined volume {source:?}: define it under the top-level volumes"),
                );
            }
            &["volume"]
        }
        "bind" => {
            if source.is_empty() {
                errors.push(
                    path,
                    "invalid mount config for type \"bind\": field Source must not be empty",
                );
            }
            &["bind"]
        }
        "tmpfs" => {
            if !source.is_empty() {
                errors.push(path, "invalid tmpfs source, source must be empty");
            }
            &["tmpfs"]
        }
        "npipe" => &["bind"],
        other => {
            errors.push(
                format!("{path}.type"),
                format!("invalid mount type {other:?}: volume, bind, tmpfs or npipe"),
            );
            return;
        }
    };
    for (option, set) in conflicts {
        if *set && !allowed.contains(option) {
            errors.push(
                format!("{path}.{option}"),
                format!("{option} options are incompatible with type {}", mount.kind),
            );
        }
    }
}
