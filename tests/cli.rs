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
use swarmkeeper::api::load::load_paths;
use swarmkeeper::store::{SecretKey, Store};

use common::{Etcd, unique_name};

/// `diff` and `apply --dry-run`: records against etcd, plans against the live swarm.
#[path = "cli/diff.rs"]
mod diff;
/// Records: the size cap, status in `get -o json|yaml`.
#[path = "cli/records.rs"]
mod records;
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

/// Every example file, in the order apply reads a folder.
fn example_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples())
        .expect("manifests/examples is missing")
        .map(|entry| entry.expect("cannot list manifests/examples").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no example files");
    files
}

/// `Kind/name` of every record in `path`, and each record's stored form before sealing.
fn loaded_records(path: &Path) -> Vec<(String, Value)> {
    let env = |name: &str| std::env::var(name).ok();
    load_paths(&[path.to_owned()], &env)
        .unwrap_or_else(|err| panic!("{err}"))
        .into_iter()
        .map(|l| {
            let id = format!("{}/{}", l.record.kind, l.record.metadata.name);
            (id, l.record.to_value())
        })
        .collect()
}

fn network(name: &str) -> String {
    format!(
        "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Network\nmetadata:\n  name: {name}\nspec:\n  driver: overlay\n"
    )
}

fn id_of(doc: &Value) -> String {
    format!(
        "{}/{}",
        doc["kind"].as_str().expect("a record has a kind"),
        doc["metadata"]["name"]
            .as_str()
            .expect("a record has a name")
    )
}

#[tokio::test]
async fn every_example_passes_dry_run_alone_and_as_a_folder() {
    let cli = Cli::new("dry-run").await;
    let mut all = Vec::new();
    for file in example_files() {
        let expected: Vec<String> = loaded_records(&file)
            .into_iter()
            .map(|(id, _)| format!("{id} created (dry run)"))
            .collect();
        let run = cli
            .run(&["apply", "--dry-run", "-f", path_str(&file)])
            .expect(0);
        assert_eq!(run.record_lines(), expected, "{}", file.display());
        all.extend(expected);
    }
    let run = cli
        .run(&["apply", "--dry-run", "-f", path_str(&examples())])
        .expect(0);
    assert_eq!(run.record_lines(), all);
    assert_eq!(cli.raw_entries().await.len(), 0, "a dry run wrote to etcd");
}

#[tokio::test]
async fn apply_then_get_yaml_round_trips_and_reapply_changes_nothing() {
    let cli = Cli::new("round-trip").await;
    let folder = examples();
    let expected = loaded_records(&folder);
    let run = cli.run(&["apply", "-f", path_str(&folder)]).expect(0);
    let created: Vec<String> = expected
        .iter()
        .map(|(id, _)| format!("{id} created"))
        .collect();
    assert_eq!(run.lines(), created);

    let yaml = cli.run(&["get", "-o", "yaml"]).expect(0).stdout;
    let docs: Vec<Value> = serde_saphyr::from_multiple(&yaml)
        .unwrap_or_else(|err| panic!("get -o yaml is not YAML: {err}\n{yaml}"));
    let mut got: BTreeMap<String, Value> = docs.iter().map(|d| (id_of(d), d.clone())).collect();
    assert_eq!(got.len(), expected.len(), "{yaml}");

    // The literal value is sealed away; only a keyed digest stays in the record.
    let db_user = got
        .get_mut("Secret/db_user")
        .expect("Secret/db_user missing");
    let value = db_user["spec"]["value"]
        .as_object_mut()
        .expect("spec.value is a mapping");
    assert_eq!(value.get("sealed"), Some(&Value::Bool(true)), "{value:?}");
    assert_eq!(value.get("literal"), None, "{value:?}");
    let digest = value
        .remove("digest")
        .and_then(|d| d.as_str().map(str::to_owned))
        .expect("a sealed value has a digest");
    let hex = digest
        .strip_prefix("hmac-sha256:")
        .unwrap_or_else(|| panic!("digest {digest:?}"));
    assert!(
        hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "{digest}"
    );
    for (id, value) in &expected {
        assert_eq!(got.get(id), Some(value), "{id} did not round-trip");
    }

    // JSON shows the same records.
    let json: Vec<Value> = serde_json::from_str(&cli.run(&["get", "-o", "json"]).expect(0).stdout)
        .expect("get -o json is not JSON");
    assert_eq!(json.len(), docs.len());
    for doc in &docs {
        assert!(
            json.contains(doc),
            "{} differs between yaml and json",
            id_of(doc)
        );
    }

    let before = cli.revisions().await;
    assert_eq!(before.len(), expected.len());
    let raw_before = cli.raw_revisions().await;
    let run = cli.run(&["apply", "-f", path_str(&folder)]).expect(0);
    let unchanged: Vec<String> = expected
        .iter()
        .map(|(id, _)| format!("{id} unchanged"))
        .collect();
    assert_eq!(run.lines(), unchanged);
    assert_eq!(
        cli.revisions().await,
        before,
        "a no-op apply bumped a record's generation"
    );
    // Nor was anything else (the sealed db_user value) rewritten.
    assert_eq!(cli.raw_revisions().await, raw_before);
}

/// A record that is fine on its own, to show a bad neighbour stops it too.
const VALID: &str = "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Network\nmetadata: {name: fine}\nspec: {driver: overlay}\n";

fn alias_bomb() -> String {
    let mut text = String::from(
        "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Network\nmetadata: {name: bomb}\nspec:\n  labels:\n    a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 9].join(", ");
        text.push_str(&format!("    a{i}: &a{i} [{refs}]\n"));
    }
    text
}

fn deep_nesting() -> String {
    format!(
        "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Network\nmetadata: {{name: deep}}\nspec:\n  labels: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    )
}

/// (case, file content, what the message must name besides the file).
fn invalid_inputs() -> Vec<(&'static str, String, Vec<&'static str>)> {
    let envelope = "apiVersion: swarmkeeper.dev/v1alpha1\n";
    vec![
        (
            "unknown-kind",
            format!("{envelope}kind: Widget\nmetadata: {{name: w}}\nspec: {{}}\n"),
            vec!["document 1", "Widget/w", "kind:", "unknown kind"],
        ),
        (
            "missing-kind",
            format!("{envelope}metadata: {{name: w}}\nspec: {{}}\n"),
            vec!["document 1", "/w)", "kind:", "missing"],
        ),
        (
            "bad-name",
            format!(
                "{envelope}kind: Network\nmetadata: {{name: Bad_Name}}\nspec: {{driver: overlay}}\n"
            ),
            vec!["document 1", "Network/Bad_Name", "metadata.name:"],
        ),
        (
            "replicas-not-a-number",
            format!(
                "{envelope}kind: Stack\nmetadata: {{name: web}}\nspec:\n  compose:\n    services:\n      web:\n        image: nginx\n        deploy:\n          replicas: \"two\"\n"
            ),
            vec![
                "document 1",
                "Stack/web",
                "spec.compose.services.web.deploy.replicas:",
                // serde's message without the value (see tests/cli/secrets.rs).
                "invalid type: string, expected u64",
            ],
        ),
        (
            "port-not-a-number",
            format!(
                "{envelope}kind: DatabaseUser\nmetadata: {{name: app}}\nspec:\n  engine: postgres\n  server: {{host: db, port: x, adminUser: postgres, adminPasswordSecret: pg}}\n  user: app\n  passwordSecret: app_pw\n"
            ),
            vec!["document 1", "DatabaseUser/app", "spec.server.port:"],
        ),
        (
            "undefined-network",
            format!(
                "{envelope}kind: Stack\nmetadata: {{name: web}}\nspec:\n  compose:\n    services:\n      web:\n        image: nginx\n        networks: [nowhere]\n"
            ),
            vec![
                "document 1",
                "Stack/web",
                "spec.compose.services.web.networks[0]:",
                "\"nowhere\"",
            ],
        ),
        (
            "bad-second-document",
            format!(
                "{}---\n{envelope}kind: Network\nmetadata: {{name: second}}\nspec: {{driver: overlay, attachable: maybe}}\n",
                network("first")
            ),
            vec!["document 2", "Network/second", "spec.attachable:"],
        ),
        ("alias-bomb", alias_bomb(), vec!["alias"]),
        ("deep-nesting", deep_nesting(), vec!["line"]),
    ]
}

#[tokio::test]
async fn invalid_inputs_are_rejected_with_their_place_and_write_nothing() {
    let cli = Cli::new("invalid").await;
    let valid = cli.write("valid.yaml", VALID);
    for (case, content, needles) in invalid_inputs() {
        let bad = cli.write(&format!("{case}.yaml"), &content);
        let run = cli
            .run(&["apply", "-f", path_str(&valid), "-f", path_str(&bad)])
            .expect(64);
        assert!(run.stdout.is_empty(), "{case}: {run:#?}");
        let file_name = format!("{case}.yaml");
        for needle in std::iter::once(file_name.as_str()).chain(needles) {
            assert!(
                run.stderr.contains(needle),
                "{case}: the message does not name {needle:?}: {}",
                run.stderr
            );
        }
        assert!(
            !run.stderr.contains("valid.yaml:"),
            "{case}: the valid file was blamed: {}",
            run.stderr
        );
        assert_eq!(cli.raw_entries().await.len(), 0, "{case}: keys written");
    }
}

#[tokio::test]
async fn every_problem_of_an_apply_is_reported_at_once() {
    let cli = Cli::new("all-problems").await;
    let cases = invalid_inputs();
    for (case, content, _) in &cases {
        cli.write(&format!("bad/{case}.yaml"), content);
    }
    let run = cli
        .run(&["apply", "-f", path_str(&cli.dir.path().join("bad"))])
        .expect(64);
    for (case, _, _) in &cases {
        assert!(
            run.stderr.contains(&format!("{case}.yaml")),
            "{case} not reported: {}",
            run.stderr
        );
    }
    assert_eq!(cli.raw_entries().await.len(), 0);
}

#[tokio::test]
async fn apply_of_300_records_works_and_reapplies_unchanged() {
    let cli = Cli::new("three-hundred").await;
    for i in 0..300 {
        cli.write(
            &format!("many/net-{i:03}.yaml"),
            &network(&format!("net-{i:03}")),
        );
    }
    let folder = cli.dir.path().join("many");
    let run = cli.run(&["apply", "-f", path_str(&folder)]).expect(0);
    let lines = run.lines();
    assert_eq!(lines.len(), 300, "{run:#?}");
    assert!(lines.iter().all(|l| l.ends_with(" created")), "{run:#?}");
    let before = cli.revisions().await;
    assert_eq!(before.len(), 300);

    let run = cli.run(&["apply", "-f", path_str(&folder)]).expect(0);
    let lines = run.lines();
    assert_eq!(lines.len(), 300, "{run:#?}");
    assert!(lines.iter().all(|l| l.ends_with(" unchanged")), "{run:#?}");
    assert_eq!(cli.revisions().await, before);
}

#[tokio::test]
async fn prune_deletes_only_records_of_the_source_gone_from_the_files() {
    let cli = Cli::new("prune").await;
    let a = cli.write("a.yaml", &network("net-a"));
    let b = cli.write("b.yaml", &network("net-b"));
    let loose = cli.write("loose.yaml", &network("net-loose"));
    let with_source = ["--source", "git", "--prune"];

    let mut args = vec!["apply", "-f", path_str(&a), "-f", path_str(&b)];
    args.extend(with_source);
    cli.run(&args).expect(0);
    cli.run(&["apply", "-f", path_str(&loose)]).expect(0);

    // Without --prune, and in a dry run, the source keeps net-b.
    cli.run(&["apply", "-f", path_str(&a), "--source", "git"])
        .expect(0);
    let mut args = vec!["apply", "-f", path_str(&a), "--dry-run"];
    args.extend(with_source);
    let run = cli.run(&args).expect(0);
    assert_eq!(
        run.record_lines(),
        [
            "Network/net-a unchanged (dry run)",
            "Network/net-b deleted (dry run)"
        ]
    );
    assert!(cli.record("Network", "net-b").await.is_some());

    let mut args = vec!["apply", "-f", path_str(&a)];
    args.extend(with_source);
    let run = cli.run(&args).expect(0);
    assert_eq!(
        run.lines(),
        ["Network/net-a unchanged", "Network/net-b deleted"]
    );
    assert!(
        cli.record("Network", "net-b").await.is_none(),
        "net-b not pruned"
    );
    assert!(cli.record("Network", "net-a").await.is_some());
    assert!(cli.record("Network", "net-loose").await.is_some());

    // A source that no longer lists anything prunes only its own records.
    let empty = cli.write("other/net-c.yaml", &network("net-c"));
    let mut args = vec!["apply", "-f", path_str(&empty)];
    args.extend(with_source);
    let run = cli.run(&args).expect(0);
    assert_eq!(
        run.lines(),
        ["Network/net-c created", "Network/net-a deleted"]
    );
    assert!(
        cli.record("Network", "net-loose").await.is_some(),
        "a record without source was pruned"
    );
    assert_eq!(
        cli.revisions().await.into_keys().collect::<Vec<_>>(),
        ["Network/net-c", "Network/net-loose"]
    );
}

#[tokio::test]
async fn secret_values_never_appear_in_etcd_or_in_any_output() {
    let cli = Cli::new("canary").await;
    let literal = format!("canary-{}", unique_name("literal"));
    let in_file = format!("canary-{}", unique_name("file"));
    cli.write(
        "records/secret.yaml",
        &format!(
            "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Secret\nmetadata: {{name: canary}}\nspec:\n  value: {{literal: \"{literal}\"}}\n"
        ),
    );
    cli.write(
        "records/stack.yaml",
        "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Stack\nmetadata: {name: app}\nspec:\n  compose:\n    services:\n      web:\n        image: nginx\n        secrets: [token]\n    secrets:\n      token:\n        file: ./token.txt\n",
    );
    cli.write("records/token.txt", &in_file);
    let records = cli.dir.path().join("records");
    let records = path_str(&records);

    let mut outputs = vec![
        cli.run(&["apply", "--dry-run", "-f", records]).expect(0),
        cli.run(&["apply", "-f", records]).expect(0),
        cli.run(&["apply", "-f", records]).expect(0),
        cli.run(&["diff", "-f", records]).expect(0),
        cli.run(&["get"]).expect(0),
        cli.run(&["get", "-o", "yaml"]).expect(0),
        cli.run(&["get", "-o", "json"]).expect(0),
        cli.run(&["get", "secret", "canary", "-o", "json"])
            .expect(0),
        cli.run(&["describe", "secret", "canary"]).expect(0),
        cli.run(&["describe", "stack", "app"]).expect(0),
        cli.run(&["events"]).expect(0),
    ];
    assert_eq!(
        outputs[2].lines(),
        ["Secret/canary unchanged", "Stack/app unchanged"]
    );

    let entries = cli.raw_entries().await;
    let secret_keys = entries
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{}/secrets/", cli.store.prefix())))
        .count();
    // Both values, and the digest key, are stored sealed.
    assert_eq!(secret_keys, 3, "{entries:?}");
    for (key, value) in &entries {
        let value = String::from_utf8_lossy(value);
        for canary in [&literal, &in_file] {
            assert!(!key.contains(canary.as_str()), "{canary} in key {key}");
            assert!(
                !value.contains(canary.as_str()),
                "{canary} in the value of {key}: {value}"
            );
        }
    }

    outputs.push(cli.run(&["delete", "-f", records]).expect(0));
    for run in &outputs {
        for canary in [&literal, &in_file] {
            assert!(
                !run.stdout.contains(canary.as_str()) && !run.stderr.contains(canary.as_str()),
                "{canary} printed: {run:#?}"
            );
        }
    }
}

#[tokio::test]
async fn secret_value_is_rewritten_only_when_it_changes() {
    let cli = Cli::new("secret-change").await;
    let secret = |value: &str| {
        format!(
            "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Secret\nmetadata: {{name: token}}\nspec:\n  value: {{literal: \"{value}\"}}\n"
        )
    };
    let file = cli.write("secret.yaml", &secret("first-value"));
    let file = path_str(&file);
    cli.run(&["apply", "-f", file]).expect(0);
    let before = cli.raw_revisions().await;
    let sealed_key = format!("{}/secrets/token", cli.store.prefix());
    assert!(before.contains_key(&sealed_key), "{before:?}");

    let run = cli.run(&["apply", "-f", file]).expect(0);
    assert_eq!(run.lines(), ["Secret/token unchanged"]);
    assert_eq!(
        cli.raw_revisions().await,
        before,
        "an unchanged apply wrote to etcd"
    );

    let digest =
        |record: Option<Value>| record.expect("Secret/token")["spec"]["value"]["digest"].clone();
    let old_digest = digest(cli.record("Secret", "token").await);
    cli.write("secret.yaml", &secret("second-value"));
    let run = cli.run(&["apply", "-f", file]).expect(0);
    assert_eq!(run.lines(), ["Secret/token configured"]);
    assert_ne!(digest(cli.record("Secret", "token").await), old_digest);
    let after = cli.raw_revisions().await;
    assert!(
        after[&sealed_key] > before[&sealed_key],
        "the sealed value was not rewritten"
    );

    let key = SecretKey::from_file(&cli.key_file()).expect("the test key loads");
    let sealed = cli
        .store
        .get_secret("token")
        .await
        .expect("cannot read the sealed value")
        .expect("no sealed value");
    assert_eq!(
        key.open("token", &sealed)
            .expect("the value opens")
            .expose(),
        b"second-value"
    );
}

#[tokio::test]
async fn secret_value_without_a_key_is_rejected_and_nothing_written() {
    let cli = Cli::new("no-key").await;
    let canary = format!("canary-{}", unique_name("nokey"));
    let secret = cli.write(
        "secret.yaml",
        &format!(
            "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Secret\nmetadata: {{name: given}}\nspec:\n  value: {{literal: \"{canary}\"}}\n"
        ),
    );
    let valid = cli.write("valid.yaml", VALID);
    let run = cli
        .run_without_key(&["apply", "-f", path_str(&valid), "-f", path_str(&secret)])
        .expect(64);
    assert!(run.stderr.contains("--secret-key-file"), "{run:#?}");
    assert!(run.stderr.contains("Secret/given"), "{run:#?}");
    assert!(!run.stderr.contains(&canary) && !run.stdout.contains(&canary));
    assert_eq!(cli.raw_entries().await.len(), 0);

    // A dry run validates without the key, and still writes nothing.
    let run = cli
        .run_without_key(&[
            "apply",
            "--dry-run",
            "-f",
            path_str(&valid),
            "-f",
            path_str(&secret),
        ])
        .expect(0);
    assert!(
        run.stdout.contains("Secret/given created (dry run)"),
        "{run:#?}"
    );
    assert!(!run.stderr.contains(&canary) && !run.stdout.contains(&canary));
    assert_eq!(cli.raw_entries().await.len(), 0);
}

#[tokio::test]
async fn delete_describe_events_and_usage_errors() {
    let cli = Cli::new("delete").await;
    let cluster = examples().join("01-cluster.yaml");
    let traefik = examples().join("03-traefik.yaml");
    cli.run(&["apply", "-f", path_str(&cluster), "-f", path_str(&traefik)])
        .expect(0);

    let described = cli.run(&["describe", "STACKS", "traefik"]).expect(0);
    for needle in [
        "Kind:        Stack",
        "Name:        traefik",
        "not observed yet",
        "image: traefik:v2.10",
        "Events: none",
    ] {
        assert!(
            described.stdout.contains(needle),
            "{needle}: {described:#?}"
        );
    }
    let events = cli.run(&["events"]).expect(0);
    assert_eq!(events.lines(), ["Events: none"]);
    cli.run(&["events", "stack/traefik"]).expect(0);

    let run = cli.run(&["delete", "stacks", "traefik"]).expect(0);
    assert_eq!(run.lines(), ["Stack/traefik deleted"]);
    let run = cli.run(&["delete", "Stack", "whoami"]).expect(0);
    assert_eq!(run.lines(), ["Stack/whoami deleted"]);
    let run = cli.run(&["delete", "network", "frontend"]).expect(0);
    assert_eq!(run.lines(), ["Network/frontend deleted"]);
    assert!(cli.record("Stack", "traefik").await.is_none());
    assert!(cli.record("Network", "frontend").await.is_none());

    // The file still names the deleted network: it is reported, not fatal to the rest.
    let run = cli.run(&["delete", "-f", path_str(&cluster)]).expect(1);
    assert_eq!(
        run.lines(),
        [
            "Node/docker04 deleted",
            "Node/docker05 deleted",
            "Network/backend deleted"
        ]
    );
    assert!(
        run.stderr.contains("Network/frontend not found"),
        "{run:#?}"
    );
    assert!(cli.revisions().await.is_empty());

    cli.run(&["delete", "stack", "traefik"]).expect(1);
    for usage in [
        &["delete", "widgets", "x"][..],
        &["get", "widget"],
        &["describe", "gizmo", "x"],
        &["events", "widget/x"],
        &["apply", "--no-such-flag", "-f", path_str(&cluster)],
        &["delete", "stack"],
        &["apply", "-f", path_str(&cluster), "--prune"],
        &["apply", "-f", path_str(&cluster), "--source", "Not A Name"],
        &["apply", "-f", "/no/such/file.yaml"],
        // A zero resync would list every record in a busy loop.
        &["run", "--resync", "0s"],
        &["frobnicate"],
    ] {
        let run = cli.run(usage).expect(64);
        assert!(!run.stderr.is_empty(), "{usage:?} said nothing");
    }
    assert_eq!(cli.raw_entries().await.len(), 0);
}

#[tokio::test]
async fn compose_file_and_its_file_configs_are_stored_inline() {
    let cli = Cli::new("compose-file").await;
    cli.write(
        "repo/stacks/app.yaml",
        "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Stack\nmetadata: {name: app}\nspec:\n  composeFile: ../compose/app/docker-compose.yml\n",
    );
    cli.write(
        "repo/compose/app/docker-compose.yml",
        "version: '3.8'\nservices:\n  web:\n    image: nginx\n    configs:\n      - source: site\n        target: /etc/nginx/conf.d/site.conf\nconfigs:\n  site:\n    file: ./site.conf\n",
    );
    let site = "server { listen 80; }\n";
    cli.write("repo/compose/app/site.conf", site);

    let record = cli.dir.path().join("repo/stacks/app.yaml");
    let run = cli.run(&["apply", "-f", path_str(&record)]).expect(0);
    assert_eq!(run.lines(), ["Stack/app created"]);

    let json = cli.run(&["get", "stacks", "app", "-o", "json"]).expect(0);
    let stored: Value = serde_json::from_str(&json.stdout).expect("get -o json is not JSON");
    let spec = &stored["spec"];
    assert!(spec.get("composeFile").is_none(), "{spec}");
    assert_eq!(
        spec["compose"]["services"]["web"]["image"], "nginx",
        "{spec}"
    );
    let config = &spec["compose"]["configs"]["site"];
    assert_eq!(config["content"], site, "{spec}");
    assert!(config.get("file").is_none(), "{spec}");
    assert_eq!(cli.record("Stack", "app").await.as_ref(), Some(&stored));
}

#[tokio::test]
async fn flags_can_come_from_the_environment() {
    let cli = Cli::new("environment").await;
    let file = cli.write("net.yaml", &network("from-env"));
    let output = binary()
        .env("SWARMKEEPER_ETCD_ENDPOINTS", Etcd::shared().endpoint())
        .env("SWARMKEEPER_PREFIX", cli.store.prefix())
        .env("SWARMKEEPER_SOURCE", "env-source")
        .args(["apply", "-f", path_str(&file)])
        .output()
        .expect("cannot run the swarmkeeper binary");
    assert!(output.status.success(), "{output:?}");
    assert!(cli.record("Network", "from-env").await.is_some());
    let source = cli
        .store
        .get_source("env-source")
        .await
        .expect("cannot read the source")
        .expect("SWARMKEEPER_SOURCE was not recorded");
    assert_eq!(source.records, ["Network/from-env"]);
}

#[tokio::test]
async fn an_unreachable_etcd_fails_with_exit_code_1_naming_it() {
    let cli = Cli::new("unreachable").await;
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("no free port");
        format!("http://{}", listener.local_addr().expect("bound"))
    };
    let file = cli.write("net.yaml", &network("lost"));
    for args in [&["get"][..], &["apply", "-f", path_str(&file)]] {
        let output = binary()
            .args(["--etcd-endpoints", &dead, "--prefix", cli.store.prefix()])
            .args(args)
            .output()
            .expect("cannot run the swarmkeeper binary");
        assert_eq!(output.status.code(), Some(1), "{args:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&dead), "{args:?}: {stderr}");
    }
}
