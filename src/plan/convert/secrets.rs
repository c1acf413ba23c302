//! Secrets and configs: the stack's own objects (external ones only named) and the file
//! targets services mount them at, as docker/cli's `Secrets` and `Configs` in
//! `convert/compose.go` and `convertServiceSecrets`/`convertServiceConfigObjs` in
//! `convert/service.go`.

use bollard::models::{
    Driver, TaskSpecContainerSpecConfigs, TaskSpecContainerSpecFile, TaskSpecContainerSpecFile1,
    TaskSpecContainerSpecSecrets,
};
use indexmap::IndexMap;

use super::{
    ConfigObject, ConvertError, Externals, SecretObject, SecretSource, non_empty_str, object_name,
    own_object_name, stack_labels, to_hash_map,
};
use crate::api::SecretValue;
use crate::api::compose::{ComposeFile, FileRef, TopLevel};

/// The stack's own secrets, with where each one's value comes from; external ones are only
/// named in `externals`.
pub(super) fn convert_secrets(
    stack: &str,
    compose: &ComposeFile,
    externals: &mut Externals,
) -> Result<Vec<SecretObject>, ConvertError> {
    let mut secrets = Vec::new();
    for (key, def) in &compose.secrets {
        let Some(name) = own_object_name(stack, key, def, &mut externals.secrets) else {
            continue;
        };
        let driver = def.driver.as_ref().map(|driver| Driver {
            name: driver.clone(),
            options: def
                .driver_opts
                .as_ref()
                .map(|o| to_hash_map(o.to_string_map())),
        });
        let source = match (&def.store_key, &driver) {
            (Some(store_key), _) => SecretSource::StoreKey(store_key.clone()),
            // A driver secret's value comes from the plugin: the CLI sends empty data.
            (None, Some(_)) => SecretSource::Content(SecretValue::new(Vec::new())),
            (None, None) => {
                return Err(ConvertError::ConvertSecret {
                    key: key.clone(),
                    message: "no value: `file:` must be loaded by apply into x-swarmkeeper-secret"
                        .to_owned(),
                });
            }
        };
        secrets.push(SecretObject {
            key: key.clone(),
            name,
            labels: stack_labels(stack, def.labels.as_ref()),
            source,
            driver,
            templating: templating(def.template_driver.as_ref()),
        });
    }
    Ok(secrets)
}

fn templating(driver: Option<&String>) -> Option<Driver> {
    non_empty_str(driver).map(|name| Driver {
        name,
        options: None,
    })
}

/// The stack's own configs, whose content the loader has inlined; external ones are only
/// named in `externals`.
pub(super) fn convert_configs(
    stack: &str,
    compose: &ComposeFile,
    externals: &mut Externals,
) -> Result<Vec<ConfigObject>, ConvertError> {
    let mut configs = Vec::new();
    for (key, def) in &compose.configs {
        let Some(name) = own_object_name(stack, key, def, &mut externals.configs) else {
            continue;
        };
        let content = def
            .content
            .as_ref()
            .ok_or_else(|| ConvertError::ConvertConfig {
                key: key.clone(),
                message: "no content: `file:` must be loaded by apply into content".to_owned(),
            })?;
        configs.push(ConfigObject {
            key: key.clone(),
            name,
            labels: stack_labels(stack, def.labels.as_ref()),
            source: SecretSource::Content(SecretValue::from(content.as_str())),
            templating: templating(def.template_driver.as_ref()),
        });
    }
    Ok(configs)
}

/// The file targets of a service's references to `defs` (its secrets or configs), with the
/// swarm name of the object each one mounts, sorted by that name.
fn file_targets<D: TopLevel>(
    stack: &str,
    kind: &str,
    defs: &IndexMap<String, D>,
    refs: &[FileRef],
) -> Result<Vec<(String, TaskSpecContainerSpecFile)>, String> {
    let mut targets = refs
        .iter()
        .map(|reference| {
            let long = reference.to_long();
            let def = defs
                .get(&long.source)
                .ok_or_else(|| format!("undefined {kind} {:?}", long.source))?;
            let file = TaskSpecContainerSpecFile {
                name: Some(long.target.clone().unwrap_or_else(|| long.source.clone())),
                uid: Some(long.uid.clone().unwrap_or_else(|| "0".to_owned())),
                gid: Some(long.gid.clone().unwrap_or_else(|| "0".to_owned())),
                mode: Some(long.mode.unwrap_or(0o444)),
            };
            Ok((object_name(stack, &long.source, def), file))
        })
        .collect::<Result<Vec<_>, String>>()?;
    // Sorted so that a reordering in the file does not restart the service.
    targets.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(targets)
}

/// A service's secret references, by swarm name (the controller fills in the IDs).
pub(super) fn convert_secret_refs(
    stack: &str,
    compose: &ComposeFile,
    refs: &[FileRef],
) -> Result<Vec<TaskSpecContainerSpecSecrets>, String> {
    let targets = file_targets(stack, "secret", &compose.secrets, refs)?;
    Ok(targets
        .into_iter()
        .map(|(name, file)| TaskSpecContainerSpecSecrets {
            file: Some(file),
            secret_id: None,
            secret_name: Some(name),
        })
        .collect())
}

/// A service's config references, by swarm name (the controller fills in the IDs).
pub(super) fn convert_config_refs(
    stack: &str,
    compose: &ComposeFile,
    refs: &[FileRef],
) -> Result<Vec<TaskSpecContainerSpecConfigs>, String> {
    let targets = file_targets(stack, "config", &compose.configs, refs)?;
    Ok(targets
        .into_iter()
        .map(|(name, file)| TaskSpecContainerSpecConfigs {
            file: Some(config_file(file)),
            runtime: None,
            config_id: None,
            config_name: Some(name),
        })
        .collect())
}

/// A config's file target: bollard's copy of the secret's type, field for field.
fn config_file(file: TaskSpecContainerSpecFile) -> TaskSpecContainerSpecFile1 {
    let TaskSpecContainerSpecFile {
        name,
        uid,
        gid,
        mode,
    } = file;
    TaskSpecContainerSpecFile1 {
        name,
        uid,
        gid,
        mode,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::convert::fixtures::{EVERYTHING, container, convert, service};

    #[test]
    fn everything_secrets_and_configs_convert_as_the_cli_does() {
        let objects = convert(EVERYTHING);
        let c = container(service(&objects, "web"));
        let secrets = c.secrets.as_ref().unwrap();
        assert_eq!(secrets.len(), 2);
        let custom = secrets
            .iter()
            .find(|s| s.file.as_ref().unwrap().name.as_deref() == Some("/etc/token"))
            .unwrap();
        assert_eq!(custom.secret_name.as_deref(), Some("demo_token"));
        let file = custom.file.as_ref().unwrap();
        assert_eq!((file.uid.as_deref(), file.mode), (Some("100"), Some(0o400)));
        let configs = c.configs.as_ref().unwrap();
        assert_eq!(configs[0].config_name.as_deref(), Some("demo_app_conf"));

        assert_eq!(
            objects.secrets[0].source,
            SecretSource::StoreKey("stacks/demo/token".to_owned())
        );
        assert_eq!(
            objects.configs[0].source,
            SecretSource::Content(SecretValue::from("listen 80\n"))
        );
        assert_eq!(
            objects.configs[0].templating.as_ref().unwrap().name,
            "golang"
        );
    }
}
