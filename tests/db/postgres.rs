//! The database layer on the real PostgreSQL 15: a user with its database and grants,
//! drift made by hand, odd names quoted, failures classified, and a canary password
//! absent from the statement log.

use super::*;

#[tokio::test]
async fn pg_user_with_database_and_grants_then_drift_and_cleanup() {
    let mut fx = Fixture::new(Engine::Postgres, "pg-flow");
    let user = fx.user("app");
    let database = fx.database("appdb");
    let server = fx.server(SslMode::Prefer);
    let first = secret("first-Pa55word");

    db::apply(&server, &created(&user, &database, &first, &["ALL"]))
        .await
        .unwrap();
    let seen = observed(&server, &user, &database, &first).await;
    assert!(
        seen.user_exists && seen.database_exists && seen.password_works,
        "{seen:?}"
    );
    for p in ["ALL", "CONNECT", "CREATE", "TEMPORARY"] {
        assert!(has(&seen, p), "{p} missing from {seen:?}");
    }
    pg_use_database(&user, "first-Pa55word", &database).await;

    // A second run of the same actions changes nothing and fails nothing.
    db::apply(
        &server,
        &[
            Action::CreateUser {
                user: user.clone(),
                password: first.clone(),
            },
            Action::CreateDatabase {
                database: database.clone(),
                owner: user.clone(),
            },
        ],
    )
    .await
    .unwrap();

    // A new password: the old one stops working.
    let second = secret("second-Pa55word");
    db::apply(
        &server,
        &[Action::SetPassword {
            user: user.clone(),
            password: second.clone(),
        }],
    )
    .await
    .unwrap();
    assert!(
        !observed(&server, &user, &database, &first)
            .await
            .password_works
    );
    assert!(
        observed(&server, &user, &database, &second)
            .await
            .password_works
    );

    // A grant revoked by hand shows as missing, and Grant restores it.
    sql(
        Engine::Postgres,
        &format!(
            "REVOKE CREATE ON DATABASE {} FROM {};",
            quote_identifier(Engine::Postgres, &database),
            quote_identifier(Engine::Postgres, &user)
        ),
    );
    let seen = observed(&server, &user, &database, &second).await;
    assert!(
        !has(&seen, "CREATE") && !has(&seen, "ALL") && has(&seen, "CONNECT"),
        "{seen:?}"
    );
    db::apply(
        &server,
        &[Action::Grant {
            user: user.clone(),
            database: database.clone(),
            privileges: privileges(&["create"]),
        }],
    )
    .await
    .unwrap();
    let seen = observed(&server, &user, &database, &second).await;
    assert!(has(&seen, "CREATE") && has(&seen, "ALL"), "{seen:?}");

    // Drops, the database first; both are idempotent.
    let drops = drops(&user, &database);
    db::apply(&server, &drops).await.unwrap();
    db::apply(&server, &drops).await.unwrap();
    let seen = observed(&server, &user, &database, &second).await;
    assert_eq!(seen, Observed::default());
}

#[tokio::test]
async fn pg_user_dropped_by_hand_is_seen_missing_and_recreated() {
    let mut fx = Fixture::new(Engine::Postgres, "pg-gone");
    let user = fx.user("app");
    let server = fx.server(SslMode::Disable);
    let password = secret("Pa55word-gone");
    create_user(&server, &user, &password).await;
    let seen = db::observe(&server, &user, None, &password).await.unwrap();
    assert!(
        seen.user_exists && seen.password_works && !seen.database_exists,
        "{seen:?}"
    );

    sql(
        Engine::Postgres,
        &format!("DROP ROLE {};", quote_identifier(Engine::Postgres, &user)),
    );
    let seen = db::observe(&server, &user, None, &password).await.unwrap();
    assert!(!seen.user_exists && !seen.password_works, "{seen:?}");

    create_user(&server, &user, &password).await;
    assert!(
        db::observe(&server, &user, None, &password)
            .await
            .unwrap()
            .password_works
    );
}

/// The administrator's sessions log every statement; neither password reaches the log.
#[tokio::test]
async fn pg_canary_password_never_reaches_the_statement_log() {
    let mut fx = Fixture::new(Engine::Postgres, "pg-canary");
    sql(
        Engine::Postgres,
        &format!(
            "ALTER ROLE {} SET log_statement = 'all';",
            quote_identifier(Engine::Postgres, &fx.admin)
        ),
    );
    let user = fx.user("canary");
    let database = fx.database("canarydb");
    let server = fx.server(SslMode::Prefer);
    let canary = format!("canary-{}", unique_name("pw"));
    let rotated = format!("canary-rotated-{}", unique_name("pw"));
    db::apply(
        &server,
        &[
            Action::CreateUser {
                user: user.clone(),
                password: secret(&canary),
            },
            Action::CreateDatabase {
                database: database.clone(),
                owner: user.clone(),
            },
            Action::SetPassword {
                user: user.clone(),
                password: secret(&rotated),
            },
        ],
    )
    .await
    .unwrap();
    assert!(
        db::observe(&server, &user, Some(&database), &secret(&rotated))
            .await
            .unwrap()
            .password_works
    );
    assert!(
        !db::observe(&server, &user, Some(&database), &secret(&canary))
            .await
            .unwrap()
            .password_works
    );

    // The statements were logged (so the check below means something), with verifiers.
    let marker = format!("ALTER ROLE {}", quote_identifier(Engine::Postgres, &user));
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log =
            std::fs::read_to_string(PG_LOG).unwrap_or_else(|e| panic!("cannot read {PG_LOG}: {e}"));
        if log.contains(&marker) || Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        log.contains(&marker),
        "log_statement=all did not log {marker}"
    );
    assert!(
        log.contains("PASSWORD 'SCRAM-SHA-256$4096:"),
        "the log holds the verifier"
    );
    assert!(
        !log.contains(&canary) && !log.contains(&rotated),
        "a password reached {PG_LOG}"
    );
}

/// Names with quotes, spaces and semicolons are one identifier each, never SQL.
#[tokio::test]
async fn pg_odd_names_are_quoted_not_executed() {
    let mut fx = Fixture::new(Engine::Postgres, "pg-odd");
    let tag = unique_name("x");
    let user = format!("o'brien \"{tag}\"; DROP ROLE x");
    let database = format!("db \"{tag}\"; DROP DATABASE postgres; --'");
    fx.track(Some(&user), Some(&database));
    let server = fx.server(SslMode::Prefer);
    let password = secret("odd-Pa55word");
    db::apply(
        &server,
        &[
            Action::CreateUser {
                user: user.clone(),
                password: password.clone(),
            },
            Action::CreateDatabase {
                database: database.clone(),
                owner: user.clone(),
            },
            Action::Grant {
                user: user.clone(),
                database: database.clone(),
                privileges: privileges(&["CONNECT", "TEMP"]),
            },
        ],
    )
    .await
    .unwrap();
    let seen = observed(&server, &user, &database, &password).await;
    assert!(
        seen.user_exists && seen.database_exists && seen.password_works,
        "{seen:?}"
    );
    let names = sql(Engine::Postgres, "SELECT datname FROM pg_database;");
    assert!(
        names.lines().any(|l| l == database),
        "{database:?} not in {names}"
    );
    assert!(names.lines().any(|l| l == "postgres"));
    let roles = sql(Engine::Postgres, "SELECT rolname FROM pg_roles;");
    assert!(roles.lines().any(|l| l == user), "{user:?} not in {roles}");
    db::apply(
        &server,
        &[
            Action::DropDatabase {
                database: database.clone(),
            },
            Action::DropUser { user: user.clone() },
        ],
    )
    .await
    .unwrap();
    let names = sql(Engine::Postgres, "SELECT datname FROM pg_database;");
    assert!(!names.lines().any(|l| l == database));
}

#[tokio::test]
async fn pg_unreachable_server_and_refused_admin_are_transient() {
    let fx = Fixture::new(Engine::Postgres, "pg-down");
    let port = closed_port();
    let closed = Server {
        port,
        ..fx.server(SslMode::Prefer)
    };
    let err = db::observe(&closed, "nobody", None, &secret("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DbError::Connect { .. }) && err.is_transient(),
        "{err}"
    );
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );

    let wrong = Server {
        admin_password: secret("wrong"),
        ..fx.server(SslMode::Prefer)
    };
    let err = db::apply(
        &wrong,
        &[Action::DropUser {
            user: "nobody".into(),
        }],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, DbError::AdminLogin { ref user, .. } if *user == fx.admin),
        "{err}"
    );
    assert!(err.is_transient());
    assert_eq!(err.kind(), "admin_login");
}

/// A server that accepts the connection and never answers is a timeout, not a hang.
#[tokio::test]
async fn pg_hung_server_times_out() {
    let fx = Fixture::new(Engine::Postgres, "pg-hung");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let hung = Server {
        port: listener.local_addr().unwrap().port(),
        ..fx.server(SslMode::Disable)
    };
    let started = Instant::now();
    let err = db::observe(&hung, "nobody", None, &secret("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DbError::Timeout { .. }) && err.is_transient(),
        "{err}"
    );
    assert!(err.to_string().contains(&hung.address()), "{err}");
    assert!(started.elapsed() < db::TIMEOUT + Duration::from_secs(3));
    drop(listener);
}

#[tokio::test]
async fn pg_unknown_privileges_fail_before_any_sql_and_refused_ones_quote_the_server() {
    let mut fx = Fixture::new(Engine::Postgres, "pg-priv");
    let user = fx.user("priv");
    let database = fx.database("privdb");
    // Against a closed port: an attempt to connect would be a Connect error.
    let closed = Server {
        port: closed_port(),
        ..fx.server(SslMode::Prefer)
    };
    let err = db::apply(
        &closed,
        &[
            Action::CreateUser {
                user: user.clone(),
                password: secret("x"),
            },
            Action::Grant {
                user: user.clone(),
                database: database.clone(),
                privileges: privileges(&["CONNECT", "FROBNICATE"]),
            },
        ],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, DbError::UnknownPrivilege { ref privilege, .. } if privilege == "FROBNICATE"),
        "{err}"
    );
    assert!(!err.is_transient());

    // SELECT is allowed by the list but not on a database: the server says so.
    let server = fx.server(SslMode::Prefer);
    let err = db::apply(
        &server,
        &[
            Action::CreateUser {
                user: user.clone(),
                password: secret("priv-Pa55word"),
            },
            Action::CreateDatabase {
                database: database.clone(),
                owner: user.clone(),
            },
            Action::Grant {
                user: user.clone(),
                database: database.clone(),
                privileges: privileges(&["SELECT"]),
            },
        ],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            DbError::Query {
                action: "grant",
                ..
            }
        ) && !err.is_transient(),
        "{err}"
    );
    assert!(
        err.to_string().contains("invalid privilege type SELECT"),
        "{err}"
    );
}

/// `Delete` without `dropDatabase`: the user goes, its database and tables stay (owned by
/// the administrator from then on).
#[tokio::test]
async fn pg_dropping_a_user_keeps_its_database_and_tables() {
    let mut fx = Fixture::new(Engine::Postgres, "pg-retain");
    let user = fx.user("app");
    let database = fx.database("keepdb");
    let server = fx.server(SslMode::Prefer);
    db::apply(
        &server,
        &[
            Action::CreateUser {
                user: user.clone(),
                password: secret("keep-Pa55word"),
            },
            Action::CreateDatabase {
                database: database.clone(),
                owner: user.clone(),
            },
        ],
    )
    .await
    .unwrap();
    pg_use_database(&user, "keep-Pa55word", &database).await;

    db::apply(&server, &[Action::DropUser { user: user.clone() }])
        .await
        .unwrap();
    let seen = db::observe(&server, &user, Some(&database), &secret("keep-Pa55word"))
        .await
        .unwrap();
    assert!(!seen.user_exists && seen.database_exists, "{seen:?}");
    let tables = sql(
        Engine::Postgres,
        &format!(
            "\\c {}\nSELECT tableowner FROM pg_tables WHERE tablename = 'kittens';",
            literal(&database)
        ),
    );
    assert_eq!(
        tables.trim(),
        fx.admin,
        "the table stays, owned by the administrator"
    );
}
