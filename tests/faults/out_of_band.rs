//! Out-of-band updates of a managed service, 5 a second for 20 s, racing the
//! operator that reverts them and four new generations of the record: the
//! operator never writes a spec that carries an out-of-band change (a stale
//! read written back), it does not loop on errors, and it converges to the
//! last generation within 10 s after the updates stop.

use std::time::{Duration, Instant};

use swarmkeeper::docker::Docker;

use super::common::Etcd;
use super::common::http::metric;
use super::harness::{Fixture, TIMEOUT, converged, stack_record};
use super::proxy::Link;

const SERVICES: usize = 2;
/// What the out-of-band writer adds to the service's environment.
const MARK: &str = "OUT_OF_BAND=";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_band_updates_five_a_second_are_reverted_with_no_stale_write_and_no_error_loop() {
    let fx = Fixture::new(
        Etcd::shared().store("out-of-band").await,
        &Etcd::shared().endpoint(),
    );
    let link = Link::docker(&fx.dir.path().join("docker.sock"));
    let stack = fx.stack();
    let token = fx.canary_secret(&stack).await;
    fx.put(stack_record(&stack, SERVICES, 1, &token)).await;
    let mut operator = fx.operator(&fx.endpoint, Some(&link.socket()));
    converged(&fx, &stack, SERVICES, 1, TIMEOUT).await;

    let docker = Docker::connect().await.expect("dockerd answers");
    let service = format!("{stack}_s00");
    let mut landed = 0;
    let storm = Instant::now();
    for i in 0..100u32 {
        let next = storm + Duration::from_millis(200) * (i + 1);
        // The record changes too, racing the storm: generations 2 to 5.
        if i % 25 == 12 {
            fx.put(stack_record(&stack, SERVICES, 2 + i / 25, &token))
                .await;
        }
        if let Some(current) = docker.inspect_service(&service).await.expect("inspect") {
            let written = docker
                .update_service(&current, None, |live| {
                    let mut spec = live.spec.clone()?;
                    let container = spec.task_template.as_mut()?.container_spec.as_mut()?;
                    let env = container.env.get_or_insert_with(Vec::new);
                    env.retain(|e| !e.starts_with(MARK));
                    env.push(format!("{MARK}{i}"));
                    Some(spec)
                })
                .await;
            landed += usize::from(written.is_ok());
        }
        tokio::time::sleep_until(next.into()).await;
    }
    eprintln!(
        "{landed} out-of-band updates landed in {:?}",
        storm.elapsed()
    );
    assert!(
        landed > 50,
        "the storm did not happen: {landed} updates landed"
    );

    converged(&fx, &stack, SERVICES, 5, Duration::from_secs(10)).await;
    let env = super::common::swarm::docker_ok(&[
        "service",
        "inspect",
        "--format",
        "{{range .Spec.TaskTemplate.ContainerSpec.Env}}{{.}} {{end}}",
        &service,
    ]);
    assert!(!env.contains(MARK), "an out-of-band change stayed: {env}");
    let sent = String::from_utf8_lossy(&link.sent()).into_owned();
    assert!(
        !sent.contains(MARK),
        "the operator wrote a spec carrying an out-of-band change"
    );

    // Converged is quiet: no reconcile fails, no update is sent.
    let errors = r#"swarmkeeper_reconcile_total{kind="Stack",result="error"}"#;
    let updates = r#"swarmkeeper_docker_requests_total{op="service_update",result="ok"}"#;
    let before = (
        metric(&operator.addr, errors),
        metric(&operator.addr, updates),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = (
        metric(&operator.addr, errors),
        metric(&operator.addr, updates),
    );
    assert_eq!(before, after, "errors or updates go on after converging");
    assert!(
        before
            .1
            .is_some_and(|n| n <= f64::from(landed as u32) + 5.0),
        "{:?} updates for {landed} out-of-band changes",
        before.1
    );
    let events = fx
        .store
        .list_events(Some(("Stack", &stack)))
        .await
        .expect("events");
    assert!(
        events.iter().all(|(_, _, e)| e.reason != "Failed"),
        "the record failed: {events:?}"
    );
    operator.assert_running();
    fx.assert_no_canary().await;
}
