//! The operator's connection to dockerd cut in the middle of a converge,
//! through a proxy the test owns in front of `/var/run/docker.sock`
//! (`DOCKER_HOST` points the operator at it; the machine's dockerd is never
//! touched). The proxy cuts right after passing on a write chosen at random,
//! so that the write lands and its answer is lost, the hardest case for "0
//! duplicates"; once restored, the operator reconnects, creates nothing
//! twice, and converges within 60 s. Once while creating the stack, once
//! while updating it (with a change made during the cut).

use std::time::Duration;

use rand::Rng;

use super::common::Etcd;
use super::harness::{Fixture, TIMEOUT, converged, eventually, seeded, stack_record};
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

    // A network, a secret, a config, then the services: any of them.
    let nth = rng.random_range(1..=SERVICES + 3);
    eprintln!("cutting after write {nth} of the stack's creation");
    link.cut_after_write(nth);
    fx.put(stack_record(&stack, SERVICES, 1, &token)).await;
    let mut operator = fx.operator(&fx.endpoint, Some(&link.socket()));
    eventually("the link is cut", TIMEOUT, async || {
        link.is_cut().then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    link.restore();
    converged(&fx, &stack, SERVICES, 1, Duration::from_secs(60)).await;

    // The services' updates (and the config's rotation), changed again during the cut.
    let nth = rng.random_range(1..=SERVICES + 1);
    eprintln!("cutting after write {nth} of the stack's update");
    link.cut_after_write(nth);
    fx.put(stack_record(&stack, SERVICES, 2, &token)).await;
    eventually("the link is cut", TIMEOUT, async || {
        link.is_cut().then_some(())
    })
    .await;
    fx.put(stack_record(&stack, SERVICES, 3, &token)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    link.restore();
    converged(&fx, &stack, SERVICES, 3, Duration::from_secs(60)).await;
    operator.assert_running();
    fx.assert_no_canary().await;
}
