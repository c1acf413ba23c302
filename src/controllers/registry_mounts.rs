//! What a Registry's service mounts: the users' passwords and the TLS pair
//! read from Secret records, the htpasswd file (bcrypt) and the TLS pair
//! delivered as versioned swarm secrets, the config file as a versioned
//! swarm config. Each version is named after a digest of what it is made
//! from, so a pass over unchanged inputs creates nothing.

use std::collections::HashMap;

use base64::Engine as _;
use bollard::models::{Config, ConfigSpec};
use sha2::{Digest as _, Sha256};

use super::secret_versions::{Delivered, deliver, deliver_digested, versions_of};
use super::status::Owned;
use super::{Context, Error, RecordKey};
use crate::api::SecretValue;
use crate::api::registry::RegistryDeploy;
use crate::docker::OwnedObjects;
use crate::docker::labels::{Owner, SPEC_HASH};
use crate::plan::drift::ObjectDrift;
use crate::plan::registry::{Mounted, Ref, config_file, object_base};
use crate::plan::stack::{config_name, versioned_name};

/// The bcrypt cost of the htpasswd hashes (2^10 rounds).
pub const BCRYPT_COST: u32 = 10;

/// The secret values the service is made from.
pub(super) struct Inputs {
    pub users: Vec<(String, SecretValue)>,
    /// Certificate and key.
    pub tls: Option<(SecretValue, SecretValue)>,
}

/// The value of Secret record `name`, or what the record waits for.
pub(super) async fn value(
    ctx: &Context,
    name: &str,
    what: &str,
) -> Result<Result<SecretValue, String>, Error> {
    Ok(super::secret::current_value(ctx, name)
        .await?
        .ok_or_else(|| format!("waiting for the value of Secret/{name} ({what})")))
}

/// Reads every value `deploy` needs; the first one missing is waited for.
pub(super) async fn inputs(
    ctx: &Context,
    deploy: &RegistryDeploy,
) -> Result<Result<Inputs, String>, Error> {
    let mut users = Vec::new();
    for user in &deploy.users {
        let what = format!("the password of user {}", user.name);
        match value(ctx, &user.password_secret, &what).await? {
            Ok(password) => users.push((user.name.clone(), password)),
            Err(waiting) => return Ok(Err(waiting)),
        }
    }
    let tls = match &deploy.tls {
        None => None,
        Some(tls) => {
            let cert = value(ctx, &tls.certificate_secret, "the TLS certificate").await?;
            let key = value(ctx, &tls.key_secret, "the TLS key").await?;
            match (cert, key) {
                (Ok(cert), Ok(key)) => Some((cert, key)),
                (Err(waiting), _) | (_, Err(waiting)) => return Ok(Err(waiting)),
            }
        }
    };
    Ok(Ok(Inputs { users, tls }))
}

/// A keyed digest of the users and passwords: the htpasswd version's name,
/// which must not change when the same passwords are hashed with new salts.
pub(super) fn users_digest(ctx: &Context, users: &[(String, SecretValue)]) -> String {
    let mut material = Vec::new();
    for (name, password) in users {
        material.extend_from_slice(name.as_bytes());
        material.push(0);
        material.extend_from_slice(password.expose());
        material.push(0);
    }
    let digest = ctx.keyring.as_ref().map(|k| k.digest(&material));
    material.fill(0);
    digest.unwrap_or_default()
}

/// The htpasswd file: one `user:bcrypt-hash` line per user, hashed off the async threads.
async fn htpasswd(users: Vec<(String, SecretValue)>) -> Result<SecretValue, Error> {
    tokio::task::spawn_blocking(move || {
        let mut file = Vec::new();
        for (name, password) in &users {
            let hash = bcrypt::hash_with_result(password.expose(), BCRYPT_COST)
                .map_err(|e| Error::Invalid(format!("cannot hash the password of {name}: {e}")))?;
            file.extend_from_slice(name.as_bytes());
            file.push(b':');
            file.extend_from_slice(hash.format_for_version(bcrypt::Version::TwoY).as_bytes());
            file.push(b'\n');
        }
        Ok(SecretValue::new(file))
    })
    .await
    .map_err(|e| Error::Invalid(format!("hashing the passwords failed: {e}")))?
}

fn digest_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What the service mounts, as delivered: versions made where missing (and
/// older ones removed when unused, else returned as lingering), and the
/// objects they are.
pub(super) async fn deliver_mounts(
    ctx: &Context,
    key: &RecordKey,
    owner: &Owner,
    deploy: &RegistryDeploy,
    inputs: Inputs,
    live: &OwnedObjects,
) -> Result<(Mounted, Vec<Owned>, Vec<ObjectDrift>), Error> {
    let record = &key.name;
    let mut delivered: Vec<Delivered> = Vec::new();
    let mut mounted = Mounted::default();
    if !inputs.users.is_empty() {
        let logical = object_base(record, "htpasswd");
        let digest = users_digest(ctx, &inputs.users);
        let versions = versions_of(&live.secrets, &logical);
        let users = inputs.users;
        let make = move || htpasswd(users);
        let d = deliver_digested(
            ctx,
            key,
            owner,
            &logical,
            &digest,
            make,
            HashMap::new(),
            &versions,
        )
        .await?;
        mounted.htpasswd = Some(reference(&d.owned));
        delivered.push(d);
    }
    if let Some((cert, tls_key)) = &inputs.tls {
        let mut pair = Vec::new();
        for (what, content) in [("tls-cert", cert), ("tls-key", tls_key)] {
            let logical = object_base(record, what);
            let versions = versions_of(&live.secrets, &logical);
            let d = deliver(
                ctx,
                key,
                owner,
                &logical,
                content,
                HashMap::new(),
                &versions,
            )
            .await?;
            pair.push(reference(&d.owned));
            delivered.push(d);
        }
        let mut pair = pair.into_iter();
        mounted.tls = Some((
            pair.next().unwrap_or_default(),
            pair.next().unwrap_or_default(),
        ));
    }
    mounted.config = ensure_config(ctx, key, owner, deploy, &live.configs).await?;
    let mut owned = vec![Owned {
        object: "config".into(),
        name: mounted.config.name.clone(),
        id: mounted.config.id.clone(),
    }];
    let mut lingering = Vec::new();
    for d in delivered {
        owned.push(d.owned);
        lingering.extend(d.lingering);
    }
    Ok((mounted, owned, lingering))
}

fn reference(owned: &Owned) -> Ref {
    Ref {
        name: owned.name.clone(),
        id: owned.id.clone(),
    }
}

/// The versioned name of the registry's config file and its content.
pub(super) fn config_version(
    record: &str,
    deploy: &RegistryDeploy,
) -> Result<(String, String), Error> {
    let content = config_file(record, deploy);
    let name = versioned_name(
        &object_base(record, "config"),
        &digest_hex(content.as_bytes()),
    )
    .map_err(Error::Invalid)?;
    Ok((name, content))
}

/// Makes sure the config version the service mounts exists.
async fn ensure_config(
    ctx: &Context,
    key: &RecordKey,
    owner: &Owner,
    deploy: &RegistryDeploy,
    live: &[Config],
) -> Result<Ref, Error> {
    let (name, content) = config_version(&key.name, deploy)?;
    if let Some(c) = live.iter().find(|c| config_name(c) == Some(name.as_str())) {
        let id = c.id.clone().unwrap_or_default();
        return Ok(Ref { name, id });
    }
    let mut labels = ctx.docker.owner_labels(owner);
    labels.insert(SPEC_HASH.into(), digest_hex(content.as_bytes()));
    let id = ctx
        .docker
        .create_config(ConfigSpec {
            name: Some(name.clone()),
            labels: Some(labels),
            data: Some(base64::engine::general_purpose::STANDARD.encode(content)),
            templating: None,
        })
        .await?;
    ctx.event(key, false, "Created", format!("created config {name}"))
        .await;
    Ok(Ref { name, id })
}
