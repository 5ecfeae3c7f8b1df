//! Balancing, active health checks and outlier ejection, end to end.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test]
async fn p2c_spreads_load_and_avoids_the_busy_endpoint() {
    let a = upstream("a").await;
    let b = upstream("b").await;
    let c = upstream("c").await;
    let p = start_proxy(&simple_config(&[&a, &b, &c], "", "")).await;
    let statuses = burst(&p.url("/x"), 600, 16).await;
    assert!(statuses.iter().all(|s| s.is_success()));
    for u in [&a, &b, &c] {
        assert!(u.hits() > 100, "{} got {} of 600", u.name, u.hits());
    }

    // A slow endpoint accumulates requests in flight, so least-request sends it fewer.
    let fast = upstream("fast").await;
    let slow = upstream("slow").await;
    slow.set(Behavior {
        delay: Duration::from_millis(100),
        ..Default::default()
    });
    let p = start_proxy(&simple_config(&[&fast, &slow], "", "")).await;
    burst(&p.url("/x"), 300, 8).await;
    assert!(
        fast.hits() > 3 * slow.hits(),
        "fast {} vs slow {}",
        fast.hits(),
        slow.hits()
    );
}

#[tokio::test]
async fn round_robin_takes_turns() {
    let a = upstream("a").await;
    let b = upstream("b").await;
    let p = start_proxy(&simple_config(&[&a, &b], "", "    balancer: round_robin")).await;
    for _ in 0..10 {
        get(&p.url("/x")).await;
    }
    assert_eq!((a.hits(), b.hits()), (5, 5));
}

#[tokio::test]
async fn health_check_removes_and_restores_an_endpoint() {
    let a = upstream("a").await;
    let b = upstream("b").await;
    let p = start_proxy(&simple_config(
        &[&a, &b],
        "",
        "    health_check: { path: /healthz, interval: 100ms, timeout: 100ms, healthy_threshold: 2, unhealthy_threshold: 2 }",
    ))
    .await;
    eventually(Duration::from_secs(5), "both checked", || async {
        a.health_hits() > 0 && b.health_hits() > 0
    })
    .await;
    a.set(Behavior {
        health_status: 503,
        ..Default::default()
    });
    let clusters = p.admin_url("/clusters");
    eventually(Duration::from_secs(5), "a marked unhealthy", || async {
        get(&clusters).await.json()["clusters"][0]["endpoints"][0]["healthy"] == false
    })
    .await;
    let before = a.hits();
    burst(&p.url("/x"), 50, 4).await;
    assert_eq!(a.hits(), before, "an unhealthy endpoint gets no traffic");

    a.set(Behavior::default());
    eventually(Duration::from_secs(5), "a healthy again", || async {
        get(&clusters).await.json()["clusters"][0]["endpoints"][0]["healthy"] == true
    })
    .await;
    burst(&p.url("/x"), 50, 4).await;
    assert!(a.hits() > before, "a restored endpoint takes traffic again");
}

#[tokio::test]
async fn all_unhealthy_gives_503_with_retry_after() {
    let a = upstream("a").await;
    a.set(Behavior {
        health_status: 500,
        ..Default::default()
    });
    // Without panic mode: with the default threshold (50%) the one unhealthy
    // endpoint would still be used (see `panic_mode_uses_unhealthy_endpoints`).
    let p = start_proxy(&simple_config(
        &[&a],
        "",
        "    healthy_panic_threshold: 0\n    health_check: { path: /healthz, interval: 100ms, timeout: 100ms, unhealthy_threshold: 1 }",
    ))
    .await;
    let url = p.url("/x");
    eventually(
        Duration::from_secs(5),
        "503 no_healthy_endpoint",
        || async { get(&url).await.status == 503 },
    )
    .await;
    let r = get(&url).await;
    assert_eq!(r.header("x-floodgate-reason"), "no_healthy_endpoint");
    assert_eq!(r.header("retry-after"), "1");
}

#[tokio::test]
async fn panic_mode_uses_unhealthy_endpoints() {
    let a = upstream("a").await;
    let b = upstream("b").await;
    let c = upstream("c").await;
    for u in [&a, &b] {
        u.set(Behavior {
            health_status: 500,
            ..Default::default()
        });
    }
    let p = start_proxy(&simple_config(
        &[&a, &b, &c],
        "",
        "    health_check: { path: /healthz, interval: 100ms, timeout: 100ms, unhealthy_threshold: 1 }",
    ))
    .await;
    let clusters = p.admin_url("/clusters");
    eventually(Duration::from_secs(5), "a and b unhealthy", || async {
        get(&clusters).await.json()["clusters"][0]["available_endpoints"] == 1
    })
    .await;
    // One of three available (33% < 50%): traffic goes to all three.
    let status = get(&clusters).await.json();
    assert_eq!(status["clusters"][0]["panic"], true, "{status}");
    let statuses = burst(&p.url("/x"), 150, 4).await;
    assert!(statuses.iter().all(|s| s.is_success()));
    for u in [&a, &b] {
        assert!(u.hits() > 10, "{} got {} of 150", u.name, u.hits());
    }
}

#[tokio::test]
async fn consecutive_failures_eject_within_the_percentage_cap() {
    let bad = upstream("bad").await;
    let good = upstream("good").await;
    let worse = upstream("worse").await;
    bad.set(Behavior {
        status: 500,
        ..Default::default()
    });
    worse.set(Behavior {
        status: 500,
        ..Default::default()
    });
    let p = start_proxy(&simple_config(
        &[&bad, &good, &worse],
        "",
        "    outlier: { consecutive_failures: 3, base_ejection: 30s, max_ejection_percent: 34 }",
    ))
    .await;
    burst(&p.url("/x"), 60, 1).await;
    let status = get(&p.admin_url("/clusters")).await.json();
    let eps = status["clusters"][0]["endpoints"]
        .as_array()
        .unwrap()
        .clone();
    let ejected: Vec<&str> = eps
        .iter()
        .filter(|e| e["ejected"] == true)
        .map(|e| e["address"].as_str().unwrap())
        .collect();
    // 34% of 3 endpoints allows exactly one ejection, though two are failing.
    assert_eq!(ejected.len(), 1, "{status}");
    assert_ne!(ejected[0], good.endpoint());
    let metrics = get(&p.admin_url("/metrics")).await.body;
    assert!(metrics.contains("floodgate_outlier_ejections_total"));

    // With the ejected one out, the other failing endpoint still gets its share.
    let (b0, w0) = (bad.hits(), worse.hits());
    burst(&p.url("/x"), 30, 1).await;
    let moved = (bad.hits() - b0, worse.hits() - w0);
    assert!(
        moved.0 == 0 || moved.1 == 0,
        "the ejected endpoint got traffic: {moved:?}"
    );
}
