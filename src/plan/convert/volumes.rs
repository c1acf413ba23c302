//! Service mounts: each `volumes:` entry of a service as a swarm mount, a stack volume scoped
//! to the stack and labelled for the daemon to create, as docker/cli's `convert/volume.go`.

use bollard::models::{
    Mount, MountBindOptions, MountTmpfsOptions, MountVolumeOptions, MountVolumeOptionsDriverConfig,
};

use super::{non_empty_str, non_zero, object_name, stack_labels, to_hash_map};
use crate::api::compose::{ComposeFile, TopLevel, VolumeEntry};

/// One `volumes:` entry as a mount: a named volume must be defined in the file; an external
/// one is used by its name alone, without labels or driver.
pub(super) fn convert_mount(
    stack: &str,
    compose: &ComposeFile,
    entry: &VolumeEntry,
) -> Result<Mount, String> {
    let volume = entry.to_mount()?;
    let source = non_empty_str(volume.source.as_ref());
    let mut mount = Mount {
        target: volume.target.clone(),
        source: source.clone(),
        typ: Some(
            volume
                .kind
                .parse()
                .map_err(|()| format!("invalid mount type {:?}", volume.kind))?,
        ),
        read_only: volume.read_only.filter(|r| *r),
        consistency: non_empty_str(volume.consistency.as_ref()),
        ..Mount::default()
    };
    let propagation = volume.bind.as_ref().map(|b| MountBindOptions {
        propagation: b.propagation.as_ref().and_then(|p| p.parse().ok()),
        ..MountBindOptions::default()
    });
    match volume.kind.as_str() {
        "volume" => {
            let Some(source) = source else {
                // An anonymous volume: nothing to scope.
                return Ok(mount);
            };
            let def = compose
                .volumes
                .get(&source)
                .ok_or_else(|| format!("undefined volume {source:?}"))?;
            mount.source = Some(object_name(stack, &source, def));
            let mut options = MountVolumeOptions {
                no_copy: volume.volume.as_ref().and_then(|v| v.nocopy).filter(|n| *n),
                subpath: volume.volume.as_ref().and_then(|v| v.subpath.clone()),
                ..MountVolumeOptions::default()
            };
            if !def.is_external() {
                options.labels = Some(stack_labels(stack, def.labels.as_ref()));
                if def.driver.is_some() || def.driver_opts.is_some() {
                    options.driver_config = Some(MountVolumeOptionsDriverConfig {
                        name: def.driver.clone(),
                        options: def
                            .driver_opts
                            .as_ref()
                            .map(|o| to_hash_map(o.to_string_map())),
                    });
                }
            }
            mount.volume_options = Some(options);
        }
        "bind" | "npipe" => mount.bind_options = propagation,
        "tmpfs" => {
            mount.tmpfs_options = volume.tmpfs.as_ref().map(|t| MountTmpfsOptions {
                size_bytes: t.size.as_ref().map(|s| s.bytes()).and_then(non_zero),
                ..MountTmpfsOptions::default()
            });
        }
        other => return Err(format!("invalid mount type {other:?}")),
    }
    Ok(mount)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::convert::fixtures::{EVERYTHING, container, convert, service};

    #[test]
    fn external_and_named_volumes() {
        let objects = convert(
            "services:\n  a:\n    image: x\n    volumes: [ext:/e, named:/n, /anon]\nvolumes:\n  ext: {external: true}\n  named: {name: global-data}\n",
        );
        let mounts = container(service(&objects, "a")).mounts.clone().unwrap();
        assert_eq!(mounts[0].source.as_deref(), Some("ext"));
        assert_eq!(
            mounts[0].volume_options,
            Some(MountVolumeOptions::default())
        );
        assert_eq!(mounts[1].source.as_deref(), Some("global-data"));
        assert!(mounts[1].volume_options.as_ref().unwrap().labels.is_some());
        assert_eq!(
            (mounts[2].source.clone(), mounts[2].volume_options.clone()),
            (None, None)
        );
    }

    #[test]
    fn everything_mounts_convert_as_the_cli_does() {
        let objects = convert(EVERYTHING);
        let c = container(service(&objects, "web"));
        let mounts = c.mounts.as_ref().unwrap();
        assert_eq!(mounts[0].read_only, Some(true));
        assert_eq!(
            mounts[2].volume_options.as_ref().unwrap().no_copy,
            Some(true)
        );
        assert_eq!(
            mounts[3].bind_options.as_ref().unwrap().propagation,
            Some(bollard::models::MountBindOptionsPropagationEnum::RSHARED)
        );
        assert_eq!(
            mounts[4].tmpfs_options.as_ref().unwrap().size_bytes,
            Some(1_048_576)
        );
        let driver = mounts[0]
            .volume_options
            .as_ref()
            .unwrap()
            .driver_config
            .as_ref()
            .unwrap();
        assert_eq!(driver.name.as_deref(), Some("local"));
    }
}
