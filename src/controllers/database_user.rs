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
//!   status ([`DatabaseUserStatus`]) remembers the spec until the cleanup is
//!   done, and when the password was last rotated.
//!
//! # Caveats
//! The server is reached from where the operator runs: an operator in the
//! swarm must join the database's attachable network.

use std::time::Duration;

use bollard::models::Secret;
use serde::{Deserialize, Serialize};

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

/// The DatabaseUser part of a record's status: when its password was last
/// rotated, and the memory of what to clean up once the record is deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseUserStatus {
    /// The `spec.rotation` whose password is set on the server and delivered.
    pub rotation: u32,
    /// When that password was set; `None` when an earlier swarmkeeper set it
    /// and did not record the time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<jiff::Timestamp>,
    /// The spec last converged: what the cleanup after deletion acts on.
    pub spec: DatabaseUserSpec,
}

impl DatabaseUserStatus {
    /// One line for `describe` and `get -o wide`: the rotation and its time.
    pub fn summary(&self) -> String {
        match self.rotated_at {
            Some(at) => format!("rotation {}, set at {at}", self.rotation),
            None => format!(
                "rotation {}, set before its time was recorded",
                self.rotation
            ),
        }
    }
}

/// Where versions before the typed status kept the spec for the cleanup: an
/// owned entry whose name is the spec as JSON. Still read, so that a record
/// converged by such a version is cleaned up after it is deleted.
const LEGACY_REMEMBERED: &str = "database-user-spec";

/// What a status remembers of its DatabaseUser: the typed field, or the
/// legacy owned entry (its rotation then has no known time).
fn remembered(status: &Status) -> Option<DatabaseUserStatus> {
    if let Some(typed) = &status.database_user {
        return Some(typed.clone());
    }
    let legacy = status
        .owned
        .iter()
        .find(|o| o.object == LEGACY_REMEMBERED)?;
    let spec = serde_json::from_str::<DatabaseUserSpec>(&legacy.name).ok()?;
    Some(DatabaseUserStatus {
        rotation: spec.rotation,
        rotated_at: None,
        spec,
    })
}

/// The status part of a pass that converged `spec`: the time of its rotation
/// is kept from `previous` while the rotation is the same, else it is now,
/// when the new password was just set on the server.
fn converged(
    previous: Option<DatabaseUserStatus>,
    spec: &DatabaseUserSpec,
    now: jiff::Timestamp,
) -> DatabaseUserStatus {
    let rotated_at = match previous {
        Some(previous) if previous.rotation == spec.rotation => previous.rotated_at,
        _ => Some(now),
    };
    DatabaseUserStatus {
        rotation: spec.rotation,
        rotated_at,
        spec: spec.clone(),
    }
}

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
    // Every status this pass writes keeps what the last one remembered, so a
    // record that cannot converge now is still cleaned up after deletion.
    let memory = ctx.read_status(key).await?.as_ref().and_then(remembered);
    let spec = match spec_of(stored) {
        Ok(spec) => spec,
        Err(msg) => {
            let status = Status {
                database_user: memory,
                ..Status::new(Phase::Failed, generation).with_message(msg)
            };
            return ctx.fail_with(key, status).await;
        }
    };
    let Some(server) = server(ctx, &spec).await? else {
        let message = format!(
            "waiting for the value of Secret/{} (the admin password)",
            spec.server.admin_password_secret
        );
        let status = Status {
            database_user: memory,
            ..Status::new(Phase::Pending, generation).with_message(message)
        };
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
    status.database_user = Some(converged(memory, &spec, jiff::Timestamp::now()));
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
    let memory = ctx.read_status(key).await?.as_ref().and_then(remembered);
    if let Some(DatabaseUserStatus { spec, .. }) = memory {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::status::Owned;

    fn spec(rotation: u32) -> DatabaseUserSpec {
        serde_json::from_value(serde_json::json!({
            "engine": "postgres",
            "server": {"host": "db", "adminUser": "admin", "adminPasswordSecret": "pg_admin"},
            "user": "app", "passwordSecret": "app_password", "rotation": rotation,
            "deletionPolicy": "Delete"
        }))
        .unwrap()
    }

    fn at(second: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn the_rotation_time_is_kept_until_the_rotation_changes() {
        let first = converged(None, &spec(0), at(10));
        assert_eq!((first.rotation, first.rotated_at), (0, Some(at(10))));
        let again = converged(Some(first.clone()), &spec(0), at(20));
        assert_eq!(again, first);
        let rotated = converged(Some(first), &spec(1), at(30));
        assert_eq!((rotated.rotation, rotated.rotated_at), (1, Some(at(30))));
        assert_eq!(rotated.spec, spec(1));
    }

    #[test]
    fn a_status_of_the_old_layout_is_still_remembered() {
        // Written before the typed field: the spec as JSON in an owned entry.
        let old = serde_json::json!({
            "phase": "Ready", "observedRevision": 4, "updatedAt": "2026-11-30T10:00:00Z",
            "owned": [
                {"object": "secret", "name": "app_password.v1", "id": "x"},
                {"object": LEGACY_REMEMBERED,
                 "name": serde_json::to_string(&spec(2)).unwrap(), "id": ""}
            ]
        });
        let status: Status = serde_json::from_value(old).unwrap();
        let memory = remembered(&status).unwrap();
        assert_eq!((memory.rotation, memory.rotated_at), (2, None));
        assert_eq!(memory.spec.deletion_policy, spec(2).deletion_policy);
        assert!(memory.summary().contains("rotation 2"));
        // The same rotation keeps its unknown time; the next one is stamped.
        assert_eq!(
            converged(Some(memory.clone()), &spec(2), at(5)).rotated_at,
            None
        );
        assert_eq!(
            converged(Some(memory), &spec(3), at(5)).rotated_at,
            Some(at(5))
        );

        // The typed field wins, and serialises without the legacy entry.
        let typed = Status {
            owned: vec![Owned {
                object: "secret".into(),
                name: "app_password.v1".into(),
                id: "x".into(),
            }],
            database_user: Some(converged(None, &spec(1), at(7))),
            ..Status::new(Phase::Ready, 5)
        };
        let value = serde_json::to_value(&typed).unwrap();
        assert_eq!(value["databaseUser"]["rotation"], 1);
        assert!(!value.to_string().contains(LEGACY_REMEMBERED));
        let back: Status = serde_json::from_value(value).unwrap();
        assert_eq!(remembered(&back).unwrap().rotated_at, Some(at(7)));
        assert_eq!(remembered(&Status::new(Phase::Ready, 1)), None);
    }
}
