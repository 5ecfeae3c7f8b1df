//! The contract with the proxy, end to end without the proxy's client: a published
//! snapshot is accepted by `floodgate::config::parse_str`, applied to a real
//! `floodgate::state::Proxy`, and routes a real request to a registered endpoint.
//! And `configs/control.yaml` passes `floodgate-control --check`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

mod support;

use support::{upstream, APP, OPERATOR, PROXY};

/// `support::call` with the token required and the body read as JSON.
async fn json_call(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let (status, bytes) = support::call(addr, method, path, Some(token), body).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_with_a_registered_endpoint_routes_through_a_real_proxy() {
    let static_up = upstream("static").await;
    let registered_up = upstream("registered").await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("groups")).unwrap();
    std::fs::write(
        dir.path().join("groups/edge.yaml"),
        format!(
            "# comments are fine\nlisteners:\n  - name: web\n    listen: 127.0.0.1:0\n    \
             routes: [ {{ name: all, cluster: app }} ]\n\
             clusters:\n  - name: app\n    endpoints: [\"{static_up}\"]\n"
        ),
    )
    .unwrap();
    let text = format!(
        "listen: 127.0.0.1:0\nconfigs_dir: groups\n\
         tokens: {{ proxy: {PROXY}, app: {APP}, operator: {OPERATOR} }}\n\
         long_poll: {{ timeout: 1s, jitter: 0s }}\n"
    );
    let config = floodgate_control::config::parse_str(&text, "control.yaml", dir.path()).unwrap();
    let control = floodgate_control::start(config).await.unwrap();
    let cp = control.local_addr();

    // What a proxy's client will do: poll, parse with the proxy's parser, apply, ACK.
    let (status, first) = json_call(
        cp,
        http::Method::GET,
        "/v1/snapshot?group=edge&node=p1&version=0",
        PROXY,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let v1 = first["version"].as_u64().unwrap();
    let parsed = floodgate::config::parse_str(
        first["config"].as_str().unwrap(),
        "control-plane",
        Path::new("."),
    )
    .unwrap();
    let proxy = floodgate::state::Proxy::start(parsed).unwrap();
    let listen = proxy.listener_addr("web").unwrap();
    let ack = json!({ "group": "edge", "node": "p1", "version": v1 });
    assert_eq!(
        json_call(cp, http::Method::POST, "/v1/ack", PROXY, Some(ack))
            .await
            .0,
        StatusCode::OK
    );

    let reg = json!({ "cluster": "app", "address": registered_up.to_string(), "ttl": "30s" });
    let (status, _) = json_call(cp, http::Method::POST, "/v1/endpoints", APP, Some(reg)).await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, second) = json_call(
        cp,
        http::Method::GET,
        &format!("/v1/snapshot?group=edge&node=p1&version={v1}"),
        PROXY,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let v2 = second["version"].as_u64().unwrap();
    assert!(v2 > v1);
    let parsed = floodgate::config::parse_str(
        second["config"].as_str().unwrap(),
        "control-plane",
        Path::new("."),
    )
    .unwrap();
    proxy.apply(parsed).unwrap();
    let ack = json!({ "group": "edge", "node": "p1", "version": v2 });
    assert_eq!(
        json_call(cp, http::Method::POST, "/v1/ack", PROXY, Some(ack))
            .await
            .0,
        StatusCode::OK
    );

    // The balancer picks among both endpoints; a request reaches the registered one.
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let req = Request::get(format!("http://{listen}/x"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        if body.as_ref() == b"registered" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no request reached the registered endpoint"
        );
    }

    let (_, nodes) = json_call(cp, http::Method::GET, "/v1/nodes", OPERATOR, None).await;
    assert_eq!(nodes["nodes"][0]["version"].as_u64(), Some(v2));
    proxy.drain().await;
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn configs_control_yaml_passes_check() {
    // Both demo configs' process scalers name the release healthcode-app, which
    // --check wants to exist (CI has no release build): check copies of the configs
    // beside a stand-in program.
    let dir = tempfile::tempdir().unwrap();
    let configs = dir.path().join("configs");
    std::fs::create_dir_all(configs.join("control")).unwrap();
    for entry in std::fs::read_dir(repo_root().join("configs/control")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(
            &path,
            configs.join("control").join(path.file_name().unwrap()),
        )
        .unwrap();
    }
    for file in ["control.yaml", "control-elastic.yaml"] {
        std::fs::copy(repo_root().join("configs").join(file), configs.join(file)).unwrap();
    }
    let bin = dir.path().join("target/release");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("healthcode-app"), "#!/bin/sh\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        bin.join("healthcode-app"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    check_passes(dir.path(), "configs/control.yaml");
    check_passes(dir.path(), "configs/control-elastic.yaml");
}

fn check_passes(root: &std::path::Path, file: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_floodgate-control"))
        .arg("--config")
        .arg(root.join(file))
        .arg("--check")
        .env("FLOODGATE_PROXY_TOKEN", "demo-proxy-token-change-me")
        .env("FLOODGATE_APP_TOKEN", "demo-app-token-change-me")
        .env("FLOODGATE_OPERATOR_TOKEN", "demo-operator-token-change-me")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{file}: stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_fails_on_an_invalid_group_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("groups")).unwrap();
    std::fs::write(
        dir.path().join("groups/bad.yaml"),
        "clusters: [ { name: x } ]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("control.yaml"),
        format!(
            "configs_dir: groups\ntokens: {{ proxy: {PROXY}, app: {APP}, operator: {OPERATOR} }}\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_floodgate-control"))
        .arg("--config")
        .arg(dir.path().join("control.yaml"))
        .arg("--check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.yaml"), "{stderr}");
}
