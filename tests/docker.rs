//! Integration tests of the Docker layer against the real dockerd in swarm mode.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use bollard::models::{
    ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec,
};
use common::swarm::proxy_to_dockerd;
use futures::StreamExt;
use swarmkeeper::docker::{
    ConfigSpec, Docker, DockerError, DockerEvent, DockerOpLabels, EventType, NetworkCreateRequest,
    Owner, SecretSpec, Service, ServiceSpec, ServiceUpdate, TaskCounts,
};

const IMAGE: &str = "local/busybox:1";
/// Every object a test creates carries this label with the test's unique id, so the
/// guard can remove them all even when an assertion fails half-way.
const TEST_LABEL: &str = "swarmkeeper.test";

fn docker_cli(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI must be installed: run hack/setup.sh");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Panics unless dockerd answers as a swarm manager, and builds the test image once.
fn require_swarm() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let info = Command::new("docker")
            .args([
                "info",
                "--format",
                "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
            ])
            .output();
        match info {
            Ok(out) if String::from_utf8_lossy(&out.stdout).trim() == "active true" => {}
            _ => panic!("dockerd is not running as a swarm manager: run hack/setup.sh"),
        }
        let present = Command::new("docker")
            .args(["image", "inspect", IMAGE])
            .output()
            .is_ok_and(|out| out.status.success());
        if !present {
            build_busybox();
        }
    });
}

fn build_busybox() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy("/bin/busybox", dir.path().join("busybox"))
        .expect("busybox-static must be installed: run hack/setup.sh");
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\",\"--install\",\"-s\",\"/bin\"]\nCMD [\"/bin/sh\"]\n",
    )
    .expect("write Dockerfile");
    docker_cli(&["build", "-q", "-t", IMAGE, &dir.path().to_string_lossy()]);
}

/// One test's connection, names and owner; removes what the test made when dropped.
struct Fixture {
    docker: Docker,
    id: String,
    owner: Owner,
}

impl Fixture {
    async fn new(test: &str) -> Self {
        require_swarm();
        let id = format!("skt-{test}-{:08x}", rand::random::<u32>());
        let docker = Docker::connect().await.expect("connect to dockerd");
        let owner = Owner::new("Stack", id.clone());
        Self { docker, id, owner }
    }

    fn name(&self, object: &str) -> String {
        format!("{}_{object}", self.id)
    }

    fn labels(&self, owner: &Owner) -> HashMap<String, String> {
        let mut labels = owner.labels();
        labels.insert(TEST_LABEL.to_owned(), self.id.clone());
        labels
    }

    fn service_spec(&self, object: &str, owner: &Owner) -> ServiceSpec {
        ServiceSpec {
            name: Some(self.name(object)),
            labels: Some(self.labels(owner)),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: Some(0) }),
                ..ServiceSpecMode::default()
            }),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(IMAGE.to_owned()),
                    command: Some(vec!["sleep".to_owned(), "3600".to_owned()]),
                    ..TaskSpecContainerSpec::default()
                }),
                ..TaskSpec::default()
            }),
            ..ServiceSpec::default()
        }
    }

    /// The one service of `owner` this test sees.
    async fn only_service(&self, owner: &Owner) -> Service {
        let mut services = self.docker.list_services(Some(owner)).await.unwrap();
        assert_eq!(services.len(), 1, "services of {owner}: {services:?}");
        services.remove(0)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let filter = format!("label={TEST_LABEL}={}", self.id);
        for kind in ["service", "network", "secret", "config"] {
            let Ok(out) = Command::new("docker")
                .args([kind, "ls", "-q", "--filter", &filter])
                .output()
            else {
                continue;
            };
            let ids = String::from_utf8_lossy(&out.stdout);
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .args([kind, "rm"])
                    .args(&ids)
                    .output();
            }
        }
    }
}

fn service_id(service: &Service) -> &str {
    service.id.as_deref().unwrap()
}

fn service_labels(service: &Service) -> &HashMap<String, String> {
    service.spec.as_ref().unwrap().labels.as_ref().unwrap()
}

fn env_of(service: &Service) -> Option<&Vec<String>> {
    let spec = service.spec.as_ref()?;
    spec.task_template
        .as_ref()?
        .container_spec
        .as_ref()?
        .env
        .as_ref()
}

fn with_env(current: &Service, env: &str) -> ServiceSpec {
    let mut spec = current.spec.clone().unwrap();
    let task = spec.task_template.as_mut().unwrap();
    task.container_spec.as_mut().unwrap().env = Some(vec![env.to_owned()]);
    spec
}

#[tokio::test]
async fn service_create_list_update_remove_counts_each_write_once() {
    let f = Fixture::new("svc").await;
    let docker = &f.docker;
    let other = Owner::new("Stack", format!("{}-other", f.id));
    docker
        .create_service(f.service_spec("other", &other), None)
        .await
        .unwrap();
    assert_eq!(docker.writes(), 1);

    let started = std::time::Instant::now();
    let id = docker
        .create_service(f.service_spec("web", &f.owner), None)
        .await
        .unwrap();
    // Resolving the image against a registry would cost a DNS timeout here.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(docker.writes(), 2);

    let live = f.only_service(&f.owner).await;
    assert_eq!(service_id(&live), id);
    let idle = TaskCounts {
        running: 0,
        desired: 0,
    };
    assert_eq!(TaskCounts::of(&live), Some(idle));
    let all = docker.list_services(None).await.unwrap();
    assert!(all.iter().any(|s| s.id.as_deref() == Some(id.as_str())));
    assert!(all.len() >= 2);

    let updated = docker
        .update_service(&live, None, |current| Some(with_env(current, "A=1")))
        .await
        .unwrap();
    assert_eq!(updated, ServiceUpdate::Updated);
    assert_eq!(docker.writes(), 3);
    let live = f.only_service(&f.owner).await;
    assert_eq!(env_of(&live), Some(&vec!["A=1".to_owned()]));

    let unchanged = docker.update_service(&live, None, |_| None).await.unwrap();
    assert_eq!(unchanged, ServiceUpdate::Unchanged);
    assert_eq!(docker.writes(), 3);

    docker.remove_service(&id).await.unwrap();
    assert_eq!(docker.writes(), 4);
    assert!(docker.inspect_service(&id).await.unwrap().is_none());
    assert!(
        docker
            .list_services(Some(&f.owner))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(docker.list_services(Some(&other)).await.unwrap().len(), 1);

    // Already gone counts as removed; the call is still sent and counted.
    docker.remove_service(&id).await.unwrap();
    assert_eq!(docker.writes(), 5);

    // What `/metrics` serves: the controller's registry, which applies the prefix once.
    let text = swarmkeeper::metrics::Metrics::new(docker).encode();
    assert!(!text.contains("swarmkeeper_swarmkeeper_"), "{text}");
    assert!(
        text.contains(
            r#"swarmkeeper_docker_requests_total{op="service_remove",result="not_found"} 1"#
        ),
        "{text}"
    );
    let created_ok = docker.requests().get_or_create(&DockerOpLabels {
        op: "service_create",
        result: "ok",
    });
    assert_eq!(created_ok.get(), 2);
}

#[tokio::test]
async fn a_refusal_that_quotes_a_huge_value_is_cut_to_a_few_kib() {
    let f = Fixture::new("quote").await;
    let mut spec = f.service_spec("web", &f.owner);
    let image = format!("local/{}", "a".repeat(200_000));
    let task = spec.task_template.as_mut().unwrap();
    task.container_spec.as_mut().unwrap().image = Some(image);
    let err = f.docker.create_service(spec, None).await.unwrap_err();
    // dockerd 20.10 answers "InvalidArgument desc = ContainerSpec: \"<the image>\" is not
    // a valid repository/tag", quoting all 200 kB of it.
    let shown = err.to_string();
    assert!(shown.contains("ContainerSpec"), "{}", &shown[..200]);
    assert!(shown.len() < 5 * 1024, "{} bytes", shown.len());
    assert!(
        shown.ends_with(" bytes more)"),
        "{}",
        &shown[shown.len() - 60..]
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn stale_update_rereads_and_recomputes_against_the_fresh_service() {
    let f = Fixture::new("stale").await;
    let docker = &f.docker;
    docker
        .create_service(f.service_spec("api", &f.owner), None)
        .await
        .unwrap();
    let stale = f.only_service(&f.owner).await;
    docker_cli(&[
        "service",
        "update",
        "--detach",
        "--label-add",
        "oob=yes",
        service_id(&stale),
    ]);
    let writes_before = docker.writes();

    let mut seen = Vec::new();
    let outcome = docker
        .update_service(&stale, None, |current| {
            seen.push(current.version.as_ref().unwrap().index.unwrap());
            let mut spec = current.spec.clone().unwrap();
            let labels = spec.labels.as_mut().unwrap();
            labels.insert("wanted".to_owned(), "1".to_owned());
            Some(spec)
        })
        .await
        .unwrap();

    assert_eq!(outcome, ServiceUpdate::Updated);
    assert_eq!(
        docker.writes() - writes_before,
        2,
        "one refused, one accepted"
    );
    assert_eq!(seen.len(), 2);
    assert!(
        seen[1] > seen[0],
        "the retry used a fresh version: {seen:?}"
    );
    let live = f.only_service(&f.owner).await;
    let labels = service_labels(&live);
    assert_eq!(labels.get("oob").map(String::as_str), Some("yes"));
    assert_eq!(labels.get("wanted").map(String::as_str), Some("1"));
}

#[tokio::test]
async fn stale_update_is_skipped_when_the_fresh_service_needs_nothing() {
    let f = Fixture::new("skip").await;
    let docker = &f.docker;
    docker
        .create_service(f.service_spec("api", &f.owner), None)
        .await
        .unwrap();
    let stale = f.only_service(&f.owner).await;
    docker_cli(&[
        "service",
        "update",
        "--detach",
        "--env-add",
        "B=2",
        service_id(&stale),
    ]);
    let writes_before = docker.writes();

    let outcome = docker
        .update_service(&stale, None, |current| {
            let has_b = env_of(current).is_some_and(|env| env.iter().any(|e| e == "B=2"));
            (!has_b).then(|| with_env(current, "B=2"))
        })
        .await
        .unwrap();

    assert_eq!(outcome, ServiceUpdate::Unchanged);
    assert_eq!(docker.writes() - writes_before, 1, "only the refused write");
}

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

async fn next_event(
    events: &mut (impl futures::Stream<Item = Result<DockerEvent, DockerError>> + Unpin),
    wanted: impl Fn(&DockerEvent) -> bool,
) -> DockerEvent {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let event = events.next().await.expect("stream ended").expect("event");
            if wanted(&event) {
                return event;
            }
        }
    })
    .await
    .expect("no such event within 20 s")
}

#[tokio::test]
async fn events_carry_the_owner_of_services_and_secrets() {
    let f = Fixture::new("events").await;
    let docker = &f.docker;
    // Made before the stream exists: its owner must come from the seeding listing.
    let early = docker
        .create_service(f.service_spec("early", &f.owner), None)
        .await
        .unwrap();
    let mut events = Box::pin(docker.events(None));

    let id = docker
        .create_service(f.service_spec("web", &f.owner), None)
        .await
        .unwrap();
    docker_cli(&["service", "update", "--detach", "--label-add", "oob=1", &id]);
    let update = next_event(&mut events, |e| e.id == id && e.action == "update").await;
    assert_eq!(update.typ, EventType::Service);
    assert_eq!(update.owner.as_ref(), Some(&f.owner));
    assert_eq!(update.name, Some(f.name("web")));

    docker_cli(&["service", "rm", &early]);
    let removed = next_event(&mut events, |e| e.id == early && e.action == "remove").await;
    assert_eq!(removed.owner.as_ref(), Some(&f.owner));

    let secret = docker
        .create_secret(SecretSpec {
            name: Some(f.name("s")),
            labels: Some(f.labels(&f.owner)),
            data: Some(base64::engine::general_purpose::STANDARD.encode("x")),
            ..SecretSpec::default()
        })
        .await
        .unwrap();
    let created = next_event(&mut events, |e| e.id == secret).await;
    assert_eq!(
        (created.typ, created.action.as_str()),
        (EventType::Secret, "create")
    );
    assert_eq!(created.owner.as_ref(), Some(&f.owner));

    // Objects that are not ours are reported too, without an owner.
    let foreign = f.name("foreign");
    let label = format!("{TEST_LABEL}={}", f.id);
    docker_cli(&[
        "network", "create", "-d", "overlay", "--label", &label, &foreign,
    ]);
    let created = next_event(&mut events, |e| e.name.as_deref() == Some(foreign.as_str())).await;
    assert_eq!(created.typ, EventType::Network);
    assert_eq!(created.owner, None);
}

#[tokio::test]
async fn an_unreachable_daemon_is_a_transient_connect_error() {
    let err = Docker::connect_to("unix:///nonexistent/docker.sock")
        .await
        .unwrap_err();
    assert!(matches!(err, DockerError::Connect { .. }), "{err:?}");
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(err.kind(), "connect");
    let err = Docker::connect_to("bogus://host").await.unwrap_err();
    assert!(matches!(err, DockerError::Connect { .. }), "{err:?}");
}

#[tokio::test]
async fn events_stream_ends_when_dockerd_goes_away() {
    require_swarm();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    let proxy = proxy_to_dockerd(tokio::net::UnixListener::bind(&socket).unwrap());
    let docker = Docker::connect_to(&format!("unix://{}", socket.display()))
        .await
        .unwrap();
    let mut events = Box::pin(docker.events(None));
    // The first poll seeds and subscribes; other tests' events may arrive meanwhile.
    let _ = tokio::time::timeout(Duration::from_millis(500), events.next()).await;

    proxy.abort();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        let mut errors = Vec::new();
        while let Some(item) = events.next().await {
            if let Err(err) = item {
                errors.push(err);
            }
        }
        errors
    })
    .await
    .expect("the stream must end once dockerd is gone");
    // dockerd vanishing mid-stream is one transient error, then the end.
    assert!(ended.len() <= 1, "{ended:?}");
    assert!(ended.iter().all(DockerError::is_transient), "{ended:?}");
}
