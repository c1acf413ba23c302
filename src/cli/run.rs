//! `run`: the controller. Campaigns for leadership, then reconciles records
//! triggered by the etcd watch, Docker events and a periodic resync, until
//! SIGTERM/SIGINT (or, with `--once`, converges every record once and exits).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::api::Kind;
use crate::controllers::status::{Phase, Status};
use crate::controllers::{self, Context, Controllers, DriftCache, RecordKey, triggers};
use crate::docker::Docker;
use crate::gitops::webhook::WebhookSecret;
use crate::gitops::{Outcome, SyncSpec, Syncer};
use crate::http::hooks::{Hook, Hooks};
use crate::http::{self, AppState, BearerToken};
use crate::metrics::Metrics;
use crate::notify::{Notifier, NotifyConfig};
use crate::runtime::{self, Controller, Shutdown};
use crate::store::{Leadership, Store};
use tokio::sync::Notify;

use super::{Failure, GlobalOpts};

/// Options of `run`.
#[derive(Debug, Clone)]
pub struct RunOpts {
    pub http_addr: String,
    pub resync: Duration,
    pub concurrency: usize,
    pub once: bool,
    /// With `once`: skip the election, even while another replica leads.
    pub force: bool,
    /// A file holding the bearer token `/drift` and `/events` ask for.
    pub http_token_file: Option<PathBuf>,
    /// The repositories to follow, on the leader only.
    pub sync: Vec<SyncSpec>,
    /// Where notifications go (no receiver: none are sent).
    pub notify: NotifyConfig,
}

/// The syncs of `run --sync`, each with the trigger its webhook pulls.
type Syncs = Vec<(Arc<Syncer>, Arc<Notify>)>;

/// One syncer per `--sync`, and the push webhooks that wake them.
///
/// # Errors
/// Two syncs of one source, or a webhook secret file that cannot be read (exit 64).
fn syncs(prefix: &str, specs: &[SyncSpec], notifier: &Notifier) -> Result<(Syncs, Hooks), Failure> {
    let mut syncs = Vec::new();
    let mut hooks = Hooks::new();
    for spec in specs {
        let secret = spec
            .webhook_secret_file
            .as_deref()
            .map(WebhookSecret::from_file)
            .transpose()
            .map_err(|e| {
                Failure::Invalid(format!(
                    "error: --sync {}: webhook-secret-file: {e}",
                    spec.source
                ))
            })?;
        let wake = Arc::new(Notify::new());
        let hook = Hook {
            secret,
            wake: wake.clone(),
        };
        if hooks.insert(spec.source.clone(), hook).is_some() {
            return Err(Failure::Invalid(format!(
                "error: --sync: source {:?} is given twice",
                spec.source
            )));
        }
        let syncer = Syncer::new(spec.clone(), prefix, notifier.clone());
        syncs.push((Arc::new(syncer), wake));
    }
    Ok((syncs, hooks))
}

/// How long the leader's lease lives without a keep-alive.
const LEASE_TTL: Duration = Duration::from_secs(15);
/// How long a Docker event or a resync waits for more of its kind before its
/// reconcile starts. Short: a heal is acted on within tens of milliseconds,
/// and the Docker events a pass's own writes cause arrive while it runs, so
/// they become one follow-up pass whatever the debounce.
const DEBOUNCE: Duration = Duration::from_millis(30);
/// How long giving leadership up may take before the lease is left to expire.
const RESIGN_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs the controller.
///
/// # Errors
/// When etcd or dockerd cannot be reached at start, or the HTTP address is
/// taken; with `--once`, when another replica leads.
pub async fn run(global: &GlobalOpts, opts: &RunOpts) -> Result<u8, Failure> {
    let token = opts
        .http_token_file
        .as_deref()
        .map(BearerToken::from_file)
        .transpose()
        .map_err(|e| Failure::Invalid(format!("error: --http-token-file: {e}")))?;
    let store = global.store().await?;
    let keyring = global.keyring(&store, false).await?;
    let docker = Docker::connect()
        .await
        .map_err(Failure::error)?
        .scoped(&global.prefix);
    let metrics = Arc::new(Metrics::new(&docker));
    let notifier = Notifier::start(opts.notify.clone(), metrics.notifications.clone());
    let (syncs, hooks) = syncs(&global.prefix, &opts.sync, &notifier)?;
    let ctx = Context::new(store, docker, keyring, opts.resync)
        .with_drift(DriftCache::with_gauge(metrics.drift_objects.clone()))
        .with_notifier(notifier);
    let identity = format!(
        "{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "swarmkeeper".into()),
        std::process::id()
    );
    if opts.once {
        return once(ctx, metrics, &identity, opts, &syncs).await;
    }
    let shutdown = Shutdown::on_signals().map_err(Failure::error)?;
    // The HTTP endpoints only read; they never hold a leader's fenced context.
    let readers = Arc::new(Controllers {
        ctx: ctx.clone(),
        metrics: Some(metrics.clone()),
    });
    let state = Arc::new(AppState::new(readers, metrics.clone(), token).with_hooks(hooks));
    let listener = tokio::net::TcpListener::bind(&opts.http_addr)
        .await
        .map_err(|e| Failure::Error(format!("listening on {}: {e}", opts.http_addr)))?;
    let http_shutdown = shutdown.clone();
    let router = http::router(state.clone());
    tokio::spawn(async move {
        let served = axum::serve(listener, router).with_graceful_shutdown(async move {
            http_shutdown.reached(runtime::Phase::Draining).await
        });
        if let Err(err) = served.await {
            tracing::error!(%err, "http server failed");
        }
    });
    while shutdown.phase() == runtime::Phase::Running {
        let leadership = tokio::select! {
            won = ctx.store.campaign(&identity, LEASE_TTL) => won,
            () = shutdown.reached(runtime::Phase::Draining) => break,
        };
        let leadership = match leadership {
            Ok(l) => l,
            Err(err) => {
                tracing::warn!(%err, "campaign failed; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        tracing::info!(identity, "leading");
        state.set_leading(true);
        let controllers = Arc::new(Controllers {
            ctx: ctx.fenced(&leadership.fence()),
            metrics: Some(metrics.clone()),
        });
        lead(&controllers, &leadership, &shutdown, opts, &metrics, &syncs).await;
        state.set_leading(false);
        // Also after a loss: the old candidacy may still be in etcd (after an
        // etcd restart it is), and the next campaign would wait out its TTL.
        match tokio::time::timeout(RESIGN_TIMEOUT, leadership.resign()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::debug!(%err, "could not resign leadership"),
            Err(_) => tracing::debug!("resigning timed out; the lease expires by itself"),
        }
        if shutdown.phase() != runtime::Phase::Running {
            break;
        }
        tracing::warn!("leadership lost; campaigning again");
    }
    Ok(0)
}

/// Reconciles as the leader until leadership is lost (at once: another
/// replica may already reconcile) or shutdown (draining first).
async fn lead(
    controllers: &Arc<Controllers>,
    leadership: &Leadership,
    shutdown: &Shutdown,
    opts: &RunOpts,
    metrics: &Metrics,
    syncs: &Syncs,
) {
    let leading = Shutdown::new();
    let stop = leading.clone();
    let outer = shutdown.clone();
    let lost = leadership.lost();
    let watcher = tokio::spawn(async move {
        tokio::select! {
            () = lost => stop.abort(),
            () = outer.reached(runtime::Phase::Draining) => {
                stop.trigger();
                outer.reached(runtime::Phase::Aborting).await;
                stop.abort();
            }
        }
    });
    // Only the leader syncs, with its fenced store: a deposed leader's apply is refused.
    let sync_tasks: Vec<_> = syncs
        .iter()
        .map(|(syncer, wake)| {
            let (syncer, wake, stop) = (syncer.clone(), wake.clone(), leading.clone());
            let store = controllers.ctx.store.clone();
            let keys = controllers.ctx.keyring.clone();
            tokio::spawn(async move { syncer.run(&store, keys, &wake, &stop).await })
        })
        .collect();
    let config = runtime::Config {
        concurrency: opts.concurrency,
        debounce: DEBOUNCE,
        ..metrics.runtime_config()
    };
    Controller::new(controllers.clone(), config)
        // apply writes its records in one transaction, which the watch hands over whole.
        .trigger_debounced(
            triggers::etcd(controllers.ctx.store.clone()),
            Duration::ZERO,
        )
        .trigger(triggers::docker(controllers.clone()))
        .stamped_trigger(triggers::resync(controllers.clone(), opts.resync))
        .run(leading.clone())
        .await;
    // A sync may be in an apply: its writes are fenced, so stopping it anywhere is safe.
    for task in sync_tasks {
        task.abort();
    }
    watcher.abort();
}

/// Leadership for `run --once`: a lease left by a replica that died expires
/// within its TTL, so waiting a little longer than that wins it; a replica
/// still alive keeps it, and then `--once` refuses rather than be a second writer.
async fn lead_once(store: &Store, identity: &str) -> Result<Leadership, Failure> {
    let wait = LEASE_TTL + LEASE_TTL / 3;
    match tokio::time::timeout(wait, store.campaign(identity, LEASE_TTL)).await {
        Ok(won) => won.map_err(Failure::error),
        Err(_) => {
            let leader = store
                .leader_identity()
                .await
                .ok()
                .flatten()
                .unwrap_or_else(|| "another replica".into());
            Err(Failure::Error(format!(
                "{leader} leads on {}/leader: run --once would be a second writer; \
                 stop it first, or pass --force",
                store.prefix()
            )))
        }
    }
}

/// Converges every record once as the leader (unless forced); exit 1 when
/// any reconcile failed or any record is Failed.
async fn once(
    ctx: Context,
    metrics: Arc<Metrics>,
    identity: &str,
    opts: &RunOpts,
    syncs: &Syncs,
) -> Result<u8, Failure> {
    let leadership = if opts.force {
        tracing::warn!("--force: converging without leader election");
        None
    } else {
        Some(lead_once(&ctx.store, identity).await?)
    };
    let controllers = Arc::new(Controllers {
        ctx: match &leadership {
            Some(l) => ctx.fenced(&l.fence()),
            None => ctx,
        },
        metrics: Some(metrics),
    });
    // Each source's tip first, so the pass converges what the repositories say.
    let mut sync_failed = false;
    for (syncer, _) in syncs {
        let keys = controllers.ctx.keyring.clone();
        match syncer.sync_once(&controllers.ctx.store, keys).await {
            Ok(Outcome::Refused { message, .. }) => {
                sync_failed = true;
                println!("Source/{}: not applied: {message}", syncer.spec().source);
            }
            Ok(_) => {}
            Err(err) => {
                sync_failed = true;
                println!("Source/{}: error: {err}", syncer.spec().source);
            }
        }
    }
    let code = converge_once(&controllers, opts.concurrency)
        .await
        .map(|code| code.max(u8::from(sync_failed)));
    if let Some(leadership) = leadership
        && let Err(err) = leadership.resign().await
    {
        tracing::warn!(%err, "could not resign leadership");
    }
    code
}

/// One pass over every record, with a line per record.
async fn converge_once(controllers: &Arc<Controllers>, concurrency: usize) -> Result<u8, Failure> {
    // Every reconcile of the pass is asked for now: the listing `all_keys`
    // makes next is fresh enough for each of them, so the swarm is listed once.
    let asked = tokio::time::Instant::now();
    let keys = controllers::all_keys(&controllers.ctx)
        .await
        .map_err(Failure::error)?;
    let (records, _) = controllers
        .ctx
        .store
        .list_records(None)
        .await
        .map_err(Failure::error)?;
    let exists: std::collections::HashSet<(String, String)> =
        records.into_iter().map(|r| (r.kind, r.name)).collect();
    let (present, orphaned): (Vec<RecordKey>, Vec<RecordKey>) = keys
        .into_iter()
        .partition(|k| exists.contains(&(k.kind.as_str().to_string(), k.name.clone())));
    // Kind by kind, in dependency order (networks and secrets before the stacks
    // that use them), so one pass converges what a first pass makes possible;
    // what deleted records left behind goes in the reverse order.
    let mut results = Vec::new();
    let phases = Kind::ALL
        .iter()
        .map(|kind| (kind, &present))
        .chain(Kind::ALL.iter().rev().map(|kind| (kind, &orphaned)));
    for (kind, keys) in phases {
        let of_kind = keys.iter().filter(|k| k.kind == *kind).cloned();
        results.extend(
            runtime::run_once_since(of_kind, controllers.clone(), concurrency, asked).await,
        );
    }
    let mut failed = false;
    let reconciled = results.len();
    let statuses: std::collections::HashMap<(String, String), serde_json::Value> = controllers
        .ctx
        .store
        .list_statuses(None)
        .await
        .map_err(Failure::error)?
        .into_iter()
        .map(|s| ((s.kind, s.name), s.versioned.value))
        .collect();
    for (key, result) in results {
        match result {
            Err(err) => {
                failed = true;
                println!("{key}: error: {err}");
            }
            Ok(_) => {
                let status = statuses
                    .get(&(key.kind.as_str().to_string(), key.name.clone()))
                    .map(|v| serde_json::from_value::<Status>(v.clone()));
                match status {
                    None => println!("{key}: removed"),
                    // Not "removed": the record is there, its status is what is wrong.
                    Some(Err(err)) => {
                        failed = true;
                        println!("{key}: error: unreadable status: {err}");
                    }
                    Some(Ok(s)) => {
                        failed |= s.phase == Phase::Failed;
                        let msg = if s.message.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", s.message)
                        };
                        println!("{key}: {}{msg}", s.phase);
                    }
                }
            }
        }
    }
    println!(
        "reconciled {reconciled} records with {} writes to dockerd and {} reads",
        controllers.ctx.docker.writes(),
        controllers.ctx.docker.reads()
    );
    Ok(u8::from(failed))
}
