//! Leader election on `<prefix>/leader` with etcd's election API and a kept-alive lease.
//!
//! # Guarantees
//! - Every write of a leader is fenced twice. Locally, a [`Fence`] holds the
//!   moment until which the lease is certainly held (the last answered
//!   keep-alive's send time plus the granted TTL, minus a margin): a paused
//!   process wakes up past it and writes nothing, before its keep-alive task
//!   even runs. In etcd, a store made with [`Store::fenced`] adds to each
//!   write a compare on this replica's leader key, which etcd deletes with
//!   the lease: a write that was late anyway is refused by etcd itself.
//! - [`Leadership::lost`] resolves when a keep-alive fails, is not answered
//!   in time, or the local deadline passes, whichever comes first.
//!
//! # Caveats
//! A write to dockerd already on the wire when the deadline passes still
//! arrives; service updates carry the version they were computed against, so
//! swarm refuses a stale one, and a deposed leader never retries it.

use std::future::Future;
use std::time::Duration;

use etcd_client::{Client, GetOptions, LeaderKey, ResignOptions, SortOrder, SortTarget};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Store, StoreError};
use crate::runtime::Fence;

/// Taken off the TTL for the local deadline: the keep-alive answer, and the
/// write that checked the fence, both take time on the way.
const MARGIN_SHARE: u32 = 5;

/// What a leader's etcd writes carry: the local deadline, and the leader key
/// (with its creation revision) that each transaction compares.
#[derive(Debug, Clone)]
pub struct WriteFence {
    pub(crate) local: Fence,
    pub(crate) key: Vec<u8>,
    pub(crate) revision: i64,
}

impl WriteFence {
    /// The local deadline alone, for writes that go elsewhere (dockerd).
    #[must_use]
    pub fn local(&self) -> &Fence {
        &self.local
    }
}

/// Held while this process is the leader.
pub struct Leadership {
    client: Client,
    leader: LeaderKey,
    lease: i64,
    election: String,
    fence: Fence,
    lost: watch::Receiver<bool>,
    keeper: JoinHandle<()>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("election", &self.election)
            .field("lease", &self.lease)
            .field("lost", &self.is_lost())
            .finish_non_exhaustive()
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        // Without keep-alives the lease, and with it the leadership, expires after its TTL.
        self.keeper.abort();
        self.fence.revoke();
    }
}

impl Leadership {
    /// Resolves when the lease is lost (keep-alive failed or expired, or the
    /// local deadline passed); resolves at once if it is already lost.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut lost = self.lost.clone();
        let fence = self.fence.clone();
        async move {
            tokio::select! {
                // An error means the keeper task ended, which also means lost.
                _ = lost.wait_for(|lost| *lost) => {}
                () = fence.expired() => tracing::warn!("leader lease deadline passed"),
            }
        }
    }

    /// Whether the lease has been lost.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow() || self.fence.check().is_err()
    }

    /// What this leader's writes are fenced with, for [`Store::fenced`] and dockerd.
    #[must_use]
    pub fn fence(&self) -> WriteFence {
        WriteFence {
            local: self.fence.clone(),
            key: self.leader.key().to_vec(),
            revision: self.leader.rev(),
        }
    }

    /// Gives leadership up at once, so another replica wins without waiting
    /// for the TTL; also what a replica does after losing it, so that its old
    /// candidacy (still in etcd when etcd restarted) does not delay the next.
    ///
    /// # Errors
    /// [`StoreError::Resign`] when etcd fails; the lease then expires by itself.
    pub async fn resign(mut self) -> Result<(), StoreError> {
        self.keeper.abort();
        self.fence.revoke();
        let resign = ResignOptions::new().with_leader(self.leader.clone());
        let result = self.client.resign(Some(resign)).await;
        // Revoking also removes the key if the resign did not reach etcd.
        let _ = self.client.lease_revoke(self.lease).await;
        result.map(drop).map_err(|source| StoreError::Resign {
            key: self.election.clone(),
            source,
        })
    }
}

/// Keeps the lease alive every `ttl / 3`, moving the fence's deadline with
/// each answer, and reports the first failure.
async fn keep_alive(
    mut client: Client,
    lease: i64,
    ttl: Duration,
    fence: Fence,
    lost: watch::Sender<bool>,
) {
    let interval = ttl / 3;
    let margin = ttl / MARGIN_SHARE;
    let reason = async {
        let (mut keeper, mut responses) = client
            .lease_keep_alive(lease)
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let sent = tokio::time::Instant::now();
            keeper.keep_alive().await.map_err(|e| e.to_string())?;
            match tokio::time::timeout(interval, responses.message()).await {
                Ok(Ok(Some(resp))) if resp.ttl() > 0 => {
                    let granted = Duration::from_secs(resp.ttl().unsigned_abs());
                    fence.renew(Fence::deadline_for(sent, granted, margin));
                }
                Ok(Ok(Some(_))) => return Err::<(), _>("lease expired".to_owned()),
                Ok(Ok(None)) => return Err("keep-alive stream closed".to_owned()),
                Ok(Err(err)) => return Err(err.to_string()),
                Err(_) => return Err("keep-alive not answered in time".to_owned()),
            }
            tokio::time::sleep(interval).await;
        }
    }
    .await
    .err()
    .unwrap_or_default();
    fence.revoke();
    tracing::warn!(lease, %reason, "leader lease lost");
    let _ = lost.send(true);
}

impl Store {
    /// Campaigns for leadership on `<prefix>/leader` under `identity`, and
    /// waits until this process is the leader.
    ///
    /// # Errors
    /// [`StoreError::Lease`] when no lease can be granted,
    /// [`StoreError::LeaseLost`] when the lease is lost while waiting,
    /// [`StoreError::Campaign`] when etcd fails.
    pub async fn campaign(&self, identity: &str, ttl: Duration) -> Result<Leadership, StoreError> {
        let election = self.keys().leader();
        let mut client = self.inner.streams.clone();
        self.withdraw(identity).await;
        let ttl_secs = ttl.as_secs().max(1);
        let ttl = Duration::from_secs(ttl_secs);
        let sent = tokio::time::Instant::now();
        let lease = client
            .lease_grant(i64::try_from(ttl_secs).unwrap_or(i64::MAX), None)
            .await
            .map_err(|source| StoreError::Lease { source })?
            .id();
        let fence = Fence::until(Fence::deadline_for(sent, ttl, ttl / MARGIN_SHARE));
        let (lost_tx, lost) = watch::channel(false);
        let keeper = tokio::spawn(keep_alive(
            client.clone(),
            lease,
            ttl,
            fence.clone(),
            lost_tx,
        ));
        let mut lost_while_waiting = lost.clone();
        let won = tokio::select! {
            won = client.campaign(election.as_str(), identity, lease) => match won {
                Ok(mut resp) => resp.take_leader().ok_or_else(|| StoreError::Campaign {
                    key: election.clone(),
                    source: etcd_client::Error::ElectError("no leader key in the answer".to_owned()),
                }),
                Err(source) => Err(StoreError::Campaign { key: election.clone(), source }),
            },
            _ = lost_while_waiting.wait_for(|lost| *lost) => {
                Err(StoreError::LeaseLost { key: election.clone() })
            }
        };
        let leader = match won {
            Ok(leader) => leader,
            Err(err) => {
                keeper.abort();
                // Withdraws the candidacy now rather than when the lease expires.
                let _ = client.lease_revoke(lease).await;
                return Err(err);
            }
        };
        tracing::info!(identity, %election, "won leader election");
        Ok(Leadership {
            client,
            leader,
            lease,
            election,
            fence,
            lost,
            keeper,
        })
    }
}

impl Store {
    /// The identity of the replica that leads now, if any: the candidate
    /// whose key under `<prefix>/leader/` is oldest, as etcd's election decides.
    ///
    /// # Errors
    /// [`StoreError::Get`] when etcd fails.
    pub async fn leader_identity(&self) -> Result<Option<String>, StoreError> {
        let election = format!("{}/", self.keys().leader());
        let options = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
            .with_limit(1);
        let resp = self
            .kv()
            .get(election.as_str(), Some(options))
            .await
            .map_err(|source| StoreError::Get {
                key: election.clone(),
                source,
            })?;
        Ok(resp
            .kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
    }

    /// Revokes the leases of `identity`'s own earlier candidacies, so the new
    /// one does not queue behind them. After etcd restarts, a lease whose
    /// keep-alive stream broke is still there, with its TTL started anew, and
    /// a resign tried while etcd was down did not reach it. Best effort: a
    /// candidacy left behind expires with its lease.
    async fn withdraw(&self, identity: &str) {
        let election = format!("{}/", self.keys().leader());
        let Ok(resp) = self
            .kv()
            .get(election.as_str(), Some(GetOptions::new().with_prefix()))
            .await
        else {
            return;
        };
        for kv in resp
            .kvs()
            .iter()
            .filter(|kv| kv.value() == identity.as_bytes())
        {
            tracing::info!(
                identity,
                lease = kv.lease(),
                "withdrawing an earlier candidacy"
            );
            let _ = self.kv().lease_revoke(kv.lease()).await;
        }
    }

    /// The same store, with every write fenced by `fence`: refused locally
    /// once the lease deadline passed, and by etcd once the leader key is gone.
    #[must_use]
    pub fn fenced(&self, fence: WriteFence) -> Store {
        Store {
            inner: self.inner.clone(),
            fence: Some(fence),
        }
    }
}
