//! The controllers in-process, for tests that count Docker writes or drive
//! single passes: built like `swarmkeeper run` builds them, scoped to the
//! test's etcd prefix.

use std::sync::Arc;
use std::time::Duration;

use swarmkeeper::controllers::status::Status;
use swarmkeeper::controllers::{Context, Controllers, RecordKey};
use swarmkeeper::docker::Docker;
use swarmkeeper::runtime::run_once;
use swarmkeeper::store::{Keyring, SecretKey, Store};

/// Controllers on `store`, with a fresh secret key and a Docker connection
/// scoped like the binary's, so both see the same objects.
pub async fn controllers(store: &Store) -> Arc<Controllers> {
    let docker = Docker::connect()
        .await
        .expect("dockerd must answer: run hack/setup.sh")
        .scoped(store.prefix());
    Arc::new(Controllers {
        ctx: Context::new(
            store.clone(),
            docker,
            Some(Keyring::new(SecretKey::generate(), None)),
            Duration::from_secs(300),
        ),
        metrics: None,
    })
}

/// One reconcile of each key; panics on a reconcile error.
pub async fn pass(controllers: &Arc<Controllers>, keys: &[RecordKey]) {
    for (key, result) in run_once(keys.to_vec(), controllers.clone(), 4).await {
        if let Err(err) = result {
            panic!("reconcile of {key} failed: {err}");
        }
    }
}

/// The status of a record, which must read back when present.
pub async fn status(store: &Store, key: &RecordKey) -> Option<Status> {
    store
        .get_status(key.kind.as_str(), &key.name)
        .await
        .expect("etcd answers")
        .map(|v| serde_json::from_value(v.value).expect("a status that reads back"))
}
