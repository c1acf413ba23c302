//! The whole life of a DatabaseUser, on both engines: the user is made and
//! logs in with the delivered password, a stack mounts the connection
//! string, a password changed by hand is drift and healed, rotation moves the
//! stack and is recorded in the status, `Delete` with `dropDatabase` drops it
//! all, and the password shows nowhere, PostgreSQL's statement log included.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_user_is_made_delivered_healed_and_dropped() {
    a_user_is_made_delivered_healed_and_dropped(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_user_is_made_delivered_healed_and_dropped() {
    a_user_is_made_delivered_healed_and_dropped(Engine::Mariadb).await;
}

async fn a_user_is_made_delivered_healed_and_dropped(engine: Engine) {
    let mut guard = Guard::new(engine);
    let (name, user, database) = (guard.record("app"), guard.user("usr"), guard.database(""));
    let admin_password = guard.admin_password.clone();
    if engine == Engine::Postgres {
        // Every statement of the operator's sessions is logged: none may hold the password.
        engine.admin(&format!(
            "ALTER ROLE {} SET log_statement = 'all'",
            guard.admin
        ));
    }
    let env = Env::new(engine.name()).await;
    let (name, user, database) = (&name, &user, &database);
    let extra = format!(
        "  database: {database}
  createDatabase: true
  privileges: [ALL]
  connectionSecret:
    name: {name}_uri
    template: \"{engine}://{{{{user}}}}:{{{{password}}}}@{{{{host}}}}:{{{{port}}}}/{{{{database}}}}\"
  deletionPolicy: Delete
  dropDatabase: true
",
        engine = engine.name(),
    );
    let mut user_record = guard.user_record(name, &format!("{name}-admin"), user, &extra);
    if engine == Engine::Postgres {
        // The local MariaDB has no TLS; PostgreSQL's has, with Debian's snakeoil certificate.
        user_record = user_record.replace("sslMode: disable", "sslMode: require");
    }
    let records = [
        guard.admin_secret(name),
        user_record,
        stack_using(name, &format!("{name}_uri")),
    ]
    .join("---\n");
    let file = env.dir.path().join("records.yaml");
    std::fs::write(&file, &records).unwrap();
    env.ok(&["apply", "-f", file.to_str().unwrap()]);
    let (_, once, logs) = env.run(&["run", "--once"]);
    for record in [
        format!("DatabaseUser/{name}: Ready"),
        format!("Stack/{name}: Ready"),
    ] {
        assert!(once.contains(&record), "{record}:\n{once}\n{logs}");
    }
    let mounted = docker_ok(&[
        "service",
        "inspect",
        &format!("{name}_app"),
        "--format",
        "{{range .Spec.TaskTemplate.ContainerSpec.Secrets}}{{.SecretName}}{{end}}",
    ]);
    assert!(mounted.starts_with(&format!("{name}_uri.v")), "{mounted}");

    let password = env.ok(&["secret", "reveal", &format!("{name}_password")]);
    let password = password.trim_end();
    assert_eq!(password.len(), 32);
    let used = engine.login(
        user,
        password,
        database,
        "CREATE TABLE t (i int); INSERT INTO t VALUES (1); SELECT count(*) FROM t",
    );
    assert!(used.status.success(), "{used:?}");
    let uri = env.ok(&["secret", "reveal", &format!("{name}_uri")]);
    assert_eq!(
        uri.trim_end(),
        format!(
            "{}://{user}:{password}@127.0.0.1:{}/{database}",
            engine.name(),
            engine.port()
        )
    );
    for logical in ["password", "uri"] {
        let label = format!("swarmkeeper.secret={name}_{logical}");
        assert_eq!(names_with_label("secret", &label).len(), 1, "{label}");
    }

    // The password changed by hand: drift names the record, run restores it.
    engine.set_password(user, "changed-by-hand");
    let (code, report, _) = env.run(&["drift", "databaseuser", name, "--exit-code", "-o", "json"]);
    assert_eq!(code, 2, "{report}");
    assert!(
        report.contains("password") && !report.contains(password),
        "{report}"
    );
    let (_, second, logs2) = env.run(&["run", "--once"]);
    assert!(
        second.contains(&format!("DatabaseUser/{name}: Ready")),
        "{second}"
    );
    assert!(
        engine
            .login(user, password, database, "SELECT 1")
            .status
            .success()
    );
    let (code, _, _) = env.run(&["drift", "databaseuser", name, "--exit-code"]);
    assert_eq!(code, 0);
    let first = env.status("DatabaseUser", name).await.unwrap()["databaseUser"].clone();
    assert_eq!(first["rotation"], 0, "{first}");
    let first_at: jiff::Timestamp = first["rotatedAt"].as_str().unwrap().parse().unwrap();

    // Rotation: a new password in the server, new versions the stack moves to,
    // the old ones gone once unused; the old password no longer logs in.
    let rotated = records.replace(
        "  deletionPolicy: Delete",
        "  rotation: 1\n  deletionPolicy: Delete",
    );
    std::fs::write(&file, &rotated).unwrap();
    env.ok(&["apply", "-f", file.to_str().unwrap()]);
    let (_, rotating, logs3) = env.run(&["run", "--once"]);
    let (_, third, _) = env.run(&["run", "--once"]);
    assert!(
        third.contains(&format!("DatabaseUser/{name}: Ready")),
        "{third}"
    );
    let new_password = env.ok(&["secret", "reveal", &format!("{name}_password")]);
    let new_password = new_password.trim_end();
    assert_ne!(new_password, password);
    assert!(
        !engine
            .login(user, password, database, "SELECT 1")
            .status
            .success()
    );
    assert!(
        engine
            .login(user, new_password, database, "SELECT 1")
            .status
            .success()
    );
    let label = format!("swarmkeeper.secret={name}_uri");
    let versions = names_with_label("secret", &label);
    assert_eq!(versions.len(), 1, "{versions:?}");
    let mounted_now = docker_ok(&[
        "service",
        "inspect",
        &format!("{name}_app"),
        "--format",
        "{{range .Spec.TaskTemplate.ContainerSpec.Secrets}}{{.SecretName}}{{end}}",
    ]);
    assert_eq!(mounted_now, versions[0]);
    assert_ne!(mounted_now, mounted);
    // The status records the rotation and when its password was set.
    let rotation = env.status("DatabaseUser", name).await.unwrap()["databaseUser"].clone();
    assert_eq!(rotation["rotation"], 1, "{rotation}");
    let rotated_at: jiff::Timestamp = rotation["rotatedAt"].as_str().unwrap().parse().unwrap();
    assert!(rotated_at > first_at, "{rotation}");
    assert_eq!(rotation["spec"]["user"], user.as_str());
    let wide = env.ok(&["get", "databaseuser", "-o", "wide"]);
    assert!(
        wide.contains(&format!("password rotation 1, set at {rotated_at}")),
        "{wide}"
    );

    // `secret reveal` is for a person with the key, about a name that exists.
    let (code, _, _) = env.run(&["secret", "reveal", &format!("{name}_nothing")]);
    assert_eq!(code, 1);
    let keyless = Command::new(env!("CARGO_BIN_EXE_swarmkeeper"))
        .args(["--etcd-endpoints", &Etcd::shared().endpoint()])
        .args(["--prefix", env.store.prefix()])
        .args(["secret", "reveal", &format!("{name}_password")])
        .env_remove("SWARMKEEPER_SECRET_KEY_FILE")
        .output()
        .expect("the binary runs");
    assert_eq!(keyless.status.code(), Some(64));
    assert!(!String::from_utf8_lossy(&keyless.stdout).contains(new_password));

    // The password never shows: not in logs, status, events, describe.
    let describe = env.ok(&["describe", "databaseuser", name]);
    assert!(
        describe.contains(&format!("Password:    rotation 1, set at {rotated_at}")),
        "{describe}"
    );
    assert!(!describe.contains("database-user-spec"), "{describe}");
    let events = env.ok(&["events"]);
    let status = env.ok(&["get", "databaseuser", name, "-o", "json"]);
    let texts = [
        &once, &logs, &second, &logs2, &rotating, &logs3, &describe, &events, &report, &status,
    ];
    for text in texts {
        assert!(!text.contains(password), "the password leaked:\n{text}");
        assert!(
            !text.contains(&admin_password),
            "the admin password leaked:\n{text}"
        );
        // Nor what the server is sent instead (the drivers log statements at debug).
        for sent in ["SCRAM-SHA-256$", "mysql_native_password AS"] {
            assert!(
                !text.contains(sent),
                "a password's verifier leaked:\n{text}"
            );
        }
    }
    if engine == Engine::Postgres {
        // The server logged the statements that set both passwords (so the check
        // means something), with verifiers only.
        let log = std::fs::read_to_string(PG_LOG).unwrap_or_else(|e| panic!("{PG_LOG}: {e}"));
        let marker = format!("ALTER ROLE \"{user}\" LOGIN PASSWORD 'SCRAM-SHA-256$");
        assert!(log.contains(&marker), "{PG_LOG} lacks {marker}");
        assert!(
            !log.contains(password) && !log.contains(new_password),
            "a password reached {PG_LOG}"
        );
    }

    // Deleted with deletionPolicy Delete and dropDatabase: all of it goes.
    env.ok(&["delete", "stack", name]);
    env.ok(&["delete", "databaseuser", name]);
    env.ok(&["run", "--once"]);
    assert_eq!(engine.users_named(user), "0");
    assert_eq!(engine.databases_named(database), "0");
    let owner = format!("swarmkeeper.owner=DatabaseUser.{name}");
    assert!(names_with_label("secret", &owner).is_empty());
}
