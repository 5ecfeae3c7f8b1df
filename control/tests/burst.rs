//! Burst mode end to end: the autoscaler's panic flag (published on the plane's
//! scale board by the test) reaches a real proxy as `burst_mode: true` in its
//! snapshot, the route's `burst:` overrides take effect (a tight rate limit here),
//! and leaving panic restores the normal settings.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use floodgate::admin::Admin;
use floodgate::control_client::Managed;
use floodgate_control::autoscale::ScaleState;
use http::StatusCode;
use support::{eventually, get_text, upstream, ControlPlane, PROXY};

fn group(endpoint: SocketAddr) -> String {
    format!(
        "listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    routes:\n\
         \x20     - name: all\n        cluster: app\n        rate_limit: {{ rps: 10000 }}\n\
         \x20       burst:\n          rate_limit: {{ rps: 1, burst: 1 }}\n          priority: sheddable\n\
         clusters:\n  - name: app\n    endpoints: [\"{endpoint}\"]\n    admission: {{ enabled: false }}\n"
    )
}

fn panic(cp: &ControlPlane, on: bool) {
    let state = ScaleState {
        panic: on,
        ..ScaleState::idle("app", if on { 8 } else { 1 }, 1, 1)
    };
    cp.plane()
        .scale
        .publish(BTreeMap::from([("app".to_owned(), state)]));
}

/// Statuses of `n` requests through listener `web`.
async fn statuses(m: &Managed, n: usize) -> Vec<StatusCode> {
    let Some(addr) = m.proxy().listener_addr("web") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for _ in 0..n {
        if let Some((status, _)) = get_text(addr, "/x").await {
            out.push(status);
        }
    }
    out
}

async fn burst_active(admin: SocketAddr) -> Option<bool> {
    let (_, text) = get_text(admin, "/config").await?;
    let config: serde_json::Value = serde_json::from_str(&text).ok()?;
    let route = config["config"]["listeners"][0]["routes"][0].clone();
    route["burst_active"].as_bool()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_turns_burst_mode_on_at_the_proxy_and_leaving_it_restores_the_route() {
    let a = upstream("a").await;
    let cp = ControlPlane::start("edge", &group(a)).await;
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = format!(
        "control_plane:\n  url: {}\n  node_id: p1\n  group: edge\n  token: {PROXY}\n  \
         snapshot_file: {}\n  poll_timeout: 5s\n  backoff: {{ initial: 20ms, max: 200ms }}\n",
        cp.url(),
        dir.path().join("snapshot.yaml").display()
    );
    let config = floodgate::config::parse_str(&bootstrap, "bootstrap.yaml", dir.path()).unwrap();
    let m = Managed::start(config, dir.path()).unwrap();
    let admin = Admin::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .with_control(Arc::clone(m.status()));
    let admin_addr = admin.local_addr().unwrap();
    tokio::spawn(admin.serve(Arc::clone(m.proxy())));

    eventually("normal config served", || async {
        (burst_active(admin_addr).await == Some(false)).then_some(())
    })
    .await;
    assert!(statuses(&m, 5).await.iter().all(|s| *s == StatusCode::OK));

    panic(&cp, true);
    eventually("burst mode at the proxy", || async {
        (burst_active(admin_addr).await == Some(true)).then_some(())
    })
    .await;
    let text = get_text(admin_addr, "/config").await.unwrap().1;
    assert!(text.contains("\"sheddable\""), "{text}");
    let metrics = get_text(admin_addr, "/metrics").await.unwrap().1;
    assert!(
        metrics.contains("floodgate_route_burst_active{listener=\"web\",route=\"all\"} 1"),
        "{metrics}"
    );
    // The burst limit (1 rps, burst 1) answers 429 to back-to-back requests.
    let got = statuses(&m, 5).await;
    assert!(got.contains(&StatusCode::TOO_MANY_REQUESTS), "{got:?}");

    panic(&cp, false);
    eventually("burst mode off at the proxy", || async {
        (burst_active(admin_addr).await == Some(false)).then_some(())
    })
    .await;
    let got = statuses(&m, 5).await;
    assert!(got.iter().all(|s| *s == StatusCode::OK), "{got:?}");
}
