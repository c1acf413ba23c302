//! The etcd store against a real etcd: CAS, unchanged writes, big applies,
//! watch across compaction and restarts, expiring events, secrets, leader election.

mod common;

use serde_json::{Value, json};
use swarmkeeper::store::{Expect, RecordPut};

use common::Etcd;

// Modules of their own keep this file short; a sibling `tests/*.rs` would be a
// test binary of its own, with an etcd of its own.
/// Reaching etcd: down, TLS, password authentication.
#[path = "store/connection.rs"]
mod connection;
/// Leader election: one leader at a time, loss when etcd goes away.
#[path = "store/election.rs"]
mod election;
/// Events: expiry with their lease, sorting, filtering, watching.
#[path = "store/events.rs"]
mod events;
/// Listings bigger than one gRPC answer, and following events from a listing.
#[path = "store/listing.rs"]
mod listing;
/// Records, status, secrets and sources: CAS, unchanged writes, big applies.
#[path = "store/records.rs"]
mod records;
/// Watching records: order, compaction, etcd restarts.
#[path = "store/watch.rs"]
mod watch;

fn put(kind: &str, name: &str, value: Value, expect: Expect) -> RecordPut {
    RecordPut {
        kind: kind.into(),
        name: name.into(),
        value,
        expect,
    }
}

fn stack(name: &str, replicas: u32) -> Value {
    json!({
        "apiVersion": "swarmkeeper.dev/v1alpha1",
        "kind": "Stack",
        "metadata": {"name": name},
        "spec": {"compose": {"services": {"web": {"image": "local/busybox:1", "deploy": {"replicas": replicas}}}}}
    })
}
