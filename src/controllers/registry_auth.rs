//! Pulling from a Registry record's registry: the registry auth a service is
//! created and updated with, and the digest its image's tag points to, pinned
//! as `docker stack deploy` pins it. Used by the Stack reconciler, and by any
//! controller that runs images ([`auth_for_image`]).
//!
//! # Guarantees
//! - Only images whose registry (`host[:port]` before the first `/`) is a
//!   record's `address` get auth or are resolved; any other image is sent as
//!   written, without auth, as before.
//! - A resolution waits at most [`distribution::TIMEOUT`], and its answer is
//!   cached by image and tag ([`DigestCache`]); a registry that does not
//!   answer leaves the image unpinned, so the live service keeps the digest
//!   it is pinned to and convergence goes on.
//! - Credentials go only into the `X-Registry-Auth` header and the
//!   registry's `Authorization` header, never into a spec, log or status.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bollard::auth::DockerCredentials;

use super::{Context, Error};
use crate::api::registry::RegistrySpec;
use crate::api::{Kind, SecretValue, Spec};
use crate::distribution::{Basic, RegistryApi, RegistryError};
use crate::plan::registry::{PullAuth, pinned, registry_of, tag_to_resolve};

/// How long a resolved digest is used before the registry is asked again.
const FRESH: Duration = Duration::from_secs(30);
/// How long a failed resolution is remembered: a registry that is down is not
/// asked again by every service of every stack in the meantime.
const FAILED_FRESH: Duration = Duration::from_secs(10);

/// A Registry record that reads back.
pub struct Known {
    pub record: String,
    pub spec: RegistrySpec,
}

/// The Registry records in etcd; invalid ones are left out (their own status says why).
///
/// # Errors
/// When etcd fails.
pub async fn registries(ctx: &Context) -> Result<Vec<Known>, Error> {
    let (records, _) = ctx
        .store
        .list_records(Some(Kind::Registry.as_str()))
        .await?;
    Ok(records
        .into_iter()
        .filter_map(
            |r| match super::parse_record(r.versioned.value).ok()?.spec {
                Spec::Registry(spec) => Some(Known {
                    record: r.name,
                    spec,
                }),
                _ => None,
            },
        )
        .collect())
}

/// How to pull one image.
pub enum Pull<'a> {
    /// No record names the image's registry: no auth, no resolution.
    Unknown,
    /// The record describing the image's registry, with its user and password
    /// (`None` when it has no credentials).
    Known {
        known: &'a Known,
        user: Option<(String, SecretValue)>,
    },
    /// The password's Secret record has no value yet.
    Waiting(String),
}

impl Pull<'_> {
    /// The registry auth to send: anonymous for a record without credentials,
    /// which replaces an auth swarm kept from an earlier update.
    #[must_use]
    pub fn auth(&self) -> Option<PullAuth> {
        let Pull::Known { known, user } = self else {
            return None;
        };
        let password = user
            .as_ref()
            .map(|(u, p)| (u.as_str(), String::from_utf8_lossy(p.expose())));
        let user = password.as_ref().map(|(u, p)| (*u, p.as_ref()));
        Some(PullAuth::new(&known.spec.address, user))
    }
}

/// How `image` is pulled, given the Registry records.
///
/// # Errors
/// When etcd fails or the password does not open.
pub async fn pull_for<'a>(
    ctx: &Context,
    known: &'a [Known],
    image: &str,
) -> Result<Pull<'a>, Error> {
    let Some(registry) = registry_of(image) else {
        return Ok(Pull::Unknown);
    };
    let Some(found) = known.iter().find(|k| k.spec.address == registry) else {
        return Ok(Pull::Unknown);
    };
    let Some(credentials) = &found.spec.credentials else {
        return Ok(Pull::Known {
            known: found,
            user: None,
        });
    };
    match super::secret::current_value(ctx, &credentials.password_secret).await? {
        Some(password) => Ok(Pull::Known {
            known: found,
            user: Some((credentials.username.clone(), password)),
        }),
        None => Ok(Pull::Waiting(format!(
            "the password of Registry/{} (Secret/{})",
            found.record, credentials.password_secret
        ))),
    }
}

/// The registry auth to send when creating or updating a service that runs
/// `image`, for any controller that runs images.
///
/// - `None`: no Registry record names the image's registry; send no auth.
/// - `Some(credentials)`: send these (`X-Registry-Auth`). For a record
///   without credentials they are anonymous: dockerd keeps the auth of an
///   earlier update when an update carries none, and this replaces it.
///
/// bollard's [`DockerCredentials`] prints its password in `Debug`: never log it.
///
/// # Errors
/// When etcd fails, the password does not open, or (as [`Error::Invalid`])
/// the password's Secret record has no value yet.
pub async fn auth_for_image(
    ctx: &Context,
    image: &str,
) -> Result<Option<DockerCredentials>, Error> {
    let known = registries(ctx).await?;
    match pull_for(ctx, &known, image).await? {
        Pull::Waiting(what) => Err(Error::Invalid(format!("waiting for {what}"))),
        pull => Ok(pull.auth().map(|a| a.0)),
    }
}

/// Whether a registry address is on the loopback interface, where docker
/// speaks plain HTTP without being told to.
fn is_loopback(address: &str) -> bool {
    let host = match address.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => host,
        _ => address,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The API of a record's registry: HTTPS when it is deployed with TLS (trusting
/// its certificate) or not deployed by us and not on loopback, plain HTTP otherwise.
///
/// # Errors
/// When etcd fails or the certificate does not open; a certificate that is
/// not PEM is a [`RegistryError`] inside.
pub async fn api_for(
    ctx: &Context,
    spec: &RegistrySpec,
) -> Result<Result<RegistryApi, RegistryError>, Error> {
    let tls = spec.deploy.as_ref().and_then(|d| d.tls.as_ref());
    let https = match &spec.deploy {
        Some(_) => tls.is_some(),
        None => !is_loopback(&spec.address),
    };
    let ca = match tls {
        Some(tls) => super::secret::current_value(ctx, &tls.certificate_secret).await?,
        None => None,
    };
    Ok(RegistryApi::new(
        &spec.address,
        https,
        ca.as_ref().map(SecretValue::expose),
    ))
}

/// Digests resolved recently, by image reference (registry, repository and tag).
#[derive(Default)]
pub struct DigestCache {
    entries: Mutex<HashMap<String, (Instant, Option<String>)>>,
}

impl DigestCache {
    fn get(&self, image: &str) -> Option<Option<String>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (at, digest) = entries.get(image)?;
        let fresh = if digest.is_some() {
            FRESH
        } else {
            FAILED_FRESH
        };
        (at.elapsed() < fresh).then(|| digest.clone())
    }

    fn put(&self, image: &str, digest: Option<String>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, (at, _)| at.elapsed() < FRESH);
        entries.insert(image.to_owned(), (Instant::now(), digest));
    }
}

/// `image` pinned to the digest its tag points to now; `None` when it is not
/// resolvable here (pinned already) or the registry did not answer.
async fn resolve(ctx: &Context, pull: &Pull<'_>, image: &str) -> Option<String> {
    let Pull::Known { known, user } = pull else {
        return None;
    };
    let (_, repository, tag) = tag_to_resolve(image)?;
    if let Some(cached) = ctx.digests.get(image) {
        return cached.map(|d| pinned(image, &d));
    }
    let basic = user
        .as_ref()
        .map(|(username, password)| Basic { username, password });
    let digest = match api_for(ctx, &known.spec).await {
        Ok(Ok(api)) => api.digest(repository, tag, basic.as_ref()).await,
        Ok(Err(err)) => Err(err),
        Err(err) => {
            tracing::debug!(image, %err, "cannot resolve the image's digest");
            return None;
        }
    };
    let digest = match digest {
        Ok(digest) => Some(digest),
        Err(err) => {
            // Not an error of the stack: the service keeps the digest it has.
            tracing::debug!(image, registry = %known.record, %err, "cannot resolve the image's digest");
            None
        }
    };
    ctx.digests.put(image, digest.clone());
    digest.map(|d| pinned(image, &d))
}

/// What the services of one stack pull, by service name.
#[derive(Debug, Default)]
pub struct Pulls {
    pub auth: BTreeMap<String, PullAuth>,
    /// Images pinned to the digest their tag points to now.
    pub images: BTreeMap<String, String>,
    /// What a service's auth waits for.
    pub waits: Vec<String>,
}

/// Auth and pinned images for `services` (name and image), resolved concurrently,
/// so a registry that does not answer costs one timeout, not one per service.
///
/// # Errors
/// When etcd fails or a password does not open.
pub async fn pulls(ctx: &Context, services: &[(String, String)]) -> Result<Pulls, Error> {
    let mut out = Pulls::default();
    if !services
        .iter()
        .any(|(_, image)| registry_of(image).is_some())
    {
        return Ok(out);
    }
    let known = registries(ctx).await?;
    let mut found = Vec::new();
    for (service, image) in services {
        match pull_for(ctx, &known, image).await? {
            Pull::Unknown => {}
            Pull::Waiting(what) => out.waits.push(what),
            pull => found.push((service, image, pull)),
        }
    }
    let resolved = futures::future::join_all(
        found
            .iter()
            .map(|(_, image, pull)| resolve(ctx, pull, image)),
    )
    .await;
    for ((service, _, pull), image) in found.iter().zip(resolved) {
        if let Some(auth) = pull.auth() {
            out.auth.insert((*service).clone(), auth);
        }
        if let Some(image) = image {
            out.images.insert((*service).clone(), image);
        }
    }
    out.waits.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_speak_plain_http() {
        for (address, loopback) in [
            ("127.0.0.1:5000", true),
            ("localhost:5000", true),
            ("[::1]:5000", true),
            ("[::1]", true),
            ("127.0.0.1", true),
            ("registry.example.com:5000", false),
            ("10.0.0.1:5000", false),
        ] {
            assert_eq!(is_loopback(address), loopback, "{address}");
        }
    }

    #[test]
    fn failed_resolutions_are_remembered_for_less_time() {
        let cache = DigestCache::default();
        cache.put("r:1/a:1", Some("sha256:ab".into()));
        cache.put("r:1/b:1", None);
        assert_eq!(cache.get("r:1/a:1"), Some(Some("sha256:ab".into())));
        assert_eq!(cache.get("r:1/b:1"), Some(None));
        assert_eq!(cache.get("r:1/c:1"), None);
        let old = Instant::now() - FAILED_FRESH - Duration::from_secs(1);
        cache.entries.lock().unwrap().get_mut("r:1/b:1").unwrap().0 = old;
        cache.entries.lock().unwrap().get_mut("r:1/a:1").unwrap().0 = old;
        assert_eq!(cache.get("r:1/b:1"), None);
        assert_eq!(cache.get("r:1/a:1"), Some(Some("sha256:ab".into())));
    }
}
