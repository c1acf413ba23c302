//! The commands behind the command line: each takes parsed options, talks to
//! etcd and the swarm through [`crate::store`] and [`crate::docker`], and
//! prints through [`crate::report`]. `main.rs` only parses flags.

pub mod apply;
pub mod backup;
pub mod diff;
pub mod drift;
pub mod get;
pub mod key;
pub mod registry;
pub mod run;
pub mod secret;
mod sources;
pub mod sync;

use std::path::{Path, PathBuf};

use crate::api::Kind;
use crate::controllers::Context;
use crate::docker::Docker;
use crate::store::{Keyring, SecretKey, Store, StoreConfig};

/// Options every command shares.
#[derive(Debug, Clone)]
pub struct GlobalOpts {
    pub etcd_endpoints: Vec<String>,
    pub prefix: String,
    pub etcd_ca: Option<PathBuf>,
    pub etcd_cert: Option<PathBuf>,
    pub etcd_key: Option<PathBuf>,
    pub etcd_user: Option<String>,
    pub etcd_password_file: Option<PathBuf>,
    pub secret_key_file: Option<PathBuf>,
    /// The key being rotated away from: it still opens values, never seals.
    pub previous_secret_key_file: Option<PathBuf>,
}

/// How `get` prints records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Yaml,
    Json,
    /// The table with each record's GitOps source and commit, and a column of
    /// kind-specific detail.
    Wide,
}

/// Why a command failed, and so its exit code.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Bad usage or invalid records: exit 64, nothing written.
    #[error("{0}")]
    Invalid(String),
    /// Anything else: exit 1.
    #[error("error: {0}")]
    Error(String),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Invalid(_) => 64,
            Failure::Error(_) => 1,
        }
    }

    pub fn error(e: impl std::fmt::Display) -> Self {
        Failure::Error(e.to_string())
    }
}

impl GlobalOpts {
    /// Connects to etcd with the configured endpoints, TLS and credentials.
    ///
    /// # Errors
    /// When no endpoint answers.
    pub async fn store(&self) -> Result<Store, Failure> {
        let cfg = StoreConfig {
            endpoints: self.etcd_endpoints.clone(),
            prefix: self.prefix.clone(),
            ca: self.etcd_ca.clone(),
            cert: self.etcd_cert.clone(),
            key: self.etcd_key.clone(),
            user: self.etcd_user.clone(),
            password_file: self.etcd_password_file.clone(),
            ..StoreConfig::default()
        };
        Store::connect(cfg).await.map_err(Failure::error)
    }

    /// Loads the secret keys, when configured: the current key, and the
    /// previous one during a rotation. The digest key is not read here (see
    /// [`GlobalOpts::keyring`]).
    ///
    /// # Errors
    /// When a file cannot be read or does not hold a 32-byte key, or a
    /// previous key is given without a current one: bad usage (exit 64).
    pub fn key_files(&self) -> Result<Option<Keyring>, Failure> {
        let load = |flag: &str, path: &Path| {
            SecretKey::from_file(path).map_err(|e| Failure::Invalid(format!("error: {flag}: {e}")))
        };
        let previous = self
            .previous_secret_key_file
            .as_deref()
            .map(|p| load("--previous-secret-key-file", p))
            .transpose()?;
        match (&self.secret_key_file, previous) {
            (Some(current), previous) => Ok(Some(Keyring::new(
                load("--secret-key-file", current)?,
                previous,
            ))),
            (None, None) => Ok(None),
            (None, Some(_)) => Err(Failure::Invalid(
                "error: --previous-secret-key-file needs --secret-key-file (the key values are sealed with from now on)"
                    .into(),
            )),
        }
    }

    /// The keyring with the digest key read from `store`; with `create`, the
    /// digest key is stored first if it is not yet (commands that store digests).
    ///
    /// # Errors
    /// As [`GlobalOpts::key_files`]; etcd failures, or a stored digest key
    /// that does not open with these keys (exit 1).
    pub async fn keyring(&self, store: &Store, create: bool) -> Result<Option<Keyring>, Failure> {
        with_digest_key(store, self.key_files()?, create).await
    }

    /// What a one-shot command reads the cluster through: the store, the
    /// keyring and dockerd scoped to the prefix. `needs_key` names a command
    /// that cannot work without the secret key (exit 64 when it is not given).
    ///
    /// # Errors
    /// As [`GlobalOpts::keyring`]; the key missing for `needs_key` (exit 64);
    /// dockerd unreachable (exit 1).
    pub async fn context(&self, needs_key: Option<&str>) -> Result<Context, Failure> {
        let store = self.store().await?;
        let keyring = self.keyring(&store, false).await?;
        if let (Some(command), None) = (needs_key, &keyring) {
            return Err(Failure::Invalid(format!(
                "error: {command} needs the secret key (--secret-key-file)"
            )));
        }
        let docker = Docker::connect()
            .await
            .map_err(Failure::error)?
            .scoped(&self.prefix);
        Ok(Context::new(
            store,
            docker,
            keyring,
            std::time::Duration::from_secs(300),
        ))
    }
}

/// `keys` with the digest key read from `store` (see [`GlobalOpts::keyring`]).
///
/// # Errors
/// etcd failures, or a stored digest key that does not open with these keys (exit 1).
pub async fn with_digest_key(
    store: &Store,
    keys: Option<Keyring>,
    create: bool,
) -> Result<Option<Keyring>, Failure> {
    let Some(keyring) = keys else {
        return Ok(None);
    };
    let digest = store
        .digest_key(&keyring, create)
        .await
        .map_err(|e| Failure::Error(format!("the digest key: {e}")))?;
    Ok(Some(keyring.with_digest_key(digest)))
}

/// Parses a KIND argument the way kubectl does (case-insensitive, plural allowed).
///
/// # Errors
/// An unknown kind is bad usage.
pub fn parse_kind(s: &str) -> Result<Kind, Failure> {
    s.parse::<Kind>().map_err(|_| {
        let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        Failure::Invalid(format!(
            "error: unknown kind {s:?} (one of {})",
            kinds.join(", ")
        ))
    })
}

/// Writes the JSON Schema of every kind into `out`.
///
/// # Errors
/// When the folder cannot be written.
pub fn schema(out: &Path) -> Result<u8, Failure> {
    let written = crate::api::schema::write_all(out).map_err(Failure::error)?;
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(0)
}

/// Text or JSON logs on stderr, filtered by `RUST_LOG` (default `info`);
/// bollard logs through `log`, which the subscriber bridges.
pub fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // bollard logs request bodies at debug, and a secret's body holds its value;
    // the database drivers log statements, and a password's verifier is in one:
    // capped whatever RUST_LOG says.
    let quiet = std::iter::once(crate::docker::QUIET_BOLLARD_DIRECTIVE)
        .chain(crate::db::QUIET_DRIVER_DIRECTIVES)
        .chain(std::iter::once(crate::notify::QUIET_CLIENT_DIRECTIVE));
    let filter = quiet.fold(filter, |filter, directive| match directive.parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
