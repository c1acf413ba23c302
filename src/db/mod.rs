//! The database servers a `DatabaseUser` lives in: observe a user, apply changes, quote names.
//!
//! One entry point per direction, dispatched by engine: [`observe`] reads what the
//! server has for one user (as the administrator, plus a login as the user), and
//! [`apply`] runs an ordered list of [`Action`]s as the administrator. The
//! PostgreSQL side lives in `postgres.rs` (tokio-postgres), the MariaDB/MySQL side in
//! `mysql.rs` (mysql_async).
//!
//! # Guarantees
//! - A password never reaches a statement in plaintext: PostgreSQL gets a SCRAM-SHA-256
//!   verifier (computed by postgres-protocol), MariaDB/MySQL the `mysql_native_password`
//!   hash (`*` and the hex of SHA1(SHA1(password))), so `log_statement = 'all'` or a
//!   general log shows only what the server stores anyway. Logins as the user use the
//!   wire protocol's authentication exchange, never a statement.
//! - Every identifier goes through [`quote_identifier`]; privileges come only from a
//!   fixed allow-list per engine, and an unknown one fails before any SQL is sent.
//! - Connecting and each statement are bounded by [`TIMEOUT`], so a closed port or a
//!   hung server is a transient error, never a stuck reconcile.
//!
//! # Caveats
//! - MariaDB/MySQL users are always `'user'@'%'`.
//! - MariaDB/MySQL has no database owner: `CreateDatabase`'s `owner` is ignored there;
//!   the `Grant` that follows it gives the user its rights.

mod mysql;
mod postgres;
mod tls;

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use crate::api::SecretValue;
pub use crate::api::database_user::Engine;

/// `tracing_subscriber::EnvFilter` directives that keep the drivers' debug
/// lines, which print each statement (a password's verifier or hash
/// included), out of the logs.
pub const QUIET_DRIVER_DIRECTIVES: [&str; 2] = ["tokio_postgres=info", "mysql_async=info"];
use crate::text::{MESSAGE_LIMIT, truncate};

/// How long connecting, or one statement, may take before it counts as a transient failure.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// TLS towards the server, with libpq's meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// TLS when the server offers it, without verifying its certificate; plain otherwise.
    #[default]
    Prefer,
    /// Plain TCP.
    Disable,
    /// TLS or nothing, without verifying the certificate (as libpq's `require`).
    Require,
    /// TLS, with the certificate verified against `ca_pem` (or the Mozilla roots when
    /// there is none) and the host name checked against it.
    VerifyFull,
}

/// A server and how its administrator logs in.
#[derive(Clone)]
pub struct Server {
    pub engine: Engine,
    pub host: String,
    pub port: u16,
    pub admin_user: String,
    pub admin_password: SecretValue,
    pub ssl_mode: SslMode,
    /// PEM certificates trusted for `VerifyFull`.
    pub ca_pem: Option<Vec<u8>>,
}

impl Server {
    /// `host:port`, the name errors give the server.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The admin password is redacted by [`SecretValue`]'s own Debug; the CA is only sized.
impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("engine", &self.engine)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("admin_user", &self.admin_user)
            .field("admin_password", &self.admin_password)
            .field("ssl_mode", &self.ssl_mode)
            .field("ca_pem", &self.ca_pem.as_ref().map(|pem| pem.len()))
            .finish()
    }
}

/// What the server has for one user: observed as the admin, plus a login as the user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    pub user_exists: bool,
    /// False when no database was asked about.
    pub database_exists: bool,
    /// The privileges the user holds on the database, upper-case (`SELECT`, `CONNECT`,
    /// ...), with `ALL` added when it holds every privilege of the engine's allow-list
    /// that applies to a database.
    pub granted: BTreeSet<String>,
    /// Logging in as the user with the given password succeeds.
    pub password_works: bool,
}

/// One change; the controller runs them in order. Debug redacts passwords
/// ([`SecretValue`] prints `<redacted>`).
#[derive(Debug, Clone)]
pub enum Action {
    CreateUser {
        user: String,
        password: SecretValue,
    },
    SetPassword {
        user: String,
        password: SecretValue,
    },
    CreateDatabase {
        database: String,
        owner: String,
    },
    Grant {
        user: String,
        database: String,
        privileges: Vec<String>,
    },
    DropUser {
        user: String,
    },
    DropDatabase {
        database: String,
    },
}

impl Action {
    /// The action's name in errors and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Action::CreateUser { .. } => "create user",
            Action::SetPassword { .. } => "set password",
            Action::CreateDatabase { .. } => "create database",
            Action::Grant { .. } => "grant",
            Action::DropUser { .. } => "drop user",
            Action::DropDatabase { .. } => "drop database",
        }
    }
}

/// What went wrong talking to a database server. Nothing here carries a password: the
/// statements sent hold only hashes, and errors quote the server's message, bounded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The server could not be reached, refused the connection, or the TLS handshake failed.
    #[error("connecting to {server}: {message}")]
    Connect { server: String, message: String },
    /// Connecting or a statement took longer than [`TIMEOUT`].
    #[error("{action} on {server}: no answer within {timeout:?}")]
    Timeout {
        server: String,
        action: &'static str,
        timeout: Duration,
    },
    /// The server refused the administrator's login (wrong password, unknown user).
    #[error("the admin login to {server} as {user} was refused: {message}")]
    AdminLogin {
        server: String,
        user: String,
        message: String,
    },
    /// The connection broke during a statement, or the server reported a transient
    /// condition (shutting down, out of connections, a serialization failure).
    #[error("{action} on {server}: {message}")]
    Interrupted {
        server: String,
        action: &'static str,
        message: String,
    },
    /// The server refused a statement; `message` is its own, bounded.
    #[error("{action}: the server refused it: {message}")]
    Query {
        action: &'static str,
        message: String,
    },
    /// A privilege outside the engine's allow-list; no SQL was sent.
    #[error("unknown privilege {privilege:?} for {engine:?} (known: {known})")]
    UnknownPrivilege {
        engine: Engine,
        privilege: String,
        known: String,
    },
    /// A name the engine cannot hold (empty, a NUL byte, too long); no SQL was sent.
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        what: &'static str,
        name: String,
        reason: &'static str,
    },
    /// The server cannot store a `mysql_native_password` hash, the only form in which
    /// a MariaDB/MySQL password is sent (MySQL 8.4 loads the plugin only with
    /// `mysql_native_password=ON`; 9.0 removed it). Permanent: the server must change.
    #[error(
        "{server} does not offer mysql_native_password, the only form in which swarmkeeper \
         sends a MySQL password (MySQL 8.4 needs mysql_native_password=ON; 9.0 removed it): \
         {message}"
    )]
    NativePasswordUnavailable { server: String, message: String },
    /// A password the driver cannot send (MariaDB/MySQL logins need UTF-8).
    #[error("the password of {user} is not UTF-8 text, which {engine:?} logins need")]
    InvalidPassword { engine: Engine, user: String },
    /// The TLS settings cannot be used (a CA that is not PEM certificates).
    #[error("TLS settings for {server}: {reason}")]
    TlsConfig { server: String, reason: String },
}

impl DbError {
    /// Whether retrying later may succeed without a change to the record: the server
    /// unreachable or slow, the admin login refused (the admin password may be fixed),
    /// a broken connection. A statement the server refuses, an unknown privilege or an
    /// unusable setting stay failed until the record changes.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DbError::Connect { .. }
                | DbError::Timeout { .. }
                | DbError::AdminLogin { .. }
                | DbError::Interrupted { .. }
        )
    }

    /// A fixed label for metrics and status (never the message, which is unbounded in kind).
    pub fn kind(&self) -> &'static str {
        match self {
            DbError::Connect { .. } => "connect",
            DbError::Timeout { .. } => "timeout",
            DbError::AdminLogin { .. } => "admin_login",
            DbError::Interrupted { .. } => "interrupted",
            DbError::Query { .. } => "query",
            DbError::UnknownPrivilege { .. } => "unknown_privilege",
            DbError::InvalidName { .. } => "invalid_name",
            DbError::InvalidPassword { .. } => "invalid_password",
            DbError::NativePasswordUnavailable { .. } => "native_password_unavailable",
            DbError::TlsConfig { .. } => "tls_config",
        }
    }
}

/// A foreign message cut to [`MESSAGE_LIMIT`].
pub(crate) fn bounded(message: impl AsRef<str>) -> String {
    truncate(message.as_ref(), MESSAGE_LIMIT).into_owned()
}

/// `err` and its sources, `outer: inner: ...`, skipping a source the text already quotes
/// (drivers differ in whether their Display repeats the cause), bounded.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    bounded(text)
}

/// What `server` has for `user` (and `database`, when given), and whether `password`
/// logs the user in.
///
/// # Errors
/// [`DbError::Connect`]/[`DbError::Timeout`] when the server cannot be reached,
/// [`DbError::AdminLogin`] when it refuses the administrator, [`DbError::Query`] when
/// it refuses a read. A refused login as the user is `password_works: false`, not an
/// error.
pub async fn observe(
    server: &Server,
    user: &str,
    database: Option<&str>,
    password: &SecretValue,
) -> Result<Observed, DbError> {
    match server.engine {
        Engine::Postgres => postgres::observe(server, user, database, password).await,
        Engine::Mysql | Engine::Mariadb => mysql::observe(server, user, database, password).await,
    }
}

/// Runs `actions` in order as the administrator, stopping at the first failure.
///
/// Every action is checked first (privileges against the allow-list, names against the
/// engine's limits), so a bad one fails before any SQL is sent. Creating is idempotent
/// where the engine allows (`IF NOT EXISTS`), dropping always (`IF EXISTS`).
///
/// # Errors
/// [`DbError::UnknownPrivilege`]/[`DbError::InvalidName`] before anything is sent; then
/// as [`observe`], and [`DbError::Query`] with the server's message for a refused
/// statement.
pub async fn apply(server: &Server, actions: &[Action]) -> Result<(), DbError> {
    for action in actions {
        check(server.engine, action)?;
    }
    if actions.is_empty() {
        return Ok(());
    }
    match server.engine {
        Engine::Postgres => postgres::apply(server, actions).await,
        Engine::Mysql | Engine::Mariadb => mysql::apply(server, actions).await,
    }
}

/// `ident` quoted as an identifier: `"..."` with `"` doubled for PostgreSQL, `` `...` ``
/// with `` ` `` doubled for MariaDB/MySQL. Inside such quotes nothing else is special,
/// so any text (quotes, spaces, semicolons) stays one identifier.
pub fn quote_identifier(engine: Engine, ident: &str) -> String {
    let quote = match engine {
        Engine::Postgres => '"',
        Engine::Mysql | Engine::Mariadb => '`',
    };
    let mut out = String::with_capacity(ident.len() + 2);
    out.push(quote);
    for c in ident.chars() {
        if c == quote {
            out.push(quote);
        }
        out.push(c);
    }
    out.push(quote);
    out
}

/// A hash or verifier we computed, as a string literal. Their alphabets (base64, hex,
/// `$`, `:`, `*`, `-`) hold no quote or backslash; a value with one is a bug here, so it
/// panics instead of sending something unquoted.
pub(crate) fn hash_literal(hash: &str) -> String {
    assert!(
        hash.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=$:*-".contains(&b)),
        "a password hash holds only base64/hex characters"
    );
    format!("'{hash}'")
}

/// The privileges `GRANT ... ON DATABASE` (PostgreSQL) or `ON db.*` (MariaDB) may name.
pub const POSTGRES_PRIVILEGES: &[&str] = &[
    "ALL",
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE",
    "CONNECT",
    "TEMPORARY",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
    "USAGE",
];
pub const MYSQL_PRIVILEGES: &[&str] = &[
    "ALL",
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE",
    "DROP",
    "INDEX",
    "ALTER",
    "CREATE TEMPORARY TABLES",
    "LOCK TABLES",
    "EXECUTE",
    "CREATE VIEW",
    "SHOW VIEW",
    "CREATE ROUTINE",
    "ALTER ROUTINE",
    "EVENT",
    "TRIGGER",
    "REFERENCES",
];

/// The engine's allow-list.
pub fn known_privileges(engine: Engine) -> &'static [&'static str] {
    match engine {
        Engine::Postgres => POSTGRES_PRIVILEGES,
        Engine::Mysql | Engine::Mariadb => MYSQL_PRIVILEGES,
    }
}

/// `privilege` as the allow-list spells it (upper-case, single spaces, `TEMP` →
/// `TEMPORARY`, `ALL PRIVILEGES` → `ALL`), or [`DbError::UnknownPrivilege`].
///
/// # Errors
/// A privilege outside the engine's allow-list.
pub fn normalize_privilege(engine: Engine, privilege: &str) -> Result<&'static str, DbError> {
    let spelled = privilege
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_uppercase();
    let spelled = match (engine, spelled.as_str()) {
        (_, "ALL PRIVILEGES") => "ALL".to_owned(),
        (Engine::Postgres, "TEMP") => "TEMPORARY".to_owned(),
        _ => spelled,
    };
    let known = known_privileges(engine);
    known
        .iter()
        .find(|k| **k == spelled)
        .copied()
        .ok_or_else(|| DbError::UnknownPrivilege {
            engine,
            privilege: privilege.to_owned(),
            known: known.join(", "),
        })
}

/// The longest name each engine keeps whole (PostgreSQL cuts longer ones silently, which
/// would make a later lookup by the full name miss).
fn max_name_len(engine: Engine, what: &'static str) -> usize {
    match (engine, what) {
        (Engine::Postgres, _) => 63,
        (Engine::Mysql, "user") => 32,
        (Engine::Mariadb, "user") => 80,
        (Engine::Mysql | Engine::Mariadb, _) => 64,
    }
}

fn check_name(engine: Engine, what: &'static str, name: &str) -> Result<(), DbError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.contains('\0') {
        Some("it holds a NUL character")
    } else if name.len() > max_name_len(engine, what) {
        Some("it is longer than the engine keeps")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(DbError::InvalidName {
            what,
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Everything about `action` that can be known wrong before talking to the server.
fn check(engine: Engine, action: &Action) -> Result<(), DbError> {
    match action {
        Action::CreateUser { user, .. }
        | Action::SetPassword { user, .. }
        | Action::DropUser { user } => check_name(engine, "user", user),
        Action::CreateDatabase { database, owner } => {
            check_name(engine, "database", database)?;
            check_name(engine, "user", owner)
        }
        Action::DropDatabase { database } => check_name(engine, "database", database),
        Action::Grant {
            user,
            database,
            privileges,
        } => {
            check_name(engine, "user", user)?;
            check_name(engine, "database", database)?;
            for privilege in privileges {
                normalize_privilege(engine, privilege)?;
            }
            Ok(())
        }
    }
}

/// The privileges of `privileges`, normalized, deduplicated, in allow-list order; `ALL`
/// alone when it is among them.
fn privilege_list(engine: Engine, privileges: &[String]) -> Result<Vec<&'static str>, DbError> {
    let mut wanted = BTreeSet::new();
    for privilege in privileges {
        wanted.insert(normalize_privilege(engine, privilege)?);
    }
    if wanted.contains("ALL") {
        return Ok(vec!["ALL"]);
    }
    Ok(known_privileges(engine)
        .iter()
        .copied()
        .filter(|k| wanted.contains(k))
        .collect())
}

/// `held` with `ALL` added when it covers every privilege in `all`.
fn with_all(mut held: BTreeSet<String>, all: &[&str]) -> BTreeSet<String> {
    if all.iter().all(|p| held.contains(*p)) {
        held.insert("ALL".to_owned());
    }
    held
}

/// Runs `fut` within [`TIMEOUT`], a late answer becoming [`DbError::Timeout`].
async fn bounded_by<T>(
    server: &Server,
    action: &'static str,
    fut: impl Future<Output = Result<T, DbError>>,
) -> Result<T, DbError> {
    tokio::time::timeout(TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| {
            Err(DbError::Timeout {
                server: server.address(),
                action,
                timeout: TIMEOUT,
            })
        })
}

#[cfg(test)]
mod tests;
