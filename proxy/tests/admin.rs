//! The admin listener: probes, metrics, running config and cluster state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

#[tokio::test]
async fn admin_endpoints_report_state() {
    let app = upstream("app").await;
    let p = start_proxy(&simple_config(&[&app], "", "")).await;
    for _ in 0..3 {
        assert_eq!(get(&p.url("/x")).await.status, 200);
    }
    assert_eq!(get(&p.url("/x")).await.header("x-upstream"), "app");

    assert_eq!(get(&p.admin_url("/live")).await.status, 200);
    assert_eq!(get(&p.admin_url("/ready")).await.status, 200);

    let m = get(&p.admin_url("/metrics")).await.body;
    for name in [
        "floodgate_requests_total{",
        "floodgate_request_duration_seconds_bucket{",
        "floodgate_upstream_active_requests{cluster=\"app\"}",
        "floodgate_config_version",
    ] {
        assert!(m.contains(name), "missing {name} in:\n{m}");
    }
    assert!(
        metric(
            &m,
            "floodgate_requests_total{route=\"all\",cluster=\"app\",code=\"200\"}"
        ) >= 4.0,
        "{m}"
    );

    let config = get(&p.admin_url("/config")).await.json();
    assert_eq!(config["version"], 1);
    assert_eq!(config["config"]["clusters"][0]["name"], "app");
    assert_eq!(config["config"]["clusters"][0]["connect_timeout"], "500ms");
    assert_eq!(
        config["config"]["listeners"][0]["routes"][0]["timeout"], "15s",
        "defaults are shown"
    );

    let clusters = get(&p.admin_url("/clusters")).await.json();
    let ep = &clusters["clusters"][0]["endpoints"][0];
    assert_eq!(ep["address"], app.endpoint());
    assert_eq!(ep["healthy"], true);
    assert_eq!(ep["ejected"], false);
    assert!(ep["requests_total"].as_u64().unwrap() >= 4);

    assert_eq!(get(&p.admin_url("/nope")).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_listener_off_loopback_asks_for_its_token_except_on_probes() {
    let app = upstream("app").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin-token"), "admin-token-0123456789\n").unwrap();
    let config = dir.path().join("floodgate.yaml");
    std::fs::write(
        &config,
        format!(
            "admin: {{ listen: 0.0.0.0:0, token: file:admin-token }}\n\
             server: {{ access_log: false }}\n\
             listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    routes: [ {{ name: all, cluster: app }} ]\n\
             clusters:\n  - name: app\n    endpoints: [\"{}\"]\n",
            app.addr
        ),
    )
    .unwrap();
    let bin = Bin::start(&config).await;
    let admin = format!("http://127.0.0.1:{}", bin.admin.port());
    for probe in ["/live", "/ready"] {
        assert_eq!(get(&format!("{admin}{probe}")).await.status, 200, "{probe}");
    }
    for path in ["/config", "/metrics", "/clusters"] {
        let denied = get(&format!("{admin}{path}")).await;
        assert_eq!(denied.status, 401, "{path}");
        assert_eq!(denied.header("www-authenticate"), "Bearer");
        let req = http::Request::get(format!("{admin}{path}"))
            .header("authorization", "Bearer admin-token-0123456789")
            .body(http_body_util::Full::default())
            .unwrap();
        assert_eq!(send(&client(), req).await.status, 200, "{path}");
    }
    // The token is never shown: /config redacts it.
    let req = http::Request::get(format!("{admin}/config"))
        .header("authorization", "Bearer admin-token-0123456789")
        .body(http_body_util::Full::default())
        .unwrap();
    let config = send(&client(), req).await.body;
    assert!(!config.contains("admin-token-0123456789"), "{config}");
}
