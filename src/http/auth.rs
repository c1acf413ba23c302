//! The bearer token that guards the endpoints showing object names and
//! environment values (`/drift`, `/events`).
//!
//! # Guarantees
//! - The token is never logged and never kept: only its SHA-256 digest is
//!   held, and [`BearerToken`]'s `Debug` prints nothing of it.
//! - A presented token is compared digest to digest in constant time
//!   (`subtle`), so neither its content nor its length can be learnt from
//!   how long a refusal takes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An empty token would let anyone in who sends `Bearer ` and nothing else.
    #[error("{path} holds no token")]
    Empty { path: PathBuf },
}

/// The token `/drift` and `/events` ask for, as its digest.
#[derive(Clone)]
pub struct BearerToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl BearerToken {
    /// Reads the token from a file; a trailing newline (as `echo` writes) is not part of it.
    ///
    /// # Errors
    /// [`TokenError::Read`] when the file cannot be read, [`TokenError::Empty`]
    /// when it holds nothing but line breaks.
    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        let bytes = std::fs::read(path).map_err(|source| TokenError::Read {
            path: path.to_owned(),
            source,
        })?;
        let token = trim_line_end(&bytes);
        if token.is_empty() {
            return Err(TokenError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(Self::new(token))
    }

    /// The token `token`, which must not be empty.
    #[must_use]
    pub fn new(token: &[u8]) -> Self {
        Self {
            digest: Sha256::digest(token).into(),
        }
    }

    /// Whether `presented` is the token.
    #[must_use]
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        bool::from(digest.ct_eq(&self.digest))
    }

    /// Whether the headers carry `Authorization: Bearer <the token>`.
    fn authorizes(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|value| bearer(value.as_bytes()))
            .is_some_and(|presented| self.accepts(presented))
    }
}

/// The token of a `Bearer` credential; the scheme is case-insensitive (RFC 7235).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    let (scheme, token) = value.split_at_checked(SCHEME.len())?;
    scheme
        .eq_ignore_ascii_case(SCHEME)
        .then(|| token.trim_ascii())
}

fn trim_line_end(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b'\n' | b'\r'))
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

/// Middleware: lets a request through when no token is configured or it
/// carries the token; answers 401 otherwise.
pub async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    match &state.token {
        Some(token) if !token.authorizes(request.headers()) => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is required\n",
        )
            .into_response(),
        _ => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(authorization: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(authorization).unwrap(),
        );
        h
    }

    #[test]
    fn only_the_exact_token_with_the_bearer_scheme_is_accepted() {
        let token = BearerToken::new(b"s3cret-token");
        assert!(token.authorizes(&headers("Bearer s3cret-token")));
        assert!(token.authorizes(&headers("bearer s3cret-token")));
        assert!(!token.authorizes(&headers("Bearer s3cret-toke")));
        assert!(!token.authorizes(&headers("Bearer s3cret-token2")));
        assert!(!token.authorizes(&headers("Basic s3cret-token")));
        assert!(!token.authorizes(&headers("s3cret-token")));
        assert!(!token.authorizes(&HeaderMap::new()));
    }

    #[test]
    fn the_file_loses_its_trailing_newline_and_an_empty_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "abc\r\n").unwrap();
        let token = BearerToken::from_file(&path).unwrap();
        assert!(token.accepts(b"abc"));
        assert!(!token.accepts(b"abc\n"));
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            BearerToken::from_file(&path),
            Err(TokenError::Empty { .. })
        ));
        let missing = BearerToken::from_file(&dir.path().join("none")).unwrap_err();
        assert!(matches!(missing, TokenError::Read { .. }), "{missing}");
    }

    #[test]
    fn debug_shows_nothing_of_the_token() {
        let shown = format!("{:?}", BearerToken::new(b"s3cret-token"));
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
