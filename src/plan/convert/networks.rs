//! Networks: the stack networks its services join (external ones only named) and each
//! service's attachments with their aliases, as docker/cli's `Networks` in `convert/compose.go`
//! and `convertServiceNetworks` in `convert/service.go`.

use std::collections::BTreeSet;

use bollard::models::{Ipam, IpamConfig, NetworkAttachmentConfig, NetworkCreateRequest};

use super::{
    Externals, NetworkObject, non_empty, non_empty_map, non_empty_str, object_name,
    own_object_name, scope, stack_labels, to_hash_map,
};
use crate::api::compose::{ComposeFile, Service, ServiceNetwork};

/// The network services without `networks:` join, created as `<stack>_default`.
const DEFAULT_NETWORK: &str = "default";
/// The driver `docker stack deploy` creates stack networks with when none is named.
const DEFAULT_NETWORK_DRIVER: &str = "overlay";

/// The network keys a service joins (`default` when it names none).
fn service_network_keys(service: &Service) -> Vec<String> {
    let keys: Vec<String> = service
        .networks
        .as_ref()
        .map(|n| n.entries().into_iter().map(|(k, _)| k).collect())
        .unwrap_or_default();
    if keys.is_empty() {
        vec![DEFAULT_NETWORK.to_owned()]
    } else {
        keys
    }
}

/// Only the networks some service joins are created, as the CLI does.
pub(super) fn convert_networks(
    stack: &str,
    compose: &ComposeFile,
    externals: &mut Externals,
) -> Vec<NetworkObject> {
    let used: BTreeSet<String> = compose
        .services
        .values()
        .flat_map(service_network_keys)
        .collect();
    let mut networks = Vec::new();
    for key in used {
        let def = compose.networks.get(&key).cloned().unwrap_or_default();
        let Some(name) = own_object_name(stack, &key, &def, &mut externals.networks) else {
            continue;
        };
        let ipam = def
            .ipam
            .as_ref()
            .filter(|ipam| ipam.driver.is_some() || !ipam.config.is_empty())
            .map(|ipam| Ipam {
                driver: ipam.driver.clone(),
                config: non_empty(
                    ipam.config
                        .iter()
                        .map(|pool| IpamConfig {
                            subnet: pool.subnet.clone(),
                            ..IpamConfig::default()
                        })
                        .collect(),
                ),
                options: None,
            });
        let spec = NetworkCreateRequest {
            name: name.clone(),
            driver: Some(
                non_empty_str(def.driver.as_ref())
                    .unwrap_or_else(|| DEFAULT_NETWORK_DRIVER.to_owned()),
            ),
            internal: Some(def.internal.unwrap_or(false)),
            attachable: Some(def.attachable.unwrap_or(false)),
            ipam,
            options: def
                .driver_opts
                .as_ref()
                .map(|opts| to_hash_map(opts.to_string_map())),
            labels: Some(stack_labels(stack, def.labels.as_ref())),
            ..NetworkCreateRequest::default()
        };
        networks.push(NetworkObject { key, name, spec });
    }
    networks
}

/// The networks a service attaches to, sorted by target.
pub(super) fn convert_service_networks(
    stack: &str,
    compose: &ComposeFile,
    key: &str,
    service: &Service,
) -> Result<Vec<NetworkAttachmentConfig>, String> {
    let entries = service
        .networks
        .as_ref()
        .map(|n| n.entries())
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| vec![(DEFAULT_NETWORK.to_owned(), ServiceNetwork::default())]);
    let mut attachments = Vec::new();
    for (network, options) in entries {
        let def = compose.networks.get(&network);
        if def.is_none() && network != DEFAULT_NETWORK {
            return Err(format!("undefined network {network:?}"));
        }
        let target = def.map_or_else(
            || scope(stack, &network),
            |d| object_name(stack, &network, d),
        );
        let mut aliases = options.aliases.clone();
        // Docker's built-in networks take no aliases; every other network gets the
        // service's key as one, so `tasks.<key>` and `<key>` resolve.
        if !["default", "bridge", "host", "none"].contains(&target.as_str())
            && !target.starts_with("container:")
        {
            aliases.push(key.to_owned());
        }
        attachments.push(NetworkAttachmentConfig {
            target: Some(target),
            aliases: non_empty(aliases),
            driver_opts: options
                .driver_opts
                .as_ref()
                .map(|o| to_hash_map(o.to_string_map()))
                .and_then(non_empty_map),
        });
    }
    attachments.sort_by(|a, b| a.target.cmp(&b.target));
    Ok(attachments)
}

#[cfg(test)]
mod tests {
    use crate::plan::convert::fixtures::{EVERYTHING, convert, service, task};

    #[test]
    fn services_without_networks_join_the_default_network() {
        let objects = convert("services:\n  a:\n    image: x\n");
        assert_eq!(objects.networks.len(), 1);
        assert_eq!(objects.networks[0].name, "demo_default");
        let attachments = task(service(&objects, "a")).networks.clone().unwrap();
        assert_eq!(attachments[0].target.as_deref(), Some("demo_default"));
        assert_eq!(attachments[0].aliases, Some(vec!["a".to_owned()]));
    }

    #[test]
    fn everything_networks_convert_as_the_cli_does() {
        let objects = convert(EVERYTHING);
        let nets = task(service(&objects, "web")).networks.as_ref().unwrap();
        assert_eq!(nets[0].target.as_deref(), Some("demo_front"));
        assert_eq!(
            nets[0].aliases,
            Some(vec!["www".to_owned(), "web".to_owned()])
        );
        assert_eq!(nets[1].target.as_deref(), Some("shared-back"));

        let front = objects.networks.iter().find(|n| n.key == "front").unwrap();
        assert_eq!(front.spec.attachable, Some(true));
        assert_eq!(front.spec.options.as_ref().unwrap()["encrypted"], "");
        assert_eq!(
            front.spec.ipam.as_ref().unwrap().config.as_ref().unwrap()[0]
                .subnet
                .as_deref(),
            Some("10.77.0.0/24")
        );
        assert_eq!(front.spec.labels.as_ref().unwrap()["a"], "b");
        assert_eq!(objects.externals.networks, vec!["shared-back"]);
    }
}
