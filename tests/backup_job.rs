//! BackupJob against the real etcd and swarm, through the binary: seconds schedules
//! run as replicated-job services, history limits, failures with their exit codes, the
//! concurrency policies, timeouts, suspend, staleness and the metrics; `backup run` and
//! `backup history`; an operator killed while a second one waits, with no run lost
//! inside the starting deadline and none started twice.
//!
//! The scheduling scenarios are independent and share one operator: they run at once,
//! each on its own job, and each deletes its job when its checks passed, so that the
//! machine runs few containers at a time.

mod common;

use std::time::Duration;

use common::Etcd;
use common::backup::{
    Cleanup, Operator, cli, events, eventually, history, put, run_containers, run_services, status,
    volume_lines,
};
use common::controllers::{controllers, pass};
use common::http::{last_write, metric};
use common::swarm::{IMAGE, require_swarm_manager};
use serde_json::{Value, json};
use swarmkeeper::api::Kind;
use swarmkeeper::controllers::RecordKey;
use swarmkeeper::plan::backup_job::RunResult;
use swarmkeeper::store::Store;

/// Long enough for a few runs on a busy machine.
const LIMIT: Duration = Duration::from_secs(60);

fn job_spec(schedule: &str, command: &str, extra: Value) -> Value {
    let mut spec = json!({
        "schedule": schedule,
        "image": IMAGE,
        "command": ["sh", "-c", command],
    });
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    spec
}

async fn delete(store: &Store, name: &str) {
    store
        .delete_records(vec![("BackupJob".into(), name.into(), None)])
        .await
        .expect("delete the record");
}

fn succeeded(runs: &[swarmkeeper::plan::backup_job::Run]) -> usize {
    runs.iter()
        .filter(|r| r.result == RunResult::Succeeded)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_runs_follow_the_policies_limits_and_alerts() {
    require_swarm_manager();
    let store = Etcd::shared().store("backup-schedule").await;
    let id = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let name = |what: &str| format!("bk{what}-{id}");
    let jobs = [
        "appends", "fails", "forbid", "replace", "timeout", "suspend",
    ]
    .map(name);
    let _cleanup = Cleanup {
        jobs: jobs.to_vec(),
        volumes: vec![jobs[0].clone()],
    };
    let operator = Operator::start(&store, None);
    let addr = operator.addr.clone();
    tokio::join!(
        appends_and_keeps_limits(&store, &jobs[0], &addr),
        failures_record_exit_codes_and_go_stale(&store, &jobs[1], &addr),
        forbid_skips_an_overlapping_run(&store, &jobs[2]),
        replace_stops_the_active_run(&store, &jobs[3]),
        timeout_stops_a_run(&store, &jobs[4]),
        suspend_stops_scheduling(&store, &jobs[5]),
    );
}

/// Each run appends to a file in a volume; only `history.successful` run services stay;
/// the metrics say when the last success was and how long the run took.
async fn appends_and_keeps_limits(store: &Store, job: &str, addr: &str) {
    let spec = job_spec(
        "*/2 * * * * *",
        "echo run-$(date +%s) >> /data/runs; echo appended",
        json!({
            "mounts": [{"type": "volume", "source": job, "target": "/data"}],
            "history": {"successful": 2, "failed": 1},
        }),
    );
    put(store, "BackupJob", job, spec).await;
    let runs = eventually("three runs succeeded", LIMIT, async || {
        let runs = history(store, job).await;
        (succeeded(&runs) >= 3).then_some(runs)
    })
    .await;
    let ok = runs
        .iter()
        .find(|r| r.result == RunResult::Succeeded)
        .unwrap();
    assert_eq!(ok.exit_code, Some(0));
    assert_eq!(ok.log, ["appended"], "{ok:?}");
    assert!(ok.name.starts_with(&format!("{job}-2")), "{}", ok.name);
    eventually("old run services removed", LIMIT, async || {
        let runs = history(store, job).await;
        let services = run_services(job);
        let kept = services
            .iter()
            .filter(|s| {
                runs.iter()
                    .any(|r| r.name == **s && r.result == RunResult::Succeeded)
            })
            .count();
        (kept == 2 && succeeded(&runs) >= 3).then_some(())
    })
    .await;
    // dockerd keeps a removed job's container; the controller removes it.
    eventually("removed runs' containers are gone", LIMIT, async || {
        let containers = run_containers(job);
        let services = run_services(job);
        containers
            .iter()
            .all(|c| services.contains(c))
            .then_some(())
    })
    .await;
    assert!(volume_lines(job, "runs").len() >= 3);
    let status = status(store, job).await.unwrap();
    let last_success: jiff::Timestamp =
        serde_json::from_value(status["backupJob"]["lastSuccess"].clone()).unwrap();
    let series = format!("swarmkeeper_backup_last_success_timestamp_seconds{{job=\"{job}\"}}");
    let gauge = eventually("the last-success gauge", LIMIT, async || {
        metric(addr, &series).filter(|v| *v > 0.0)
    })
    .await;
    assert!(
        (gauge - last_success.as_millisecond() as f64 / 1000.0).abs() < 10.0,
        "{gauge} vs {last_success}"
    );
    let duration = format!("swarmkeeper_backup_duration_seconds{{job=\"{job}\"}}");
    assert!(metric(addr, &duration).unwrap() > 0.0);
    let total = format!("swarmkeeper_backup_runs_total{{job=\"{job}\",result=\"succeeded\"}}");
    assert!(metric(addr, &total).unwrap() >= 3.0);
    delete(store, job).await;
}

/// A failing command is a failed run with its exit code; with only failures the job
/// turns `Degraded` once `staleAfter` passed, with an event; the failure counter counts.
async fn failures_record_exit_codes_and_go_stale(store: &Store, job: &str, addr: &str) {
    let spec = job_spec(
        "*/2 * * * * *",
        "exit 3",
        json!({"staleAfter": "4s", "history": {"successful": 1, "failed": 1}}),
    );
    put(store, "BackupJob", job, spec).await;
    let failed = eventually("a failed run", LIMIT, async || {
        history(store, job)
            .await
            .into_iter()
            .find(|r| r.result == RunResult::Failed)
    })
    .await;
    assert_eq!(failed.exit_code, Some(3), "{failed:?}");
    eventually("the job is Degraded", LIMIT, async || {
        let status = status(store, job).await?;
        (status["phase"] == "Degraded").then_some(())
    })
    .await;
    let stale = events(store, job, "Stale").await;
    assert_eq!(stale.len(), 1, "{stale:?}");
    let failures = format!("swarmkeeper_backup_runs_total{{job=\"{job}\",result=\"failed\"}}");
    assert!(metric(addr, &failures).unwrap() >= 1.0);
    delete(store, job).await;
}

/// `Forbid`: a run time that comes while the previous run sleeps is skipped, with an event.
/// The run's output is not kept: the job has `sensitiveLogs`.
async fn forbid_skips_an_overlapping_run(store: &Store, job: &str) {
    let spec = job_spec(
        "*/2 * * * * *",
        "echo canary-d4c1b9; sleep 5",
        json!({"concurrencyPolicy": "Forbid", "sensitiveLogs": true}),
    );
    put(store, "BackupJob", job, spec).await;
    let skipped = eventually("a skipped run", LIMIT, async || {
        events(store, job, "Skipped").await.into_iter().next()
    })
    .await;
    assert!(skipped.contains("still running"), "{skipped}");
    let ended = eventually("the first run ended", LIMIT, async || {
        history(store, job)
            .await
            .into_iter()
            .find(|r| r.result != RunResult::Running)
    })
    .await;
    assert!(ended.log.is_empty(), "{ended:?}");
    let status = status(store, job).await.unwrap().to_string();
    assert!(!status.contains("canary-d4c1b9"), "{status}");
    let runs = history(store, job).await;
    for pair in runs.windows(2) {
        assert!(pair[1].started >= pair[0].finished.unwrap(), "{runs:?}");
    }
    delete(store, job).await;
}

/// `Replace`: the active run is removed and recorded failed, and the new one starts.
async fn replace_stops_the_active_run(store: &Store, job: &str) {
    let spec = job_spec(
        "*/3 * * * * *",
        "sleep 30",
        json!({"concurrencyPolicy": "Replace"}),
    );
    put(store, "BackupJob", job, spec).await;
    let replaced = eventually("a replaced run", LIMIT, async || {
        history(store, job)
            .await
            .into_iter()
            .find(|r| r.message.starts_with("replaced by "))
    })
    .await;
    assert_eq!(replaced.result, RunResult::Failed);
    eventually("its service is gone", LIMIT, async || {
        (!run_services(job).contains(&replaced.name)).then_some(())
    })
    .await;
    delete(store, job).await;
}

/// A run past `timeoutSeconds` is stopped and recorded as failed.
async fn timeout_stops_a_run(store: &Store, job: &str) {
    let spec = job_spec("*/10 * * * * *", "sleep 30", json!({"timeoutSeconds": 2}));
    put(store, "BackupJob", job, spec).await;
    let timed_out = eventually("a timed-out run", LIMIT, async || {
        history(store, job)
            .await
            .into_iter()
            .find(|r| r.result == RunResult::Failed)
    })
    .await;
    assert_eq!(timed_out.message, "timed out after 2s", "{timed_out:?}");
    eventually("its service is gone", LIMIT, async || {
        (!run_services(job).contains(&timed_out.name)).then_some(())
    })
    .await;
    delete(store, job).await;
}

/// A suspended job starts nothing.
async fn suspend_stops_scheduling(store: &Store, job: &str) {
    let spec = job_spec("*/2 * * * * *", "true", json!({"suspend": true}));
    put(store, "BackupJob", job, spec).await;
    eventually("the job is seen", LIMIT, async || {
        let status = status(store, job).await?;
        status["message"]
            .as_str()?
            .contains("suspended")
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(history(store, job).await.is_empty());
    assert!(run_services(job).is_empty());
    delete(store, job).await;
}

/// `backup run` starts a run at once, refuses a second one while it runs (`Forbid`), and
/// `backup history` shows it; a pass over the converged job writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_run_starts_a_run_and_history_shows_it() {
    require_swarm_manager();
    let store = Etcd::shared().store("backup-cli").await;
    let name = format!("bkcli-{:06x}", rand::random::<u32>() & 0xff_ffff);
    let _cleanup = Cleanup {
        jobs: vec![name.clone()],
        volumes: Vec::new(),
    };
    // Once a year: nothing but `backup run` starts it during the test.
    let spec = job_spec("0 0 1 1 *", "echo manual; sleep 2", json!({}));
    put(&store, "BackupJob", &name, spec).await;
    let controllers = controllers(&store).await;
    let key = RecordKey::new(Kind::BackupJob, &name);
    pass(&controllers, std::slice::from_ref(&key)).await;
    let out = cli(&store).args(["backup", "run", &name]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let started = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let run = started.strip_prefix("started run ").unwrap().to_owned();
    assert_eq!(run_services(&name), std::slice::from_ref(&run));
    let again = cli(&store).args(["backup", "run", &name]).output().unwrap();
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("Forbid"),
        "{again:?}"
    );
    // Run names have a second's resolution: the forced run starts a second later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let forced = cli(&store)
        .args(["backup", "run", &name, "--force"])
        .output()
        .unwrap();
    assert!(forced.status.success(), "{forced:?}");
    assert_eq!(run_services(&name).len(), 2);
    eventually("the run is recorded as succeeded", LIMIT, async || {
        pass(&controllers, std::slice::from_ref(&key)).await;
        let runs = history(&store, &name).await;
        runs.iter()
            .any(|r| r.name == run && r.result == RunResult::Succeeded && r.manual)
            .then_some(())
    })
    .await;
    let table = cli(&store)
        .args(["backup", "history", &name])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(
        table.contains(&run) && table.contains("Succeeded") && table.contains("(manual)"),
        "{table}"
    );
    let json = cli(&store)
        .args(["backup", "history", &name, "-o", "json"])
        .output()
        .unwrap();
    let runs: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(runs[0]["name"], run.as_str());
    assert_eq!(runs[0]["exitCode"], 0);
    assert_eq!(runs[0]["log"], json!(["manual"]));
    // Converged: another pass makes no write to dockerd or etcd.
    pass(&controllers, std::slice::from_ref(&key)).await;
    let (writes, revision) = (
        controllers.ctx.docker.writes(),
        last_write(&store, None).await,
    );
    pass(&controllers, std::slice::from_ref(&key)).await;
    assert_eq!(controllers.ctx.docker.writes(), writes);
    assert_eq!(last_write(&store, None).await, revision);
    let unknown = cli(&store)
        .args(["backup", "history", "nosuchjob"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1));
}

/// Two operators on one prefix, the leader killed: the other takes over once the lease
/// expired, starts the newest run time missed meanwhile (inside the starting deadline),
/// skips the older ones with one event, and nothing runs twice; the history made before
/// is kept as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_loses_no_run_inside_the_deadline_and_none_runs_twice() {
    require_swarm_manager();
    let store = Etcd::shared().store("backup-restart").await;
    let job = format!("bkha-{:06x}", rand::random::<u32>() & 0xff_ffff);
    let _cleanup = Cleanup {
        jobs: vec![job.clone()],
        volumes: vec![job.clone()],
    };
    let mut first = Operator::start(&store, None);
    eventually("the first operator leads", LIMIT, async || {
        first.leads().then_some(())
    })
    .await;
    let _second = Operator::start(&store, None);
    let spec = json!({
        "schedule": "*/2 * * * * *",
        "image": IMAGE,
        "command": ["sh", "-c", "echo $(date +%s) >> /data/runs"],
        "mounts": [{"type": "volume", "source": job, "target": "/data"}],
        "startingDeadlineSeconds": 30,
        "history": {"successful": 50, "failed": 50},
    });
    put(&store, "BackupJob", &job, spec.clone()).await;
    let before = eventually("two runs", LIMIT, async || {
        let runs = history(&store, &job).await;
        (succeeded(&runs) >= 2).then_some(runs)
    })
    .await;
    first.kill();
    let killed = jiff::Timestamp::now();
    // The lease (15 s) expires, the second operator leads and catches up.
    let runs = eventually("two runs after the kill", LIMIT, async || {
        let runs = history(&store, &job).await;
        let after = runs
            .iter()
            .filter(|r| r.scheduled > killed && r.result == RunResult::Succeeded);
        (after.count() >= 2).then_some(runs)
    })
    .await;
    // The second operator leads once the lease expired, seconds after the kill (a run the
    // first made just before it died is adopted, not made again). Its first run is for
    // the newest run time missed meanwhile, inside the deadline; the older ones were skipped.
    let lease = jiff::SignedDuration::from_secs(5);
    let caught_up = runs
        .iter()
        .find(|r| r.started > killed + lease)
        .expect("a run started by the second operator");
    let previous = runs
        .iter()
        .rev()
        .find(|r| r.scheduled < caught_up.scheduled)
        .expect("the runs before the kill");
    assert!(
        caught_up.scheduled.duration_since(previous.scheduled) > lease,
        "run times were missed between {previous:?} and {caught_up:?}"
    );
    assert!(
        caught_up.started.duration_since(caught_up.scheduled) < jiff::SignedDuration::from_secs(4),
        "the newest missed run time ran: {caught_up:?}"
    );
    let skipped = events(&store, &job, "Skipped").await;
    let missed: Vec<&String> = skipped.iter().filter(|m| m.contains("missed")).collect();
    assert_eq!(
        missed.len(),
        1,
        "one event for the missed run times: {skipped:?}"
    );
    assert!(missed[0].contains("older than the newest"), "{skipped:?}");
    for old in before.iter().filter(|r| r.result != RunResult::Running) {
        assert!(runs.contains(old), "{old:?} kept in {runs:?}");
    }
    let mut names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
    names.dedup();
    assert_eq!(names.len(), runs.len(), "{runs:?}");
    // Each run appended once: no run time ran twice.
    let mut suspended = spec.clone();
    suspended["suspend"] = true.into();
    put(&store, "BackupJob", &job, suspended).await;
    let done = eventually("no run active", LIMIT, async || {
        let runs = history(&store, &job).await;
        runs.iter()
            .all(|r| r.result != RunResult::Running)
            .then_some(runs)
    })
    .await;
    delete(&store, &job).await;
    eventually("the runs' services are gone", LIMIT, async || {
        run_services(&job).is_empty().then_some(())
    })
    .await;
    assert_eq!(
        volume_lines(&job, "runs").len(),
        succeeded(&done),
        "{done:?}"
    );
}
