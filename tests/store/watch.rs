//! Watching desired records: puts and deletes in order, a re-list after
//! compaction, and resuming after etcd restarts.

use std::time::Duration;

use futures::StreamExt;
use swarmkeeper::store::{Expect, StoreError, WatchEvent};

use super::common::Etcd;
use super::{put, stack};

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
