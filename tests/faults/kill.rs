//! kill -9 of the operator at random moments while it converges a 50-service
//! stack, 10 times, each time with a new generation to converge (every
//! service changes, the config rotates); then one clean `run --once` must
//! leave exactly the desired state: no duplicate, no orphan, no drift.

use std::time::{Duration, Instant};

use rand::Rng;

use super::common::Etcd;
use super::harness::{Fixture, LiveStack, converged, seeded, stack_record};

const SERVICES: usize = 50;
const KILLS: u32 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_ten_times_while_converging_then_one_clean_pass_leaves_exactly_the_desired_state() {
    let mut rng = seeded("kill");
    let fx = Fixture::new(
        Etcd::shared().store("kill").await,
        &Etcd::shared().endpoint(),
    );
    let stack = fx.stack();
    let token = fx.canary_secret(&stack).await;
    let mut interrupted = 0;
    for generation in 1..=KILLS {
        fx.put(stack_record(&stack, SERVICES, generation, &token))
            .await;
        let operator = fx.operator(&fx.endpoint, None);
        // From before it leads to well after a pass over 50 services would end.
        let moment = Duration::from_millis(rng.random_range(100..2000));
        let started = Instant::now();
        tokio::time::sleep(moment).await;
        operator.signal("KILL");
        drop(operator);
        let live = LiveStack::read(&stack);
        let done = live
            .services
            .iter()
            .filter(|(_, g)| *g == generation.to_string())
            .count();
        if done < SERVICES {
            interrupted += 1;
        }
        eprintln!(
            "kill {generation} after {:?}: {done}/{SERVICES} services at generation {generation}",
            started.elapsed()
        );
        // A dead leader's lease would hold the next one off for its TTL (15 s).
        fx.revoke_leader_leases().await;
    }
    eprintln!("{interrupted} of {KILLS} kills interrupted a converge");

    let once = fx.run_cli(&["run", "--once"]);
    assert!(
        once.status.success(),
        "run --once: {}",
        String::from_utf8_lossy(&once.stderr)
    );
    converged(&fx, &stack, SERVICES, KILLS, Duration::from_secs(5)).await;
    fx.assert_no_canary().await;
}
