//! The DatabaseUser controller through the binary, against the local
//! PostgreSQL that `hack/setup.sh` starts: the user, its database and grants
//! are made, the password is delivered as a swarm secret and logs in, drift
//! made by hand is reported and healed, and `deletionPolicy: Delete` drops it
//! all. Each test makes its own admin role and names, and a guard drops them.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::Etcd;
use common::swarm::{docker, names_with_label, require_swarm_manager};
use swarmkeeper::store::Store;

/// Runs SQL as the `postgres` superuser over the local socket (peer auth).
fn psql_admin(sql: &str) -> Output {
    Command::new("su")
        .args(["postgres", "-c", &format!("psql -v ON_ERROR_STOP=1 -Atqc \"{sql}\"")])
        .output()
        .expect("su runs")
}

/// Logs in as `user` with `password` over TCP (scram-sha-256) and runs `sql`.
fn psql_as(user: &str, password: &str, database: &str, sql: &str) -> Output {
    Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", user, "-d", database, "-v", "ON_ERROR_STOP=1"])
        .args(["-Atqc", sql])
        .env("PGPASSWORD", password)
        .output()
        .expect("psql runs")
}

/// Drops the test's roles and database, and the swarm secrets its record owns.
struct Guard {
    admin: String,
    user: String,
    database: String,
    record: String,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = psql_admin(&format!("DROP DATABASE IF EXISTS {}", self.database));
        let _ = psql_admin(&format!("DROP ROLE IF EXISTS {}", self.user));
        let _ = psql_admin(&format!("DROP ROLE IF EXISTS {}", self.admin));
        let owner = format!("swarmkeeper.owner=DatabaseUser.{}", self.record);
        for secret in names_with_label("secret", &owner) {
            let _ = docker(&["secret", "rm", &secret]);
        }
    }
}

struct Env {
    store: Store,
    dir: tempfile::TempDir,
}

impl Env {
    fn key(&self) -> PathBuf {
        self.dir.path().join("secret.key")
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_swarmkeeper"))
            .args(["--etcd-endpoints", &Etcd::shared().endpoint()])
            .args(["--prefix", self.store.prefix()])
            .args(["--secret-key-file", self.key().to_str().unwrap()])
            .args(args)
            .env("RUST_LOG", "debug")
            .output()
            .expect("the binary runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, stdout, stderr) = self.run(args);
        assert_eq!(code, 0, "{args:?}:\n{stdout}\n{stderr}");
        stdout
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_user_is_made_delivered_healed_and_dropped() {
    require_swarm_manager();
    let id = format!("{:08x}", rand::random::<u32>());
    let guard = Guard {
        admin: format!("skadm{id}"),
        user: format!("skusr{id}"),
        database: format!("skdb{id}"),
        record: format!("app{id}"),
    };
    let admin_password = format!("adm-{id}-pw");
    let created = psql_admin(&format!(
        "CREATE ROLE {} LOGIN CREATEROLE CREATEDB PASSWORD '{admin_password}'",
        guard.admin
    ));
    assert!(created.status.success(), "{created:?}");
    let env = Env {
        store: Etcd::shared().store("database-user").await,
        dir: tempfile::tempdir().unwrap(),
    };
    std::fs::write(env.key(), rand::random::<[u8; 32]>()).unwrap();
    let (name, user, database) = (&guard.record, &guard.user, &guard.database);
    let records = format!(
        "apiVersion: swarmkeeper.dev/v1alpha1
kind: Secret
metadata: {{name: {name}-admin}}
spec: {{value: {{literal: {admin_password}}}}}
---
apiVersion: swarmkeeper.dev/v1alpha1
kind: DatabaseUser
metadata: {{name: {name}}}
spec:
  engine: postgres
  server: {{host: 127.0.0.1, port: 5432, adminUser: {admin}, adminPasswordSecret: {name}-admin, sslMode: require}}
  user: {user}
  database: {database}
  createDatabase: true
  privileges: [ALL]
  passwordSecret: {name}_password
  connectionSecret:
    name: {name}_uri
    template: \"postgres://{{{{user}}}}:{{{{password}}}}@{{{{host}}}}:{{{{port}}}}/{{{{database}}}}\"
  deletionPolicy: Delete
  dropDatabase: true
",
        admin = guard.admin
    );
    let file = env.dir.path().join("records.yaml");
    std::fs::write(&file, records).unwrap();
    env.ok(&["apply", "-f", file.to_str().unwrap()]);
    let (_, once, logs) = env.run(&["run", "--once"]);
    assert!(
        once.contains(&format!("DatabaseUser/{name}: Ready")),
        "{once}\n{logs}"
    );

    let password = env.ok(&["secret", "reveal", &format!("{name}_password")]);
    let password = password.trim_end();
    assert_eq!(password.len(), 32);
    let used = psql_as(user, password, database, "CREATE TABLE t (i int); INSERT INTO t VALUES (1); SELECT count(*) FROM t");
    assert!(used.status.success(), "{used:?}");
    let uri = env.ok(&["secret", "reveal", &format!("{name}_uri")]);
    assert_eq!(
        uri.trim_end(),
        format!("postgres://{user}:{password}@127.0.0.1:5432/{database}")
    );
    for logical in ["password", "uri"] {
        let label = format!("swarmkeeper.secret={name}_{logical}");
        assert_eq!(names_with_label("secret", &label).len(), 1, "{label}");
    }

    // The password changed by hand: drift names the record, run restores it.
    let changed = psql_admin(&format!("ALTER ROLE {user} PASSWORD 'changed-by-hand'"));
    assert!(changed.status.success(), "{changed:?}");
    let (code, report, _) = env.run(&["drift", "databaseuser", name, "--exit-code", "-o", "json"]);
    assert_eq!(code, 2, "{report}");
    assert!(report.contains("password") && !report.contains(password), "{report}");
    let (_, second, logs2) = env.run(&["run", "--once"]);
    assert!(second.contains(&format!("DatabaseUser/{name}: Ready")), "{second}");
    assert!(psql_as(user, password, database, "SELECT 1").status.success());
    let (code, _, _) = env.run(&["drift", "databaseuser", name, "--exit-code"]);
    assert_eq!(code, 0);

    // The password never shows: not in logs, status, events, describe.
    let describe = env.ok(&["describe", "databaseuser", name]);
    let events = env.ok(&["events"]);
    for text in [&once, &logs, &second, &logs2, &describe, &events, &report] {
        assert!(!text.contains(password), "the password leaked:\n{text}");
    }

    // Deleted with deletionPolicy Delete and dropDatabase: all of it goes.
    env.ok(&["delete", "databaseuser", name]);
    env.ok(&["run", "--once"]);
    let role = psql_admin(&format!("SELECT count(*) FROM pg_roles WHERE rolname = '{user}'"));
    assert_eq!(String::from_utf8_lossy(&role.stdout).trim(), "0");
    let db = psql_admin(&format!("SELECT count(*) FROM pg_database WHERE datname = '{database}'"));
    assert_eq!(String::from_utf8_lossy(&db.stdout).trim(), "0");
    let owner = format!("swarmkeeper.owner=DatabaseUser.{name}");
    assert!(names_with_label("secret", &owner).is_empty());
    drop(guard);
}
