//! The `swarmkeeper` command line: parses flags and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use swarmkeeper::cli::{self, Failure, GlobalOpts, Output};

#[derive(Parser, Debug)]
#[command(
    name = "swarmkeeper",
    version,
    about = "A reconciliation operator for Docker Swarm: desired state in etcd, converged idempotently."
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct Global {
    /// etcd endpoints, comma-separated.
    #[arg(
        long,
        global = true,
        env = "SWARMKEEPER_ETCD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    etcd_endpoints: Vec<String>,
    /// Key prefix under which every swarmkeeper key lives.
    #[arg(
        long,
        global = true,
        env = "SWARMKEEPER_PREFIX",
        default_value = "/swarmkeeper"
    )]
    prefix: String,
    /// CA certificate to verify etcd's TLS certificate.
    #[arg(long, global = true, env = "SWARMKEEPER_ETCD_CA")]
    etcd_ca: Option<PathBuf>,
    /// Client certificate for etcd (with --etcd-key).
    #[arg(long, global = true, env = "SWARMKEEPER_ETCD_CERT")]
    etcd_cert: Option<PathBuf>,
    /// Client key for etcd (with --etcd-cert).
    #[arg(long, global = true, env = "SWARMKEEPER_ETCD_KEY")]
    etcd_key: Option<PathBuf>,
    /// etcd user name (with --etcd-password-file).
    #[arg(long, global = true, env = "SWARMKEEPER_ETCD_USER")]
    etcd_user: Option<String>,
    /// File holding the etcd user's password.
    #[arg(long, global = true, env = "SWARMKEEPER_ETCD_PASSWORD_FILE")]
    etcd_password_file: Option<PathBuf>,
    /// File of 32 random bytes (raw or base64): the key secret values are encrypted with.
    #[arg(long, global = true, env = "SWARMKEEPER_SECRET_KEY_FILE")]
    secret_key_file: Option<PathBuf>,
    /// During a key rotation, the old key: it still opens values, never seals them.
    #[arg(long, global = true, env = "SWARMKEEPER_PREVIOUS_SECRET_KEY_FILE")]
    previous_secret_key_file: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "SWARMKEEPER_LOG_JSON")]
    log_json: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate records and write them to etcd.
    Apply {
        /// Files or folders of YAML/JSON records.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Name of the GitOps source these records come from.
        #[arg(long, env = "SWARMKEEPER_SOURCE")]
        source: Option<String>,
        /// Delete records of --source that are no longer in the files.
        #[arg(long, requires = "source")]
        prune: bool,
        /// The commit the files come from, recorded with --source.
        #[arg(long, env = "SWARMKEEPER_COMMIT")]
        commit: Option<String>,
        /// Validate and report, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Overwrite records another source owns (they become this apply's).
        #[arg(long)]
        force: bool,
    },
    /// Show what an apply of these files would change in etcd, and what the controller would do in the swarm.
    Diff {
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Exit with code 2 when an apply would change something.
        #[arg(long)]
        exit_code: bool,
    },
    /// List records with their status.
    Get {
        kind: Option<String>,
        name: Option<String>,
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Show a record, its status, owned objects and recent events.
    Describe { kind: String, name: String },
    /// Delete records by kind and name, or those in files.
    Delete {
        kind: Option<String>,
        name: Option<String>,
        #[arg(short = 'f', long = "filename", conflicts_with_all = ["kind", "name"])]
        files: Vec<PathBuf>,
    },
    /// Compare the records in etcd with the live swarm.
    Drift {
        kind: Option<String>,
        name: Option<String>,
        #[arg(short = 'o', long, value_enum, default_value_t = DriftFormat::Table)]
        output: DriftFormat,
        /// Exit with code 2 when there is drift.
        #[arg(long)]
        exit_code: bool,
    },
    /// Show the event log.
    Events {
        /// KIND/NAME to show the events of one record.
        target: Option<String>,
        #[arg(long)]
        watch: bool,
    },
    /// Run the controller.
    Run {
        /// Address of /healthz, /readyz, /metrics, /drift and /events.
        #[arg(long, env = "SWARMKEEPER_HTTP_ADDR", default_value = "0.0.0.0:8080")]
        http_addr: String,
        /// Interval of the full resync (more than zero). A longer interval than 180
        /// days is accepted and clamped to 180 days, the longest the controller waits.
        #[arg(long, env = "SWARMKEEPER_RESYNC", default_value = "5m", value_parser = parse_resync)]
        resync: Duration,
        /// Reconciles that may run at once.
        #[arg(long, env = "SWARMKEEPER_CONCURRENCY", default_value_t = 4)]
        concurrency: usize,
        /// Converge every record once and exit. It takes part in the leader
        /// election: it waits for a lease left by a replica that died, and
        /// refuses while another replica leads.
        #[arg(long)]
        once: bool,
        /// With --once: converge even while another replica leads (two writers).
        #[arg(long, requires = "once")]
        force: bool,
        /// File holding a token: /drift and /events then need `Authorization: Bearer <token>`.
        #[arg(long, env = "SWARMKEEPER_HTTP_TOKEN_FILE")]
        http_token_file: Option<PathBuf>,
        /// Follow a Git repository, on the leader (repeatable, one per source):
        /// `source=NAME,repo=URL,path=DIR[,branch=main][,interval=30s][,token-file=F]
        /// [,username=U][,ssh-key-file=F][,known-hosts-file=F][,webhook-secret-file=F][,cache-dir=D]`.
        /// In the environment, several are separated by `;`.
        #[arg(long, env = "SWARMKEEPER_SYNC", value_delimiter = ';',
              value_parser = swarmkeeper::gitops::SyncSpec::parse)]
        sync: Vec<swarmkeeper::gitops::SyncSpec>,
        #[command(flatten)]
        notify: NotifyArgs,
    },
    /// Follow a Git repository: apply each new commit of a branch as
    /// `apply --source NAME --prune --commit <sha>` would.
    Sync {
        /// The repository URL (https://, ssh://, git@host:path, file://).
        #[arg(long, env = "SWARMKEEPER_SYNC_REPO")]
        repo: String,
        #[arg(long, env = "SWARMKEEPER_SYNC_BRANCH", default_value = "main")]
        branch: String,
        /// The folder of records inside the repository (`.` for its root, where
        /// every YAML file, CI workflows included, must then be a record).
        #[arg(long, env = "SWARMKEEPER_SYNC_PATH")]
        path: String,
        /// The source name the records are applied under.
        #[arg(long, env = "SWARMKEEPER_SOURCE")]
        source: String,
        /// How often to fetch.
        #[arg(long, env = "SWARMKEEPER_SYNC_INTERVAL", default_value = "30s",
              value_parser = swarmkeeper::gitops::sync::parse_interval)]
        interval: Duration,
        /// File holding an HTTPS token, sent as the password (never on a command line).
        #[arg(long, env = "SWARMKEEPER_GIT_TOKEN_FILE")]
        git_token_file: Option<PathBuf>,
        /// The user name sent with the token (default x-access-token).
        #[arg(long, env = "SWARMKEEPER_GIT_USERNAME")]
        git_username: Option<String>,
        /// Private SSH key for ssh:// repositories.
        #[arg(long, env = "SWARMKEEPER_GIT_SSH_KEY_FILE")]
        git_ssh_key_file: Option<PathBuf>,
        /// The host keys ssh accepts (without it, learnt on first use).
        #[arg(long, env = "SWARMKEEPER_GIT_KNOWN_HOSTS_FILE")]
        git_known_hosts_file: Option<PathBuf>,
        /// Where the repository is mirrored (a folder under the temp dir by default).
        #[arg(long, env = "SWARMKEEPER_GIT_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
        /// Fetch and apply once, then exit (64 when the commit is invalid).
        #[arg(long)]
        once: bool,
        #[command(flatten)]
        notify: NotifyArgs,
    },
    /// Manage the key secret values are sealed with.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Secret values, for a person holding the key.
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// Write the JSON Schema of every kind.
    Schema {
        #[arg(long, default_value = "crds")]
        out: PathBuf,
    },
}

/// Where `run` sends notifications.
#[derive(Args, Debug)]
struct NotifyArgs {
    /// POST a JSON message here when a record fails, recovers or drifts, or a
    /// sync fails or recovers (repeatable).
    #[arg(
        long = "notify-webhook",
        env = "SWARMKEEPER_NOTIFY_WEBHOOK",
        value_delimiter = ','
    )]
    urls: Vec<String>,
    /// `json` (documented in the README) or `slack` (Slack/Mattermost text).
    #[arg(
        long = "notify-format",
        env = "SWARMKEEPER_NOTIFY_FORMAT",
        default_value = "json"
    )]
    format: swarmkeeper::notify::Format,
    /// At most one message per record in this window; changes in between are folded.
    #[arg(long = "notify-min-interval", env = "SWARMKEEPER_NOTIFY_MIN_INTERVAL",
          default_value = "1m", value_parser = parse_resync)]
    window: Duration,
}

impl NotifyArgs {
    fn config(self, prefix: &str) -> swarmkeeper::notify::NotifyConfig {
        swarmkeeper::notify::NotifyConfig {
            urls: self.urls,
            format: self.format,
            prefix: prefix.to_owned(),
            window: self.window,
        }
    }
}

#[derive(Subcommand, Debug)]
enum SecretCommand {
    /// Print the current value of a Secret record, or of a secret a
    /// DatabaseUser delivers (its password, its connection string).
    Reveal { name: String },
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Re-seal every stored value with a new key (--secret-key-file is the current one).
    Rotate {
        /// File of the new key (32 random bytes, raw or base64).
        #[arg(long, env = "SWARMKEEPER_NEW_KEY_FILE")]
        new_key_file: PathBuf,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Format {
    Table,
    Yaml,
    Json,
    /// The table with each record's source and commit, and a kind's detail.
    Wide,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum DriftFormat {
    Table,
    Json,
    Markdown,
}

/// Go's duration syntax (`5m`, `1h30m`, `90s`), as compose files use it.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let nanos = swarmkeeper::api::compose::parse_go_duration(s)?;
    u64::try_from(nanos)
        .map(Duration::from_nanos)
        .map_err(|_| format!("{s:?}: must not be negative"))
}

/// A resync interval: zero would list every record in a busy loop, so it is bad usage.
fn parse_resync(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("{s:?}: must be longer than zero")),
        d => Ok(d),
    }
}

/// `resync`, or the runtime's longest delay when it is longer (the controller
/// would clamp it anyway; saying so beats a silent surprise).
fn bounded_resync(resync: Duration) -> Duration {
    let bounded = swarmkeeper::runtime::clamp_delay(resync);
    if bounded < resync {
        tracing::warn!(
            asked = ?resync,
            used = ?bounded,
            "--resync is longer than the longest delay the controller waits; clamped"
        );
    }
    bounded
}

/// `swarmkeeper get | head` closes stdout early; Rust ignores SIGPIPE, so the
/// next `println!` panics. Exit quietly as a SIGPIPE'd command would instead.
fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    exit_quietly_on_broken_pipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 64 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    cli::init_tracing(cli.global.log_json);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("{failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}

async fn dispatch(cli: Cli) -> Result<u8, Failure> {
    let g = cli.global;
    let global = GlobalOpts {
        etcd_endpoints: g.etcd_endpoints,
        prefix: g.prefix,
        etcd_ca: g.etcd_ca,
        etcd_cert: g.etcd_cert,
        etcd_key: g.etcd_key,
        etcd_user: g.etcd_user,
        etcd_password_file: g.etcd_password_file,
        secret_key_file: g.secret_key_file,
        previous_secret_key_file: g.previous_secret_key_file,
    };
    let output = |f: Format| match f {
        Format::Table => Output::Table,
        Format::Yaml => Output::Yaml,
        Format::Json => Output::Json,
        Format::Wide => Output::Wide,
    };
    match cli.command {
        Command::Apply {
            files,
            source,
            prune,
            commit,
            dry_run,
            force,
        } => {
            let opts = cli::apply::ApplyOpts {
                files,
                source,
                prune,
                commit,
                dry_run,
                force,
                repo: None,
            };
            let code = cli::apply::apply(&global, &opts).await?;
            if opts.dry_run {
                cli::diff::dry_run(&global, &opts.files).await?;
            }
            Ok(code)
        }
        Command::Diff { files, exit_code } => cli::diff::diff(&global, &files, exit_code).await,
        Command::Get {
            kind,
            name,
            output: o,
        } => cli::get::get(&global, kind.as_deref(), name.as_deref(), output(o)).await,
        Command::Describe { kind, name } => cli::get::describe(&global, &kind, &name).await,
        Command::Delete { kind, name, files } => {
            cli::get::delete(&global, kind.as_deref(), name.as_deref(), &files).await
        }
        Command::Drift {
            kind,
            name,
            output: o,
            exit_code,
        } => {
            let format = match o {
                DriftFormat::Table => cli::drift::DriftOutput::Table,
                DriftFormat::Json => cli::drift::DriftOutput::Json,
                DriftFormat::Markdown => cli::drift::DriftOutput::Markdown,
            };
            cli::drift::drift(&global, kind.as_deref(), name.as_deref(), format, exit_code).await
        }
        Command::Events { target, watch } => {
            cli::get::events(&global, target.as_deref(), watch).await
        }
        Command::Run {
            http_addr,
            resync,
            concurrency,
            once,
            force,
            http_token_file,
            sync,
            notify,
        } => {
            let opts = cli::run::RunOpts {
                http_addr,
                resync: bounded_resync(resync),
                concurrency,
                once,
                force,
                http_token_file,
                sync,
                notify: notify.config(&global.prefix),
            };
            cli::run::run(&global, &opts).await
        }
        Command::Sync {
            repo,
            branch,
            path,
            source,
            interval,
            git_token_file,
            git_username,
            git_ssh_key_file,
            git_known_hosts_file,
            cache_dir,
            once,
            notify,
        } => {
            let spec = swarmkeeper::gitops::SyncSpec {
                branch,
                path,
                interval,
                auth: swarmkeeper::gitops::git::GitAuth {
                    ssh_key_file: git_ssh_key_file,
                    known_hosts_file: git_known_hosts_file,
                    token_file: git_token_file,
                    username: git_username,
                },
                cache_dir,
                ..swarmkeeper::gitops::SyncSpec::new(&source, &repo)
            };
            let notify = notify.config(&global.prefix);
            cli::sync::sync(&global, spec, once, notify).await
        }
        Command::Key {
            command: KeyCommand::Rotate { new_key_file },
        } => cli::key::rotate(&global, &new_key_file).await,
        Command::Secret {
            command: SecretCommand::Reveal { name },
        } => cli::secret::reveal(&global, &name).await,
        Command::Schema { out } => cli::schema(&out),
    }
}
