//! DatabaseUser records that cannot converge, on PostgreSQL, in one `run
//! --once` with one that can: a closed port and a wrong admin password are
//! transient (retried, the message says what is wrong, never the password), a
//! privilege the server refuses on a database is `Failed` with the server's
//! message, one it cannot know is refused at apply; none stops the good
//! record. A Stack that uses the secret of a record that cannot converge
//! waits, saying for what, and runs once the record converges.

use std::net::TcpListener;

use super::*;

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_refused_and_failed_records_do_not_stop_another_and_a_stack_waits() {
    let engine = Engine::Postgres;
    let mut guard = Guard::new(engine);
    let env = Env::new("failures").await;
    let admin = guard.record("adm");
    let wrong_password = format!("wrong-admin-canary-{}", guard.id);
    let names = ["good", "closed", "refused", "failed", "unknown", "app"].map(|n| guard.record(n));
    let [good, closed, refused, failed, unknown, stack] = &names;
    let users = ["good", "closed", "refused", "failed", "unknown"].map(|n| guard.user(n));
    let failed_database = guard.database("failed");
    let port = closed_port();
    let admin_secret = format!("{admin}-admin");
    let good_record = guard.user_record(good, &admin_secret, &users[0], "");
    let closed_record = guard
        .user_record(closed, &admin_secret, &users[1], "")
        .replace("port: 5432", &format!("port: {port}"));
    let refused_record = |secret: &str| guard.user_record(refused, secret, &users[2], "");
    // SELECT is a PostgreSQL privilege, but not one of a database's.
    let failed_extra =
        format!("  database: {failed_database}\n  createDatabase: true\n  privileges: [SELECT]\n");
    let failed_record = guard.user_record(failed, &admin_secret, &users[3], &failed_extra);

    // A privilege no engine knows is refused at apply, naming the field; nothing is written.
    let unknown = guard.user_record(
        unknown,
        &admin_secret,
        &users[4],
        &format!("  database: {failed_database}\n  privileges: [CONNECT, FROBNICATE]\n"),
    );
    let file = env.write("unknown.yaml", &[unknown]);
    let (code, _, stderr) = env.run(&["apply", "-f", &file]);
    assert_eq!(code, 64, "{stderr}");
    assert!(
        stderr.contains("unknown.yaml") && stderr.contains("spec.privileges[1]"),
        "{stderr}"
    );
    assert!(env.ok(&["get", "databaseusers"]).contains("No records."));

    let wrong_secret = format!("{admin}-wrong");
    env.apply(
        "records.yaml",
        &[
            guard.admin_secret(&admin),
            Guard::secret(&wrong_secret, &wrong_password),
            good_record,
            closed_record,
            refused_record(&wrong_secret),
            failed_record,
            stack_using(stack, &format!("{refused}_password")),
        ],
    );
    let (code, once, logs) = env.run(&["run", "--once"]);
    assert_eq!(code, 1, "{once}");
    let line = |record: &str| Env::line(&once, record).to_owned();
    assert!(
        line(&format!("DatabaseUser/{good}")).ends_with("Ready"),
        "{once}"
    );
    assert!(
        line(&format!("DatabaseUser/{closed}"))
            .contains(&format!("error: connecting to 127.0.0.1:{port}")),
        "{once}"
    );
    let admin_refused = format!(
        "the admin login to 127.0.0.1:5432 as {} was refused",
        guard.admin
    );
    assert!(
        line(&format!("DatabaseUser/{refused}")).contains(&admin_refused),
        "{once}"
    );
    let failed_line = line(&format!("DatabaseUser/{failed}"));
    assert!(
        failed_line.contains("invalid privilege type SELECT for database"),
        "{once}"
    );
    let waiting = format!(
        "Pending: waiting for external secret \"{refused}_password\" from DatabaseUser/{refused}"
    );
    assert!(
        line(&format!("Stack/{stack}")).ends_with(&waiting),
        "{once}"
    );

    // Transient ones are retried: not Failed, and the status says what is wrong.
    for (name, cause) in [
        (closed, format!("connecting to 127.0.0.1:{port}")),
        (refused, admin_refused.clone()),
    ] {
        let status = env.status("DatabaseUser", name).await.unwrap();
        assert_ne!(status["phase"], "Failed", "{status}");
        let message = status["message"].as_str().unwrap();
        assert!(
            message.starts_with("retrying after error: ") && message.contains(&cause),
            "{status}"
        );
    }
    let status = env.status("DatabaseUser", failed).await.unwrap();
    assert_eq!(status["phase"], "Failed", "{status}");

    // The wrong admin password shows nowhere.
    let describe = env.ok(&["describe", "databaseuser", refused]);
    let statuses = env.ok(&["get", "databaseusers", "-o", "json"]);
    let events = env.ok(&["events"]);
    let (_, drift, drift_logs) = env.run(&["drift", "-o", "json"]);
    for text in [
        &once,
        &logs,
        &describe,
        &statuses,
        &events,
        &drift,
        &drift_logs,
    ] {
        assert!(
            !text.contains(&wrong_password),
            "the admin password leaked:\n{text}"
        );
    }

    // The record fixed, it converges, and the stack runs with its secret.
    env.apply("fixed.yaml", &[refused_record(&admin_secret)]);
    let (_, once, _) = env.run(&["run", "--once"]);
    assert!(
        Env::line(&once, &format!("DatabaseUser/{refused}")).ends_with("Ready"),
        "{once}"
    );
    assert!(
        Env::line(&once, &format!("Stack/{stack}")).ends_with("Ready"),
        "{once}"
    );
    let mounted = docker_ok(&[
        "service",
        "inspect",
        &format!("{stack}_app"),
        "--format",
        "{{range .Spec.TaskTemplate.ContainerSpec.Secrets}}{{.SecretName}}{{end}}",
    ]);
    assert!(
        mounted.starts_with(&format!("{refused}_password.v")),
        "{mounted}"
    );
}
