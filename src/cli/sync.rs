//! `sync`: follow one branch of a Git repository from the command line (a CI
//! job, a cron job, a second process beside `run`). `run --sync` does the
//! same inside the controller, on the leader, with push webhooks.

use tokio::sync::Notify;

use crate::gitops::{Outcome, SyncSpec, Syncer};
use prometheus_client::metrics::family::Family;

use crate::notify::{Notifier, NotifyConfig};
use crate::runtime::Shutdown;

use super::{Failure, GlobalOpts};

/// Runs `sync`: polls every interval until SIGTERM/SIGINT, or with `once`
/// fetches and applies the tip once.
///
/// # Errors
/// A bad spec (exit 64); with `once`, an invalid commit (exit 64) or a
/// failed fetch or apply (exit 1).
pub async fn sync(
    global: &GlobalOpts,
    spec: SyncSpec,
    once: bool,
    notify: NotifyConfig,
) -> Result<u8, Failure> {
    spec.validate()
        .map_err(|e| Failure::Invalid(format!("error: {e}")))?;
    let keys = global.key_files()?;
    let store = global.store().await?;
    // Sync failures and recoveries only: records are the controller's to report.
    let notifier = Notifier::start(notify, Family::default());
    let syncer = Syncer::new(spec, &global.prefix, notifier);
    if !once {
        let shutdown = Shutdown::on_signals().map_err(Failure::error)?;
        syncer.run(&store, keys, &Notify::new(), &shutdown).await;
        return Ok(0);
    }
    match syncer
        .sync_once(&store, keys)
        .await
        .map_err(Failure::error)?
    {
        Outcome::UpToDate { commit } => {
            println!("commit {commit} is applied already");
            Ok(0)
        }
        Outcome::Applied { commit, lines } => {
            for line in lines {
                println!("{line}");
            }
            println!("applied commit {commit}");
            Ok(0)
        }
        Outcome::Refused {
            message, invalid, ..
        } if invalid => Err(Failure::Invalid(format!("error: {message}"))),
        Outcome::Refused { message, .. } => Err(Failure::Error(message)),
    }
}
