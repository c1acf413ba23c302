//! `secret reveal`: the one command that prints a secret value, for a person
//! who holds the key.

use std::io::Write;

use crate::controllers;

use super::{Failure, GlobalOpts};

/// Prints the current value of the Secret record `name`, or of the secret a
/// DatabaseUser delivers under that name.
///
/// # Errors
/// No secret key (exit 64), no such secret (exit 1), etcd failing or a value
/// that does not open (exit 1).
pub async fn reveal(global: &GlobalOpts, name: &str) -> Result<u8, Failure> {
    let ctx = global.context(Some("secret reveal")).await?;
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
