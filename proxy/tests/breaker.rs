//! Circuit breaking and outcome-aware balancing, end to end: real upstreams that
//! fail on command, through the real proxy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use http_body_util::Full;

use common::*;

/// One listener `public` routing to cluster `name` at `endpoints` (metrics are
/// process-wide, so every test uses its own cluster name).
fn config(name: &str, endpoints: &[&Upstream], cluster_extra: &str) -> String {
    let eps: Vec<String> = endpoints
        .iter()
        .map(|u| format!("\"{}\"", u.endpoint()))
        .collect();
    format!(
        r#"
server: {{ drain_timeout: 5s, access_log: false }}
listeners:
  - name: public
    listen: 127.0.0.1:0
    routes:
      - name: {name}
        match: {{ path_prefix: "/" }}
        cluster: {name}
clusters:
  - name: {name}
    endpoints: [{eps}]
    connect_timeout: 500ms
{cluster_extra}
"#,
        eps = eps.join(", ")
    )
}

fn failing() -> Behavior {
    Behavior {
        status: 500,
        ..Default::default()
    }
}

async fn breaker_status(p: &TestProxy) -> serde_json::Value {
    get(&p.admin_url("/clusters")).await.json()["clusters"][0]["breaker"].clone()
}

async fn state_metric(p: &TestProxy, cluster: &str) -> f64 {
    let page = get(&p.admin_url("/metrics")).await.body;
    let prefix = format!("floodgate_breaker_state{{cluster=\"{cluster}\"}}");
    assert!(page.contains(&prefix), "no {prefix} in /metrics");
    metric(&page, &prefix)
}

#[tokio::test]
async fn failure_breaker_walks_through_every_state() {
    let up = upstream("a").await;
    let p = start_proxy(&config(
        "brk_states",
        &[&up],
        "    circuit_breaker: { consecutive_failures: 3, open_for: 1s, max_open_for: 2s, half_open_probes: 2 }",
    ))
    .await;
    let url = p.url("/x");

    // Closed.
    assert_eq!(get(&url).await.status, StatusCode::OK);
    assert_eq!(breaker_status(&p).await["state"], "closed");
    assert_eq!(state_metric(&p, "brk_states").await, 0.0);

    // Three failures in a row open it.
    up.set(failing());
    for _ in 0..3 {
        assert_eq!(get(&url).await.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    let hits = up.hits();
    let r = get(&url).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.header("x-floodgate-reason"), "circuit_open");
    assert_eq!(r.header("retry-after"), "1");
    let status = breaker_status(&p).await;
    assert_eq!(status["state"], "open", "{status}");
    assert!(status["half_open_in_secs"].as_f64().unwrap() <= 1.0);
    assert_eq!(state_metric(&p, "brk_states").await, 1.0);
    // While open, nothing reaches the upstream: every request either is refused
    // with circuit_open, or (if open_for ran out meanwhile) is a probe.
    let mut passed = 0;
    for _ in 0..5 {
        let r = get(&url).await;
        if r.header("x-floodgate-reason") != "circuit_open" {
            passed += 1;
        }
    }
    assert_eq!(
        up.hits(),
        hits + passed,
        "only probes may reach the upstream"
    );
    let page = get(&p.admin_url("/metrics")).await.body;
    assert!(
        metric(
            &page,
            "floodgate_shed_total{cluster=\"brk_states\",reason=\"circuit_open\"}"
        ) >= 1.0
    );

    // After open_for: half-open.
    eventually(Duration::from_secs(10), "half-open", || async {
        breaker_status(&p).await["state"] == "half_open"
    })
    .await;
    assert_eq!(state_metric(&p, "brk_states").await, 2.0);

    // A failing probe re-opens it for twice as long (2s, the cap).
    let before = up.hits();
    assert_eq!(get(&url).await.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(up.hits(), before + 1, "the probe reached the upstream");
    let status = breaker_status(&p).await;
    assert_eq!(status["state"], "open", "{status}");
    assert!(
        status["half_open_in_secs"].as_f64().unwrap() > 1.0,
        "{status}"
    );
    assert_eq!(state_metric(&p, "brk_states").await, 1.0);

    // Upstream fixed: half-open probes succeed and close it.
    up.set(Behavior::default());
    eventually(Duration::from_secs(10), "half-open again", || async {
        breaker_status(&p).await["state"] == "half_open"
    })
    .await;
    let before = up.hits();
    assert_eq!(get(&url).await.status, StatusCode::OK);
    assert_eq!(breaker_status(&p).await["state"], "half_open");
    assert_eq!(get(&url).await.status, StatusCode::OK);
    assert_eq!(up.hits(), before + 2);
    assert_eq!(breaker_status(&p).await["state"], "closed");
    assert_eq!(state_metric(&p, "brk_states").await, 0.0);
    assert_eq!(get(&url).await.status, StatusCode::OK);
}

#[tokio::test]
async fn failure_rate_opens_the_breaker() {
    let up = upstream("a").await;
    let p = start_proxy(&config(
        "brk_rate",
        &[&up],
        "    circuit_breaker: { failure_rate: { threshold_percent: 50, window: 10s, min_requests: 10 }, open_for: 5s }",
    ))
    .await;
    let url = p.url("/x");
    // Alternate success and failure: never two failures in a row, but 50%.
    for i in 0..9 {
        up.set(if i % 2 == 0 {
            failing()
        } else {
            Behavior::default()
        });
        get(&url).await;
    }
    assert_eq!(
        breaker_status(&p).await["state"],
        "closed",
        "below min_requests"
    );
    up.set(Behavior::default());
    get(&url).await;
    up.set(failing());
    get(&url).await;
    assert_eq!(breaker_status(&p).await["state"], "open");
    let r = get(&url).await;
    assert_eq!(r.header("x-floodgate-reason"), "circuit_open");
    let after: u64 = r.header("retry-after").parse().unwrap();
    assert!((4..=5).contains(&after), "retry-after {after}");
}

#[tokio::test]
async fn max_requests_overflows_the_excess_at_once() {
    let up = upstream("slow").await;
    up.set(Behavior {
        delay: Duration::from_secs(2),
        ..Default::default()
    });
    let p = start_proxy(&config(
        "brk_maxreq",
        &[&up],
        "    circuit_breaker: { max_requests: 2 }",
    ))
    .await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let url = p.url("/x");
        set.spawn(async move {
            let start = Instant::now();
            let r = get(&url).await;
            (
                r.status,
                r.header("x-floodgate-reason").to_owned(),
                start.elapsed(),
            )
        });
    }
    let (mut ok, mut overflow) = (0, 0);
    while let Some(res) = set.join_next().await {
        let (status, reason, took) = res.unwrap();
        if status == StatusCode::OK {
            ok += 1;
        } else {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(reason, "overflow");
            assert!(took < Duration::from_millis(1500), "overflow took {took:?}");
            overflow += 1;
        }
    }
    assert_eq!((ok, overflow), (2, 4));
    assert_eq!(up.hits(), 2);
    let page = get(&p.admin_url("/metrics")).await.body;
    assert_eq!(
        metric(
            &page,
            "floodgate_shed_total{cluster=\"brk_maxreq\",reason=\"overflow\"}"
        ),
        4.0
    );
    assert_eq!(breaker_status(&p).await["in_flight_requests"], 0);
}

#[tokio::test]
async fn max_connections_with_one_pending_overflows_the_third() {
    let up = upstream("slow").await;
    up.set(Behavior {
        delay: Duration::from_millis(800),
        ..Default::default()
    });
    let p = start_proxy(&config(
        "brk_conns",
        &[&up],
        "    circuit_breaker: { max_connections: 1, max_pending_requests: 1 }",
    ))
    .await;
    let spawn_get = |url: String| tokio::spawn(async move { get(&url).await });
    let first = spawn_get(p.url("/1"));
    eventually(Duration::from_secs(10), "first in flight", || async {
        up.in_flight() == 1
    })
    .await;
    let second = spawn_get(p.url("/2"));
    eventually(Duration::from_secs(10), "second pending", || async {
        breaker_status(&p).await["pending_requests"] == 1
    })
    .await;
    let status = breaker_status(&p).await;
    assert_eq!(status["open_connections"], 1, "{status}");
    assert_eq!(status["max_connections"], 1);
    let start = Instant::now();
    let third = get(&p.url("/3")).await;
    assert_eq!(third.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(third.header("x-floodgate-reason"), "overflow");
    assert!(start.elapsed() < Duration::from_millis(700));
    // The waiter gets the first request's connection once it is back in the pool.
    assert_eq!(first.await.unwrap().status, StatusCode::OK);
    assert_eq!(second.await.unwrap().status, StatusCode::OK);
    assert_eq!(up.hits(), 2);
    let status = breaker_status(&p).await;
    assert_eq!(status["pending_requests"], 0);
    assert!(status["open_connections"].as_u64().unwrap() <= 1);
}

#[tokio::test]
async fn a_pending_request_is_bounded_by_its_deadline() {
    let up = upstream("slow").await;
    up.set(Behavior {
        delay: Duration::from_secs(3),
        ..Default::default()
    });
    let yaml = config(
        "brk_pending_deadline",
        &[&up],
        "    circuit_breaker: { max_connections: 1 }",
    )
    .replace(
        "        cluster: brk_pending_deadline\n",
        "        cluster: brk_pending_deadline\n        timeout: 500ms\n",
    );
    let p = start_proxy(&yaml).await;
    let first = {
        let url = p.url("/1");
        tokio::spawn(async move { get(&url).await })
    };
    eventually(Duration::from_secs(10), "first in flight", || async {
        up.in_flight() == 1
    })
    .await;
    let r = get(&p.url("/2")).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(r.header("x-floodgate-reason"), "request_timeout");
    assert_eq!(breaker_status(&p).await["pending_requests"], 0);
    assert_eq!(first.await.unwrap().status, StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test]
async fn max_retries_caps_retries_in_flight() {
    let up = upstream("a").await;
    up.set(Behavior {
        status: 503,
        delay: Duration::from_millis(300),
        ..Default::default()
    });
    let yaml = config(
        "brk_retries",
        &[&up],
        "    circuit_breaker: { max_retries: 0 }",
    )
    .replace(
        "        cluster: brk_retries\n",
        "        cluster: brk_retries\n        retry: { attempts: 3, on: [\"503\"], backoff: 0s, min_retries_per_sec: 100 }\n",
    );
    let p = start_proxy(&yaml).await;
    let r = send(
        &client(),
        Request::get(p.url("/x")).body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(up.hits(), 1, "max_retries: 0 allows no retry");
    let page = get(&p.admin_url("/metrics")).await.body;
    assert_eq!(
        metric(
            &page,
            "floodgate_shed_total{cluster=\"brk_retries\",reason=\"overflow\"}"
        ),
        1.0
    );
}

/// The Linkerd pitfall: an endpoint answering 500 in no time has the fewest
/// requests in flight, so plain least-request would feed it the most traffic.
#[tokio::test]
async fn a_fast_failing_endpoint_does_not_attract_traffic() {
    let bad = upstream("bad").await;
    bad.set(failing());
    let good = upstream("good").await;
    good.set(Behavior {
        delay: Duration::from_millis(20),
        ..Default::default()
    });
    let p = start_proxy(&config("brk_fastfail", &[&bad, &good], "")).await;
    let statuses = burst(&p.url("/x"), 300, 8).await;
    let total = bad.hits() + good.hits();
    assert_eq!(total, 300);
    let share = bad.hits() as f64 / total as f64;
    eprintln!(
        "fast-failing endpoint got {} of {total} requests ({:.1}%); {} were 5xx",
        bad.hits(),
        share * 100.0,
        statuses.iter().filter(|s| s.is_server_error()).count()
    );
    assert!(
        share < 0.25,
        "fast-failing endpoint got {:.1}%",
        share * 100.0
    );
}
