//! Records through the binary: the size cap of `apply`, and `get -o json|yaml`
//! showing each record's status.

use serde_json::Value;
use swarmkeeper::controllers::status::{Phase, Status};

use super::{Cli, VALID, path_str};

/// A Network record whose one annotation is `size` bytes long.
fn network_of_size(name: &str, size: usize) -> String {
    format!(
        "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Network\nmetadata:\n  name: {name}\n  annotations: {{big: \"{}\"}}\nspec: {{driver: overlay}}\n",
        "x".repeat(size)
    )
}

#[tokio::test]
async fn a_record_over_the_size_limit_is_refused_naming_file_record_and_limit() {
    let cli = Cli::new("too-big").await;
    let valid = cli.write("valid.yaml", VALID);
    let big = cli.write("big.yaml", &network_of_size("big", 1024 * 1024 + 1));
    for args in [vec!["apply"], vec!["apply", "--dry-run"]] {
        let mut args = args.clone();
        args.extend(["-f", path_str(&valid), "-f", path_str(&big)]);
        let run = cli.run(&args).expect(64);
        for needle in [
            "big.yaml: document 1 (Network/big): the record is",
            "over the limit of 1048576 bytes (1 MiB",
        ] {
            assert!(run.stderr.contains(needle), "{needle:?}: {run:#?}");
        }
        assert!(run.stdout.is_empty(), "{run:#?}");
        assert_eq!(cli.raw_entries().await.len(), 0, "a refused apply wrote");
    }
    // Just under the limit it is stored: the limit sits below what etcd takes.
    let under = cli.write("under.yaml", &network_of_size("under", 1000 * 1000));
    let run = cli.run(&["apply", "-f", path_str(&under)]).expect(0);
    assert_eq!(run.lines(), ["Network/under created"]);
}

#[tokio::test]
async fn get_json_and_yaml_show_each_records_status() {
    let cli = Cli::new("get-status").await;
    let valid = cli.write("valid.yaml", VALID);
    cli.run(&["apply", "-f", path_str(&valid)]).expect(0);
    let generation = cli.revisions().await["Network/fine"];
    let status = Status::new(Phase::Ready, generation).with_message("converged");
    cli.store
        .put_status(
            "Network",
            "fine",
            &serde_json::to_value(&status).expect("json"),
        )
        .await
        .expect("put status");

    let list: Vec<Value> =
        serde_json::from_str(&cli.run(&["get", "-o", "json"]).expect(0).stdout).expect("json");
    let one: Value = serde_json::from_str(
        &cli.run(&["get", "network", "fine", "-o", "json"])
            .expect(0)
            .stdout,
    )
    .expect("json");
    let yaml = cli.run(&["get", "-o", "yaml"]).expect(0).stdout;
    let docs: Vec<Value> = serde_saphyr::from_multiple(&yaml).expect("yaml");
    for shown in [&list[0], &one, &docs[0]] {
        assert_eq!(shown["kind"], "Network", "{shown}");
        assert_eq!(shown["status"]["phase"], "Ready", "{shown}");
        assert_eq!(shown["status"]["observedRevision"], generation, "{shown}");
        assert_eq!(shown["status"]["message"], "converged", "{shown}");
    }

    // What get prints applies back unchanged: the status is the controller's.
    let shown = cli.write("shown.yaml", &yaml);
    let run = cli.run(&["apply", "-f", path_str(&shown)]).expect(0);
    assert_eq!(run.lines(), ["Network/fine unchanged"]);
    assert_eq!(cli.revisions().await["Network/fine"], generation);
}
