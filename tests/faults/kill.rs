//! kill -9 of the operator at random moments while it converges a 50-service
//! stack, 10 times, each time with a new generation to converge (every
//! service changes, the config rotates); then one clean `run --once` must
//! leave exactly the desired state: no duplicate, no orphan, no drift. Then
//! once more while it removes the stack of the deleted record: no orphan.

use std::time::{Duration, Instant};

use rand::Rng;

use super::common::Etcd;
use super::common::http::last_write;
use super::common::swarm::names_with_label;
use super::harness::{Fixture, LiveStack, TIMEOUT, converged, eventually, seeded, stack_record};

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
    // And a second pass over it writes nothing (but its own election).
    let before = last_write(&fx.store, Some("leader")).await;
    assert!(fx.run_cli(&["run", "--once"]).status.success());
    assert_eq!(
        last_write(&fx.store, Some("leader")).await,
        before,
        "a pass over the converged stack wrote to etcd"
    );

    // Killed while removing the stack of a deleted record: one clean pass
    // leaves no orphan.
    fx.store
        .delete_records(vec![("Stack".into(), stack.clone(), None)])
        .await
        .expect("delete the record");
    let operator = fx.operator(&fx.endpoint, None);
    let owner = format!("swarmkeeper.owner=Stack.{stack}");
    eventually("the removal starts", TIMEOUT, async || {
        (names_with_label("service", &owner).len() < SERVICES).then_some(())
    })
    .await;
    operator.signal("KILL");
    drop(operator);
    eprintln!(
        "killed while removing, {} services left",
        LiveStack::read(&stack).services.len()
    );
    fx.revoke_leader_leases().await;
    let once = fx.run_cli(&["run", "--once"]);
    assert!(
        once.status.success(),
        "run --once: {}",
        String::from_utf8_lossy(&once.stderr)
    );
    let live = LiveStack::read(&stack);
    assert!(
        live.services.is_empty()
            && live.networks.is_empty()
            && live.secrets.is_empty()
            && live.configs.is_empty()
            && live.strangers.is_empty(),
        "orphans of the deleted record: {live:#?}"
    );
    fx.assert_no_canary().await;
}
