//! `run`: the controller. Campaigns for leadership, then reconciles records
//! triggered by the etcd watch, Docker events and a periodic resync, until
//! SIGTERM/SIGINT (or, with `--once`, converges every record once and exits).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::{Stream, StreamExt, stream};

use crate::api::Kind;
use crate::controllers::status::{Phase, Status};
use crate::controllers::{self, Context, Controllers, RecordKey};
use crate::docker::{Docker, DockerError, DockerEvent, EventType};
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::runtime::{self, Controller, Shutdown, resync};
use crate::store::{Store, WatchEvent};

use super::{Failure, GlobalOpts};

/// Options of `run`.
#[derive(Debug, Clone)]
pub struct RunOpts {
    pub http_addr: String,
    pub resync: Duration,
    pub concurrency: usize,
    pub once: bool,
}

/// How long the leader's lease lives without a keep-alive.
const LEASE_TTL: Duration = Duration::from_secs(15);

/// Runs the controller.
///
/// # Errors
/// When etcd or dockerd cannot be reached at start, or the HTTP address is taken.
pub async fn run(global: &GlobalOpts, opts: &RunOpts) -> Result<u8, Failure> {
    let store = global.store().await?;
    let keyring = global.keyring(&store, false).await?;
    let docker = Docker::connect()
        .await
        .map_err(Failure::error)?
        .scoped(&global.prefix);
    let metrics = Arc::new(Metrics::new(&docker));
    let controllers = Arc::new(Controllers {
        ctx: Context {
            store,
            docker,
            keyring,
            resync: opts.resync,
        },
        metrics: Some(metrics.clone()),
    });
    if opts.once {
        return once(&controllers, opts.concurrency).await;
    }
    let shutdown = Shutdown::on_signals().map_err(Failure::error)?;
    let state = Arc::new(AppState {
        controllers: controllers.clone(),
        metrics: metrics.clone(),
        ready: false.into(),
    });
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
    let identity = format!(
        "{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "swarmkeeper".into()),
        std::process::id()
    );
    let ready = |leading: bool| {
        state.ready.store(leading, Ordering::Relaxed);
        metrics.leader.set(i64::from(leading));
    };
    while shutdown.phase() == runtime::Phase::Running {
        let leadership = tokio::select! {
            won = controllers.ctx.store.campaign(&identity, LEASE_TTL) => won,
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
        ready(true);
        let leading = Shutdown::new();
        let stop = leading.clone();
        let outer = shutdown.clone();
        let lost = leadership.lost();
        let watcher = tokio::spawn(async move {
            tokio::select! {
                // Another replica may already reconcile: stop at once.
                () = lost => stop.abort(),
                () = outer.reached(runtime::Phase::Draining) => {
                    stop.trigger();
                    outer.reached(runtime::Phase::Aborting).await;
                    stop.abort();
                }
            }
        });
        let config = runtime::Config {
            concurrency: opts.concurrency,
            queue_depth: Some(metrics.queue_depth.clone()),
            ..runtime::Config::default()
        };
        let ctx_keys = controllers.clone();
        Controller::new(controllers.clone(), config)
            .trigger(etcd_triggers(controllers.ctx.store.clone()))
            .trigger(docker_triggers(controllers.clone()))
            .trigger(resync(opts.resync, move || {
                let c = ctx_keys.clone();
                async move { controllers::all_keys(&c.ctx).await }
            }))
            .run(leading)
            .await;
        watcher.abort();
        ready(false);
        if shutdown.phase() != runtime::Phase::Running {
            if let Err(err) = leadership.resign().await {
                tracing::warn!(%err, "could not resign leadership");
            }
            break;
        }
        tracing::warn!("leadership lost; campaigning again");
    }
    Ok(0)
}

/// Converges every record once; exit 1 when any reconcile failed or any record is Failed.
async fn once(controllers: &Arc<Controllers>, concurrency: usize) -> Result<u8, Failure> {
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
        results.extend(runtime::run_once(of_kind, controllers.clone(), concurrency).await);
    }
    let mut failed = false;
    let reconciled = results.len();
    for (key, result) in results {
        match result {
            Err(err) => {
                failed = true;
                println!("{key}: error: {err}");
            }
            Ok(_) => {
                let status = controllers
                    .ctx
                    .store
                    .get_status(key.kind.as_str(), &key.name)
                    .await
                    .map_err(Failure::error)?
                    .map(|v| serde_json::from_value::<Status>(v.value));
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
        "reconciled {reconciled} records with {} writes to dockerd",
        controllers.ctx.docker.writes()
    );
    Ok(u8::from(failed))
}

/// Record keys from the etcd watch, listed first; the stream re-lists on
/// compaction and reconnects on its own.
fn etcd_triggers(store: Store) -> impl Stream<Item = RecordKey> + Send + 'static {
    stream::once(async move {
        loop {
            match store.list_records(None).await {
                Ok((_, revision)) => match store.watch_desired(revision + 1).await {
                    Ok(watch) => return watch,
                    Err(err) => tracing::warn!(%err, "could not watch etcd; retrying"),
                },
                Err(err) => tracing::warn!(%err, "could not list records; retrying"),
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    })
    .flatten()
    .filter_map(|event| async move {
        let (kind, name) = match event {
            Ok(WatchEvent::Put { kind, name, .. } | WatchEvent::Delete { kind, name }) => {
                (kind, name)
            }
            Err(err) => {
                tracing::warn!(%err, "etcd watch error");
                return None;
            }
        };
        Some(RecordKey::new(kind.parse::<Kind>().ok()?, name))
    })
}

/// The records a Docker event concerns.
async fn keys_of(c: &Controllers, event: Result<DockerEvent, DockerError>) -> Vec<RecordKey> {
    let event = match event {
        Ok(e) => e,
        Err(err) => {
            tracing::warn!(%err, "docker events ended");
            return Vec::new();
        }
    };
    // Nodes are not ours, so their events carry no owner: a Node record is
    // named after its node.
    if event.typ == EventType::Node {
        return event
            .name
            .map(|n| RecordKey::new(Kind::Node, n))
            .into_iter()
            .collect();
    }
    let Some((kind, name)) = event
        .owner
        .and_then(|o| Some((o.kind.parse::<Kind>().ok()?, o.name)))
    else {
        return Vec::new();
    };
    let mut keys = vec![RecordKey::new(kind, name)];
    // A new version of a Secret record's value: the stacks that use it move to
    // it now rather than at the next resync.
    if kind == Kind::Secret && event.typ == EventType::Secret && event.action == "create" {
        match c.ctx.store.list_records(Some(Kind::Stack.as_str())).await {
            Ok((stacks, _)) => keys.extend(
                stacks
                    .into_iter()
                    .map(|r| RecordKey::new(Kind::Stack, r.name)),
            ),
            Err(err) => {
                tracing::warn!(%err, "could not list the stacks a new secret version concerns")
            }
        }
    }
    keys
}

/// Record keys of owned objects that Docker events say changed. When dockerd
/// goes away the stream reconnects with backoff, then names every record
/// again, since events were missed meanwhile.
fn docker_triggers(
    controllers: Arc<Controllers>,
) -> impl Stream<Item = RecordKey> + Send + 'static {
    let backoff = || {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(30))
            .with_jitter()
            .without_max_times()
            .build()
    };
    stream::unfold(
        (controllers, backoff(), false),
        move |(c, mut delays, reconnecting)| async move {
            let mut keys: Vec<RecordKey> = Vec::new();
            if reconnecting {
                tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(30))).await;
                match controllers::all_keys(&c.ctx).await {
                    Ok(all) => keys = all,
                    Err(err) => {
                        tracing::warn!(%err, "dockerd still unreachable");
                        return Some((stream::iter(keys).boxed(), (c, delays, true)));
                    }
                }
            }
            let with = c.clone();
            let events = c
                .ctx
                .docker
                .events(None)
                .then(move |event| {
                    let c = with.clone();
                    async move { keys_of(&c, event).await }
                })
                .flat_map(stream::iter);
            let delays = if keys.is_empty() { delays } else { backoff() };
            let s = stream::iter(keys).chain(events);
            Some((s.boxed(), (c, delays, true)))
        },
    )
    .flatten()
}
