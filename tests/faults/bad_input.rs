//! Bad input at scale. A seeded generator mutates the example records (byte
//! flips, truncations, swapped types, extreme values of the right type,
//! huge numbers, deep nesting, YAML aliases): every mutant loads or is rejected within seconds, never a
//! panic; a sample goes through `apply`, which exits 0 or 64 and writes
//! nothing on 64. And garbage written straight into etcd (not JSON, wrong
//! shapes, huge values, odd keys) while `run` runs: it keeps running and
//! every other record converges, and so does an operator started among it.
//!
//! The mutants go through the library's loader in-process (a process per
//! record would take minutes); the sample checks that the binary agrees.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use serde_json::Value;
use swarmkeeper::api::Spec;
use swarmkeeper::api::compose::ComposeFile;
use swarmkeeper::api::load::load_paths;
use swarmkeeper::plan::convert::convert_stack;
use swarmkeeper::plan::stack::{Desired, Ids, Live, plan};

use super::common::Etcd;
use super::common::http::{http_get, last_write};
use super::common::swarm::names_with_label;
use super::harness::{Fixture, TIMEOUT, converged, eventually, seeded, stack_record};
use swarmkeeper::controllers::status::Phase;

const MUTANTS: usize = 400;
/// How many of the mutants also go through the binary.
const THROUGH_THE_BINARY: usize = 16;
/// "Within seconds", on a loaded machine.
const PER_RECORD: Duration = Duration::from_secs(5);

/// Stands in for the node a splice replaces, in the JSON text of a record.
const SPLICE: &str = "\u{1}splice\u{1}";

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests/examples")
}

/// Every JSON pointer into `value`, the root excluded.
fn pointers(value: &Value, at: &str, out: &mut Vec<String>) {
    let children: Vec<(String, &Value)> = match value {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.replace('~', "~0").replace('/', "~1"), v))
            .collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        _ => Vec::new(),
    };
    for (key, child) in children {
        let path = format!("{at}/{key}");
        out.push(path.clone());
        pointers(child, &path, out);
    }
}

/// YAML that replaces one node: other types, huge numbers, deep nesting, aliases.
fn snippet(rng: &mut StdRng) -> String {
    let depth = *[63usize, 65, 300, 20_000].choose(rng).expect("depths");
    let fixed = [
        // swapped types
        "true",
        "null",
        "[]",
        "{}",
        "\"text\"",
        "-1",
        "3.5",
        "[1, {a: b}]",
        // huge numbers
        "1e400",
        "-1e400",
        "18446744073709551616",
        "-99999999999999999999999999999",
        "0x7fffffffffffffffffff",
        ".inf",
        ".nan",
        "0o777777777777777777777777",
        // aliases
        "*undefined",
        "&a [*a]",
        "{<<: *nowhere}",
        "{<<: 5}",
        "&a {k: v}",
        "[&x {k: v}, *x, *x]",
    ];
    match rng.random_range(0..5) {
        0 => "[".repeat(depth) + &"]".repeat(depth),
        1 => "{a: ".repeat(depth) + "1" + &"}".repeat(depth),
        2 => alias_bomb(rng.random_range(3..12)),
        3 => format!(
            "\"{}\"",
            "x".repeat(*[10, 100_000, 1_100_000].choose(rng).expect("sizes"))
        ),
        _ => (*fixed.choose(rng).expect("snippets")).to_owned(),
    }
}

/// A value of the same type as `node` at the edge of what it may hold: the
/// kind a typed parse takes and a conversion further on may choke on.
fn extreme(rng: &mut StdRng, node: &Value) -> String {
    let numbers = [
        "0",
        "-1",
        "18446744073709551615",
        "-9223372036854775808",
        "9007199254740993",
        "4294967296",
        "65536",
        "1e308",
        "0.0000001",
    ];
    let strings = [
        "\"\"",
        "\"99999999999999999999T\"",
        "\"18446744073709551615b\"",
        "\"1e308\"",
        "\"-1\"",
        "\"9223372036854775807ns\"",
        "\"99999999999h\"",
        "\"-5s\"",
        "\"${UNSET:?boom}\"",
        "\"$$\"",
        "\"a=b=c\"",
        "\"\\u0000\"",
        "\"../../etc/passwd\"",
        "\"65536:65536\"",
        "\"-1:-1/udp\"",
        "\"1.2.3.4:99999:99999/sctp\"",
        "\"/host:/x:ro:extra\"",
        "\"é😀\"",
        "\"*\"",
    ];
    let pool: &[&str] = match node {
        Value::Number(_) => &numbers,
        Value::String(_) => &strings,
        Value::Bool(b) => &[if *b { "false" } else { "true" }],
        _ => &["[]", "{}", "null"],
    };
    (*pool.choose(rng).expect("a pool")).to_owned()
}

/// Nested anchors, each aliased nine times by the next: 9^levels nodes if replayed.
fn alias_bomb(levels: usize) -> String {
    let mut text = "&l0 [x, x, x, x, x, x, x, x, x]".to_owned();
    for level in 1..levels {
        let refs = vec![format!("*l{}", level - 1); 9].join(", ");
        text = format!("[{text}, &l{level} [{refs}]]");
    }
    text
}

/// One mutant: its text, and whether to name it `.json` (else `.yaml`).
fn mutant(rng: &mut StdRng, texts: &[String], records: &[Value]) -> (Vec<u8>, bool) {
    match rng.random_range(0..5) {
        // Byte flips in a whole example file.
        0 => {
            let mut bytes = texts.choose(rng).expect("texts").clone().into_bytes();
            for _ in 0..rng.random_range(1..5) {
                let at = rng.random_range(0..bytes.len());
                bytes[at] ^= rng.random_range(1..=255u8);
            }
            (bytes, false)
        }
        // A truncated file, YAML or JSON.
        1 => {
            let json = rng.random_bool(0.5);
            let text = if json {
                records.choose(rng).expect("records").to_string()
            } else {
                texts.choose(rng).expect("texts").clone()
            };
            let at = rng.random_range(0..text.len());
            (text.into_bytes()[..at].to_vec(), json)
        }
        // A node of one record replaced (JSON is YAML, so YAML splices in):
        // by anything, or by an extreme value of its own type.
        _ => {
            let mut record = records.choose(rng).expect("records").clone();
            let mut paths = Vec::new();
            pointers(&record, "", &mut paths);
            let path = paths.choose(rng).expect("a record has fields");
            let node = record.pointer_mut(path).expect("a path of the record");
            let replacement = if rng.random_bool(0.5) {
                extreme(rng, node)
            } else {
                snippet(rng)
            };
            *node = Value::from(SPLICE);
            let text = record
                .to_string()
                .replace(&format!("\"{SPLICE}\""), &replacement);
            (text.into_bytes(), false)
        }
    }
}

/// Whether the loader takes the file, within [`PER_RECORD`]; panics on a
/// panic. What it takes goes on as the Stack controller would take it: the
/// compose file converted to swarm objects, and planned from nothing.
fn loads(file: &Path) -> bool {
    let started = Instant::now();
    let result = std::panic::catch_unwind(|| {
        let loaded = load_paths(&[file.to_owned()], &|_| None);
        for record in loaded.iter().flatten() {
            if let Spec::Stack(spec) = &record.record.spec
                && let Some(compose) = &spec.compose
            {
                plan_from_nothing(&record.record.metadata.name, compose);
            }
        }
        loaded
    })
    .unwrap_or_else(|_| panic!("the loader or the planner panicked on {}", file.display()));
    assert!(
        started.elapsed() < PER_RECORD,
        "loading {} took {:?}",
        file.display(),
        started.elapsed()
    );
    result.is_ok()
}

/// The plan of a stack that exists nowhere yet, and its drift report.
fn plan_from_nothing(name: &str, compose: &ComposeFile) {
    let Ok(objects) = convert_stack(name, compose) else {
        return;
    };
    let desired = Desired {
        objects,
        ..Desired::default()
    };
    let ids = Ids::default();
    for service in &desired.objects.services {
        let _ = desired.service_spec(service, &ids);
    }
    for network in &desired.objects.networks {
        let _ = desired.network_request(network);
    }
    let _ = plan(&desired, &Live::default(), &ids, Vec::new(), |_| false).drift();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_mutated_records_load_or_exit_64_never_panic_and_nothing_is_written_on_64() {
    let mut rng = seeded("bad-input");
    let mut texts = Vec::new();
    for entry in std::fs::read_dir(examples()).expect("the examples") {
        let path = entry.expect("an entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            texts.push(std::fs::read_to_string(&path).expect("an example"));
        }
    }
    let records: Vec<Value> = load_paths(&[examples()], &|_| None)
        .expect("the examples load")
        .iter()
        .map(|l| l.record.to_value())
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut mutants = Vec::new();
    let mut accepted = 0;
    for i in 0..MUTANTS {
        let (bytes, json) = mutant(&mut rng, &texts, &records);
        let file = dir
            .path()
            .join(format!("m{i:03}.{}", if json { "json" } else { "yaml" }));
        std::fs::write(&file, bytes).expect("write a mutant");
        let ok = loads(&file);
        accepted += usize::from(ok);
        mutants.push((file, ok));
    }
    eprintln!("{accepted} of {MUTANTS} mutants loaded, the rest were rejected");
    assert!(
        accepted < MUTANTS && accepted > 0,
        "the mutations are not mixed: {accepted} of {MUTANTS} loaded"
    );

    let fx = Fixture::new(
        Etcd::shared().store("bad-input").await,
        &Etcd::shared().endpoint(),
    );
    // Every 25th, and at least one of each outcome.
    let mut sample: Vec<&(PathBuf, bool)> = mutants
        .iter()
        .step_by(MUTANTS / THROUGH_THE_BINARY)
        .collect();
    sample.extend(mutants.iter().find(|(_, ok)| *ok));
    sample.extend(mutants.iter().find(|(_, ok)| !*ok));
    for (file, loaded) in sample {
        let before = last_write(&fx.store, None).await;
        let code = apply(&fx, file);
        assert!(
            code == 0 || code == 64,
            "apply -f {} exited {code}",
            file.display()
        );
        if !loaded {
            assert_eq!(code, 64, "{} was rejected by the loader", file.display());
        }
        if code == 64 {
            assert_eq!(
                last_write(&fx.store, None).await,
                before,
                "apply -f {} exited 64 and wrote",
                file.display()
            );
        }
    }
    fx.assert_no_canary().await;
}

/// `apply -f FILE`'s exit code, once it exits within [`PER_RECORD`] (twice: it starts a process).
fn apply(fx: &Fixture, file: &Path) -> i32 {
    let mut child = fx
        .cli()
        .arg("apply")
        .arg("-f")
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("apply starts");
    let deadline = Instant::now() + PER_RECORD * 2;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            if let Some(mut err) = child.stderr.take() {
                use std::io::Read as _;
                let _ = err.read_to_string(&mut stderr);
            }
            fx.saw(&stderr);
            assert!(!stderr.contains("panicked"), "apply panicked: {stderr}");
            return status.code().expect("apply exited");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("apply -f {} ran past {:?}", file.display(), PER_RECORD * 2);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The garbage under `desired/Stack/` whose key names a valid record name.
const BROKEN: [&str; 8] = [
    "notjson",
    "array",
    "number",
    "empty",
    "shape",
    "otherkind",
    "huge",
    "deep",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_written_straight_into_etcd_leaves_the_operator_running_and_the_rest_converging() {
    let fx = Fixture::new(
        Etcd::shared().store("garbage").await,
        &Etcd::shared().endpoint(),
    );
    let (before, after) = (fx.stack(), fx.stack());
    let token = fx.canary_secret(&before).await;
    fx.put(stack_record(&before, 2, 1, &token)).await;
    let mut operator = fx.operator(&fx.endpoint, None);
    converged(&fx, &before, 2, 1, TIMEOUT).await;

    let prefix = fx.store.prefix().to_owned();
    let huge = format!(
        "{{\"kind\": \"Stack\", \"x\": \"{}\"}}",
        "x".repeat(1 << 20)
    );
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    let garbage: Vec<(String, Vec<u8>)> = vec![
        ("desired/Stack/notjson".into(), b"\xff\xfe{{ not json".to_vec()),
        ("desired/Stack/array".into(), b"[1, 2, 3]".to_vec()),
        ("desired/Stack/number".into(), b"1e400".to_vec()),
        ("desired/Stack/empty".into(), Vec::new()),
        ("desired/Stack/shape".into(), br#"{"kind": "Stack", "spec": 5}"#.to_vec()),
        (
            "desired/Stack/otherkind".into(),
            br#"{"apiVersion": "swarmkeeper.dev/v1alpha1", "kind": "Network", "metadata": {"name": "otherkind"}, "spec": {}}"#.to_vec(),
        ),
        ("desired/Stack/huge".into(), huge.into_bytes()),
        ("desired/Stack/deep".into(), deep.into_bytes()),
        ("desired/Stack/Not_A-Name!".into(), b"{}".to_vec()),
        ("desired/Stack/".into(), b"{}".to_vec()),
        ("desired/Stack/a/b".into(), b"{}".to_vec()),
        ("desired/Widget/w".into(), b"{}".to_vec()),
        ("desired/noslash".into(), b"{}".to_vec()),
        (format!("status/Stack/{before}"), b"\x00garbage".to_vec()),
        ("status/Stack/nothing".into(), b"[]".to_vec()),
        ("events/Stack/x/1".into(), b"not an event".to_vec()),
        ("secrets/stack:nothing:x".into(), b"not sealed".to_vec()),
    ];
    let mut client = fx.store.raw_client();
    for (key, value) in garbage {
        client
            .put(format!("{prefix}/{key}"), value, None)
            .await
            .expect("etcd takes garbage");
    }
    let token_after = fx.canary_secret(&after).await;
    fx.put(stack_record(&after, 2, 1, &token_after)).await;
    fx.put(stack_record(&before, 2, 2, &token)).await;
    converged(&fx, &after, 2, 1, TIMEOUT).await;
    converged(&fx, &before, 2, 2, TIMEOUT).await;
    // A broken record marks its own status failed, and owns nothing.
    for name in BROKEN {
        let status = eventually("a broken record is marked Failed", TIMEOUT, async || {
            fx.status(name).await.filter(|s| s.phase == Phase::Failed)
        })
        .await;
        assert!(!status.message.is_empty(), "{name}: {status:?}");
        let scope = format!("swarmkeeper.scope={prefix}");
        for object in ["service", "network", "secret", "config"] {
            let owner = format!("swarmkeeper.owner=Stack.{name}");
            let owned: Vec<String> = names_with_label(object, &scope)
                .into_iter()
                .filter(|n| names_with_label(object, &owner).contains(n))
                .collect();
            assert!(
                owned.is_empty(),
                "the broken {name} owns {object}s {owned:?}"
            );
        }
    }
    operator.assert_running();
    let (code, _) = http_get(&operator.addr, "/healthz").expect("/healthz answers");
    assert_eq!(code, 200);

    // An operator that starts among the garbage lists it all first.
    drop(operator);
    fx.revoke_leader_leases().await;
    let mut operator = fx.operator(&fx.endpoint, None);
    fx.put(stack_record(&before, 2, 3, &token)).await;
    converged(&fx, &before, 2, 3, TIMEOUT).await;
    operator.assert_running();
    fx.assert_no_canary().await;
}
