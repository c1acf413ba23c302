//! What triggers a reconcile: which records an etcd change, a Docker event or
//! a resync concerns. The runtime only dedupes and schedules the keys these
//! streams name; the reconcilers never learn why they run.
//!
//! - [`etcd`]: every record listed, then each change the watch sees.
//! - [`docker`]: the owner of each object a Docker event is about (plus the
//!   stacks and backup jobs that use a Secret record's new version), and every record again
//!   after the events stream reconnects.
//! - [`resync`]: every record, periodically: what heals a missed event.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt, stream};

use super::{Context, Controllers, Error, RecordKey};
use crate::api::Kind;
use tokio::time::Instant;

use crate::docker::{Docker, DockerError, DockerEvent, EventType, OwnedObjects};
use crate::runtime::{self, ResetTimerBackoff, Session};
use crate::store::{Store, StoreError, WatchEvent};

/// Every record, every `interval`, retried with backoff when a listing fails;
/// each asked for as of the listing, so its reconcile may use that listing.
pub fn resync(
    controllers: Arc<Controllers>,
    interval: Duration,
) -> impl Stream<Item = (RecordKey, Instant)> + Send + 'static {
    runtime::resync(interval, move || {
        let c = controllers.clone();
        async move {
            let asked = Instant::now();
            let keys = all_keys(&c.ctx).await?;
            Ok::<_, Error>(keys.into_iter().map(|key| (key, asked)).collect())
        }
    })
}

/// Record keys from etcd: every record listed, then every change after the
/// listing's revision. The stream re-lists on compaction and reconnects on its own.
///
/// A Registry record's change also names every Stack: the auth and digests
/// of the images they pull from it may change with it.
pub fn etcd(store: Store) -> impl Stream<Item = RecordKey> + Send + 'static {
    let watched = store.clone();
    stream::once(list_then_watch(watched))
        .flatten()
        .then(move |event| {
            let store = store.clone();
            async move {
                let (kind, name) = match event {
                    Ok(WatchEvent::Put { kind, name, .. } | WatchEvent::Delete { kind, name }) => {
                        (kind, name)
                    }
                    Err(err) => {
                        tracing::warn!(%err, "etcd watch error");
                        return Vec::new();
                    }
                };
                let Ok(kind) = kind.parse::<Kind>() else {
                    return Vec::new();
                };
                let mut keys = vec![RecordKey::new(kind, name)];
                if kind == Kind::Registry {
                    keys.extend(records_of(&store, &[Kind::Stack]).await);
                }
                keys
            }
        })
        .flat_map(stream::iter)
}

/// The keys of every record of `kinds`; none (and a warning) when etcd fails.
async fn records_of(store: &Store, kinds: &[Kind]) -> Vec<RecordKey> {
    let mut keys = Vec::new();
    for &kind in kinds {
        match store.list_records(Some(kind.as_str())).await {
            Ok((records, _)) => {
                keys.extend(records.into_iter().map(|r| RecordKey::new(kind, r.name)))
            }
            Err(err) => tracing::warn!(%err, %kind, "could not list the records a change concerns"),
        }
    }
    keys
}

/// The records at one revision, as `Put`s, followed by the watch from the next
/// revision; both retried with backoff until they work.
///
/// The listed records are yielded too, not only used for their revision: when the
/// first listing fails (a range answer over gRPC's 4 MiB, etcd unavailable), a record
/// written before the one that works is named here, rather than left to the next
/// resync.
async fn list_then_watch(store: Store) -> BoxStream<'static, Result<WatchEvent, StoreError>> {
    let mut delays = runtime::Backoff::RECONNECT.delays();
    loop {
        let err = match store.list_records(None).await {
            Ok((records, revision)) => match store.watch_desired(revision + 1).await {
                Ok(watch) => {
                    let listed = records.into_iter().map(|r| {
                        Ok(WatchEvent::Put {
                            kind: r.kind,
                            name: r.name,
                            versioned: r.versioned,
                        })
                    });
                    return stream::iter(listed).chain(watch).boxed();
                }
                Err(err) => err,
            },
            Err(err) => err,
        };
        let delay = delays
            .next()
            .unwrap_or(runtime::Backoff::RECONNECT.max_delay);
        tracing::warn!(%err, ?delay, "could not list and watch records; retrying");
        tokio::time::sleep(delay).await;
    }
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
    // A new version of a value a record delivers (a Secret record's, a
    // DatabaseUser's password): the stacks and backup jobs that use it move to
    // it (or stop waiting for it) now, and registries roll to a new password.
    if matches!(kind, Kind::Secret | Kind::DatabaseUser)
        && event.typ == EventType::Secret
        && event.action == "create"
    {
        let kinds = [Kind::Stack, Kind::BackupJob, Kind::Registry];
        keys.extend(records_of(&c.ctx.store, &kinds).await);
    }
    keys
}

/// Record keys of owned objects that Docker events say changed. When the events
/// stream ends (dockerd went away, or dropped it) it is reopened with a backoff
/// that starts over only after 120 s without an error, and every record is named
/// again, since events were missed meanwhile.
pub fn docker(controllers: Arc<Controllers>) -> impl Stream<Item = RecordKey> + Send + 'static {
    runtime::reconnecting(ResetTimerBackoff::default(), move |session| {
        let c = controllers.clone();
        async move {
            let missed = match session {
                Session::First => Vec::new(),
                Session::Reconnect => match all_keys(&c.ctx).await {
                    Ok(all) => all,
                    Err(err) => {
                        tracing::warn!(%err, "dockerd still unreachable");
                        return None;
                    }
                },
            };
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
            // Boxed: `events` returns a 'static stream, but its opaque type names the borrow of `c`.
            Some(stream::iter(missed).chain(events).boxed())
        }
    })
}

/// Records that own objects in the swarm, whether or not they still exist in etcd:
/// deletion must not depend on having seen the delete event.
fn owners_in(docker: &Docker, objects: &OwnedObjects) -> BTreeSet<RecordKey> {
    objects
        .labels()
        .filter_map(|labels| docker.owner_of(labels))
        .filter_map(|o| Some(RecordKey::new(o.kind.parse().ok()?, o.name)))
        .collect()
}

/// Every record to look at: those in etcd and those that own swarm objects.
///
/// The listing of the swarm it makes is kept in [`Context::listings`], for
/// the reconciles asked for no later than this call began.
///
/// # Errors
/// When etcd or dockerd does not answer.
pub async fn all_keys(ctx: &Context) -> Result<Vec<RecordKey>, Error> {
    let (records, _) = ctx.store.list_records(None).await?;
    let mut keys: BTreeSet<RecordKey> = records
        .into_iter()
        .filter_map(|r| Some(RecordKey::new(r.kind.parse().ok()?, r.name)))
        .collect();
    // Only this instance's objects: another prefix on the same swarm is another instance.
    let scoped = ctx.docker.clone().scoped(ctx.store.prefix());
    let taken = Instant::now();
    let objects = scoped.list_owned(None).await?;
    keys.extend(owners_in(&scoped, &objects));
    // Shared only when it is the view the reconcilers' own listings would give.
    if ctx.docker.scope() == scoped.scope() {
        ctx.listings.keep(taken, objects);
    }
    Ok(keys.into_iter().collect())
}
