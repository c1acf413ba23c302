//! Who may ask what: `/readyz` names what is down, `/drift` and `/events` need
//! the token, and `run` refuses an empty token file.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use swarmkeeper::http;

use super::common::Etcd;
use super::{Served, TOKEN, proxied_dockerd};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_needs_etcd_and_dockerd_not_leadership_and_names_what_is_down() {
    let mut etcd = Etcd::start();
    let store = etcd.store("http-readyz").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (docker, proxy) = proxied_dockerd(dir.path()).await;
    let served = Served::new(&store, docker, Some(TOKEN));

    // A standby (never led) with both answering is ready; no token is asked.
    let (code, body) = served.get("/readyz", None).await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, "ready\n"));

    proxy.abort();
    let _ = proxy.await;
    let started = Instant::now();
    let (code, body) = served.get("/readyz", None).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.starts_with("dockerd: "), "{body}");
    assert!(!body.contains("etcd"), "etcd still answers: {body}");

    etcd.stop();
    let (code, body) = served.get("/readyz", None).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body.contains("etcd: ") && body.contains("dockerd: "),
        "{body}"
    );
    // Both checks at once, each bounded: a probe never waits for the store's 10 s timeout.
    assert!(
        started.elapsed() < http::READY_TIMEOUT * 2 + Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// 3. The token

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_and_events_need_the_token_and_the_rest_stays_open() {
    let store = Etcd::shared().store("http-token").await;
    let served = Served::on_dockerd(&store, Some(TOKEN)).await;
    served.state.set_leading(true);
    for path in ["/drift", "/events"] {
        for token in [None, Some("wrong"), Some(&TOKEN[..TOKEN.len() - 1])] {
            let (code, body) = served.get(path, token).await;
            assert_eq!(
                code,
                StatusCode::UNAUTHORIZED,
                "{path} with {token:?}: {body}"
            );
            assert!(!body.contains(TOKEN), "{body}");
        }
        let (code, body) = served.get(path, Some(TOKEN)).await;
        assert_eq!(code, StatusCode::OK, "{path}: {body}");
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (code, body) = served.get(path, None).await;
        assert_eq!(code, StatusCode::OK, "{path}: {body}");
        assert!(!body.contains(TOKEN), "{body}");
    }

    // Without a token configured, nothing asks for one; a standby has no drift to serve.
    let open = Served::on_dockerd(&store, None).await;
    let (code, body) = open.get("/drift", None).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("standby"), "{body}");
    open.state.set_leading(true);
    let (code, body) = open.get("/drift", None).await;
    assert_eq!(
        (code, body.trim()),
        (
            StatusCode::OK,
            r#"{
  "records": []
}"#
        )
    );
}

#[test]
fn run_refuses_an_empty_token_file_named_by_its_environment_variable() {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), "\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_swarmkeeper"))
        .arg("run")
        .env("SWARMKEEPER_HTTP_TOKEN_FILE", file.path())
        // Nothing listens there: the token is checked before etcd is asked.
        .env("SWARMKEEPER_ETCD_ENDPOINTS", "http://127.0.0.1:1")
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("--http-token-file") && stderr.contains("holds no token"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------
// 4. /events
