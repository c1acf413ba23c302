//! The database layer on the real MariaDB: a user with its database and grants, drift
//! made by hand, odd and 64-character names, failures classified.

use super::*;

#[tokio::test]
async fn mariadb_user_with_database_and_grants_then_drift_and_cleanup() {
    let mut fx = Fixture::new(Engine::Mariadb, "my-flow");
    let user = fx.user("app");
    let database = fx.database("app_db");
    let server = fx.server(SslMode::Prefer);
    let first = secret("first-Pa55word");
    db::apply(
        &server,
        &created(&user, &database, &first, &["select", "INSERT", "create"]),
    )
    .await
    .unwrap();
    let seen = observed(&server, &user, &database, &first).await;
    assert!(
        seen.user_exists && seen.database_exists && seen.password_works,
        "{seen:?}"
    );
    assert_eq!(
        seen.granted,
        ["CREATE", "INSERT", "SELECT"].map(String::from).into()
    );
    mysql_use_database(&user, "first-Pa55word", &database).await;

    let second = secret("second-Pa55word");
    db::apply(
        &server,
        &[
            Action::CreateUser {
                user: user.clone(),
                password: first.clone(),
            },
            Action::SetPassword {
                user: user.clone(),
                password: second.clone(),
            },
        ],
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

    // A grant revoked by hand shows as missing; ALL brings everything.
    let q = |s: &str| quote_identifier(Engine::Mariadb, s);
    sql(
        Engine::Mariadb,
        &format!(
            "REVOKE INSERT ON {}.* FROM {}@'%';",
            q(&database.replace('_', "\\_")),
            q(&user)
        ),
    );
    let seen = observed(&server, &user, &database, &second).await;
    assert_eq!(seen.granted, ["CREATE", "SELECT"].map(String::from).into());
    db::apply(
        &server,
        &[Action::Grant {
            user: user.clone(),
            database: database.clone(),
            privileges: privileges(&["ALL PRIVILEGES"]),
        }],
    )
    .await
    .unwrap();
    let seen = observed(&server, &user, &database, &second).await;
    assert!(has(&seen, "ALL") && has(&seen, "LOCK TABLES"), "{seen:?}");

    let drops = drops(&user, &database);
    db::apply(&server, &drops).await.unwrap();
    db::apply(&server, &drops).await.unwrap();
    let seen = observed(&server, &user, &database, &second).await;
    assert_eq!(seen, Observed::default());
}

#[tokio::test]
async fn mariadb_user_dropped_by_hand_is_seen_missing() {
    let mut fx = Fixture::new(Engine::Mariadb, "my-gone");
    let user = fx.user("app");
    let server = fx.server(SslMode::Disable);
    let password = secret("Pa55word-gone");
    create_user(&server, &user, &password).await;
    assert!(
        db::observe(&server, &user, None, &password)
            .await
            .unwrap()
            .password_works
    );
    sql(
        Engine::Mariadb,
        &format!(
            "DROP USER {}@'%';",
            quote_identifier(Engine::Mariadb, &user)
        ),
    );
    let seen = db::observe(&server, &user, None, &password).await.unwrap();
    assert!(!seen.user_exists && !seen.password_works, "{seen:?}");
}

/// Backticks, quotes, spaces and semicolons in names, and MariaDB's 64-character limit.
#[tokio::test]
async fn mariadb_odd_and_long_names_are_quoted_or_refused() {
    let mut fx = Fixture::new(Engine::Mariadb, "my-odd");
    let tag = unique_name("x");
    let database = format!("d`b {}; DROP DATABASE mysql; -- '", &tag[..12]);
    let long = format!("{}{}", tag, "l".repeat(64 - tag.len()));
    let user = fx.user("odd");
    fx.track(None, Some(&database));
    fx.track(None, Some(&long));
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
                privileges: privileges(&["SELECT"]),
            },
            Action::CreateDatabase {
                database: long.clone(),
                owner: user.clone(),
            },
        ],
    )
    .await
    .unwrap();
    let seen = observed(&server, &user, &database, &password).await;
    assert!(
        seen.database_exists && seen.password_works && has(&seen, "SELECT"),
        "{seen:?}"
    );
    let names = sql(Engine::Mariadb, "SHOW DATABASES;");
    assert!(
        names.lines().any(|l| l == database),
        "{database:?} not in {names}"
    );
    assert!(names.lines().any(|l| l == long) && names.lines().any(|l| l == "mysql"));

    let too_long = format!("{long}x");
    let err = db::apply(
        &server,
        &[Action::CreateDatabase {
            database: too_long,
            owner: user.clone(),
        }],
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), "invalid_name", "{err}");
}

#[tokio::test]
async fn mariadb_failures_are_classified() {
    let mut fx = Fixture::new(Engine::Mariadb, "my-fail");
    let user = fx.user("fail");
    let port = closed_port();
    let closed = Server {
        port,
        ..fx.server(SslMode::Prefer)
    };
    let err = db::observe(&closed, &user, None, &secret("x"))
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
        ..fx.server(SslMode::Disable)
    };
    let err = db::observe(&wrong, &user, None, &secret("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DbError::AdminLogin { .. }) && err.is_transient(),
        "{err}"
    );

    // An unknown privilege is refused before connecting (the port is closed).
    let err = db::apply(
        &closed,
        &[Action::Grant {
            user: user.clone(),
            database: "d".into(),
            privileges: privileges(&["CONNECT"]),
        }],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, DbError::UnknownPrivilege { .. }) && !err.is_transient(),
        "{err}"
    );

    // The local MariaDB has TLS off: require refuses to talk in plain, prefer does.
    let require = fx.server(SslMode::Require);
    let err = db::observe(&require, &user, None, &secret("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DbError::Connect { .. }) && err.is_transient(),
        "{err}"
    );
    assert!(
        !db::observe(&fx.server(SslMode::Prefer), &user, None, &secret("x"))
            .await
            .unwrap()
            .user_exists
    );
}
