//! The CLI's env-file format and merge, and `.env` files for interpolation.

use serde_json::json;

use super::*;
use crate::api::load::fixtures::folder;

fn env(name: &str) -> Option<String> {
    match name {
        "FROM_SHELL" => Some("shell".into()),
        "OVERRIDE" => Some("from-env".into()),
        _ => None,
    }
}

#[test]
fn env_files_parse_as_the_cli_parses_them() {
    let text = "\u{feff}# a comment\n\n  A=1\nB=\"quoted\" \nC=\nFROM_SHELL\nUNSET_BARE\nD=x=y\n";
    assert_eq!(
        parse_env_file(text, &env).unwrap(),
        [
            ("A".to_owned(), "1".to_owned()),
            ("B".to_owned(), "\"quoted\" ".to_owned()),
            ("C".to_owned(), String::new()),
            ("FROM_SHELL".to_owned(), "shell".to_owned()),
            ("D".to_owned(), "x=y".to_owned()),
        ]
    );
    assert_eq!(
        parse_env_file("OK=1\n=secret-canary\n", &env),
        Err("line 2: no variable name".to_owned())
    );
    assert_eq!(
        parse_env_file("MY KEY=secret-canary\n", &env),
        Err("line 1: a variable name contains whitespace".to_owned())
    );
}

#[test]
fn files_merge_in_order_and_environment_wins() {
    let dir = folder(&[
        ("one.env", "A=one\nB=one\nOVERRIDE=\n"),
        ("two.env", "B=two\nC=two\n"),
    ]);
    let service = json!({
        "env_file": ["one.env", "two.env"],
        "environment": ["C=inline", "FROM_SHELL", "NOT_SET"]
    });
    let merged = resolve_environment(service.as_object().unwrap(), dir.path(), &env).unwrap();
    assert_eq!(
        merged,
        Some(json!({
            "A": "one", "B": "two", "OVERRIDE": "from-env", "C": "inline",
            "FROM_SHELL": "shell", "NOT_SET": null
        }))
    );
    let single = json!({"env_file": "two.env", "environment": {"B": 5}});
    assert_eq!(
        resolve_environment(single.as_object().unwrap(), dir.path(), &env).unwrap(),
        Some(json!({"B": 5, "C": "two"}))
    );
}

#[test]
fn environment_alone_is_rewritten_only_when_the_shell_fills_it() {
    let dir = folder(&[]);
    let plain = json!({"environment": ["A=1", "NOT_SET"]});
    assert_eq!(
        resolve_environment(plain.as_object().unwrap(), dir.path(), &env).unwrap(),
        None
    );
    let filled = json!({"environment": {"FROM_SHELL": null, "A": "1"}});
    assert_eq!(
        resolve_environment(filled.as_object().unwrap(), dir.path(), &env).unwrap(),
        Some(json!({"FROM_SHELL": "shell", "A": "1"}))
    );
}

#[test]
fn an_env_file_problem_names_its_field_and_file_never_a_value() {
    let dir = folder(&[("bad.env", "GOOD=1\nsecret-canary value\n")]);
    let service = json!({"env_file": ["missing.env"]});
    let (field, message) =
        resolve_environment(service.as_object().unwrap(), dir.path(), &env).unwrap_err();
    assert_eq!(field, "env_file[0]");
    assert!(message.contains("missing.env"), "{message}");
    let service = json!({"env_file": "bad.env"});
    let (field, message) =
        resolve_environment(service.as_object().unwrap(), dir.path(), &env).unwrap_err();
    assert_eq!(field, "env_file");
    assert!(
        message.ends_with("bad.env: line 2: a variable name contains whitespace"),
        "{message}"
    );
    assert!(!message.contains("canary"));
}

#[test]
fn dotenv_files_are_read_in_order() {
    let dir = folder(&[
        (
            "base.env",
            "# defaults\nexport TAG=1.0\nREPLICAS='2'\nNAME=\"web app\"\n",
        ),
        ("prod.env", "TAG=1.1\n"),
        ("bad.env", "GOOD=1\nBAD='secret-canary\n"),
    ]);
    let files = ["base.env".to_owned(), "prod.env".to_owned()];
    let vars = read_dotenv_files(&files, dir.path()).unwrap();
    assert_eq!(vars.get("TAG").map(String::as_str), Some("1.1"));
    assert_eq!(vars.get("REPLICAS").map(String::as_str), Some("2"));
    assert_eq!(vars.get("NAME").map(String::as_str), Some("web app"));
    let (index, message) =
        read_dotenv_files(&["prod.env".to_owned(), "bad.env".to_owned()], dir.path()).unwrap_err();
    assert_eq!(index, 1);
    assert!(message.contains("bad.env: cannot be parsed"), "{message}");
    assert!(!message.contains("canary"), "{message}");
}
