//! Swarm secrets delivered by a record (a Secret record's value, a
//! DatabaseUser's password and connection string): one immutable version per
//! content, named after its keyed digest, the others removed once no service
//! uses them. Stacks name such a secret by its logical name as `external`.

use std::collections::HashMap;

use base64::Engine as _;
use bollard::models::{Secret, SecretSpec as SwarmSecretSpec};

use super::status::Owned;
use super::{Context, Error, RecordKey};
use crate::api::SecretValue;
use crate::docker::labels::{Owner, SPEC_HASH};
use crate::plan::drift::{ObjectDrift, ObjectState};
use crate::plan::stack::{secret_name, versioned_name};

/// The label naming the logical secret a version delivers.
pub const LOGICAL: &str = "swarmkeeper.secret";

/// What delivering one logical secret left: the current version, and the
/// older ones still in use.
pub struct Delivered {
    pub owned: Owned,
    pub lingering: Vec<ObjectDrift>,
}

/// The versions among `live` that deliver `logical`.
pub fn versions_of<'a>(live: &'a [Secret], logical: &str) -> Vec<&'a Secret> {
    live.iter()
        .filter(|s| {
            let labels = s.spec.as_ref().and_then(|spec| spec.labels.as_ref());
            labels.and_then(|l| l.get(LOGICAL)).map(String::as_str) == Some(logical)
        })
        .collect()
}

/// The swarm secret (name, ID) a service uses for the logical secret `name`: the newest
/// version a record delivers (labelled with the logical name among `delivered`, all
/// managed secrets; a Secret record's older ones only by owner), else a secret of that
/// exact name made by hand; `None` while there is neither.
///
/// # Errors
/// When dockerd fails.
pub async fn current_secret(
    ctx: &Context,
    name: &str,
    delivered: &[Secret],
) -> Result<Option<(String, String)>, Error> {
    let mut versions = ctx
        .docker
        .list_secrets(Some(&Owner::new("Secret", name)))
        .await?;
    versions.extend(versions_of(delivered, name).into_iter().cloned());
    if let Some(s) = super::secret::newest(&versions) {
        let versioned = s
            .spec
            .as_ref()
            .and_then(|s| s.name.clone())
            .unwrap_or_default();
        return Ok(Some((versioned, s.id.clone().unwrap_or_default())));
    }
    Ok(ctx
        .docker
        .secret_by_name(name)
        .await?
        .map(|s| (name.to_owned(), s.id.unwrap_or_default())))
}

/// Makes `content` the current version of `logical` for `owner` (`live` are
/// the versions it has now), and removes the others once unused.
///
/// # Errors
/// When dockerd fails, or the versioned name would be too long ([`Error::Invalid`]).
pub async fn deliver(
    ctx: &Context,
    key: &RecordKey,
    owner: &Owner,
    logical: &str,
    content: &SecretValue,
    labels: HashMap<String, String>,
    live: &[&Secret],
) -> Result<Delivered, Error> {
    let digest = ctx
        .keyring
        .as_ref()
        .map(|k| k.digest(content.expose()))
        .unwrap_or_default();
    let content = || std::future::ready(Ok(content.clone()));
    deliver_digested(ctx, key, owner, logical, &digest, content, labels, live).await
}

/// As [`deliver`], for content whose bytes differ each time they are made (an
/// htpasswd file's salts): the version is named after `digest`, a keyed digest
/// of what the content is made from, and `content` runs only to create it.
///
/// # Errors
/// As [`deliver`], and whatever `content` fails with.
#[allow(clippy::too_many_arguments)]
pub async fn deliver_digested<F>(
    ctx: &Context,
    key: &RecordKey,
    owner: &Owner,
    logical: &str,
    digest: &str,
    content: impl FnOnce() -> F,
    labels: HashMap<String, String>,
    live: &[&Secret],
) -> Result<Delivered, Error>
where
    F: std::future::Future<Output = Result<SecretValue, Error>>,
{
    let digest = digest.to_owned();
    let versioned = versioned_name(logical, &digest).map_err(Error::Invalid)?;
    let id = match live
        .iter()
        .find(|s| secret_name(s) == Some(versioned.as_str()))
    {
        Some(s) => s.id.clone().unwrap_or_default(),
        None => {
            let mut labels = labels;
            labels.extend(ctx.docker.owner_labels(owner));
            labels.insert(SPEC_HASH.into(), digest);
            labels.insert(LOGICAL.into(), logical.to_owned());
            let data = base64::engine::general_purpose::STANDARD.encode(content().await?.expose());
            let created = ctx
                .docker
                .create_secret(SwarmSecretSpec {
                    name: Some(versioned.clone()),
                    labels: Some(labels),
                    data: Some(data),
                    ..Default::default()
                })
                .await?;
            let message = format!("created secret version {versioned}");
            ctx.event(key, false, "Created", message).await;
            created
        }
    };
    let older: Vec<&Secret> = live
        .iter()
        .copied()
        .filter(|s| secret_name(s) != Some(versioned.as_str()))
        .collect();
    let lingering = remove_versions(ctx, key, &older).await?;
    let owned = Owned {
        object: "secret".into(),
        name: versioned,
        id,
    };
    Ok(Delivered { owned, lingering })
}

/// Removes `versions`; returns those still in use, which stay as orphans
/// until the services using them move on.
///
/// # Errors
/// When dockerd refuses a removal for another reason than use.
pub async fn remove_versions(
    ctx: &Context,
    key: &RecordKey,
    versions: &[&Secret],
) -> Result<Vec<ObjectDrift>, Error> {
    let mut lingering = Vec::new();
    for s in versions {
        let name = secret_name(s).unwrap_or_default();
        match ctx
            .docker
            .remove_secret(s.id.as_deref().unwrap_or_default())
            .await
        {
            Ok(()) => {
                let msg = format!("removed secret version {name}");
                ctx.event(key, false, "Removed", msg).await;
            }
            Err(err) if err.is_in_use() || err.is_transient() => lingering.push(ObjectDrift {
                object: "secret".into(),
                name: name.to_owned(),
                state: ObjectState::Orphan,
                fields: Vec::new(),
            }),
            Err(err) => return Err(err.into()),
        }
    }
    Ok(lingering)
}
