//! The scheduling rules with fixed times: run times and names, daylight-saving
//! transitions, concurrency policies, deadlines, timeouts, history limits, staleness.

use std::time::Duration;

use jiff::Timestamp;

use super::*;
use crate::api::backup_job::BackupJobSpec;

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn spec(schedule: &str, zone: Option<&str>) -> BackupJobSpec {
    let mut value = serde_json::json!({"schedule": schedule, "image": "local/busybox:1"});
    if let Some(zone) = zone {
        value["timeZone"] = zone.into();
    }
    serde_json::from_value(value).unwrap()
}

fn settings(schedule: &str) -> Settings {
    Settings {
        schedule: Schedule::of(&spec(schedule, None)).unwrap(),
        concurrency: ConcurrencyPolicy::Forbid,
        starting_deadline: None,
        timeout: None,
        history: History {
            successful: 2,
            failed: 1,
        },
        suspend: false,
        stale_after: None,
    }
}

/// The run times of `schedule` in `zone` after `from`, in UTC.
fn times(schedule: &str, zone: &str, from: &str, n: usize) -> Vec<String> {
    let schedule = Schedule::of(&spec(schedule, Some(zone))).unwrap();
    let mut out = Vec::new();
    let mut t = at(from);
    for _ in 0..n {
        t = schedule.next_after(t).unwrap();
        out.push(t.to_string());
    }
    out
}

fn status_at(through: &str) -> BackupJobStatus {
    BackupJobStatus {
        scheduled_through: at(through),
        first_seen: at(through),
        last_success: None,
        next_run: None,
        runs: Vec::new(),
    }
}

fn running(name: &str, scheduled: &str) -> Run {
    Run {
        name: name.into(),
        scheduled: at(scheduled),
        manual: false,
        started: at(scheduled),
        finished: None,
        result: RunResult::Running,
        exit_code: None,
        message: String::new(),
        log: Vec::new(),
    }
}

fn live(name: &str, scheduled: &str, state: LiveState) -> LiveRun {
    LiveRun {
        name: name.into(),
        scheduled: at(scheduled),
        manual: false,
        created: at(scheduled),
        state,
        log: vec!["done".into()],
    }
}

fn ended(at_: &str, exit_code: i64) -> LiveState {
    LiveState::Ended {
        at: at(at_),
        exit_code: Some(exit_code),
        error: if exit_code == 0 {
            String::new()
        } else {
            format!("task: non-zero exit ({exit_code})")
        },
    }
}

#[test]
fn run_names_are_the_job_and_the_utc_run_time() {
    assert_eq!(
        run_name("kittenapi-db", at("2026-12-01T03:00:00Z")),
        "kittenapi-db-20261201t030000z"
    );
}

#[test]
fn a_time_zone_moves_the_run_times() {
    assert_eq!(
        times("0 3 * * *", "Europe/Berlin", "2026-12-01T00:00:00Z", 1),
        ["2026-12-01T02:00:00Z"]
    );
    assert_eq!(
        times("*/20 * * * * *", "UTC", "2026-12-01T00:00:00Z", 2),
        ["2026-12-01T00:00:20Z", "2026-12-01T00:00:40Z"]
    );
}

#[test]
fn a_run_time_in_the_skipped_hour_runs_once_after_the_gap() {
    // Berlin springs forward on 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC).
    assert_eq!(
        times("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", 3),
        [
            "2026-03-29T01:00:00Z",
            "2026-03-30T00:30:00Z",
            "2026-03-31T00:30:00Z"
        ]
    );
}

#[test]
fn a_run_time_in_the_repeated_hour_runs_once() {
    // Berlin falls back on 2026-10-25: 03:00 CEST becomes 02:00 CET, 02:30 comes twice.
    assert_eq!(
        times("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 2),
        ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
    );
}

#[test]
fn the_first_pass_only_notes_the_time_and_the_next_run() {
    let now = at("2026-12-01T10:00:05Z");
    let plan = plan(&settings("0 3 * * *"), "job", now, None, &[], true);
    assert_eq!(plan.start, None);
    assert_eq!(plan.status.scheduled_through, now);
    assert_eq!(plan.status.next_run, Some(at("2026-12-02T03:00:00Z")));
    assert_eq!(plan.wake, Some(Duration::from_secs(17 * 3600 - 5)));
}

#[test]
fn a_due_run_starts_once() {
    let s = settings("*/2 * * * * *");
    let previous = status_at("2026-12-01T10:00:00Z");
    let now = at("2026-12-01T10:00:02.3Z");
    let first = plan(&s, "job", now, Some(&previous), &[], true);
    assert_eq!(first.start, Some(at("2026-12-01T10:00:02Z")));
    assert_eq!(first.status.runs[0].name, "job-20261201t100002z");
    assert_eq!(first.status.runs[0].result, RunResult::Running);
    // The next pass sees its service: adopted as it was, not started again.
    let service = live(
        "job-20261201t100002z",
        "2026-12-01T10:00:02Z",
        LiveState::Active,
    );
    let again = plan(&s, "job", now, Some(&first.status), &[service], true);
    assert_eq!(again.start, None);
    assert_eq!(again.status.runs, first.status.runs);
    assert_eq!(
        again.wake,
        Some(ACTIVE_POLL.min(Duration::from_millis(1700)))
    );
}

#[test]
fn a_run_service_the_status_lost_is_adopted_not_started_again() {
    // The operator created the service, then died before writing the status.
    let s = settings("*/2 * * * * *");
    let previous = status_at("2026-12-01T10:00:00Z");
    let service = live(
        "job-20261201t100002z",
        "2026-12-01T10:00:02Z",
        ended("2026-12-01T10:00:03Z", 0),
    );
    let plan = plan(
        &s,
        "job",
        at("2026-12-01T10:00:03.5Z"),
        Some(&previous),
        &[service],
        true,
    );
    assert_eq!(plan.start, None, "{plan:?}");
    assert_eq!(plan.status.runs.len(), 1);
    assert_eq!(plan.status.runs[0].result, RunResult::Succeeded);
    assert_eq!(plan.status.last_success, Some(at("2026-12-01T10:00:03Z")));
    assert_eq!(plan.ended.len(), 1);
}

#[test]
fn an_ended_run_records_its_exit_code_and_log() {
    let s = settings("0 3 * * *");
    let mut previous = status_at("2026-12-01T03:00:00Z");
    previous
        .runs
        .push(running("job-20261201t030000z", "2026-12-01T03:00:00Z"));
    let service = live(
        "job-20261201t030000z",
        "2026-12-01T03:00:00Z",
        ended("2026-12-01T03:00:04Z", 3),
    );
    let plan = plan(
        &s,
        "job",
        at("2026-12-01T03:00:05Z"),
        Some(&previous),
        &[service],
        true,
    );
    let run = &plan.status.runs[0];
    assert_eq!(
        (run.result, run.exit_code, run.message.as_str()),
        (RunResult::Failed, Some(3), "task: non-zero exit (3)")
    );
    assert_eq!(run.log, ["done"]);
    assert_eq!(run.duration(), Some(Duration::from_secs(4)));
}

#[test]
fn forbid_skips_a_run_time_while_a_run_is_active() {
    let s = settings("*/2 * * * * *");
    let mut previous = status_at("2026-12-01T10:00:02Z");
    previous
        .runs
        .push(running("job-20261201t100002z", "2026-12-01T10:00:02Z"));
    let service = live(
        "job-20261201t100002z",
        "2026-12-01T10:00:02Z",
        LiveState::Active,
    );
    let plan = plan(
        &s,
        "job",
        at("2026-12-01T10:00:04.1Z"),
        Some(&previous),
        &[service],
        true,
    );
    assert_eq!(plan.start, None);
    assert_eq!(
        plan.skips,
        [Skip::Forbidden {
            scheduled: at("2026-12-01T10:00:04Z"),
            active: "job-20261201t100002z".into()
        }]
    );
    assert_eq!(plan.status.scheduled_through, at("2026-12-01T10:00:04Z"));
}

#[test]
fn allow_starts_beside_and_replace_stops_the_active_run() {
    let mut s = settings("*/2 * * * * *");
    let mut previous = status_at("2026-12-01T10:00:02Z");
    previous
        .runs
        .push(running("job-20261201t100002z", "2026-12-01T10:00:02Z"));
    let service = live(
        "job-20261201t100002z",
        "2026-12-01T10:00:02Z",
        LiveState::Active,
    );
    let now = at("2026-12-01T10:00:04.1Z");
    s.concurrency = ConcurrencyPolicy::Allow;
    let allowed = plan(
        &s,
        "job",
        now,
        Some(&previous),
        std::slice::from_ref(&service),
        true,
    );
    assert_eq!(allowed.start, Some(at("2026-12-01T10:00:04Z")));
    assert!(allowed.stop.is_empty());
    s.concurrency = ConcurrencyPolicy::Replace;
    let replaced = plan(&s, "job", now, Some(&previous), &[service], true);
    assert_eq!(replaced.start, Some(at("2026-12-01T10:00:04Z")));
    assert_eq!(
        replaced.stop,
        [(
            "job-20261201t100002z".to_owned(),
            StopReason::Replaced("job-20261201t100004z".into())
        )]
    );
    let old = &replaced.status.runs[0];
    assert_eq!(old.result, RunResult::Failed);
    assert_eq!(old.message, "replaced by job-20261201t100004z");
    assert_eq!(replaced.ended.len(), 1);
}

#[test]
fn a_run_past_its_timeout_is_stopped_as_failed() {
    let mut s = settings("0 3 * * *");
    s.timeout = Some(Duration::from_secs(5));
    let mut previous = status_at("2026-12-01T03:00:00Z");
    previous
        .runs
        .push(running("job-20261201t030000z", "2026-12-01T03:00:00Z"));
    let service = live(
        "job-20261201t030000z",
        "2026-12-01T03:00:00Z",
        LiveState::Active,
    );
    let early = plan(
        &s,
        "job",
        at("2026-12-01T03:00:01Z"),
        Some(&previous),
        std::slice::from_ref(&service),
        true,
    );
    assert!(early.stop.is_empty());
    assert_eq!(early.wake, Some(ACTIVE_POLL));
    let late = plan(
        &s,
        "job",
        at("2026-12-01T03:00:06Z"),
        Some(&previous),
        &[service],
        true,
    );
    assert_eq!(
        late.stop,
        [(
            "job-20261201t030000z".to_owned(),
            StopReason::Timeout(Duration::from_secs(5))
        )]
    );
    assert_eq!(late.status.runs[0].message, "timed out after 5s");
}

#[test]
fn after_an_outage_the_newest_run_inside_the_deadline_runs_and_older_ones_are_skipped() {
    let mut s = settings("*/2 * * * * *");
    s.starting_deadline = Some(Duration::from_secs(5));
    let previous = status_at("2026-12-01T10:00:00Z");
    let plan_at = |now: &str| plan(&s, "job", at(now), Some(&previous), &[], true);
    let inside = plan_at("2026-12-01T10:00:07Z");
    assert_eq!(inside.start, Some(at("2026-12-01T10:00:06Z")));
    assert_eq!(
        inside.skips,
        [Skip::Missed {
            count: 2,
            late: false
        }]
    );
    // Every run time is past the deadline: all skipped, one event, nothing started.
    let mut s = settings("0 3 * * *");
    s.starting_deadline = Some(Duration::from_secs(600));
    let previous = status_at("2026-11-29T12:00:00Z");
    let late = plan(
        &s,
        "job",
        at("2026-12-01T04:00:00Z"),
        Some(&previous),
        &[],
        true,
    );
    assert_eq!(late.start, None);
    assert_eq!(
        late.skips,
        [Skip::Missed {
            count: 2,
            late: true
        }]
    );
    assert_eq!(late.status.scheduled_through, at("2026-12-01T03:00:00Z"));
}

#[test]
fn a_run_that_cannot_start_stays_due_within_its_deadline() {
    let s = settings("*/2 * * * * *");
    let previous = status_at("2026-12-01T10:00:00Z");
    let waiting = plan(
        &s,
        "job",
        at("2026-12-01T10:00:02.5Z"),
        Some(&previous),
        &[],
        false,
    );
    assert_eq!(waiting.start, None);
    assert_eq!(waiting.status.scheduled_through, at("2026-12-01T10:00:00Z"));
}

#[test]
fn finished_run_services_beyond_the_history_limits_are_removed() {
    let s = settings("0 3 * * *");
    let mut previous = status_at("2026-12-05T03:00:00Z");
    let mut services = Vec::new();
    for (day, exit) in [(1, 0), (2, 1), (3, 0), (4, 0), (5, 1)] {
        let time = format!("2026-12-0{day}T03:00:00Z");
        let name = run_name("job", at(&time));
        previous.runs.push(running(&name, &time));
        services.push(live(
            &name,
            &time,
            ended(&format!("2026-12-0{day}T03:00:09Z"), exit),
        ));
    }
    let plan = plan(
        &s,
        "job",
        at("2026-12-05T04:00:00Z"),
        Some(&previous),
        &services,
        true,
    );
    assert_eq!(
        plan.remove,
        ["job-20261201t030000z", "job-20261202t030000z"],
        "two successful and one failed kept"
    );
    assert_eq!(plan.status.runs.len(), 5, "the history keeps them");
}

#[test]
fn the_history_is_bounded() {
    let s = settings("0 3 * * *");
    let mut previous = status_at("2026-12-01T03:00:00Z");
    for i in 0..(HISTORY_KEPT + 5) {
        let time = Timestamp::from_second(1_700_000_000 + i64::try_from(i).unwrap() * 60).unwrap();
        let mut run = running(&run_name("job", time), &time.to_string());
        run.result = RunResult::Failed;
        run.finished = Some(time);
        previous.runs.push(run);
    }
    let plan = plan(
        &s,
        "job",
        at("2026-12-01T04:00:00Z"),
        Some(&previous),
        &[],
        true,
    );
    assert_eq!(plan.status.runs.len(), HISTORY_KEPT);
    assert_eq!(plan.status.runs.last(), previous.runs.last());
}

#[test]
fn no_success_within_stale_after_is_stale() {
    let mut s = settings("0 3 * * *");
    s.stale_after = Some(Duration::from_secs(3600));
    let previous = status_at("2026-12-01T10:00:00Z");
    let fresh = plan(
        &s,
        "job",
        at("2026-12-01T10:30:00Z"),
        Some(&previous),
        &[],
        true,
    );
    assert!(!fresh.stale);
    assert_eq!(fresh.wake, Some(Duration::from_secs(1800)));
    let stale = plan(
        &s,
        "job",
        at("2026-12-01T11:00:01Z"),
        Some(&previous),
        &[],
        true,
    );
    assert!(stale.stale);
    let mut succeeded = previous.clone();
    succeeded.last_success = Some(at("2026-12-01T10:30:00Z"));
    let after_success = plan(
        &s,
        "job",
        at("2026-12-01T11:00:01Z"),
        Some(&succeeded),
        &[],
        true,
    );
    assert!(!after_success.stale);
}

#[test]
fn a_suspended_job_starts_nothing_and_does_not_catch_up() {
    let mut s = settings("*/2 * * * * *");
    s.suspend = true;
    let previous = status_at("2026-12-01T10:00:00Z");
    let now = at("2026-12-01T10:00:09Z");
    let suspended = plan(&s, "job", now, Some(&previous), &[], true);
    assert_eq!(suspended.start, None);
    assert!(suspended.skips.is_empty());
    assert_eq!(suspended.status.scheduled_through, now);
    assert_eq!(suspended.status.next_run, None);
    s.suspend = false;
    let resumed = plan(
        &s,
        "job",
        at("2026-12-01T10:00:09.5Z"),
        Some(&suspended.status),
        &[],
        true,
    );
    assert_eq!(resumed.start, None);
}

#[test]
fn a_run_service_removed_while_running_is_failed() {
    let s = settings("0 3 * * *");
    let mut previous = status_at("2026-12-01T03:00:00Z");
    previous
        .runs
        .push(running("job-20261201t030000z", "2026-12-01T03:00:00Z"));
    let plan = plan(
        &s,
        "job",
        at("2026-12-01T03:01:00Z"),
        Some(&previous),
        &[],
        true,
    );
    assert_eq!(plan.status.runs[0].result, RunResult::Failed);
    assert_eq!(plan.ended.len(), 1);
}

#[test]
fn run_spec_is_a_job_of_one_task_never_restarted() {
    let mut job = spec("0 3 * * *", None);
    job.command = vec!["sh".into(), "-c".into(), "true".into()];
    let attachments = Attachments {
        secrets: vec![("pg".into(), "pg-v2".into(), "sid".into())],
        networks: vec!["nid".into()],
    };
    let spec = run_spec(
        "job",
        &job,
        at("2026-12-01T03:00:00Z"),
        true,
        Default::default(),
        &attachments,
    );
    let value = serde_json::to_value(&spec).unwrap();
    assert_eq!(value["Name"], "job-20261201t030000z");
    assert_eq!(value["Mode"]["ReplicatedJob"]["TotalCompletions"], 1);
    assert_eq!(value["TaskTemplate"]["RestartPolicy"]["Condition"], "none");
    assert_eq!(value["TaskTemplate"]["ContainerSpec"]["Args"][2], "true");
    assert_eq!(
        value["TaskTemplate"]["ContainerSpec"]["Secrets"][0]["File"]["Name"],
        "pg"
    );
    assert_eq!(value["TaskTemplate"]["Networks"][0]["Target"], "nid");
    assert_eq!(value["Labels"][LABEL_TRIGGER], "manual");
    assert_eq!(value["Labels"][LABEL_SCHEDULED], "2026-12-01T03:00:00Z");
}
