//! Drift made by hand, on both engines: a grant revoked is reported by
//! `drift --exit-code` (exit 2, naming the record) and restored by `run`; the
//! user dropped is recreated and logs in again; a pass after that writes
//! nothing.

use super::*;

impl Engine {
    /// Takes from `user` the privilege the test revokes: CREATE (PostgreSQL),
    /// INSERT (MariaDB).
    fn revoke(self, user: &str, database: &str) {
        match self {
            Engine::Postgres => self.admin(&format!(
                "REVOKE CREATE ON DATABASE {} FROM {}",
                self.q(database),
                self.q(user)
            )),
            Engine::Mariadb => self.admin(&format!(
                "REVOKE INSERT ON {}.* FROM {}",
                self.q(database),
                self.account(user)
            )),
        };
    }

    /// Whether `user` holds the privilege [`Engine::revoke`] takes, as the server says.
    fn holds_revoked(self, user: &str, database: &str) -> bool {
        let answer = match self {
            Engine::Postgres => self.admin(&format!(
                "SELECT has_database_privilege('{user}', '{database}', 'CREATE')"
            )),
            Engine::Mariadb => self.admin(&format!(
                "SELECT count(*) FROM information_schema.schema_privileges \
                 WHERE grantee = \"'{user}'@'%'\" AND table_schema = '{database}' \
                 AND privilege_type = 'INSERT'"
            )),
        };
        answer == "t" || answer == "1"
    }

    /// Drops `user` as someone would by hand; on PostgreSQL what it owns (its
    /// database) goes to `heir` first, since an owner cannot be dropped.
    fn drop_by_hand(self, user: &str, heir: &str) {
        match self {
            Engine::Postgres => self.admin(&format!(
                "REASSIGN OWNED BY {u} TO {heir}; DROP OWNED BY {u}; DROP ROLE {u}",
                u = self.q(user)
            )),
            Engine::Mariadb => self.admin(&format!("DROP USER {}", self.account(user))),
        };
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_grant_revoked_and_user_dropped_by_hand_are_healed() {
    a_grant_revoked_and_user_dropped_by_hand_are_healed(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_grant_revoked_and_user_dropped_by_hand_are_healed() {
    a_grant_revoked_and_user_dropped_by_hand_are_healed(Engine::Mariadb).await;
}

async fn a_grant_revoked_and_user_dropped_by_hand_are_healed(engine: Engine) {
    let mut guard = Guard::new(engine);
    let (name, user, database) = (guard.record("heal"), guard.user("heal"), guard.database(""));
    let env = Env::new(&format!("heal-{}", engine.name())).await;
    let extra = format!("  database: {database}\n  createDatabase: true\n  privileges: [ALL]\n");
    env.apply(
        "records.yaml",
        &[
            guard.admin_secret(&name),
            guard.user_record(&name, &format!("{name}-admin"), &user, &extra),
        ],
    );
    let record = format!("DatabaseUser/{name}");
    let once = env.ok(&["run", "--once"]);
    assert!(Env::line(&once, &record).ends_with("Ready"), "{once}");
    assert!(engine.holds_revoked(&user, &database));

    // A grant revoked by hand: drift over all records names this one.
    engine.revoke(&user, &database);
    assert!(!engine.holds_revoked(&user, &database));
    let (code, report, logs) = env.run(&["drift", "--exit-code"]);
    assert_eq!(code, 2, "{report}\n{logs}");
    assert!(
        report.contains(&name) && report.contains("spec.privileges"),
        "{report}"
    );
    let once = env.ok(&["run", "--once"]);
    assert!(Env::line(&once, &record).ends_with("Ready"), "{once}");
    assert!(engine.holds_revoked(&user, &database), "the grant is back");
    assert_eq!(env.run(&["drift", "--exit-code"]).0, 0);

    // The user dropped by hand: drift, then recreated with the delivered
    // password, which logs in again.
    engine.drop_by_hand(&user, &guard.admin);
    assert_eq!(engine.users_named(&user), "0");
    let (code, report, _) = env.run(&["drift", "--exit-code", "-o", "json"]);
    assert_eq!(code, 2, "{report}");
    assert!(
        report.contains(&name) && report.contains("missing"),
        "{report}"
    );
    let once = env.ok(&["run", "--once"]);
    assert!(Env::line(&once, &record).ends_with("Ready"), "{once}");
    let password = env.ok(&["secret", "reveal", &format!("{name}_password")]);
    let login = engine.login(&user, password.trim_end(), &database, "SELECT 1");
    assert!(login.status.success(), "{login:?}");
    assert!(engine.holds_revoked(&user, &database));

    // Converged: another pass writes nothing, to dockerd or to etcd.
    let revision = env.store.get_status("DatabaseUser", &name).await.unwrap();
    let once = env.ok(&["run", "--once"]);
    assert!(once.contains("with 0 writes to dockerd"), "{once}");
    let again = env.store.get_status("DatabaseUser", &name).await.unwrap();
    assert_eq!(
        revision.map(|v| v.mod_revision),
        again.map(|v| v.mod_revision)
    );
}
