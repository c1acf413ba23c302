//! A stack's secret contents, resolved for the Stack reconciler: given inline,
//! or one of the stack's own sealed values, opened with the keyring (or, for
//! a preview of files not applied yet, the value the files give).
//!
//! # Guarantees
//! A sealed value is read only under the stack's own key prefix, checked here
//! as well as when the record is parsed: the reconciler never decrypts a value
//! that is not the stack's.

use super::{Context, Error};
use crate::api::SecretValue;
use crate::api::load::{SECRET_REFERENCE_KEY, SecretMaterial};
use crate::api::sealing::check_stack_reference;
use crate::plan::convert::{SecretObject, SecretSource};

/// The content of `secret` of `stack`: a value in `given` (what files not
/// applied yet carry) before the stored one.
///
/// # Errors
/// The outer error is etcd failing (transient), or no key to open with or a
/// value that does not open ([`Error::Invalid`]: the record is `Failed`); the
/// inner one says why the record cannot converge as it is.
pub(super) async fn content(
    ctx: &Context,
    stack: &str,
    secret: &SecretObject,
    given: &[SecretMaterial],
) -> Result<Result<SecretValue, String>, Error> {
    let store_key = match &secret.source {
        SecretSource::Content(bytes) => return Ok(Ok(bytes.clone())),
        SecretSource::StoreKey(store_key) => store_key,
    };
    if let Err(message) = check_stack_reference(stack, store_key) {
        return Ok(Err(format!(
            "spec.compose.secrets.{}.{SECRET_REFERENCE_KEY}: {message}",
            secret.key
        )));
    }
    if let Some(m) = given.iter().find(|m| &m.store_key == store_key) {
        return Ok(Ok(m.value.clone()));
    }
    Ok(read(ctx, store_key).await?.ok_or_else(|| {
        format!(
            "the value of secret {:?} is not in the store: apply the record again with its secret key",
            secret.key
        )
    }))
}

/// The sealed value under `store_key`, opened.
async fn read(ctx: &Context, store_key: &str) -> Result<Option<SecretValue>, Error> {
    let Some(sealed) = ctx.store.get_secret(store_key).await? else {
        return Ok(None);
    };
    let Some(keyring) = &ctx.keyring else {
        return Err(Error::Invalid(
            "a secret key (--secret-key-file) is needed to read secret values".into(),
        ));
    };
    keyring
        .open(store_key, &sealed)
        .map(Some)
        .map_err(|e| Error::Invalid(e.to_string()))
}
