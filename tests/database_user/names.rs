//! Names: a user or database name with a quote, a space or a semicolon, or
//! longer than the engine keeps, is refused at apply (exit 64, naming the
//! file, the record and the field, nothing written), so no SQL is ever made
//! from one; the characters a name may hold beyond letters and digits (`-`,
//! `$`) and MariaDB's longest database name (64) are quoted and created whole.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_could_be_sql_are_refused_and_odd_valid_ones_are_created_whole() {
    let env = Env::new("names").await;
    let mut guards = [Guard::new(Engine::Postgres), Guard::new(Engine::Mariadb)];
    let [pg, maria] = &mut guards;
    let mut bad = Vec::new();
    let mut expected = Vec::new();
    for (guard, base, user, extra, field) in [
        (&*pg, "quote", "o'brien", String::new(), "spec.user"),
        (&*maria, "space", "app user", String::new(), "spec.user"),
        (
            &*pg,
            "semicolon",
            "app",
            "  database: app;DROP DATABASE postgres\n".to_owned(),
            "spec.database",
        ),
        (
            &*pg,
            "dquote",
            "app",
            "  database: 'd\"b'\n".to_owned(),
            "spec.database",
        ),
        (
            &*maria,
            "longuser",
            &"u".repeat(64),
            String::new(),
            "spec.user",
        ),
        (
            &*maria,
            "longdb",
            "app",
            format!("  database: {}\n", "d".repeat(65)),
            "spec.database",
        ),
    ] {
        let name = format!("{base}{}", guard.id);
        bad.push(guard.user_record(&name, "admin", user, &extra));
        expected.push((name, field));
    }
    let file = env.write("bad.yaml", &bad);
    let (code, _, stderr) = env.run(&["apply", "-f", &file]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("bad.yaml"), "{stderr}");
    for (name, field) in &expected {
        let line = stderr
            .lines()
            .find(|l| l.contains(name.as_str()))
            .unwrap_or_else(|| panic!("{name} is not named:\n{stderr}"));
        assert!(line.contains(field), "{field} is not named:\n{stderr}");
    }
    assert!(env.ok(&["get", "databaseusers"]).contains("No records."));

    // Valid, if odd: quoted by the operator, created under exactly these names.
    let mut made = Vec::new();
    let mut records = Vec::new();
    for guard in [&mut *pg, &mut *maria] {
        let engine = guard.engine;
        let name = guard.record(&format!("odd-{}", engine.name()));
        let user = guard.user("-a$b-");
        let database = match engine {
            Engine::Postgres => guard.database("-c$d-"),
            Engine::Mariadb => {
                let start = format!("sk-{}$", guard.id);
                guard.database_named(format!("{start}{}", "x".repeat(64 - start.len())))
            }
        };
        let extra =
            format!("  database: '{database}'\n  createDatabase: true\n  privileges: [ALL]\n");
        records.push(guard.admin_secret(&name));
        records.push(guard.user_record(
            &name,
            &format!("{name}-admin"),
            &format!("'{user}'"),
            &extra,
        ));
        made.push((engine, name, user, database));
    }
    env.apply("odd.yaml", &records);
    let once = env.ok(&["run", "--once"]);
    for (engine, name, user, database) in &made {
        let line = Env::line(&once, &format!("DatabaseUser/{name}"));
        assert!(line.ends_with("Ready"), "{once}");
        assert_eq!(engine.users_named(user), "1", "{user}");
        assert_eq!(engine.databases_named(database), "1", "{database}");
        let password = env.ok(&["secret", "reveal", &format!("{name}_password")]);
        let used = engine.login(
            user,
            password.trim_end(),
            database,
            "CREATE TABLE t (i int); INSERT INTO t VALUES (1)",
        );
        assert!(used.status.success(), "{used:?}");
    }
    assert_eq!(made[1].3.len(), 64);
}
