//! Leader election: one leader at a time, and leadership lost when etcd goes away.

use std::time::Duration;

use swarmkeeper::store::Store;

use super::common::Etcd;

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
