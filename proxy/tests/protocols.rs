//! Protocols end to end: h2c and HTTP/1.1 on one port, TLS termination with SNI and
//! ALPN, HTTP/2 to upstreams, and upstream mutual TLS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::certs::{write_pair, TestCa};
use common::*;
use http::{Request, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_tls(ca: &TestCa, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.cert_pem().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Connects with TLS, returns the negotiated ALPN, the peer certificate's DER, and
/// the response to `GET /x` sent with the negotiated protocol.
async fn tls_get(
    addr: std::net::SocketAddr,
    sni: &str,
    config: Arc<rustls::ClientConfig>,
) -> (Option<Vec<u8>>, Vec<u8>, Resp) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (_, session) = tls.get_ref();
    let alpn = session.alpn_protocol().map(|p| p.to_vec());
    let peer = session.peer_certificates().unwrap()[0].to_vec();
    let req = Request::get(format!("https://{sni}/x"))
        .header("host", sni)
        .body(Full::<Bytes>::default())
        .unwrap();
    let io = TokioIo::new(tls);
    let res = if alpn.as_deref() == Some(b"h2") {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut req = req;
        req.headers_mut().remove("host");
        send.send_request(req).await.unwrap()
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let mut req = req;
        *req.uri_mut() = "/x".parse().unwrap();
        send.send_request(req).await.unwrap()
    };
    let (head, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        alpn,
        peer,
        Resp {
            status: head.status,
            headers: head.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            version: head.version,
        },
    )
}

#[tokio::test]
async fn h2c_and_http1_share_a_port() {
    let app = upstream("app").await;
    let p = start_proxy(&simple_config(&[&app], "", "")).await;
    let r = send(
        &h2c_client(),
        Request::get(p.url("/h2")).body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.version, Version::HTTP_2);
    let echo = r.json();
    assert_eq!(
        echo["version"], "HTTP/1.1",
        "upstream is spoken to in HTTP/1.1"
    );
    assert_eq!(
        echo["headers"]["host"],
        p.addr("public").to_string(),
        ":authority becomes Host"
    );

    let r = get(&p.url("/h1")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.version, Version::HTTP_11);
}

#[tokio::test]
async fn http2_towards_the_upstream() {
    let app = upstream("app").await;
    let p = start_proxy(&simple_config(&[&app], "", "    protocol: http2")).await;
    let statuses = burst(&p.url("/x"), 50, 8).await;
    assert!(statuses.iter().all(|s| s.is_success()));
    let r = get_host(&p.url("/x"), "code.example.gov").await;
    let echo = r.json();
    assert_eq!(echo["version"], "HTTP/2.0");
    assert!(echo["uri"]
        .as_str()
        .unwrap()
        .starts_with("http://code.example.gov/x"));
}

#[tokio::test]
async fn tls_termination_picks_certificates_by_sni_and_negotiates_alpn() {
    let app = upstream("app").await;
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), "code", &ca.issue(&["code.example.test"]));
    write_pair(dir.path(), "status", &ca.issue(&["*.status.example.test"]));
    let yaml = format!(
        r#"
server: {{ access_log: false }}
listeners:
  - name: public
    listen: 127.0.0.1:0
    tls:
      certs:
        - {{ cert: code.crt, key: code.key, sni: ["code.example.test"] }}
        - {{ cert: status.crt, key: status.key, sni: ["*.status.example.test"] }}
    routes: [ {{ name: all, cluster: app }} ]
clusters:
  - {{ name: app, endpoints: ["{}"] }}
"#,
        app.endpoint()
    );
    let code_der = CertificateDer::pem_file_iter(dir.path().join("code.crt"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec();
    let status_der = CertificateDer::pem_file_iter(dir.path().join("status.crt"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec();
    let p = start_proxy_in(&yaml, dir).await;
    let addr = p.addr("public");

    let (alpn, peer, r) = tls_get(
        addr,
        "code.example.test",
        client_tls(&ca, &[b"h2", b"http/1.1"]),
    )
    .await;
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(peer, code_der);
    assert_eq!(r.status, 200);
    assert_eq!(r.version, Version::HTTP_2);
    assert_eq!(r.json()["headers"]["x-forwarded-proto"], "https");

    let (alpn, peer, r) = tls_get(
        addr,
        "east.status.example.test",
        client_tls(&ca, &[b"http/1.1"]),
    )
    .await;
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(peer, status_der);
    assert_eq!(r.status, 200);
    assert_eq!(r.version, Version::HTTP_11);

    // A TLS 1.2-only client still connects; TLS 1.1 and older are not offered by rustls at all.
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.cert_pem().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let tls12 = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let (_, _, r) = tls_get(addr, "code.example.test", Arc::new(tls12)).await;
    assert_eq!(r.status, 200);
}

fn mtls_upstream_config(ca: &TestCa, server: &(String, String)) -> Arc<rustls::ServerConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.cert_pem().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .unwrap();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(server.0.as_bytes())
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_slice(server.1.as_bytes()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

#[tokio::test]
async fn upstream_mutual_tls() {
    let ca = TestCa::new();
    let app = upstream_with(
        "secure",
        Some(mtls_upstream_config(&ca, &ca.issue(&["app.internal"]))),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    ca.write_to(dir.path());
    write_pair(dir.path(), "client", &ca.issue_client("floodgate-sidecar"));
    let yaml = format!(
        r#"
server: {{ access_log: false }}
listeners:
  - name: public
    listen: 127.0.0.1:0
    routes:
      - {{ name: with-cert, match: {{ path_prefix: "/ok" }}, cluster: mtls }}
      - {{ name: h2, match: {{ path_prefix: "/h2" }}, cluster: mtls-h2 }}
      - {{ name: without-cert, cluster: no-cert }}
clusters:
  - name: mtls
    endpoints: ["{ep}"]
    upstream_tls: {{ ca: ca.pem, sni: app.internal, client_cert: client.crt, client_key: client.key }}
  - name: mtls-h2
    protocol: http2
    endpoints: ["{ep}"]
    upstream_tls: {{ ca: ca.pem, sni: app.internal, client_cert: client.crt, client_key: client.key }}
  - name: no-cert
    endpoints: ["{ep}"]
    upstream_tls: {{ ca: ca.pem, sni: app.internal }}
"#,
        ep = app.endpoint()
    );
    let p = start_proxy_in(&yaml, dir).await;
    let r = get(&p.url("/ok")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["upstream"], "secure");
    assert_eq!(r.json()["version"], "HTTP/1.1");
    let r = get(&p.url("/h2")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["version"], "HTTP/2.0");
    // Without a client certificate the upstream refuses the handshake: a fast 502.
    let r = get(&p.url("/nope")).await;
    assert!(r.status == 502, "{} {}", r.status, r.body);
}
