//! The `swarmkeeper` binary end to end against a real etcd: apply, get, diff, describe, delete, events.
//!
//! Each test runs the built binary with a prefix of its own and inspects etcd
//! through the [`Store`] API or the raw client, so nothing is taken on the
//! binary's word.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use etcd_client::GetOptions;
use serde_json::Value;
use swarmkeeper::store::Store;

use common::{Etcd, unique_name};

/// `apply`: examples, round trips, big applies, prune, inline compose files.
#[path = "cli/apply.rs"]
mod apply;
/// Bad input: rejected with its place, nothing written, all problems at once.
#[path = "cli/bad_input.rs"]
mod bad_input;
/// `delete`, `describe`, `events`, usage errors, environment flags, etcd down.
#[path = "cli/commands.rs"]
mod commands;
/// `diff` and `apply --dry-run`: records against etcd, plans against the live swarm.
#[path = "cli/diff.rs"]
mod diff;
/// Records: the size cap, status in `get -o json|yaml`.
#[path = "cli/records.rs"]
mod records;
/// Secret values: never shown, rewritten only on change, refused without a key.
#[path = "cli/secret_values.rs"]
mod secret_values;
/// Secrets: isolation between stacks, redacted errors, key rotation.
#[path = "cli/secrets.rs"]
mod secrets;

/// The binary, pointed at the shared etcd under a prefix of its own, with a secret key.
struct Cli {
    store: Store,
    /// Holds the secret key file; also a scratch folder for the test's records.
    dir: tempfile::TempDir,
}

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts the exit code, showing the output when it differs.
    fn expect(self, code: i32) -> Run {
        assert_eq!(self.code, code, "unexpected exit code: {self:#?}");
        self
    }

    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// The lines about records, before what the controller would do in the swarm.
    fn record_lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .take_while(|l| !l.starts_with("What the controller would do"))
            .collect()
    }
}

impl Cli {
    async fn new(test: &str) -> Cli {
        let store = Etcd::shared().store(test).await;
        let dir = tempfile::Builder::new()
            .prefix("swarmkeeper-cli-")
            .tempdir()
            .expect("cannot create a temp dir");
        std::fs::write(dir.path().join("secret.key"), rand::random::<[u8; 32]>())
            .expect("cannot write the secret key");
        Cli { store, dir }
    }

    fn key_file(&self) -> PathBuf {
        self.dir.path().join("secret.key")
    }

    /// Runs `swarmkeeper <args>` with the secret key.
    fn run(&self, args: &[&str]) -> Run {
        let key = self.key_file();
        let mut global = vec!["--secret-key-file", key.to_str().expect("utf-8 temp path")];
        global.extend_from_slice(args);
        self.run_without_key(&global)
    }

    /// Runs `swarmkeeper <args>` with no secret key configured.
    fn run_without_key(&self, args: &[&str]) -> Run {
        self.run_command(binary(), args)
    }

    /// Runs `swarmkeeper <args>` with the secret key and extra environment variables.
    fn run_env(&self, env: &[(&str, &str)], args: &[&str]) -> Run {
        let key = self.key_file();
        let mut global = vec!["--secret-key-file", key.to_str().expect("utf-8 temp path")];
        global.extend_from_slice(args);
        let mut command = binary();
        command.envs(env.iter().copied());
        self.run_command(command, &global)
    }

    fn run_command(&self, mut command: Command, args: &[&str]) -> Run {
        // Debug logs too must never show a secret.
        command.env("RUST_LOG", "debug");
        let output = command
            .args(["--etcd-endpoints", &Etcd::shared().endpoint()])
            .args(["--prefix", self.store.prefix()])
            .args(args)
            .output()
            .expect("cannot run the swarmkeeper binary");
        Run {
            code: output
                .status
                .code()
                .expect("swarmkeeper was killed by a signal"),
            stdout: String::from_utf8(output.stdout).expect("stdout is not UTF-8"),
            stderr: String::from_utf8(output.stderr).expect("stderr is not UTF-8"),
        }
    }

    /// A file in the test's scratch folder (parent folders created).
    fn write(&self, relative: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(relative);
        std::fs::create_dir_all(path.parent().expect("a file has a folder"))
            .expect("cannot create a folder");
        std::fs::write(&path, content).expect("cannot write a test file");
        path
    }

    /// Every key under the prefix, straight from etcd.
    async fn raw_kvs(&self) -> Vec<etcd_client::KeyValue> {
        let mut client = self.store.raw_client();
        let mut answer = client
            .get(
                format!("{}/", self.store.prefix()),
                Some(GetOptions::new().with_prefix()),
            )
            .await
            .expect("cannot list the prefix");
        answer.take_kvs()
    }

    /// Every key and value under the prefix.
    async fn raw_entries(&self) -> Vec<(String, Vec<u8>)> {
        self.raw_kvs()
            .await
            .iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                (key, kv.value().to_vec())
            })
            .collect()
    }

    /// Every key under the prefix with its mod_revision.
    async fn raw_revisions(&self) -> BTreeMap<String, i64> {
        self.raw_kvs()
            .await
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    kv.mod_revision(),
                )
            })
            .collect()
    }

    /// `Kind/name` -> mod_revision of every record in etcd.
    async fn revisions(&self) -> BTreeMap<String, i64> {
        let (records, _) = self.store.list_records(None).await.expect("cannot list");
        records
            .into_iter()
            .map(|r| (format!("{}/{}", r.kind, r.name), r.versioned.mod_revision))
            .collect()
    }

    async fn record(&self, kind: &str, name: &str) -> Option<Value> {
        self.store
            .get_record(kind, name)
            .await
            .expect("cannot read a record")
            .map(|v| v.value)
    }
}

/// The binary, without the `SWARMKEEPER_*` settings of whoever runs the tests.
fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_swarmkeeper"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SWARMKEEPER_") {
            command.env_remove(name);
        }
    }
    command
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests/examples")
}

fn network(name: &str) -> String {
    format!(
        "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Network\nmetadata:\n  name: {name}\nspec:\n  driver: overlay\n"
    )
}

/// A record that is fine on its own, to show a bad neighbour stops it too.
const VALID: &str = "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Network\nmetadata: {name: fine}\nspec: {driver: overlay}\n";
