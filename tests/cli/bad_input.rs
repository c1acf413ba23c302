//! Bad input through the binary: each invalid file is rejected naming its place
//! and writes nothing, and every problem of an apply is reported at once.

use super::{Cli, VALID, network, path_str};

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
        (
            "missing-compose-files",
            format!(
                "{envelope}kind: Stack\nmetadata: {{name: layered}}\nspec:\n  composeFiles: [nowhere/base.yml, nowhere/prod.yml]\n"
            ),
            vec![
                "Stack/layered",
                "spec.composeFiles[0]: cannot read",
                "spec.composeFiles[1]: cannot read",
            ],
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
