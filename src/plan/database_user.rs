//! The plan of a DatabaseUser: from the record and what the server has for
//! its user (observed as the administrator, plus a login as the user), the
//! statements that converge them, and the same differences as drift.
//!
//! Drift names the record's fields (`spec.user`, `spec.database`,
//! `spec.privileges`, `password`), never a value of a password.

use std::collections::BTreeSet;

use super::diff::FieldDiff;
use super::drift::{ObjectDrift, ObjectState};
use crate::api::SecretValue;
use crate::api::database_user::{DatabaseUserSpec, DeletionPolicy};
use crate::db::{Action, Observed, normalize_privilege};

/// What converges the user, in order, and the differences it corrects.
#[derive(Debug, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub drift: Vec<ObjectDrift>,
}

fn object(name: &str, state: ObjectState, fields: Vec<FieldDiff>) -> ObjectDrift {
    ObjectDrift {
        object: "database-user".into(),
        name: name.to_string(),
        state,
        fields,
    }
}

/// The privileges `spec` asks for that `granted` lacks, spelled as the
/// server reports them (`temp` is `TEMPORARY`, `all privileges` is `ALL`), or
/// a spelling would be drift for ever.
fn missing_privileges(spec: &DatabaseUserSpec, granted: &BTreeSet<String>) -> Vec<String> {
    if granted.contains("ALL") {
        return Vec::new();
    }
    spec.privileges
        .iter()
        .map(|p| spelled(spec, p))
        .filter(|p| !granted.contains(p))
        .collect()
}

/// `privilege` as the engine's allow-list spells it; validation refused unknown
/// ones, and a stored record that skipped it fails at apply.
fn spelled(spec: &DatabaseUserSpec, privilege: &str) -> String {
    normalize_privilege(spec.engine, privilege)
        .map_or_else(|_| privilege.to_ascii_uppercase(), str::to_owned)
}

/// What an action does, for an event: names, never a password.
#[must_use]
pub fn describe(action: &Action) -> String {
    match action {
        Action::CreateUser { user, .. } => format!("created user {user}"),
        Action::SetPassword { user, .. } => format!("set the password of {user}"),
        Action::CreateDatabase { database, owner } => {
            format!("created database {database} owned by {owner}")
        }
        Action::Grant {
            user,
            database,
            privileges,
        } => format!("granted {} on {database} to {user}", privileges.join(", ")),
        Action::DropUser { user } => format!("dropped user {user}"),
        Action::DropDatabase { database } => format!("dropped database {database}"),
    }
}

/// Plans the user of `spec`, whose password is `password`, against `observed`.
///
/// The user comes first (a database is owned by it), then its password, the
/// database, and the privileges on it.
#[must_use]
pub fn plan(spec: &DatabaseUserSpec, observed: &Observed, password: &SecretValue) -> Plan {
    let mut out = Plan::default();
    let user = spec.user.clone();
    if !observed.user_exists {
        out.actions.push(Action::CreateUser {
            user: user.clone(),
            password: password.clone(),
        });
        out.drift
            .push(object(&user, ObjectState::Missing, Vec::new()));
    } else if !observed.password_works {
        out.actions.push(Action::SetPassword {
            user: user.clone(),
            password: password.clone(),
        });
        let field = FieldDiff {
            path: "password".into(),
            desired: None,
            live: None,
        };
        out.drift
            .push(object(&user, ObjectState::Changed, vec![field]));
    }
    let Some(database) = &spec.database else {
        return out;
    };
    if spec.create_database && !observed.database_exists {
        out.actions.push(Action::CreateDatabase {
            database: database.clone(),
            owner: user.clone(),
        });
        let field = FieldDiff {
            path: "spec.database".into(),
            desired: Some(database.clone().into()),
            live: None,
        };
        out.drift
            .push(object(&user, ObjectState::Changed, vec![field]));
    }
    // A user created now holds nothing yet.
    let granted = if observed.user_exists {
        observed.granted.clone()
    } else {
        BTreeSet::new()
    };
    let missing = missing_privileges(spec, &granted);
    if !missing.is_empty() {
        let field = FieldDiff {
            path: "spec.privileges".into(),
            desired: Some(missing.clone().into()),
            live: Some(granted.iter().cloned().collect::<Vec<_>>().into()),
        };
        out.actions.push(Action::Grant {
            user: user.clone(),
            database: database.clone(),
            privileges: missing,
        });
        out.drift
            .push(object(&user, ObjectState::Changed, vec![field]));
    }
    out
}

/// What deleting the record does on the server, by its `deletionPolicy`:
/// nothing (Retain), or drop the user, and the database with `dropDatabase`.
#[must_use]
pub fn cleanup(spec: &DatabaseUserSpec) -> Vec<Action> {
    if spec.deletion_policy == DeletionPolicy::Retain {
        return Vec::new();
    }
    let mut actions = Vec::new();
    // The database first: it is owned by the user, who cannot go before it.
    if spec.drop_database
        && let Some(database) = &spec.database
    {
        actions.push(Action::DropDatabase {
            database: database.clone(),
        });
    }
    actions.push(Action::DropUser {
        user: spec.user.clone(),
    });
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: serde_json::Value) -> DatabaseUserSpec {
        let mut base = serde_json::json!({
            "engine": "postgres",
            "server": {"host": "db", "adminUser": "admin", "adminPasswordSecret": "pg_admin"},
            "user": "app", "database": "appdb", "createDatabase": true,
            "privileges": ["select", "INSERT"], "passwordSecret": "app_password"
        });
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    fn names(plan: &Plan) -> Vec<&'static str> {
        plan.actions
            .iter()
            .map(|a| match a {
                Action::CreateUser { .. } => "create-user",
                Action::SetPassword { .. } => "set-password",
                Action::CreateDatabase { .. } => "create-database",
                Action::Grant { .. } => "grant",
                Action::DropUser { .. } => "drop-user",
                Action::DropDatabase { .. } => "drop-database",
            })
            .collect()
    }

    fn password() -> SecretValue {
        SecretValue::from("s3cr3t-canary".to_string())
    }

    #[test]
    fn a_new_user_is_created_before_its_database_and_grants() {
        let plan = plan(
            &spec(serde_json::json!({})),
            &Observed::default(),
            &password(),
        );
        assert_eq!(names(&plan), ["create-user", "create-database", "grant"]);
        let Action::Grant { privileges, .. } = &plan.actions[2] else {
            unreachable!()
        };
        assert_eq!(privileges, &["SELECT", "INSERT"]);
    }

    #[test]
    fn a_converged_user_plans_nothing() {
        let observed = Observed {
            user_exists: true,
            database_exists: true,
            granted: ["SELECT".to_string(), "INSERT".to_string()].into(),
            password_works: true,
        };
        let plan = plan(&spec(serde_json::json!({})), &observed, &password());
        assert!(plan.actions.is_empty() && plan.drift.is_empty(), "{plan:?}");
        let all = Observed {
            granted: ["ALL".to_string()].into(),
            ..observed
        };
        assert!(plan_of(&all).actions.is_empty());
    }

    fn plan_of(observed: &Observed) -> Plan {
        plan(&spec(serde_json::json!({})), observed, &password())
    }

    #[test]
    fn a_changed_password_and_a_revoked_grant_are_drift_without_values() {
        let observed = Observed {
            user_exists: true,
            database_exists: true,
            granted: ["SELECT".to_string()].into(),
            password_works: false,
        };
        let plan = plan_of(&observed);
        assert_eq!(names(&plan), ["set-password", "grant"]);
        let shown = serde_json::to_string(&plan.drift).unwrap();
        assert!(shown.contains("\"password\"") && shown.contains("spec.privileges"));
        assert!(!shown.contains("s3cr3t-canary"), "{shown}");
        assert!(!format!("{plan:?}").contains("s3cr3t-canary"));
    }

    #[test]
    fn spellings_of_a_privilege_are_the_privilege_the_server_reports() {
        let observed = Observed {
            user_exists: true,
            database_exists: true,
            granted: ["CONNECT".to_string(), "TEMPORARY".to_string()].into(),
            password_works: true,
        };
        let spelled = spec(serde_json::json!({"privileges": ["temp", " connect"]}));
        assert!(plan(&spelled, &observed, &password()).actions.is_empty());
        let all = spec(serde_json::json!({"privileges": ["all privileges"]}));
        let plan = plan(&all, &observed, &password());
        let [Action::Grant { privileges, .. }] = &plan.actions[..] else {
            panic!("{plan:?}")
        };
        assert_eq!(privileges, &["ALL"]);
    }

    #[test]
    fn deletion_follows_the_policy() {
        assert!(cleanup(&spec(serde_json::json!({}))).is_empty());
        let delete = spec(serde_json::json!({"deletionPolicy": "Delete"}));
        assert!(matches!(cleanup(&delete)[..], [Action::DropUser { .. }]));
        let drop = spec(serde_json::json!({"deletionPolicy": "Delete", "dropDatabase": true}));
        assert!(matches!(
            cleanup(&drop)[..],
            [Action::DropDatabase { .. }, Action::DropUser { .. }]
        ));
    }
}
