//! `apply` through the binary: every example, round trips through `get -o yaml`,
//! reapplies that change nothing, 300 records, prune, and inline compose files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use swarmkeeper::api::load::load_paths;

use super::{Cli, examples, network, path_str};

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
