//! The etcd store against a real etcd: CAS, unchanged writes, big applies,
//! watch across compaction and restarts, expiring events, secrets, leader election.

mod common;

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use swarmkeeper::store::{
    Event, Expect, PutOutcome, RecordPut, SecretKey, SourceRecord, Store, StoreError, WatchEvent,
};

use common::Etcd;

// A module of its own keeps this file short; a sibling `tests/*.rs` would be a
// test binary of its own, with an etcd of its own.
#[path = "store/listing.rs"]
mod listing;

fn put(kind: &str, name: &str, value: Value, expect: Expect) -> RecordPut {
    RecordPut {
        kind: kind.into(),
        name: name.into(),
        value,
        expect,
    }
}

fn stack(name: &str, replicas: u32) -> Value {
    json!({
        "apiVersion": "swarmkeeper.dev/v1alpha1",
        "kind": "Stack",
        "metadata": {"name": name},
        "spec": {"compose": {"services": {"web": {"image": "local/busybox:1", "deploy": {"replicas": replicas}}}}}
    })
}

async fn next_event(
    watch: &mut futures::stream::BoxStream<'static, Result<WatchEvent, StoreError>>,
) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("no watch event within 10 s")
        .expect("watch ended")
        .expect("watch yielded an error")
}

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
async fn watch_reports_puts_and_deletes_in_order() {
    let store = Etcd::shared().store("watch").await;
    let (_, revision) = store.list_records(None).await.unwrap();
    let mut watch = store.watch_desired(revision + 1).await.unwrap();
    store
        .put_records(vec![put("Stack", "web", stack("web", 1), Expect::Any)])
        .await
        .unwrap();
    store
        .delete_records(vec![("Stack".into(), "web".into(), None)])
        .await
        .unwrap();
    match next_event(&mut watch).await {
        WatchEvent::Put {
            kind,
            name,
            versioned,
        } => {
            assert_eq!((kind.as_str(), name.as_str()), ("Stack", "web"));
            assert_eq!(versioned.value, stack("web", 1));
        }
        other => panic!("expected a put, got {other:?}"),
    }
    assert_eq!(
        next_event(&mut watch).await,
        WatchEvent::Delete {
            kind: "Stack".into(),
            name: "web".into()
        }
    );
}

#[tokio::test]
async fn watch_survives_compaction_and_reports_deletions_by_relist() {
    let store = Etcd::shared().store("compaction").await;
    store
        .put_records(vec![
            put("Stack", "keep", stack("keep", 1), Expect::Any),
            put("Stack", "gone", stack("gone", 1), Expect::Any),
            put("Stack", "same", stack("same", 1), Expect::Any),
        ])
        .await
        .unwrap();
    let (_, revision) = store.list_records(None).await.unwrap();
    // Created but not polled: the consumer is paused while history is compacted.
    let mut watch = store.watch_desired(revision + 1).await.unwrap();

    store
        .put_records(vec![
            put("Stack", "keep", stack("keep", 2), Expect::Any),
            put("Stack", "new", stack("new", 1), Expect::Any),
        ])
        .await
        .unwrap();
    // Changes that a replayed history would show but a re-list cannot:
    // a second write of "keep", and a record that came and went.
    store
        .put_records(vec![
            put("Stack", "keep", stack("keep", 3), Expect::Any),
            put("Stack", "temp", stack("temp", 1), Expect::Any),
        ])
        .await
        .unwrap();
    store
        .delete_records(vec![
            ("Stack".into(), "gone".into(), None),
            ("Stack".into(), "temp".into(), None),
        ])
        .await
        .unwrap();
    let (_, now) = store.list_records(None).await.unwrap();
    store.compact(now).await.unwrap();

    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(match next_event(&mut watch).await {
            WatchEvent::Put {
                name, versioned, ..
            } => {
                let replicas =
                    &versioned.value["spec"]["compose"]["services"]["web"]["deploy"]["replicas"];
                format!("put {name} {replicas}")
            }
            WatchEvent::Delete { name, .. } => format!("delete {name}"),
        });
    }
    seen.sort();
    assert_eq!(seen, ["delete gone", "put keep 3", "put new 1"]);

    // Watching goes on from the re-list's revision: "same" and "temp" are
    // never reported, so the next event is the next write.
    store
        .put_records(vec![put("Stack", "after", stack("after", 1), Expect::Any)])
        .await
        .unwrap();
    match next_event(&mut watch).await {
        WatchEvent::Put { name, .. } => assert_eq!(name, "after"),
        other => panic!("expected the put after the re-list, got {other:?}"),
    }
}

#[tokio::test]
async fn watch_resumes_after_etcd_restarts() {
    let mut etcd = Etcd::start();
    let store = etcd.store("restart").await;
    let (_, revision) = store.list_records(None).await.unwrap();
    let mut watch = store.watch_desired(revision + 1).await.unwrap();
    store
        .put_records(vec![put(
            "Stack",
            "before",
            stack("before", 1),
            Expect::Any,
        )])
        .await
        .unwrap();
    assert!(
        matches!(next_event(&mut watch).await, WatchEvent::Put { name, .. } if name == "before")
    );

    etcd.stop();
    // Poll while etcd is down so the stream sees the break and backs off.
    let during = tokio::time::timeout(Duration::from_secs(1), watch.next()).await;
    assert!(during.is_err(), "no event while etcd is down: {during:?}");
    etcd.resume();

    store
        .put_records(vec![put("Stack", "after", stack("after", 1), Expect::Any)])
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(40), watch.next())
        .await
        .expect("watch did not resume within 40 s")
        .unwrap()
        .unwrap();
    assert!(
        matches!(event, WatchEvent::Put { ref name, .. } if name == "after"),
        "{event:?}"
    );
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
async fn events_expire_with_their_lease() {
    let etcd = Etcd::shared();
    let mut cfg = etcd.config("events-expire");
    cfg.event_ttl = Duration::from_secs(2);
    let store = Store::connect(cfg).await.unwrap();
    store
        .put_event(
            "Stack",
            "web",
            &Event::normal("Created", "service web_web created"),
        )
        .await
        .unwrap();
    store
        .put_event("Stack", "web", &Event::warning("Failed", "image missing"))
        .await
        .unwrap();
    let events = store.list_events(Some(("Stack", "web"))).await.unwrap();
    assert_eq!(events.len(), 2);

    // Both events sit on one lease with a short TTL.
    let prefix = format!("{}/events/", store.prefix());
    let raw = store
        .raw_client()
        .get(prefix, Some(etcd_client::GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let leases: Vec<i64> = raw.kvs().iter().map(|kv| kv.lease()).collect();
    assert!(leases[0] != 0 && leases[0] == leases[1], "{leases:?}");
    let ttl = store
        .raw_client()
        .lease_time_to_live(leases[0], None)
        .await
        .unwrap();
    assert!((1..=3).contains(&ttl.ttl()), "lease TTL {}", ttl.ttl());

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !store.list_events(None).await.unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "events outlived their lease"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn events_are_sorted_filtered_and_watched() {
    let store = Etcd::shared().store("events").await;
    let mut watch = store.watch_events(Some(("Stack", "web")), 0);
    // The first poll opens the watch; nothing has been written yet.
    let idle = tokio::time::timeout(Duration::from_millis(500), watch.next()).await;
    assert!(idle.is_err(), "{idle:?}");
    let mut first = Event::normal("Second", "written first, dated later");
    first.time += Duration::from_secs(60);
    store.put_event("Stack", "web", &first).await.unwrap();
    store
        .put_event("Stack", "web", &Event::normal("First", "dated earlier"))
        .await
        .unwrap();
    store
        .put_event("Stack", "other", &Event::warning("Other", "another record"))
        .await
        .unwrap();

    let web = store.list_events(Some(("Stack", "web"))).await.unwrap();
    let reasons: Vec<_> = web.iter().map(|(_, _, e)| e.reason.as_str()).collect();
    assert_eq!(reasons, ["First", "Second"]);
    let all = store.list_events(None).await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(
        all.iter()
            .any(|(_, name, e)| name == "other" && e.type_ == "Warning")
    );

    let watched = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((watched.0.as_str(), watched.1.as_str()), ("Stack", "web"));
    assert_eq!(watched.2, first);
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

#[tokio::test]
async fn second_campaigner_leads_only_after_the_first_resigns() {
    let etcd = Etcd::shared();
    let cfg = etcd.config("election");
    let first = Store::connect(cfg.clone()).await.unwrap();
    let second = Store::connect(cfg).await.unwrap();

    let leader = first
        .campaign("replica-1", Duration::from_secs(5))
        .await
        .unwrap();
    let mut waiting =
        tokio::spawn(async move { second.campaign("replica-2", Duration::from_secs(5)).await });
    let early = tokio::time::timeout(Duration::from_secs(2), &mut waiting).await;
    assert!(
        early.is_err(),
        "the second campaigner won while the first led"
    );
    assert!(!leader.is_lost());

    leader.resign().await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the second campaigner did not win after the resign")
        .unwrap()
        .unwrap();
    assert!(!next.is_lost());
    next.resign().await.unwrap();
}

#[tokio::test]
async fn leadership_is_lost_when_etcd_goes_away() {
    let mut etcd = Etcd::start();
    let store = etcd.store("lost").await;
    let leader = store
        .campaign("replica-1", Duration::from_secs(3))
        .await
        .unwrap();
    let lost = leader.lost();
    etcd.stop();
    tokio::time::timeout(Duration::from_secs(5), lost)
        .await
        .expect("leadership was not reported lost within 5 s of etcd stopping");
    assert!(leader.is_lost());
}

#[tokio::test]
async fn requests_fail_transiently_while_etcd_is_down() {
    let mut etcd = Etcd::start();
    let store = etcd.store("down").await;
    etcd.stop();
    let started = std::time::Instant::now();
    let err = store.get_record("Stack", "web").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(err.kind(), "get");

    let down = Store::connect(etcd.config("down")).await.unwrap_err();
    assert!(down.to_string().contains(&etcd.endpoint()), "{down}");
    etcd.resume();
    assert!(store.get_record("Stack", "web").await.unwrap().is_none());
}

#[tokio::test]
async fn connects_over_tls_with_a_client_certificate() {
    let etcd = Etcd::start_tls();
    let store = etcd.store("tls").await;
    store
        .put_records(vec![put("Stack", "web", stack("web", 1), Expect::Any)])
        .await
        .unwrap();
    assert!(store.get_record("Stack", "web").await.unwrap().is_some());

    // Without the client certificate etcd refuses the connection.
    let mut anonymous = etcd.config("tls");
    anonymous.cert = None;
    anonymous.key = None;
    assert!(Store::connect(anonymous).await.is_err());
}

#[tokio::test]
async fn authenticates_with_a_password_file_and_never_shows_the_password() {
    let etcd = Etcd::start();
    let mut admin = etcd.store("auth").await.raw_client();
    admin.user_add("root", "correct-horse", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.auth_enable().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "correct-horse\n").unwrap();
    let mut cfg = etcd.config("auth");
    cfg.user = Some("root".into());
    cfg.password_file = Some(password_file.clone());
    let store = Store::connect(cfg.clone()).await.unwrap();
    store
        .put_status("Stack", "web", &json!({"phase": "Ready"}))
        .await
        .unwrap();
    assert!(!format!("{cfg:?} {store:?}").contains("correct-horse"));

    std::fs::write(&password_file, "wrong-battery\n").unwrap();
    let err = Store::connect(cfg).await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(matches!(err, StoreError::Connect { .. }), "{shown}");
    assert!(!shown.contains("wrong-battery"), "{shown}");
}
