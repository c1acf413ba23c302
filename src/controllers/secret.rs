//! The Secret reconciler: a swarm secret whose value is generated (or was
//! given once and sealed by `apply`), versioned on rotation.
//!
//! # Expected flow
//! Resolve the value from the encrypted store (generating it the first time,
//! and again on each `rotation`), then make sure the swarm holds the secret
//! version named after the value's keyed digest, and remove versions no service
//! uses any more. Stacks name the secret by its record name as `external`; the
//! Stack reconciler resolves that name to the newest version.
//!
//! # Guarantees
//! The value only ever leaves the process sealed (etcd) or inside the swarm
//! secret; logs, events and status name versions, never values.

use bollard::models::Secret;
use rand::{Rng as _, TryRngCore as _};

use super::secret_versions::{deliver, remove_versions};
use super::status::{Phase, Status};
use super::{Context, Error, RecordKey};
use crate::api::secret::{Generate, SecretSpec};
use crate::api::{Kind, SecretValue, Spec};
use crate::docker::labels::Owner;
use crate::runtime::Action;
use crate::store::Versioned;

/// Where a generated value lives in the secret store: one key per rotation,
/// so raising `rotation` generates a new value and the old one stays readable.
fn generated_key(name: &str, rotation: u32) -> String {
    format!("{}{rotation}", generated_prefix(name))
}

/// What the store names of every rotation of a generated value start with.
fn generated_prefix(name: &str) -> String {
    format!("generated:{name}:")
}

/// A random value from the generator's alphabet, drawn from the OS's CSPRNG.
pub(super) fn generate(g: &Generate) -> SecretValue {
    let alphabet = g.charset.alphabet();
    // The OS generator only fails when the OS cannot give randomness at all:
    // then no value must be made, so it panics (as `unwrap_err` documents).
    let mut rng = rand::rngs::OsRng.unwrap_err();
    let mut value = Vec::with_capacity(usize::from(g.length));
    value.extend((0..g.length).map(|_| alphabet[rng.random_range(0..alphabet.len())]));
    SecretValue::new(value)
}

/// Where the current value of a Secret record lives in the store.
fn store_key(name: &str, spec: &SecretSpec) -> String {
    match &spec.generate {
        Some(_) => generated_key(name, spec.rotation),
        None => name.to_string(),
    }
}

/// The current value of the Secret record `name`, for a record that uses it
/// by name (a DatabaseUser's admin password): `None` while the record or its
/// value is not there yet. Never generates one: that is the record's own pass.
///
/// # Errors
/// When etcd fails; [`Error::Invalid`] when there is no key or the value does not open.
pub async fn current_value(ctx: &Context, name: &str) -> Result<Option<SecretValue>, Error> {
    let Some(stored) = ctx.store.get_record(Kind::Secret.as_str(), name).await? else {
        return Ok(None);
    };
    let Ok(Spec::Secret(spec)) = super::parse_record(stored.value).map(|r| r.spec) else {
        return Ok(None);
    };
    let store_key = store_key(name, &spec);
    let Some(sealed) = ctx.store.get_secret(&store_key).await? else {
        return Ok(None);
    };
    let keyring = ctx.keyring.as_ref().ok_or_else(|| {
        Error::Invalid("a secret key (--secret-key-file) is needed to read secret values".into())
    })?;
    keyring
        .open(&store_key, &sealed)
        .map(Some)
        .map_err(|err| Error::Invalid(format!("the value of Secret/{name} does not open: {err}")))
}

/// Reads the value, generating and storing it first when it is generated and new.
async fn value(
    ctx: &Context,
    name: &str,
    spec: &SecretSpec,
) -> Result<Result<SecretValue, String>, Error> {
    let Some(keyring) = &ctx.keyring else {
        return Ok(Err(
            "the controller has no secret key (--secret-key-file): it cannot keep secret values"
                .into(),
        ));
    };
    let store_key = store_key(name, spec);
    let sealed = match ctx.store.get_secret(&store_key).await? {
        Some(sealed) => sealed,
        None => {
            let Some(g) = &spec.generate else {
                return Ok(Err(format!(
                    "the value of {name:?} is not in the store: apply the record again"
                )));
            };
            // Created only if absent: a replica that generated a value concurrently
            // (or a deposed leader that woke up) must not replace the one delivered.
            let fresh = keyring.seal(&store_key, generate(g).expose());
            ctx.store.create_secret(&store_key, &fresh).await?
        }
    };
    Ok(keyring
        .open(&store_key, &sealed)
        .map_err(|err| format!("the stored value of {name:?} does not open: {err}")))
}

/// The newest version of a Secret record's swarm secret: what stacks use.
pub fn newest(versions: &[Secret]) -> Option<&Secret> {
    versions
        .iter()
        .max_by_key(|s| s.created_at.as_ref().map(ToString::to_string))
}

/// Converges one Secret record.
///
/// # Errors
/// Transient failures of etcd or dockerd.
pub async fn reconcile(
    ctx: &Context,
    key: &RecordKey,
    stored: Option<Versioned>,
) -> Result<Action, Error> {
    let owner = Owner::new("Secret", &key.name);
    let live = ctx.docker.list_secrets(Some(&owner)).await?;
    let Some(stored) = stored else {
        let versions: Vec<&Secret> = live.iter().collect();
        let lingering = !remove_versions(ctx, key, &versions).await?.is_empty();
        if !lingering {
            // The values go with the record: none is left for a later record of that name.
            ctx.store.delete_secret(&key.name).await?;
            ctx.store
                .delete_secrets_with_prefix(&generated_prefix(&key.name))
                .await?;
        }
        return ctx.forget(key, lingering).await;
    };
    let generation = stored.mod_revision;
    let spec = match super::parse_record(stored.value).map(|r| r.spec) {
        Ok(Spec::Secret(spec)) => spec,
        Ok(_) => {
            return ctx
                .fail(key, generation, "record is not a Secret".into())
                .await;
        }
        Err(msg) => return ctx.fail(key, generation, msg).await,
    };
    let content = match value(ctx, &key.name, &spec).await? {
        Ok(v) => v,
        Err(msg) => return ctx.fail(key, generation, msg).await,
    };
    let labels = spec.labels.clone().into_iter().collect();
    let versions: Vec<&Secret> = live.iter().collect();
    let delivered = deliver(ctx, key, &owner, &key.name, &content, labels, &versions).await;
    let delivered = match delivered {
        Ok(d) => d,
        Err(Error::Invalid(msg)) => return ctx.fail(key, generation, msg).await,
        Err(err) => return Err(err),
    };
    let lingering = !delivered.lingering.is_empty();
    ctx.drift.set(key, delivered.lingering);
    let owned = vec![delivered.owned];
    let mut status = Status {
        owned,
        ..Status::new(Phase::Ready, generation)
    };
    if lingering {
        status.message =
            "older versions are still used by services; they go once those move".into();
    }
    ctx.write_status(key, &status).await?;
    Ok(Action::requeue(if lingering {
        std::time::Duration::from_secs(10)
    } else {
        ctx.resync
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::secret::Charset;

    #[test]
    fn generated_values_have_the_length_and_alphabet_asked_for() {
        let g = Generate {
            length: 64,
            charset: Charset::Hex,
        };
        let v = generate(&g);
        assert_eq!(v.len(), 64);
        assert!(
            v.expose()
                .iter()
                .all(|c| Charset::Hex.alphabet().contains(c))
        );
        assert_ne!(generate(&g), v, "two draws of 64 hex digits never repeat");
    }

    #[test]
    fn each_rotation_has_its_own_store_key() {
        assert_ne!(generated_key("db", 0), generated_key("db", 1));
        assert_ne!(generated_key("db", 0), "db");
    }
}
