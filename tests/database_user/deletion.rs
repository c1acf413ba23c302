//! After a DatabaseUser record is deleted, on PostgreSQL: `Retain` keeps the
//! user and its database, `Delete` drops the user and keeps the database,
//! `Delete` with `dropDatabase` drops both, even for a record whose status an
//! older swarmkeeper wrote (the spec kept as an owned entry); each status and
//! each delivered secret goes.

use super::*;

/// Rewrites `name`'s status as versions before the typed field wrote it: the
/// spec as JSON in an owned entry `database-user-spec`, no `databaseUser`.
async fn as_old_status(env: &Env, name: &str) {
    let mut status = env.status("DatabaseUser", name).await.unwrap();
    let typed = status
        .as_object_mut()
        .unwrap()
        .remove("databaseUser")
        .expect("the status has the typed field");
    status["owned"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "object": "database-user-spec",
            "name": typed["spec"].to_string(),
            "id": "",
        }));
    env.store
        .put_status("DatabaseUser", name, &status)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_keeps_the_user_and_delete_drops_it_with_or_without_its_database() {
    let engine = Engine::Postgres;
    let mut guard = Guard::new(engine);
    let env = Env::new("deletion").await;
    let admin = guard.record("adm");
    let mut records = vec![guard.admin_secret(&admin)];
    let mut made = Vec::new();
    for (base, policy) in [
        ("retain", ""),
        ("delete", "  deletionPolicy: Delete\n"),
        ("dropdb", "  deletionPolicy: Delete\n  dropDatabase: true\n"),
    ] {
        let (name, user, database) = (guard.record(base), guard.user(base), guard.database(base));
        let extra = format!("  database: {database}\n  createDatabase: true\n{policy}");
        records.push(guard.user_record(&name, &format!("{admin}-admin"), &user, &extra));
        made.push((name, user, database));
    }
    env.apply("records.yaml", &records);
    let once = env.ok(&["run", "--once"]);
    for (name, user, database) in &made {
        let line = Env::line(&once, &format!("DatabaseUser/{name}"));
        assert!(line.ends_with("Ready"), "{once}");
        assert_eq!(engine.users_named(user), "1");
        assert_eq!(engine.databases_named(database), "1");
        let owner = format!("swarmkeeper.owner=DatabaseUser.{name}");
        assert_eq!(names_with_label("secret", &owner).len(), 1);
    }
    let [retained, deleted, dropped] = &made[..] else {
        unreachable!()
    };
    // The last rotation shows, and the spec kept for the cleanup is no object.
    let describe = env.ok(&["describe", "databaseuser", &retained.0]);
    assert!(
        describe.contains("Password:    rotation 0, set at "),
        "{describe}"
    );
    assert!(!describe.contains("database-user-spec"), "{describe}");
    as_old_status(&env, &dropped.0).await;

    for (name, _, _) in &made {
        env.ok(&["delete", "databaseuser", name]);
    }
    let once = env.ok(&["run", "--once"]);
    for (name, _, _) in &made {
        let line = Env::line(&once, &format!("DatabaseUser/{name}"));
        assert!(line.ends_with("removed"), "{once}");
        assert_eq!(env.status("DatabaseUser", name).await, None);
        let owner = format!("swarmkeeper.owner=DatabaseUser.{name}");
        assert!(names_with_label("secret", &owner).is_empty(), "{owner}");
    }
    assert_eq!(
        engine.users_named(&retained.1),
        "1",
        "Retain keeps the user"
    );
    assert_eq!(engine.databases_named(&retained.2), "1");
    assert_eq!(engine.users_named(&deleted.1), "0", "Delete drops the user");
    assert_eq!(
        engine.databases_named(&deleted.2),
        "1",
        "without dropDatabase the database stays"
    );
    assert_eq!(
        engine.users_named(&dropped.1),
        "0",
        "the old status is read"
    );
    assert_eq!(engine.databases_named(&dropped.2), "0");
}
