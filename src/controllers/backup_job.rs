//! The BackupJob reconciler: a cron schedule whose runs are swarm `replicated-job`
//! services named `<job>-<UTC timestamp>`, with a history, a concurrency policy,
//! deadlines, retention and a staleness alert.
//!
//! # Expected flow
//! Observe the job's run services (by owner label) and their tasks, resolve its secrets
//! and networks, plan the pass from the schedule, the time and the history
//! ([`crate::plan::backup_job`]), execute it (stop, start, remove), then write the
//! status and the events. The pass asks to run again when something is next due: the
//! next run time, an active run's timeout, the moment the job goes stale. Nothing in a
//! pass waits for time to pass.
//!
//! # Guarantees
//! - Only the leader reconciles, and its writes are fenced.
//! - A run time is started at most once: it is recorded in the status once started
//!   (or skipped), its service name is derived from it, and a second create of that
//!   name is refused by swarm and found to be ours.
//! - A job with `sensitiveLogs` keeps no output.
//!
//! # Caveats
//! The run services' images are pulled without registry credentials for now (one
//! place, `backup_run::start`, sends them).

use jiff::Timestamp;

use super::backup_run::{self, Found};
use super::status::{Phase, Status};
use super::{Context, Error, RecordKey};
use crate::api::Spec;
use crate::api::backup_job::{BackupJobSpec, ConcurrencyPolicy, parse_stale_after};
use crate::metrics::Metrics;
use crate::plan::backup_job::{
    self as plan, Plan, RunResult, Schedule, Settings, Skip, StopReason,
};
use crate::runtime::Action;
use crate::store::Versioned;

fn spec_of(stored: Versioned) -> Result<BackupJobSpec, String> {
    match super::parse_record(stored.value)?.spec {
        Spec::BackupJob(spec) => Ok(spec),
        _ => Err("record is not a BackupJob".into()),
    }
}

/// The scheduling settings of `spec`.
///
/// # Errors
/// A schedule, zone or duration that does not parse (apply rejects them first).
pub fn settings(spec: &BackupJobSpec) -> Result<Settings, String> {
    let secs = std::time::Duration::from_secs;
    Ok(Settings {
        schedule: Schedule::of(spec)?,
        concurrency: spec.concurrency_policy,
        starting_deadline: spec.starting_deadline_seconds.map(secs),
        timeout: spec.timeout_seconds.map(secs),
        history: spec.history,
        suspend: spec.suspend,
        stale_after: spec
            .stale_after
            .as_deref()
            .map(parse_stale_after)
            .transpose()?,
    })
}

/// Converges one BackupJob record.
///
/// # Errors
/// Failures of etcd or dockerd; a permanent one makes the record `Failed`.
pub async fn reconcile(
    ctx: &Context,
    key: &RecordKey,
    stored: Option<Versioned>,
    metrics: Option<&Metrics>,
) -> Result<Action, Error> {
    let previous = ctx.read_status(key).await?;
    let known = previous.as_ref().and_then(|s| s.backup_job.as_ref());
    let Some(stored) = stored else {
        return forget(ctx, key, metrics).await;
    };
    let generation = stored.mod_revision;
    let (spec, settings) = match spec_of(stored).and_then(|spec| Ok((settings(&spec)?, spec))) {
        Ok((settings, spec)) => (spec, settings),
        Err(message) => return ctx.fail(key, generation, message).await,
    };
    let containers = backup_run::stopped_containers(ctx, &key.name).await?;
    let found = backup_run::observe(ctx, &key.name, Some(&spec), known).await?;
    backup_run::remove_leftovers(ctx, &containers, &found).await?;
    let attachments = backup_run::attachments(ctx, &spec).await?;
    let live: Vec<_> = found.iter().map(|f| f.run.clone()).collect();
    let now = Timestamp::now();
    let mut plan = plan::plan(&settings, &key.name, now, known, &live, attachments.is_ok());
    execute(
        ctx,
        key,
        &spec,
        &found,
        &mut plan,
        attachments.as_ref().ok(),
    )
    .await?;
    let was_stale = previous
        .as_ref()
        .is_some_and(|s| s.phase == Phase::Degraded);
    if plan.stale && !was_stale {
        let since = plan.status.last_success.map_or_else(
            || "since the job was first seen".to_owned(),
            |at| format!("since {at}"),
        );
        let message = format!("no successful run {since} (staleAfter)");
        ctx.event(key, true, "Stale", message).await;
    }
    let status = status_of(generation, &plan, attachments.err());
    ctx.write_status(key, &status).await?;
    if let Some(m) = metrics {
        for run in &plan.ended {
            let seconds = run.duration().map(|d| d.as_secs_f64());
            m.backup_run_ended(&key.name, run.result == RunResult::Succeeded, seconds);
        }
        if let Some(at) = plan.status.last_success {
            m.backup_last_success(&key.name, at);
        }
    }
    let wake = plan.wake.map_or(ctx.resync, |w| w.min(ctx.resync));
    Ok(Action::requeue(wake))
}

/// Stops, starts and removes what `plan` says, with an event for each, and the skips
/// and ended runs as events.
async fn execute(
    ctx: &Context,
    key: &RecordKey,
    spec: &BackupJobSpec,
    found: &[Found],
    plan: &mut Plan,
    attachments: Option<&plan::Attachments>,
) -> Result<(), Error> {
    for (name, reason) in &plan.stop {
        if let Some(f) = found.iter().find(|f| f.run.name == *name) {
            let log = f.log_before_stop(ctx, spec).await?;
            if let Some(run) = plan.status.runs.iter_mut().find(|r| r.name == *name) {
                run.log = log;
            }
            ctx.docker.remove_service(&f.id).await?;
        }
        let why = match reason {
            StopReason::Timeout(t) => format!("it ran past timeoutSeconds ({}s)", t.as_secs()),
            StopReason::Replaced(by) => format!("concurrencyPolicy Replace: {by} starts"),
        };
        ctx.event(key, true, "Stopped", format!("stopped run {name}: {why}"))
            .await;
    }
    if let (Some(scheduled), Some(attachments)) = (plan.start, attachments) {
        let name = backup_run::start(ctx, &key.name, spec, scheduled, false, attachments).await?;
        ctx.event(
            key,
            false,
            "Started",
            format!("started run {name} (scheduled {scheduled})"),
        )
        .await;
    }
    for name in &plan.remove {
        ctx.docker.remove_service(name).await?;
        ctx.event(
            key,
            false,
            "Removed",
            format!("removed run service {name} (history limits)"),
        )
        .await;
    }
    for skip in &plan.skips {
        let message = match skip {
            Skip::Missed { count, late: true } => {
                format!("skipped {count} missed run(s): past startingDeadlineSeconds")
            }
            Skip::Missed { count, late: false } => {
                format!("skipped {count} missed run(s) older than the newest one, which starts")
            }
            Skip::Forbidden { scheduled, active } => format!(
                "skipped the run at {scheduled}: {active} is still running (concurrencyPolicy Forbid)"
            ),
        };
        ctx.event(key, true, "Skipped", message).await;
    }
    for run in &plan.ended {
        let (warning, reason, how) = match run.result {
            RunResult::Succeeded => (false, "Succeeded", "succeeded".to_owned()),
            _ => (true, "RunFailed", failure(run)),
        };
        ctx.event(key, warning, reason, format!("run {} {how}", run.name))
            .await;
    }
    Ok(())
}

fn failure(run: &plan::Run) -> String {
    match (run.exit_code, run.message.as_str()) {
        (_, m) if m.starts_with("timed out") || m.starts_with("replaced") => format!("failed: {m}"),
        (Some(code), _) => format!("failed with exit code {code}"),
        (None, "") => "failed".into(),
        (None, m) => format!("failed: {m}"),
    }
}

/// The record's status after `plan`; `missing` names what a run would need and is not there.
fn status_of(generation: i64, plan: &Plan, missing: Option<Vec<String>>) -> Status {
    let history = &plan.status;
    let (phase, mut message) = match missing {
        Some(missing) => (
            Phase::Pending,
            format!("waiting for {}", missing.join(", ")),
        ),
        None if plan.stale => (
            Phase::Degraded,
            "no successful run within staleAfter".to_owned(),
        ),
        None => (Phase::Ready, String::new()),
    };
    let mut parts: Vec<String> = Vec::new();
    if !message.is_empty() {
        parts.push(message);
    }
    match history.next_run {
        Some(next) => parts.push(format!("next run {next}")),
        None => parts.push("suspended".into()),
    }
    if let Some(last) = history
        .runs
        .iter()
        .rev()
        .find(|r| r.result != RunResult::Running)
    {
        parts.push(format!("last run {} {}", last.name, last.result));
    }
    message = parts.join("; ");
    Status {
        backup_job: Some(history.clone()),
        ..Status::new(phase, generation).with_message(message)
    }
}

/// After the record is deleted: its run services go, active or not, then their
/// containers, then its status.
async fn forget(
    ctx: &Context,
    key: &RecordKey,
    metrics: Option<&Metrics>,
) -> Result<Action, Error> {
    let containers = backup_run::stopped_containers(ctx, &key.name).await?;
    let found = backup_run::observe(ctx, &key.name, None, None).await?;
    for run in &found {
        ctx.docker.remove_service(&run.id).await?;
        let message = format!("removed run service {}", run.run.name);
        ctx.event(key, false, "Removed", message).await;
    }
    backup_run::remove_leftovers(ctx, &containers, &[]).await?;
    if let Some(m) = metrics {
        m.backup_job_deleted(&key.name);
    }
    // The removed services' containers stop a moment later: one more pass removes them.
    ctx.forget(key, !found.is_empty() || !containers.is_empty())
        .await
}

/// Starts a run of the job `name` now, for `backup run`: as the schedule would, it
/// obeys the concurrency policy unless `force`. The controller adopts the run into the
/// history when it next looks.
///
/// # Errors
/// The outer error is etcd or dockerd failing; the inner one says why no run starts
/// (no such job, a run still active under `Forbid`, a secret or network missing).
pub async fn run_now(
    ctx: &Context,
    name: &str,
    force: bool,
) -> Result<Result<String, String>, Error> {
    let Some(stored) = ctx.store.get_record("BackupJob", name).await? else {
        return Ok(Err(format!("no BackupJob named {name:?}")));
    };
    let spec = match spec_of(stored) {
        Ok(spec) => spec,
        Err(message) => return Ok(Err(message)),
    };
    let key = RecordKey::new(crate::api::Kind::BackupJob, name);
    let status = ctx.read_status(&key).await?;
    let known = status.as_ref().and_then(|s| s.backup_job.as_ref());
    let found = backup_run::observe(ctx, name, None, known).await?;
    let active: Vec<&Found> = found
        .iter()
        .filter(|f| f.run.state == plan::LiveState::Active)
        .collect();
    if !force && !active.is_empty() {
        match spec.concurrency_policy {
            ConcurrencyPolicy::Forbid => {
                return Ok(Err(format!(
                    "run {} is still active and concurrencyPolicy is Forbid (--force starts one anyway)",
                    active[0].run.name
                )));
            }
            ConcurrencyPolicy::Replace => {
                for f in &active {
                    ctx.docker.remove_service(&f.id).await?;
                }
            }
            ConcurrencyPolicy::Allow => {}
        }
    }
    let attachments = match backup_run::attachments(ctx, &spec).await? {
        Ok(a) => a,
        Err(missing) => return Ok(Err(format!("waiting for {}", missing.join(", ")))),
    };
    let now = Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH);
    Ok(Ok(backup_run::start(
        ctx,
        name,
        &spec,
        now,
        true,
        &attachments,
    )
    .await?))
}
