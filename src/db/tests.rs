//! Unit tests of the database layer: quoting, privileges, names, hashes, errors.

use super::*;

#[test]
fn postgres_identifiers_double_their_quotes() {
    let q = |s| quote_identifier(Engine::Postgres, s);
    assert_eq!(q("app"), r#""app""#);
    assert_eq!(q(r#"a"b"#), r#""a""b""#);
    assert_eq!(q(r#"""#), r#""""""#);
    assert_eq!(q("my db; DROP TABLE x; --"), r#""my db; DROP TABLE x; --""#);
    assert_eq!(q("it's `x`"), r#""it's `x`""#);
}

#[test]
fn mysql_identifiers_double_their_backticks() {
    for engine in [Engine::Mysql, Engine::Mariadb] {
        let q = |s| quote_identifier(engine, s);
        assert_eq!(q("app"), "`app`");
        assert_eq!(q("a`b"), "`a``b`");
        assert_eq!(q("`"), "````");
        assert_eq!(q("x`; DROP DATABASE y; -- "), "`x``; DROP DATABASE y; -- `");
        assert_eq!(q(r#"it's "x""#), r#"`it's "x"`"#);
    }
}

/// Whatever the input, the quoted form is one token: it starts and ends with the
/// quote, and inside, quotes only come in pairs.
#[test]
fn a_quoted_identifier_never_ends_early() {
    for ident in ["", "a\"", "\"\"\"", "a`b``", "; --", " ", "'"] {
        for (engine, quote) in [(Engine::Postgres, '"'), (Engine::Mariadb, '`')] {
            let quoted = quote_identifier(engine, ident);
            let inner = &quoted[1..quoted.len() - 1];
            assert!(quoted.starts_with(quote) && quoted.ends_with(quote));
            assert_eq!(
                inner.replace(&format!("{quote}{quote}"), ""),
                ident.replace(quote, "")
            );
        }
    }
}

#[test]
fn privileges_are_normalized_against_the_allow_list() {
    assert_eq!(
        normalize_privilege(Engine::Postgres, "connect").unwrap(),
        "CONNECT"
    );
    assert_eq!(
        normalize_privilege(Engine::Postgres, "temp").unwrap(),
        "TEMPORARY"
    );
    assert_eq!(
        normalize_privilege(Engine::Postgres, "all privileges").unwrap(),
        "ALL"
    );
    assert_eq!(
        normalize_privilege(Engine::Mariadb, " create  temporary tables ").unwrap(),
        "CREATE TEMPORARY TABLES"
    );
    let err = normalize_privilege(Engine::Postgres, "SELECT; DROP ROLE x").unwrap_err();
    assert_eq!(err.kind(), "unknown_privilege");
    assert!(!err.is_transient());
    assert!(err.to_string().contains("SELECT; DROP ROLE x"), "{err}");
    assert!(normalize_privilege(Engine::Mariadb, "CONNECT").is_err());
    assert!(normalize_privilege(Engine::Postgres, "EXECUTE").is_err());
}

#[test]
fn privilege_lists_collapse_to_all() {
    let list = |p: &[&str]| {
        privilege_list(
            Engine::Postgres,
            &p.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap()
    };
    assert_eq!(
        list(&["temp", "CONNECT", "connect"]),
        ["CONNECT", "TEMPORARY"]
    );
    assert_eq!(list(&["CONNECT", "all"]), ["ALL"]);
    assert!(list(&[]).is_empty());
}

#[test]
fn all_is_added_only_when_everything_is_held() {
    let set = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let all = ["CONNECT", "CREATE", "TEMPORARY"];
    assert!(with_all(set(&all), &all).contains("ALL"));
    assert!(!with_all(set(&["CONNECT", "TEMPORARY"]), &all).contains("ALL"));
}

#[test]
fn bad_names_and_privileges_fail_the_whole_apply_before_any_sql() {
    let actions = [
        Action::DropDatabase {
            database: "fine".into(),
        },
        Action::Grant {
            user: "u".into(),
            database: "d".into(),
            privileges: vec!["FROBNICATE".into()],
        },
    ];
    let err = actions
        .iter()
        .try_for_each(|a| check(Engine::Postgres, a))
        .unwrap_err();
    assert!(
        matches!(err, DbError::UnknownPrivilege { ref privilege, .. } if privilege == "FROBNICATE")
    );
    for name in ["", "a\0b", &"x".repeat(64)] {
        let err = check(Engine::Postgres, &Action::DropUser { user: name.into() }).unwrap_err();
        assert_eq!(err.kind(), "invalid_name");
    }
    assert!(
        check(
            Engine::Mariadb,
            &Action::DropDatabase {
                database: "x".repeat(64)
            }
        )
        .is_ok()
    );
    assert!(
        check(
            Engine::Mariadb,
            &Action::DropDatabase {
                database: "x".repeat(65)
            }
        )
        .is_err()
    );
}

#[test]
fn hashes_are_quoted_as_literals() {
    assert_eq!(hash_literal("*ABC123"), "'*ABC123'");
    assert_eq!(
        hash_literal("SCRAM-SHA-256$4096:c2FsdA==$a+b/c=:d+e/f="),
        "'SCRAM-SHA-256$4096:c2FsdA==$a+b/c=:d+e/f='"
    );
}

#[test]
#[should_panic(expected = "base64/hex")]
fn a_hash_with_a_quote_is_a_bug_not_a_statement() {
    hash_literal("abc'; DROP ROLE x; --");
}

#[test]
fn debug_never_shows_passwords() {
    let server = Server {
        engine: Engine::Postgres,
        host: "db".into(),
        port: 5432,
        admin_user: "admin".into(),
        admin_password: SecretValue::from("admin-canary"),
        ssl_mode: SslMode::Prefer,
        ca_pem: None,
    };
    let action = Action::CreateUser {
        user: "u".into(),
        password: SecretValue::from("user-canary"),
    };
    let printed = format!("{server:?} {action:?}");
    assert!(!printed.contains("canary"), "{printed}");
    assert!(printed.contains("<redacted>"));
    assert_eq!(server.address(), "db:5432");
}

#[test]
fn transient_errors_are_the_ones_a_retry_can_heal() {
    let server = || "db:5432".to_owned();
    assert!(
        DbError::Connect {
            server: server(),
            message: "refused".into()
        }
        .is_transient()
    );
    assert!(
        DbError::AdminLogin {
            server: server(),
            user: "a".into(),
            message: "no".into()
        }
        .is_transient()
    );
    assert!(
        !DbError::Query {
            action: "grant",
            message: "invalid privilege".into()
        }
        .is_transient()
    );
}
