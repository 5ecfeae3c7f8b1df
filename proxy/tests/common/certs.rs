//! Test certificates: a throw-away CA that issues server and client certificates.
//!
//! Self-contained so that any test target can include it (`mod certs;` next to
//! `common/mod.rs`, or `#[path = "common/certs.rs"] mod certs;`). The proxy's own unit
//! tests include it too, so there is one certificate helper in the repository.
//! Keys are ECDSA P-256 (rcgen's default); nothing here is fit for production use.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// A PEM certificate (chain of one) and its PEM private key.
pub type CertAndKey = (String, String);

/// A certificate authority for tests; issue certificates, trust `cert_pem()`.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    /// Creates a fresh self-signed CA ("Floodgate Test CA").
    pub fn new() -> Self {
        Self::named("Floodgate Test CA")
    }

    /// Creates a fresh self-signed CA with this common name.
    pub fn named(common_name: &str) -> Self {
        let key = KeyPair::generate().expect("generate CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name = dn(common_name);
        let cert = params.self_signed(&key).expect("self-sign CA");
        Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate (PEM), what clients or servers should trust.
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// Issues a server certificate for these DNS names or IPs (wildcards like
    /// `*.example.test` allowed); the first name is also the common name.
    pub fn issue(&self, names: &[&str]) -> CertAndKey {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("server cert params");
        params.distinguished_name = dn(names.first().copied().unwrap_or("server"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(params)
    }

    /// Issues a client certificate (for mutual TLS) with this common name.
    pub fn issue_client(&self, name: &str) -> CertAndKey {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name = dn(name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(params)
    }

    /// Writes the CA certificate to `dir/ca.pem` and returns the path.
    pub fn write_to(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.cert_pem).expect("write ca.pem");
        path
    }

    fn sign(&self, params: CertificateParams) -> CertAndKey {
        let key = KeyPair::generate().expect("generate leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        (cert.pem(), key.serialize_pem())
    }
}

/// A self-signed server certificate (no CA) for these names.
pub fn self_signed(names: &[&str]) -> CertAndKey {
    let key = KeyPair::generate().expect("generate key");
    let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .expect("params");
    let cert = params.self_signed(&key).expect("self-sign");
    (cert.pem(), key.serialize_pem())
}

/// Writes a certificate and key to `dir/{stem}.crt` and `dir/{stem}.key`; returns both paths.
pub fn write_pair(dir: &Path, stem: &str, pair: &CertAndKey) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{stem}.crt"));
    let key = dir.join(format!("{stem}.key"));
    std::fs::write(&cert, &pair.0).expect("write cert");
    std::fs::write(&key, &pair.1).expect("write key");
    (cert, key)
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}
