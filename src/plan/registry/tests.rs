//! Unit tests of the Registry plan: image references, the config file, the service spec.

use super::*;
use crate::api::placement::Placement;
use crate::api::registry::{RegistryTls, RegistryUser};

#[test]
fn the_registry_of_an_image_is_read_as_docker_reads_it() {
    for (image, registry) in [
        ("127.0.0.1:5000/app:1", Some("127.0.0.1:5000")),
        (
            "registry.example.com/team/app",
            Some("registry.example.com"),
        ),
        ("localhost/app:1", Some("localhost")),
        ("library/busybox:1", None),
        ("busybox", None),
        ("local/busybox:1", None),
    ] {
        assert_eq!(registry_of(image), registry, "{image}");
    }
}

#[test]
fn tags_to_resolve_default_to_latest_and_skip_pinned_images() {
    assert_eq!(
        tag_to_resolve("127.0.0.1:5000/team/app:1.2"),
        Some(("127.0.0.1:5000", "team/app", "1.2"))
    );
    assert_eq!(
        tag_to_resolve("127.0.0.1:5000/app"),
        Some(("127.0.0.1:5000", "app", "latest"))
    );
    assert_eq!(tag_to_resolve("127.0.0.1:5000/app:1@sha256:ab"), None);
    assert_eq!(tag_to_resolve("local/busybox:1"), None);
    assert_eq!(
        pinned("127.0.0.1:5000/app:1", "sha256:ab"),
        "127.0.0.1:5000/app:1@sha256:ab"
    );
}

#[test]
fn pull_auth_never_prints_its_password() {
    let auth = PullAuth::new("127.0.0.1:5000", Some(("ci", "canary-pw")));
    let printed = format!("{auth:?}");
    assert!(!printed.contains("canary-pw"), "{printed}");
    assert!(printed.contains("ci"));
    assert_eq!(auth.0.password.as_deref(), Some("canary-pw"));
    assert_eq!(PullAuth::new("r:1", None).0.username, None);
}

fn deploy(users: bool, tls: bool) -> RegistryDeploy {
    RegistryDeploy {
        image: "local/registry:2".into(),
        port: 5123,
        volume: Some("registry_data".into()),
        placement: Placement {
            constraints: vec!["node.role == manager".into()],
        },
        users: if users {
            vec![RegistryUser {
                name: "ci".into(),
                password_secret: "pw".into(),
            }]
        } else {
            Vec::new()
        },
        tls: tls.then(|| RegistryTls {
            certificate_secret: "crt".into(),
            key_secret: "key".into(),
        }),
    }
}

#[test]
fn the_config_file_turns_on_htpasswd_and_tls_only_when_asked() {
    let open = config_file("r", &deploy(false, false));
    assert!(open.contains("addr: :5000"), "{open}");
    assert!(
        !open.contains("htpasswd") && !open.contains("tls:"),
        "{open}"
    );
    let closed = config_file("r", &deploy(true, true));
    assert!(closed.contains("path: /run/secrets/htpasswd"), "{closed}");
    assert!(
        closed.contains("certificate: /run/secrets/registry.crt"),
        "{closed}"
    );
}

fn mounted(config: &str) -> Mounted {
    Mounted {
        config: Ref {
            name: config.into(),
            id: format!("id-{config}"),
        },
        htpasswd: Some(Ref {
            name: "h.v1".into(),
            id: "id-h".into(),
        }),
        tls: None,
    }
}

#[test]
fn the_service_publishes_in_host_mode_mounts_its_files_and_checks_v2() {
    let spec = service_spec(
        "r",
        &deploy(true, false),
        &mounted("c.v1"),
        &BTreeMap::new(),
    );
    assert_eq!(spec.name.as_deref(), Some("registry-r"));
    let port = &spec.endpoint_spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
    assert_eq!(port.published_port, Some(5123));
    assert_eq!(port.target_port, Some(5000));
    assert_eq!(
        port.publish_mode,
        Some(EndpointPortConfigPublishModeEnum::HOST)
    );
    let task = spec.task_template.as_ref().unwrap();
    let container = task.container_spec.as_ref().unwrap();
    let test = container
        .health_check
        .as_ref()
        .unwrap()
        .test
        .as_ref()
        .unwrap();
    assert!(
        test[1].starts_with("printf 'GET /v2/ HTTP/1.0\\r\\n\\r\\n' | nc -w 2 127.0.0.1 5000"),
        "{test:?}"
    );
    assert_eq!(
        container.secrets.as_ref().unwrap()[0]
            .secret_name
            .as_deref(),
        Some("h.v1")
    );
    assert_eq!(
        container.configs.as_ref().unwrap()[0].config_id.as_deref(),
        Some("id-c.v1")
    );
    assert_eq!(
        container.mounts.as_ref().unwrap()[0].source.as_deref(),
        Some("registry_data")
    );
    assert_eq!(
        task.placement
            .as_ref()
            .unwrap()
            .constraints
            .as_ref()
            .unwrap(),
        &["node.role == manager"]
    );
    assert!(spec.labels.as_ref().unwrap().contains_key(SPEC_HASH));
}

#[test]
fn a_new_config_version_is_an_update_of_the_service() {
    let labels = BTreeMap::new();
    let old = service_spec("r", &deploy(true, false), &mounted("c.v1"), &labels);
    let live = Service {
        spec: Some(old.clone()),
        ..Service::default()
    };
    assert_eq!(plan_service(&old, Some(&live)), ServiceChange::Unchanged);
    assert_eq!(plan_service(&old, None), ServiceChange::Create);
    let new = service_spec("r", &deploy(true, false), &mounted("c.v2"), &labels);
    let ServiceChange::Update(fields) = plan_service(&new, Some(&live)) else {
        panic!("expected an update");
    };
    assert!(
        fields.iter().any(|f| f.path.contains("Configs")),
        "{fields:?}"
    );
    let drift = drift("registry-r", &ServiceChange::Update(fields)).unwrap();
    assert_eq!(drift.state, ObjectState::Changed);
    assert!(super::drift("x", &ServiceChange::Unchanged).is_none());
}
