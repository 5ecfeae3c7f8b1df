//! TLS on the control plane's API (`tls: { cert, key }`): https with the right CA
//! works, a plain-HTTP request on the TLS port gets a clean 400, a client that does
//! not trust the certificate fails its handshake, and the API keeps serving through
//! all of it. Bad `tls:` material is refused at validation, naming field and file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../proxy/tests/common/certs.rs"]
mod certs;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use floodgate::config::UpstreamTlsConfig;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use certs::{write_pair, TestCa};

const OPERATOR: &str = "operator-token-for-tests-3";

fn control_yaml(tls: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nconfigs_dir: groups\n\
         tokens: {{ proxy: proxy-token-for-tests-0001, app: app-token-for-tests-000002, operator: {OPERATOR} }}\n\
         {tls}"
    )
}

/// A temp dir with an empty `groups/`, the CA's server certificate as `api.crt`/`api.key`.
fn setup(ca: &TestCa) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("groups")).unwrap();
    write_pair(dir.path(), "api", &ca.issue(&["localhost", "127.0.0.1"]));
    dir
}

fn connector(ca_pem: &str) -> TlsConnector {
    let config = floodgate::tls::client_config(
        &UpstreamTlsConfig {
            ca: PathBuf::from("ca.pem"),
            sni: None,
            client_cert: None,
            client_key: None,
            ca_pem: ca_pem.as_bytes().to_vec(),
            client_cert_pem: Vec::new(),
            client_key_pem: Vec::new(),
        },
        false,
    )
    .unwrap();
    TlsConnector::from(config)
}

/// `GET /v1/groups` over https; the error text when the handshake or exchange fails.
async fn https_groups(addr: SocketAddr, connector: &TlsConnector) -> Result<StatusCode, String> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::get("/v1/groups")
        .header(header::HOST, "localhost")
        .header(header::AUTHORIZATION, format!("Bearer {OPERATOR}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    Ok(status)
}

#[tokio::test]
async fn https_works_plain_http_is_refused_cleanly_and_the_api_keeps_serving() {
    let ca = TestCa::new();
    let dir = setup(&ca);
    let text = control_yaml("tls: { cert: api.crt, key: api.key }\n");
    let config = floodgate_control::config::parse_str(&text, "control.yaml", dir.path()).unwrap();
    let running = floodgate_control::start(config).await.unwrap();
    let addr = running.local_addr();
    let trusted = connector(&ca.cert_pem());

    assert_eq!(https_groups(addr, &trusted).await, Ok(StatusCode::OK));

    // Plain HTTP on the TLS port: a readable 400, then the connection closes.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /live HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("use https://"), "{answer}");

    // A client that does not trust the certificate fails its handshake.
    let stranger = connector(&TestCa::named("Another CA").cert_pem());
    let refused = https_groups(addr, &stranger).await.unwrap_err();
    assert!(refused.to_lowercase().contains("certificate"), "{refused}");

    // A client that connects and closes without a word.
    drop(TcpStream::connect(addr).await.unwrap());

    // Through all of it the API kept serving.
    assert_eq!(https_groups(addr, &trusted).await, Ok(StatusCode::OK));
}

fn refused(dir: &Path, tls: &str) -> String {
    let text = control_yaml(tls);
    floodgate_control::config::parse_str(&text, "control.yaml", dir)
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_tls_material_names_the_field_and_the_file() {
    let ca = TestCa::new();
    let dir = setup(&ca);
    write_pair(dir.path(), "other", &ca.issue(&["localhost"]));

    let e = refused(dir.path(), "tls: { cert: api.crt, key: missing.key }\n");
    assert!(
        e.contains("control.yaml: tls.key: cannot read") && e.contains("missing.key"),
        "{e}"
    );
    let e = refused(dir.path(), "tls: { cert: api.crt, key: other.key }\n");
    assert!(
        e.contains("tls.key:") && e.contains("other.key") && e.contains("does not match"),
        "{e}"
    );
    let e = refused(dir.path(), "tls: { cert: api.key, key: api.key }\n");
    assert!(
        e.contains("tls.cert:") && e.contains("no certificate"),
        "{e}"
    );
    let e = refused(dir.path(), "tls: { cert: api.crt }\n");
    assert!(e.contains("tls.key: required"), "{e}");
    let e = refused(dir.path(), "tls: { cert: api.crt, key: api.key, ca: x }\n");
    assert!(e.contains("unknown field `ca`"), "{e}");
    let e = refused(dir.path(), "tls: { cert: gone.crt, key: gone.key }\n");
    assert!(
        e.contains("tls.cert: cannot read") && e.contains("tls.key: cannot read"),
        "both reported at once: {e}"
    );
}
