//! `secret reveal`: the one command that prints a secret value, for a person
//! who holds the key.

use std::io::Write;

use crate::controllers::{self, Context};
use crate::docker::Docker;

use super::{Failure, GlobalOpts};

/// Prints the current value of the Secret record `name`, or of the secret a
/// DatabaseUser delivers under that name.
///
/// # Errors
/// No secret key (exit 64), no such secret (exit 1), etcd failing or a value
/// that does not open (exit 1).
pub async fn reveal(global: &GlobalOpts, name: &str) -> Result<u8, Failure> {
    let store = global.store().await?;
    let keyring = global.keyring(&store, false).await?.ok_or_else(|| {
        Failure::Invalid("error: secret reveal needs the secret key (--secret-key-file)".into())
    })?;
    let docker = Docker::connect()
        .await
        .map_err(Failure::error)?
        .scoped(&global.prefix);
    let ctx = Context::new(
        store,
        docker,
        Some(keyring),
        std::time::Duration::from_secs(300),
    );
    let value = match controllers::secret::current_value(&ctx, name)
        .await
        .map_err(Failure::error)?
    {
        Some(value) => value,
        None => controllers::database_user::delivered_value(&ctx, name)
            .await
            .map_err(Failure::error)?
            .ok_or_else(|| {
                Failure::Error(format!(
                    "no Secret record and no DatabaseUser secret named {name:?}"
                ))
            })?,
    };
    let mut out = std::io::stdout().lock();
    out.write_all(value.expose())
        .and_then(|()| out.write_all(b"\n"))
        .map_err(Failure::error)?;
    Ok(0)
}
