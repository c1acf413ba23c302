//! swarmkeeper: a reconciliation operator for Docker Swarm.
//!
//! The desired state of a cluster lives as records in etcd; controllers diff
//! it against the live swarm and converge it idempotently.
//!
//! # Layout
//! - [`api`]: the record kinds, their parsing and validation.
//! - [`store`]: etcd: records, status, events, secrets, sources, watch.
//! - [`docker`]: the live swarm through bollard, by owner label.
//! - [`plan`]: the pure diff from desired and live state to changes.
//! - [`runtime`]: triggers, work queue, backoff, shutdown.
//! - [`controllers`]: one reconciler per kind.
//! - [`report`]: tables, diffs and drift reports.
//! - [`cli`]: the commands behind the command line.
//! - [`http`], [`metrics`]: the controller's endpoints and Prometheus metrics.
//! - [`text`]: bounds on what a message quotes.

pub mod api;
pub mod cli;
pub mod controllers;
pub mod docker;
pub mod http;
pub mod metrics;
pub mod plan;
pub mod report;
pub mod runtime;
pub mod store;
pub mod text;
