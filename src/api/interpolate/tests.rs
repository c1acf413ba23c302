//! The CLI's interpolation grammar, quirks included, and every path of its cast table.

use serde_json::json;

use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "TAG" => Some("1.2".into()),
        "EMPTY" => Some(String::new()),
        "HOST" => Some("db".into()),
        "N" => Some("3".into()),
        "RATIO" => Some("0.25".into()),
        "YES" => Some("yes".into()),
        "OFF" => Some("Off".into()),
        "WORD" => Some("many".into()),
        _ => None,
    }
}

fn run(input: &str) -> Result<(String, Vec<String>), String> {
    let mut unset = Vec::new();
    interpolate_str(input, &env, &mut unset).map(|out| (out, unset))
}

/// Each expected value was checked with `docker stack config` (docker 28) on this machine.
#[test]
fn expansion_table() {
    for (input, expected, unset) in [
        ("app:${TAG}", "app:1.2", &[][..]),
        ("$$TAG costs $$5", "$TAG costs $5", &[]),
        ("${MISSING}x", "x", &["MISSING"]),
        ("$MISSING", "", &["MISSING"]),
        ("pre${MISSING}post", "prepost", &["MISSING"]),
        ("${MISSING:-dflt}", "dflt", &[]),
        ("${EMPTY:-dflt}", "dflt", &[]),
        ("${EMPTY-dflt}", "", &[]),
        ("${MISSING-dflt}", "dflt", &[]),
        ("${TAG:?needed}", "1.2", &[]),
        ("${EMPTY?needed}", "", &[]),
        ("no references", "no references", &[]),
        ("${MISSING:-a}{b}", "a{b}", &[]),
        // Defaults are literal: never interpolated again.
        ("${MISSING:-$$}", "$$", &[]),
        ("${MISSING:-a$b}", "a$b", &[]),
        ("${MISSING:-$}", "$", &[]),
        // A nested reference ends at the first `}`: the default is `${HOST`.
        ("${MISSING:-${HOST}}", "${HOST}", &[]),
        ("${TAG:-${HOST}}", "1.2}", &[]),
        ("${MISSING:-${HOST}:5432}", "${HOST:5432}", &[]),
        // The unbraced form takes an operator too, up to a `}` or the end.
        ("app:$TAG-x", "app:1.2", &[]),
        ("$TAG:-foo}bar", "1.2}bar", &[]),
        ("$MISSING-x y", "x y", &[]),
        // Operators are found anywhere in the body, `:-` first.
        ("${TAG-x:-y}", "y", &[]),
        ("${HOST?x-y}", "y", &[]),
        // Names are case-insensitive in the pattern, looked up as written.
        ("${tag:-low}", "low", &[]),
        // The `docker compose` alternative, which the CLI refuses.
        ("${TAG:+set}", "set", &[]),
        ("${EMPTY:+set}", "", &[]),
        ("${EMPTY+set}", "set", &[]),
        ("${MISSING+set}", "", &[]),
        // Unbraced, a `+` is text, as in the CLI.
        ("$TAG+x", "1.2+x", &[]),
    ] {
        let unset: Vec<String> = unset.iter().map(|s| s.to_string()).collect();
        assert_eq!(run(input), Ok((expected.to_owned(), unset)), "{input}");
    }
}

#[test]
fn error_table() {
    let invalid = |input: &str| {
        format!(
            "invalid interpolation format in {input:?}: a \"$\" must start $NAME or ${{NAME}}; you may need to escape any $ with another $"
        )
    };
    for (input, expected) in [
        (
            "${MISSING:?set MISSING}",
            "required variable MISSING is missing a value: set MISSING".to_owned(),
        ),
        (
            "${EMPTY:?no}",
            "required variable EMPTY is missing a value: no".to_owned(),
        ),
        (
            "${MISSING?}",
            "required variable MISSING is missing a value: ".to_owned(),
        ),
        ("${TAG", invalid("${TAG")),
        ("${}", invalid("${}")),
        ("${TAG%x}", invalid("${TAG%x}")),
        ("$(date)", invalid("$(date)")),
        ("trailing $", invalid("trailing $")),
        ("${1A}", invalid("${1A}")),
    ] {
        assert_eq!(run(input), Err(expected), "{input}");
    }
}

fn interpolate(mut value: Value) -> (Value, Vec<FieldError>) {
    let (mut errors, mut unset) = (Vec::new(), Vec::new());
    interpolate_compose(&mut value, "spec.compose", &env, &mut errors, &mut unset);
    (value, errors)
}

#[test]
fn values_are_walked_with_paths() {
    let (value, errors) = interpolate(json!({
        "services": {"web": {"image": "app:${TAG}", "ports": [8080, "${MISSING:?port}"], "${KEY}": 1}}
    }));
    assert_eq!(value["services"]["web"]["image"], "app:1.2");
    assert!(
        value["services"]["web"].get("${KEY}").is_some(),
        "keys are not interpolated"
    );
    assert_eq!(
        errors,
        [FieldError::new(
            "spec.compose.services.web.ports[1]",
            "required variable MISSING is missing a value: port"
        )]
    );
}

/// Every path of docker/cli's `interpolateTypeCastMapping`, each with the value it casts to.
#[test]
fn every_cast_path_of_the_cli_casts() {
    let (value, errors) = interpolate(json!({
        "services": {"web": {
            "configs": [{"source": "c", "mode": "${N}"}],
            "secrets": [{"source": "s", "mode": "${N}"}],
            "healthcheck": {"retries": "${N}", "disable": "${YES}"},
            "deploy": {
                "replicas": "${N}",
                "update_config": {"parallelism": "${N}", "max_failure_ratio": "${RATIO}"},
                "rollback_config": {"parallelism": "${N}", "max_failure_ratio": "${RATIO}"},
                "restart_policy": {"max_attempts": "${N}"},
                "placement": {"max_replicas_per_node": "${N}"}
            },
            "ports": [{"target": "${N}", "published": "${N}"}],
            "ulimits": {"nproc": "${N}", "nofile": {"soft": "${N}", "hard": "${N}"}},
            "privileged": "${YES}",
            "oom_score_adj": "-${N}",
            "read_only": "${OFF}",
            "stdin_open": "${YES}",
            "tty": "${OFF}",
            "volumes": [{"type": "volume", "source": "v", "target": "/v", "read_only": "${YES}", "volume": {"nocopy": "${OFF}"}}]
        }},
        "networks": {"n": {"external": "${OFF}", "internal": "${YES}", "attachable": "${OFF}"}},
        "volumes": {"v": {"external": "${OFF}"}},
        "secrets": {"s": {"external": "${YES}"}},
        "configs": {"c": {"external": "${YES}"}}
    }));
    assert_eq!(errors, []);
    assert_eq!(
        value,
        json!({
            "services": {"web": {
                "configs": [{"source": "c", "mode": 3}],
                "secrets": [{"source": "s", "mode": 3}],
                "healthcheck": {"retries": 3, "disable": true},
                "deploy": {
                    "replicas": 3,
                    "update_config": {"parallelism": 3, "max_failure_ratio": 0.25},
                    "rollback_config": {"parallelism": 3, "max_failure_ratio": 0.25},
                    "restart_policy": {"max_attempts": 3},
                    "placement": {"max_replicas_per_node": 3}
                },
                "ports": [{"target": 3, "published": 3}],
                "ulimits": {"nproc": 3, "nofile": {"soft": 3, "hard": 3}},
                "privileged": true,
                "oom_score_adj": -3,
                "read_only": false,
                "stdin_open": true,
                "tty": false,
                "volumes": [{"type": "volume", "source": "v", "target": "/v", "read_only": true, "volume": {"nocopy": false}}]
            }},
            "networks": {"n": {"external": false, "internal": true, "attachable": false}},
            "volumes": {"v": {"external": false}},
            "secrets": {"s": {"external": true}},
            "configs": {"c": {"external": true}}
        })
    );
}

#[test]
fn only_changed_strings_at_typed_paths_are_cast() {
    let (value, errors) = interpolate(json!({
        "services": {"web": {
            "deploy": {"replicas": "2", "labels": {"n": "${N}"}},
            "environment": {"N": "${N}"},
            "init": "${YES}",
            "ports": ["${N}:80"]
        }}
    }));
    assert_eq!(errors, []);
    let web = &value["services"]["web"];
    assert_eq!(
        web["deploy"]["replicas"], "2",
        "not interpolated: left as written"
    );
    assert_eq!(web["deploy"]["labels"]["n"], "3");
    assert_eq!(web["environment"]["N"], "3");
    assert_eq!(web["init"], "yes", "init is not in the CLI's table");
    assert_eq!(web["ports"][0], "3:80");
}

#[test]
fn a_value_that_does_not_cast_names_its_path() {
    let (_, errors) = interpolate(json!({
        "services": {"web": {"deploy": {"replicas": "${WORD}", "update_config": {"max_failure_ratio": "${WORD}"}}, "tty": "${N}"}},
        "networks": {"n": {"external": "${WORD}"}}
    }));
    assert_eq!(
        errors,
        [
            FieldError::new(
                "spec.compose.services.web.deploy.replicas",
                "failed to cast to expected type: invalid integer"
            ),
            FieldError::new(
                "spec.compose.services.web.deploy.update_config.max_failure_ratio",
                "failed to cast to expected type: invalid number"
            ),
            FieldError::new(
                "spec.compose.services.web.tty",
                "failed to cast to expected type: invalid boolean"
            ),
            FieldError::new(
                "spec.compose.networks.n.external",
                "failed to cast to expected type: invalid boolean"
            ),
        ]
    );
}

#[test]
fn casts_follow_go() {
    assert_eq!(Cast::Int.apply("+7"), Ok(json!(7)));
    assert_eq!(Cast::Int.apply("0440"), Ok(json!(440)), "Atoi is decimal");
    assert!(Cast::Int.apply("1.5").is_err());
    assert!(Cast::Int.apply(" 1").is_err());
    assert_eq!(Cast::Float.apply("1e-1"), Ok(json!(0.1)));
    assert_eq!(Cast::Float.apply("1"), Ok(json!(1.0)));
    for yes in ["y", "Y", "yes", "TRUE", "on"] {
        assert_eq!(Cast::Bool.apply(yes), Ok(json!(true)), "{yes}");
    }
    for no in ["n", "No", "false", "OFF"] {
        assert_eq!(Cast::Bool.apply(no), Ok(json!(false)), "{no}");
    }
    assert!(Cast::Bool.apply("1").is_err());
}
