//! Push webhooks: the signature checks of GitHub, Gitea and GitLab.
//!
//! | sender | header | check |
//! |---|---|---|
//! | GitHub (and Gitea ≥ 1.20, Forgejo) | `X-Hub-Signature-256: sha256=<hex>` | HMAC-SHA256 of the body with the secret |
//! | Gitea, Gogs | `X-Gitea-Signature: <hex>` (`X-Gogs-Signature`) | HMAC-SHA256 of the body with the secret |
//! | GitLab | `X-Gitlab-Token: <secret>` | the secret itself |
//!
//! # Guarantees
//! Every comparison is constant-time: HMACs through `hmac`'s `verify_slice`,
//! GitLab's token digest to digest with `subtle`. A request without any of
//! these headers, or with one that does not match, is refused. The secret is
//! read from a file, zeroized when dropped, and its `Debug` shows nothing.

use std::path::Path;

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// A webhook's shared secret.
#[derive(Clone)]
pub struct WebhookSecret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the request is not signed (X-Hub-Signature-256, X-Gitea-Signature or X-Gitlab-Token)")]
    Unsigned,
    #[error("the signature does not match")]
    Mismatch,
}

impl WebhookSecret {
    /// The secret `bytes`.
    pub fn new(bytes: &[u8]) -> Self {
        Self(Zeroizing::new(bytes.to_vec()))
    }

    /// Reads the secret from a file; a trailing line break is not part of it.
    ///
    /// # Errors
    /// When the file cannot be read or holds nothing: an empty secret would
    /// let anyone sign.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let bytes = Zeroizing::new(
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        );
        let end = bytes
            .iter()
            .rposition(|b| !matches!(b, b'\n' | b'\r'))
            .map_or(0, |i| i + 1);
        if end == 0 {
            return Err(format!("{} holds no secret", path.display()));
        }
        Ok(Self::new(&bytes[..end]))
    }

    /// Whether `body` comes with a valid signature of one of the senders.
    ///
    /// # Errors
    /// [`Refusal::Unsigned`] without any signature header, else
    /// [`Refusal::Mismatch`] when the one given does not match.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), Refusal> {
        let header = |name: &str| headers.get(name).map(|v| v.as_bytes());
        if let Some(sig) = header("x-hub-signature-256") {
            let hex = sig.strip_prefix(b"sha256=").ok_or(Refusal::Mismatch)?;
            return self.check_hmac(hex, body);
        }
        if let Some(hex) = header("x-gitea-signature").or_else(|| header("x-gogs-signature")) {
            return self.check_hmac(hex, body);
        }
        if let Some(token) = header("x-gitlab-token") {
            let presented: [u8; 32] = Sha256::digest(token).into();
            let expected: [u8; 32] = Sha256::digest(&*self.0).into();
            return if bool::from(presented.ct_eq(&expected)) {
                Ok(())
            } else {
                Err(Refusal::Mismatch)
            };
        }
        Err(Refusal::Unsigned)
    }

    fn check_hmac(&self, hex_signature: &[u8], body: &[u8]) -> Result<(), Refusal> {
        let signature = hex::decode(hex_signature.trim_ascii()).map_err(|_| Refusal::Mismatch)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).map_err(|_| Refusal::Mismatch)?;
        mac.update(body);
        mac.verify_slice(&signature).map_err(|_| Refusal::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn signed(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    fn hmac_hex(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn github_gitea_and_gitlab_signatures_are_checked() {
        let secret = WebhookSecret::new(b"hook-secret");
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = hmac_hex(b"hook-secret", body);
        let github = signed("x-hub-signature-256", &format!("sha256={good}"));
        assert_eq!(secret.verify(&github, body), Ok(()));
        assert_eq!(
            secret.verify(&signed("x-gitea-signature", &good), body),
            Ok(())
        );
        assert_eq!(
            secret.verify(&signed("x-gitlab-token", "hook-secret"), body),
            Ok(())
        );

        let bad = hmac_hex(b"other", body);
        let wrong = [
            signed("x-hub-signature-256", &format!("sha256={bad}")),
            signed("x-hub-signature-256", &good),
            signed("x-gitea-signature", &bad),
            signed("x-gitea-signature", "not-hex"),
            signed("x-gitlab-token", "hook-secre"),
        ];
        for headers in wrong {
            assert_eq!(
                secret.verify(&headers, body),
                Err(Refusal::Mismatch),
                "{headers:?}"
            );
        }
        // A signature of another body does not carry over.
        assert_eq!(secret.verify(&github, b"{}"), Err(Refusal::Mismatch));
        assert_eq!(
            secret.verify(&HeaderMap::new(), body),
            Err(Refusal::Unsigned)
        );
    }

    #[test]
    fn the_secret_file_loses_its_line_break_and_shows_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cr3t-canary\n").unwrap();
        let secret = WebhookSecret::from_file(&path).unwrap();
        let headers = signed("x-gitlab-token", "s3cr3t-canary");
        assert_eq!(secret.verify(&headers, b""), Ok(()));
        assert!(!format!("{secret:?}").contains("s3cr3t"));
        std::fs::write(&path, "\n").unwrap();
        assert!(WebhookSecret::from_file(&path).is_err());
    }
}
