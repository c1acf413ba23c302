//! A local mirror of one branch of a Git repository, driven through the git CLI.
//!
//! # Guarantees
//! - No credential is ever on a command line: the repository URL and the
//!   credential helper reach git as configuration in its environment
//!   (`GIT_CONFIG_COUNT`, git ≥ 2.31), an HTTPS token is read from its file by
//!   that helper at the moment git asks for it, and an SSH key is named by
//!   path in `GIT_SSH_COMMAND`.
//! - No credential is ever in a message: git's output loses the user info of
//!   every URL it quotes and any occurrence of the token before it becomes an
//!   error ([`scrub`]).
//! - git never prompts (`GIT_TERMINAL_PROMPT=0`, ssh in batch mode) and each
//!   command is bounded by [`GIT_TIMEOUT`], so a hung remote is an error, not a
//!   stuck sync.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;

/// How long one git command may take (a fetch of a large repository included).
pub const GIT_TIMEOUT: Duration = Duration::from_secs(120);

/// The ref the mirrored branch is fetched into.
const MIRROR_REF: &str = "refs/remotes/origin/sync";

/// How git authenticates to the repository; every secret is a file.
#[derive(Debug, Clone, Default)]
pub struct GitAuth {
    /// A private SSH key, for `ssh://` and `git@host:` URLs.
    pub ssh_key_file: Option<PathBuf>,
    /// The host keys ssh accepts; without it, a host's key is learnt on first use.
    pub known_hosts_file: Option<PathBuf>,
    /// A token sent as the password of HTTPS basic authentication.
    pub token_file: Option<PathBuf>,
    /// The user name sent with the token (`x-access-token` when unset, which
    /// GitHub, Gitea and GitLab accept with a token).
    pub username: Option<String>,
}

impl GitAuth {
    /// The ssh command git runs: never prompting, with the key and the host
    /// keys by path (the key's content never leaves its file).
    fn ssh_command(&self) -> String {
        let mut ssh = String::from("ssh -o BatchMode=yes");
        if let Some(key) = &self.ssh_key_file {
            ssh.push_str(&format!(" -i {} -o IdentitiesOnly=yes", shell_quote(key)));
        }
        match &self.known_hosts_file {
            Some(hosts) => ssh.push_str(&format!(
                " -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes",
                shell_quote(hosts)
            )),
            None => ssh.push_str(" -o StrictHostKeyChecking=accept-new"),
        }
        ssh
    }
}

/// A git command that failed, with its output scrubbed of credentials.
#[derive(Debug, thiserror::Error)]
#[error("git {action}: {message}")]
pub struct GitError {
    pub action: &'static str,
    pub message: String,
}

/// One branch of one repository, mirrored into a local folder.
#[derive(Debug, Clone)]
pub struct Mirror {
    dir: PathBuf,
    url: String,
    branch: String,
    auth: GitAuth,
}

/// URLs' user info (`https://user:token@host`), which git may quote back.
static USERINFO: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@").expect("a valid regex"));

/// `text` without the user info of any URL in it, and without `secret`.
pub fn scrub(text: &str, secret: Option<&str>) -> String {
    let mut out = USERINFO.replace_all(text, "${1}***@").into_owned();
    if let Some(secret) = secret.filter(|s| s.len() >= 4) {
        out = out.replace(secret, "***");
    }
    out
}

/// Whether `branch` is a plain branch name git takes as it is (and that can
/// never read as an option).
pub fn is_valid_branch(branch: &str) -> bool {
    !branch.is_empty()
        && !branch.starts_with(['-', '/', '.'])
        && !branch.ends_with(['/', '.'])
        && !branch.contains("..")
        && !branch.ends_with(".lock")
        && branch
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
}

/// A path quoted for the shell git runs `GIT_SSH_COMMAND` with.
fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// The credential helper: answers `get` with the user name and the token read
/// from its file (the path comes through the environment, the token never does).
const CREDENTIAL_HELPER: &str = r#"!f() { test "$1" = get || return 0; echo "username=${SWARMKEEPER_GIT_USERNAME}"; printf 'password=%s\n' "$(cat "$SWARMKEEPER_GIT_TOKEN_FILE")"; }; f"#;

impl Mirror {
    /// A mirror of `branch` of `url` in `dir` (created on the first fetch).
    pub fn new(dir: PathBuf, url: String, branch: String, auth: GitAuth) -> Self {
        Self {
            dir,
            url,
            branch,
            auth,
        }
    }

    /// The folder the fetched commit is checked out in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The repository URL as messages show it: without credentials.
    pub fn display_url(&self) -> String {
        scrub(&self.url, None)
    }

    /// The token, read for scrubbing only; a missing file is git's error to report.
    fn token(&self) -> Option<String> {
        let file = self.auth.token_file.as_ref()?;
        let token = std::fs::read_to_string(file).ok()?;
        Some(token.trim_end_matches(['\r', '\n']).to_owned())
    }

    /// Configuration passed to git in its environment, never on its command line.
    fn config(&self) -> Vec<(String, String)> {
        let mut config = vec![
            ("remote.origin.url".to_owned(), self.url.clone()),
            (
                "remote.origin.fetch".to_owned(),
                format!("+refs/heads/{}:{MIRROR_REF}", self.branch),
            ),
            // The empty value first clears any helper of the system or user
            // configuration, which could store the token elsewhere.
            ("credential.helper".to_owned(), String::new()),
        ];
        if self.auth.token_file.is_some() {
            config.push(("credential.helper".to_owned(), CREDENTIAL_HELPER.to_owned()));
        }
        config
    }

    async fn git(&self, action: &'static str, args: &[&str]) -> Result<String, GitError> {
        let mut cmd = tokio::process::Command::new("git");
        cmd.arg("-C")
            .arg(&self.dir)
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let config = self.config();
        cmd.env("GIT_CONFIG_COUNT", config.len().to_string());
        for (i, (key, value)) in config.iter().enumerate() {
            cmd.env(format!("GIT_CONFIG_KEY_{i}"), key)
                .env(format!("GIT_CONFIG_VALUE_{i}"), value);
        }
        if let Some(file) = &self.auth.token_file {
            cmd.env("SWARMKEEPER_GIT_TOKEN_FILE", file).env(
                "SWARMKEEPER_GIT_USERNAME",
                self.auth.username.as_deref().unwrap_or("x-access-token"),
            );
        }
        cmd.env("GIT_SSH_COMMAND", self.auth.ssh_command());
        let fail = |message: String| GitError {
            action,
            message: scrub(&message, self.token().as_deref()),
        };
        let output = tokio::time::timeout(GIT_TIMEOUT, cmd.output())
            .await
            .map_err(|_| fail(format!("no answer within {GIT_TIMEOUT:?}")))?
            .map_err(|e| fail(format!("cannot run git: {e}")))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(fail(
                crate::text::truncate(stderr.trim(), 1024).into_owned(),
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Fetches the branch's tip and returns its commit id.
    ///
    /// # Errors
    /// When the folder cannot be made, or git cannot fetch (unreachable
    /// remote, refused credentials, unknown branch).
    pub async fn fetch(&self) -> Result<String, GitError> {
        if !self.dir.join(".git").exists() {
            std::fs::create_dir_all(&self.dir).map_err(|e| GitError {
                action: "init",
                message: format!("cannot create {}: {e}", self.dir.display()),
            })?;
            self.git("init", &["init", "--quiet"]).await?;
        }
        // Only the tip matters: a shallow fetch keeps a large history off disk.
        self.git(
            "fetch",
            &["fetch", "--quiet", "--no-tags", "--depth", "1", "origin"],
        )
        .await?;
        let tip = format!("{MIRROR_REF}^{{commit}}");
        self.git("rev-parse", &["rev-parse", "--verify", "--quiet", &tip])
            .await
    }

    /// Checks `commit` out in the mirror's folder, with nothing else in it.
    ///
    /// # Errors
    /// When git cannot check the commit out.
    pub async fn checkout(&self, commit: &str) -> Result<&Path, GitError> {
        if !commit.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(GitError {
                action: "checkout",
                message: format!("{commit:?} is not a commit id"),
            });
        }
        self.git(
            "checkout",
            &["checkout", "--quiet", "--force", "--detach", commit],
        )
        .await?;
        self.git("clean", &["clean", "--quiet", "-ffdx"]).await?;
        Ok(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_user_info_and_the_token_goes() {
        let text = "fatal: unable to access 'https://bot:t0ken-XYZ@git.example/r.git/': 403";
        let scrubbed = scrub(text, Some("t0ken-XYZ"));
        assert_eq!(
            scrubbed,
            "fatal: unable to access 'https://***@git.example/r.git/': 403"
        );
        assert_eq!(
            scrub("token t0ken-XYZ echoed", Some("t0ken-XYZ")),
            "token *** echoed"
        );
        assert_eq!(scrub("ssh://git@host/r", None), "ssh://***@host/r");
    }

    #[test]
    fn branches_that_could_read_as_options_or_odd_refs_are_refused() {
        assert!(is_valid_branch("main"));
        assert!(is_valid_branch("release/1.2"));
        for bad in ["", "-x", "a..b", "a b", "x.lock", "/a", "a/", "a:b"] {
            assert!(!is_valid_branch(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_ssh_command_names_the_key_and_host_keys_by_path() {
        let auth = GitAuth {
            ssh_key_file: Some("/run/secrets/deploy key".into()),
            known_hosts_file: Some("/etc/hosts.known".into()),
            ..GitAuth::default()
        };
        assert_eq!(
            auth.ssh_command(),
            "ssh -o BatchMode=yes -i '/run/secrets/deploy key' -o IdentitiesOnly=yes \
             -o UserKnownHostsFile='/etc/hosts.known' -o StrictHostKeyChecking=yes"
        );
        assert_eq!(
            GitAuth::default().ssh_command(),
            "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new"
        );
    }

    #[test]
    fn paths_are_quoted_for_the_shell() {
        assert_eq!(shell_quote(Path::new("/a b/k'ey")), r"'/a b/k'\''ey'");
    }
}
