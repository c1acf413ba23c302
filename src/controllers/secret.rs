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

use base64::Engine as _;
use bollard::models::{Secret, SecretSpec as SwarmSecretSpec};
use rand::{Rng as _, TryRngCore as _};

use super::status::{Owned, Phase, Status};
use super::{Context, Error, RecordKey};
use crate::api::secret::{Generate, SecretSpec};
use crate::api::{SecretValue, Spec};
use crate::docker::labels::{Owner, SPEC_HASH};
use crate::plan::drift::{ObjectDrift, ObjectState};
use crate::plan::stack::versioned_name;
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
fn generate(g: &Generate) -> SecretValue {
    let alphabet = g.charset.alphabet();
    // The OS generator only fails when the OS cannot give randomness at all:
    // then no value must be made, so it panics (as `unwrap_err` documents).
    let mut rng = rand::rngs::OsRng.unwrap_err();
    let mut value = Vec::with_capacity(usize::from(g.length));
    value.extend((0..g.length).map(|_| alphabet[rng.random_range(0..alphabet.len())]));
    SecretValue::new(value)
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
    let store_key = match &spec.generate {
        Some(_) => generated_key(name, spec.rotation),
        None => name.to_string(),
    };
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

fn secret_name(s: &Secret) -> &str {
    s.spec
        .as_ref()
        .and_then(|s| s.name.as_deref())
        .unwrap_or_default()
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
        let lingering = !remove_versions(ctx, key, &live, None).await?.is_empty();
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
    let digest = ctx
        .keyring
        .as_ref()
        .map(|k| k.digest(content.expose()))
        .unwrap_or_default();
    let versioned = match versioned_name(&key.name, &digest) {
        Ok(n) => n,
        Err(msg) => return ctx.fail(key, generation, msg).await,
    };
    let mut owned: Vec<Owned> = Vec::new();
    let current = live.iter().find(|s| secret_name(s) == versioned);
    let id = match current {
        Some(s) => s.id.clone().unwrap_or_default(),
        None => {
            let mut labels: std::collections::HashMap<String, String> =
                spec.labels.clone().into_iter().collect();
            labels.extend(ctx.docker.owner_labels(&owner));
            labels.insert(SPEC_HASH.into(), digest);
            let created = ctx
                .docker
                .create_secret(SwarmSecretSpec {
                    name: Some(versioned.clone()),
                    labels: Some(labels),
                    data: Some(base64::engine::general_purpose::STANDARD.encode(content.expose())),
                    ..Default::default()
                })
                .await?;
            ctx.event(
                key,
                false,
                "Created",
                format!("created secret version {versioned}"),
            )
            .await;
            created
        }
    };
    owned.push(Owned {
        object: "secret".into(),
        name: versioned.clone(),
        id,
    });
    let left = remove_versions(ctx, key, &live, Some(&versioned)).await?;
    let lingering = !left.is_empty();
    ctx.drift.set(key, left);
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

/// Removes every version but `keep`; returns those still in use, which stay
/// as orphans until the services using them move on.
async fn remove_versions(
    ctx: &Context,
    key: &RecordKey,
    live: &[Secret],
    keep: Option<&str>,
) -> Result<Vec<ObjectDrift>, Error> {
    let mut lingering = Vec::new();
    for s in live.iter().filter(|s| Some(secret_name(s)) != keep) {
        match ctx
            .docker
            .remove_secret(s.id.as_deref().unwrap_or_default())
            .await
        {
            Ok(()) => {
                let msg = format!("removed secret version {}", secret_name(s));
                ctx.event(key, false, "Removed", msg).await;
            }
            Err(err) if err.is_in_use() || err.is_transient() => lingering.push(ObjectDrift {
                object: "secret".into(),
                name: secret_name(s).to_owned(),
                state: ObjectState::Orphan,
                fields: Vec::new(),
            }),
            Err(err) => return Err(err.into()),
        }
    }
    Ok(lingering)
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
