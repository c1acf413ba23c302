//! Records, status, sealed secrets and sources: CAS, unchanged writes,
//! conflicts checked before writing, and applies bigger than one transaction.

use serde_json::json;
use swarmkeeper::store::{Expect, PutOutcome, SecretKey, SourceRecord, StoreError};

use super::common::Etcd;
use super::{put, stack};

#[tokio::test]
async fn put_get_list_round_trip() {
    let store = Etcd::shared().store("round-trip").await;
    let outcomes = store
        .put_records(vec![
            put("Stack", "web", stack("web", 1), Expect::Absent),
            put("Network", "front", json!({"kind": "Network"}), Expect::Any),
        ])
        .await
        .unwrap();
    assert_eq!(outcomes, [PutOutcome::Created, PutOutcome::Created]);

    let web = store.get_record("Stack", "web").await.unwrap().unwrap();
    assert_eq!(web.value, stack("web", 1));
    assert_eq!(web.mod_revision, web.create_revision);
    assert!(store.get_record("Stack", "absent").await.unwrap().is_none());

    let (stacks, revision) = store.list_records(Some("Stack")).await.unwrap();
    assert_eq!(stacks.len(), 1);
    assert_eq!(
        (stacks[0].kind.as_str(), stacks[0].name.as_str()),
        ("Stack", "web")
    );
    assert!(revision >= web.mod_revision);
    let (all, _) = store.list_records(None).await.unwrap();
    assert_eq!(all.len(), 2);
}

#[tokio::test]
async fn unchanged_put_keeps_mod_revision() {
    let store = Etcd::shared().store("unchanged").await;
    store
        .put_records(vec![put("Stack", "web", stack("web", 1), Expect::Any)])
        .await
        .unwrap();
    let before = store.get_record("Stack", "web").await.unwrap().unwrap();

    // Same content with object keys in another order is still unchanged.
    let reordered = json!({
        "spec": {"compose": {"services": {"web": {"deploy": {"replicas": 1}, "image": "local/busybox:1"}}}},
        "metadata": {"name": "web"},
        "kind": "Stack",
        "apiVersion": "swarmkeeper.dev/v1alpha1"
    });
    let outcomes = store
        .put_records(vec![put("Stack", "web", reordered, Expect::Any)])
        .await
        .unwrap();
    assert_eq!(outcomes, [PutOutcome::Unchanged]);
    let after = store.get_record("Stack", "web").await.unwrap().unwrap();
    assert_eq!(after.mod_revision, before.mod_revision);

    let outcomes = store
        .put_records(vec![put(
            "Stack",
            "web",
            stack("web", 2),
            Expect::ModRevision(before.mod_revision),
        )])
        .await
        .unwrap();
    assert_eq!(outcomes, [PutOutcome::Configured]);
    let changed = store.get_record("Stack", "web").await.unwrap().unwrap();
    assert!(changed.mod_revision > before.mod_revision);
    assert_eq!(changed.create_revision, before.create_revision);
}

#[tokio::test]
async fn stale_revision_and_existing_absent_are_conflicts() {
    let store = Etcd::shared().store("cas").await;
    store
        .put_records(vec![put("Stack", "web", stack("web", 1), Expect::Absent)])
        .await
        .unwrap();
    let first = store.get_record("Stack", "web").await.unwrap().unwrap();
    store
        .put_records(vec![put("Stack", "web", stack("web", 2), Expect::Any)])
        .await
        .unwrap();

    let stale = store
        .put_records(vec![put(
            "Stack",
            "web",
            stack("web", 3),
            Expect::ModRevision(first.mod_revision),
        )])
        .await
        .unwrap_err();
    assert!(
        matches!(&stale, StoreError::Conflict { key } if key.ends_with("/desired/Stack/web")),
        "{stale}"
    );

    let exists = store
        .put_records(vec![
            put("Stack", "other", stack("other", 1), Expect::Absent),
            put("Stack", "web", stack("web", 4), Expect::Absent),
        ])
        .await
        .unwrap_err();
    assert!(matches!(exists, StoreError::Conflict { .. }), "{exists}");
    // Expectations are checked before anything is written.
    assert!(store.get_record("Stack", "other").await.unwrap().is_none());
    let current = store.get_record("Stack", "web").await.unwrap().unwrap();
    assert_eq!(current.value, stack("web", 2));

    let delete = store
        .delete_records(vec![(
            "Stack".into(),
            "web".into(),
            Some(first.mod_revision),
        )])
        .await
        .unwrap_err();
    assert!(matches!(delete, StoreError::Conflict { .. }), "{delete}");
    let deleted = store
        .delete_records(vec![
            ("Stack".into(), "web".into(), Some(current.mod_revision)),
            ("Stack".into(), "never".into(), None),
        ])
        .await
        .unwrap();
    assert_eq!(deleted, [true, false]);
}

#[tokio::test]
async fn duplicate_keys_in_one_write_are_rejected() {
    let store = Etcd::shared().store("duplicate").await;
    let err = store
        .put_records(vec![
            put("Stack", "web", stack("web", 1), Expect::Any),
            put("Stack", "web", stack("web", 2), Expect::Any),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::DuplicateKey { .. }), "{err}");
}

#[tokio::test]
async fn apply_of_more_records_than_one_transaction_holds() {
    let store = Etcd::shared().store("big-apply").await;
    let puts = |replicas| {
        (0..300)
            .map(|i| {
                put(
                    "Stack",
                    &format!("s{i:03}"),
                    stack("s", replicas),
                    Expect::Any,
                )
            })
            .collect::<Vec<_>>()
    };
    let created = store.put_records(puts(1)).await.unwrap();
    assert_eq!(created.len(), 300);
    assert!(created.iter().all(|o| *o == PutOutcome::Created));
    let again = store.put_records(puts(1)).await.unwrap();
    assert!(again.iter().all(|o| *o == PutOutcome::Unchanged));
    let changed = store.put_records(puts(2)).await.unwrap();
    assert!(changed.iter().all(|o| *o == PutOutcome::Configured));

    let (listed, _) = store.list_records(Some("Stack")).await.unwrap();
    assert_eq!(listed.len(), 300, "listing pages past 256 keys");
    let deletes = listed
        .iter()
        .map(|r| ("Stack".to_owned(), r.name.clone(), None))
        .collect();
    let deleted = store.delete_records(deletes).await.unwrap();
    assert!(deleted.iter().all(|existed| *existed));
    assert!(store.list_records(None).await.unwrap().0.is_empty());
}

#[tokio::test]
async fn status_round_trip() {
    let store = Etcd::shared().store("status").await;
    let status = json!({"phase": "Ready", "observedRevision": 7});
    store.put_status("Stack", "web", &status).await.unwrap();
    assert_eq!(
        store
            .get_status("Stack", "web")
            .await
            .unwrap()
            .unwrap()
            .value,
        status
    );
    // Status keys are not desired records.
    assert!(store.list_records(None).await.unwrap().0.is_empty());
    assert!(store.delete_status("Stack", "web").await.unwrap());
    assert!(!store.delete_status("Stack", "web").await.unwrap());
    assert!(store.get_status("Stack", "web").await.unwrap().is_none());
}

#[tokio::test]
async fn secrets_are_stored_sealed_and_sources_round_trip() {
    let store = Etcd::shared().store("secrets").await;
    let key = SecretKey::generate();
    store
        .put_secret("db-admin", &key.seal("db-admin", b"s3cr3t-value"))
        .await
        .unwrap();
    let sealed = store.get_secret("db-admin").await.unwrap().unwrap();
    assert!(!sealed.windows(12).any(|w| w == b"s3cr3t-value"));
    assert_eq!(
        key.open("db-admin", &sealed).unwrap().expose(),
        b"s3cr3t-value"
    );
    assert!(store.delete_secret("db-admin").await.unwrap());
    assert!(store.get_secret("db-admin").await.unwrap().is_none());

    let source = SourceRecord {
        records: vec!["Stack/web".into(), "Network/front".into()],
        commit: Some("0123abc".into()),
        applied_at: jiff::Timestamp::now(),
        ..SourceRecord::empty()
    };
    store.put_source("prod", &source).await.unwrap();
    assert_eq!(store.get_source("prod").await.unwrap(), Some(source));
    assert_eq!(store.get_source("staging").await.unwrap(), None);
}
