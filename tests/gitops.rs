//! GitOps end to end: a local bare Git repository made by the test, the
//! `swarmkeeper` binary, the real etcd and swarm. `sync` follows commits, a
//! revert, refuses a bad commit whole; sources own their records; git
//! credentials never show; the push webhook of `run --sync`; notifications.

mod common;

use serde_json::Value;
use swarmkeeper::api::Kind;
use swarmkeeper::controllers::RecordKey;
use swarmkeeper::docker::labels::OWNER;
use swarmkeeper::gitops::owner;

use common::Etcd;
use common::controllers::{controllers, pass, status};
use common::http::last_write;
use common::swarm::{docker_ok, names_with_label, require_swarm_manager};

/// Repositories, the binary, small HTTP servers, the cleanup guard.
#[path = "gitops/harness.rs"]
mod harness;
/// Notifications to receivers the test runs.
#[path = "gitops/notify.rs"]
mod notify;
/// `run --sync` and its push webhook.
#[path = "gitops/webhook.rs"]
mod webhook;

use harness::{Guard, Repo, network_yaml, run, serve, stack_yaml, status_line};

/// The `VERSION` a stack's `web` service runs with, as dockerd has it.
fn version(stack: &str) -> String {
    let services = names_with_label("service", &format!("{OWNER}=Stack.{stack}"));
    assert_eq!(services.len(), 1, "{services:?}");
    let env = docker_ok(&[
        "service",
        "inspect",
        &services[0],
        "--format",
        "{{json .Spec.TaskTemplate.ContainerSpec.Env}}",
    ]);
    let env: Vec<String> = serde_json::from_str(&env).expect("a JSON list");
    env.iter()
        .find_map(|e| e.strip_prefix("VERSION="))
        .expect("VERSION is set")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_follows_commits_and_a_revert_and_refuses_a_bad_commit_whole() {
    require_swarm_manager();
    let stack = format!("skg{:08x}", rand::random::<u32>());
    let _guard = Guard(vec![format!("Stack.{stack}")]);
    let store = Etcd::shared().store("gitops-sync").await;
    let repo = Repo::new();
    let cache = tempfile::tempdir().expect("temp dir");
    let url = repo.url();
    let cache_dir = cache.path().to_str().expect("utf-8").to_owned();
    let sync = || {
        run(
            &store,
            &[
                "sync",
                "--once",
                "--repo",
                &url,
                "--path",
                "desired",
                "--source",
                "prod",
                "--cache-dir",
                &cache_dir,
            ],
        )
    };
    let controllers = controllers(&store).await;
    let key = RecordKey::new(Kind::Stack, &stack);
    let web = "desired/web.yaml";

    // A first commit converges.
    let first = repo.commit(&[(web, &stack_yaml(&stack, "1"))], "web 1");
    let (code, out) = sync();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("Stack/{stack} created")), "{out}");
    pass(&controllers, std::slice::from_ref(&key)).await;
    assert_eq!(version(&stack), "1");
    let origin = status(&store, &key).await.expect("a status").source;
    assert_eq!(
        origin,
        Some(owner::Origin {
            source: "prod".into(),
            commit: Some(first.clone())
        })
    );
    let (code, wide) = run(&store, &["get", "stacks", "-o", "wide"]);
    assert_eq!(code, 0, "{wide}");
    assert!(
        wide.contains("prod") && wide.contains(&first[..12]),
        "{wide}"
    );
    let (_, described) = run(&store, &["describe", "stack", &stack]);
    assert!(
        described.contains(&format!("Commit:      {first}")),
        "{described}"
    );

    // The same tip again: nothing written at all.
    let before = last_write(&store, None).await;
    let (code, out) = sync();
    assert_eq!(code, 0, "{out}");
    assert_eq!(last_write(&store, None).await, before, "{out}");

    // A change follows, and a revert reverts it.
    repo.commit(&[(web, &stack_yaml(&stack, "2"))], "web 2");
    assert_eq!(sync().0, 0);
    pass(&controllers, std::slice::from_ref(&key)).await;
    assert_eq!(version(&stack), "2");
    let reverted = repo.revert_last();
    assert_eq!(sync().0, 0);
    pass(&controllers, std::slice::from_ref(&key)).await;
    assert_eq!(version(&stack), "1");

    // A commit with one bad record is refused whole: the change beside it is not applied.
    let generation = |store: &swarmkeeper::store::Store| {
        let store = store.clone();
        let stack = stack.clone();
        async move {
            let record = store.get_record("Stack", &stack).await.expect("etcd");
            record.expect("the record").mod_revision
        }
    };
    let kept = generation(&store).await;
    let bad = "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Network\nmetadata:\n  name: bad\nspec:\n  driver: overlay\n  attachabel: true\n";
    let broken = repo.commit(
        &[(web, &stack_yaml(&stack, "3")), ("desired/bad.yaml", bad)],
        "web 3 and a typo",
    );
    let (code, out) = sync();
    assert_eq!(code, 64, "{out}");
    assert!(
        out.contains("desired/bad.yaml") && out.contains("attachabel"),
        "{out}"
    );
    assert_eq!(generation(&store).await, kept);
    assert!(
        store
            .get_record("Network", "bad")
            .await
            .expect("etcd")
            .is_none()
    );
    let source = store
        .get_source("prod")
        .await
        .expect("etcd")
        .expect("a source");
    assert_eq!(source.commit.as_deref(), Some(reverted.as_str()));
    assert_eq!(source.seen.as_deref(), Some(broken.as_str()));
    let error = source.error.expect("the refusal");
    assert_eq!(error.commit.as_deref(), Some(broken.as_str()));
    assert!(
        error.message.contains("desired/bad.yaml") && error.message.contains("attachabel"),
        "{}",
        error.message
    );
    assert!(!error.message.contains(&cache_dir), "{}", error.message);
    let events = store
        .list_events(Some(("Source", "prod")))
        .await
        .expect("etcd");
    assert!(
        events
            .iter()
            .any(|(_, _, e)| e.reason == "Rejected" && e.message.contains(&broken)),
        "{events:?}"
    );
    let (_, listed) = run(&store, &["get", "sources"]);
    assert!(
        listed.contains(&broken[..12]) && listed.contains("attachabel"),
        "{listed}"
    );
    // Not tried again: still refused, nothing more written.
    let before = last_write(&store, None).await;
    assert_eq!(sync().0, 64);
    assert_eq!(last_write(&store, None).await, before);

    // The next good commit applies normally.
    let fixed = repo.commit(&[("desired/bad.yaml", "")], "drop the typo");
    let (code, out) = sync();
    assert_eq!(code, 0, "{out}");
    pass(&controllers, std::slice::from_ref(&key)).await;
    assert_eq!(version(&stack), "3");
    let source = store
        .get_source("prod")
        .await
        .expect("etcd")
        .expect("a source");
    assert_eq!(source.commit.as_deref(), Some(fixed.as_str()));
    assert_eq!(source.error, None);
}

/// The owner annotation of a stored Network.
async fn owner_of(store: &swarmkeeper::store::Store, name: &str) -> Option<String> {
    let record = store.get_record("Network", name).await.expect("etcd")?;
    Some(owner::owner(&record.value).unwrap_or("<none>").to_owned())
}

#[tokio::test]
async fn two_sources_on_one_prefix_cannot_overwrite_or_prune_each_other() {
    let store = Etcd::shared().store("gitops-owners").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |path: &str, content: &str| {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("folder");
        std::fs::write(&path, content).expect("write");
        path.to_str().expect("utf-8").to_owned()
    };
    let a_shared = write("a/shared.yaml", &network_yaml("shared"));
    let a_own = write("a/own.yaml", &network_yaml("a-own"));
    let b_shared = write("b/shared.yaml", &network_yaml("shared"));
    let b_own = write("b/own.yaml", &network_yaml("b-own"));
    let apply = |args: &[&str]| {
        let mut all = vec!["apply"];
        all.extend_from_slice(args);
        run(&store, &all)
    };

    assert_eq!(
        apply(&["-f", &a_shared, "-f", &a_own, "--source", "a", "--prune"]).0,
        0
    );
    // Another source is refused whole, naming the owner; so is a bare apply.
    let (code, out) = apply(&["-f", &b_shared, "-f", &b_own, "--source", "b", "--prune"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("Network/shared is owned by source \"a\""),
        "{out}"
    );
    assert_eq!(
        owner_of(&store, "b-own").await,
        None,
        "nothing of it is written"
    );
    let (code, out) = apply(&["-f", &b_shared]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("owned by source \"a\"") && out.contains("bare apply"),
        "{out}"
    );
    assert_eq!(owner_of(&store, "shared").await.as_deref(), Some("a"));

    // b's prune deletes only what b owns.
    assert_eq!(apply(&["-f", &b_own, "--source", "b", "--prune"]).0, 0);
    let b_again = write("b2/other.yaml", &network_yaml("b-other"));
    assert_eq!(apply(&["-f", &b_again, "--source", "b", "--prune"]).0, 0);
    assert_eq!(
        owner_of(&store, "b-own").await,
        None,
        "b pruned its own record"
    );
    assert_eq!(owner_of(&store, "shared").await.as_deref(), Some("a"));
    assert_eq!(owner_of(&store, "a-own").await.as_deref(), Some("a"));

    // --force takes a record over; then its former owner neither writes nor prunes it.
    assert_eq!(
        apply(&["-f", &b_shared, "-f", &b_again, "--source", "b", "--force"]).0,
        0
    );
    assert_eq!(owner_of(&store, "shared").await.as_deref(), Some("b"));
    let (code, out) = apply(&["-f", &a_shared, "--source", "a"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("owned by source \"b\""), "{out}");
    assert_eq!(apply(&["-f", &a_own, "--source", "a", "--prune"]).0, 0);
    assert_eq!(owner_of(&store, "shared").await.as_deref(), Some("b"));
    let a = store.get_source("a").await.expect("etcd").expect("a");
    assert_eq!(a.records, ["Network/a-own"]);
    // diff does not count ownership as a change.
    let (code, out) = run(&store, &["diff", "-f", &b_again, "--exit-code"]);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
async fn git_credentials_never_appear_in_output_events_or_status() {
    const TOKEN: &str = "tok-CANARY-5d1e";
    const URL_PASSWORD: &str = "url-CANARY-77a3";
    let store = Etcd::shared().store("gitops-creds").await;
    // A Git server that asks for credentials, then refuses whatever it is given.
    let (addr, seen) = serve(|request| {
        let authorized = request
            .head
            .to_ascii_lowercase()
            .contains("\nauthorization:");
        Some(if authorized {
            status_line(403, "Forbidden", "")
        } else {
            status_line(
                401,
                "Unauthorized",
                "www-authenticate: Basic realm=\"test\"\r\n",
            )
        })
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("write");
    let cache = dir.path().join("cache");
    let cache = cache.to_str().expect("utf-8");

    let with_token = format!("http://{addr}/repo.git");
    let (code, token_out) = run(
        &store,
        &[
            "sync",
            "--once",
            "--repo",
            &with_token,
            "--path",
            ".",
            "--source",
            "tok",
            "--git-token-file",
            token_file.to_str().expect("utf-8"),
            "--cache-dir",
            cache,
        ],
    );
    assert_eq!(code, 1, "{token_out}");
    // The token was sent (so the helper works), as basic auth from its file.
    let sent: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.head.clone())
        .collect();
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("x-access-token:{TOKEN}"),
    );
    assert!(sent.iter().any(|h| h.contains(&basic)), "{sent:?}");

    let in_url = format!("http://bot:{URL_PASSWORD}@{addr}/repo.git");
    let (code, url_out) = run(
        &store,
        &[
            "sync",
            "--once",
            "--repo",
            &in_url,
            "--path",
            ".",
            "--source",
            "url",
            "--cache-dir",
            cache,
        ],
    );
    assert_eq!(code, 1, "{url_out}");
    assert!(
        url_out.contains("403"),
        "the failure is reported: {url_out}"
    );

    let mut shown = vec![token_out, url_out];
    for source in ["tok", "url"] {
        let record = store
            .get_source(source)
            .await
            .expect("etcd")
            .expect("a status");
        assert!(record.error.is_some(), "{record:?}");
        shown.push(serde_json::to_string(&record).expect("json"));
        for (_, _, event) in store
            .list_events(Some(("Source", source)))
            .await
            .expect("etcd")
        {
            shown.push(serde_json::to_string(&event).expect("json"));
        }
    }
    let (_, listed) = harness::stdout(&store, &["get", "sources", "-o", "json"]);
    let listed: Value = serde_json::from_str(&listed).expect("json");
    assert!(listed.to_string().contains("***@"), "{listed}");
    shown.push(listed.to_string());
    for text in &shown {
        for canary in [TOKEN, URL_PASSWORD, basic.as_str()] {
            assert!(!text.contains(canary), "{canary} shown in: {text}");
        }
    }
}
