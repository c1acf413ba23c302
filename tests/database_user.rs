//! The DatabaseUser controller through the binary, against the local
//! PostgreSQL and MariaDB that `hack/setup.sh` starts. Each test makes its own
//! admin user and names, under an etcd prefix of its own, and a guard drops
//! them all, with the swarm objects its records own.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::Etcd;
use common::swarm::{docker, docker_ok, names_with_label, require_swarm_manager};
use swarmkeeper::store::Store;

/// After the record is deleted: Retain, Delete, dropDatabase, an old status.
#[path = "database_user/deletion.rs"]
mod deletion;
/// A server that cannot be reached or refuses, a privilege it refuses, a stack waiting.
#[path = "database_user/failures.rs"]
mod failures;
/// The whole life of a user: made, delivered, healed, rotated, dropped.
#[path = "database_user/flow.rs"]
mod flow;
/// Drift made by hand: a grant revoked, the user dropped.
#[path = "database_user/heal.rs"]
mod heal;
/// Names that must be refused at apply, and MariaDB's longest database name.
#[path = "database_user/names.rs"]
mod names;

/// PostgreSQL's log, where `log_statement = 'all'` writes what the admin sends.
const PG_LOG: &str = "/var/log/postgresql/postgresql-15-main.log";

/// What differs between the engines, for the test's own SQL.
#[derive(Clone, Copy, PartialEq, Debug)]
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

    /// `ident` quoted for the test's own SQL.
    fn q(self, ident: &str) -> String {
        let engine = match self {
            Engine::Postgres => swarmkeeper::db::Engine::Postgres,
            Engine::Mariadb => swarmkeeper::db::Engine::Mariadb,
        };
        swarmkeeper::db::quote_identifier(engine, ident)
    }

    /// `'user'@'%'` on MariaDB, the quoted role on PostgreSQL.
    fn account(self, user: &str) -> String {
        match self {
            Engine::Postgres => self.q(user),
            Engine::Mariadb => format!("{}@'%'", self.q(user)),
        }
    }

    /// Runs SQL as the server's superuser over the local socket (peer auth).
    fn superuser(self, sql: &str) -> Output {
        match self {
            Engine::Postgres => Command::new("su")
                .args(["postgres", "-c", "psql -X -v ON_ERROR_STOP=1 -Atq"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut child| {
                    use std::io::Write as _;
                    child.stdin.take().unwrap().write_all(sql.as_bytes())?;
                    child.wait_with_output()
                }),
            Engine::Mariadb => Command::new("mysql")
                .args(["--user=root", "-N", "-B", "-e", sql])
                .output(),
        }
        .expect("the client runs (hack/setup.sh installs it)")
    }

    /// [`Engine::superuser`], which must succeed; the answer, trimmed.
    fn admin(self, sql: &str) -> String {
        let out = self.superuser(sql);
        assert!(
            out.status.success(),
            "{sql}: {out:?} (is the server running? hack/setup.sh starts it)"
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Logs in as `user` with `password` over TCP and runs `sql`.
    fn login(self, user: &str, password: &str, database: &str, sql: &str) -> Output {
        match self {
            Engine::Postgres => Command::new("psql")
                .args(["-X", "-h", "127.0.0.1", "-U", user, "-d", database])
                .args(["-v", "ON_ERROR_STOP=1", "-Atqc", sql])
                .env("PGPASSWORD", password)
                .output(),
            Engine::Mariadb => Command::new("mysql")
                .args(["-h", "127.0.0.1", "-u", user, database, "-e", sql])
                .env("MYSQL_PWD", password)
                .output(),
        }
        .expect("the client runs")
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
}

/// The test's admin, users, databases and records on one engine; dropping it
/// drops them all, and the swarm objects the records own.
struct Guard {
    engine: Engine,
    id: String,
    admin: String,
    admin_password: String,
    users: Vec<String>,
    databases: Vec<String>,
    records: Vec<String>,
}

impl Guard {
    /// Makes an admin that may create users and databases (on PostgreSQL not
    /// a superuser: what an operator should be given).
    fn new(engine: Engine) -> Guard {
        let id = format!("{:08x}", rand::random::<u32>());
        let guard = Guard {
            engine,
            admin: format!("skadm{id}"),
            admin_password: format!("adm-{id}-pw"),
            id,
            users: Vec::new(),
            databases: Vec::new(),
            records: Vec::new(),
        };
        let (admin, password) = (&guard.admin, &guard.admin_password);
        match engine {
            Engine::Postgres => engine.admin(&format!(
                "CREATE ROLE {admin} LOGIN CREATEROLE CREATEDB PASSWORD '{password}'"
            )),
            Engine::Mariadb => engine.admin(&format!(
                "CREATE USER '{admin}'@'%' IDENTIFIED BY '{password}'; \
                 GRANT ALL PRIVILEGES ON *.* TO '{admin}'@'%' WITH GRANT OPTION"
            )),
        };
        guard
    }

    /// A user name of this test (cleaned up): `sk<base><id>`.
    fn user(&mut self, base: &str) -> String {
        let name = format!("sk{base}{}", self.id);
        self.users.push(name.clone());
        name
    }

    /// Registers a database name made by the test itself, for cleanup.
    fn database_named(&mut self, name: String) -> String {
        self.databases.push(name.clone());
        name
    }

    fn database(&mut self, base: &str) -> String {
        self.database_named(format!("skdb{base}{}", self.id))
    }

    /// A record name of this test: its owned swarm objects are cleaned up.
    fn record(&mut self, base: &str) -> String {
        let name = format!("{base}{}", self.id);
        self.records.push(name.clone());
        name
    }

    /// A Secret record `name` with the value `value`.
    fn secret(name: &str, value: &str) -> String {
        format!(
            "apiVersion: swarmkeeper.dev/v1alpha1
kind: Secret
metadata: {{name: {name}}}
spec: {{value: {{literal: {value}}}}}
"
        )
    }

    /// A Secret record `<record>-admin` with the admin's password.
    fn admin_secret(&self, record: &str) -> String {
        Self::secret(&format!("{record}-admin"), &self.admin_password)
    }

    /// A DatabaseUser record `name` for `user` on this engine's local server,
    /// its password delivered as `<name>_password`, the admin password in
    /// Secret `<admin_secret>`; `extra` is more of the spec, indented by two.
    fn user_record(&self, name: &str, admin_secret: &str, user: &str, extra: &str) -> String {
        format!(
            "apiVersion: swarmkeeper.dev/v1alpha1
kind: DatabaseUser
metadata: {{name: {name}}}
spec:
  engine: {engine}
  server: {{host: 127.0.0.1, port: {port}, adminUser: {admin}, adminPasswordSecret: {admin_secret}, sslMode: disable}}
  user: {user}
  passwordSecret: {name}_password
{extra}",
            engine = self.engine.name(),
            port = self.engine.port(),
            admin = self.admin,
        )
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for record in &self.records {
            let stack = format!("swarmkeeper.owner=Stack.{record}");
            for service in names_with_label("service", &stack) {
                let _ = docker(&["service", "rm", &service]);
            }
        }
        let engine = self.engine;
        let mut sql = Vec::new();
        for database in &self.databases {
            let force = if engine == Engine::Postgres {
                " WITH (FORCE)"
            } else {
                ""
            };
            sql.push(format!(
                "DROP DATABASE IF EXISTS {}{force}",
                engine.q(database)
            ));
        }
        for user in self.users.iter().chain([&self.admin]) {
            if engine == Engine::Postgres {
                // What a role still holds (grants on retained databases) stops DROP ROLE.
                sql.push(format!("DROP OWNED BY {}", engine.q(user)));
            }
            sql.push(format!("DROP USER IF EXISTS {}", engine.account(user)));
        }
        for statement in sql {
            // Best effort, one by one: what a test never made fails on its own.
            let _ = engine.superuser(&statement);
        }
        for record in &self.records {
            let owner = format!("swarmkeeper.owner=DatabaseUser.{record}");
            for secret in names_with_label("secret", &owner) {
                let _ = docker(&["secret", "rm", &secret]);
            }
        }
    }
}

/// A Stack `name` whose service mounts the external secret `secret`.
fn stack_using(name: &str, secret: &str) -> String {
    format!(
        "apiVersion: swarmkeeper.dev/v1alpha1
kind: Stack
metadata: {{name: {name}}}
spec:
  compose:
    version: '3.8'
    services:
      app:
        image: local/busybox:1
        command: [sleep, '3600']
        secrets: [db]
        deploy: {{replicas: 0}}
    secrets:
      db: {{external: true, name: {secret}}}
"
    )
}

/// The binary against the shared etcd, under a prefix of its own, with a key.
struct Env {
    store: Store,
    dir: tempfile::TempDir,
}

impl Env {
    async fn new(test: &str) -> Env {
        require_swarm_manager();
        let env = Env {
            store: Etcd::shared().store(test).await,
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(env.key(), rand::random::<[u8; 32]>()).unwrap();
        env
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("secret.key")
    }

    /// Runs the binary: exit code, stdout, stderr (its logs, at debug).
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

    /// Writes `records` to `file` in the scratch folder; its path.
    fn write(&self, file: &str, records: &[String]) -> String {
        let path = self.dir.path().join(file);
        std::fs::write(&path, records.join("---\n")).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// Applies `records` (written to `file`), which must be valid.
    fn apply(&self, file: &str, records: &[String]) {
        let path = self.write(file, records);
        self.ok(&["apply", "-f", &path]);
    }

    /// The line `run --once` printed for `record` (`Kind/name`).
    fn line<'a>(once: &'a str, record: &str) -> &'a str {
        let prefix = format!("{record}: ");
        once.lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no line for {record}:\n{once}"))
    }

    /// A record's status as JSON, `None` once it is gone.
    async fn status(&self, kind: &str, name: &str) -> Option<serde_json::Value> {
        self.store
            .get_status(kind, name)
            .await
            .expect("etcd answers")
            .map(|v| v.value)
    }
}
