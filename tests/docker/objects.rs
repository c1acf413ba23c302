//! Networks, secrets, configs and nodes: listed by owner and by name, nodes
//! updated at their version.

use base64::Engine as _;
use swarmkeeper::docker::{ConfigSpec, DockerError, NetworkCreateRequest, Owner, SecretSpec};

use super::Fixture;

#[tokio::test]
async fn networks_secrets_and_configs_by_owner_and_by_name() {
    let f = Fixture::new("objs").await;
    let docker = &f.docker;
    let other = Owner::new("Network", format!("{}-other", f.id));

    let net = f.name("net");
    let net_id = docker
        .create_network(NetworkCreateRequest {
            name: net.clone(),
            driver: Some("overlay".to_owned()),
            attachable: Some(true),
            labels: Some(f.labels(&f.owner)),
            ..NetworkCreateRequest::default()
        })
        .await
        .unwrap();
    let ours = docker.list_networks(Some(&f.owner)).await.unwrap();
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0].id.as_deref(), Some(net_id.as_str()));
    assert!(docker.list_networks(Some(&other)).await.unwrap().is_empty());
    let found = docker.inspect_network_by_name(&net).await.unwrap().unwrap();
    assert_eq!(found.id.as_deref(), Some(net_id.as_str()));
    // The name filter matches substrings; only the exact name counts.
    assert!(
        docker
            .inspect_network_by_name(&f.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        docker
            .inspect_network_by_name("ingress")
            .await
            .unwrap()
            .is_some()
    );

    let secret_value = "hunter2-very-secret";
    let secret_spec = || SecretSpec {
        name: Some(f.name("password")),
        labels: Some(f.labels(&f.owner)),
        data: Some(base64::engine::general_purpose::STANDARD.encode(secret_value)),
        ..SecretSpec::default()
    };
    let secret_id = docker.create_secret(secret_spec()).await.unwrap();
    let secrets = docker.list_secrets(Some(&f.owner)).await.unwrap();
    assert_eq!(secrets.len(), 1);
    assert_eq!(secrets[0].id.as_deref(), Some(secret_id.as_str()));
    assert!(docker.list_secrets(Some(&other)).await.unwrap().is_empty());
    let by_name = docker.secret_by_name(&f.name("password")).await.unwrap();
    assert_eq!(by_name.unwrap().id.as_deref(), Some(secret_id.as_str()));
    assert!(docker.secret_by_name(&f.id).await.unwrap().is_none());

    let taken = docker.create_secret(secret_spec()).await.unwrap_err();
    assert!(
        matches!(taken, DockerError::CreateSecret { .. }),
        "{taken:?}"
    );
    assert!(!taken.is_transient(), "{taken:?}");
    let shown = format!("{taken} {taken:?}");
    assert!(shown.contains(&f.name("password")), "{shown}");
    let encoded = base64::engine::general_purpose::STANDARD.encode(secret_value);
    assert!(
        !shown.contains(secret_value) && !shown.contains(&encoded),
        "{shown}"
    );

    let config_id = docker
        .create_config(ConfigSpec {
            name: Some(f.name("conf")),
            labels: Some(f.labels(&f.owner)),
            data: Some(base64::engine::general_purpose::STANDARD.encode("listen 80;")),
            ..ConfigSpec::default()
        })
        .await
        .unwrap();
    let configs = docker.list_configs(Some(&f.owner)).await.unwrap();
    assert_eq!(configs.len(), 1);
    assert!(docker.list_configs(Some(&other)).await.unwrap().is_empty());
    let by_name = docker.config_by_name(&f.name("conf")).await.unwrap();
    assert_eq!(by_name.unwrap().id.as_deref(), Some(config_id.as_str()));
    assert_eq!(
        docker.writes(),
        4,
        "network, secret, refused secret, config"
    );

    // A service using the secret and the network keeps them from being removed.
    let mut user = f.service_spec("user", &f.owner);
    let task = user.task_template.as_mut().unwrap();
    task.networks = Some(vec![bollard::models::NetworkAttachmentConfig {
        target: Some(net_id.clone()),
        ..Default::default()
    }]);
    task.container_spec.as_mut().unwrap().secrets =
        Some(vec![bollard::models::TaskSpecContainerSpecSecrets {
            secret_id: Some(secret_id.clone()),
            secret_name: Some(f.name("password")),
            file: Some(bollard::models::TaskSpecContainerSpecFile {
                name: Some("password".to_owned()),
                uid: Some("0".to_owned()),
                gid: Some("0".to_owned()),
                mode: Some(0o400),
            }),
        }]);
    let user_id = docker.create_service(user, None).await.unwrap();
    let in_use = docker.remove_secret(&secret_id).await.unwrap_err();
    assert!(in_use.is_in_use(), "{in_use:?}");
    let in_use = docker.remove_network(&net_id).await.unwrap_err();
    assert!(in_use.is_in_use(), "{in_use:?}");
    docker.remove_service(&user_id).await.unwrap();
    assert_eq!(docker.writes(), 8);

    for _ in 0..2 {
        docker.remove_network(&net_id).await.unwrap();
        docker.remove_secret(&secret_id).await.unwrap();
        docker.remove_config(&config_id).await.unwrap();
    }
    assert_eq!(docker.writes(), 14);
    assert!(
        docker
            .inspect_network_by_name(&net)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        docker
            .list_secrets(Some(&f.owner))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        docker
            .list_configs(Some(&f.owner))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn nodes_are_listed_and_updated_at_their_version() {
    let f = Fixture::new("node").await;
    let docker = &f.docker;
    docker.ping().await.unwrap();
    assert_eq!((docker.reads(), docker.writes()), (1, 0));
    let nodes = docker.list_nodes().await.unwrap();
    let node = nodes.first().expect("a swarm has a node");
    let id = node.id.clone().unwrap();
    let version = node.version.as_ref().unwrap().index.unwrap();
    let spec = node.spec.clone().unwrap();

    // Writing back the same spec changes nothing but the version: safe on a shared swarm.
    docker
        .update_node(&id, version, spec.clone())
        .await
        .unwrap();
    let stale = docker.update_node(&id, version, spec).await.unwrap_err();
    assert!(stale.is_out_of_sequence(), "{stale:?}");
    assert!(stale.is_transient());
    assert_eq!(stale.kind(), "update_node");
    assert_eq!(docker.writes(), 2);
}
