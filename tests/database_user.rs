//! The DatabaseUser controller through the binary, against the local
//! PostgreSQL that `hack/setup.sh` starts: the user, its database and grants
//! are made, the password is delivered as a swarm secret and logs in, drift
//! made by hand is reported and healed, and `deletionPolicy: Delete` drops it
//! all. Each test makes its own admin role and names, and a guard drops them.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::Etcd;
use common::swarm::{docker, docker_ok, names_with_label, require_swarm_manager};
use swarmkeeper::store::Store;

/// What differs between the engines, for the test's own SQL.
#[derive(Clone, Copy, PartialEq)]
enum Engine {
    Postgres,
    Mariadb,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mariadb => "mariadb",
        }
    }

    fn port(self) -> u16 {
        match self {
            Engine::Postgres => 5432,
            Engine::Mariadb => 3306,
        }
    }

    /// Runs SQL as the server's superuser over the local socket (peer auth);
    /// the answer's first line.
    fn admin(self, sql: &str) -> String {
        let out = match self {
            Engine::Postgres => Command::new("su")
                .args([
                    "postgres",
                    "-c",
                    &format!("psql -v ON_ERROR_STOP=1 -Atqc \"{sql}\""),
                ])
                .output(),
            Engine::Mariadb => Command::new("mysql")
                .args(["--user=root", "-N", "-B", "-e", sql])
                .output(),
        }
        .expect("the client runs");
        assert!(out.status.success(), "{sql}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Logs in as `user` with `password` over TCP and runs `sql`.
    fn login(self, user: &str, password: &str, database: &str, sql: &str) -> Output {
        match self {
            Engine::Postgres => Command::new("psql")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-U",
                    user,
                    "-d",
                    database,
                    "-v",
                    "ON_ERROR_STOP=1",
                ])
                .args(["-Atqc", sql])
                .env("PGPASSWORD", password)
                .output(),
            Engine::Mariadb => Command::new("mysql")
                .args(["-h", "127.0.0.1", "-u", user, database, "-e", sql])
                .env("MYSQL_PWD", password)
                .output(),
        }
        .expect("the client runs")
    }

    fn create_admin(self, admin: &str, password: &str) {
        match self {
            // Not a superuser: what an operator should be given.
            Engine::Postgres => self.admin(&format!(
                "CREATE ROLE {admin} LOGIN CREATEROLE CREATEDB PASSWORD '{password}'"
            )),
            Engine::Mariadb => self.admin(&format!(
                "CREATE USER '{admin}'@'%' IDENTIFIED BY '{password}'; \
                 GRANT ALL PRIVILEGES ON *.* TO '{admin}'@'%' WITH GRANT OPTION"
            )),
        };
    }

    fn set_password(self, user: &str, password: &str) {
        match self {
            Engine::Postgres => self.admin(&format!("ALTER ROLE {user} PASSWORD '{password}'")),
            Engine::Mariadb => self.admin(&format!(
                "ALTER USER '{user}'@'%' IDENTIFIED BY '{password}'"
            )),
        };
    }

    fn users_named(self, user: &str) -> String {
        match self {
            Engine::Postgres => self.admin(&format!(
                "SELECT count(*) FROM pg_roles WHERE rolname = '{user}'"
            )),
            Engine::Mariadb => self.admin(&format!(
                "SELECT count(*) FROM mysql.user WHERE user = '{user}'"
            )),
        }
    }

    fn databases_named(self, database: &str) -> String {
        match self {
            Engine::Postgres => self.admin(&format!(
                "SELECT count(*) FROM pg_database WHERE datname = '{database}'"
            )),
            Engine::Mariadb => self.admin(&format!(
                "SELECT count(*) FROM information_schema.schemata WHERE schema_name = '{database}'"
            )),
        }
    }

    fn drop_all(self, guard: &Guard) {
        let sql = match self {
            Engine::Postgres => vec![
                format!("DROP DATABASE IF EXISTS {}", guard.database),
                format!("DROP ROLE IF EXISTS {}", guard.user),
                format!("DROP ROLE IF EXISTS {}", guard.admin),
            ],
            Engine::Mariadb => vec![
                format!("DROP DATABASE IF EXISTS {}", guard.database),
                format!("DROP USER IF EXISTS '{}'@'%'", guard.user),
                format!("DROP USER IF EXISTS '{}'@'%'", guard.admin),
            ],
        };
        for statement in sql {
            // Best effort: a failing cleanup must not hide the test's own failure.
            let _ = std::panic::catch_unwind(|| self.admin(&statement));
        }
    }
}

/// Drops the test's roles and database, and the swarm secrets its record owns.
struct Guard {
    engine: Engine,
    admin: String,
    user: String,
    database: String,
    record: String,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for service in names_with_label(
            "service",
            &format!("swarmkeeper.owner=Stack.{}", self.record),
        ) {
            let _ = docker(&["service", "rm", &service]);
        }
        self.engine.drop_all(self);
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
    a_user_is_made_delivered_healed_and_dropped(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_user_is_made_delivered_healed_and_dropped() {
    a_user_is_made_delivered_healed_and_dropped(Engine::Mariadb).await;
}

async fn a_user_is_made_delivered_healed_and_dropped(engine: Engine) {
    require_swarm_manager();
    let id = format!("{:08x}", rand::random::<u32>());
    let guard = Guard {
        engine,
        admin: format!("skadm{id}"),
        user: format!("skusr{id}"),
        database: format!("skdb{id}"),
        record: format!("app{id}"),
    };
    let admin_password = format!("adm-{id}-pw");
    engine.create_admin(&guard.admin, &admin_password);
    let env = Env {
        store: Etcd::shared().store(engine.name()).await,
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
  engine: {engine}
  server: {{host: 127.0.0.1, port: {port}, adminUser: {admin}, adminPasswordSecret: {name}-admin, sslMode: {ssl}}}
  user: {user}
  database: {database}
  createDatabase: true
  privileges: [ALL]
  passwordSecret: {name}_password
  connectionSecret:
    name: {name}_uri
    template: \"{engine}://{{{{user}}}}:{{{{password}}}}@{{{{host}}}}:{{{{port}}}}/{{{{database}}}}\"
  deletionPolicy: Delete
  dropDatabase: true
---
apiVersion: swarmkeeper.dev/v1alpha1
kind: Stack
metadata: {{name: {name}}}
spec:
  compose:
    version: '3.8'
    services:
      app:
        image: local/busybox:1
        command: [sleep, '3600']
        secrets: [uri]
        deploy: {{replicas: 0}}
    secrets:
      uri: {{external: true, name: {name}_uri}}
",
        admin = guard.admin,
        engine = engine.name(),
        port = engine.port(),
        // The local MariaDB has no TLS; PostgreSQL's has, with Debian's snakeoil certificate.
        ssl = if engine == Engine::Postgres { "require" } else { "disable" },
    );
    let file = env.dir.path().join("records.yaml");
    std::fs::write(&file, &records).unwrap();
    env.ok(&["apply", "-f", file.to_str().unwrap()]);
    let (_, once, logs) = env.run(&["run", "--once"]);
    for record in [
        format!("DatabaseUser/{name}: Ready"),
        format!("Stack/{name}: Ready"),
    ] {
        assert!(once.contains(&record), "{record}:\n{once}\n{logs}");
    }
    let mounted = docker_ok(&[
        "service",
        "inspect",
        &format!("{name}_app"),
        "--format",
        "{{range .Spec.TaskTemplate.ContainerSpec.Secrets}}{{.SecretName}}{{end}}",
    ]);
    assert!(mounted.starts_with(&format!("{name}_uri.v")), "{mounted}");

    let password = env.ok(&["secret", "reveal", &format!("{name}_password")]);
    let password = password.trim_end();
    assert_eq!(password.len(), 32);
    let used = engine.login(
        user,
        password,
        database,
        "CREATE TABLE t (i int); INSERT INTO t VALUES (1); SELECT count(*) FROM t",
    );
    assert!(used.status.success(), "{used:?}");
    let uri = env.ok(&["secret", "reveal", &format!("{name}_uri")]);
    assert_eq!(
        uri.trim_end(),
        format!(
            "{}://{user}:{password}@127.0.0.1:{}/{database}",
            engine.name(),
            engine.port()
        )
    );
    for logical in ["password", "uri"] {
        let label = format!("swarmkeeper.secret={name}_{logical}");
        assert_eq!(names_with_label("secret", &label).len(), 1, "{label}");
    }

    // The password changed by hand: drift names the record, run restores it.
    engine.set_password(user, "changed-by-hand");
    let (code, report, _) = env.run(&["drift", "databaseuser", name, "--exit-code", "-o", "json"]);
    assert_eq!(code, 2, "{report}");
    assert!(
        report.contains("password") && !report.contains(password),
        "{report}"
    );
    let (_, second, logs2) = env.run(&["run", "--once"]);
    assert!(
        second.contains(&format!("DatabaseUser/{name}: Ready")),
        "{second}"
    );
    assert!(
        engine
            .login(user, password, database, "SELECT 1")
            .status
            .success()
    );
    let (code, _, _) = env.run(&["drift", "databaseuser", name, "--exit-code"]);
    assert_eq!(code, 0);

    // Rotation: a new password in the server, new versions the stack moves to,
    // the old ones gone once unused; the old password no longer logs in.
    let rotated = records.replace(
        "  deletionPolicy: Delete",
        "  rotation: 1\n  deletionPolicy: Delete",
    );
    std::fs::write(&file, &rotated).unwrap();
    env.ok(&["apply", "-f", file.to_str().unwrap()]);
    env.run(&["run", "--once"]);
    let (_, third, _) = env.run(&["run", "--once"]);
    assert!(
        third.contains(&format!("DatabaseUser/{name}: Ready")),
        "{third}"
    );
    let new_password = env.ok(&["secret", "reveal", &format!("{name}_password")]);
    let new_password = new_password.trim_end();
    assert_ne!(new_password, password);
    assert!(
        !engine
            .login(user, password, database, "SELECT 1")
            .status
            .success()
    );
    assert!(
        engine
            .login(user, new_password, database, "SELECT 1")
            .status
            .success()
    );
    let label = format!("swarmkeeper.secret={name}_uri");
    let versions = names_with_label("secret", &label);
    assert_eq!(versions.len(), 1, "{versions:?}");
    let mounted_now = docker_ok(&[
        "service",
        "inspect",
        &format!("{name}_app"),
        "--format",
        "{{range .Spec.TaskTemplate.ContainerSpec.Secrets}}{{.SecretName}}{{end}}",
    ]);
    assert_eq!(mounted_now, versions[0]);
    assert_ne!(mounted_now, mounted);

    // A second record with a wrong admin password: its status says so, it is
    // retried, and it does not stop the first one.
    let wrong = format!(
        "apiVersion: swarmkeeper.dev/v1alpha1
kind: Secret
metadata: {{name: {name}-wrong}}
spec: {{value: {{literal: not-the-password}}}}
---
apiVersion: swarmkeeper.dev/v1alpha1
kind: DatabaseUser
metadata: {{name: {name}-wrong}}
spec:
  engine: {engine}
  server: {{host: 127.0.0.1, port: {port}, adminUser: {admin}, adminPasswordSecret: {name}-wrong}}
  user: {user}x
  passwordSecret: {name}_wrong
",
        engine = engine.name(),
        port = engine.port(),
        admin = guard.admin,
    );
    let wrong_file = env.dir.path().join("wrong.yaml");
    std::fs::write(&wrong_file, wrong).unwrap();
    env.ok(&["apply", "-f", wrong_file.to_str().unwrap()]);
    let (code, fourth, _) = env.run(&["run", "--once"]);
    assert_eq!(code, 1, "{fourth}");
    assert!(
        fourth.contains(&format!("DatabaseUser/{name}: Ready")),
        "{fourth}"
    );
    let line = fourth
        .lines()
        .find(|l| l.starts_with(&format!("DatabaseUser/{name}-wrong:")))
        .unwrap_or_default();
    assert!(line.contains("admin login"), "{fourth}");
    env.ok(&["delete", "-f", wrong_file.to_str().unwrap()]);

    // `secret reveal` is for a person with the key, about a name that exists.
    let (code, _, _) = env.run(&["secret", "reveal", &format!("{name}_nothing")]);
    assert_eq!(code, 1);
    let keyless = Command::new(env!("CARGO_BIN_EXE_swarmkeeper"))
        .args(["--etcd-endpoints", &Etcd::shared().endpoint()])
        .args(["--prefix", env.store.prefix()])
        .args(["secret", "reveal", &format!("{name}_password")])
        .env_remove("SWARMKEEPER_SECRET_KEY_FILE")
        .output()
        .expect("the binary runs");
    assert_eq!(keyless.status.code(), Some(64));
    assert!(!String::from_utf8_lossy(&keyless.stdout).contains(new_password));

    // The password never shows: not in logs, status, events, describe.
    let describe = env.ok(&["describe", "databaseuser", name]);
    let events = env.ok(&["events"]);
    for text in [&once, &logs, &second, &logs2, &describe, &events, &report] {
        assert!(!text.contains(password), "the password leaked:\n{text}");
        // Nor what the server is sent instead (the drivers log statements at debug).
        for sent in ["SCRAM-SHA-256$", "mysql_native_password AS"] {
            assert!(
                !text.contains(sent),
                "a password's verifier leaked:\n{text}"
            );
        }
    }

    // Deleted with deletionPolicy Delete and dropDatabase: all of it goes.
    env.ok(&["delete", "stack", name]);
    env.ok(&["delete", "databaseuser", name]);
    env.ok(&["run", "--once"]);
    assert_eq!(engine.users_named(user), "0");
    assert_eq!(engine.databases_named(database), "0");
    let owner = format!("swarmkeeper.owner=DatabaseUser.{name}");
    assert!(names_with_label("secret", &owner).is_empty());
    drop(guard);
}
