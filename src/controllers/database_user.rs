//! The DatabaseUser reconciler: a user (and its database, and its grants) in
//! PostgreSQL or MariaDB/MySQL, its generated password delivered as a swarm
//! secret, and a connection string rendered from a template as another.
//!
//! # Expected flow
//! Read the admin password (a Secret record) and the user's password (sealed
//! under the record's own key prefix, generated once per `rotation`), observe
//! the server as the administrator and as the user, execute the plan, then
//! deliver both secrets as versions stacks use by their logical names.
//!
//! # Guarantees
//! - The password reaches the server only as a SCRAM verifier or a hash
//!   (`db`), never in a log, event, status or drift report.
//! - `deletionPolicy: Retain` leaves the user on the server when the record
//!   goes; `Delete` drops it (and the database with `dropDatabase`). The
//!   status remembers the spec until the cleanup is done.
//!
//! # Caveats
//! The server is reached from where the operator runs: an operator in the
//! swarm must join the database's attachable network.

use std::time::Duration;

use bollard::models::Secret;

use super::secret_versions::{LOGICAL, deliver, remove_versions, versions_of};
use super::status::{Condition, Phase, Status};
use super::{Context, Error, RecordKey};
use crate::api::database_user::{ConnectionSecret, DatabaseUserSpec, SslMode, TemplateValues};
use crate::api::secret::{Charset, Generate};
use crate::api::{SecretValue, Spec};
use crate::db::{self, Server};
use crate::docker::labels::Owner;
use crate::plan::database_user;
use crate::runtime::Action;
use crate::store::Versioned;

/// Where the user's password of one rotation is sealed: under the record's own prefix.
fn password_key(name: &str, rotation: u32) -> String {
    format!("{}{rotation}", password_prefix(name))
}

/// What every rotation's store key of the record starts with.
pub fn password_prefix(name: &str) -> String {
    format!("dbuser:{name}:")
}

/// The status field that remembers the spec, for the cleanup after deletion.
const REMEMBERED: &str = "database-user-spec";

fn spec_of(stored: Versioned) -> Result<DatabaseUserSpec, String> {
    match super::parse_record(stored.value)?.spec {
        Spec::DatabaseUser(spec) => Ok(spec),
        _ => Err("record is not a DatabaseUser".into()),
    }
}

/// The user's password, generated and sealed the first time (only if absent,
/// so two replicas can never deliver two).
async fn password(
    ctx: &Context,
    name: &str,
    spec: &DatabaseUserSpec,
) -> Result<SecretValue, Error> {
    let store_key = password_key(name, spec.rotation);
    let sealed = match ctx.store.get_secret(&store_key).await? {
        Some(sealed) => sealed,
        None => {
            let fresh = super::secret::generate(&Generate {
                length: spec.password_length,
                charset: Charset::Alnum,
            });
            let sealed = keyring(ctx)?.seal(&store_key, fresh.expose());
            ctx.store.create_secret(&store_key, &sealed).await?
        }
    };
    open(ctx, &store_key, &sealed)
}

fn keyring(ctx: &Context) -> Result<&crate::store::Keyring, Error> {
    ctx.keyring.as_ref().ok_or_else(|| {
        Error::Invalid("a secret key (--secret-key-file) is needed to keep passwords".into())
    })
}

fn open(ctx: &Context, store_key: &str, sealed: &[u8]) -> Result<SecretValue, Error> {
    keyring(ctx)?
        .open(store_key, sealed)
        .map_err(|err| Error::Invalid(format!("the stored password does not open: {err}")))
}

/// The connection string `connection`'s template makes for `spec`'s user with `password`.
fn connection_string(
    spec: &DatabaseUserSpec,
    connection: &ConnectionSecret,
    password: &SecretValue,
) -> Result<SecretValue, Error> {
    let values = TemplateValues {
        user: &spec.user,
        password,
        host: &spec.server.host,
        port: spec.server.port_for(spec.engine),
        database: spec.database.as_deref().unwrap_or_default(),
    };
    connection.render(&values).map_err(Error::Invalid)
}

/// The server as its administrator reaches it; `None` while the admin
/// password's Secret record has no value yet.
async fn server(ctx: &Context, spec: &DatabaseUserSpec) -> Result<Option<Server>, Error> {
    let Some(admin_password) =
        super::secret::current_value(ctx, &spec.server.admin_password_secret).await?
    else {
        return Ok(None);
    };
    let ca_pem = match &spec.server.ca_secret {
        None => None,
        Some(ca) => match super::secret::current_value(ctx, ca).await? {
            Some(pem) => Some(pem.expose().to_vec()),
            None => return Ok(None),
        },
    };
    Ok(Some(Server {
        engine: spec.engine,
        host: spec.server.host.clone(),
        port: spec.server.port_for(spec.engine),
        admin_user: spec.server.admin_user.clone(),
        admin_password,
        ssl_mode: match spec.server.ssl_mode {
            SslMode::Disable => db::SslMode::Disable,
            SslMode::Prefer => db::SslMode::Prefer,
            SslMode::Require => db::SslMode::Require,
            SslMode::VerifyFull => db::SslMode::VerifyFull,
        },
        ca_pem,
    }))
}

/// Converges one DatabaseUser record.
///
/// # Errors
/// The server unreachable or the admin login refused (transient), a statement
/// the server refuses (permanent: `Failed`), etcd or dockerd failing.
pub async fn reconcile(
    ctx: &Context,
    key: &RecordKey,
    stored: Option<Versioned>,
) -> Result<Action, Error> {
    let owner = Owner::new("DatabaseUser", &key.name);
    let live = ctx.docker.list_secrets(Some(&owner)).await?;
    let Some(stored) = stored else {
        return forget(ctx, key, &live).await;
    };
    let generation = stored.mod_revision;
    let spec = match spec_of(stored) {
        Ok(spec) => spec,
        Err(msg) => return ctx.fail(key, generation, msg).await,
    };
    let Some(server) = server(ctx, &spec).await? else {
        let message = format!(
            "waiting for the value of Secret/{} (the admin password)",
            spec.server.admin_password_secret
        );
        let status = Status::new(Phase::Pending, generation).with_message(message);
        ctx.write_status(key, &status).await?;
        return Ok(Action::requeue(Duration::from_secs(10)));
    };
    let password = password(ctx, &key.name, &spec).await?;
    let observed = db::observe(&server, &spec.user, spec.database.as_deref(), &password).await?;
    let plan = database_user::plan(&spec, &observed, &password);
    db::apply(&server, &plan.actions).await?;
    for action in &plan.actions {
        ctx.event(key, false, "Changed", database_user::describe(action))
            .await;
    }
    let mut secrets = vec![(spec.password_secret.clone(), password.clone())];
    if let Some(connection) = &spec.connection_secret {
        secrets.push((
            connection.name.clone(),
            connection_string(&spec, connection, &password)?,
        ));
    }
    let mut status = Status::new(Phase::Ready, generation);
    let mut lingering = Vec::new();
    for (logical, content) in &secrets {
        let versions = versions_of(&live, logical);
        let delivered = deliver(
            ctx,
            key,
            &owner,
            logical,
            content,
            Default::default(),
            &versions,
        )
        .await?;
        status.owned.push(delivered.owned);
        lingering.extend(delivered.lingering);
    }
    // Versions of a logical name the record no longer delivers.
    let dropped: Vec<&Secret> = live
        .iter()
        .filter(|s| {
            !secrets
                .iter()
                .any(|(logical, _)| labelled(s) == Some(logical.as_str()))
        })
        .collect();
    lingering.extend(remove_versions(ctx, key, &dropped).await?);
    status.conditions.push(Condition {
        type_: format!("user/{}", spec.user),
        ready: true,
        message: format!("{} on {}:{}", spec.user, spec.server.host, server.port),
    });
    // The memory of what to clean up once the record is deleted.
    status.owned.push(super::status::Owned {
        object: REMEMBERED.into(),
        name: serde_json::to_string(&spec).unwrap_or_default(),
        id: String::new(),
    });
    if !lingering.is_empty() {
        status.message = "older secret versions are still used by services".into();
    }
    ctx.drift.set(key, lingering);
    ctx.write_status(key, &status).await?;
    Ok(Action::requeue(ctx.resync))
}

fn labelled(s: &Secret) -> Option<&str> {
    s.spec
        .as_ref()
        .and_then(|spec| spec.labels.as_ref())
        .and_then(|labels| labels.get(LOGICAL))
        .map(String::as_str)
}

/// After the record is deleted: the cleanup its `deletionPolicy` asks for (the
/// spec remembered by the status), its secret versions, its sealed passwords.
async fn forget(ctx: &Context, key: &RecordKey, live: &[Secret]) -> Result<Action, Error> {
    let remembered = ctx.read_status(key).await?.and_then(|status| {
        status
            .owned
            .into_iter()
            .find(|o| o.object == REMEMBERED)
            .and_then(|o| serde_json::from_str::<DatabaseUserSpec>(&o.name).ok())
    });
    if let Some(spec) = remembered {
        let cleanup = database_user::cleanup(&spec);
        if !cleanup.is_empty() {
            let Some(server) = server(ctx, &spec).await? else {
                // Without the admin password the user cannot be dropped yet.
                return Ok(Action::requeue(Duration::from_secs(30)));
            };
            db::apply(&server, &cleanup).await?;
            for action in &cleanup {
                ctx.event(key, false, "Deleted", database_user::describe(action))
                    .await;
            }
        }
    }
    let versions: Vec<&Secret> = live.iter().collect();
    let lingering = !remove_versions(ctx, key, &versions).await?.is_empty();
    if !lingering {
        ctx.store
            .delete_secrets_with_prefix(&password_prefix(&key.name))
            .await?;
    }
    ctx.forget(key, lingering).await
}

/// The drift of one DatabaseUser record, for `swarmkeeper drift`: the plan of
/// a pass now, rendered.
///
/// # Errors
/// When etcd fails, or the server cannot be reached.
pub async fn drift(
    ctx: &Context,
    name: &str,
    stored: Option<Versioned>,
) -> Result<crate::plan::drift::RecordDrift, Error> {
    let mut report = crate::plan::drift::RecordDrift {
        kind: "DatabaseUser".into(),
        name: name.into(),
        objects: Vec::new(),
        error: None,
    };
    let Some(stored) = stored else {
        return Ok(report);
    };
    let spec = match spec_of(stored) {
        Ok(spec) => spec,
        Err(msg) => {
            report.error = Some(msg);
            return Ok(report);
        }
    };
    let Some(server) = server(ctx, &spec).await? else {
        report.error = Some(format!(
            "no value in Secret/{} (the admin password) yet",
            spec.server.admin_password_secret
        ));
        return Ok(report);
    };
    let password = password(ctx, name, &spec).await?;
    let observed = db::observe(&server, &spec.user, spec.database.as_deref(), &password).await?;
    report.objects = database_user::plan(&spec, &observed, &password).drift;
    Ok(report)
}

/// The current value of the secret `name` some DatabaseUser record delivers
/// (its password, or its connection string), for `secret reveal`; `None` when
/// no record delivers it or its password was not made yet.
///
/// # Errors
/// When etcd fails, or the value does not open.
pub async fn delivered_value(ctx: &Context, name: &str) -> Result<Option<SecretValue>, Error> {
    let (records, _) = ctx.store.list_records(Some("DatabaseUser")).await?;
    for record in records {
        let Ok(spec) = spec_of(record.versioned) else {
            continue;
        };
        let connection = spec.connection_secret.as_ref().filter(|c| c.name == name);
        if spec.password_secret != name && connection.is_none() {
            continue;
        }
        let store_key = password_key(&record.name, spec.rotation);
        let Some(sealed) = ctx.store.get_secret(&store_key).await? else {
            return Ok(None);
        };
        let password = open(ctx, &store_key, &sealed)?;
        return match connection {
            None => Ok(Some(password)),
            Some(connection) => connection_string(&spec, connection, &password).map(Some),
        };
    }
    Ok(None)
}
