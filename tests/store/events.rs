//! Events: they expire with their lease, and are listed sorted, filtered and watched.

use std::time::Duration;

use futures::StreamExt;
use swarmkeeper::store::{Event, Store};

use super::common::Etcd;

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
