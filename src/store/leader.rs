//! Leader election on `<prefix>/leader` with etcd's election API and a kept-alive lease.
//!
//! # Guarantees
//! [`Leadership::lost`] resolves as soon as one keep-alive fails or is not
//! answered in time. That is earlier than the lease actually expires, so the
//! old leader always stops before another replica can win.

use std::future::Future;
use std::time::Duration;

use etcd_client::{Client, LeaderKey, ResignOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Store, StoreError};

/// Held while this process is the leader.
pub struct Leadership {
    client: Client,
    leader: LeaderKey,
    lease: i64,
    election: String,
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
    }
}

impl Leadership {
    /// Resolves when the lease is lost (keep-alive failed or expired); resolves
    /// at once if it is already lost.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut lost = self.lost.clone();
        async move {
            // An error means the keeper task ended, which also means lost.
            let _ = lost.wait_for(|lost| *lost).await;
        }
    }

    /// Whether the lease has been lost.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Gives leadership up at once, so another replica wins without waiting for the TTL.
    ///
    /// # Errors
    /// [`StoreError::Resign`] when etcd fails; the lease then expires by itself.
    pub async fn resign(mut self) -> Result<(), StoreError> {
        self.keeper.abort();
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

/// Keeps the lease alive every `ttl / 3` and reports the first failure.
async fn keep_alive(mut client: Client, lease: i64, ttl: Duration, lost: watch::Sender<bool>) {
    let interval = ttl / 3;
    let reason = async {
        let (mut keeper, mut responses) = client
            .lease_keep_alive(lease)
            .await
            .map_err(|e| e.to_string())?;
        loop {
            keeper.keep_alive().await.map_err(|e| e.to_string())?;
            match tokio::time::timeout(interval, responses.message()).await {
                Ok(Ok(Some(resp))) if resp.ttl() > 0 => {}
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
        let ttl_secs = ttl.as_secs().max(1);
        let lease = client
            .lease_grant(i64::try_from(ttl_secs).unwrap_or(i64::MAX), None)
            .await
            .map_err(|source| StoreError::Lease { source })?
            .id();
        let (lost_tx, lost) = watch::channel(false);
        let keeper = tokio::spawn(keep_alive(
            client.clone(),
            lease,
            Duration::from_secs(ttl_secs),
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
            lost,
            keeper,
        })
    }
}
