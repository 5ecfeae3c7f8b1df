//! Load reports and the autoscaler end to end: a real control plane (this crate's
//! library) with an `autoscale:` policy, a real proxy
//! (`floodgate::control_client::Managed`) that reports every 100 ms, load through
//! it to a slow upstream, and `/v1/scale` moving; then the proxy stops and its
//! reports drop out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use floodgate::control_client::Managed;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use support::{call, eventually, get_text, APP, OPERATOR, PROXY};

/// An upstream that answers after `delay`.
async fn slow_upstream(delay: Duration) -> SocketAddr {
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = socket.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(move |_req| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A control plane whose group `edge` routes to cluster `app` at `endpoint`, with
/// `app` autoscaled at 2 concurrent requests per replica.
async fn control_plane(endpoint: SocketAddr) -> (tempfile::TempDir, floodgate_control::Running) {
    let dir = tempfile::tempdir().unwrap();
    let running = control_plane_in(&dir, endpoint, "127.0.0.1:0").await;
    (dir, running)
}

/// A control plane in `dir` listening on `listen` (retried while the port is
/// still held by a stopped one).
async fn control_plane_in(
    dir: &tempfile::TempDir,
    endpoint: SocketAddr,
    listen: &str,
) -> floodgate_control::Running {
    let _ = std::fs::create_dir(dir.path().join("groups"));
    std::fs::write(
        dir.path().join("groups/edge.yaml"),
        format!(
            "listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    routes: [ {{ name: all, cluster: app }} ]\n\
             clusters:\n  - name: app\n    endpoints: [\"{endpoint}\"]\n"
        ),
    )
    .unwrap();
    let text = format!(
        "listen: {listen}\nconfigs_dir: groups\n\
         tokens: {{ proxy: {PROXY}, app: {APP}, operator: {OPERATOR} }}\n\
         long_poll: {{ timeout: 1s, jitter: 0s }}\n\
         source: {{ debounce: 20ms, poll_interval: 200ms }}\n\
         autoscale:\n  app: {{ target_concurrency_per_replica: 2, target_utilization: 1.0, \
         max_replicas: 50, stable_window: 10s, panic_window: 2s, scale_down_delay: 0s }}\n"
    );
    let config = floodgate_control::config::parse_str(&text, "control.yaml", dir.path()).unwrap();
    eventually("the control plane binds", || async {
        floodgate_control::start(config.clone()).await.ok()
    })
    .await
}

fn proxy(cp: SocketAddr, dir: &std::path::Path) -> Managed {
    let text = format!(
        "control_plane:\n  url: http://{cp}\n  node_id: p1\n  group: edge\n  token: {PROXY}\n  \
         snapshot_file: {}\n  poll_timeout: 5s\n  backoff: {{ initial: 20ms, max: 200ms }}\n  \
         report_interval: 100ms\n",
        dir.join("snapshot.yaml").display()
    );
    let config = floodgate::config::parse_str(&text, "bootstrap.yaml", dir).unwrap();
    Managed::start(config, dir).unwrap()
}

async fn scale(cp: SocketAddr) -> Value {
    let (status, body) = call(cp, Method::GET, "/v1/scale/app", Some(OPERATOR), None).await;
    if status != StatusCode::OK {
        return json!({ "status": status.as_u16() });
    }
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_flow_load_moves_desired_and_a_stopped_proxy_drops_out() {
    let upstream = slow_upstream(Duration::from_millis(50)).await;
    let (dir, running) = control_plane(upstream).await;
    let cp = running.local_addr();
    let m = proxy(cp, dir.path());
    let web = eventually("the proxy serves the snapshot", || async {
        m.proxy().listener_addr("web")
    })
    .await;

    // Reports arrive: the proxy counts; idle, desired stays at the one ready replica.
    let idle = eventually("the proxy's reports count", || async {
        let s = scale(cp).await;
        (s["nodes"] == 1).then_some(s)
    })
    .await;
    assert_eq!(idle["desired"], 1, "{idle}");
    assert_eq!(idle["ready"], 1, "{idle}");
    assert_eq!(idle["panic"], false, "{idle}");

    // 24 clients in a closed loop against a 50 ms app: ~24 requests in the system,
    // 12 replicas at 2 each — whether the proxy admits them or sheds them.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..24)
        .map(|_| {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if get_text(web, "/x").await.is_none() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            })
        })
        .collect();
    let busy = eventually("desired rises above 1 under load", || async {
        let s = scale(cp).await;
        (s["desired"].as_u64().unwrap_or(0) >= 4).then_some(s)
    })
    .await;
    assert_eq!(busy["panic"], true, "{busy}");
    assert!(busy["offered_rps"].as_f64().unwrap() > 0.0, "{busy}");
    assert!(busy["reason"].as_str().unwrap().contains("panic"), "{busy}");

    // Everything on /v1/scale and /metrics.
    let all = {
        let (status, body) = call(cp, Method::GET, "/v1/scale", Some(OPERATOR), None).await;
        assert_eq!(status, StatusCode::OK);
        serde_json::from_slice::<Value>(&body).unwrap()
    };
    assert_eq!(all["clusters"][0]["cluster"], "app", "{all}");
    let (_, metrics) = call(cp, Method::GET, "/metrics", Some(OPERATOR), None).await;
    let metrics = String::from_utf8_lossy(&metrics).into_owned();
    for name in [
        "floodgate_control_desired_replicas{cluster=\"app\"}",
        "floodgate_control_ready_replicas{cluster=\"app\"}",
        "floodgate_control_observed_demand{cluster=\"app\"}",
        "floodgate_control_panic{cluster=\"app\"}",
        "floodgate_control_reports_total{result=\"ok\"}",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }

    // The proxy stops: after three intervals without a report it no longer counts.
    drop(m);
    let gone = eventually("the stopped proxy drops out", || async {
        let s = scale(cp).await;
        (s["nodes"] == 0).then_some(s)
    })
    .await;
    assert_eq!(gone["ready"], 1, "{gone}");
    let (_, body) = call(cp, Method::GET, "/v1/reports", Some(OPERATOR), None).await;
    let reporters: Value = serde_json::from_slice(&body).unwrap();
    let p1 = &reporters["reporters"][0];
    assert_eq!(
        (p1["node"].as_str(), p1["stale"].as_bool()),
        (Some("p1"), Some(true)),
        "{reporters}"
    );
}

#[tokio::test]
async fn report_and_scale_routes_check_roles_and_input() {
    let upstream = slow_upstream(Duration::from_millis(1)).await;
    let (_dir, running) = control_plane(upstream).await;
    let cp = running.local_addr();
    let report = json!({
        "group": "edge", "node": "n1", "interval_ms": 500, "seq": 0,
        "clusters": [{
            "cluster": "app", "offered": 10, "admitted": 10, "shed": 0,
            "completed": {"2xx": 10, "4xx": 0, "5xx": 0}, "too_many_requests": 0,
            "unavailable": {"overloaded": 0, "circuit_open": 0, "overflow": 0, "no_healthy_endpoint": 0, "other": 0},
            "latency_count": 10, "latency_sum_us": 10000, "in_flight": 1, "queue_depth": 0,
            "limit": 20, "latency_p50_ms": 1.0, "latency_p99_ms": 2.0
        }]
    });
    let post = |token: Option<&'static str>, body: Value| async move {
        call(cp, Method::POST, "/v1/reports", token, Some(body))
            .await
            .0
    };
    assert_eq!(post(Some(PROXY), report.clone()).await, StatusCode::OK);
    assert_eq!(post(None, report.clone()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        post(Some(OPERATOR), report.clone()).await,
        StatusCode::FORBIDDEN
    );
    let mut bad = report.clone();
    bad["interval_ms"] = json!(0);
    assert_eq!(post(Some(PROXY), bad).await, StatusCode::BAD_REQUEST);
    let mut unknown = report.clone();
    unknown["extra"] = json!(1);
    assert_eq!(post(Some(PROXY), unknown).await, StatusCode::BAD_REQUEST);

    assert_eq!(
        call(cp, Method::GET, "/v1/scale", None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(cp, Method::GET, "/v1/scale", Some(PROXY), None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (status, _) = call(cp, Method::GET, "/v1/scale/nope", Some(OPERATOR), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The refused calls changed nothing: one reporter, the one accepted.
    let s = eventually("the accepted report counts", || async {
        let s = scale(cp).await;
        (s["nodes"] == 1).then_some(s)
    })
    .await;
    assert_eq!(s["desired"], 1, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_resume_after_a_control_plane_restart() {
    let upstream = slow_upstream(Duration::from_millis(1)).await;
    let (dir, running) = control_plane(upstream).await;
    let cp = running.local_addr();
    let m = proxy(cp, dir.path());
    eventually("the proxy's reports count", || async {
        (scale(cp).await["nodes"] == 1).then_some(())
    })
    .await;
    // The kept-alive report connection dies with the control plane; a new one on the
    // same port gets reports again (in-memory state is gone: it relearns the node).
    drop(running);
    let running = control_plane_in(&dir, upstream, &cp.to_string()).await;
    assert_eq!(running.local_addr(), cp);
    eventually("reports reach the restarted control plane", || async {
        (scale(cp).await["nodes"] == 1).then_some(())
    })
    .await;
    drop(m);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_fails_its_health_checks_is_not_ready() {
    let up = slow_upstream(Duration::from_millis(1)).await;
    // A second endpoint nobody listens on: health checks fail.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("groups")).unwrap();
    std::fs::write(
        dir.path().join("groups/edge.yaml"),
        format!(
            "listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    routes: [ {{ name: all, cluster: app }} ]\n\
             clusters:\n  - name: app\n    endpoints: [\"{up}\", \"{dead}\"]\n    \
             health_check: {{ path: /, interval: 100ms, timeout: 100ms, healthy_threshold: 1, unhealthy_threshold: 1 }}\n"
        ),
    )
    .unwrap();
    let text = format!(
        "listen: 127.0.0.1:0\nconfigs_dir: groups\n\
         tokens: {{ proxy: {PROXY}, app: {APP}, operator: {OPERATOR} }}\n\
         long_poll: {{ timeout: 1s, jitter: 0s }}\n\
         autoscale:\n  app: {{ target_concurrency_per_replica: 2, max_replicas: 10 }}\n"
    );
    let config = floodgate_control::config::parse_str(&text, "control.yaml", dir.path()).unwrap();
    let running = floodgate_control::start(config).await.unwrap();
    let cp = running.local_addr();
    // Before any report: the two endpoints the group lists.
    let before = eventually("a first decision", || async {
        let s = scale(cp).await;
        s["ready"].is_u64().then_some(s)
    })
    .await;
    assert_eq!(before["ready"], 2, "{before}");
    let _m = proxy(cp, dir.path());
    // Once the proxy's health checks find the dead one out, it is not counted.
    let after = eventually(
        "ready drops to the endpoint the proxy finds healthy",
        || async {
            let s = scale(cp).await;
            (s["nodes"] == 1 && s["ready"] == 1).then_some(s)
        },
    )
    .await;
    assert_eq!(after["ready"], 1, "{after}");
}
