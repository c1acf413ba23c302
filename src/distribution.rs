//! The registry HTTP API (the distribution spec), as far as swarmkeeper uses
//! it: whether `/v2/` answers to the given credentials, and the digest a tag
//! points to (`HEAD /v2/<repository>/manifests/<tag>`, `Docker-Content-Digest`).
//!
//! # Guarantees
//! - Every request gives up after [`TIMEOUT`]: a registry that cannot be
//!   reached never holds up a reconcile for longer.
//! - Credentials travel only in the `Authorization` header (Basic, as an
//!   htpasswd registry wants them); errors name the URL and the HTTP status,
//!   never a header.
//!
//! # Caveats
//! Token auth (the `Bearer` challenge of Docker Hub and similar) is not
//! spoken: a registry that wants it answers 401 here.

use std::time::Duration;

use reqwest::{Certificate, Client, StatusCode};

use crate::api::SecretValue;

/// How long one request to a registry may take.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// The manifest types a tag may point to: a manifest list or OCI index (multi-platform),
/// or a single image manifest, as `docker stack deploy` asks for them.
const MANIFEST_TYPES: &str = "application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.oci.image.manifest.v1+json";

/// What went wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// No answer: connection refused, timed out, TLS failed.
    #[error("{url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// An answer other than success (401 for wrong or missing credentials).
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    /// A manifest answer without the digest header.
    #[error("{url}: the answer has no Docker-Content-Digest")]
    NoDigest { url: String },
    /// The CA certificate given for the registry is not a PEM certificate.
    #[error("the registry's certificate is not PEM: {0}")]
    Certificate(String),
}

/// Username and password sent as Basic auth.
pub struct Basic<'a> {
    pub username: &'a str,
    pub password: &'a SecretValue,
}

/// A registry at `scheme://address`.
pub struct RegistryApi {
    base: String,
    client: Client,
}

/// The innermost cause of a request error: "Connection refused", "operation timed out".
fn reason(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return format!("no answer within {TIMEOUT:?}");
    }
    let mut cause: &dyn std::error::Error = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

impl RegistryApi {
    /// A client for the registry at `address` over `https` (trusting the
    /// certificates of `ca_pem` besides the usual roots, when given) or plain `http`.
    ///
    /// # Errors
    /// [`RegistryError::Certificate`] when `ca_pem` is not a certificate.
    pub fn new(address: &str, https: bool, ca_pem: Option<&[u8]>) -> Result<Self, RegistryError> {
        let mut builder = Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        // Every certificate of the PEM is trusted: a self-signed one, or a chain with its CA.
        for certificate in ca_pem
            .map(Certificate::from_pem_bundle)
            .transpose()
            .map_err(|e| RegistryError::Certificate(reason(&e)))?
            .unwrap_or_default()
        {
            builder = builder.add_root_certificate(certificate);
        }
        let client = builder
            .build()
            .map_err(|e| RegistryError::Certificate(reason(&e)))?;
        let scheme = if https { "https" } else { "http" };
        Ok(Self {
            base: format!("{scheme}://{address}"),
            client,
        })
    }

    /// `GET /v2/`: succeeds when the registry answers 200 to these credentials.
    ///
    /// # Errors
    /// [`RegistryError::Unreachable`] without an answer, [`RegistryError::Status`] for any
    /// other status (401 when the credentials are wrong or missing).
    pub async fn check(&self, auth: Option<&Basic<'_>>) -> Result<(), RegistryError> {
        let url = format!("{}/v2/", self.base);
        self.send(self.client.get(&url), &url, auth).await.map(drop)
    }

    /// The digest (`sha256:...`) that `repository:tag` points to now.
    ///
    /// # Errors
    /// As [`RegistryApi::check`], and [`RegistryError::NoDigest`] for an answer without it.
    pub async fn digest(
        &self,
        repository: &str,
        tag: &str,
        auth: Option<&Basic<'_>>,
    ) -> Result<String, RegistryError> {
        let url = format!("{}/v2/{repository}/manifests/{tag}", self.base);
        let request = self
            .client
            .head(&url)
            .header(reqwest::header::ACCEPT, MANIFEST_TYPES);
        let answer = self.send(request, &url, auth).await?;
        answer
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .filter(|d| d.starts_with("sha256:"))
            .map(str::to_owned)
            .ok_or(RegistryError::NoDigest { url })
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
        auth: Option<&Basic<'_>>,
    ) -> Result<reqwest::Response, RegistryError> {
        let request = match auth {
            Some(b) => {
                let password = String::from_utf8_lossy(b.password.expose());
                request.basic_auth(b.username, Some(password))
            }
            None => request,
        };
        let answer = request
            .send()
            .await
            .map_err(|e| RegistryError::Unreachable {
                url: url.to_owned(),
                reason: reason(&e),
            })?;
        match answer.status() {
            StatusCode::OK => Ok(answer),
            status => Err(RegistryError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
            }),
        }
    }
}
