//! The example records in `manifests/examples/` are the contract of the record kinds.

use std::path::PathBuf;

use swarmkeeper::api::load::load_paths;
use swarmkeeper::api::{Kind, Record};

#[test]
fn every_example_loads_and_round_trips() {
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests/examples");
    let loaded = load_paths(&[examples], &|_| None).unwrap_or_else(|err| panic!("{err}"));
    let keys: Vec<String> = loaded
        .iter()
        .map(|item| format!("{}/{}", item.record.kind, item.record.metadata.name))
        .collect();
    assert_eq!(
        keys,
        [
            "Node/docker04",
            "Node/docker05",
            "Network/frontend",
            "Network/backend",
            "Secret/pg_admin_password",
            "DatabaseUser/kittenapi",
            "Stack/kittenapi",
            "Stack/traefik",
            "Stack/whoami",
            "Stack/lab3",
            "Secret/db_user",
            "Secret/db_password",
            "Secret/registry_ci_password",
            "Registry/private",
            "BackupJob/kittenapi-db",
        ]
    );
    for item in &loaded {
        let stored = item.record.to_value();
        assert_eq!(
            Record::from_value(stored.clone()).as_ref(),
            Ok(&item.record),
            "{stored}"
        );
    }
    let db_user = loaded
        .iter()
        .find(|item| item.record.key() == (Kind::Secret, "db_user"))
        .unwrap();
    assert_eq!(db_user.secrets[0].store_key, "db_user");
    assert_eq!(db_user.secrets[0].value.expose(), b"admin");
}
