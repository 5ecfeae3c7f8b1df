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
