//! Services: create, list, update and remove each counted once, refusals cut
//! to a few KiB, and stale updates re-read against the fresh service.

use std::collections::HashMap;
use std::time::Duration;

use swarmkeeper::docker::{DockerOpLabels, Owner, Service, ServiceSpec, ServiceUpdate, TaskCounts};

use super::{Fixture, docker_cli};

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
