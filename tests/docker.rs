//! Integration tests of the Docker layer against the real dockerd in swarm mode.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::OnceLock;

use bollard::models::{
    ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec,
};
use swarmkeeper::docker::{Docker, Owner, Service, ServiceSpec};

/// Events and the connection to dockerd.
#[path = "docker/events.rs"]
mod events;
/// Networks, secrets, configs and nodes.
#[path = "docker/objects.rs"]
mod objects;
/// Services: writes counted once, cut refusals, stale updates.
#[path = "docker/services.rs"]
mod services;

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
