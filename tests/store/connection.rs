//! Reaching etcd: transient errors while it is down, TLS with a client
//! certificate, and password authentication that never shows the password.

use std::time::Duration;

use serde_json::json;
use swarmkeeper::store::{Expect, Store, StoreError};

use super::common::Etcd;
use super::{put, stack};

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
