//! TLS: rustls server configs (SNI certificate choice) and upstream client configs.
//!
//! Everything here uses an explicit ring [`CryptoProvider`](rustls::crypto::CryptoProvider)
//! (no process-wide default provider needs installing) and offers TLS 1.2 and 1.3 only.
//! Certificates and keys are parsed by the leaf [`pem`], which config validation uses
//! too ([`check_cert_and_key`], [`check_ca_bundle`]), so `floodgate --check` rejects
//! unreadable, empty or mismatched certificate material before anything binds.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ServerConfig, SupportedProtocolVersion};

use crate::config::{ServerTlsConfig, UpstreamTlsConfig};

pub mod pem;

use pem::{certified_key, provider, root_store};
pub use pem::{check_ca_bundle, check_cert_and_key, TlsError};

/// The protocol versions Floodgate speaks: TLS 1.2 and 1.3, nothing older.
static VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Normalises a server name for lookup: lower case, no trailing dot.
fn normalize_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Picks a server certificate by the client's SNI.
///
/// Order: an exact name, then the longest `*.suffix` wildcard whose suffix follows exactly
/// one more label (as a certificate wildcard does), then the first certificate configured.
#[derive(Debug)]
struct SniResolver {
    /// Exact names (lower case) → certificate.
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Wildcards stored as `.suffix` (lower case) → certificate, longest suffix first.
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
    /// Used when SNI is absent or matches nothing.
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    /// Builds the lookup tables; earlier certificates win when a name is listed twice.
    fn new(tls: &ServerTlsConfig) -> Result<Self, TlsError> {
        let mut exact = HashMap::new();
        let mut wildcard: Vec<(String, Arc<CertifiedKey>)> = Vec::new();
        let mut default = None;
        for cert in &tls.certs {
            let key = Arc::new(certified_key(&cert.cert_pem, &cert.key_pem)?);
            default.get_or_insert_with(|| key.clone());
            for name in &cert.sni {
                let name = normalize_name(name);
                if let Some(suffix) = name.strip_prefix('*') {
                    if !suffix.starts_with('.') || suffix.len() < 2 || suffix.contains('*') {
                        return Err(TlsError::InvalidSni(name));
                    }
                    if !wildcard.iter().any(|(s, _)| s == suffix) {
                        wildcard.push((suffix.to_owned(), key.clone()));
                    }
                } else if name.is_empty() || name.contains('*') {
                    return Err(TlsError::InvalidSni(name));
                } else {
                    exact.entry(name).or_insert_with(|| key.clone());
                }
            }
        }
        let default = default.ok_or(TlsError::NoCerts)?;
        // Stable sort: among equal lengths, file order is kept.
        wildcard.sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        Ok(Self {
            exact,
            wildcard,
            default,
        })
    }

    /// The certificate for a server name (or the default for `None`).
    fn pick(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = server_name.map(normalize_name) else {
            return self.default.clone();
        };
        if let Some(key) = self.exact.get(&name) {
            return key.clone();
        }
        for (suffix, key) in &self.wildcard {
            if let Some(label) = name.strip_suffix(suffix.as_str()) {
                if !label.is_empty() && !label.contains('.') {
                    return key.clone();
                }
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(client_hello.server_name()))
    }
}

/// Builds a TLS server config: TLS 1.2 and 1.3, certificate chosen by SNI, ALPN from `tls.alpn`.
pub fn server_config(tls: &ServerTlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let resolver = SniResolver::new(tls)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = tls.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Ok(Arc::new(config))
}

/// Builds a TLS client config for a cluster: trusts only `tls.ca`, presents the client
/// certificate when one is configured (mTLS), and offers ALPN `h2` or `http/1.1`.
pub fn client_config(tls: &UpstreamTlsConfig, http2: bool) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = root_store(&tls.ca_pem)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(TlsError::Config)?
        .with_root_certificates(roots);
    let mut config = match (
        tls.client_cert_pem.is_empty(),
        tls.client_key_pem.is_empty(),
    ) {
        (true, true) => builder.with_no_client_auth(),
        (false, false) => {
            let key = certified_key(&tls.client_cert_pem, &tls.client_key_pem)?;
            builder.with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key)))
        }
        _ => return Err(TlsError::ClientCertPair),
    };
    config.alpn_protocols = vec![if http2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    Ok(Arc::new(config))
}

/// Certificate generation for tests, shared with the integration tests.
#[cfg(test)]
#[path = "../../tests/common/certs.rs"]
pub(crate) mod test_certs;

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use rustls::ProtocolVersion;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use rustls::RootCertStore;
    use rustls_pki_types::CertificateDer;

    use super::pem::{parse_certs, parse_key};
    use super::test_certs::{self_signed, TestCa};
    use super::*;
    use crate::config::CertConfig;

    fn cert(pair: &(String, String), sni: &[&str]) -> CertConfig {
        CertConfig {
            cert: PathBuf::from("test.crt"),
            key: PathBuf::from("test.key"),
            sni: sni.iter().map(|s| s.to_string()).collect(),
            cert_pem: pair.0.clone().into_bytes(),
            key_pem: pair.1.clone().into_bytes(),
        }
    }

    fn server_tls(certs: Vec<CertConfig>) -> ServerTlsConfig {
        ServerTlsConfig {
            certs,
            alpn: vec!["h2".into(), "http/1.1".into()],
        }
    }

    fn upstream(ca: &TestCa, client: Option<&(String, String)>) -> UpstreamTlsConfig {
        UpstreamTlsConfig {
            ca: PathBuf::from("ca.pem"),
            sni: None,
            client_cert: None,
            client_key: None,
            ca_pem: ca.cert_pem().into_bytes(),
            client_cert_pem: client.map(|c| c.0.clone().into_bytes()).unwrap_or_default(),
            client_key_pem: client.map(|c| c.1.clone().into_bytes()).unwrap_or_default(),
        }
    }

    fn der(pem: &str) -> CertificateDer<'static> {
        parse_certs(pem.as_bytes()).unwrap().remove(0)
    }

    /// Runs a real handshake over an in-memory pipe; returns the certificate the client
    /// saw, the negotiated version and ALPN.
    async fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
        name: &str,
    ) -> Result<(CertificateDer<'static>, ProtocolVersion, Option<Vec<u8>>), std::io::Error> {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let acceptor = TlsAcceptor::from(server);
        let server_task = tokio::spawn(async move {
            let mut tls = acceptor.accept(server_io).await?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await?;
            tls.write_all(&buf).await?;
            tls.flush().await?;
            Ok::<_, std::io::Error>(())
        });
        let server_name = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let mut tls = TlsConnector::from(client)
            .connect(server_name, client_io)
            .await?;
        tls.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        let (_, conn) = tls.get_ref();
        let peer = conn.peer_certificates().unwrap()[0].clone();
        let version = conn.protocol_version().unwrap();
        let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
        server_task.await.unwrap()?;
        Ok((peer, version, alpn))
    }

    struct Gateway {
        ca: TestCa,
        code: (String, String),
        status: (String, String),
        fallback: (String, String),
        server: Arc<ServerConfig>,
    }

    fn gateway() -> Gateway {
        let ca = TestCa::new();
        let fallback = ca.issue(&["default.example.gov"]);
        let code = ca.issue(&["code.example.gov"]);
        let status = ca.issue(&["*.status.example.gov"]);
        let server = server_config(&server_tls(vec![
            cert(&fallback, &[]),
            cert(&code, &["Code.Example.Gov"]),
            cert(&status, &["*.status.example.gov"]),
        ]))
        .unwrap();
        Gateway {
            ca,
            code,
            status,
            fallback,
            server,
        }
    }

    #[tokio::test]
    async fn sni_picks_exact_and_wildcard_certificates() {
        let gw = gateway();
        let client = client_config(&upstream(&gw.ca, None), true).unwrap();
        let (peer, _, alpn) = handshake(gw.server.clone(), client.clone(), "code.example.gov")
            .await
            .unwrap();
        assert_eq!(peer, der(&gw.code.0));
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
        let (peer, _, _) = handshake(gw.server.clone(), client, "city.status.example.gov")
            .await
            .unwrap();
        assert_eq!(peer, der(&gw.status.0));
    }

    #[tokio::test]
    async fn unknown_sni_falls_back_to_first_certificate() {
        let gw = gateway();
        // Names the client could not verify against any certificate are checked on the
        // resolver directly.
        let resolver = SniResolver::new(&server_tls(vec![
            cert(&gw.fallback, &[]),
            cert(&gw.code, &["code.example.gov"]),
            cert(&gw.status, &["*.status.example.gov"]),
        ]))
        .unwrap();
        let fallback = der(&gw.fallback.0);
        assert_eq!(resolver.pick(None).cert[0], fallback);
        assert_eq!(resolver.pick(Some("other.example.gov")).cert[0], fallback);
        // The wildcard covers exactly one label, like the certificate itself.
        assert_eq!(resolver.pick(Some("status.example.gov")).cert[0], fallback);
        assert_eq!(
            resolver.pick(Some("a.b.status.example.gov")).cert[0],
            fallback
        );
        assert_eq!(
            resolver.pick(Some("CODE.example.gov.")).cert[0],
            der(&gw.code.0)
        );

        // And end to end: a client asking for the default's name gets the default.
        let client = client_config(&upstream(&gw.ca, None), false).unwrap();
        let (peer, _, alpn) = handshake(gw.server.clone(), client, "default.example.gov")
            .await
            .unwrap();
        assert_eq!(peer, fallback);
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    }

    #[tokio::test]
    async fn speaks_tls12_and_tls13() {
        let gw = gateway();
        for (version, expected) in [
            (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
            (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
        ] {
            let mut roots = RootCertStore::empty();
            roots.add(der(&gw.ca.cert_pem())).unwrap();
            let client = ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(&[version])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let (_, negotiated, _) =
                handshake(gw.server.clone(), Arc::new(client), "code.example.gov")
                    .await
                    .unwrap();
            assert_eq!(negotiated, expected);
        }
    }

    #[test]
    fn tls11_client_hello_is_refused() {
        let gw = gateway();
        // A minimal TLS 1.1 ClientHello: no supported_versions extension, legacy
        // version 3.2, one CBC cipher suite.
        let mut hello = vec![0x03, 0x02];
        hello.extend_from_slice(&[7u8; 32]); // random
        hello.push(0); // session id
        hello.extend_from_slice(&[0x00, 0x02, 0x00, 0x2f]); // TLS_RSA_WITH_AES_128_CBC_SHA
        hello.extend_from_slice(&[0x01, 0x00]); // null compression
        let mut handshake = vec![0x01, 0x00, 0x00, hello.len() as u8];
        handshake.extend_from_slice(&hello);
        let mut record = vec![0x16, 0x03, 0x01, 0x00, handshake.len() as u8];
        record.extend_from_slice(&handshake);

        let mut conn = rustls::ServerConnection::new(gw.server.clone()).unwrap();
        conn.read_tls(&mut record.as_slice()).unwrap();
        let err = conn.process_new_packets().unwrap_err();
        assert!(
            matches!(err, rustls::Error::PeerIncompatible(_)),
            "unexpected error: {err:?}"
        );
        // The server answers with an alert record (content type 21), not a ServerHello.
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        assert_eq!(out.first(), Some(&0x15));
    }

    #[test]
    fn mismatched_key_is_rejected() {
        let ca = TestCa::new();
        let a = ca.issue(&["a.example.test"]);
        let b = ca.issue(&["b.example.test"]);
        check_cert_and_key(a.0.as_bytes(), a.1.as_bytes()).unwrap();
        let err = check_cert_and_key(a.0.as_bytes(), b.1.as_bytes()).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch), "{err:?}");
        assert!(server_config(&server_tls(vec![cert(&(a.0, b.1), &[])])).is_err());
    }

    #[test]
    fn bad_material_has_actionable_errors() {
        let pair = self_signed(&["x.example.test"]);
        // Key and certificate swapped.
        let err = check_cert_and_key(pair.1.as_bytes(), pair.0.as_bytes()).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate), "{err:?}");
        assert!(err.to_string().contains("BEGIN CERTIFICATE"));
        let err = check_cert_and_key(pair.0.as_bytes(), b"not a key").unwrap_err();
        assert!(matches!(err, TlsError::NoPrivateKey), "{err:?}");
        assert!(matches!(check_ca_bundle(b""), Err(TlsError::NoCertificate)));
        assert_eq!(check_ca_bundle(pair.0.as_bytes()).unwrap(), 1);
        assert!(matches!(
            server_config(&server_tls(vec![])),
            Err(TlsError::NoCerts)
        ));
        assert!(matches!(
            server_config(&server_tls(vec![cert(&pair, &["a.*.test"])])),
            Err(TlsError::InvalidSni(_))
        ));
    }

    #[tokio::test]
    async fn client_config_presents_client_certificate() {
        let ca = TestCa::new();
        let server_pair = ca.issue(&["api.internal"]);
        let client_pair = ca.issue_client("gateway");

        // A server that requires a client certificate from the same CA.
        let mut roots = RootCertStore::empty();
        roots.add(der(&ca.cert_pem())).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .unwrap();
        let key = certified_key(server_pair.0.as_bytes(), server_pair.1.as_bytes()).unwrap();
        let server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                key.cert.clone(),
                parse_key(server_pair.1.as_bytes()).unwrap(),
            )
            .unwrap();
        let server = Arc::new(server);

        let with_cert = client_config(&upstream(&ca, Some(&client_pair)), false).unwrap();
        let (peer, _, _) = handshake(server.clone(), with_cert, "api.internal")
            .await
            .unwrap();
        assert_eq!(peer, der(&server_pair.0));

        let without = client_config(&upstream(&ca, None), false).unwrap();
        assert!(handshake(server, without, "api.internal").await.is_err());

        let mut half = upstream(&ca, Some(&client_pair));
        half.client_key_pem.clear();
        assert!(matches!(
            client_config(&half, false),
            Err(TlsError::ClientCertPair)
        ));
    }

    #[tokio::test]
    async fn client_rejects_servers_outside_its_ca() {
        let ca = TestCa::new();
        let other = TestCa::named("Other CA");
        let pair = other.issue(&["api.internal"]);
        let server = server_config(&server_tls(vec![cert(&pair, &[])])).unwrap();
        let client = client_config(&upstream(&ca, None), false).unwrap();
        assert!(handshake(server, client, "api.internal").await.is_err());
    }
}
