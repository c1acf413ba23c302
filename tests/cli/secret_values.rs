//! Secret values through the binary: never in etcd or in any output, rewritten
//! only when they change, and refused without a key.

use serde_json::Value;
use swarmkeeper::store::SecretKey;

use super::common::unique_name;
use super::{Cli, VALID, path_str};

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
