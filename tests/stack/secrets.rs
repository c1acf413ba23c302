//! Sealed values and the Stack controller: a stack cannot be handed another
//! stack's secret, a sealed value moved under another key does not open, and
//! after `key rotate` a stack converges with the new key alone and keeps its
//! secret version.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use swarmkeeper::api::API_VERSION;
use swarmkeeper::controllers::status::Phase;
use swarmkeeper::runtime::run_once;

use super::common::swarm::docker_ok;
use super::{CONVERGE_TIMEOUT, Env, Guard, owned, put, sleepers, stack_key, stack_record};

/// A canary no other test uses.
fn canary() -> String {
    format!("canary-{:016x}", rand::random::<u64>())
}

/// A compose file whose service uses `secret`, defined by `def`.
fn using_secret(secret: &str, def: Value) -> Value {
    let mut compose = sleepers(&["web"]);
    compose["services"]["web"]["secrets"] = json!([secret]);
    compose["secrets"] = json!({ secret: def });
    compose
}

/// Everything of a record a person or a log could see: status, events, record.
async fn shown(env: &Env, name: &str) -> String {
    format!(
        "{:?}{:?}{:?}",
        env.store.get_status("Stack", name).await.expect("etcd"),
        env.store.list_events(None).await.expect("etcd"),
        env.store.get_record("Stack", name).await.expect("etcd"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_put_into_etcd_with_another_stacks_secret_fails_and_creates_nothing() {
    let mut guard = Guard::new();
    let env = Env::new("stolen").await;
    let (first, second) = (guard.stack(), guard.stack());
    let canary = canary();
    let keyring = env.controllers.ctx.keyring.as_ref().expect("a keyring");
    let first_key = format!("stack:{first}:token");
    let first_def = json!({"x-swarmkeeper-secret": first_key});
    env.store
        .put_secret(&first_key, &keyring.seal(&first_key, canary.as_bytes()))
        .await
        .expect("put");
    put(
        &env.store,
        "Stack",
        &first,
        stack_record(&first, using_secret("token", first_def.clone())),
    )
    .await;
    // Written raw, past apply, as anyone with etcdctl could.
    let stolen = json!({
        "apiVersion": API_VERSION,
        "kind": "Stack",
        "metadata": {"name": second},
        "spec": {"compose": using_secret("stolen", first_def)},
    });
    put(&env.store, "Stack", &second, stolen).await;

    env.pass(&[stack_key(&second)]).await;
    let status = env.status(&second).await.expect("a status");
    assert_eq!(status.phase, Phase::Failed, "{status:#?}");
    for needle in [
        "spec.compose.secrets.stolen.x-swarmkeeper-secret",
        "is not this stack's",
    ] {
        assert!(status.message.contains(needle), "{status:#?}");
    }
    for object in ["secret", "service", "network"] {
        assert!(owned(object, &second).is_empty(), "{second} got a {object}");
    }
    assert!(!shown(&env, &second).await.contains(&canary));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_value_copied_under_another_stacks_key_does_not_open() {
    let mut guard = Guard::new();
    let env = Env::new("copied").await;
    let (first, thief) = (guard.stack(), guard.stack());
    let canary = canary();
    let keyring = env.controllers.ctx.keyring.as_ref().expect("a keyring");
    let first_key = format!("stack:{first}:token");
    let sealed = keyring.seal(&first_key, canary.as_bytes());
    // The thief's own prefix, the first stack's bytes.
    let thief_key = format!("stack:{thief}:token");
    env.store
        .put_secret(&thief_key, &sealed)
        .await
        .expect("put");
    let def = json!({"x-swarmkeeper-secret": thief_key});
    put(
        &env.store,
        "Stack",
        &thief,
        stack_record(&thief, using_secret("token", def)),
    )
    .await;

    let key = stack_key(&thief);
    let results = run_once(vec![key.clone()], env.controllers.clone(), 1).await;
    let (_, result) = results.into_iter().next().expect("one reconcile");
    let err = result.expect_err("a moved value must not open").to_string();
    assert!(err.contains("cannot decrypt"), "{err}");
    assert!(!err.contains(&canary), "{err}");
    for object in ["secret", "service"] {
        assert!(owned(object, &thief).is_empty(), "{thief} got a {object}");
    }
    assert!(!shown(&env, &thief).await.contains(&canary));
}

/// `swarmkeeper --secret-key-file <key> <args>` against the test's etcd.
fn with_key(env: &Env, key: &Path, args: &[&str]) -> Output {
    env.cli()
        .arg("--secret-key-file")
        .arg(key)
        .args(args)
        .output()
        .expect("the binary runs")
}

/// `run --once` with `key` until the stack is Ready.
async fn converge_with(env: &Env, key: &Path, name: &str) {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let out = with_key(env, key, &["run", "--once"]);
        assert!(
            out.status.success(),
            "run --once: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if env
            .status(name)
            .await
            .is_some_and(|s| s.phase == Phase::Ready)
        {
            return;
        }
        assert!(Instant::now() < deadline, "{name} not Ready");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn service_version(service: &str) -> String {
    docker_ok(&[
        "service",
        "inspect",
        service,
        "--format",
        "{{.Version.Index}}",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_key_rotate_a_stack_converges_with_the_new_key_alone_and_keeps_its_secret() {
    let mut guard = Guard::new();
    let env = Env::new("rotated").await;
    let name = guard.stack();
    let canary = canary();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("token.txt"), &canary).expect("write secret");
    let (old, new) = (dir.path().join("old.key"), dir.path().join("new.key"));
    std::fs::write(&old, rand::random::<[u8; 32]>()).expect("write key");
    std::fs::write(&new, rand::random::<[u8; 32]>()).expect("write key");
    let record = json!({
        "apiVersion": API_VERSION,
        "kind": "Stack",
        "metadata": {"name": name},
        "spec": {"compose": using_secret("token", json!({"file": "./token.txt"}))},
    });
    let file = dir.path().join("stack.json");
    std::fs::write(&file, record.to_string()).expect("write record");
    let applied = with_key(&env, &old, &["apply", "-f", &file.to_string_lossy()]);
    assert!(applied.status.success(), "{applied:?}");
    converge_with(&env, &old, &name).await;
    let secrets = owned("secret", &name);
    assert_eq!(secrets.len(), 1, "{secrets:?}");
    let service = format!("{name}_web");
    let version = service_version(&service);

    // During the rotation the controller opens both keys' values.
    let (old_arg, new_arg) = (old.to_string_lossy(), new.to_string_lossy());
    let during = with_key(
        &env,
        &new,
        &["--previous-secret-key-file", &old_arg, "run", "--once"],
    );
    assert!(during.status.success(), "{during:?}");
    let rotated = with_key(&env, &old, &["key", "rotate", "--new-key-file", &new_arg]);
    let said = String::from_utf8_lossy(&rotated.stdout).into_owned();
    assert!(rotated.status.success(), "{rotated:?}");
    assert!(said.contains("digests are unchanged"), "{said}");

    // The new key alone: Ready, the same secret version, the service untouched.
    converge_with(&env, &new, &name).await;
    assert_eq!(
        owned("secret", &name),
        secrets,
        "the secret version changed"
    );
    assert_eq!(
        service_version(&service),
        version,
        "the service was updated"
    );
    // The old key alone opens nothing any more: the controller will not start on it.
    let refused = with_key(&env, &old, &["run", "--once"]);
    assert!(!refused.status.success(), "{refused:?}");
    let mut seen = said;
    for out in [&applied, &during, &refused] {
        seen.push_str(&String::from_utf8_lossy(&out.stdout));
        seen.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    seen.push_str(&shown(&env, &name).await);
    assert!(!seen.contains(&canary), "the value leaked");
}
