//! Following one branch of a repository: on each new commit, the records
//! under a path are applied as `apply --source NAME --prune --commit <sha>` does.
//!
//! # Expected flow
//! Every interval, or at once when a push webhook wakes it: fetch the
//! branch's tip; if the source already applied it (or refused it as
//! invalid), nothing more happens, no write at all. Else check the commit
//! out, validate every record under the path, and apply them.
//!
//! # Guarantees
//! - A commit with an invalid record is rejected whole: nothing of it is
//!   written, the last good commit stays applied, and the source's status and
//!   a `Rejected` event name the commit, the file and the field. It is not
//!   tried again; the next commit is.
//! - A fetch that fails, or records another source owns, are retried at the
//!   next interval; the status and a `SyncFailed` event say why.
//! - Messages name files relative to the repository and never hold a
//!   credential ([`super::git::scrub`]).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use super::git::{GitAuth, Mirror, is_valid_branch};
use crate::cli::Failure;
use crate::cli::apply::{ApplyOpts, apply_loaded, load};
use crate::notify::{Notifier, Transition, What};
use crate::runtime::{Phase, Shutdown};
use crate::store::{Event, Keyring, RepoRef, SourceError, SourceRecord, Store, StoreError};

/// The pseudo-kind a source's events are filed under: `events Source/<name>`.
pub const SOURCE_KIND: &str = "Source";

/// What one sync follows.
#[derive(Debug, Clone)]
pub struct SyncSpec {
    /// The source name its records are applied under.
    pub source: String,
    pub repo: String,
    pub branch: String,
    /// The folder of records, relative to the repository's root.
    pub path: String,
    pub interval: Duration,
    pub auth: GitAuth,
    /// The push webhook's secret (`POST /hooks/git/<source>` under `run`).
    pub webhook_secret_file: Option<PathBuf>,
    /// Where the repository is mirrored; a folder under the temp dir by default.
    pub cache_dir: Option<PathBuf>,
}

impl SyncSpec {
    /// A sync of `repo`'s `main` branch, root folder, every 30 s.
    pub fn new(source: &str, repo: &str) -> Self {
        Self {
            source: source.to_owned(),
            repo: repo.to_owned(),
            branch: "main".to_owned(),
            path: ".".to_owned(),
            interval: Duration::from_secs(30),
            auth: GitAuth::default(),
            webhook_secret_file: None,
            cache_dir: None,
        }
    }

    /// Parses `run --sync`'s value: comma-separated `key=value` pairs, with
    /// `source`, `repo` and `path` required and `branch`, `interval`,
    /// `token-file`, `username`, `ssh-key-file`, `known-hosts-file`,
    /// `webhook-secret-file` and `cache-dir` optional.
    ///
    /// # Errors
    /// An unknown or missing key, or a bad value, named.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut pairs = Vec::new();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected key=value"))?;
            pairs.push((key.trim(), value.trim()));
        }
        let get = |k: &str| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let (Some(source), Some(repo), Some(_)) = (get("source"), get("repo"), get("path")) else {
            return Err("source=NAME, repo=URL and path=DIR are required".into());
        };
        let mut spec = Self::new(source, repo);
        for (key, value) in &pairs {
            let path = || Some(PathBuf::from(value));
            match *key {
                "source" | "repo" => {}
                "branch" => spec.branch = (*value).to_owned(),
                "path" => spec.path = (*value).to_owned(),
                "interval" => spec.interval = parse_interval(value)?,
                "token-file" => spec.auth.token_file = path(),
                "username" => spec.auth.username = Some((*value).to_owned()),
                "ssh-key-file" => spec.auth.ssh_key_file = path(),
                "known-hosts-file" => spec.auth.known_hosts_file = path(),
                "webhook-secret-file" => spec.webhook_secret_file = path(),
                "cache-dir" => spec.cache_dir = path(),
                other => return Err(format!("unknown key {other:?}")),
            }
        }
        spec.validate()?;
        Ok(spec)
    }

    /// Checks the names and the path.
    ///
    /// # Errors
    /// What is wrong, named.
    pub fn validate(&self) -> Result<(), String> {
        if !crate::api::is_valid_name(&self.source) {
            return Err(format!(
                "source {:?} is not a valid name ({})",
                self.source,
                crate::api::NAME_PATTERN
            ));
        }
        if !is_valid_branch(&self.branch) {
            return Err(format!(
                "branch {:?} is not a plain branch name",
                self.branch
            ));
        }
        let path = Path::new(&self.path);
        if path.is_absolute() || path.components().any(|c| c.as_os_str() == "..") {
            return Err(format!(
                "path {:?} must stay inside the repository",
                self.path
            ));
        }
        if self.interval.is_zero() {
            return Err("interval must be longer than zero".into());
        }
        Ok(())
    }
}

/// An interval in Go's duration syntax (`30s`, `5m`).
///
/// # Errors
/// A malformed, negative or zero duration.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let nanos = crate::api::compose::parse_go_duration(s)?;
    match u64::try_from(nanos) {
        Ok(0) => Err(format!("interval {s:?} must be longer than zero")),
        Ok(n) => Ok(Duration::from_nanos(n)),
        Err(_) => Err(format!("interval {s:?} must not be negative")),
    }
}

/// What one sync pass did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The branch's tip was applied (or refused as invalid) before: nothing written.
    UpToDate { commit: String },
    /// The commit's records are applied; a line per record.
    Applied { commit: String, lines: Vec<String> },
    /// Nothing written; `invalid` when the commit's records are invalid,
    /// `again` when this commit was refused so before (and nothing is recorded).
    Refused {
        commit: Option<String>,
        message: String,
        invalid: bool,
        again: bool,
    },
}

/// One source's sync.
pub struct Syncer {
    spec: SyncSpec,
    mirror: Mirror,
    notifier: Notifier,
    /// The source's last event, to fold a repeated failure into it.
    last_event: Mutex<Option<(String, Event)>>,
}

impl Syncer {
    /// A sync of `spec` for the store under `prefix`, notifying through `notifier`.
    pub fn new(spec: SyncSpec, prefix: &str, notifier: Notifier) -> Self {
        // One folder per prefix, source and repository: two installations on
        // one host never share a checkout.
        let id = Sha256::digest(format!("{prefix}\0{}\0{}", spec.source, spec.repo));
        let dir = spec
            .cache_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("swarmkeeper-git"))
            .join(format!("{}-{}", spec.source, &hex::encode(id)[..16]));
        let mirror = Mirror::new(
            dir,
            spec.repo.clone(),
            spec.branch.clone(),
            spec.auth.clone(),
        );
        Self {
            spec,
            mirror,
            notifier,
            last_event: Mutex::new(None),
        }
    }

    pub fn spec(&self) -> &SyncSpec {
        &self.spec
    }

    fn repo_ref(&self) -> RepoRef {
        RepoRef {
            url: self.mirror.display_url(),
            branch: self.spec.branch.clone(),
            path: self.spec.path.clone(),
        }
    }

    /// Polls every interval, and at once when `wake` is notified, until `stop` drains.
    pub async fn run(&self, store: &Store, keys: Option<Keyring>, wake: &Notify, stop: &Shutdown) {
        let source = self.spec.source.as_str();
        loop {
            match self.sync_once(store, keys.clone()).await {
                Ok(Outcome::Applied { commit, lines }) => {
                    tracing::info!(source, commit, records = lines.len(), "applied a commit");
                }
                Ok(Outcome::UpToDate { .. } | Outcome::Refused { again: true, .. }) => {}
                Ok(Outcome::Refused {
                    commit, message, ..
                }) => {
                    tracing::warn!(source, commit, message, "commit not applied");
                }
                Err(err) => {
                    tracing::warn!(source, %err, "sync failed; retrying at the next interval")
                }
            }
            tokio::select! {
                () = tokio::time::sleep(self.spec.interval) => {}
                () = wake.notified() => tracing::info!(source, "push webhook: fetching now"),
                () = stop.reached(Phase::Draining) => return,
            }
        }
    }

    /// One pass: fetch, and apply the tip unless it was applied (or refused) before.
    ///
    /// # Errors
    /// etcd failures while reading or recording the outcome.
    pub async fn sync_once(
        &self,
        store: &Store,
        keys: Option<Keyring>,
    ) -> Result<Outcome, StoreError> {
        let name = &self.spec.source;
        let previous = store
            .get_source(name)
            .await?
            .unwrap_or_else(SourceRecord::empty);
        let commit = match self.mirror.fetch().await {
            Ok(commit) => commit,
            Err(err) => {
                return self
                    .refuse(store, &previous, None, err.to_string(), false)
                    .await;
            }
        };
        if previous.seen.as_deref() == Some(commit.as_str()) {
            match &previous.error {
                None if previous.commit.as_deref() == Some(commit.as_str()) => {
                    return Ok(Outcome::UpToDate { commit });
                }
                // The same records would be refused the same way: not tried again.
                Some(e) if e.invalid && e.commit.as_deref() == Some(commit.as_str()) => {
                    return Ok(Outcome::Refused {
                        commit: Some(commit),
                        message: e.message.clone(),
                        invalid: true,
                        again: true,
                    });
                }
                _ => {}
            }
        }
        let root = match self.mirror.checkout(&commit).await {
            Ok(root) => root.to_path_buf(),
            Err(err) => {
                let message = err.to_string();
                return self
                    .refuse(store, &previous, Some(&commit), message, false)
                    .await;
            }
        };
        let applied = match load(&[root.join(&self.spec.path)]) {
            Ok(loaded) => {
                let opts = ApplyOpts {
                    files: Vec::new(),
                    source: Some(name.clone()),
                    prune: true,
                    commit: Some(commit.clone()),
                    dry_run: false,
                    force: false,
                    repo: Some(self.repo_ref()),
                };
                apply_loaded(store, keys, &loaded, &opts).await
            }
            Err(failure) => Err(failure),
        };
        match applied {
            Ok(lines) => {
                let changed = lines.iter().filter(|l| !l.ends_with(" unchanged")).count();
                let message = format!(
                    "applied commit {commit}: {changed} of {} records changed",
                    lines.len()
                );
                self.event(store, false, "Applied", message).await;
                if let Some(error) = &previous.error {
                    let message = format!("commit {commit} applied after: {}", error.message);
                    self.notifier.notify(Transition::new(
                        self.subject(),
                        What::SyncRecovered,
                        message,
                    ));
                }
                Ok(Outcome::Applied { commit, lines })
            }
            Err(failure) => {
                let invalid = matches!(failure, Failure::Invalid(_));
                // Files are named as in the repository, not in the local checkout.
                let checkout = format!("{}/", root.display());
                let message = failure.to_string().replace(&checkout, "");
                let message = message
                    .strip_prefix("error: ")
                    .unwrap_or(&message)
                    .to_owned();
                self.refuse(store, &previous, Some(&commit), message, invalid)
                    .await
            }
        }
    }

    fn subject(&self) -> String {
        format!("{SOURCE_KIND}/{}", self.spec.source)
    }

    /// Records why `commit` (or the fetch) is not applied: the source's status
    /// (written only when it says something new), an event and a notification
    /// when the source was fine before.
    async fn refuse(
        &self,
        store: &Store,
        previous: &SourceRecord,
        commit: Option<&str>,
        message: String,
        invalid: bool,
    ) -> Result<Outcome, StoreError> {
        let commit = commit.map(str::to_owned);
        let repeated = previous
            .error
            .as_ref()
            .is_some_and(|e| e.commit == commit && e.message == message);
        if !repeated {
            let record = SourceRecord {
                seen: commit.clone().or_else(|| previous.seen.clone()),
                error: Some(SourceError {
                    commit: commit.clone(),
                    message: message.clone(),
                    at: jiff::Timestamp::now(),
                    invalid,
                }),
                repo: Some(self.repo_ref()),
                ..previous.clone()
            };
            store.put_source(&self.spec.source, &record).await?;
        }
        let (reason, text) = match &commit {
            Some(c) if invalid => ("Rejected", format!("commit {c} rejected: {message}")),
            Some(c) => ("SyncFailed", format!("commit {c} not applied: {message}")),
            None => ("SyncFailed", message.clone()),
        };
        self.event(store, true, reason, text.clone()).await;
        if previous.error.is_none() {
            self.notifier
                .notify(Transition::new(self.subject(), What::SyncFailing, text));
        }
        Ok(Outcome::Refused {
            commit,
            message,
            invalid,
            again: false,
        })
    }

    /// Writes an event of the source, folding a repeat into the last one.
    async fn event(&self, store: &Store, warning: bool, reason: &str, message: String) {
        let message = crate::text::truncate(&message, crate::text::MESSAGE_LIMIT).into_owned();
        let event = if warning {
            Event::warning(reason, message)
        } else {
            Event::normal(reason, message)
        };
        let previous = self
            .last_event
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let name = &self.spec.source;
        let written = store
            .put_or_fold_event(SOURCE_KIND, name, previous, event)
            .await;
        match written {
            Ok(last) => {
                *self
                    .last_event
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(last);
            }
            Err(err) => tracing::warn!(source = %name, %err, "could not record an event"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_value_parses_with_defaults_and_names_what_is_wrong() {
        let spec = SyncSpec::parse(
            "source=prod,repo=https://git.example/r.git,path=desired,interval=1m,token-file=/t",
        )
        .unwrap();
        assert_eq!(spec.branch, "main");
        assert_eq!(spec.path, "desired");
        assert_eq!(spec.interval, Duration::from_secs(60));
        assert_eq!(spec.auth.token_file, Some(PathBuf::from("/t")));
        let err = |s: &str| SyncSpec::parse(s).unwrap_err();
        assert!(err("repo=x").contains("required"));
        assert!(err("source=a,repo=x").contains("required"));
        assert!(err("source=a,repo=x,path=.,colour=red").contains("colour"));
        assert!(err("source=a,repo=x,path=../up").contains("inside"));
        assert!(err("source=a,repo=x,path=.,branch=-x").contains("branch"));
        assert!(err("source=a,repo=x,path=.,interval=0s").contains("longer than zero"));
        assert!(err("source=A B,repo=x,path=.").contains("not a valid name"));
    }
}
