//! `run --sync` with a push webhook: a signed POST makes the leader fetch at
//! once (the poll interval is an hour, so nothing else could); unsigned or
//! wrongly signed POSTs are refused with 401 and change nothing; the secret
//! never shows.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use swarmkeeper::store::Store;

use super::harness::{Guard, Repo, eventually, post, serve, stack_yaml, status_line, swarmkeeper};
use crate::common::Etcd;
use crate::common::http::{free_port, http_get};
use crate::common::swarm::require_swarm_manager;

const SECRET: &str = "hook-CANARY-9f3b";

/// Kills the controller when the test ends, even when it fails.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signature(body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

async fn applied(store: &Store) -> Option<String> {
    store
        .get_source("hooked")
        .await
        .expect("etcd")
        .and_then(|s| s.commit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_push_makes_the_sync_fetch_at_once_and_an_unsigned_one_changes_nothing() {
    require_swarm_manager();
    let stack = format!("skw{:08x}", rand::random::<u32>());
    let _guard = Guard(vec![format!("Stack.{stack}")]);
    let store = Etcd::shared().store("gitops-hook").await;
    let repo = Repo::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let secret_file = dir.path().join("hook-secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).expect("write");
    let log = dir.path().join("run.log");
    let web = "desired/web.yaml";
    let first = repo.commit(&[(web, &stack_yaml(&stack, "1"))], "web 1");

    let (receiver, received) = serve(|_| Some(status_line(200, "OK", "")));
    let addr = format!("127.0.0.1:{}", free_port());
    let sync = format!(
        "source=hooked,repo={},path=desired,interval=1h,webhook-secret-file={},cache-dir={}",
        repo.url(),
        secret_file.display(),
        dir.path().join("cache").display()
    );
    let child = swarmkeeper(&store)
        .args([
            "run",
            "--http-addr",
            &addr,
            "--resync",
            "1h",
            "--sync",
            &sync,
        ])
        .args(["--notify-webhook", &format!("http://{receiver}/notify")])
        .args(["--notify-min-interval", "1s"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("run starts");
    let _running = Running(child);
    eventually(
        Duration::from_secs(30),
        "the leader applies the first commit",
        || {
            let store = store.clone();
            let first = first.clone();
            async move { applied(&store).await == Some(first) }
        },
    )
    .await;

    let second = repo.commit(&[(web, &stack_yaml(&stack, "2"))], "web 2");
    let body = format!(r#"{{"ref":"refs/heads/main","after":"{second}"}}"#);
    let hook = "/hooks/git/hooked";
    let forged = format!("sha256={}", "0".repeat(64));
    assert_eq!(post(&addr, hook, &[], &body), 401, "unsigned");
    assert_eq!(
        post(&addr, hook, &[("X-Hub-Signature-256", &forged)], &body),
        401
    );
    assert_eq!(
        post(&addr, hook, &[("X-Gitea-Signature", "00ff")], &body),
        401
    );
    assert_eq!(
        post(&addr, hook, &[("X-Gitlab-Token", "wrong")], &body),
        401
    );
    let signed = format!("sha256={}", signature(&body));
    assert_eq!(
        post(
            &addr,
            "/hooks/git/other",
            &[("X-Hub-Signature-256", &signed)],
            &body
        ),
        404
    );
    // Refused pushes woke nothing: a second later the sync has not even fetched.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let source = store
        .get_source("hooked")
        .await
        .expect("etcd")
        .expect("source");
    assert_eq!(source.seen.as_deref(), Some(first.as_str()));

    // A GitHub-signed push: applied at once, the next poll being an hour away.
    let posted = Instant::now();
    assert_eq!(
        post(&addr, hook, &[("X-Hub-Signature-256", &signed)], &body),
        202
    );
    eventually(
        Duration::from_secs(5),
        "the pushed commit is applied",
        || {
            let store = store.clone();
            let second = second.clone();
            async move { applied(&store).await == Some(second) }
        },
    )
    .await;
    eprintln!("applied {:?} after the push", posted.elapsed());

    // Gitea's header, the same way.
    let third = repo.commit(&[(web, &stack_yaml(&stack, "3"))], "web 3");
    let body = format!(r#"{{"ref":"refs/heads/main","after":"{third}"}}"#);
    let gitea = signature(&body);
    assert_eq!(
        post(&addr, hook, &[("X-Gitea-Signature", &gitea)], &body),
        202
    );
    eventually(Duration::from_secs(5), "the Gitea push is applied", || {
        let store = store.clone();
        let third = third.clone();
        async move { applied(&store).await == Some(third) }
    })
    .await;
    let (code, sources) = http_get(&addr, "/sources").expect("/sources answers");
    assert_eq!(code, 200, "{sources}");
    assert!(
        sources.contains(&third) && sources.contains("\"hooked\""),
        "{sources}"
    );

    // A bad commit is a failing sync, the next good one its recovery: one message each.
    let pushed = |commit: &str| {
        let body = format!(r#"{{"after":"{commit}"}}"#);
        let signed = format!("sha256={}", signature(&body));
        assert_eq!(
            post(&addr, hook, &[("X-Hub-Signature-256", &signed)], &body),
            202
        );
    };
    let events = || {
        let received = received.clone();
        move || {
            let events: Vec<String> = received
                .lock()
                .unwrap()
                .iter()
                .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
                .filter(|m| m["subject"] == "Source/hooked")
                .map(|m| m["event"].as_str().unwrap_or_default().to_owned())
                .collect();
            async move { events == ["sync-failing", "sync-recovered"] }
        }
    };
    let bad = "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Network\nmetadata:\n  name: n\nspec:\n  colour: red\n";
    pushed(&repo.commit(&[("desired/bad.yaml", bad)], "a typo"));
    eventually(Duration::from_secs(5), "the commit is refused", || {
        let store = store.clone();
        async move {
            let source = store
                .get_source("hooked")
                .await
                .expect("etcd")
                .expect("source");
            source.error.is_some()
        }
    })
    .await;
    pushed(&repo.commit(&[("desired/bad.yaml", "")], "no typo"));
    eventually(
        Duration::from_secs(10),
        "sync-failing, then sync-recovered",
        events(),
    )
    .await;

    // The secret is nowhere: logs, events, status, notifications.
    let sources = sources
        + &received
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.body.clone())
            .collect::<String>();
    let mut shown = vec![std::fs::read_to_string(&log).expect("the log"), sources];
    for (_, _, e) in store.list_events(None).await.expect("etcd") {
        shown.push(serde_json::to_string(&e).expect("json"));
    }
    let (records, _) = store.list_records(None).await.expect("etcd");
    for r in records {
        let status = store.get_status(&r.kind, &r.name).await.expect("etcd");
        shown.push(format!("{:?}", status.map(|s| s.value)));
    }
    for text in shown {
        assert!(
            !text.contains(SECRET),
            "the webhook secret shown in: {text}"
        );
    }
}
