//! Listings that outgrow one gRPC answer, and following the event log from a listing.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use swarmkeeper::store::{Event, Expect, PutOutcome};

use super::{Etcd, put};

/// A bit under etcd's default value limit (`--max-request-bytes`, 1.5 MiB):
/// four of them are more than the 4 MiB the client takes in one answer.
const LARGE: usize = 1_200_000;

fn large_record(name: &str) -> Value {
    json!({"kind": "Stack", "metadata": {"name": name}, "spec": {"blob": "x".repeat(LARGE)}})
}

fn blob_len(value: &Value) -> usize {
    value["spec"]["blob"].as_str().map_or(0, str::len)
}

#[tokio::test]
async fn large_records_are_listed_in_pages_that_fit() {
    let store = Etcd::shared().store("large-records").await;
    let before = store.list_records(None).await.unwrap().1;
    // One apply of all four: more than etcd takes in one request, so it is
    // written in transactions that each fit, and read back in halves.
    let large = |expect| -> Vec<_> {
        ["big-a", "big-b", "big-c", "big-d"]
            .iter()
            .map(|name| put("Stack", name, large_record(name), expect))
            .collect()
    };
    store.put_records(large(Expect::Absent)).await.unwrap();
    let again = store.put_records(large(Expect::Any)).await.unwrap();
    assert!(
        again.iter().all(|o| *o == PutOutcome::Unchanged),
        "{again:?}"
    );
    let small: Vec<_> = (0..5)
        .map(|i| {
            put(
                "Network",
                &format!("small-{i}"),
                json!({"kind": "Network"}),
                Expect::Absent,
            )
        })
        .collect();
    store.put_records(small).await.unwrap();

    let (records, revision) = store.list_records(None).await.unwrap();
    assert_eq!(records.len(), 9);
    assert!(revision > before);
    let large: Vec<_> = records.iter().filter(|r| r.kind == "Stack").collect();
    assert_eq!(large.len(), 4);
    assert!(large.iter().all(|r| blob_len(&r.versioned.value) == LARGE));
    let (stacks, _) = store.list_records(Some("Stack")).await.unwrap();
    let names: Vec<_> = stacks.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["big-a", "big-b", "big-c", "big-d"]);

    // A new leader lists, then watches from the listing's revision on; a watch from
    // before the large writes catches up through them.
    let mut watch = store.watch_desired(before + 1).await.unwrap();
    for _ in 0..9 {
        tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("no watch event within 10 s")
            .expect("watch ended")
            .expect("watch yielded an error");
    }
}

#[tokio::test]
async fn large_events_are_listed_in_pages_that_fit() {
    let store = Etcd::shared().store("large-events").await;
    for i in 0..4 {
        let event = Event::warning("Failed", format!("{i}{}", "y".repeat(LARGE)));
        store.put_event("Stack", "web", &event).await.unwrap();
    }
    store
        .put_event("Stack", "web", &Event::normal("Small", "a small one"))
        .await
        .unwrap();
    let events = store.list_events(Some(("Stack", "web"))).await.unwrap();
    assert_eq!(events.len(), 5);
    let (all, _) = store.list_events_at_revision(None).await.unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(
        all.iter()
            .filter(|(_, _, e)| e.message.len() == LARGE + 1)
            .count(),
        4
    );
}

#[tokio::test]
async fn events_watched_from_a_listing_show_what_came_after_it_once() {
    let store = Etcd::shared().store("events-from-listing").await;
    let record = Some(("Stack", "web"));
    store
        .put_event(
            "Stack",
            "web",
            &Event::normal("Listed", "before the listing"),
        )
        .await
        .unwrap();
    let (listed, revision) = store.list_events_at_revision(record).await.unwrap();
    assert_eq!(listed.len(), 1);
    // Written after the listing but before the watch starts: a watch "from now"
    // missed it.
    store
        .put_event(
            "Stack",
            "web",
            &Event::normal("Between", "after the listing"),
        )
        .await
        .unwrap();
    let mut watch = store.watch_events(record, revision + 1);
    let next = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("the event written after the listing is watched")
        .expect("the watch does not end")
        .expect("no error");
    assert_eq!(next.2.reason, "Between");
    let more = tokio::time::timeout(Duration::from_millis(500), watch.next()).await;
    assert!(more.is_err(), "shown again or out of nowhere: {more:?}");
}
