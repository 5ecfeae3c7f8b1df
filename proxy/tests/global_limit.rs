//! A route's `global_rate_limit` on a proxy without a control plane: no lease ever
//! comes, so the route runs on `fallback_rps` (per proxy), answering the rest with
//! 429 `rate_limited` and a `Retry-After`; the share is on `/metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use http::StatusCode;

#[tokio::test]
async fn without_a_control_plane_the_route_runs_on_fallback_rps() {
    let up = upstream("a").await;
    // fallback_rps 2 of rps 1000 with burst 1000: the bucket holds 2 at once.
    let route = "        global_rate_limit: { rps: 1000, burst: 1000, fallback_rps: 2 }";
    let p = start_proxy(&simple_config(
        &[&up],
        route,
        "    admission: { enabled: false }",
    ))
    .await;
    let statuses = burst(&p.url("/x"), 20, 1).await;
    let passed = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    // 2 at once, then one per 500 ms: 20 back-to-back requests on loopback take
    // well under the seconds that would let many more through.
    assert!((2..=4).contains(&passed), "{statuses:?}");
    let refused = get(&p.url("/x")).await;
    if refused.status == StatusCode::TOO_MANY_REQUESTS {
        assert_eq!(refused.header("x-floodgate-reason"), "rate_limited");
        assert!(!refused.header("retry-after").is_empty());
    }
    let metrics = get(&p.admin_url("/metrics")).await.body;
    assert!(
        metrics.contains("floodgate_route_global_limit_share{route=\"all\"} 2"),
        "{metrics}"
    );
    let config = get(&p.admin_url("/config")).await.body;
    assert!(config.contains("\"fallback_rps\": 2"), "{config}");
}
