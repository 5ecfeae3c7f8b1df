//! The control-plane client over `https://`: a stand-in control plane served with
//! rustls on 127.0.0.1:0 (the real one serves plain HTTP so far), a certificate
//! issued by a test CA, and the client trusting only `control_plane.ca`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/certs.rs"]
mod certs;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use floodgate::control_client::status::Origin;
use floodgate::control_client::Managed;

const TOKEN: &str = "proxy-token-for-tests-0001";
const VERSION: u64 = 77;

/// What the stand-in control plane saw.
#[derive(Default)]
struct Seen {
    auth: Vec<String>,
    acks: Vec<String>,
}

/// A tiny upstream answering every request with `name`.
async fn upstream(name: &'static str) -> SocketAddr {
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = socket.accept().await {
            tokio::spawn(async move {
                let service = service_fn(move |_req| async move {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(name))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// The server's rustls config, built through floodgate's own TLS listener code.
fn server_tls(dir: &Path, ca: &certs::TestCa) -> Arc<rustls::ServerConfig> {
    certs::write_pair(dir, "cp", &ca.issue(&["localhost", "127.0.0.1"]));
    let text = "listeners:\n  - name: cp\n    listen: 127.0.0.1:0\n    \
                tls: { certs: [ { cert: cp.crt, key: cp.key } ] }\n    \
                routes: [ { name: all, cluster: app } ]\n\
                clusters:\n  - name: app\n    endpoints: [\"127.0.0.1:1\"]\n";
    let c = floodgate::config::parse_str(text, "cp.yaml", dir).unwrap();
    floodgate::tls::server_config(c.listeners[0].tls.as_ref().unwrap()).unwrap()
}

/// A stand-in control plane over TLS: version 0 gets the snapshot at once, any
/// other version a 304 after a short long-poll wait; ACKs are recorded.
async fn tls_control_plane(
    tls: Arc<rustls::ServerConfig>,
    snapshot: String,
    seen: Arc<Mutex<Seen>>,
) -> SocketAddr {
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::spawn(async move {
        while let Ok((stream, _)) = socket.accept().await {
            let (acceptor, snapshot, seen) = (acceptor.clone(), snapshot.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(move |req: Request<Incoming>| {
                    let (snapshot, seen) = (snapshot.clone(), seen.clone());
                    async move { Ok::<_, Infallible>(answer(req, &snapshot, &seen).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn answer(
    req: Request<Incoming>,
    snapshot: &str,
    seen: &Mutex<Seen>,
) -> Response<Full<Bytes>> {
    let auth = req
        .headers()
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    seen.lock().unwrap().auth.push(auth);
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let mut resp = Response::new(Full::new(Bytes::new()));
    match path.as_str() {
        "/v1/snapshot" if query.ends_with("version=0") => {
            let json =
                serde_json::json!({ "group": "edge", "version": VERSION, "config": snapshot });
            *resp.body_mut() = Full::new(Bytes::from(json.to_string()));
        }
        "/v1/snapshot" => {
            tokio::time::sleep(Duration::from_millis(200)).await;
            *resp.status_mut() = StatusCode::NOT_MODIFIED;
        }
        "/v1/ack" => {
            seen.lock()
                .unwrap()
                .acks
                .push(String::from_utf8_lossy(&body).into_owned());
            *resp.body_mut() = Full::new(Bytes::from_static(b"{\"ok\":true}"));
        }
        _ => *resp.status_mut() = StatusCode::NOT_FOUND,
    }
    resp
}

async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn bootstrap(cp: SocketAddr, ca: &Path, dir: &Path) -> Managed {
    let text = format!(
        "control_plane:\n  url: https://localhost:{}\n  node_id: tls-node\n  group: edge\n  \
         token: {TOKEN}\n  ca: {}\n  backoff: {{ initial: 20ms, max: 200ms }}\n",
        cp.port(),
        ca.display()
    );
    let config = floodgate::config::parse_str(&text, "bootstrap.yaml", dir).unwrap();
    Managed::start(config, dir).unwrap()
}

fn snapshot_for(up: SocketAddr) -> String {
    format!(
        "listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    routes: [ {{ name: all, cluster: app }} ]\n\
         clusters:\n  - name: app\n    endpoints: [\"{up}\"]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_control_plane_with_a_trusted_certificate_is_polled_and_acked() {
    let dir = tempfile::tempdir().unwrap();
    let ca = certs::TestCa::new();
    let ca_path = ca.write_to(dir.path());
    let up = upstream("over-tls").await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let cp = tls_control_plane(server_tls(dir.path(), &ca), snapshot_for(up), seen.clone()).await;

    let m = bootstrap(cp, &ca_path, dir.path());
    let ack = eventually("the ACK", || seen.lock().unwrap().acks.first().cloned()).await;
    let ack: serde_json::Value = serde_json::from_str(&ack).unwrap();
    assert_eq!(
        ack,
        serde_json::json!({ "group": "edge", "node": "tls-node", "version": VERSION })
    );
    assert!(seen
        .lock()
        .unwrap()
        .auth
        .iter()
        .all(|a| a == &format!("Bearer {TOKEN}")));
    let view = m.status().view();
    assert!(view.connected);
    assert_eq!(
        (view.version, view.origin),
        (Some(VERSION), Origin::ControlPlane)
    );

    let web = m.proxy().listener_addr("web").unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let resp = client
        .request(
            Request::get(format!("http://{web}/x"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.into_body().collect().await.unwrap().to_bytes(),
        "over-tls"
    );
    m.proxy().drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = certs::TestCa::new();
    let ca_path = trusted.write_to(dir.path());
    let other = certs::TestCa::named("Some Other CA");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let up = upstream("never").await;
    let cp = tls_control_plane(
        server_tls(dir.path(), &other),
        snapshot_for(up),
        seen.clone(),
    )
    .await;

    let m = bootstrap(cp, &ca_path, dir.path());
    let error = eventually("the TLS failure is reported", || {
        m.status().view().last_error
    })
    .await;
    assert!(error.contains("TLS"), "{error}");
    assert!(!m.status().view().connected);
    assert!(
        seen.lock().unwrap().auth.is_empty(),
        "no request may reach an untrusted server"
    );
    m.proxy().drain().await;
}
