//! The event stream and the connection: events carry their object's owner, an
//! unreachable daemon is a transient error, and the stream ends with dockerd.

use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt;
use swarmkeeper::docker::{Docker, DockerError, DockerEvent, EventType, SecretSpec};

use super::common::swarm::proxy_to_dockerd;
use super::{Fixture, TEST_LABEL, docker_cli, require_swarm};

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
