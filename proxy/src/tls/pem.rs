//! PEM certificate and key material: parsing and checking, with no config types.
//!
//! The leaf of the TLS module: config validation ([`check_cert_and_key`],
//! [`check_ca_bundle`]) and the rustls config builders in [`crate::tls`] parse the same
//! way, so `floodgate --check` rejects unreadable, empty or mismatched certificate
//! material before anything binds.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS material or a TLS configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The PEM data held no `CERTIFICATE` block.
    #[error("no certificate found: expected a `-----BEGIN CERTIFICATE-----` block")]
    NoCertificate,
    /// The PEM data held no private key block.
    #[error(
        "no private key found: expected a `-----BEGIN PRIVATE KEY-----` \
         (or `RSA PRIVATE KEY` / `EC PRIVATE KEY`) block"
    )]
    NoPrivateKey,
    /// The PEM text itself is malformed.
    #[error("malformed PEM: {0}")]
    Pem(String),
    /// The private key is not one rustls can sign with.
    #[error("unsupported or invalid private key: {0}")]
    InvalidKey(rustls::Error),
    /// The certificate could not be parsed.
    #[error("invalid certificate: {0}")]
    InvalidCertificate(rustls::Error),
    /// The private key does not belong to the certificate.
    #[error("the private key does not match the certificate's public key (wrong key file?)")]
    KeyMismatch,
    /// A CA certificate could not be used as a trust anchor.
    #[error("invalid CA certificate: {0}")]
    InvalidCa(rustls::Error),
    /// A server TLS block listed no certificates.
    #[error("no certificates configured")]
    NoCerts,
    /// An SNI name is neither a DNS name nor a `*.suffix` wildcard.
    #[error("invalid SNI name `{0}`: expected a DNS name or `*.suffix`")]
    InvalidSni(String),
    /// Only one of a client certificate and its key was given.
    #[error("a client certificate needs both `client_cert` and `client_key`")]
    ClientCertPair,
    /// rustls refused the assembled configuration.
    #[error("TLS configuration rejected: {0}")]
    Config(rustls::Error),
}

/// The crypto provider all Floodgate TLS configs use (ring).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses every `CERTIFICATE` block of a PEM bundle; at least one is required.
pub(crate) fn parse_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(certs)
}

/// Parses the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub(crate) fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey,
        other => TlsError::Pem(other.to_string()),
    })
}

/// Builds a signing-ready certificate chain and key, checking that the key matches.
pub(crate) fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let chain = parse_certs(cert_pem)?;
    let key = parse_key(key_pem)?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(TlsError::InvalidKey)?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // ring exposes the public key of every key type it loads, so `Unknown` should not
        // happen; if it does, the handshake itself is the remaining check.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch)
        }
        Err(e) => Err(TlsError::InvalidCertificate(e)),
    }
}

/// Checks that a PEM certificate chain and a PEM private key parse and belong together.
pub fn check_cert_and_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<(), TlsError> {
    certified_key(cert_pem, key_pem).map(|_| ())
}

/// Checks a PEM CA bundle and returns how many trust anchors it holds (at least one).
pub fn check_ca_bundle(ca_pem: &[u8]) -> Result<usize, TlsError> {
    root_store(ca_pem).map(|roots| roots.len())
}

/// Builds a trust store from every certificate of a PEM bundle.
pub(crate) fn root_store(ca_pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in parse_certs(ca_pem)? {
        roots.add(cert).map_err(TlsError::InvalidCa)?;
    }
    Ok(roots)
}
