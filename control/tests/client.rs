//! The proxy's control-plane client end to end: a real control plane (this crate's
//! library) and a real proxy (`floodgate::control_client::Managed`) on 127.0.0.1,
//! real HTTP between them and through the proxy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};

use floodgate::control_client::status::Origin;
use floodgate::control_client::Managed;
use http::StatusCode;
use support::{eventually, get_text, group_config, managed_admin, upstream, ControlPlane, PROXY};

/// A bootstrap with only the `control_plane` block (the admin listener is the
/// test's own); fast retries so that tests do not wait on the backoff.
fn bootstrap(url: &str, node: &str, token: &str, snapshot: &Path, statics: &str) -> String {
    format!(
        "control_plane:\n  url: {url}\n  node_id: {node}\n  group: edge\n  token: {token}\n  \
         snapshot_file: {}\n  poll_timeout: 5s\n  backoff: {{ initial: 20ms, max: 200ms }}\n{statics}",
        snapshot.display()
    )
}

fn managed(text: &str, dir: &Path) -> Managed {
    let config = floodgate::config::parse_str(text, "bootstrap.yaml", dir).unwrap();
    Managed::start(config, dir).unwrap()
}

/// The body a request through listener `web` gets, once the listener exists.
async fn through(m: &Managed) -> Option<String> {
    let addr = m.proxy().listener_addr("web")?;
    let (status, body) = get_text(addr, "/x").await?;
    (status == StatusCode::OK).then_some(body)
}

async fn wait_for_body(m: &Managed, want: &str) {
    eventually(&format!("the proxy serves `{want}`"), || async {
        (through(m).await.as_deref() == Some(want)).then_some(())
    })
    .await;
}

async fn wait_acked(cp: &ControlPlane, node: &str, version: u64) -> serde_json::Value {
    eventually(&format!("{node} ACKs {version}"), || async {
        cp.node(node)
            .await
            .filter(|n| n["last_ack"].as_u64() == Some(version))
    })
    .await
}

fn snapshot_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("snapshot.yaml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_is_acked_served_and_persisted_and_an_edit_follows() {
    let a = upstream("a").await;
    let b = upstream("b").await;
    let cp = ControlPlane::start("edge", &group_config(a)).await;
    let dir = tempfile::tempdir().unwrap();
    let m = managed(
        &bootstrap(&cp.url(), "p1", PROXY, &snapshot_path(&dir), ""),
        dir.path(),
    );
    let admin = managed_admin(&m).await;

    let v1 = cp.version("edge").await.unwrap();
    wait_for_body(&m, "a").await;
    wait_acked(&cp, "p1", v1).await;
    let view = m.status().view();
    assert!(view.connected);
    assert_eq!(view.version, Some(v1));
    assert_eq!(view.origin, Origin::ControlPlane);
    // ACKed means persisted.
    let persisted = floodgate::control_client::persist::read(&snapshot_path(&dir), "edge")
        .unwrap()
        .unwrap();
    assert_eq!(persisted.version, v1);
    let (status, ready) = get_text(admin, "/ready").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(ready.contains("control_plane: connected"), "{ready}");
    assert!(ready.contains(&format!("version={v1}")), "{ready}");
    let (status, control) = get_text(admin, "/control").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(control.contains("\"connected\": true"), "{control}");
    let (_, metrics) = get_text(admin, "/metrics").await.unwrap();
    assert!(
        metrics.contains("floodgate_control_applies_total"),
        "{metrics}"
    );
    // The token is never shown.
    let (_, config) = get_text(admin, "/config").await.unwrap();
    assert!(!config.contains(PROXY));

    // An edit of the group file: a new version, applied and ACKed.
    cp.write_group("edge", &group_config(b));
    let v2 = eventually("a second version", || async {
        cp.version("edge").await.filter(|v| *v != v1)
    })
    .await;
    wait_for_body(&m, "b").await;
    wait_acked(&cp, "p1", v2).await;
    assert_eq!(m.status().view().version, Some(v2));
    m.proxy().drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_the_proxy_cannot_apply_is_nacked_and_the_old_config_serves() {
    let a = upstream("a").await;
    let cp = ControlPlane::start("edge", &group_config(a)).await;
    let dir = tempfile::tempdir().unwrap();
    let m = managed(
        &bootstrap(&cp.url(), "p2", PROXY, &snapshot_path(&dir), ""),
        dir.path(),
    );
    let v1 = cp.version("edge").await.unwrap();
    wait_acked(&cp, "p2", v1).await;

    // Valid for the validator, refused by `Proxy::apply`: a second listener on an
    // address already taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap();
    cp.write_group(
        "edge",
        &format!(
            "listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    routes: [ {{ name: all, cluster: app }} ]\n\
             \x20 - name: clash\n    listen: {busy}\n    routes: [ {{ name: all, cluster: app }} ]\n\
             clusters:\n  - name: app\n    endpoints: [\"{a}\"]\n"
        ),
    );
    let v2 = eventually("a second version", || async {
        cp.version("edge").await.filter(|v| *v != v1)
    })
    .await;
    let node = eventually("the NACK", || async {
        cp.node("p2")
            .await
            .filter(|n| n["last_nack"]["version"].as_u64() == Some(v2))
    })
    .await;
    let error = node["last_nack"]["error"].as_str().unwrap();
    assert!(error.contains("clash") && error.contains("bind"), "{error}");
    assert_eq!(node["last_ack"].as_u64(), Some(v1));
    assert_eq!(through(&m).await.as_deref(), Some("a"));
    let view = m.status().view();
    assert_eq!(view.version, Some(v1));
    assert_eq!(view.last_nack.unwrap().version, v2);
    // The proxy keeps polling with v1: fixing the file brings a third version it runs.
    drop(taken);
    cp.write_group("edge", &group_config(a).replace("name: all", "name: fixed"));
    let v3 = eventually("a third version", || async {
        cp.version("edge").await.filter(|v| *v != v1 && *v != v2)
    })
    .await;
    wait_acked(&cp, "p2", v3).await;
    m.proxy().drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_serves_without_the_control_plane_and_resyncs_when_it_returns() {
    let a = upstream("a").await;
    let mut cp = ControlPlane::start("edge", &group_config(a)).await;
    let dir = tempfile::tempdir().unwrap();
    let text = bootstrap(&cp.url(), "p3", PROXY, &snapshot_path(&dir), "");
    let m = managed(&text, dir.path());
    let v1 = cp.version("edge").await.unwrap();
    wait_acked(&cp, "p3", v1).await;

    cp.stop();
    eventually("the proxy reports not connected", || async {
        (!m.status().view().connected).then_some(())
    })
    .await;
    assert_eq!(through(&m).await.as_deref(), Some("a"));

    // A restart of the proxy while the control plane is down: the persisted
    // snapshot serves.
    m.proxy().drain().await;
    drop(m);
    let m = managed(&text, dir.path());
    let admin = managed_admin(&m).await;
    let view = m.status().view();
    assert_eq!(view.origin, Origin::Persisted);
    assert_eq!(view.version, Some(v1));
    wait_for_body(&m, "a").await;
    let (status, ready) = get_text(admin, "/ready").await.unwrap();
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert!(ready.contains("not_connected"), "{ready}");

    // The control plane comes back (new versions, empty node list): the proxy
    // resyncs and shows up with the current version.
    cp.restart().await;
    let v2 = cp.version("edge").await.unwrap();
    assert_ne!(v1, v2);
    wait_acked(&cp, "p3", v2).await;
    eventually("connected again", || async {
        m.status().view().connected.then_some(())
    })
    .await;
    assert_eq!(through(&m).await.as_deref(), Some("a"));
    m.proxy().drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_keeps_the_static_config_serving_and_reports_not_connected() {
    let a = upstream("static").await;
    let cp = ControlPlane::start("edge", &group_config(a)).await;
    let dir = tempfile::tempdir().unwrap();
    let statics = group_config(a);
    let m = managed(
        &bootstrap(
            &cp.url(),
            "p4",
            "not-the-proxy-token-000",
            &snapshot_path(&dir),
            &statics,
        ),
        dir.path(),
    );
    let admin = managed_admin(&m).await;
    wait_for_body(&m, "static").await;
    let error = eventually("the 401 is reported", || async {
        m.status().view().last_error.filter(|e| e.contains("401"))
    })
    .await;
    assert!(!error.contains("not-the-proxy-token"), "{error}");
    let view = m.status().view();
    assert!(!view.connected);
    assert_eq!(view.origin, Origin::Bootstrap);
    let (status, ready) = get_text(admin, "/ready").await.unwrap();
    assert_eq!(status, StatusCode::OK, "static listeners serve: {ready}");
    assert!(ready.contains("not_connected"), "{ready}");
    assert!(cp.node("p4").await.is_none());
    assert!(!snapshot_path(&dir).exists());
    m.proxy().drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_persisted_snapshot_is_ignored_and_ready_waits_for_the_first_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        snapshot_path(&dir),
        "# floodgate snapshot: group=edge version=9\nlisteners: [\n",
    )
    .unwrap();
    // Nothing listens on this port: the control plane is away.
    let away = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let m = managed(
        &bootstrap(
            &format!("http://{away}"),
            "p5",
            PROXY,
            &snapshot_path(&dir),
            "",
        ),
        dir.path(),
    );
    let admin = managed_admin(&m).await;
    let view = m.status().view();
    assert_eq!(view.origin, Origin::Bootstrap);
    assert!(!view.serving);
    let (status, ready) = get_text(admin, "/ready").await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    eventually("the connection error is reported", || async {
        m.status().view().last_error
    })
    .await;
    m.proxy().drain().await;
}
