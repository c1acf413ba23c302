//! MariaDB and MySQL through mysql_async: users `'name'@'%'`, databases and `db.*` grants.
//!
//! Passwords are sent as `mysql_native_password` hashes (`IDENTIFIED WITH
//! mysql_native_password AS '*<hex>'`, a syntax both MariaDB and MySQL 5.7/8.0 take), so
//! the general log and the binary log hold the hash the server stores anyway.
//!
//! # Engines
//! Only MariaDB has run against this code (the tests' server). The SQL is the form
//! MySQL 5.7/8.x documents too (`CREATE USER ... IDENTIFIED WITH ... AS`, `DROP USER IF
//! EXISTS`, `information_schema.SCHEMA_PRIVILEGES`, `mysql.user`); nothing uses the
//! `PASSWORD()` function MySQL 8 removed. A MySQL without `mysql_native_password`
//! (8.4 by default, 9.0) refuses the hash: that is
//! [`DbError::NativePasswordUnavailable`], which says so, not a bare server error. An
//! admin account on MySQL 8's default `caching_sha2_password` is mysql_async's to log in
//! (its full authentication asks for the server's RSA key when there is no TLS).
//!
//! # Caveats
//! - In a database-level `GRANT`, `_` and `%` in the database name are wildcards; they
//!   are escaped (`\_`), so a grant on `app_db` does not also cover `appXdb`.
//! - TLS: `prefer` falls back to plain when the server has no TLS; `require` and
//!   `verify-full` refuse such a server. Only `disable`, `prefer` and the refusal have
//!   run against a real server (the MariaDB of the tests has TLS off).

use std::collections::BTreeSet;

use mysql_async::prelude::Queryable as _;
use mysql_async::{Conn, OptsBuilder, SslOpts};
use sha1::{Digest as _, Sha1};

use super::{
    Action, DbError, MYSQL_PRIVILEGES, Observed, Server, SslMode, bounded, bounded_by, error_chain,
    hash_literal, privilege_list, with_all,
};
use crate::api::SecretValue;
use crate::api::database_user::Engine;

/// The host part of every account this module manages.
const HOST: &str = "%";

// Server error codes (MariaDB's and MySQL's share these numbers).
const ER_ACCESS_DENIED: u16 = 1045;
const ER_ACCESS_DENIED_NO_PASSWORD: u16 = 1698;
const ER_DBACCESS_DENIED: u16 = 1044;
const ER_BAD_DB: u16 = 1049;
/// "Plugin '%s' is not loaded": what `IDENTIFIED WITH mysql_native_password` gets from a
/// server without that plugin (MySQL 8.4 by default, 9.0 always).
const ER_PLUGIN_IS_NOT_LOADED: u16 = 1524;
/// Too many connections, server shutdown, lock wait timeout, deadlock, query interrupted.
const TRANSIENT: [u16; 5] = [1040, 1053, 1205, 1213, 1317];

fn q(ident: &str) -> String {
    super::quote_identifier(Engine::Mariadb, ident)
}

/// `` `user`@`%` ``: an account name with both parts quoted as identifiers.
fn account(user: &str) -> String {
    format!("{}@{}", q(user), q(HOST))
}

/// A database name as a database-level grant matches it: `_` and `%` (wildcards there)
/// and `\` escaped.
fn grant_pattern(database: &str) -> String {
    let mut out = String::with_capacity(database.len());
    for c in database.chars() {
        if matches!(c, '_' | '%' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `mysql_native_password`'s stored form: `*` and the upper-case hex of SHA1(SHA1(password)).
fn native_password_hash(password: &SecretValue) -> String {
    let inner = Sha1::digest(password.expose());
    let outer = Sha1::digest(inner);
    format!("*{}", hex::encode_upper(outer))
}

fn password_clause(password: &SecretValue) -> String {
    format!(
        "IDENTIFIED WITH mysql_native_password AS {}",
        hash_literal(&native_password_hash(password))
    )
}

fn server_code(err: &mysql_async::Error) -> Option<u16> {
    match err {
        mysql_async::Error::Server(server) => Some(server.code),
        _ => None,
    }
}

fn message(err: &mysql_async::Error) -> String {
    match err {
        mysql_async::Error::Server(server) => bounded(format!(
            "{} ({}): {}",
            server.code, server.state, server.message
        )),
        other => error_chain(other),
    }
}

/// The TLS settings of `mode`; `None` for plain.
fn ssl_opts(server: &Server, mode: SslMode) -> Result<Option<SslOpts>, DbError> {
    Ok(match mode {
        SslMode::Disable => None,
        SslMode::Prefer | SslMode::Require => Some(
            SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        ),
        SslMode::VerifyFull => {
            let opts = SslOpts::default();
            Some(match &server.ca_pem {
                Some(pem) => {
                    // Checked here so that a bad CA is a settings error, not a connect error.
                    super::tls::certificates(server, pem)?;
                    opts.with_root_certs(vec![pem.clone().into()])
                        .with_disable_built_in_roots(true)
                }
                None => opts,
            })
        }
    })
}

/// Opens a session as `user`; the driver's error is kept so that callers can tell a
/// refused login from an unreachable server.
async fn connect(
    server: &Server,
    user: &str,
    password: &str,
    database: Option<&str>,
) -> Result<Result<Conn, mysql_async::Error>, DbError> {
    let base = OptsBuilder::default()
        .ip_or_hostname(server.host.clone())
        .tcp_port(server.port)
        .user(Some(user))
        .pass(Some(password))
        .db_name(database)
        // mysql_async would otherwise switch a local connection to the server's socket,
        // which is a different account host ('localhost').
        .prefer_socket(false);
    let tls = ssl_opts(server, server.ssl_mode)?;
    bounded_by(server, "connect", async {
        let first = Conn::new(base.clone().ssl_opts(tls.clone())).await;
        match first {
            // `prefer`: a server without TLS is spoken to in plain.
            Err(mysql_async::Error::Driver(
                mysql_async::DriverError::NoClientSslFlagFromServer,
            )) if server.ssl_mode == SslMode::Prefer => {
                Ok(Conn::new(base.ssl_opts(None::<SslOpts>)).await)
            }
            other => Ok(other),
        }
    })
    .await
}

fn utf8<'a>(server: &Server, user: &str, password: &'a SecretValue) -> Result<&'a str, DbError> {
    password
        .expose_str()
        .ok_or_else(|| DbError::InvalidPassword {
            engine: server.engine,
            user: user.to_owned(),
        })
}

async fn admin(server: &Server) -> Result<Conn, DbError> {
    let password = utf8(server, &server.admin_user, &server.admin_password)?;
    connect(server, &server.admin_user, password, None)
        .await?
        .map_err(|err| match server_code(&err) {
            Some(ER_ACCESS_DENIED | ER_ACCESS_DENIED_NO_PASSWORD) => DbError::AdminLogin {
                server: server.address(),
                user: server.admin_user.clone(),
                message: message(&err),
            },
            _ => DbError::Connect {
                server: server.address(),
                message: message(&err),
            },
        })
}

fn statement_error(server: &Server, action: &'static str, err: &mysql_async::Error) -> DbError {
    match server_code(err) {
        Some(ER_PLUGIN_IS_NOT_LOADED) => DbError::NativePasswordUnavailable {
            server: server.address(),
            message: message(err),
        },
        Some(code) if !TRANSIENT.contains(&code) => DbError::Query {
            action,
            message: message(err),
        },
        _ => DbError::Interrupted {
            server: server.address(),
            action,
            message: message(err),
        },
    }
}

async fn execute(
    conn: &mut Conn,
    server: &Server,
    action: &'static str,
    sql: &str,
) -> Result<(), DbError> {
    bounded_by(server, action, async {
        conn.query_drop(sql)
            .await
            .map_err(|err| statement_error(server, action, &err))
    })
    .await
}

/// The first column of each row of a prepared query with text parameters.
async fn strings(
    conn: &mut Conn,
    server: &Server,
    action: &'static str,
    sql: &str,
    params: Vec<String>,
) -> Result<Vec<String>, DbError> {
    bounded_by(server, action, async {
        conn.exec::<String, _, _>(sql, params)
            .await
            .map_err(|err| statement_error(server, action, &err))
    })
    .await
}

async fn user_exists(conn: &mut Conn, server: &Server, user: &str) -> Result<bool, DbError> {
    let sql = "SELECT User FROM mysql.user WHERE User = ? AND Host = ?";
    let rows = strings(
        conn,
        server,
        "look up user",
        sql,
        vec![user.into(), HOST.into()],
    )
    .await?;
    Ok(!rows.is_empty())
}

pub(super) async fn observe(
    server: &Server,
    user: &str,
    database: Option<&str>,
    password: &SecretValue,
) -> Result<Observed, DbError> {
    let mut conn = admin(server).await?;
    let user_exists = user_exists(&mut conn, server, user).await?;
    let database_exists = match database {
        Some(database) => {
            let sql = "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?";
            let rows = strings(
                &mut conn,
                server,
                "look up database",
                sql,
                vec![database.into()],
            );
            !rows.await?.is_empty()
        }
        None => false,
    };
    let mut granted = BTreeSet::new();
    if let (true, Some(database)) = (user_exists, database) {
        let sql = "SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES \
                   WHERE GRANTEE = ? AND TABLE_SCHEMA = ?";
        let grantee = format!("'{user}'@'{HOST}'");
        let params = vec![grantee, grant_pattern(database)];
        granted = strings(&mut conn, server, "read grants", sql, params)
            .await?
            .into_iter()
            .collect();
        let all: Vec<&str> = MYSQL_PRIVILEGES
            .iter()
            .copied()
            .filter(|p| *p != "ALL")
            .collect();
        granted = with_all(granted, &all);
    }
    let _ = conn.disconnect().await;
    let password_works = user_exists && {
        let password = utf8(server, user, password)?;
        let target = database.filter(|_| database_exists);
        match connect(server, user, password, target).await? {
            Ok(conn) => {
                let _ = conn.disconnect().await;
                true
            }
            Err(err) => match server_code(&err) {
                Some(ER_ACCESS_DENIED | ER_ACCESS_DENIED_NO_PASSWORD) => false,
                // The login passed; the database is what was refused.
                Some(ER_DBACCESS_DENIED | ER_BAD_DB) => true,
                _ => {
                    return Err(DbError::Connect {
                        server: server.address(),
                        message: message(&err),
                    });
                }
            },
        }
    };
    Ok(Observed {
        user_exists,
        database_exists,
        granted,
        password_works,
    })
}

pub(super) async fn apply(server: &Server, actions: &[Action]) -> Result<(), DbError> {
    let mut conn = admin(server).await?;
    let mut result = Ok(());
    for action in actions {
        result = run(&mut conn, server, action).await;
        if result.is_err() {
            break;
        }
    }
    let _ = conn.disconnect().await;
    result
}

async fn run(conn: &mut Conn, server: &Server, action: &Action) -> Result<(), DbError> {
    let name = action.name();
    match action {
        Action::CreateUser { user, password } => {
            // Creating a user that exists sets its password instead (a retry converges;
            // CREATE OR REPLACE would drop its grants).
            let verb = if user_exists(conn, server, user).await? {
                "ALTER"
            } else {
                "CREATE"
            };
            let sql = format!(
                "{verb} USER {} {}",
                account(user),
                password_clause(password)
            );
            execute(conn, server, name, &sql).await
        }
        Action::SetPassword { user, password } => {
            let sql = format!("ALTER USER {} {}", account(user), password_clause(password));
            execute(conn, server, name, &sql).await
        }
        Action::CreateDatabase { database, owner: _ } => {
            let sql = format!("CREATE DATABASE IF NOT EXISTS {}", q(database));
            execute(conn, server, name, &sql).await
        }
        Action::Grant {
            user,
            database,
            privileges,
        } => {
            let privileges = privilege_list(server.engine, privileges)?;
            if privileges.is_empty() {
                return Ok(());
            }
            let privileges = privileges
                .iter()
                .map(|p| if *p == "ALL" { "ALL PRIVILEGES" } else { p })
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "GRANT {privileges} ON {}.* TO {}",
                q(&grant_pattern(database)),
                account(user)
            );
            execute(conn, server, name, &sql).await
        }
        Action::DropUser { user } => {
            let sql = format!("DROP USER IF EXISTS {}", account(user));
            execute(conn, server, name, &sql).await
        }
        Action::DropDatabase { database } => {
            let sql = format!("DROP DATABASE IF EXISTS {}", q(database));
            execute(conn, server, name, &sql).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_password_hash_is_mysqls_password_function() {
        // SELECT PASSWORD('password') on MariaDB.
        assert_eq!(
            native_password_hash(&SecretValue::from("password")),
            "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
        );
        let clause = password_clause(&SecretValue::from("canary-pw"));
        assert!(!clause.contains("canary"), "{clause}");
    }

    #[test]
    fn a_server_without_the_native_password_plugin_says_so() {
        let server = Server {
            engine: Engine::Mysql,
            host: "db".into(),
            port: 3306,
            admin_user: "admin".into(),
            admin_password: SecretValue::from("admin-canary"),
            ssl_mode: SslMode::Disable,
            ca_pem: None,
        };
        // What MySQL 8.4 answers `CREATE USER ... IDENTIFIED WITH mysql_native_password`.
        let refused = mysql_async::Error::Server(mysql_async::ServerError {
            code: 1524,
            message: "Plugin 'mysql_native_password' is not loaded".into(),
            state: "HY000".into(),
        });
        let err = statement_error(&server, "create user", &refused);
        assert_eq!(err.kind(), "native_password_unavailable");
        assert!(!err.is_transient());
        let text = err.to_string();
        assert!(
            text.contains("db:3306") && text.contains("mysql_native_password=ON"),
            "{text}"
        );
        let other = mysql_async::Error::Server(mysql_async::ServerError {
            code: 1064,
            message: "syntax".into(),
            state: "42000".into(),
        });
        assert_eq!(statement_error(&server, "grant", &other).kind(), "query");
    }

    #[test]
    fn accounts_and_grant_patterns_are_quoted() {
        assert_eq!(account("app"), "`app`@`%`");
        assert_eq!(account("a`b"), "`a``b`@`%`");
        assert_eq!(grant_pattern(r"my_db%\x"), r"my\_db\%\\x");
        assert_eq!(q(&grant_pattern("a_b")), r"`a\_b`");
    }
}
