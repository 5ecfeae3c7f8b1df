//! Load reports from many simulated proxies, to measure what ingestion and the
//! autoscaler cost the control plane.
//!
//! ```text
//! floodgate-control --config control.yaml &          # with `autoscale:` for cluster `app`
//! cargo run -p floodgate-control --example report_load -- URL TOKEN [NODES] [SECONDS] [INTERVAL_MS]
//! ```
//!
//! NODES (default 200) simulated proxies each POST a report for cluster `app` every
//! INTERVAL_MS (default 500) on kept-alive connections as the real proxy does
//! (`FRESH=1`: a new connection per report), for
//! SECONDS (default 30), with rising cumulative counters. Prints the reports sent
//! and refused. Read the control plane's CPU from `/proc/<pid>/stat` around it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().expect("URL");
    let token = args.next().expect("TOKEN");
    let nodes: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    let interval: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(500);
    // FRESH=1: a connection per report (the proxy before it kept its report connection).
    let fresh = std::env::var("FRESH").is_ok_and(|v| v == "1");
    let mut builder = Client::builder(TokioExecutor::new());
    if fresh {
        builder.pool_max_idle_per_host(0);
    }
    let client = builder.build_http::<Full<Bytes>>();
    let (ok, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let end = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..nodes)
        .map(|n| {
            let (client, url, token) = (client.clone(), url.clone(), token.clone());
            let (ok, refused) = (Arc::clone(&ok), Arc::clone(&refused));
            tokio::spawn(async move {
                // Spread the nodes over the interval, as independent proxies are.
                tokio::time::sleep(Duration::from_millis(interval * n / nodes)).await;
                let mut tick = tokio::time::interval(Duration::from_millis(interval));
                let mut seq = 0u64;
                while Instant::now() < end {
                    tick.tick().await;
                    seq += 1;
                    let offered = seq * 50;
                    let body = json!({
                        "group": "edge", "node": format!("sim-{n}"), "interval_ms": interval, "seq": seq,
                        "clusters": [{
                            "cluster": "app", "offered": offered, "admitted": offered, "shed": 0,
                            "completed": {"2xx": offered, "4xx": 0, "5xx": 0}, "too_many_requests": 0,
                            "unavailable": {"overloaded": 0, "circuit_open": 0, "overflow": 0, "no_healthy_endpoint": 0, "other": 0},
                            "latency_count": offered, "latency_sum_us": offered * 10_000,
                            "in_flight": 1, "queue_depth": 0, "limit": 20,
                            "latency_p50_ms": 10.0, "latency_p99_ms": 12.0
                        }]
                    });
                    let req = Request::post(format!("{url}/v1/reports"))
                        .header("authorization", format!("Bearer {token}"))
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(body.to_string())))
                        .unwrap();
                    match client.request(req).await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.into_body().collect().await;
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    println!(
        "{nodes} nodes × every {interval} ms for {seconds} s: {} reports accepted, {} failed",
        ok.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    );
}
