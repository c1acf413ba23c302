//! etcd: records, status, events, secrets, sources, watch with re-list, leader election.
//!
//! Everything lives under one prefix (default `/swarmkeeper`) with the layout
//! of DESIGN.md. Records are plain [`serde_json::Value`]s keyed by kind and
//! name, so this layer does not depend on the record types of `api`.
//!
//! # Layout
//! - [`records`]: desired records and their status, with compare-and-swap writes.
//! - [`events`]: the event log, on leases that expire it.
//! - [`secrets`]: sealed secret values and GitOps source bookkeeping.
//! - [`watch`]: list-then-watch of desired records that survives compaction and restarts.
//! - [`leader`]: leader election on `<prefix>/leader`, and the fence of a leader's writes.
//! - `txn.rs`: the one place writes go through, fenced when the store is.
//! - [`crypto`]: the operator's secret key: sealing values bound to their store key.
//! - [`keyring`]: the keys in use during a rotation, and the digest key.
//! - [`sealed`]: listing and compare-and-swap of sealed values, for key rotation; the digest key.

pub mod crypto;
mod error;
pub mod events;
pub mod keyring;
mod keys;
pub mod leader;
pub mod records;
pub mod sealed;
pub mod secrets;
mod txn;
pub mod watch;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, ConnectOptions, GetOptions, Identity, KeyValue, TlsOptions,
};

pub use crypto::{CryptoError, KeyId, SecretKey};
pub use error::StoreError;
pub use events::{Event, fold_events};
pub use keyring::{DigestKey, Keyring};
pub use leader::{Leadership, WriteFence};
pub use records::{Expect, PutOutcome, RecordPut, StoredRecord, Versioned};
pub use secrets::{RepoRef, SourceError, SourceRecord};
pub use watch::WatchEvent;

use keys::Keys;

/// How long connecting and the first request may take before a dead endpoint is reported.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const FIRST_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Bounds every unary request, so a hung etcd becomes an error instead of a stuck reconcile.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 pings detect a dead connection under a long-lived watch.
const KEEP_ALIVE: (Duration, Duration) = (Duration::from_secs(10), Duration::from_secs(5));
/// Keys per page when listing, at most. A page must also fit in one gRPC answer
/// (4 MiB for the client): [`Store::range`] halves the page when it does not.
const PAGE_SIZE: i64 = 256;

/// Where etcd is and how to authenticate to it.
#[derive(Clone)]
pub struct StoreConfig {
    /// `http://host:port` or `https://host:port` URLs.
    pub endpoints: Vec<String>,
    /// The key prefix everything lives under.
    pub prefix: String,
    /// CA bundle (PEM) to verify etcd's certificate.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), together with `key`.
    pub cert: Option<PathBuf>,
    /// Client private key (PEM), together with `cert`.
    pub key: Option<PathBuf>,
    /// etcd user for password authentication, together with `password_file`.
    pub user: Option<String>,
    /// A file holding the etcd user's password (a trailing newline is ignored).
    pub password_file: Option<PathBuf>,
    /// How long events are kept.
    pub event_ttl: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            endpoints: vec!["http://127.0.0.1:2379".to_owned()],
            prefix: "/swarmkeeper".to_owned(),
            ca: None,
            cert: None,
            key: None,
            user: None,
            password_file: None,
            event_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Paths only; the password itself is never held here.
        f.debug_struct("StoreConfig")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("user", &self.user)
            .field("password_file", &self.password_file)
            .field("event_ttl", &self.event_ttl)
            .finish()
    }
}

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    /// Set on a leader's store ([`Store::fenced`]): every write checks it.
    fence: Option<WriteFence>,
}

struct Inner {
    /// For unary requests, each bounded by [`REQUEST_TIMEOUT`].
    kv: Client,
    /// For watches, lease keep-alives and Campaign, which stay open for a
    /// long time and so must not carry a request timeout.
    streams: Client,
    keys: Keys,
    event_ttl: Duration,
    event_lease: events::LeaseCache,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("prefix", &self.inner.keys.prefix())
            .field("fenced", &self.fence.is_some())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connects to etcd and checks that it answers a read under the prefix.
    ///
    /// # Errors
    /// [`StoreError::ReadConfigFile`] or [`StoreError::Config`] for a bad
    /// configuration, [`StoreError::Connect`] when etcd refuses (including bad
    /// credentials), [`StoreError::ConnectTimeout`] when it does not answer
    /// within a few seconds.
    pub async fn connect(cfg: StoreConfig) -> Result<Store, StoreError> {
        if cfg.endpoints.is_empty() {
            return Err(StoreError::Config("no etcd endpoint given".to_owned()));
        }
        let endpoint = cfg.endpoints.join(",");
        let options = connect_options(&cfg)?;
        let keys = Keys::new(&cfg.prefix);
        let connect = async {
            let connect_err = |source| StoreError::Connect {
                endpoint: endpoint.clone(),
                source,
            };
            let mut kv = Client::connect(
                &cfg.endpoints,
                Some(options.clone().with_timeout(REQUEST_TIMEOUT)),
            )
            .await
            .map_err(connect_err)?;
            // The client connects lazily: only a request proves etcd is there.
            kv.get(
                keys.prefix(),
                Some(GetOptions::new().with_prefix().with_count_only()),
            )
            .await
            .map_err(connect_err)?;
            let streams = Client::connect(&cfg.endpoints, Some(options))
                .await
                .map_err(connect_err)?;
            Ok::<_, StoreError>((kv, streams))
        };
        let (kv, streams) = tokio::time::timeout(FIRST_ANSWER_TIMEOUT, connect)
            .await
            .map_err(|_| StoreError::ConnectTimeout {
                endpoint: endpoint.clone(),
                timeout: FIRST_ANSWER_TIMEOUT,
            })??;
        tracing::debug!(%endpoint, prefix = keys.prefix(), "connected to etcd");
        Ok(Store {
            inner: Arc::new(Inner {
                kv,
                streams,
                keys,
                event_ttl: cfg.event_ttl,
                event_lease: events::LeaseCache::default(),
            }),
            fence: None,
        })
    }

    /// The prefix every key lives under, without a trailing slash.
    pub fn prefix(&self) -> &str {
        self.inner.keys.prefix()
    }

    /// Counts the keys under the prefix: the cheapest read that proves etcd
    /// answers and lets this client read its prefix, for readiness checks.
    ///
    /// # Errors
    /// [`StoreError::Get`] when etcd does not answer (within the request
    /// timeout) or refuses the read.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let prefix = self.prefix();
        self.kv()
            .get(
                prefix,
                Some(GetOptions::new().with_prefix().with_count_only()),
            )
            .await
            .map(drop)
            .map_err(|source| StoreError::Get {
                key: prefix.to_owned(),
                source,
            })
    }

    /// The underlying etcd client, for tests that need raw access (compaction,
    /// lease inspection). Production code goes through the typed API.
    #[doc(hidden)]
    pub fn raw_client(&self) -> Client {
        self.inner.kv.clone()
    }

    fn kv(&self) -> Client {
        self.inner.kv.clone()
    }

    fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// All key-values under `prefix`, read page by page at one revision, and that revision.
    ///
    /// `revision` 0 reads the latest; `keys_only` skips values.
    ///
    /// Pages are sized by bytes as well as by keys: etcd takes values up to about
    /// 1.5 MiB (`--max-request-bytes`) but the client accepts answers of at most
    /// 4 MiB, so three large records made a page of 256 keys fail with "decoded
    /// message length too large", and with it every listing. A page refused so is
    /// asked again with half the keys, down to one (which always fits, being a single
    /// value etcd accepted); each page that fits lets the next one grow back.
    async fn range(
        &self,
        prefix: &str,
        revision: i64,
        keys_only: bool,
    ) -> Result<(Vec<KeyValue>, i64), etcd_client::Error> {
        let mut client = self.kv();
        let end = prefix_end(prefix);
        let mut from = prefix.as_bytes().to_vec();
        let mut at = revision;
        let mut limit = PAGE_SIZE;
        let mut out = Vec::new();
        loop {
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(limit)
                .with_revision(at);
            if keys_only {
                options = options.with_keys_only();
            }
            let mut resp = match client.get(from.clone(), Some(options)).await {
                Ok(resp) => resp,
                Err(err) if error::is_too_large(&err) && limit > 1 => {
                    limit /= 2;
                    tracing::debug!(prefix, limit, "listing page too large; halving it");
                    continue;
                }
                Err(err) => return Err(err),
            };
            if at == 0 {
                // Pin the following pages to the first page's revision.
                at = resp.header().map_or(0, |h| h.revision());
            }
            let more = resp.more();
            let kvs = resp.take_kvs();
            if let Some(last) = kvs.last() {
                from = last.key().to_vec();
                from.push(0);
            }
            out.extend(kvs);
            if !more {
                return Ok((out, at));
            }
            limit = (limit * 2).min(PAGE_SIZE);
        }
    }

    /// Compacts etcd's history up to `revision`. Meant for tests and maintenance.
    ///
    /// # Errors
    /// [`StoreError::Compact`] when etcd refuses.
    #[doc(hidden)]
    pub async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        self.kv()
            .compact(
                revision,
                Some(etcd_client::CompactionOptions::new().with_physical()),
            )
            .await
            .map(drop)
            .map_err(|source| StoreError::Compact { revision, source })
    }
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn read_config_file(what: &'static str, path: &Path) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|source| StoreError::ReadConfigFile {
        what,
        path: path.to_owned(),
        source,
    })
}

fn connect_options(cfg: &StoreConfig) -> Result<ConnectOptions, StoreError> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_keep_alive(KEEP_ALIVE.0, KEEP_ALIVE.1)
        .with_keep_alive_while_idle(true);
    match (&cfg.user, &cfg.password_file) {
        (Some(user), Some(file)) => {
            let password =
                String::from_utf8(read_config_file("etcd password", file)?).map_err(|_| {
                    StoreError::Config("the etcd password file is not UTF-8".to_owned())
                })?;
            options = options
                .with_user(user.clone(), password.trim_end_matches(['\r', '\n']))
                .with_auto_token_refresh(true);
        }
        (None, None) => {}
        _ => {
            return Err(StoreError::Config(
                "an etcd user needs a password file, and a password file needs a user".to_owned(),
            ));
        }
    }
    let mut tls = None;
    if let Some(ca) = &cfg.ca {
        let pem = read_config_file("etcd CA", ca)?;
        tls = Some(TlsOptions::new().ca_certificate(Certificate::from_pem(pem)));
    }
    match (&cfg.cert, &cfg.key) {
        (Some(cert), Some(key)) => {
            let identity = Identity::from_pem(
                read_config_file("etcd client certificate", cert)?,
                read_config_file("etcd client key", key)?,
            );
            tls = Some(tls.unwrap_or_default().identity(identity));
        }
        (None, None) => {}
        _ => {
            return Err(StoreError::Config(
                "an etcd client certificate and its key must be given together".to_owned(),
            ));
        }
    }
    if let Some(tls) = tls {
        options = options.with_tls(tls);
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end("/p/"), b"/p0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }

    #[test]
    fn user_without_password_file_is_a_config_error() {
        let cfg = StoreConfig {
            user: Some("root".into()),
            ..StoreConfig::default()
        };
        assert!(matches!(connect_options(&cfg), Err(StoreError::Config(_))));
    }

    #[tokio::test]
    async fn dead_endpoint_fails_fast_and_names_it() {
        // Port 1 on loopback refuses connections.
        let cfg = StoreConfig {
            endpoints: vec!["http://127.0.0.1:1".into()],
            ..StoreConfig::default()
        };
        let started = std::time::Instant::now();
        let err = Store::connect(cfg).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{:?}",
            started.elapsed()
        );
        assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
        assert!(err.is_transient());
    }
}
