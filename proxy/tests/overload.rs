//! Overload is not failure, end to end: answers that say "busy" (429, 503 with
//! `Retry-After`) do not eject an endpoint or open the breaker; plain failures
//! still eject a lone failing endpoint, but not one failing like its peers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use common::*;

/// What a [`busy_app`] answered.
#[derive(Default)]
struct Served {
    ok: AtomicUsize,
    busy: AtomicUsize,
}

/// An app like the demo's: `slots` requests at once, each served in `service`;
/// a request that finds every slot taken gets `503` with `Retry-After: 1` at once.
async fn busy_app(slots: usize, service: Duration) -> (SocketAddr, Arc<Served>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(Served::default());
    let sem = Arc::new(Semaphore::new(slots));
    let counts = Arc::clone(&served);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (sem, counts) = (Arc::clone(&sem), Arc::clone(&counts));
            tokio::spawn(async move {
                let service = service_fn(move |_req| {
                    let (sem, counts) = (Arc::clone(&sem), Arc::clone(&counts));
                    async move {
                        let response = match sem.try_acquire() {
                            Ok(_permit) => {
                                tokio::time::sleep(service).await;
                                counts.ok.fetch_add(1, Ordering::SeqCst);
                                Response::new(Full::new(Bytes::from_static(b"ok")))
                            }
                            Err(_) => {
                                counts.busy.fetch_add(1, Ordering::SeqCst);
                                Response::builder()
                                    .status(StatusCode::SERVICE_UNAVAILABLE)
                                    .header("retry-after", "1")
                                    .body(Full::new(Bytes::from_static(b"busy")))
                                    .unwrap()
                            }
                        };
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, served)
}

/// The endpoints of the first cluster in `/clusters`.
async fn endpoints(p: &TestProxy) -> Vec<serde_json::Value> {
    get(&p.admin_url("/clusters")).await.json()["clusters"][0]["endpoints"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn busy_replicas_are_not_ejected_and_keep_their_traffic() {
    // Two replicas of 4 slots × 5 ms and 12 clients at once: both answer part of
    // the requests with 503 + Retry-After, as the demo app does under a burst.
    let (a, served_a) = busy_app(4, Duration::from_millis(5)).await;
    let (b, served_b) = busy_app(4, Duration::from_millis(5)).await;
    let p = start_proxy(&config_for_endpoints(
        &[a.to_string(), b.to_string()],
        "",
        "    outlier: { consecutive_failures: 5, max_ejection_percent: 50 }\n    circuit_breaker: { consecutive_failures: 5, failure_rate: { threshold_percent: 50, window: 10s, min_requests: 20 } }",
    ))
    .await;
    let statuses = burst(&p.url("/x"), 600, 12).await;
    let busy = statuses.iter().filter(|s| s.as_u16() == 503).count();
    let ok = statuses.iter().filter(|s| s.is_success()).count();
    assert_eq!(busy + ok, 600, "only answers of the apps: {statuses:?}");
    let (busy_a, busy_b) = (
        served_a.busy.load(Ordering::SeqCst),
        served_b.busy.load(Ordering::SeqCst),
    );
    assert!(
        busy_a > 0 && busy_b > 0,
        "both were overloaded: {busy_a} {busy_b}"
    );
    assert_eq!(busy, busy_a + busy_b, "every 503 came from an app");

    let status = get(&p.admin_url("/clusters")).await.json();
    let cluster = &status["clusters"][0];
    assert_eq!(cluster["breaker"]["state"], "closed", "{status}");
    assert_eq!(cluster["available_endpoints"], 2, "{status}");
    for (ep, served) in cluster["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .zip([&served_a, &served_b])
    {
        assert_eq!(ep["ejected"], false, "{status}");
        assert_eq!(ep["failures_total"], 0, "{status}");
        assert_eq!(ep["consecutive_failures"], 0, "{status}");
        assert_eq!(
            ep["overloaded_total"].as_u64().unwrap() as usize,
            served.busy.load(Ordering::SeqCst),
            "{status}"
        );
    }
    // Both replicas kept serving their share throughout.
    let (ok_a, ok_b) = (
        served_a.ok.load(Ordering::SeqCst),
        served_b.ok.load(Ordering::SeqCst),
    );
    assert!(ok_a > 30 && ok_b > 30, "ok: {ok_a} / {ok_b}");

    // The metric is process-wide (other tests here have a cluster `app` too).
    let metrics = get(&p.admin_url("/metrics")).await.body;
    let counted = metric(
        &metrics,
        "floodgate_upstream_overloaded_total{cluster=\"app\"}",
    );
    assert!(counted >= busy as f64, "{counted} < {busy}");
}

/// One round-robin cluster of `bad` (answering `behavior`) and a healthy peer,
/// 20 requests one at a time; returns `bad`'s entry in `/clusters`.
async fn bad_and_good(behavior: Behavior) -> (serde_json::Value, serde_json::Value) {
    let bad = upstream("bad").await;
    let good = upstream("good").await;
    bad.set(behavior);
    let p = start_proxy(&simple_config(
        &[&bad, &good],
        "",
        "    balancer: round_robin\n    outlier: { consecutive_failures: 3, base_ejection: 30s, max_ejection_percent: 50 }\n    circuit_breaker: { consecutive_failures: 3 }",
    ))
    .await;
    burst(&p.url("/x"), 20, 1).await;
    let status = get(&p.admin_url("/clusters")).await.json();
    let eps = endpoints(&p).await;
    (eps[0].clone(), status)
}

#[tokio::test]
async fn what_counts_as_a_failure_for_ejection() {
    let retry_after = vec![("retry-after", "1")];
    let cases = [
        // (status, extra headers, counts as a failure and so ejects)
        (500, vec![], true),
        (503, vec![], true),
        (503, retry_after.clone(), false),
        (429, vec![], false),
        (429, retry_after.clone(), false),
        (502, retry_after.clone(), true),
    ];
    for (code, headers, ejected) in cases {
        let with = format!("{code} {headers:?}");
        let (bad, status) = bad_and_good(Behavior {
            status: code,
            headers,
            ..Default::default()
        })
        .await;
        assert_eq!(bad["ejected"], ejected, "{with}: {status}");
        let requests = bad["requests_total"].as_u64().unwrap();
        if ejected {
            assert_eq!(bad["failures_total"], 3, "{with}: {status}");
            assert_eq!(bad["overloaded_total"], 0, "{with}: {status}");
        } else {
            // Every answer of the busy endpoint was counted apart, none as a failure.
            assert_eq!(requests, 10, "{with}: {status}");
            assert_eq!(bad["failures_total"], 0, "{with}: {status}");
            assert_eq!(bad["overloaded_total"], 10, "{with}: {status}");
        }
        // The peer's successes keep the breaker's failure streak short either way.
        assert_eq!(
            status["clusters"][0]["breaker"]["state"], "closed",
            "{with}: {status}"
        );
    }
}

#[tokio::test]
async fn busy_answers_do_not_open_the_breaker() {
    let a = upstream("a").await;
    a.set(Behavior {
        status: 503,
        headers: vec![("retry-after", "1")],
        ..Default::default()
    });
    let p = start_proxy(&simple_config(
        &[&a],
        "",
        "    circuit_breaker: { consecutive_failures: 3, failure_rate: { threshold_percent: 50, window: 10s, min_requests: 5 } }",
    ))
    .await;
    let statuses = burst(&p.url("/x"), 30, 1).await;
    assert!(statuses.iter().all(|s| s.as_u16() == 503));
    // Every request reached the app: the breaker never answered for it.
    assert_eq!(a.hits(), 30);
    let status = get(&p.admin_url("/clusters")).await.json();
    assert_eq!(
        status["clusters"][0]["breaker"]["state"], "closed",
        "{status}"
    );

    // The same answer without Retry-After is a failure: the breaker opens.
    a.set(Behavior {
        status: 503,
        ..Default::default()
    });
    burst(&p.url("/x"), 3, 1).await;
    let r = get(&p.url("/x")).await;
    assert_eq!(r.header("x-floodgate-reason"), "circuit_open");
    assert_eq!(a.hits(), 33);
}

#[tokio::test]
async fn endpoints_failing_alike_are_not_ejected() {
    let a = upstream("a").await;
    let b = upstream("b").await;
    for u in [&a, &b] {
        u.set(Behavior {
            status: 500,
            ..Default::default()
        });
    }
    let p = start_proxy(&simple_config(
        &[&a, &b],
        "",
        "    balancer: round_robin\n    outlier: { consecutive_failures: 3, max_ejection_percent: 50 }",
    ))
    .await;
    burst(&p.url("/x"), 20, 1).await;
    for ep in endpoints(&p).await {
        assert_eq!(ep["ejected"], false, "{ep}");
        assert_eq!(ep["failures_total"], 10, "{ep}");
    }
    let metrics = get(&p.admin_url("/metrics")).await.body;
    assert!(
        metric(
            &metrics,
            "floodgate_outlier_ejections_spared_total{cluster=\"app\",reason=\"like_peers\"}"
        ) > 0.0,
        "{metrics}"
    );

    // One of them recovers: the other, now failing alone, is ejected.
    b.set(Behavior::default());
    burst(&p.url("/x"), 20, 1).await;
    let eps = endpoints(&p).await;
    assert_eq!(eps[0]["ejected"], true, "{eps:?}");
    assert_eq!(eps[1]["ejected"], false, "{eps:?}");
}
