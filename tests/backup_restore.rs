//! A real backup, end to end: a DatabaseUser record makes a database on the local
//! PostgreSQL, a BackupJob dumps it with `local/postgres-client:15` every few seconds
//! into a volume (on the `host` network, with the user's password as a swarm secret),
//! keeps the last two dumps, and the newest restored into a fresh database gives back
//! the rows inserted before.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Etcd;
use common::backup::{Cleanup, Operator, cli, events, eventually, history, put, status};
use common::swarm::{docker, docker_ok, names_with_label, require_swarm_manager};
use serde_json::json;
use swarmkeeper::plan::backup_job::RunResult;

const IMAGE: &str = "local/postgres-client:15";

/// SQL as the server's superuser over the local socket; the answer.
fn superuser(sql: &str, stdin: Option<&[u8]>) -> String {
    let mut child = Command::new("su")
        .args([
            "postgres",
            "-c",
            &format!("psql -Atq -v ON_ERROR_STOP=1 {sql}"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{sql}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Drops the test's roles and databases, and the swarm secrets its records own.
struct Roles {
    names: Vec<String>,
    databases: Vec<String>,
    record: String,
}

impl Drop for Roles {
    fn drop(&mut self) {
        let drops = self
            .databases
            .iter()
            .map(|d| format!("DROP DATABASE IF EXISTS {d}"));
        let roles = self
            .names
            .iter()
            .map(|r| format!("DROP ROLE IF EXISTS {r}"));
        for sql in drops.chain(roles) {
            let _ = std::panic::catch_unwind(|| superuser(&format!("-c \"{sql}\""), None));
        }
        let owner = format!("swarmkeeper.owner=DatabaseUser.{}", self.record);
        for secret in names_with_label("secret", &owner) {
            let _ = docker(&["secret", "rm", &secret]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pg_dump_backup_restores_the_rows() {
    require_swarm_manager();
    let images = docker(&["image", "inspect", IMAGE]);
    assert!(
        images.status.success(),
        "{IMAGE} is missing: run hack/images.sh"
    );
    let id = format!("{:08x}", rand::random::<u32>());
    let (name, admin, user, db, fresh) = (
        format!("bkpg-{id}"),
        format!("skbkadm{id}"),
        format!("skbkusr{id}"),
        format!("skbkdb{id}"),
        format!("skbkfresh{id}"),
    );
    let volume = format!("{name}-backups");
    let _roles = Roles {
        names: vec![user.clone(), admin.clone()],
        databases: vec![db.clone(), fresh.clone()],
        record: name.clone(),
    };
    let _cleanup = Cleanup {
        jobs: vec![name.clone()],
        volumes: vec![volume.clone()],
    };
    let admin_password = format!("adm-{id}-pw");
    superuser(
        &format!(
            "-c \"CREATE ROLE {admin} LOGIN CREATEROLE CREATEDB PASSWORD '{admin_password}'\""
        ),
        None,
    );
    let store = Etcd::shared().store("backup-restore").await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("secret.key");
    std::fs::write(&key, rand::random::<[u8; 32]>()).unwrap();
    let secret_spec = json!({"value": {"literal": admin_password}});
    let mut with_key = cli(&store);
    with_key.arg("--secret-key-file").arg(&key);
    // The literal is sealed by apply, which the key is needed for.
    let file = dir.path().join("admin.yaml");
    let record = json!({
        "apiVersion": "swarmkeeper.dev/v1alpha1", "kind": "Secret",
        "metadata": {"name": format!("{name}-admin")}, "spec": secret_spec,
    });
    std::fs::write(&file, record.to_string()).unwrap();
    let applied = with_key.args(["apply", "-f"]).arg(&file).output().unwrap();
    assert!(applied.status.success(), "{applied:?}");
    let password_secret = format!("{name}_password");
    put(
        &store,
        "DatabaseUser",
        &name,
        json!({
            "engine": "postgres",
            "server": {"host": "127.0.0.1", "port": 5432, "adminUser": admin,
                       "adminPasswordSecret": format!("{name}-admin"), "sslMode": "require"},
            "user": user, "database": db, "createDatabase": true, "privileges": ["ALL"],
            "passwordSecret": password_secret,
        }),
    )
    .await;
    let _operator = Operator::start(&store, Some(&key));
    eventually(
        "the user and database are made",
        Duration::from_secs(60),
        async || {
            let status = store.get_status("DatabaseUser", &name).await.ok()??;
            (status.value["phase"] == "Ready").then_some(())
        },
    )
    .await;
    let password = eventually("the user's password", Duration::from_secs(60), async || {
        let out = cli(&store)
            .arg("--secret-key-file")
            .arg(&key)
            .args(["secret", "reveal", &password_secret])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    })
    .await;
    let login = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            &user,
            "-d",
            &db,
            "-v",
            "ON_ERROR_STOP=1",
            "-Atqc",
        ])
        .arg("CREATE TABLE kittens (name text); INSERT INTO kittens VALUES ('tom'), ('felix')")
        .env("PGPASSWORD", &password)
        .output()
        .unwrap();
    assert!(login.status.success(), "{login:?}");

    // Keep the two newest dumps, as the example's `ls -1t | tail | xargs rm` does.
    let command = format!(
        "PGPASSWORD=$(cat /run/secrets/{password_secret}) \
         pg_dump --no-owner -h 127.0.0.1 -U {user} -d {db} -f /backups/{db}-$(date +%s).sql \
         && ls -1t /backups/{db}-*.sql | tail -n +3 | xargs -r rm && echo dumped"
    );
    put(
        &store,
        "BackupJob",
        &name,
        json!({
            "schedule": "*/3 * * * * *",
            "image": IMAGE,
            "command": ["sh", "-c", command],
            "secrets": [password_secret],
            "networks": ["host"],
            "mounts": [{"type": "volume", "source": volume, "target": "/backups"}],
            "history": {"successful": 1, "failed": 1},
        }),
    )
    .await;
    let runs = eventually("three dumps", Duration::from_secs(60), async || {
        let runs = history(&store, &name).await;
        let ok = runs
            .iter()
            .filter(|r| r.result == RunResult::Succeeded)
            .count();
        assert!(
            runs.iter().all(|r| r.result != RunResult::Failed),
            "{runs:?}"
        );
        (ok >= 3).then_some(runs)
    })
    .await;
    assert!(runs.iter().any(|r| r.log == ["dumped"]), "{runs:?}");
    let listing = docker_ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{volume}:/b"),
        IMAGE,
        "ls",
        "/b",
    ]);
    assert_eq!(
        listing.lines().count(),
        2,
        "the two newest dumps: {listing}"
    );

    let newest = docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{volume}:/b"),
        IMAGE,
        "sh",
        "-c",
        "cat $(ls -1t /b/*.sql | head -n 1)",
    ]);
    assert!(newest.status.success(), "{newest:?}");
    superuser(&format!("-c \"CREATE DATABASE {fresh}\""), None);
    superuser(&format!("-d {fresh} -f -"), Some(&newest.stdout));
    let rows = superuser(
        &format!("-d {fresh} -c \"SELECT string_agg(name, ',' ORDER BY name) FROM kittens\""),
        None,
    );
    assert_eq!(rows, "felix,tom");

    // The password reached the run as a secret file: it is in no status or event.
    let status = status(&store, &name).await.unwrap().to_string();
    assert!(!status.contains(&password), "{status}");
    for reason in ["Started", "Succeeded", "Removed"] {
        for message in events(&store, &name, reason).await {
            assert!(!message.contains(&password), "{message}");
        }
    }
}
