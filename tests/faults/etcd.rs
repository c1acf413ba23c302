//! etcd going away under a running operator: a deletion made while the
//! operator's link to etcd is cut, and compacted past before it comes back,
//! is still acted on; etcd killed in the middle of a converge and started
//! again, the operator converges the next change within 30 s of etcd being
//! healthy.
//!
//! tests/store.rs covers the watch's re-list after compaction in the store
//! alone, and tests/fencing.rs that the leader leads again after etcd
//! restarts; this is the operator end to end: swarm objects removed and
//! converged.

use std::time::{Duration, Instant};

use swarmkeeper::store::Store;

use super::common::Etcd;
use super::harness::{Fixture, LiveStack, TIMEOUT, converged, eventually, stack_record};
use super::proxy::Link;

const SERVICES: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_deletion_and_an_etcd_restart_mid_converge_are_both_converged() {
    let mut etcd = Etcd::start();
    let store = Store::connect(etcd.config("etcd")).await.expect("connect");
    let link = Link::tcp(etcd.endpoint().trim_start_matches("http://").to_owned()).await;
    let fx = Fixture::new(store, &etcd.endpoint());
    let (kept, deleted) = (fx.stack(), fx.stack());
    for stack in [&kept, &deleted] {
        let token = fx.canary_secret(stack).await;
        fx.put(stack_record(stack, SERVICES, 1, &token)).await;
    }
    let mut operator = fx.operator(&link.address, None);
    converged(&fx, &kept, SERVICES, 1, TIMEOUT).await;
    converged(&fx, &deleted, SERVICES, 1, TIMEOUT).await;

    // A deletion (and a change) the operator's watch cannot see, then
    // compacted away: when the link comes back, the watch's revision is gone.
    link.cut();
    fx.store
        .delete_records(vec![("Stack".into(), deleted.clone(), None)])
        .await
        .expect("delete");
    let token = fx.canary_secret(&kept).await;
    fx.put(stack_record(&kept, SERVICES, 2, &token)).await;
    let (_, now) = fx.store.list_records(None).await.expect("list");
    fx.store.compact(now).await.expect("compact");
    tokio::time::sleep(Duration::from_secs(1)).await;
    link.restore();
    eventually(
        "the deleted stack's objects are removed",
        Duration::from_secs(30),
        async || {
            let live = LiveStack::read(&deleted);
            (live.services.is_empty()
                && live.networks.is_empty()
                && live.secrets.is_empty()
                && live.configs.is_empty())
            .then_some(())
        },
    )
    .await;
    converged(&fx, &kept, SERVICES, 2, Duration::from_secs(30)).await;

    // etcd killed while the operator converges a change, then started again.
    fx.put(stack_record(&kept, SERVICES, 3, &token)).await;
    etcd.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    etcd.resume();
    let healthy = Instant::now();
    fx.put(stack_record(&kept, SERVICES, 4, &token)).await;
    converged(&fx, &kept, SERVICES, 4, Duration::from_secs(30)).await;
    eprintln!("converged {:?} after etcd was healthy", healthy.elapsed());
    operator.assert_running();
    fx.assert_no_canary().await;
}
