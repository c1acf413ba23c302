//! PostgreSQL through tokio-postgres: roles, databases and database-level grants.
//!
//! Passwords are sent as SCRAM-SHA-256 verifiers (`CREATE ROLE ... PASSWORD
//! 'SCRAM-SHA-256$...'`), which PostgreSQL stores as they are: the statement log shows
//! the verifier, never the password.
//!
//! # Caveats
//! PostgreSQL 15 lets a `CREATEROLE` administrator create roles but not act as them: it
//! may neither create a database owned by one nor drop what one owns. So before those
//! two, an administrator that is neither superuser nor already a member of the role is
//! granted membership of it (what PostgreSQL 16 does itself for the roles a `CREATEROLE`
//! user creates).

use std::collections::BTreeSet;

use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{
    Action, DbError, Observed, Server, SslMode, TIMEOUT, bounded, bounded_by, error_chain,
    hash_literal, privilege_list, tls, with_all,
};
use crate::api::SecretValue;
use crate::api::database_user::Engine;

/// The database every PostgreSQL cluster has, for the sessions that need no other.
const DEFAULT_DATABASE: &str = "postgres";

/// What `ALL` means on a database.
const DATABASE_PRIVILEGES: [&str; 3] = ["CONNECT", "CREATE", "TEMPORARY"];

fn q(ident: &str) -> String {
    super::quote_identifier(Engine::Postgres, ident)
}

/// Opens a session as `user`; the driver's error is kept so that callers can tell a
/// refused login from an unreachable server.
async fn connect(
    server: &Server,
    user: &str,
    password: &[u8],
    database: &str,
) -> Result<Result<Client, tokio_postgres::Error>, DbError> {
    let mut config = Config::new();
    config
        .host(&server.host)
        .port(server.port)
        .user(user)
        .password(password)
        .dbname(database)
        .application_name("swarmkeeper")
        .connect_timeout(TIMEOUT);
    let tls = match server.ssl_mode {
        SslMode::Disable => None,
        SslMode::Prefer => Some((PgSslMode::Prefer, tls::unverified(server)?)),
        SslMode::Require => Some((PgSslMode::Require, tls::unverified(server)?)),
        SslMode::VerifyFull => Some((PgSslMode::Require, tls::verifying(server)?)),
    };
    bounded_by(server, "connect", async {
        Ok(match tls {
            None => {
                config.ssl_mode(PgSslMode::Disable);
                config.connect(NoTls).await.map(spawn_connection)
            }
            Some((mode, tls)) => {
                config.ssl_mode(mode);
                config
                    .connect(MakeRustlsConnect::new(tls))
                    .await
                    .map(spawn_connection)
            }
        })
    })
    .await
}

/// tokio-postgres hands back the connection's IO as a future to poll; it ends when the
/// client is dropped.
fn spawn_connection<C>((client, connection): (Client, C)) -> Client
where
    C: Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(%err, "postgres connection ended");
        }
    });
    client
}

/// The server's own message: `SQLSTATE: message (detail)`, bounded.
fn message(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => {
            let mut text = format!("{}: {}", db.code().code(), db.message());
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" ({detail})"));
            }
            bounded(text)
        }
        None => error_chain(err),
    }
}

fn is_login_refused(err: &tokio_postgres::Error) -> bool {
    matches!(
        err.code(),
        Some(&SqlState::INVALID_PASSWORD) | Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
    )
}

/// A session as the administrator, on the default database.
async fn admin(server: &Server) -> Result<Client, DbError> {
    admin_on(server, DEFAULT_DATABASE).await
}

/// A session as the administrator, on `database`.
async fn admin_on(server: &Server, database: &str) -> Result<Client, DbError> {
    connect(
        server,
        &server.admin_user,
        server.admin_password.expose(),
        database,
    )
    .await?
    .map_err(|err| {
        if is_login_refused(&err) {
            DbError::AdminLogin {
                server: server.address(),
                user: server.admin_user.clone(),
                message: message(&err),
            }
        } else {
            DbError::Connect {
                server: server.address(),
                message: message(&err),
            }
        }
    })
}

/// A refused statement is permanent; a broken connection or a condition the server
/// names as passing (SQLSTATE classes 08, 40, 53, 57, 58) is not.
fn statement_error(server: &Server, action: &'static str, err: &tokio_postgres::Error) -> DbError {
    let transient = match err.code() {
        None => true,
        Some(code) => ["08", "40", "53", "57", "58"]
            .iter()
            .any(|class| code.code().starts_with(class)),
    };
    if transient {
        DbError::Interrupted {
            server: server.address(),
            action,
            message: message(err),
        }
    } else {
        DbError::Query {
            action,
            message: message(err),
        }
    }
}

/// Runs DDL (no parameters: identifiers are quoted, hashes are literals).
async fn execute(
    client: &Client,
    server: &Server,
    action: &'static str,
    sql: &str,
) -> Result<(), DbError> {
    bounded_by(server, action, async {
        client
            .batch_execute(sql)
            .await
            .map_err(|err| statement_error(server, action, &err))
    })
    .await
}

/// The first column of each row of a query returning text.
async fn strings(
    client: &Client,
    server: &Server,
    action: &'static str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<String>, DbError> {
    bounded_by(server, action, async {
        let rows = client
            .query(sql, params)
            .await
            .map_err(|err| statement_error(server, action, &err))?;
        rows.iter()
            .map(|row| {
                row.try_get::<_, String>(0)
                    .map_err(|err| statement_error(server, action, &err))
            })
            .collect()
    })
    .await
}

async fn role_exists(client: &Client, server: &Server, role: &str) -> Result<bool, DbError> {
    let sql = "SELECT rolname::text FROM pg_roles WHERE rolname = $1";
    Ok(!strings(client, server, "look up role", sql, &[&role])
        .await?
        .is_empty())
}

async fn database_owner(
    client: &Client,
    server: &Server,
    database: &str,
) -> Result<Option<String>, DbError> {
    let sql = "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1";
    Ok(
        strings(client, server, "look up database", sql, &[&database])
            .await?
            .into_iter()
            .next(),
    )
}

/// Makes the administrator able to act as `role` (see the module's caveats).
async fn act_as(client: &Client, server: &Server, role: &str) -> Result<(), DbError> {
    let sql = "SELECT 'yes' FROM pg_roles \
               WHERE rolname = current_user AND (rolsuper OR pg_has_role(current_user, $1, 'MEMBER'))";
    let able = !strings(client, server, "check role membership", sql, &[&role])
        .await?
        .is_empty();
    if able {
        return Ok(());
    }
    let sql = format!("GRANT {} TO CURRENT_USER", q(role));
    execute(client, server, "grant role membership", &sql).await
}

pub(super) async fn observe(
    server: &Server,
    user: &str,
    database: Option<&str>,
    password: &SecretValue,
) -> Result<Observed, DbError> {
    let client = admin(server).await?;
    let user_exists = role_exists(&client, server, user).await?;
    let database_exists = match database {
        Some(database) => database_owner(&client, server, database).await?.is_some(),
        None => false,
    };
    let mut granted = BTreeSet::new();
    if let (true, true, Some(database)) = (user_exists, database_exists, database) {
        // The grants recorded for the user itself (an owner's implicit ones included, via
        // acldefault), not those it has through PUBLIC: a revoked grant shows as missing.
        let sql = "SELECT DISTINCT a.privilege_type::text \
                   FROM pg_database d \
                   CROSS JOIN LATERAL aclexplode(COALESCE(d.datacl, acldefault('d', d.datdba))) a \
                   JOIN pg_roles r ON r.oid = a.grantee \
                   WHERE d.datname = $1 AND r.rolname = $2";
        granted = strings(&client, server, "read grants", sql, &[&database, &user])
            .await?
            .into_iter()
            .collect();
        granted = with_all(granted, &DATABASE_PRIVILEGES);
    }
    drop(client);
    let password_works = user_exists && {
        let target = match database {
            Some(database) if database_exists => database,
            _ => DEFAULT_DATABASE,
        };
        match connect(server, user, password.expose(), target).await? {
            Ok(_) => true,
            Err(err) if is_login_refused(&err) => false,
            // Authentication comes before the database checks: a user that may not
            // connect to the database (or a database dropped meanwhile) did log in.
            Err(err)
                if matches!(
                    err.code(),
                    Some(&SqlState::INSUFFICIENT_PRIVILEGE) | Some(&SqlState::INVALID_CATALOG_NAME)
                ) =>
            {
                true
            }
            Err(err) => {
                return Err(DbError::Connect {
                    server: server.address(),
                    message: message(&err),
                });
            }
        }
    };
    Ok(Observed {
        user_exists,
        database_exists,
        granted,
        password_works,
    })
}

/// `PASSWORD '<SCRAM-SHA-256 verifier>'`: PostgreSQL stores a verifier it is given as it
/// is, so the plaintext never reaches the server.
fn password_clause(password: &SecretValue) -> String {
    let verifier = postgres_protocol::password::scram_sha_256(password.expose());
    format!("LOGIN PASSWORD {}", hash_literal(&verifier))
}

pub(super) async fn apply(server: &Server, actions: &[Action]) -> Result<(), DbError> {
    let client = admin(server).await?;
    for action in actions {
        run(&client, server, action).await?;
    }
    Ok(())
}

async fn run(client: &Client, server: &Server, action: &Action) -> Result<(), DbError> {
    let name = action.name();
    match action {
        Action::CreateUser { user, password } => {
            // Creating a role that exists sets its password instead, so a retry after a
            // lost answer converges.
            let verb = if role_exists(client, server, user).await? {
                "ALTER"
            } else {
                "CREATE"
            };
            let sql = format!("{verb} ROLE {} {}", q(user), password_clause(password));
            execute(client, server, name, &sql).await
        }
        Action::SetPassword { user, password } => {
            let sql = format!("ALTER ROLE {} {}", q(user), password_clause(password));
            execute(client, server, name, &sql).await
        }
        Action::CreateDatabase { database, owner } => {
            if database_owner(client, server, database).await?.is_some() {
                return Ok(());
            }
            act_as(client, server, owner).await?;
            let sql = format!("CREATE DATABASE {} OWNER {}", q(database), q(owner));
            execute(client, server, name, &sql).await
        }
        Action::Grant {
            user,
            database,
            privileges,
        } => {
            let privileges = privilege_list(Engine::Postgres, privileges)?;
            if privileges.is_empty() {
                return Ok(());
            }
            let sql = format!(
                "GRANT {} ON DATABASE {} TO {}",
                privileges.join(", "),
                q(database),
                q(user)
            );
            execute(client, server, name, &sql).await
        }
        Action::DropUser { user } => {
            if !role_exists(client, server, user).await? {
                return Ok(());
            }
            // A role that owns something (its database, the tables in it) or holds
            // grants cannot be dropped. REASSIGN/DROP OWNED act on the current database
            // (and on databases themselves), so they run in each database where
            // pg_shdepend records something of the role's, then here: what it owned
            // goes to the administrator (a retained database keeps its data), its
            // grants go.
            act_as(client, server, user).await?;
            let sql = "SELECT DISTINCT d.datname::text FROM pg_shdepend s \
                       JOIN pg_database d ON d.oid = s.dbid \
                       JOIN pg_roles r ON r.oid = s.refobjid \
                       WHERE r.rolname = $1 AND d.datname <> current_database() \
                       AND d.datallowconn";
            for database in
                strings(client, server, "list the user's databases", sql, &[user]).await?
            {
                let other = admin_on(server, &database).await?;
                disown(&other, server, user).await?;
            }
            disown(client, server, user).await?;
            let sql = format!("DROP ROLE IF EXISTS {}", q(user));
            execute(client, server, name, &sql).await
        }
        Action::DropDatabase { database } => {
            let Some(owner) = database_owner(client, server, database).await? else {
                return Ok(());
            };
            act_as(client, server, &owner).await?;
            // FORCE ends the sessions still connected to it (the application's).
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", q(database));
            execute(client, server, name, &sql).await
        }
    }
}

/// Gives what `role` owns in the session's database to the administrator and revokes its
/// grants there.
async fn disown(client: &Client, server: &Server, role: &str) -> Result<(), DbError> {
    let role = q(role);
    let sql = format!("REASSIGN OWNED BY {role} TO CURRENT_USER; DROP OWNED BY {role}");
    execute(client, server, "drop user", &sql).await
}
