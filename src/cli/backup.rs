//! `backup run` (a BackupJob run now) and `backup history` (its runs, from its status).

use crate::api::Kind;
use crate::controllers::{Context, RecordKey, backup_job};
use crate::docker::Docker;
use crate::plan::backup_job::Run;
use crate::report::table::Table;

use super::{Failure, GlobalOpts};

/// How `backup history` prints the runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryOutput {
    Table,
    Json,
}

/// Starts a run of the BackupJob `name` now and prints its service's name.
///
/// # Errors
/// No such job, or a run still active under `Forbid` without `force`, or a secret or
/// network it needs missing (exit 1); etcd or dockerd failing (exit 1).
pub async fn run(global: &GlobalOpts, name: &str, force: bool) -> Result<u8, Failure> {
    let store = global.store().await?;
    let docker = Docker::connect()
        .await
        .map_err(Failure::error)?
        .scoped(&global.prefix);
    let ctx = Context::new(store, docker, None, std::time::Duration::from_secs(300));
    match backup_job::run_now(&ctx, name, force)
        .await
        .map_err(Failure::error)?
    {
        Ok(run) => {
            println!("started run {run}");
            Ok(0)
        }
        Err(why) => Err(Failure::Error(why)),
    }
}

/// Prints the runs the status of the BackupJob `name` records, oldest first.
///
/// # Errors
/// No such job (exit 1), etcd failing (exit 1).
pub async fn history(
    global: &GlobalOpts,
    name: &str,
    output: HistoryOutput,
) -> Result<u8, Failure> {
    let store = global.store().await?;
    if store
        .get_record(Kind::BackupJob.as_str(), name)
        .await
        .map_err(Failure::error)?
        .is_none()
    {
        return Err(Failure::Error(format!("no BackupJob named {name:?}")));
    }
    let key = RecordKey::new(Kind::BackupJob, name);
    let status = store
        .get_status(key.kind.as_str(), &key.name)
        .await
        .map_err(Failure::error)?;
    let runs: Vec<Run> = status
        .and_then(|s| s.value.pointer("/backupJob/runs").cloned())
        .and_then(|runs| serde_json::from_value(runs).ok())
        .unwrap_or_default();
    match output {
        HistoryOutput::Json => {
            let text = serde_json::to_string_pretty(&runs).map_err(Failure::error)?;
            println!("{text}");
        }
        HistoryOutput::Table => print!("{}", table(&runs)),
    }
    Ok(0)
}

fn table(runs: &[Run]) -> String {
    let mut table = Table::new([
        "RUN",
        "SCHEDULED",
        "STARTED",
        "DURATION",
        "RESULT",
        "EXIT",
        "MESSAGE",
    ]);
    for run in runs {
        let duration = run
            .duration()
            .map(|d| format!("{:.1}s", d.as_secs_f64()))
            .unwrap_or_default();
        let scheduled = if run.manual {
            format!("{} (manual)", run.scheduled)
        } else {
            run.scheduled.to_string()
        };
        table.row([
            run.name.clone(),
            scheduled,
            run.started
                .round(jiff::Unit::Second)
                .unwrap_or(run.started)
                .to_string(),
            duration,
            run.result.to_string(),
            run.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            run.message.clone(),
        ]);
    }
    table.render()
}
