//! The fault-injection suite: things broken on purpose, and what must hold
//! afterwards (issue 12). Each scenario lives in a module of `tests/faults/`;
//! this file holds what they share.
//!
//! A real etcd (tests/common), the real swarm, the `swarmkeeper` binary as a
//! child process, and proxies the test owns in front of etcd and of
//! `/var/run/docker.sock` (the machine's dockerd is never restarted). Every
//! scenario carries a canary secret value and checks at its end that it shows
//! nowhere: logs, events, status, drift output, etcd values. Stacks run
//! `replicas: 0`: the control plane is the point, not tasks.
//!
//! Random choices (kill moments, mutations) come from one seed: the default is
//! fixed so that a failure reproduces; `SWARMKEEPER_FAULT_SEED=<u64>` picks
//! another, and each scenario prints the seed it used.

mod common;

#[path = "faults/harness.rs"]
mod harness;
#[path = "faults/proxy.rs"]
mod proxy;

#[path = "faults/bad_input.rs"]
mod bad_input;
#[path = "faults/docker_cut.rs"]
mod docker_cut;
#[path = "faults/etcd.rs"]
mod etcd;
#[path = "faults/kill.rs"]
mod kill;
#[path = "faults/out_of_band.rs"]
mod out_of_band;
