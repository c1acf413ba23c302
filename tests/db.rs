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

/// A loopback port nothing listens on.
/// What `observe` sees of `user` on `database` with `password`.
async fn observed(server: &Server, user: &str, database: &str, password: &SecretValue) -> Observed {
    db::observe(server, user, Some(database), password)
        .await
        .expect("observe")
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

// ---------------------------------------------------------------- PostgreSQL

#[tokio::test]
async fn pg_user_with_database_and_grants_then_drift_and_cleanup() {
    let mut fx = Fixture::new(Engine::Postgres, "pg-flow");
    let user = fx.user("app");
    let database = fx.database("appdb");
    let server = fx.server(SslMode::Prefer);
    let first = secret("first-Pa55word");

    db::apply(&server, &created(&user, &database, &first, &["ALL"]))
        .await
        .unwrap();
    let seen = observed(&server, &user, &database, &first).await;
    assert!(
        seen.user_exists && seen.database_exists && seen.password_works,
        "{seen:?}"
    );
    for p in ["ALL", "CONNECT", "CREATE", "TEMPORARY"] {
        assert!(has(&seen, p), "{p} missing from {seen:?}");
    }
    pg_use_database(&user, "first-Pa55word", &database).await;

    // A second run of the same actions changes nothing and fails nothing.
    db::apply(
        &server,
        &[
            Action::CreateUser {
                user: user.clone(),
                password: first.clone(),
            },
            Action::CreateDatabase {
                database: database.clone(),
                owner: user.clone(),
            },
        ],
    )
    .await
    .unwrap();

    // A new password: the old one stops working.
    let second = secret("second-Pa55word");
    db::apply(
        &server,
        &[Action::SetPassword {
            user: user.clone(),
            password: second.clone(),
        }],
    )
    .await
    .unwrap();
    assert!(
        !observed(&server, &user, &database, &first)
            .await
            .password_works
    );
    assert!(
        observed(&server, &user, &database, &second)
            .await
            .password_works
    );

    // A grant revoked by hand shows as missing, and Grant restores it.
    sql(
        Engine::Postgres,
        &format!(
            "REVOKE CREATE ON DATABASE {} FROM {};",
            quote_identifier(Engine::Postgres, &database),
            quote_identifier(Engine::Postgres, &user)
        ),
    );
    let seen = observed(&server, &user, &database, &second).await;
    assert!(
        !has(&seen, "CREATE") && !has(&seen, "ALL") && has(&seen, "CONNECT"),
        "{seen:?}"
    );
    db::apply(
        &server,
        &[Action::Grant {
            user: user.clone(),
            database: database.clone(),
            privileges: privileges(&["create"]),
        }],
    )
    .await
    .unwrap();
    let seen = observed(&server, &user, &database, &second).await;
    assert!(has(&seen, "CREATE") && has(&seen, "ALL"), "{seen:?}");

    // Drops, the database first; both are idempotent.
    let drops = drops(&user, &database);
    db::apply(&server, &drops).await.unwrap();
    db::apply(&server, &drops).await.unwrap();
    let seen = observed(&server, &user, &database, &second).await;
    assert_eq!(seen, Observed::default());
}

#[tokio::test]
async fn pg_user_dropped_by_hand_is_seen_missing_and_recreated() {
    let mut fx = Fixture::new(Engine::Postgres, "pg-gone");
    let user = fx.user("app");
    let server = fx.server(SslMode::Disable);
    let password = secret("Pa55word-gone");
    db::apply(
        &server,
        &[Action::CreateUser {
            user: user.clone(),
            password: password.clone(),
        }],
    )
    .await
    .unwrap();
    let seen = db::observe(&server, &user, None, &password).await.unwrap();
    assert!(
        seen.user_exists && seen.password_works && !seen.database_exists,
        "{seen:?}"
    );

    sql(
        Engine::Postgres,
        &format!("DROP ROLE {};", quote_identifier(Engine::Postgres, &user)),
    );
    let seen = db::observe(&server, &user, None, &password).await.unwrap();
    assert!(!seen.user_exists && !seen.password_works, "{seen:?}");

    db::apply(
        &server,
        &[Action::CreateUser {
            user: user.clone(),
            password: password.clone(),
        }],
    )
    .await
    .unwrap();
    assert!(
        db::observe(&server, &user, None, &password)
            .await
            .unwrap()
            .password_works
    );
}

/// The administrator's sessions log every statement; neither password reaches the log.
#[tokio::test]
async fn pg_canary_password_never_reaches_the_statement_log() {
    let mut fx = Fixture::new(Engine::Postgres, "pg-canary");
    sql(
        Engine::Postgres,
        &format!(
            "ALTER ROLE {} SET log_statement = 'all';",
            quote_identifier(Engine::Postgres, &fx.admin)
        ),
    );
    let user = fx.user("canary");
    let database = fx.database("canarydb");
    let server = fx.server(SslMode::Prefer);
    let canary = format!("canary-{}", unique_name("pw"));
    let rotated = format!("canary-rotated-{}", unique_name("pw"));
    db::apply(
        &server,
        &[
            Action::CreateUser {
                user: user.clone(),
                password: secret(&canary),
            },
            Action::CreateDatabase {
                database: database.clone(),
                owner: user.clone(),
            },
            Action::SetPassword {
                user: user.clone(),
                password: secret(&rotated),
            },
        ],
    )
    .await
    .unwrap();
    assert!(
        db::observe(&server, &user, Some(&database), &secret(&rotated))
            .await
            .unwrap()
            .password_works
    );
    assert!(
        !db::observe(&server, &user, Some(&database), &secret(&canary))
            .await
            .unwrap()
            .password_works
    );

    // The statements were logged (so the check below means something), with verifiers.
    let marker = format!("ALTER ROLE {}", quote_identifier(Engine::Postgres, &user));
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log =
            std::fs::read_to_string(PG_LOG).unwrap_or_else(|e| panic!("cannot read {PG_LOG}: {e}"));
        if log.contains(&marker) || Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        log.contains(&marker),
        "log_statement=all did not log {marker}"
    );
    assert!(
        log.contains("PASSWORD 'SCRAM-SHA-256$4096:"),
        "the log holds the verifier"
    );
    assert!(
        !log.contains(&canary) && !log.contains(&rotated),
        "a password reached {PG_LOG}"
    );
}

/// Names with quotes, spaces and semicolons are one identifier each, never SQL.
#[tokio::test]
async fn pg_odd_names_are_quoted_not_executed() {
    let mut fx = Fixture::new(Engine::Postgres, "pg-odd");
    let tag = unique_name("x");
    let user = format!("o'brien \"{tag}\"; DROP ROLE x");
    let database = format!("db \"{tag}\"; DROP DATABASE postgres; --'");
    fx.track(Some(&user), Some(&database));
    let server = fx.server(SslMode::Prefer);
    let password = secret("odd-Pa55word");
    db::apply(
        &server,
        &[
            Action::CreateUser {
                user: user.clone(),
                password: password.clone(),
            },
            Action::CreateDatabase {
                database: database.clone(),
                owner: user.clone(),
            },
            Action::Grant {
                user: user.clone(),
                database: database.clone(),
                privileges: privileges(&["CONNECT", "TEMP"]),
            },
        ],
    )
    .await
    .unwrap();
    let seen = observed(&server, &user, &database, &password).await;
    assert!(
        seen.user_exists && seen.database_exists && seen.password_works,
        "{seen:?}"
    );
    let names = sql(Engine::Postgres, "SELECT datname FROM pg_database;");
    assert!(
        names.lines().any(|l| l == database),
        "{database:?} not in {names}"
    );
    assert!(names.lines().any(|l| l == "postgres"));
    let roles = sql(Engine::Postgres, "SELECT rolname FROM pg_roles;");
    assert!(roles.lines().any(|l| l == user), "{user:?} not in {roles}");
    db::apply(
        &server,
        &[
            Action::DropDatabase {
                database: database.clone(),
            },
            Action::DropUser { user: user.clone() },
        ],
    )
    .await
    .unwrap();
    let names = sql(Engine::Postgres, "SELECT datname FROM pg_database;");
    assert!(!names.lines().any(|l| l == database));
}

#[tokio::test]
async fn pg_require_encrypts_and_verify_full_checks_the_certificate() {
    let mut fx = Fixture::new(Engine::Postgres, "pg-tls");
    let user = fx.user("tls");
    let password = secret("tls-Pa55word");
    let server = fx.server(SslMode::Require);
    db::apply(
        &server,
        &[Action::CreateUser {
            user: user.clone(),
            password: password.clone(),
        }],
    )
    .await
    .unwrap();
    assert!(
        db::observe(&server, &user, None, &password)
            .await
            .unwrap()
            .password_works
    );

    // verify-full against the server's own (self-signed, CN=localhost) certificate.
    let snakeoil = std::fs::read(SNAKEOIL).unwrap_or_else(|e| panic!("{SNAKEOIL}: {e}"));
    let verified = Server {
        host: "localhost".into(),
        ssl_mode: SslMode::VerifyFull,
        ca_pem: Some(snakeoil.clone()),
        ..fx.server(SslMode::VerifyFull)
    };
    assert!(
        db::observe(&verified, &user, None, &password)
            .await
            .unwrap()
            .password_works
    );

    // The same certificate does not vouch for another name.
    let wrong_name = Server {
        host: "127.0.0.1".into(),
        ..verified.clone()
    };
    let err = db::observe(&wrong_name, &user, None, &password)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DbError::Connect { .. }) && err.is_transient(),
        "{err}"
    );

    // Without a CA, verify-full uses the Mozilla roots, which do not hold the snakeoil.
    let no_ca = Server {
        ca_pem: None,
        ..verified.clone()
    };
    let err = db::observe(&no_ca, &user, None, &password)
        .await
        .unwrap_err();
    assert!(matches!(err, DbError::Connect { .. }), "{err}");

    let garbage = Server {
        ca_pem: Some(b"not a certificate".to_vec()),
        ..verified
    };
    let err = db::observe(&garbage, &user, None, &password)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "tls_config", "{err}");
}

#[tokio::test]
async fn pg_unreachable_server_and_refused_admin_are_transient() {
    let fx = Fixture::new(Engine::Postgres, "pg-down");
    let port = closed_port();
    let closed = Server {
        port,
        ..fx.server(SslMode::Prefer)
    };
    let err = db::observe(&closed, "nobody", None, &secret("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DbError::Connect { .. }) && err.is_transient(),
        "{err}"
    );
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );

    let wrong = Server {
        admin_password: secret("wrong"),
        ..fx.server(SslMode::Prefer)
    };
    let err = db::apply(
        &wrong,
        &[Action::DropUser {
            user: "nobody".into(),
        }],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, DbError::AdminLogin { ref user, .. } if *user == fx.admin),
        "{err}"
    );
    assert!(err.is_transient());
    assert_eq!(err.kind(), "admin_login");
}

/// A server that accepts the connection and never answers is a timeout, not a hang.
#[tokio::test]
async fn pg_hung_server_times_out() {
    let fx = Fixture::new(Engine::Postgres, "pg-hung");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let hung = Server {
        port: listener.local_addr().unwrap().port(),
        ..fx.server(SslMode::Disable)
    };
    let started = Instant::now();
    let err = db::observe(&hung, "nobody", None, &secret("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DbError::Timeout { .. }) && err.is_transient(),
        "{err}"
    );
    assert!(err.to_string().contains(&hung.address()), "{err}");
    assert!(started.elapsed() < db::TIMEOUT + Duration::from_secs(3));
    drop(listener);
}

#[tokio::test]
async fn pg_unknown_privileges_fail_before_any_sql_and_refused_ones_quote_the_server() {
    let mut fx = Fixture::new(Engine::Postgres, "pg-priv");
    let user = fx.user("priv");
    let database = fx.database("privdb");
    // Against a closed port: an attempt to connect would be a Connect error.
    let closed = Server {
        port: closed_port(),
        ..fx.server(SslMode::Prefer)
    };
    let err = db::apply(
        &closed,
        &[
            Action::CreateUser {
                user: user.clone(),
                password: secret("x"),
            },
            Action::Grant {
                user: user.clone(),
                database: database.clone(),
                privileges: privileges(&["CONNECT", "FROBNICATE"]),
            },
        ],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, DbError::UnknownPrivilege { ref privilege, .. } if privilege == "FROBNICATE"),
        "{err}"
    );
    assert!(!err.is_transient());

    // SELECT is allowed by the list but not on a database: the server says so.
    let server = fx.server(SslMode::Prefer);
    let err = db::apply(
        &server,
        &[
            Action::CreateUser {
                user: user.clone(),
                password: secret("priv-Pa55word"),
            },
            Action::CreateDatabase {
                database: database.clone(),
                owner: user.clone(),
            },
            Action::Grant {
                user: user.clone(),
                database: database.clone(),
                privileges: privileges(&["SELECT"]),
            },
        ],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            DbError::Query {
                action: "grant",
                ..
            }
        ) && !err.is_transient(),
        "{err}"
    );
    assert!(
        err.to_string().contains("invalid privilege type SELECT"),
        "{err}"
    );
}

// ---------------------------------------------------------------- MariaDB

#[tokio::test]
async fn mariadb_user_with_database_and_grants_then_drift_and_cleanup() {
    let mut fx = Fixture::new(Engine::Mariadb, "my-flow");
    let user = fx.user("app");
    let database = fx.database("app_db");
    let server = fx.server(SslMode::Prefer);
    let first = secret("first-Pa55word");
    db::apply(
        &server,
        &created(&user, &database, &first, &["select", "INSERT", "create"]),
    )
    .await
    .unwrap();
    let seen = observed(&server, &user, &database, &first).await;
    assert!(
        seen.user_exists && seen.database_exists && seen.password_works,
        "{seen:?}"
    );
    assert_eq!(
        seen.granted,
        ["CREATE", "INSERT", "SELECT"].map(String::from).into()
    );
    mysql_use_database(&user, "first-Pa55word", &database).await;

    let second = secret("second-Pa55word");
    db::apply(
        &server,
        &[
            Action::CreateUser {
                user: user.clone(),
                password: first.clone(),
            },
            Action::SetPassword {
                user: user.clone(),
                password: second.clone(),
            },
        ],
    )
    .await
    .unwrap();
    assert!(
        !observed(&server, &user, &database, &first)
            .await
            .password_works
    );
    assert!(
        observed(&server, &user, &database, &second)
            .await
            .password_works
    );

    // A grant revoked by hand shows as missing; ALL brings everything.
    let q = |s: &str| quote_identifier(Engine::Mariadb, s);
    sql(
        Engine::Mariadb,
        &format!(
            "REVOKE INSERT ON {}.* FROM {}@'%';",
            q(&database.replace('_', "\\_")),
            q(&user)
        ),
    );
    let seen = observed(&server, &user, &database, &second).await;
    assert_eq!(seen.granted, ["CREATE", "SELECT"].map(String::from).into());
    db::apply(
        &server,
        &[Action::Grant {
            user: user.clone(),
            database: database.clone(),
            privileges: privileges(&["ALL PRIVILEGES"]),
        }],
    )
    .await
    .unwrap();
    let seen = observed(&server, &user, &database, &second).await;
    assert!(has(&seen, "ALL") && has(&seen, "LOCK TABLES"), "{seen:?}");

    let drops = drops(&user, &database);
    db::apply(&server, &drops).await.unwrap();
    db::apply(&server, &drops).await.unwrap();
    let seen = observed(&server, &user, &database, &second).await;
    assert_eq!(seen, Observed::default());
}

#[tokio::test]
async fn mariadb_user_dropped_by_hand_is_seen_missing() {
    let mut fx = Fixture::new(Engine::Mariadb, "my-gone");
    let user = fx.user("app");
    let server = fx.server(SslMode::Disable);
    let password = secret("Pa55word-gone");
    db::apply(
        &server,
        &[Action::CreateUser {
            user: user.clone(),
            password: password.clone(),
        }],
    )
    .await
    .unwrap();
    assert!(
        db::observe(&server, &user, None, &password)
            .await
            .unwrap()
            .password_works
    );
    sql(
        Engine::Mariadb,
        &format!(
            "DROP USER {}@'%';",
            quote_identifier(Engine::Mariadb, &user)
        ),
    );
    let seen = db::observe(&server, &user, None, &password).await.unwrap();
    assert!(!seen.user_exists && !seen.password_works, "{seen:?}");
}

/// Backticks, quotes, spaces and semicolons in names, and MariaDB's 64-character limit.
#[tokio::test]
async fn mariadb_odd_and_long_names_are_quoted_or_refused() {
    let mut fx = Fixture::new(Engine::Mariadb, "my-odd");
    let tag = unique_name("x");
    let database = format!("d`b {}; DROP DATABASE mysql; -- '", &tag[..12]);
    let long = format!("{}{}", tag, "l".repeat(64 - tag.len()));
    let user = fx.user("odd");
    fx.track(None, Some(&database));
    fx.track(None, Some(&long));
    let server = fx.server(SslMode::Prefer);
    let password = secret("odd-Pa55word");
    db::apply(
        &server,
        &[
            Action::CreateUser {
                user: user.clone(),
                password: password.clone(),
            },
            Action::CreateDatabase {
                database: database.clone(),
                owner: user.clone(),
            },
            Action::Grant {
                user: user.clone(),
                database: database.clone(),
                privileges: privileges(&["SELECT"]),
            },
            Action::CreateDatabase {
                database: long.clone(),
                owner: user.clone(),
            },
        ],
    )
    .await
    .unwrap();
    let seen = observed(&server, &user, &database, &password).await;
    assert!(
        seen.database_exists && seen.password_works && has(&seen, "SELECT"),
        "{seen:?}"
    );
    let names = sql(Engine::Mariadb, "SHOW DATABASES;");
    assert!(
        names.lines().any(|l| l == database),
        "{database:?} not in {names}"
    );
    assert!(names.lines().any(|l| l == long) && names.lines().any(|l| l == "mysql"));

    let too_long = format!("{long}x");
    let err = db::apply(
        &server,
        &[Action::CreateDatabase {
            database: too_long,
            owner: user.clone(),
        }],
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), "invalid_name", "{err}");
}

#[tokio::test]
async fn mariadb_failures_are_classified() {
    let mut fx = Fixture::new(Engine::Mariadb, "my-fail");
    let user = fx.user("fail");
    let port = closed_port();
    let closed = Server {
        port,
        ..fx.server(SslMode::Prefer)
    };
    let err = db::observe(&closed, &user, None, &secret("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DbError::Connect { .. }) && err.is_transient(),
        "{err}"
    );
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );

    let wrong = Server {
        admin_password: secret("wrong"),
        ..fx.server(SslMode::Disable)
    };
    let err = db::observe(&wrong, &user, None, &secret("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DbError::AdminLogin { .. }) && err.is_transient(),
        "{err}"
    );

    // An unknown privilege is refused before connecting (the port is closed).
    let err = db::apply(
        &closed,
        &[Action::Grant {
            user: user.clone(),
            database: "d".into(),
            privileges: privileges(&["CONNECT"]),
        }],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, DbError::UnknownPrivilege { .. }) && !err.is_transient(),
        "{err}"
    );

    // The local MariaDB has TLS off: require refuses to talk in plain, prefer does.
    let require = fx.server(SslMode::Require);
    let err = db::observe(&require, &user, None, &secret("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DbError::Connect { .. }) && err.is_transient(),
        "{err}"
    );
    assert!(
        !db::observe(&fx.server(SslMode::Prefer), &user, None, &secret("x"))
            .await
            .unwrap()
            .user_exists
    );
}

/// A server that answers PostgreSQL's SSLRequest with "no TLS" and reports how many
/// bytes the client sent after that answer (a startup message means it went on in plain).
fn plain_only_postgres() -> (u16, std::sync::mpsc::Receiver<usize>) {
    use std::io::Read as _;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 8];
        stream.read_exact(&mut request).unwrap();
        assert_eq!(
            request,
            [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f],
            "an SSLRequest"
        );
        stream.write_all(b"N").unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut rest = [0u8; 512];
        let _ = tx.send(stream.read(&mut rest).unwrap_or(0));
    });
    (port, rx)
}

#[tokio::test]
async fn pg_require_never_falls_back_to_plain_and_prefer_does() {
    let fx = Fixture::new(Engine::Postgres, "pg-plain");
    let (port, sent) = plain_only_postgres();
    let require = Server {
        port,
        ..fx.server(SslMode::Require)
    };
    let err = db::observe(&require, "nobody", None, &secret("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DbError::Connect { .. }) && err.is_transient(),
        "{err}"
    );
    assert_eq!(
        sent.recv().unwrap(),
        0,
        "require sent a startup message in plain"
    );

    let (port, sent) = plain_only_postgres();
    let prefer = Server {
        port,
        ..fx.server(SslMode::Prefer)
    };
    let _ = db::observe(&prefer, "nobody", None, &secret("x"))
        .await
        .unwrap_err();
    assert!(sent.recv().unwrap() > 0, "prefer went on in plain");
}

/// `Delete` without `dropDatabase`: the user goes, its database and tables stay (owned by
/// the administrator from then on).
#[tokio::test]
async fn pg_dropping_a_user_keeps_its_database_and_tables() {
    let mut fx = Fixture::new(Engine::Postgres, "pg-retain");
    let user = fx.user("app");
    let database = fx.database("keepdb");
    let server = fx.server(SslMode::Prefer);
    db::apply(
        &server,
        &[
            Action::CreateUser {
                user: user.clone(),
                password: secret("keep-Pa55word"),
            },
            Action::CreateDatabase {
                database: database.clone(),
                owner: user.clone(),
            },
        ],
    )
    .await
    .unwrap();
    pg_use_database(&user, "keep-Pa55word", &database).await;

    db::apply(&server, &[Action::DropUser { user: user.clone() }])
        .await
        .unwrap();
    let seen = db::observe(&server, &user, Some(&database), &secret("keep-Pa55word"))
        .await
        .unwrap();
    assert!(!seen.user_exists && seen.database_exists, "{seen:?}");
    let tables = sql(
        Engine::Postgres,
        &format!(
            "\\c {}\nSELECT tableowner FROM pg_tables WHERE tablename = 'kittens';",
            literal(&database)
        ),
    );
    assert_eq!(
        tables.trim(),
        fx.admin,
        "the table stays, owned by the administrator"
    );
}
