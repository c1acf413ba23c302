//! Secrets through the binary: a stack cannot use another's sealed value,
//! malformed secret fields never quote the value, and `key rotate` re-seals
//! every value while keeping every digest.

use std::path::Path;

use swarmkeeper::store::{CryptoError, KeyId, SecretKey};

use super::{Cli, Run, VALID, path_str, unique_name};

const ENVELOPE: &str = "apiVersion: swarmkeeper.dev/v1alpha1\n";

impl Cli {
    /// Runs `swarmkeeper --secret-key-file <key> <args>`.
    fn run_with_key(&self, key: &Path, args: &[&str]) -> Run {
        let mut all = vec!["--secret-key-file", path_str(key)];
        all.extend_from_slice(args);
        self.run_without_key(&all)
    }

    /// Every sealed value: store name and bytes.
    async fn sealed_values(&self) -> Vec<(String, Vec<u8>)> {
        let prefix = format!("{}/secrets/", self.store.prefix());
        self.raw_entries()
            .await
            .into_iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_owned(), v)))
            .collect()
    }
}

fn assert_not_shown(run: &Run, canaries: &[&str]) {
    for canary in canaries {
        assert!(
            !run.stdout.contains(canary) && !run.stderr.contains(canary),
            "{canary} printed: {run:#?}"
        );
    }
}

/// A stack with one service using `secret`, which `secret_def` defines.
fn stack(name: &str, secret: &str, secret_def: &str) -> String {
    format!(
        "{ENVELOPE}kind: Stack\nmetadata: {{name: {name}}}\nspec:\n  compose:\n    services:\n      web:\n        image: nginx\n        secrets: [{secret}]\n    secrets:\n      {secret}: {secret_def}\n"
    )
}

#[tokio::test]
async fn a_stack_cannot_use_another_stacks_sealed_value() {
    let cli = Cli::new("isolation").await;
    let canary = format!("canary-{}", unique_name("first"));
    cli.write("first/token.txt", &canary);
    let first = cli.write(
        "first/stack.yaml",
        &stack("first", "token", "{file: ./token.txt}"),
    );
    assert_not_shown(
        &cli.run(&["apply", "-f", path_str(&first)]).expect(0),
        &[&canary],
    );
    let before = cli.raw_revisions().await;

    let stolen = "{x-swarmkeeper-secret: \"stack:first:token\"}";
    let second = cli.write("second.yaml", &stack("second", "stolen", stolen));
    let valid = cli.write("valid.yaml", VALID);
    let run = cli
        .run(&["apply", "-f", path_str(&valid), "-f", path_str(&second)])
        .expect(64);
    for needle in [
        "second.yaml: document 1 (Stack/second): spec.compose.secrets.stolen.x-swarmkeeper-secret:",
        "\"stack:first:token\" is not this stack's",
        "stack:second:<secret>",
    ] {
        assert!(run.stderr.contains(needle), "{needle:?} missing: {run:#?}");
    }
    assert_not_shown(&run, &[&canary]);
    assert_eq!(cli.raw_revisions().await, before, "a refused apply wrote");
    // A dry run and a diff refuse it the same way.
    cli.run(&["apply", "--dry-run", "-f", path_str(&second)])
        .expect(64);
    cli.run(&["diff", "-f", path_str(&second)]).expect(64);
}

/// Secret-holding records with the value in the wrong place, as typos make them.
fn malformed(canary: &str) -> Vec<(&'static str, String, &'static str)> {
    let secret =
        |spec: &str| format!("{ENVELOPE}kind: Secret\nmetadata: {{name: s}}\nspec: {spec}\n");
    vec![
        (
            "value-not-a-mapping",
            secret(&format!("{{value: \"{canary}\"}}")),
            "spec.value: invalid type: string, expected struct SecretSource",
        ),
        (
            "spec-not-a-mapping",
            secret(&format!("\"{canary}\"")),
            "spec: invalid type: string, expected struct SecretSpec",
        ),
        (
            "literal-without-colon",
            secret(&format!("{{value: {{literal {canary}}}}}")),
            "spec.value: unknown field, expected",
        ),
        (
            "key-of-its-own",
            secret(&format!("{{{canary}: 1}}")),
            "spec: unknown field, expected",
        ),
        (
            "literal-a-list",
            secret(&format!("{{value: {{literal: [\"{canary}\", 2]}}}}")),
            "spec.value.literal: invalid type: sequence, expected a string",
        ),
        (
            "sealed-not-a-bool",
            secret(&format!("{{value: {{sealed: \"{canary}\"}}}}")),
            "spec.value.sealed: invalid type: string, expected a boolean",
        ),
        (
            "digest-a-number",
            secret("{value: {sealed: true, digest: 9081726354}}"),
            "spec.value.digest: invalid type: integer, expected a string",
        ),
        (
            "unclosed-quote",
            secret(&format!("{{value: {{literal: \"{canary}}}}}")),
            "unclosed.yaml",
        ),
        (
            "registry-password-inline",
            format!(
                "{ENVELOPE}kind: Registry\nmetadata: {{name: r}}\nspec:\n  address: 127.0.0.1:5000\n  credentials: {{username: u, {canary}}}\n"
            ),
            "spec.credentials: unknown field, expected",
        ),
        (
            "database-password-inline",
            format!(
                "{ENVELOPE}kind: DatabaseUser\nmetadata: {{name: d}}\nspec:\n  engine: postgres\n  server: {{host: db, adminUser: a, adminPasswordSecret: [\"{canary}\"]}}\n  user: u\n  passwordSecret: p\n"
            ),
            "spec.server.adminPasswordSecret: invalid type: sequence, expected a string",
        ),
    ]
}

#[tokio::test]
async fn malformed_secret_fields_never_quote_the_value() {
    let cli = Cli::new("redacted").await;
    let canary = format!("s3cr3t-{}", unique_name("canary"));
    let shapes = malformed(&canary);
    for (case, content, needle) in &shapes {
        let file = if *case == "unclosed-quote" {
            cli.write("unclosed.yaml", content)
        } else {
            cli.write(&format!("{case}.yaml"), content)
        };
        for args in [
            vec!["apply", "-f"],
            vec!["apply", "--dry-run", "-f"],
            vec!["diff", "-f"],
        ] {
            let mut args = args.clone();
            args.push(path_str(&file));
            let run = cli.run(&args).expect(64);
            assert!(
                run.stderr.contains(needle),
                "{case}: {needle:?} missing: {run:#?}"
            );
            assert_not_shown(&run, &[&canary, "9081726354"]);
        }
    }
    // A numeric canary is a value too.
    let number = cli.write(
        "number.yaml",
        &format!("{ENVELOPE}kind: Secret\nmetadata: {{name: n}}\nspec: {{value: {{literal: 4815162342}}}}\n"),
    );
    let run = cli.run(&["apply", "-f", path_str(&number)]).expect(64);
    assert!(
        run.stderr
            .contains("spec.value.literal: invalid type: integer, expected a string"),
        "{run:#?}"
    );
    assert_not_shown(&run, &["4815162342"]);
    assert_eq!(cli.raw_entries().await.len(), 0);
}

#[tokio::test]
async fn key_rotate_reseals_every_value_and_keeps_every_digest() {
    let cli = Cli::new("rotate").await;
    let literal = format!("canary-{}", unique_name("literal"));
    let in_file = format!("canary-{}", unique_name("file"));
    cli.write(
        "records/secret.yaml",
        &format!("{ENVELOPE}kind: Secret\nmetadata: {{name: given}}\nspec:\n  value: {{literal: \"{literal}\"}}\n"),
    );
    cli.write(
        "records/stack.yaml",
        &stack("app", "token", "{file: ./token.txt}"),
    );
    cli.write("records/token.txt", &in_file);
    let records = cli.dir.path().join("records");
    let records = path_str(&records);
    let old_key = cli.key_file();
    let new_key = cli.write("new.key", "");
    std::fs::write(&new_key, rand::random::<[u8; 32]>()).expect("cannot write the new key");
    let (old, new) = (
        SecretKey::from_file(&old_key).expect("old key"),
        SecretKey::from_file(&new_key).expect("new key"),
    );
    let mut runs = vec![cli.run(&["apply", "-f", records]).expect(0)];
    let generations = cli.revisions().await;
    let ids = [("Secret", "given"), ("Stack", "app")];
    let mut before = Vec::new();
    for (kind, name) in ids {
        before.push(cli.record(kind, name).await);
    }
    let sealed_before = cli.sealed_values().await;
    let names: Vec<&str> = sealed_before.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["given", "keyring:digest", "stack:app:token"],
        "{names:?}"
    );

    let run = cli.run_with_key(
        &old_key,
        &["key", "rotate", "--new-key-file", path_str(&new_key)],
    );
    let run = run.expect(0);
    assert!(
        run.stdout.contains(&format!(
            "re-sealed 3 values with key {}; 0 were sealed with it already",
            new.id()
        )),
        "{run:#?}"
    );
    assert!(run.stdout.contains("digests are unchanged"), "{run:#?}");
    runs.push(run);

    // Every value is sealed with the new key, opens with it, and not with the old.
    let plaintexts = [
        ("given", literal.as_str()),
        ("stack:app:token", in_file.as_str()),
    ];
    for (name, sealed) in cli.sealed_values().await {
        assert_eq!(KeyId::of_sealed(&sealed), Some(new.id()), "{name}");
        let opened = new.open(&name, &sealed).expect("opens with the new key");
        if let Some((_, plain)) = plaintexts.iter().find(|(n, _)| *n == name) {
            assert_eq!(opened.expose(), plain.as_bytes(), "{name}");
        }
        assert!(
            matches!(
                old.open(&name, &sealed),
                Err(CryptoError::UnknownKey { .. })
            ),
            "{name}"
        );
    }

    // With the new key alone, the same files change nothing: values open, digests agree.
    let raw_before = cli.raw_revisions().await;
    let run = cli
        .run_with_key(&new_key, &["apply", "-f", records])
        .expect(0);
    assert_eq!(
        run.lines(),
        ["Secret/given unchanged", "Stack/app unchanged"]
    );
    runs.push(run);
    assert_eq!(cli.revisions().await, generations, "a generation moved");
    assert_eq!(
        cli.raw_revisions().await,
        raw_before,
        "a value was rewritten"
    );
    for ((kind, name), value) in ids.into_iter().zip(&before) {
        assert_eq!(
            &cli.record(kind, name).await,
            value,
            "{kind}/{name} changed"
        );
    }

    // Running it again finds nothing to do; the old key alone opens nothing now.
    let again = cli
        .run_with_key(
            &old_key,
            &[
                "--previous-secret-key-file",
                path_str(&old_key),
                "key",
                "rotate",
                "--new-key-file",
                path_str(&new_key),
            ],
        )
        .expect(0);
    assert!(again.stdout.contains("re-sealed 0 values"), "{again:#?}");
    let refused = cli
        .run_with_key(&old_key, &["apply", "-f", records])
        .expect(1);
    assert!(
        refused.stderr.contains(&new.id().to_string()),
        "{refused:#?}"
    );
    runs.extend([again, refused]);
    for run in &runs {
        assert_not_shown(run, &[&literal, &in_file]);
    }
}

#[tokio::test]
async fn key_rotate_moves_values_of_the_old_format_and_never_writes_over_a_change() {
    use aes_gcm::aead::{Aead, KeyInit};
    let cli = Cli::new("rotate-old").await;
    let raw: [u8; 32] = std::fs::read(cli.key_file())
        .expect("key")
        .try_into()
        .expect("32 bytes");
    // nonce || ciphertext || tag, no key id, no associated data: the format before.
    let nonce = [7u8; 12];
    let mut old_format = nonce.to_vec();
    old_format.extend(
        aes_gcm::Aes256Gcm::new(&raw.into())
            .encrypt(
                aes_gcm::Nonce::from_slice(&nonce),
                b"old-format-value".as_slice(),
            )
            .expect("encrypt"),
    );
    cli.store
        .put_secret("legacy", &old_format)
        .await
        .expect("put");
    let new_key = cli.write("new.key", "");
    std::fs::write(&new_key, rand::random::<[u8; 32]>()).expect("cannot write the new key");
    let new = SecretKey::from_file(&new_key).expect("new key");

    // The controller and apply refuse the old format, and say how to move it.
    let old = SecretKey::from_file(&cli.key_file()).expect("old key");
    assert!(matches!(
        old.open("legacy", &old_format),
        Err(CryptoError::OldFormat)
    ));

    let run = cli
        .run(&["key", "rotate", "--new-key-file", path_str(&new_key)])
        .expect(0);
    assert!(run.stdout.contains("re-sealed 2 values"), "{run:#?}");
    let sealed = cli
        .store
        .get_secret("legacy")
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(
        new.open("legacy", &sealed).expect("opens").expose(),
        b"old-format-value"
    );

    // A rotation writes by compare-and-swap: a value changed since it was read stays.
    let current = cli
        .store
        .get_sealed("legacy")
        .await
        .expect("get")
        .expect("kept");
    cli.store
        .put_secret("legacy", &new.seal("legacy", b"changed"))
        .await
        .expect("put");
    let stale = cli
        .store
        .swap_sealed(
            "legacy",
            &new.seal("legacy", b"stale"),
            current.mod_revision,
        )
        .await
        .expect("txn");
    assert!(!stale, "a stale swap landed");
    let sealed = cli
        .store
        .get_secret("legacy")
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(
        new.open("legacy", &sealed).expect("opens").expose(),
        b"changed"
    );
}

#[tokio::test]
async fn previous_key_without_a_current_one_is_bad_usage() {
    let cli = Cli::new("previous-alone").await;
    let valid = cli.write("valid.yaml", VALID);
    let run = cli
        .run_without_key(&[
            "--previous-secret-key-file",
            path_str(&cli.key_file()),
            "apply",
            "-f",
            path_str(&valid),
        ])
        .expect(64);
    assert!(
        run.stderr
            .contains("--previous-secret-key-file needs --secret-key-file"),
        "{run:#?}"
    );
    let run = cli
        .run_without_key(&["key", "rotate", "--new-key-file", path_str(&cli.key_file())])
        .expect(64);
    assert!(run.stderr.contains("--secret-key-file"), "{run:#?}");
    assert_eq!(cli.raw_entries().await.len(), 0);
}
