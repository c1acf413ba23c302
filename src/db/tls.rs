//! rustls client configurations for the SSL modes: verifying against a CA, or (as libpq's
//! `prefer`/`require`) encrypting without checking who answers.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{DbError, Server};

/// ring, named rather than the process default, so no other crate's choice changes ours.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of `pem`, or [`DbError::TlsConfig`] when it holds none or is not PEM.
pub(super) fn certificates(
    server: &Server,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, DbError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| DbError::TlsConfig {
            server: server.address(),
            reason: format!("the CA is not PEM certificates: {e}"),
        })?;
    if certs.is_empty() {
        return Err(DbError::TlsConfig {
            server: server.address(),
            reason: "the CA holds no certificate".to_owned(),
        });
    }
    Ok(certs)
}

/// Verifies the chain and the host name against `ca_pem`, or the Mozilla roots without one.
pub(super) fn verifying(server: &Server) -> Result<ClientConfig, DbError> {
    let mut roots = RootCertStore::empty();
    match &server.ca_pem {
        Some(pem) => {
            for cert in certificates(server, pem)? {
                roots.add(cert).map_err(|e| DbError::TlsConfig {
                    server: server.address(),
                    reason: format!("a CA certificate cannot be used: {e}"),
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(builder(server)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Encrypts without verifying the certificate: libpq's `require` and `prefer`. The
/// handshake signatures are still checked, so the session is with the certificate's key.
pub(super) fn unverified(server: &Server) -> Result<ClientConfig, DbError> {
    let algorithms = provider().signature_verification_algorithms;
    Ok(builder(server)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(algorithms)))
        .with_no_client_auth())
}

fn builder(
    server: &Server,
) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, DbError> {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| DbError::TlsConfig {
            server: server.address(),
            reason: e.to_string(),
        })
}

/// Accepts any certificate, checking only that the peer holds its key.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
