//! End-to-end rate limiting through the real proxy: route and per-key limits,
//! client IPs from trusted proxies only, the 429 answer, and shadow mode.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;

/// One listener `public` (with `trusted`) and one route `route` with `rate_limit`.
fn config(up: &Upstream, route: &str, rate_limit: &str, trusted: &str) -> String {
    format!(
        r#"
server: {{ drain_timeout: 5s, access_log: false }}
listeners:
  - name: public
    listen: 127.0.0.1:0
    trusted_proxies: {trusted}
    routes:
      - name: {route}
        match: {{ path_prefix: "/" }}
        cluster: app
        rate_limit: {rate_limit}
clusters:
  - name: app
    endpoints: ["{ep}"]
    connect_timeout: 500ms
"#,
        ep = up.endpoint()
    )
}

async fn get_with(p: &TestProxy, header: &str, value: &str) -> Resp {
    let req = Request::get(p.url("/codes/1"))
        .header(header, value)
        .body(Full::<Bytes>::default())
        .unwrap();
    send(&client(), req).await
}

/// Sends up to `max` requests with `header: value` until one is refused; returns it.
async fn until_refused(p: &TestProxy, header: &str, value: &str, max: usize) -> Option<Resp> {
    for _ in 0..max {
        let r = get_with(p, header, value).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            return Some(r);
        }
    }
    None
}

/// The sum of the samples of `name` whose labels include every one of `labels`.
fn sample(page: &str, name: &str, labels: &[&str]) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_limit_admits_the_burst_and_refuses_the_rest_with_429() {
    let up = upstream("app").await;
    let p = start_proxy(&config(&up, "rl_route", "{ rps: 20, burst: 20 }", "[]")).await;

    let statuses = burst(&p.url("/codes/1"), 60, 10).await;
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(ok + limited, 60, "statuses: {statuses:?}");
    // 20 at once, plus 20/s of refill for however long the burst took on a loaded machine.
    assert!((20..=45).contains(&ok), "admitted {ok}");
    assert_eq!(up.hits(), ok, "refused requests never reach the upstream");

    let r = until_refused(&p, "x-any", "1", 200)
        .await
        .expect("a refusal");
    assert_eq!(r.header("x-floodgate-reason"), "rate_limited");
    let retry_after: u64 = r.header("retry-after").parse().expect("integer seconds");
    assert!((1..=2).contains(&retry_after), "retry-after {retry_after}");
    assert_eq!(r.header("ratelimit-policy"), "\"rl_route\";q=20;w=1");
    let t = r
        .header("ratelimit")
        .strip_prefix("\"rl_route\";r=0;t=")
        .unwrap_or_else(|| panic!("RateLimit: {}", r.header("ratelimit")));
    assert_eq!(t.parse::<u64>().unwrap(), retry_after);
    let body = r.json();
    assert_eq!(body["reason"], "rate_limited");
    assert_eq!(body["status"], 429);

    let page = get(&p.admin_url("/metrics")).await.body;
    let refused = sample(
        &page,
        "floodgate_rate_limited_total",
        &["route=\"rl_route\"", "scope=\"route\"", "shadow=\"false\""],
    );
    assert!(refused >= 16.0, "metric {refused}\n{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noisy_user_does_not_limit_a_quiet_one() {
    let up = upstream("app").await;
    let rl = r#"{ per_key: { key: "header:x-user", rps: 5, burst: 5 } }"#;
    let p = start_proxy(&config(&up, "rl_user", rl, "[]")).await;

    let mut noisy_ok = 0;
    for _ in 0..30 {
        if get_with(&p, "x-user", "noisy").await.status == StatusCode::OK {
            noisy_ok += 1;
        }
    }
    assert!((5..=20).contains(&noisy_ok), "noisy admitted {noisy_ok}");
    for i in 0..5 {
        let r = get_with(&p, "x-user", "quiet").await;
        assert_eq!(r.status, StatusCode::OK, "quiet request {i}");
    }
    let r = until_refused(&p, "x-user", "noisy", 50)
        .await
        .expect("refused");
    assert_eq!(r.header("ratelimit-policy"), "\"rl_user-key\";q=5;w=1");
    assert!(r.header("ratelimit").starts_with("\"rl_user-key\";r=0;t="));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_keys_believe_forwarded_for_only_from_trusted_peers() {
    let up = upstream("app").await;
    let rl = r#"{ per_key: { key: client_ip, rps: 1, burst: 2 } }"#;

    // 127.0.0.1 is a trusted proxy: the forwarded client IP is the key.
    let p = start_proxy(&config(&up, "rl_ip_trusted", rl, "[\"127.0.0.1\"]")).await;
    until_refused(&p, "x-forwarded-for", "198.51.100.1", 50)
        .await
        .expect("first client limited");
    for i in 0..2 {
        let r = get_with(&p, "x-forwarded-for", "198.51.100.2").await;
        assert_eq!(r.status, StatusCode::OK, "second client, request {i}");
    }
    drop(p);

    // The peer is not trusted: its own address is the key, whatever it claims.
    let p = start_proxy(&config(&up, "rl_ip_untrusted", rl, "[\"10.0.0.0/8\"]")).await;
    until_refused(&p, "x-forwarded-for", "198.51.100.1", 50)
        .await
        .expect("peer limited");
    let mut refused = 0;
    for _ in 0..3 {
        let r = get_with(&p, "x-forwarded-for", "198.51.100.2").await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    // 1/s refills at most one per second: three quick requests cannot all pass.
    assert!(refused >= 1, "a spoofed x-forwarded-for escaped the limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_admits_everything_and_counts_would_be_refusals() {
    let up = upstream("app").await;
    let rl = "{ rps: 5, burst: 5, shadow: true }";
    let p = start_proxy(&config(&up, "rl_shadow", rl, "[]")).await;

    let statuses = burst(&p.url("/codes/1"), 40, 8).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "statuses: {statuses:?}"
    );
    assert_eq!(up.hits(), 40);
    let url = p.admin_url("/metrics");
    eventually(Duration::from_secs(10), "shadow refusals counted", || {
        let url = url.clone();
        async move {
            let page = get(&url).await.body;
            let counted = sample(
                &page,
                "floodgate_rate_limited_total",
                &["route=\"rl_shadow\"", "scope=\"route\"", "shadow=\"true\""],
            );
            // 40 requests against 5 at once plus 5/s of refill while they run.
            (10.0..=35.0).contains(&counted)
        }
    })
    .await;
}
