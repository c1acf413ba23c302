//! One listing of every managed swarm object, shared by the reconciles of a
//! pass: a resync (or `run --once`) lists the swarm once for all records,
//! not four times per record.
//!
//! # Guarantees
//! A reconcile uses the shared listing only when it was taken after the
//! reconcile was last asked for ([`runtime::triggered_at`]): a Docker event,
//! an etcd change, a requeue or a retry newer than the listing makes the
//! reconcile list its own objects afresh. A reconcile run outside the runtime
//! (`drift`, the HTTP endpoints, a test calling a reconciler) always lists afresh.
//!
//! # Caveats
//! What a reconcile writes is not in the listing, so a reconcile that wrote
//! lists again before it reports status; the requeue or Docker events its
//! writes cause are asked for after the listing, so they list afresh too.

use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use crate::docker::{Docker, DockerError, OwnedObjects, Owner};
use crate::runtime;

/// The latest listing of every managed object in scope, and when it was started.
#[derive(Debug, Default)]
pub struct Listings {
    latest: Mutex<Option<(Instant, Arc<OwnedObjects>)>>,
}

impl Listings {
    /// Keeps `objects`, listed by a request sent at `taken`, unless a newer listing is kept.
    pub fn keep(&self, taken: Instant, objects: OwnedObjects) {
        let mut latest = self.lock();
        if latest.as_ref().is_none_or(|(at, _)| *at <= taken) {
            *latest = Some((taken, Arc::new(objects)));
        }
    }

    /// The objects of `owner` in the kept listing, when it is fresh enough
    /// for the running reconcile.
    fn owned_by(&self, docker: &Docker, owner: &Owner) -> Option<OwnedObjects> {
        let asked = runtime::triggered_at()?;
        let objects = {
            let latest = self.lock();
            let (taken, objects) = latest.as_ref()?;
            (*taken >= asked).then(|| Arc::clone(objects))?
        };
        // The same selection as dockerd's label filter on a listing by owner.
        let wanted = docker.owner_labels(owner);
        Some(objects.filtered(|labels| {
            labels.is_some_and(|labels| wanted.iter().all(|(k, v)| labels.get(k) == Some(v)))
        }))
    }

    /// The objects `owner` has in the swarm: from the shared listing when it
    /// is fresh enough, else listed now.
    ///
    /// # Errors
    /// [`DockerError::List`] when dockerd fails to answer.
    pub async fn observe(
        &self,
        docker: &Docker,
        owner: &Owner,
    ) -> Result<OwnedObjects, DockerError> {
        match self.owned_by(docker, owner) {
            Some(objects) => Ok(objects),
            None => docker.list_owned(Some(owner)).await,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, Arc<OwnedObjects>)>> {
        // Plain data: a panic elsewhere cannot leave it half-written.
        self.latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
