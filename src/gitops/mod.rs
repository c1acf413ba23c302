//! GitOps: following a Git repository, push webhooks, source ownership.
//!
//! # Layout
//! - [`owner`]: which source owns a stored record, and the commit it came from.
//! - [`git`]: a mirror of one branch through the git CLI, credentials from files.
//! - [`sync`]: the loop that applies each new commit, and the source's status.
//! - [`webhook`]: the signature checks of GitHub, Gitea and GitLab push webhooks.

pub mod git;
pub mod owner;
pub mod sync;
pub mod webhook;

pub use sync::{Outcome, SyncSpec, Syncer};
