//! swarmkeeper: a reconciliation operator for Docker Swarm.
//!
//! The desired state of a cluster lives as records in etcd; controllers diff
//! it against the live swarm and converge it idempotently.
//!
//! # Layout
//! In the order a record travels through them:
//! - [`api`]: the record kinds (serde + schemars types), their validation, the
//!   hardened YAML loader, compose files, sealing of the secrets files name.
//! - [`cli`]: the commands behind the command line; `apply` validates records
//!   and writes them to etcd.
//! - [`store`]: etcd: records, status, events, sealed values, sources, the
//!   watch that survives compaction, leader election and the fence of a
//!   leader's writes.
//! - [`runtime`]: the controller machinery: trigger streams into a work queue
//!   (dedupe, debounce, per-key backoff, bounded concurrency), the lease
//!   fence, shutdown. It knows neither etcd nor Docker.
//! - [`controllers`]: what triggers a reconcile, one reconciler per kind,
//!   status and events; each reads observe → plan → execute → status.
//! - [`plan`]: pure: compose → swarm conversion, and per kind the plan (ordered
//!   steps with field-level differences) from desired and live state, which
//!   `run` executes and `drift` renders.
//! - [`docker`]: the live swarm through bollard: reads by owner label, fenced
//!   and counted writes, events with their owners.
//! - [`report`], [`http`], [`metrics`]: what people read: tables and drift
//!   reports, the controller's endpoints, Prometheus metrics.
//! - [`text`]: bounds on the foreign text a message quotes.
//! - [`gitops`], [`notify`]: following a Git repository (sync, push webhooks,
//!   source ownership) and telling people when something fails.
//!
//! A record's path: `swarmkeeper apply` → [`api::load`] validates it →
//! [`store`] writes `<prefix>/desired/<Kind>/<name>` → the leader's etcd
//! watch ([`controllers::triggers`]) names it → the [`runtime`] queue runs
//! its reconciler → [`plan`] computes what differs → [`docker`] sends each
//! fenced write → [`store`] records status and events.

pub mod api;
pub mod cli;
pub mod controllers;
pub mod db;
pub mod docker;
pub mod gitops;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod plan;
pub mod report;
pub mod runtime;
pub mod store;
pub mod text;
