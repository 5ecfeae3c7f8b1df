//! `healthcode-app --register`: the real binary against a real control plane
//! (started in-process from `floodgate_control`) on 127.0.0.1:0. Every wait is a
//! bounded poll, never a fixed sleep.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../proxy/tests/common/certs.rs"]
mod certs;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::Value;

const PROXY: &str = "proxy-token-for-tests-0001";
const APP: &str = "app-token-for-tests-000002";
const OPERATOR: &str = "operator-token-for-tests-3";

/// A control plane whose group `demo` routes to cluster `healthcode`.
async fn control_plane(listen: SocketAddr) -> (tempfile::TempDir, floodgate_control::Running) {
    control_plane_in(tempfile::tempdir().unwrap(), listen, "").await
}

/// The same in `dir`, with `extra` appended to `control.yaml`.
async fn control_plane_in(
    dir: tempfile::TempDir,
    listen: SocketAddr,
    extra: &str,
) -> (tempfile::TempDir, floodgate_control::Running) {
    let groups = dir.path().join("groups");
    std::fs::create_dir(&groups).unwrap();
    std::fs::write(
        groups.join("demo.yaml"),
        "listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    routes: [ { name: all, cluster: healthcode } ]\n\
         clusters:\n  - name: healthcode\n    endpoints: [\"127.0.0.1:9\"]\n",
    )
    .unwrap();
    let text = format!(
        "listen: {listen}\nconfigs_dir: groups\n\
         tokens: {{ proxy: {PROXY}, app: {APP}, operator: {OPERATOR} }}\n\
         registry: {{ sweep_interval: 20ms }}\n\
         source: {{ debounce: 20ms, poll_interval: 200ms }}\n{extra}"
    );
    let config = floodgate_control::config::parse_str(&text, "control.yaml", dir.path()).unwrap();
    let running = floodgate_control::start(config).await.unwrap();
    (dir, running)
}

/// The app, registering with `url`; returns the child and the address it listens on.
fn app(url: &str, ttl: &str) -> (Child, String) {
    app_with(url, ttl, &[])
}

fn app_with(url: &str, ttl: &str, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_healthcode-app"))
        .args(extra)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--register",
            url,
        ])
        .args(["--register-ttl", ttl, "--register-meta", "zone=a"])
        .env("FLOODGATE_APP_TOKEN", APP)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, addr)
}

async fn request(addr: SocketAddr, method: Method, path: &str, token: &str) -> (StatusCode, Value) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string())
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// The registrations of cluster `healthcode` at `address`.
async fn registered(cp: SocketAddr, address: &str) -> Option<Value> {
    let (status, body) = request(cp, Method::GET, "/v1/endpoints", OPERATOR).await;
    assert_eq!(status, StatusCode::OK);
    body["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["cluster"] == "healthcode" && e["address"] == address)
        .cloned()
}

async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the app did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_appears_in_the_snapshot_and_deregisters_on_sigterm() {
    let (_dir, cp) = control_plane("127.0.0.1:0".parse().unwrap()).await;
    let cp_addr = cp.local_addr();
    // A TTL far beyond the test: only the DELETE can make it disappear.
    let (mut child, addr) = app(&format!("http://{cp_addr}"), "60s");
    eventually("registered", Duration::from_secs(10), || async {
        registered(cp_addr, &addr).await.is_some()
    })
    .await;
    let entry = registered(cp_addr, &addr).await.unwrap();
    assert_eq!(entry["metadata"]["zone"], "a");
    assert_eq!(entry["metadata"]["workers"], 2);
    assert_eq!(entry["ttl_ms"], 60_000);

    let (status, snap) = request(
        cp_addr,
        Method::GET,
        "/v1/snapshot?group=demo&node=t1&version=0",
        PROXY,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        snap["config"].as_str().unwrap().contains(&addr),
        "the snapshot routes to the app: {snap}"
    );

    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert!(status.success(), "exit status {status}");
    assert!(
        registered(cp_addr, &addr).await.is_none(),
        "deregistered before exiting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_app_expires_after_its_ttl() {
    let (_dir, cp) = control_plane("127.0.0.1:0".parse().unwrap()).await;
    let cp_addr = cp.local_addr();
    let (mut child, addr) = app(&format!("http://{cp_addr}"), "1s");
    eventually("registered", Duration::from_secs(10), || async {
        registered(cp_addr, &addr).await.is_some()
    })
    .await;
    child.kill().unwrap(); // SIGKILL: no deregistration
    let _ = child.wait();
    eventually("expired after the TTL", Duration::from_secs(15), || async {
        registered(cp_addr, &addr).await.is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_serving_while_the_control_plane_is_away_then_registers_and_heartbeats() {
    // A port with nothing on it yet; the control plane starts there later.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (mut child, addr) = app(&format!("http://{port}"), "900ms");
    let app_addr: SocketAddr = addr.parse().unwrap();
    // Several failed attempts later the app is still up and serving.
    for _ in 0..3 {
        let (status, _) = request(app_addr, Method::GET, "/healthz", "").await;
        assert_eq!(status, StatusCode::OK);
        assert!(child.try_wait().unwrap().is_none(), "the app exited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_dir, cp) = control_plane(port).await;
    eventually(
        "registered once the control plane is up",
        Duration::from_secs(15),
        || async { registered(port, &addr).await.is_some() },
    )
    .await;
    eventually("heartbeats renew it", Duration::from_secs(15), || async {
        registered(port, &addr)
            .await
            .is_some_and(|e| e["renewed_at"].as_u64() > e["registered_at"].as_u64())
    })
    .await;
    drop(cp);
    child.kill().unwrap();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_over_https_with_the_control_planes_ca() {
    let ca = certs::TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    certs::write_pair(dir.path(), "api", &ca.issue(&["localhost", "127.0.0.1"]));
    let ca_path = ca.write_to(dir.path());
    let (_dir, cp) = control_plane_in(
        dir,
        "127.0.0.1:0".parse().unwrap(),
        "tls: { cert: api.crt, key: api.key }\n",
    )
    .await;
    let cp_addr = cp.local_addr();
    let url = format!("https://localhost:{}", cp_addr.port());
    let ca_arg = ca_path.display().to_string();
    let (mut child, addr) = app_with(&url, "60s", &["--register-ca", &ca_arg]);
    // The operator's view needs TLS too: ask the plane's store directly.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cp
        .plane()
        .store
        .endpoints()
        .unwrap()
        .iter()
        .any(|e| e.address == addr)
    {
        assert!(Instant::now() < deadline, "not registered over https");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(wait_exit(&mut child, Duration::from_secs(15)).success());
    assert!(
        !cp.plane()
            .store
            .endpoints()
            .unwrap()
            .iter()
            .any(|e| e.address == addr),
        "deregistered over https"
    );
}
