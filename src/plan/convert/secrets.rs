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

/// A service's config references, by swarm name (the controller fills in the IDs): its
/// file targets, and the runtime reference a `credential_spec: {config: KEY}` needs
/// (returned with its swarm name, which the credential spec names until renamed to an ID).
pub(super) fn convert_config_refs(
    stack: &str,
    compose: &ComposeFile,
    refs: &[FileRef],
    credential_config: Option<&String>,
) -> Result<(Vec<TaskSpecContainerSpecConfigs>, Option<String>), String> {
    let targets = file_targets(stack, "config", &compose.configs, refs)?;
    let mut configs: Vec<_> = targets
        .into_iter()
        .map(|(name, file)| TaskSpecContainerSpecConfigs {
            file: Some(config_file(file)),
            runtime: None,
            config_id: None,
            config_name: Some(name),
        })
        .collect();
    let credential = credential_config
        .map(|key| {
            let def = compose.configs.get(key).ok_or_else(|| {
                format!("invalid credential spec: spec specifies config {key}, but no such config can be found")
            })?;
            Ok::<_, String>(object_name(stack, key, def))
        })
        .transpose()?;
    if let Some(name) = &credential {
        // A runtime config is not mounted: the container runtime reads it.
        configs.push(TaskSpecContainerSpecConfigs {
            file: None,
            runtime: Some(Default::default()),
            config_id: None,
            config_name: Some(name.clone()),
        });
        // The CLI sorts every reference by name, runtime ones included.
        configs.sort_by(|a, b| a.config_name.cmp(&b.config_name));
    }
    Ok((configs, credential))
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
    use crate::plan::convert::rename_config_refs;

    #[test]
    fn a_credential_spec_config_is_a_runtime_reference_renamed_to_its_id() {
        let mut objects = convert(
            "services:\n  web:\n    image: x\n    configs: [z_conf]\n    credential_spec: {config: spec}\nconfigs:\n  spec: {content: '{}'}\n  z_conf: {external: true}\n",
        );
        let c = container(service(&objects, "web"));
        let configs = c.configs.as_ref().unwrap();
        let names: Vec<_> = configs.iter().map(|r| r.config_name.as_deref()).collect();
        assert_eq!(names, [Some("demo_spec"), Some("z_conf")], "sorted by name");
        assert_eq!(configs[0].runtime, Some(Default::default()));
        assert_eq!(configs[0].file, None);
        let credential = |objects: &crate::plan::convert::StackObjects| {
            container(service(objects, "web"))
                .privileges
                .as_ref()
                .and_then(|p| p.credential_spec.clone())
                .unwrap()
        };
        assert_eq!(credential(&objects).config.as_deref(), Some("demo_spec"));
        let map = [(
            "demo_spec".to_owned(),
            ("demo_spec.v1".to_owned(), "cfg-id".to_owned()),
        )]
        .into_iter()
        .collect();
        rename_config_refs(&mut objects.services[0].spec, &map);
        assert_eq!(credential(&objects).config.as_deref(), Some("cfg-id"));
    }

    #[test]
    fn only_external_objects_a_service_uses_must_exist() {
        let objects = convert(
            "services:\n  web:\n    image: x\n    secrets: [used]\n    configs: [c_used]\nsecrets:\n  used: {external: true}\n  unused: {external: true}\nconfigs:\n  c_used: {external: true}\n  c_unused: {external: true, name: other}\n",
        );
        assert_eq!(objects.externals.secrets, ["used"]);
        assert_eq!(objects.externals.configs, ["c_used"]);
    }

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
