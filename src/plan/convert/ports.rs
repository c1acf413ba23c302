//! Published ports: a service's `ports:` and `deploy.endpoint_mode` as its endpoint spec, as
//! `convertEndpointSpec` in docker/cli's `convert/service.go`.

use bollard::models::{EndpointPortConfig, EndpointSpec};

use super::non_empty;
use crate::api::compose::{Deploy, Service};

/// The endpoint spec: the endpoint mode, and the ports when the service publishes any.
pub(super) fn convert_endpoint_spec(
    deploy: &Deploy,
    service: &Service,
) -> Result<EndpointSpec, String> {
    Ok(EndpointSpec {
        mode: deploy
            .endpoint_mode
            .map(|m| m.as_str().parse())
            .transpose()?,
        ports: non_empty(convert_ports(service)?),
    })
}

/// The service's `ports:`, each entry expanded to its ports, in the CLI's order.
fn convert_ports(service: &Service) -> Result<Vec<EndpointPortConfig>, String> {
    let mut specs = Vec::new();
    for (i, port) in service.ports.iter().enumerate() {
        specs.extend(port.expand().map_err(|e| format!("ports[{i}]: {e}"))?);
    }
    // The CLI sorts by published port only; ties keep the file's order (its sort is
    // stable for the short lists services have).
    specs.sort_by_key(|p| p.published);
    specs
        .into_iter()
        .map(|p| {
            Ok(EndpointPortConfig {
                name: None,
                protocol: (!p.protocol.is_empty())
                    .then(|| p.protocol.parse())
                    .transpose()?,
                target_port: Some(i64::from(p.target)),
                published_port: (p.published != 0).then_some(i64::from(p.published)),
                publish_mode: (!p.mode.is_empty()).then(|| p.mode.parse()).transpose()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use bollard::models::EndpointSpec;

    use crate::plan::convert::fixtures::{EVERYTHING, convert, service};

    /// `(published, target)` of each port, in the spec's order.
    fn published(endpoint: &EndpointSpec) -> Vec<(Option<i64>, Option<i64>)> {
        endpoint
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| (p.published_port, p.target_port))
            .collect()
    }

    #[test]
    fn ports_sort_by_published_port_keeping_the_file_order_of_ties() {
        let objects = convert(
            "services:\n  a:\n    image: x\n    ports: [\"9500\", \"9401/udp\", \"8080:80\", \"9400\", {target: 1, published: 19000, mode: host}]\n",
        );
        assert_eq!(
            published(service(&objects, "a").endpoint_spec.as_ref().unwrap()),
            vec![
                (None, Some(9500)),
                (None, Some(9401)),
                (None, Some(9400)),
                (Some(8080), Some(80)),
                (Some(19000), Some(1)),
            ]
        );
    }

    #[test]
    fn everything_ports_convert_as_the_cli_does() {
        let objects = convert(EVERYTHING);
        let endpoint = service(&objects, "web").endpoint_spec.as_ref().unwrap();
        assert_eq!(
            endpoint.mode,
            Some(bollard::models::EndpointSpecModeEnum::DNSRR)
        );
        assert_eq!(
            published(endpoint),
            vec![
                (None, Some(9000)),
                (Some(3000), Some(80)),
                (Some(8080), Some(80)),
                (Some(8443), Some(443))
            ]
        );
    }
}
