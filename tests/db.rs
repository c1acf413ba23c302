//! Integration tests of the database layer against the real PostgreSQL 15 and MariaDB
//! that `hack/setup.sh` starts.
//!
//! Each test creates its own administrator (with a password, through `psql` as the
//! `postgres` OS user or `mysql --user=root` over the socket) and its own user and
//! database names; a guard drops all of them, even when an assertion fails half-way.
//! The `postgres` and `root` users are never changed. A server that is not running
//! fails the test with a message saying so.

mod common;

use std::io::Write as _;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::unique_name;
use swarmkeeper::api::SecretValue;
use swarmkeeper::db::{self, Action, DbError, Engine, Observed, Server, SslMode, quote_identifier};

const PG_LOG: &str = "/var/log/postgresql/postgresql-15-main.log";
const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

/// MariaDB: the same, with its wildcards in grants and its 64-character names.
#[path = "db/mariadb.rs"]
mod mariadb;
/// PostgreSQL: users, databases, grants, drift by hand, quoting, failures, the statement log.
#[path = "db/postgres.rs"]
mod postgres;
/// TLS towards PostgreSQL: require, verify-full, and no fallback to plain.
#[path = "db/tls.rs"]
mod tls;

/// Runs `sql` through a client as the server's superuser, returning stdout.
fn run_client(engine: Engine, sql: &str, check: bool) -> String {
    let mut command = match engine {
        Engine::Postgres => {
            let mut c = Command::new("su");
            c.args(["postgres", "-c", "psql -X -q -A -t -v ON_ERROR_STOP=1"]);
            c
        }
        Engine::Mysql | Engine::Mariadb => {
            let mut c = Command::new("mysql");
            c.args(["--user=root", "-N", "-B"]);
            c
        }
    };
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run the {engine:?} client: {e}: run hack/setup.sh"));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(sql.as_bytes())
        .expect("write SQL to the client");
    let out = child.wait_with_output().expect("the client runs");
    if check {
        assert!(
            out.status.success(),
            "{engine:?} client failed on {sql:?}: {} (is the server running? hack/setup.sh starts it)",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sql(engine: Engine, sql: &str) -> String {
    run_client(engine, sql, true)
}

/// A string literal for the test's own SQL (the passwords it makes hold no quotes).
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The test's administrator, user and database names; dropping it drops them all.
struct Fixture {
    engine: Engine,
    admin: String,
    admin_password: String,
    users: Vec<String>,
    databases: Vec<String>,
}

impl Fixture {
    fn new(engine: Engine, test: &str) -> Fixture {
        let admin = unique_name(&format!("adm-{test}"));
        let admin_password = format!("pw-{}", unique_name("admin"));
        let fixture = Fixture {
            engine,
            admin,
            admin_password,
            users: Vec::new(),
            databases: Vec::new(),
        };
        let admin = quote_identifier(engine, &fixture.admin);
        let password = literal(&fixture.admin_password);
        match engine {
            // Not a superuser: what an operator should be given.
            Engine::Postgres => sql(
                engine,
                &format!("CREATE ROLE {admin} LOGIN CREATEROLE CREATEDB PASSWORD {password};"),
            ),
            _ => sql(
                engine,
                &format!(
                    "CREATE USER {admin}@'%' IDENTIFIED BY {password};\n\
                     GRANT ALL PRIVILEGES ON *.* TO {admin}@'%' WITH GRANT OPTION;"
                ),
            ),
        };
        fixture
    }

    fn user(&mut self, base: &str) -> String {
        let name = unique_name(base);
        self.users.push(name.clone());
        name
    }

    fn database(&mut self, base: &str) -> String {
        let name = unique_name(base);
        self.databases.push(name.clone());
        name
    }

    /// Registers a name made by the test itself, for cleanup.
    fn track(&mut self, user: Option<&str>, database: Option<&str>) {
        self.users.extend(user.map(str::to_owned));
        self.databases.extend(database.map(str::to_owned));
    }

    fn server(&self, ssl_mode: SslMode) -> Server {
        Server {
            engine: self.engine,
            host: "127.0.0.1".into(),
            port: self.engine.default_port(),
            admin_user: self.admin.clone(),
            admin_password: SecretValue::from(self.admin_password.as_str()),
            ssl_mode,
            ca_pem: None,
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let q = |s: &str| quote_identifier(self.engine, s);
        let mut cleanup = String::new();
        for database in &self.databases {
            match self.engine {
                Engine::Postgres => {
                    cleanup += &format!("DROP DATABASE IF EXISTS {} WITH (FORCE);\n", q(database))
                }
                _ => cleanup += &format!("DROP DATABASE IF EXISTS {};\n", q(database)),
            }
        }
        for role in self.users.iter().chain([&self.admin]) {
            match self.engine {
                // Each statement on its own: a missing role only fails its own line.
                Engine::Postgres => {
                    cleanup += &format!(
                        "DROP OWNED BY {};\nDROP ROLE IF EXISTS {};\n",
                        q(role),
                        q(role)
                    )
                }
                _ => cleanup += &format!("DROP USER IF EXISTS {}@'%';\n", q(role)),
            }
        }
        // psql without ON_ERROR_STOP goes on past a failed line; mysql --force does.
        match self.engine {
            Engine::Postgres => {
                let mut child = Command::new("su")
                    .args(["postgres", "-c", "psql -X -q"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("psql runs");
                let _ = child.stdin.take().unwrap().write_all(cleanup.as_bytes());
                let _ = child.wait();
            }
            _ => {
                let mut child = Command::new("mysql")
                    .args(["--user=root", "--force"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("mysql runs");
                let _ = child.stdin.take().unwrap().write_all(cleanup.as_bytes());
                let _ = child.wait();
            }
        }
    }
}

fn secret(s: &str) -> SecretValue {
    SecretValue::from(s)
}

fn privileges(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn has(observed: &Observed, privilege: &str) -> bool {
    observed.granted.contains(privilege)
}

/// What `observe` sees of `user` on `database` with `password`.
async fn observed(server: &Server, user: &str, database: &str, password: &SecretValue) -> Observed {
    db::observe(server, user, Some(database), password)
        .await
        .expect("observe")
}

/// Creates `user` with `password`, which must succeed.
async fn create_user(server: &Server, user: &str, password: &SecretValue) {
    let create = Action::CreateUser {
        user: user.to_owned(),
        password: password.clone(),
    };
    db::apply(server, &[create]).await.expect("create the user");
}

/// The user with `password`, its database, and `granted` on it.
fn created(user: &str, database: &str, password: &SecretValue, granted: &[&str]) -> [Action; 3] {
    [
        Action::CreateUser {
            user: user.to_owned(),
            password: password.clone(),
        },
        Action::CreateDatabase {
            database: database.to_owned(),
            owner: user.to_owned(),
        },
        Action::Grant {
            user: user.to_owned(),
            database: database.to_owned(),
            privileges: privileges(granted),
        },
    ]
}

/// The database, then the user, dropped.
fn drops(user: &str, database: &str) -> [Action; 2] {
    [
        Action::DropDatabase {
            database: database.to_owned(),
        },
        Action::DropUser {
            user: user.to_owned(),
        },
    ]
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Connects to PostgreSQL as `user` and creates and fills a table in `database`.
async fn pg_use_database(user: &str, password: &str, database: &str) {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(5432)
        .user(user)
        .password(password)
        .dbname(database);
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("the user logs in");
    tokio::spawn(connection);
    client
        .batch_execute("CREATE TABLE kittens (name text); INSERT INTO kittens VALUES ('tom')")
        .await
        .expect("the owner creates a table and inserts");
    let rows = client.query("SELECT name FROM kittens", &[]).await.unwrap();
    assert_eq!(rows.len(), 1);
}

async fn mysql_use_database(user: &str, password: &str, database: &str) {
    use mysql_async::prelude::Queryable as _;
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(3306)
        .user(Some(user))
        .pass(Some(password))
        .db_name(Some(database))
        .prefer_socket(false);
    let mut conn = mysql_async::Conn::new(opts)
        .await
        .expect("the user logs in");
    conn.query_drop("CREATE TABLE kittens (name varchar(20))")
        .await
        .expect("CREATE is granted");
    conn.query_drop("INSERT INTO kittens VALUES ('tom')")
        .await
        .expect("INSERT is granted");
    let names: Vec<String> = conn.query("SELECT name FROM kittens").await.unwrap();
    assert_eq!(names, ["tom"]);
    conn.disconnect().await.unwrap();
}
