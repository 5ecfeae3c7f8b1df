//! Failure handling end to end: fast 5xx with reasons, retries only when safe,
//! the retry budget, timeouts.

mod common;

use std::time::{Duration, Instant};

use common::*;
use http::Request;
use http_body_util::Full;

#[tokio::test]
async fn dead_upstream_gets_a_fast_502_with_reason() {
    let yaml = format!(
        r#"
server: {{ access_log: false }}
listeners:
  - name: public
    listen: 127.0.0.1:0
    routes: [ {{ name: all, cluster: app }} ]
clusters:
  - {{ name: app, endpoints: ["127.0.0.1:{}"] }}
"#,
        dead_port()
    );
    let p = start_proxy(&yaml).await;
    let start = Instant::now();
    let r = get(&p.url("/x")).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-floodgate-reason"), "connect_failed");
    assert_eq!(r.json()["reason"], "connect_failed");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn connect_failure_is_retried_on_another_endpoint_even_for_post() {
    let live = upstream("live").await;
    let yaml = format!(
        r#"
server: {{ access_log: false }}
listeners:
  - name: public
    listen: 127.0.0.1:0
    routes:
      - name: all
        cluster: app
        retry: {{ attempts: 3, on: [connect_failure], backoff: 0s, min_retries_per_sec: 1000 }}
clusters:
  - name: app
    balancer: round_robin
    endpoints: ["127.0.0.1:{}", "{}"]
"#,
        dead_port(),
        live.endpoint()
    );
    let p = start_proxy(&yaml).await;
    let c = client();
    for i in 0..20 {
        let req = Request::post(p.url("/api/v1/scans"))
            .body(Full::from(format!("scan {i}")))
            .unwrap();
        let r = send(&c, req).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
        assert_eq!(r.json()["body_len"], format!("scan {i}").len());
    }
    assert_eq!(live.hits(), 20);
}

#[tokio::test]
async fn a_sent_post_is_not_retried_but_a_get_is() {
    let flaky = upstream("flaky").await;
    flaky.set(Behavior {
        reset: true,
        ..Default::default()
    });
    let yaml = simple_config(
        &[&flaky],
        "        retry: { attempts: 3, on: [reset, connect_failure], backoff: 0s, min_retries_per_sec: 1000 }",
        "",
    );
    let p = start_proxy(&yaml).await;
    let c = client();
    let req = Request::post(p.url("/api/v1/scans"))
        .body(Full::from("scan"))
        .unwrap();
    let r = send(&c, req).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-floodgate-reason"), "upstream_reset");
    assert_eq!(
        flaky.hits(),
        1,
        "a POST that reached the upstream must not be repeated"
    );

    let r = send(&c, Request::get(p.url("/x")).body(Full::default()).unwrap()).await;
    assert_eq!(r.status, 502);
    assert_eq!(
        flaky.hits(),
        1 + 3,
        "an idempotent GET is tried `attempts` times"
    );
}

#[tokio::test]
async fn retry_on_status_within_budget() {
    let sick = upstream("sick").await;
    sick.set(Behavior {
        status: 503,
        ..Default::default()
    });
    let yaml = simple_config(
        &[&sick],
        "        retry: { attempts: 3, on: [\"503\"], backoff: 0s, budget_percent: 10, min_retries_per_sec: 0 }",
        "",
    );
    let p = start_proxy(&yaml).await;
    let statuses = burst(&p.url("/x"), 200, 4).await;
    assert!(statuses.iter().all(|s| s.as_u16() == 503));
    let retries = sick.hits() - 200;
    // Without a budget, 200 requests × 2 retries = 400 retries; 10% allows ~20.
    assert!(retries <= 30, "budget let {retries} retries through");
    assert!(retries >= 10, "budget allowed only {retries} retries");
    let metrics = get(&p.admin_url("/metrics")).await.body;
    assert!(metrics.contains("floodgate_retry_budget_exhausted_total"));
}

#[tokio::test]
async fn timeouts_give_504() {
    let slow = upstream("slow").await;
    slow.set(Behavior {
        delay: Duration::from_secs(3),
        ..Default::default()
    });
    let yaml = simple_config(&[&slow], "        timeout: 300ms", "");
    let p = start_proxy(&yaml).await;
    let start = Instant::now();
    let r = get(&p.url("/x")).await;
    assert_eq!(r.status, 504);
    assert_eq!(r.header("x-floodgate-reason"), "request_timeout");
    assert!(start.elapsed() < Duration::from_secs(2));

    let yaml = simple_config(
        &[&slow],
        "        timeout: 2s\n        retry: { attempts: 2, on: [timeout], per_try_timeout: 200ms, backoff: 0s }",
        "",
    );
    let p = start_proxy(&yaml).await;
    let before = slow.hits();
    let r = get(&p.url("/x")).await;
    assert_eq!(r.status, 504);
    assert_eq!(r.header("x-floodgate-reason"), "upstream_timeout");
    assert_eq!(slow.hits() - before, 2, "per-try timeout retried once");
}

#[tokio::test]
async fn oversized_body_gets_413() {
    let app = upstream("app").await;
    let yaml = format!(
        r#"
server: {{ access_log: false }}
listeners:
  - name: public
    listen: 127.0.0.1:0
    limits: {{ max_request_body_bytes: 1024 }}
    routes: [ {{ name: all, cluster: app }} ]
clusters:
  - {{ name: app, endpoints: ["{}"] }}
"#,
        app.endpoint()
    );
    let p = start_proxy(&yaml).await;
    let req = Request::post(p.url("/x"))
        .body(Full::from(vec![b'a'; 4096]))
        .unwrap();
    let r = send(&client(), req).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.header("x-floodgate-reason"), "body_too_large");
    assert_eq!(app.hits(), 0);
}
