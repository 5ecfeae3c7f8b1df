//! The fault-injection suite's control-plane cases (issue #15), with the proxy
//! suite's load and reconciliation (`proxy/tests/faults/`): the control plane
//! stopped and restarted under load, an endpoint deregistered mid-request, a bad
//! snapshot pushed. The control plane runs from this crate's library (its socket
//! closes and its memory is gone on stop, as a killed process's would be), the
//! proxy is `floodgate::control_client::Managed` in this process, so the table's
//! RSS column is "—" here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

#[path = "../../proxy/tests/faults/check.rs"]
mod check;
#[path = "../../proxy/tests/faults/load.rs"]
mod load;

use std::net::SocketAddr;
use std::time::Duration;

use check::{reconcile, requests_counted, Counters, Expect};
use http::{Method, StatusCode};
use load::{Report, Stream};
use serde_json::json;
use support::{
    call, eventually, get_text, managed_admin, managed_proxy, slow_upstream, upstream,
    ControlPlane, APP,
};

/// Group `edge`: listener `web`, route `route` to cluster `app` at `endpoints`
/// (a YAML list body, e.g. `"127.0.0.1:1"` or empty for registry-only).
fn group(route: &str, endpoints: &str) -> String {
    format!(
        "server: {{ access_log: false, drain_timeout: 5s }}\n\
         listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    routes: [ {{ name: {route}, cluster: app, timeout: 2s }} ]\n\
         clusters:\n  - name: app\n    endpoints: [{endpoints}]\n    connect_timeout: 500ms\n"
    )
}

/// A proxy of group `edge` serving, and its admin address.
async fn proxy(
    cp: &ControlPlane,
    node: &str,
    dir: &tempfile::TempDir,
) -> (floodgate::control_client::Managed, SocketAddr, SocketAddr) {
    let m = managed_proxy(cp, "edge", node, dir.path());
    let admin = managed_admin(&m).await;
    let web = eventually("the listener from the snapshot", || async {
        m.proxy().listener_addr("web")
    })
    .await;
    (m, admin, web)
}

/// Runs `streams` while `fault` runs and reconciles against route `route`'s counter.
async fn case<F: std::future::Future<Output = ()>>(
    name: &str,
    admin: SocketAddr,
    route: &str,
    streams: Vec<Stream>,
    fault: F,
) -> Report {
    let url = format!("http://{admin}/metrics");
    let prefix = format!("floodgate_requests_total{{route=\"{route}\"");
    let before = requests_counted(&url, &prefix).await;
    let (report, ()) = tokio::join!(load::run(streams, Duration::from_secs(10)), fault);
    let counters = Counters {
        url: &url,
        prefix: &prefix,
        before,
    };
    reconcile(name, &report, Expect::default(), Some(counters), 0).await;
    report
}

async fn connected(admin: SocketAddr) -> bool {
    let Some((_, body)) = get_text(admin, "/control").await else {
        return false;
    };
    serde_json::from_str::<serde_json::Value>(&body)
        .map(|v| v["connected"] == true)
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_killed_and_restarted_during_load() {
    let app = upstream("app").await;
    let mut cp = ControlPlane::start("edge", &group("cp_restart", &format!("\"{app}\""))).await;
    let dir = tempfile::tempdir().unwrap();
    let (m, admin, web) = proxy(&cp, "fault-cp", &dir).await;
    eventually("connected", || async {
        connected(admin).await.then_some(())
    })
    .await;
    let streams = vec![Stream::normal(format!("http://{web}/x"), 450, 150)];
    let cp_ref = &mut cp;
    let fault = async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        cp_ref.stop();
        eventually("the proxy sees the control plane gone", || async {
            (!connected(admin).await).then_some(())
        })
        .await;
        // Down for a fixed while, under load; nothing waits for state here.
        tokio::time::sleep(Duration::from_millis(700)).await;
        cp_ref.restart().await;
        eventually("the proxy reconnects", || async {
            connected(admin).await.then_some(())
        })
        .await;
    };
    case(
        "control plane killed and restarted",
        admin,
        "cp_restart",
        streams,
        fault,
    )
    .await;
    m.proxy().drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_deregistered_mid_request_completes() {
    let (a, _) = slow_upstream("a", Duration::from_millis(300)).await;
    let (b, b_in_flight) = slow_upstream("b", Duration::from_millis(300)).await;
    let cp = ControlPlane::start("edge", &group("dereg", "")).await;
    let register = |addr: SocketAddr| {
        let cp = cp.addr();
        async move {
            let body = json!({ "cluster": "app", "address": addr.to_string(), "ttl": "60s" });
            let (status, _) = call(cp, Method::POST, "/v1/endpoints", Some(APP), Some(body)).await;
            assert!(status.is_success(), "register {addr}: {status}");
        }
    };
    register(a).await;
    register(b).await;
    let dir = tempfile::tempdir().unwrap();
    let (m, admin, web) = proxy(&cp, "fault-dereg", &dir).await;
    eventually("both endpoints listed", || async {
        let (_, body) = get_text(admin, "/clusters").await?;
        (body.contains(&a.to_string()) && body.contains(&b.to_string())).then_some(())
    })
    .await;
    // 40/s of 300 ms requests: ~12 in flight, under admission's initial limit (20).
    let streams = vec![Stream::normal(format!("http://{web}/x"), 160, 40)];
    let fault = async {
        eventually("requests in flight at b", || async {
            (b_in_flight.load(std::sync::atomic::Ordering::SeqCst) >= 2).then_some(())
        })
        .await;
        let body = json!({ "cluster": "app", "address": b.to_string() });
        let (status, _) = call(
            cp.addr(),
            Method::DELETE,
            "/v1/endpoints",
            Some(APP),
            Some(body),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        eventually("b leaves the proxy", || async {
            let (_, body) = get_text(admin, "/clusters").await?;
            (!body.contains(&b.to_string())).then_some(())
        })
        .await;
    };
    case(
        "endpoint deregistered mid-request",
        admin,
        "dereg",
        streams,
        fault,
    )
    .await;
    m.proxy().drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_snapshot_pushed_is_nacked_and_nothing_changes() {
    let app = upstream("app").await;
    let cp = ControlPlane::start("edge", &group("badsnap", &format!("\"{app}\""))).await;
    let dir = tempfile::tempdir().unwrap();
    let (m, admin, web) = proxy(&cp, "fault-nack", &dir).await;
    let v1 = eventually("v1 acked", || async {
        let node = cp.node("fault-nack").await?;
        node["last_ack"].as_u64()
    })
    .await;
    let streams = vec![Stream::normal(format!("http://{web}/x"), 300, 150)];
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fault = async {
        // Valid for the validator, refused by the proxy: a listener on a taken address.
        let busy = taken.local_addr().unwrap();
        let bad = group("badsnap", &format!("\"{app}\"")).replace(
            "clusters:\n",
            &format!(
                "  - name: clash\n    listen: {busy}\n    routes: [ {{ name: clash, cluster: app }} ]\nclusters:\n"
            ),
        );
        cp.write_group("edge", &bad);
        eventually("the NACK", || async {
            let node = cp.node("fault-nack").await?;
            node["last_nack"]["version"]
                .as_u64()
                .filter(|v| *v != v1)
                .map(|_| ())
        })
        .await;
    };
    case(
        "bad snapshot pushed (NACKed)",
        admin,
        "badsnap",
        streams,
        fault,
    )
    .await;
    let node = cp.node("fault-nack").await.unwrap();
    assert_eq!(
        node["last_ack"].as_u64(),
        Some(v1),
        "nothing changed: {node}"
    );
    assert_eq!(m.status().view().version, Some(v1));
    m.proxy().drain().await;
}
