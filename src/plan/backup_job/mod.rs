//! What a BackupJob pass does, decided from the schedule, the time, the status' history
//! and the live run services: which run to start, which due runs to skip, which active
//! runs to stop, which finished run services to remove, and the history that results.
//!
//! # Guarantees
//! - A run time is handled once: `scheduledThrough` in the status moves past it when
//!   it is started or skipped, and a pass never looks at times before it again.
//! - A run service the status does not know (an operator that died between creating it
//!   and writing the status, a run started by `backup run`) is adopted, never started again.
//! - Pure: the caller passes the time in, so every rule is unit-tested with fixed times.

mod schedule;
mod spec;
#[cfg(test)]
mod tests;

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::api::backup_job::{ConcurrencyPolicy, History};
pub use schedule::{Due, Schedule, run_name};
pub use spec::{Attachments, LABEL_SCHEDULED, LABEL_TRIGGER, TAIL_LINES, run_spec};

/// How many finished runs the status keeps beyond those whose services still exist.
pub const HISTORY_KEPT: usize = 20;

/// While a run is active, how often a pass looks at its task: job completions come with
/// no Docker event that names the job.
pub const ACTIVE_POLL: Duration = Duration::from_secs(2);

/// How a run ended, or that it has not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunResult {
    Running,
    Succeeded,
    Failed,
}

impl std::fmt::Display for RunResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// One run in the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// The run's service: `<job>-<UTC timestamp>`.
    pub name: String,
    /// The run time it was started for (the time `backup run` was asked, for a manual run).
    pub scheduled: Timestamp,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub manual: bool,
    pub started: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<Timestamp>,
    pub result: RunResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// Why it failed when no exit code says it: timed out, replaced, rejected by swarm.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The last lines of its output (none for a job with `sensitiveLogs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<String>,
}

impl Run {
    /// How long it ran, once it ended.
    #[must_use]
    pub fn duration(&self) -> Option<Duration> {
        let finished = self.finished?;
        Duration::try_from(finished.duration_since(self.started)).ok()
    }
}

/// The BackupJob part of a record's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupJobStatus {
    /// Run times up to here are handled: started or skipped.
    pub scheduled_through: Timestamp,
    /// When the job was first seen: where `staleAfter` counts from before a first success.
    pub first_seen: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<Timestamp>,
    /// Oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<Run>,
}

/// What the swarm says about a run service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveState {
    /// Its task is not done (or not made yet).
    Active,
    /// Its task ended: exit code 0 is success.
    Ended {
        at: Timestamp,
        exit_code: Option<i64>,
        /// swarm's error for a task that failed or was rejected.
        error: String,
    },
}

/// A run service found in the swarm, by owner label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveRun {
    pub name: String,
    pub scheduled: Timestamp,
    pub manual: bool,
    pub created: Timestamp,
    pub state: LiveState,
    /// Its output's last lines, read for a run that ended and is not yet recorded so.
    pub log: Vec<String>,
}

/// What the spec says about scheduling.
#[derive(Debug, Clone)]
pub struct Settings {
    pub schedule: Schedule,
    pub concurrency: ConcurrencyPolicy,
    pub starting_deadline: Option<Duration>,
    pub timeout: Option<Duration>,
    pub history: History,
    pub suspend: bool,
    pub stale_after: Option<Duration>,
}

/// Why an active run is stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    Timeout(Duration),
    /// `Replace`: a newer run takes its place.
    Replaced(String),
}

/// Run times passed over without a run, for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// `count` run times not run while the operator was down: all of them when even the
    /// newest is past the starting deadline (`late`), else those older than the newest.
    Missed { count: usize, late: bool },
    /// `Forbid`: the run time came while `active` still ran.
    Forbidden {
        scheduled: Timestamp,
        active: String,
    },
}

/// What one pass does.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The run time to start a run for now.
    pub start: Option<Timestamp>,
    pub skips: Vec<Skip>,
    /// Active run services to remove, and why.
    pub stop: Vec<(String, StopReason)>,
    /// Finished run services beyond the history limits.
    pub remove: Vec<String>,
    /// Runs that ended since the last status (for events and metrics).
    pub ended: Vec<Run>,
    /// The status after the pass, with the run started and the runs stopped recorded.
    pub status: BackupJobStatus,
    /// No successful run within `staleAfter`.
    pub stale: bool,
    /// When a pass is next needed: the next run time, a timeout, staleness, an active run.
    pub wake: Option<Duration>,
}

/// Plans one pass at `now`. `can_start` is false while a run cannot be made (a secret
/// or network it needs is missing): a due run then stays due, within its deadline.
#[must_use]
pub fn plan(
    settings: &Settings,
    job: &str,
    now: Timestamp,
    previous: Option<&BackupJobStatus>,
    live: &[LiveRun],
    can_start: bool,
) -> Plan {
    let mut status = previous.cloned().unwrap_or(BackupJobStatus {
        scheduled_through: now,
        first_seen: now,
        last_success: None,
        next_run: None,
        runs: Vec::new(),
    });
    let mut ended = merge(&mut status.runs, live, now);
    // An adopted run's time is handled too: it must not be started again.
    let adopted = status
        .runs
        .iter()
        .filter(|r| !r.manual)
        .map(|r| r.scheduled);
    status.scheduled_through = adopted.fold(status.scheduled_through, Timestamp::max);
    let mut stop = timeouts(settings, &mut status.runs, now);
    let mut skips = Vec::new();
    let mut start = None;
    if settings.suspend {
        status.scheduled_through = status.scheduled_through.max(now);
    } else if let Some(due) = settings.schedule.due(status.scheduled_through, now) {
        let newest = due.newest;
        let late = settings
            .starting_deadline
            .is_some_and(|deadline| now.duration_since(newest) > signed(deadline));
        if late {
            skips.push(Skip::Missed {
                count: due.count,
                late: true,
            });
            status.scheduled_through = newest;
        } else {
            if due.count > 1 {
                skips.push(Skip::Missed {
                    count: due.count - 1,
                    late: false,
                });
            }
            let active = status.runs.iter().find(|r| r.result == RunResult::Running);
            match (settings.concurrency, active) {
                (ConcurrencyPolicy::Forbid, Some(active)) => {
                    skips.push(Skip::Forbidden {
                        scheduled: newest,
                        active: active.name.clone(),
                    });
                    status.scheduled_through = newest;
                }
                _ if !can_start => {}
                (policy, _) => {
                    let name = run_name(job, newest);
                    if policy == ConcurrencyPolicy::Replace {
                        stop.extend(stop_all(&mut status.runs, now, &name));
                    }
                    status.runs.push(Run {
                        name,
                        scheduled: newest,
                        manual: false,
                        started: now,
                        finished: None,
                        result: RunResult::Running,
                        exit_code: None,
                        message: String::new(),
                        log: Vec::new(),
                    });
                    start = Some(newest);
                    status.scheduled_through = newest;
                }
            }
        }
    }
    ended.extend(
        status
            .runs
            .iter()
            .filter(|r| stop.iter().any(|(name, _)| *name == r.name))
            .cloned(),
    );
    let live_names: Vec<&str> = live.iter().map(|r| r.name.as_str()).collect();
    let remove = beyond_limits(&status.runs, &live_names, settings.history);
    trim(&mut status.runs, &live_names);
    status.last_success = status
        .runs
        .iter()
        .filter(|r| r.result == RunResult::Succeeded)
        .filter_map(|r| r.finished)
        .chain(status.last_success)
        .max();
    status.next_run = (!settings.suspend)
        .then(|| {
            settings
                .schedule
                .next_after(status.scheduled_through.max(now))
        })
        .flatten();
    let stale_at = settings
        .stale_after
        .map(|after| status.last_success.unwrap_or(status.first_seen) + signed(after));
    let stale = stale_at.is_some_and(|at| at <= now);
    let active = status.runs.iter().any(|r| r.result == RunResult::Running);
    let deadlines = status
        .runs
        .iter()
        .filter(|r| r.result == RunResult::Running)
        .filter_map(|r| settings.timeout.map(|t| r.started + signed(t)));
    let wake = status
        .next_run
        .into_iter()
        .chain(deadlines)
        .chain(stale_at.filter(|at| *at > now))
        .chain(active.then(|| now + signed(ACTIVE_POLL)))
        .min()
        .map(|at| Duration::try_from(at.duration_since(now)).unwrap_or_default());
    Plan {
        start,
        skips,
        stop,
        remove,
        ended,
        status,
        stale,
        wake,
    }
}

fn signed(d: Duration) -> jiff::SignedDuration {
    jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX)
}

/// Brings the history up to what the swarm says: live state into the runs it knows,
/// runs it does not know adopted. Returns the runs that ended since.
fn merge(runs: &mut Vec<Run>, live: &[LiveRun], now: Timestamp) -> Vec<Run> {
    let mut ended = Vec::new();
    for run in runs.iter_mut().filter(|r| r.result == RunResult::Running) {
        match live.iter().find(|l| l.name == run.name) {
            Some(l) => {
                if let LiveState::Ended { .. } = l.state {
                    record_end(run, l);
                    ended.push(run.clone());
                }
            }
            None => {
                run.result = RunResult::Failed;
                run.finished = Some(now);
                run.message = "its service was removed before it ended".into();
                ended.push(run.clone());
            }
        }
    }
    for l in live {
        if runs.iter().any(|r| r.name == l.name) {
            continue;
        }
        let mut run = Run {
            name: l.name.clone(),
            scheduled: l.scheduled,
            manual: l.manual,
            started: l.created,
            finished: None,
            result: RunResult::Running,
            exit_code: None,
            message: String::new(),
            log: Vec::new(),
        };
        if let LiveState::Ended { .. } = l.state {
            record_end(&mut run, l);
            ended.push(run.clone());
        }
        runs.push(run);
    }
    runs.sort_by(|a, b| (a.scheduled, &a.name).cmp(&(b.scheduled, &b.name)));
    ended
}

fn record_end(run: &mut Run, live: &LiveRun) {
    let LiveState::Ended {
        at,
        exit_code,
        error,
    } = &live.state
    else {
        return;
    };
    run.finished = Some(*at);
    run.exit_code = *exit_code;
    run.result = if *exit_code == Some(0) {
        RunResult::Succeeded
    } else {
        RunResult::Failed
    };
    if run.result == RunResult::Failed {
        run.message.clone_from(error);
    }
    run.log.clone_from(&live.log);
}

/// Active runs past `timeoutSeconds`, recorded as failed.
fn timeouts(settings: &Settings, runs: &mut [Run], now: Timestamp) -> Vec<(String, StopReason)> {
    let Some(timeout) = settings.timeout else {
        return Vec::new();
    };
    let mut stop = Vec::new();
    for run in runs.iter_mut().filter(|r| {
        r.result == RunResult::Running && now.duration_since(r.started) > signed(timeout)
    }) {
        run.result = RunResult::Failed;
        run.finished = Some(now);
        run.message = format!("timed out after {}s", timeout.as_secs());
        stop.push((run.name.clone(), StopReason::Timeout(timeout)));
    }
    stop
}

/// Every active run, recorded as replaced by `by`.
fn stop_all(runs: &mut [Run], now: Timestamp, by: &str) -> Vec<(String, StopReason)> {
    let mut stop = Vec::new();
    for run in runs.iter_mut().filter(|r| r.result == RunResult::Running) {
        run.result = RunResult::Failed;
        run.finished = Some(now);
        run.message = format!("replaced by {by}");
        stop.push((run.name.clone(), StopReason::Replaced(by.to_owned())));
    }
    stop
}

/// Finished run services beyond `history`'s limits, oldest first.
fn beyond_limits(runs: &[Run], live: &[&str], history: History) -> Vec<String> {
    let mut remove = Vec::new();
    for (result, keep) in [
        (RunResult::Succeeded, history.successful),
        (RunResult::Failed, history.failed),
    ] {
        let with_service: Vec<&Run> = runs
            .iter()
            .filter(|r| r.result == result && live.contains(&r.name.as_str()))
            .collect();
        let extra = with_service
            .len()
            .saturating_sub(usize::try_from(keep).unwrap_or(usize::MAX));
        remove.extend(with_service[..extra].iter().map(|r| r.name.clone()));
    }
    remove.sort();
    remove
}

/// Bounds the history: every run whose service is still there (or is being started),
/// and the newest others up to [`HISTORY_KEPT`] in all.
fn trim(runs: &mut Vec<Run>, live: &[&str]) {
    let mut budget = HISTORY_KEPT;
    let mut keep: Vec<bool> = vec![false; runs.len()];
    for (i, run) in runs.iter().enumerate().rev() {
        let has_service = live.contains(&run.name.as_str()) || run.result == RunResult::Running;
        if has_service || budget > 0 {
            keep[i] = true;
            budget = budget.saturating_sub(1);
        }
    }
    let mut flags = keep.into_iter();
    runs.retain(|_| flags.next().unwrap_or(false));
}
