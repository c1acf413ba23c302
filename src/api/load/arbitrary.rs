//! The loader over arbitrary input never panics: raw bytes, YAML-like text,
//! and records of every kind whose fields hold values of any shape each end
//! in records or in problems.

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::fixtures::load_one;
use crate::api::{API_VERSION, Kind};

/// Field names the record kinds and compose files read, so that arbitrary
/// values land where the deserializers look, and a few they do not know.
const FIELDS: &[&str] = &[
    "compose",
    "composeFile",
    "services",
    "image",
    "command",
    "environment",
    "deploy",
    "replicas",
    "mode",
    "networks",
    "secrets",
    "configs",
    "external",
    "file",
    "content",
    "x-swarmkeeper-secret",
    "generate",
    "length",
    "charset",
    "value",
    "engine",
    "server",
    "host",
    "port",
    "user",
    "passwordSecret",
    "schedule",
    "labels",
    "availability",
    "ports",
    "volumes",
    "<<",
    "unknown",
];

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::from),
        proptest::sample::select(FIELDS).prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(FIELDS), inner), 0..6).prop_map(
                |fields| {
                    Value::Object(
                        fields
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), v))
                            .collect::<Map<_, _>>(),
                    )
                }
            ),
        ]
    })
}

fn record() -> impl Strategy<Value = Value> {
    (
        proptest::sample::select(Kind::ALL.to_vec()),
        "[a-z0-9_.-]{0,8}",
        json(),
    )
        .prop_map(|(kind, name, spec)| {
            serde_json::json!({
                "apiVersion": API_VERSION,
                "kind": kind.as_str(),
                "metadata": {"name": name},
                "spec": spec,
            })
        })
}

/// Loads `content` as a file named `name`; a panic fails the property.
fn load(name: &str, content: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(name);
    std::fs::write(&file, content).unwrap();
    let _ = load_one(&file);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        load("any.yaml", &bytes);
        load("any.json", &bytes);
    }

    #[test]
    fn yaml_like_text_never_panics(text in "[ -~\n\t]{0,300}") {
        load("text.yaml", text.as_bytes());
        let record = format!("apiVersion: {API_VERSION}\nkind: Stack\nmetadata: {{name: s}}\nspec:\n  compose:\n    {text}\n");
        load("stack.yaml", record.as_bytes());
    }

    #[test]
    fn records_of_any_shape_never_panic(record in record()) {
        load("record.json", record.to_string().as_bytes());
    }
}
