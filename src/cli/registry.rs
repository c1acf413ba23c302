//! `registry login`: logs the local Docker client in to a Registry record's
//! registry, so a CI runner can push, with the password read from the store.
//!
//! It writes what `docker login` writes without a credential helper: the
//! entry `auths.<address>.auth` (base64 of `user:password`) of the client's
//! `config.json` (`$DOCKER_CONFIG`, else `~/.docker`), keeping the rest of the
//! file, with mode 0600. The password never travels on a command line or in
//! an environment variable.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value};

use super::{Failure, GlobalOpts};
use crate::api::{Kind, Spec};
use crate::controllers::{self, registry_auth};
use crate::distribution::Basic;

/// The Docker client's config file, as the docker CLI finds it.
fn config_path() -> Result<PathBuf, Failure> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("config.json"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| Failure::Error("neither DOCKER_CONFIG nor HOME is set".into()))?;
    Ok(PathBuf::from(home).join(".docker").join("config.json"))
}

/// `config` with the login for `address` set; an error when the client keeps
/// credentials in a helper, which would ignore the entry.
fn with_login(mut config: Value, address: &str, auth: &str) -> Result<Value, String> {
    let Some(object) = config.as_object_mut() else {
        return Err("is not a JSON object".into());
    };
    let helper = object
        .get("credHelpers")
        .and_then(|h| h.get(address))
        .or_else(|| object.get("credsStore"));
    if let Some(helper) = helper.and_then(Value::as_str).filter(|h| !h.is_empty()) {
        return Err(format!(
            "keeps credentials in the helper {helper:?}; run `docker login` instead"
        ));
    }
    let auths = object
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(auths) = auths.as_object_mut() else {
        return Err("has an `auths` that is not an object".into());
    };
    let mut entry = Map::new();
    entry.insert("auth".into(), Value::String(auth.to_owned()));
    auths.insert(address.to_owned(), Value::Object(entry));
    Ok(config)
}

/// Writes `bytes` to `path` through a private (0600) temporary file in the
/// same folder, renamed over it, so a reader never sees half a file.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let temporary = dir.join(format!(".config.json.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// Logs the Docker client in to Registry record `name`'s registry.
///
/// # Errors
/// No secret key (exit 64); no such record, no credentials, a password not
/// made yet, the registry refusing them, or the config file unwritable (exit 1).
pub async fn login(global: &GlobalOpts, name: &str) -> Result<u8, Failure> {
    let ctx = global.context(Some("registry login")).await?;
    let stored = ctx
        .store
        .get_record(Kind::Registry.as_str(), name)
        .await
        .map_err(Failure::error)?
        .ok_or_else(|| Failure::Error(format!("no Registry record named {name:?}")))?;
    let Ok(Spec::Registry(spec)) = controllers::parse_record(stored.value).map(|r| r.spec) else {
        return Err(Failure::Error(format!("Registry/{name} is not valid")));
    };
    let credentials = spec
        .credentials
        .as_ref()
        .ok_or_else(|| Failure::Error(format!("Registry/{name} has no credentials")))?;
    let password = controllers::secret::current_value(&ctx, &credentials.password_secret)
        .await
        .map_err(Failure::error)?
        .ok_or_else(|| {
            Failure::Error(format!(
                "Secret/{} has no value yet",
                credentials.password_secret
            ))
        })?;
    // As `docker login` does: only credentials the registry takes are written.
    let basic = Basic {
        username: &credentials.username,
        password: &password,
    };
    registry_auth::api_for(&ctx, &spec)
        .await
        .map_err(Failure::error)?
        .map_err(Failure::error)?
        .check(Some(&basic))
        .await
        .map_err(|e| Failure::Error(format!("login refused: {e}")))?;
    let mut plain = format!("{}:", credentials.username).into_bytes();
    plain.extend_from_slice(password.expose());
    let auth = base64::engine::general_purpose::STANDARD.encode(&plain);
    zeroize::Zeroize::zeroize(&mut plain);
    let path = config_path()?;
    let config = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Failure::Error(format!("{}: {e}", path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Value::Object(Map::new()),
        Err(e) => return Err(Failure::Error(format!("{}: {e}", path.display()))),
    };
    let config = with_login(config, &spec.address, &auth)
        .map_err(|e| Failure::Error(format!("{} {e}", path.display())))?;
    let mut bytes = serde_json::to_vec_pretty(&config).map_err(Failure::error)?;
    bytes.push(b'\n');
    write_private(&path, &bytes).map_err(|e| Failure::Error(format!("{}: {e}", path.display())))?;
    println!(
        "logged in to {} as {} ({})",
        spec.address,
        credentials.username,
        path.display()
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_is_added_beside_what_the_file_has() {
        let config = serde_json::json!({
            "auths": {"other:5000": {"auth": "b3RoZXI="}},
            "psFormat": "table {{.ID}}"
        });
        let out = with_login(config, "127.0.0.1:5000", "Y2k6cHc=").unwrap();
        assert_eq!(out["auths"]["127.0.0.1:5000"]["auth"], "Y2k6cHc=");
        assert_eq!(out["auths"]["other:5000"]["auth"], "b3RoZXI=");
        assert_eq!(out["psFormat"], "table {{.ID}}");
        let fresh = with_login(Value::Object(Map::new()), "r:1", "eA==").unwrap();
        assert_eq!(
            fresh,
            serde_json::json!({"auths": {"r:1": {"auth": "eA=="}}})
        );
    }

    #[test]
    fn a_credential_helper_is_not_bypassed() {
        for config in [
            serde_json::json!({"credsStore": "desktop"}),
            serde_json::json!({"credHelpers": {"r:1": "pass"}}),
        ] {
            let err = with_login(config, "r:1", "eA==").unwrap_err();
            assert!(err.contains("docker login"), "{err}");
        }
        assert!(with_login(serde_json::json!([]), "r:1", "eA==").is_err());
    }
}
