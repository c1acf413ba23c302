//! BackupJob tests' harness: `swarmkeeper run` processes on a test's prefix, records
//! written as `apply` would, the history and events read back, and a guard that
//! removes the jobs' run services and volumes.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use swarmkeeper::api::{API_VERSION, Record};
use swarmkeeper::plan::backup_job::Run;
use swarmkeeper::store::{Expect, RecordPut, Store};

use super::Etcd;
use super::http::{free_port, leader_gauge};
use super::swarm::{docker, names_with_label};

/// A `swarmkeeper run` on the test's prefix, killed (SIGKILL, as a crash) on drop.
pub struct Operator {
    child: Child,
    /// Its HTTP address, for `/metrics`.
    pub addr: String,
}

impl Operator {
    /// Starts one, with the secret key at `key` if given.
    pub fn start(store: &Store, key: Option<&std::path::Path>) -> Operator {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = cli(store);
        if let Some(key) = key {
            cmd.arg("--secret-key-file").arg(key);
        }
        let child = cmd
            .args(["run", "--http-addr", &addr])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary runs");
        Operator { child, addr }
    }

    /// Whether it leads, once its `/metrics` answers.
    pub fn leads(&self) -> bool {
        leader_gauge(&self.addr) == Some(1)
    }

    /// Kills it as a crash would: its lease is left to expire.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The binary on the test's prefix and the shared etcd.
pub fn cli(store: &Store) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarmkeeper"));
    cmd.args(["--etcd-endpoints", &Etcd::shared().endpoint()])
        .args(["--prefix", store.prefix()])
        .env_remove("RUST_LOG");
    cmd
}

/// Removes the jobs' run services and volumes, even on panic.
pub struct Cleanup {
    pub jobs: Vec<String>,
    pub volumes: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for job in &self.jobs {
            let label = format!("swarmkeeper.owner=BackupJob.{job}");
            for service in names_with_label("service", &label) {
                let _ = docker(&["service", "rm", &service]);
            }
        }
        // dockerd 20.10 keeps a job task's container after its service is removed.
        for job in &self.jobs {
            let label = format!("label=swarmkeeper.owner=BackupJob.{job}");
            let listed = docker(&["ps", "-aq", "--filter", &label]);
            for id in String::from_utf8_lossy(&listed.stdout).split_whitespace() {
                let _ = docker(&["rm", "-f", id]);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for volume in &self.volumes {
            while !docker(&["volume", "rm", "-f", volume]).status.success()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }
}

/// Writes a record of `kind` as `apply` would (validated first).
pub async fn put(store: &Store, kind: &str, name: &str, spec: Value) {
    let record = json!({
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    });
    let value = Record::from_value(record)
        .unwrap_or_else(|errors| panic!("an invalid test record: {errors:?}"))
        .to_value();
    store
        .put_records(vec![RecordPut {
            kind: kind.into(),
            name: name.into(),
            value,
            expect: Expect::Any,
        }])
        .await
        .expect("write the record");
}

/// The record's status, as JSON.
pub async fn status(store: &Store, job: &str) -> Option<Value> {
    store
        .get_status("BackupJob", job)
        .await
        .expect("etcd answers")
        .map(|v| v.value)
}

/// The runs the job's status records.
pub async fn history(store: &Store, job: &str) -> Vec<Run> {
    status(store, job)
        .await
        .and_then(|s| s.pointer("/backupJob/runs").cloned())
        .map(|runs| serde_json::from_value(runs).expect("runs that read back"))
        .unwrap_or_default()
}

/// The messages of the job's events with `reason`.
pub async fn events(store: &Store, job: &str, reason: &str) -> Vec<String> {
    store
        .list_events(Some(("BackupJob", job)))
        .await
        .expect("etcd answers")
        .into_iter()
        .filter(|(_, _, e)| e.reason == reason)
        .map(|(_, _, e)| e.message)
        .collect()
}

/// Polls `check` every 250 ms until it answers, for at most `limit`.
pub async fn eventually<T>(
    what: &str,
    limit: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The lines of `file` in the volume `volume`.
pub fn volume_lines(volume: &str, file: &str) -> Vec<String> {
    let out = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &format!("{volume}:/v"),
        super::swarm::IMAGE,
        "cat",
        &format!("/v/{file}"),
    ]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The job's run services in the swarm.
pub fn run_services(job: &str) -> Vec<String> {
    names_with_label("service", &format!("swarmkeeper.owner=BackupJob.{job}"))
}

/// The run services that the job's containers on this node belong to.
pub fn run_containers(job: &str) -> Vec<String> {
    let out = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=swarmkeeper.owner=BackupJob.{job}"),
        "--format",
        "{{.Label \"com.docker.swarm.service.name\"}}",
    ]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}
