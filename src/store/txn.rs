//! The one place the store's writes go through: a transaction, fenced when the store is.
//!
//! On a leader's store ([`Store::fenced`]) each write first checks the local
//! lease deadline, then carries a compare on the leader key's creation
//! revision. etcd deletes that key with the lease, so a replica that lost its
//! lease (paused past its TTL, cut off from etcd) cannot land a write even if
//! its local clock was wrong: the transaction fails, and the store says
//! [`StoreError::Deposed`] rather than a conflict.

use etcd_client::{Compare, CompareOp, TxnOp, TxnOpResponse, TxnResponse};

use super::{Store, StoreError};

/// What failed, for the error of a transaction etcd did not answer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Write {
    Put,
    Delete,
}

impl Write {
    fn error(self, key: String, source: etcd_client::Error) -> StoreError {
        match self {
            Write::Put => StoreError::Put { key, source },
            Write::Delete => StoreError::Delete { key, source },
        }
    }
}

impl Store {
    /// Runs `ops` if every compare holds, else `otherwise` (reads that say
    /// why); `key` names the write in errors.
    ///
    /// # Errors
    /// [`StoreError::Deposed`] when the store is fenced and this replica no
    /// longer leads (nothing was written), [`StoreError::Put`] or
    /// [`StoreError::Delete`] when etcd fails.
    pub(crate) async fn commit(
        &self,
        write: Write,
        key: &str,
        mut compares: Vec<Compare>,
        ops: Vec<TxnOp>,
        mut otherwise: Vec<TxnOp>,
    ) -> Result<TxnResponse, StoreError> {
        if let Some(fence) = &self.fence {
            fence.local.check().map_err(|_| deposed(key))?;
            compares.push(Compare::create_revision(
                fence.key.clone(),
                CompareOp::Equal,
                fence.revision,
            ));
            // Read last, so the caller's reads keep their positions.
            otherwise.push(TxnOp::get(fence.key.clone(), None));
        }
        let txn = etcd_client::Txn::new()
            .when(compares)
            .and_then(ops)
            .or_else(otherwise);
        let resp = self
            .kv()
            .txn(txn)
            .await
            .map_err(|source| write.error(key.to_owned(), source))?;
        if !resp.succeeded()
            && let Some(fence) = &self.fence
            && !still_leads(&resp, fence.revision)
        {
            // etcd says the lease is gone: stop trusting the local deadline too.
            fence.local.revoke();
            return Err(deposed(key));
        }
        Ok(resp)
    }

    /// Writes `value` at `key`, with `options` (a lease), unconditionally but for the fence.
    pub(crate) async fn put_raw(
        &self,
        key: &str,
        value: Vec<u8>,
        options: Option<etcd_client::PutOptions>,
    ) -> Result<(), StoreError> {
        let op = TxnOp::put(key, value, options);
        self.commit(Write::Put, key, Vec::new(), vec![op], Vec::new())
            .await
            .map(drop)
    }

    /// Deletes `key` (with `options`: a prefix), unconditionally but for the
    /// fence; how many keys went.
    pub(crate) async fn delete_raw(
        &self,
        key: &str,
        options: Option<etcd_client::DeleteOptions>,
    ) -> Result<i64, StoreError> {
        let op = TxnOp::delete(key, options);
        let resp = self
            .commit(Write::Delete, key, Vec::new(), vec![op], Vec::new())
            .await?;
        Ok(resp
            .op_responses()
            .iter()
            .map(|r| match r {
                TxnOpResponse::Delete(d) => d.deleted(),
                _ => 0,
            })
            .sum())
    }
}

fn deposed(key: &str) -> StoreError {
    StoreError::Deposed {
        key: key.to_owned(),
    }
}

/// Whether the leader key read by the failed transaction's last read is still ours.
fn still_leads(resp: &TxnResponse, revision: i64) -> bool {
    matches!(resp.op_responses().last(), Some(TxnOpResponse::Get(get))
        if get.kvs().first().is_some_and(|kv| kv.create_revision() == revision))
}
