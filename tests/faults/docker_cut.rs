//! The operator's connection to dockerd cut and restored in the middle of a
//! converge, through a proxy the test owns in front of `/var/run/docker.sock`
//! (`DOCKER_HOST` points the operator at it): it reconnects, creates nothing
//! twice, and converges within 60 s of the connection coming back.

use std::time::Duration;

use rand::Rng;

use super::common::Etcd;
use super::harness::{Fixture, TIMEOUT, converged, seeded, stack_record};
use super::proxy::Link;

const SERVICES: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_connection_cut_mid_converge_is_reconnected_and_converged_without_duplicates() {
    let mut rng = seeded("docker-cut");
    let fx = Fixture::new(
        Etcd::shared().store("docker-cut").await,
        &Etcd::shared().endpoint(),
    );
    let link = Link::docker(&fx.dir.path().join("docker.sock"));
    let stack = fx.stack();
    let token = fx.canary_secret(&stack).await;
    fx.put(stack_record(&stack, SERVICES, 1, &token)).await;
    let mut operator = fx.operator(&fx.endpoint, Some(&link.socket()));
    converged(&fx, &stack, SERVICES, 1, TIMEOUT).await;

    // Cut at a random moment of the next converge, and change the record
    // again while dockerd cannot be reached.
    fx.put(stack_record(&stack, SERVICES, 2, &token)).await;
    tokio::time::sleep(Duration::from_millis(rng.random_range(0..400))).await;
    link.cut();
    fx.put(stack_record(&stack, SERVICES, 3, &token)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    link.restore();
    converged(&fx, &stack, SERVICES, 3, Duration::from_secs(60)).await;
    operator.assert_running();
    fx.assert_no_canary().await;
}
