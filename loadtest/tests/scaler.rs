//! The process scaler end to end: a real control plane (in-process, from
//! `floodgate_control`) on 127.0.0.1:0 starting and stopping the real
//! `healthcode-app` binary, whose replicas register themselves. The autoscaler's
//! decisions are published on the plane's scale board by the test. Every wait is
//! a bounded poll, never a fixed sleep.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use floodgate_control::autoscale::ScaleState;
use floodgate_control::plane::Plane;
use floodgate_control::scaler::ProcessStatus;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::Value;

const PROXY: &str = "proxy-token-for-tests-0001";
const APP: &str = "app-token-for-tests-000002";
const OPERATOR: &str = "operator-token-for-tests-3";
const APP_BIN: &str = env!("CARGO_BIN_EXE_healthcode-app");

/// A control plane whose group `demo` routes to cluster `healthcode`, with
/// `scalers` (YAML, indented under `scalers:`).
async fn control_plane(scalers: &str) -> (tempfile::TempDir, floodgate_control::Running) {
    let dir = tempfile::tempdir().unwrap();
    let groups = dir.path().join("groups");
    std::fs::create_dir(&groups).unwrap();
    std::fs::write(
        groups.join("demo.yaml"),
        "listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    routes: [ { name: all, cluster: healthcode } ]\n\
         clusters:\n  - name: healthcode\n    endpoints: [\"127.0.0.1:9\"]\n",
    )
    .unwrap();
    let text = format!(
        "listen: 127.0.0.1:0\nconfigs_dir: groups\n\
         tokens: {{ proxy: {PROXY}, app: {APP}, operator: {OPERATOR} }}\n\
         registry: {{ sweep_interval: 20ms }}\n\
         source: {{ debounce: 20ms, poll_interval: 200ms }}\n\
         scalers:\n{scalers}"
    );
    let config = floodgate_control::config::parse_str(&text, "control.yaml", dir.path()).unwrap();
    let running = floodgate_control::start(config).await.unwrap();
    (dir, running)
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

/// The addresses registered in cluster `healthcode`, as `GET /v1/endpoints` lists them.
async fn registered(cp: SocketAddr) -> BTreeSet<String> {
    let (status, body) = request(cp, Method::GET, "/v1/endpoints", OPERATOR).await;
    assert_eq!(status, StatusCode::OK);
    body["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["cluster"] == "healthcode")
        .map(|e| e["address"].as_str().unwrap().to_owned())
        .collect()
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

/// Publishes the autoscaler's decision for `cluster`, as the autoscaler does.
fn decide(plane: &Plane, cluster: &str, desired: u32) {
    let state = ScaleState::idle(cluster, desired, 0, 1);
    plane
        .scale
        .publish(BTreeMap::from([(cluster.to_owned(), state)]));
}

fn status(cp: &floodgate_control::Running) -> ProcessStatus {
    cp.scalers().into_iter().next().unwrap()
}

/// Whether `pid` is a live (or zombie) process.
fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn process_scaler(extra: &str) -> String {
    format!(
        "  healthcode:\n    process:\n      command: [\"{APP_BIN}\", --listen, \"{{address}}\", --workers, \"2\", \
         --register, \"{{register_url}}\", --register-cluster, \"{{cluster}}\", --register-ttl, \"3s\"]\n\
         \x20     min_replicas: 1\n      max_replicas: 4\n      drain: 200ms\n      stop_timeout: 5s\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_1_to_3_to_1_newest_first_and_leaves_nothing_running() {
    let (_dir, cp) = control_plane(&process_scaler("")).await;
    let addr = cp.local_addr();
    let plane = Arc::clone(cp.plane());

    // Before any decision the scaler runs min_replicas: one replica that registers.
    eventually(
        "the first replica registers",
        Duration::from_secs(20),
        || async { registered(addr).await.len() == 1 },
    )
    .await;
    let first = status(&cp).replicas[0].clone();
    assert_eq!(first.replica, 1);
    let (code, api) = request(addr, Method::GET, "/v1/scalers", OPERATOR).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(api["scalers"][0]["cluster"], "healthcode");
    assert_eq!(api["scalers"][0]["replicas"][0]["pid"], first.pid);
    assert!(registered(addr).await.contains(&first.address));

    // desired 1 → 3: two more start and register.
    decide(&plane, "healthcode", 3);
    eventually(
        "three replicas registered",
        Duration::from_secs(20),
        || async { registered(addr).await.len() == 3 },
    )
    .await;
    eventually("all three ready", Duration::from_secs(5), || async {
        let s = status(&cp);
        s.replicas.len() == 3 && s.replicas.iter().all(|r| r.phase == "ready")
    })
    .await;
    let s = status(&cp);
    assert_eq!((s.desired, s.target), (Some(3), 3));
    let newest: Vec<_> = s.replicas[1..].to_vec();
    assert_eq!(
        newest.iter().map(|r| r.replica).collect::<Vec<_>>(),
        vec![2, 3]
    );
    // The token reached the replicas through the environment, not argv.
    for r in &s.replicas {
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", r.pid)).unwrap();
        assert!(!String::from_utf8_lossy(&cmdline).contains(APP));
    }

    // desired 3 → 1: the two newest deregister and exit; the oldest stays.
    decide(&plane, "healthcode", 1);
    eventually(
        "the two newest deregistered",
        Duration::from_secs(20),
        || async { registered(addr).await == BTreeSet::from([first.address.clone()]) },
    )
    .await;
    eventually("the two newest reaped", Duration::from_secs(20), || async {
        let s = status(&cp);
        s.replicas.len() == 1 && s.replicas[0].replica == 1
    })
    .await;
    for r in &newest {
        assert!(
            !alive(r.pid),
            "replica {} (pid {}) still exists",
            r.replica,
            r.pid
        );
    }

    // Control-plane exit: the last replica is stopped and reaped too.
    cp.shutdown().await;
    assert!(!alive(first.pid), "pid {} still exists", first.pid);
    assert!(
        !plane
            .store
            .endpoints()
            .unwrap()
            .iter()
            .any(|e| e.cluster == "healthcode"),
        "deregistered on shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_replica_cannot_register_again() {
    // A long drain: the replica's heartbeats (every second) meet the fence.
    let (_dir, cp) = control_plane(
        &process_scaler("      ports: \"auto\"\n").replace("drain: 200ms", "drain: 30s"),
    )
    .await;
    let addr = cp.local_addr();
    let plane = Arc::clone(cp.plane());
    decide(&plane, "healthcode", 2);
    eventually(
        "two replicas registered",
        Duration::from_secs(20),
        || async { registered(addr).await.len() == 2 },
    )
    .await;
    decide(&plane, "healthcode", 1);
    eventually(
        "the newest is draining",
        Duration::from_secs(10),
        || async { status(&cp).replicas.iter().any(|r| r.phase == "draining") },
    )
    .await;
    let draining = status(&cp).replicas[1].clone();
    assert_eq!(draining.replica, 2);
    // Its own heartbeat, sent as it would be, is refused with 409.
    let app = AppClient { cp: addr };
    let (status_code, body) = app.register(&draining.address).await;
    assert_eq!(status_code, StatusCode::CONFLICT, "{body}");
    assert!(!registered(addr).await.contains(&draining.address));
    let pids: Vec<u32> = status(&cp).replicas.iter().map(|r| r.pid).collect();
    cp.shutdown().await;
    for pid in pids {
        assert!(!alive(pid), "pid {pid} still exists");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_command_backs_off_and_never_exceeds_the_target() {
    // `sh -c 'exit 3' 127.0.0.1:PORT`: starts, exits at once, never registers.
    let scalers =
        "  healthcode:\n    process:\n      command: [/bin/sh, -c, \"exit 3\", \"{address}\"]\n\
                   \x20     min_replicas: 1\n      max_replicas: 2\n";
    let (_dir, cp) = control_plane(scalers).await;
    eventually("two failures", Duration::from_secs(20), || async {
        let s = status(&cp);
        assert!(s.replicas.len() <= 1, "more than the target: {s:?}");
        s.failures >= 2
    })
    .await;
    cp.shutdown().await;
}

struct AppClient {
    cp: SocketAddr,
}

impl AppClient {
    async fn register(&self, address: &str) -> (StatusCode, Value) {
        let stream = tokio::net::TcpStream::connect(self.cp).await.unwrap();
        let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let body = serde_json::json!({ "cluster": "healthcode", "address": address, "ttl": "3s" });
        let req = Request::builder()
            .method(Method::POST)
            .uri("/v1/endpoints")
            .header(header::HOST, self.cp.to_string())
            .header(header::AUTHORIZATION, format!("Bearer {APP}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }
}
