//! Signal latency: from a step of offered load (baseline → 100x) to `desired`
//! on `GET /v1/scale/{cluster}` reflecting it, measured.
//!
//! ```text
//! cargo run -p floodgate-control --example signal_bench -- [TRIALS] [BASE_RPS] [REPORT_MS]
//! ```
//!
//! Each trial starts, in this process on 127.0.0.1, a control plane (defaults:
//! `tick` 250ms, panic window 6s) with `autoscale: { app: { target_rps_per_replica:
//! BASE_RPS, target_utilization: 1.0, max_replicas: 1000 } }`, a real proxy
//! (`Managed`, `report_interval` REPORT_MS, default 500 — the default) and a 1 ms upstream; sends
//! BASE_RPS (default 5) open-loop for 3 s plus a random part of a report interval
//! (so the step falls anywhere between two reports), then 100 × BASE_RPS for 4 s, and polls
//! `/v1/scale/app` every 10 ms. It prints, per trial and as p50/max over the trials,
//! the time from the step to: the first move of `desired` above 1, `desired` ≥ 45
//! (90 %), and `desired` = 50 (the whole step). Light load (500 requests/s by default):
//! safe on a shared machine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

const PROXY: &str = "proxy-token-for-bench-0001";
const APP: &str = "app-token-for-bench-000002";
const OPERATOR: &str = "operator-token-for-bench-3";

async fn upstream() -> SocketAddr {
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = socket.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(|_req| async {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

struct Trial {
    first_move: Option<Duration>,
    ninety: Option<Duration>,
    full: Option<Duration>,
}

async fn trial(base_rps: f64, report_ms: u64) -> Trial {
    let dir = tempfile::tempdir().unwrap();
    let app = upstream().await;
    std::fs::create_dir(dir.path().join("groups")).unwrap();
    std::fs::write(
        dir.path().join("groups/edge.yaml"),
        format!(
            "listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    routes: [ {{ name: all, cluster: app }} ]\n\
             clusters:\n  - name: app\n    endpoints: [\"{app}\"]\n"
        ),
    )
    .unwrap();
    let text = format!(
        "listen: 127.0.0.1:0\nconfigs_dir: groups\n\
         tokens: {{ proxy: {PROXY}, app: {APP}, operator: {OPERATOR} }}\n\
         autoscale:\n  app: {{ target_rps_per_replica: {}, target_utilization: 1.0, max_replicas: 1000 }}\n",
        base_rps * 2.0
    );
    let config = floodgate_control::config::parse_str(&text, "control.yaml", dir.path()).unwrap();
    let running = floodgate_control::start(config).await.unwrap();
    let cp = running.local_addr();
    let boot = format!(
        "control_plane:\n  url: http://{cp}\n  node_id: bench\n  group: edge\n  token: {PROXY}\n  \
         snapshot_file: {}\n  report_interval: {report_ms}ms\n",
        dir.path().join("snapshot.yaml").display()
    );
    let boot = floodgate::config::parse_str(&boot, "bootstrap.yaml", dir.path()).unwrap();
    let managed = floodgate::control_client::Managed::start(boot, dir.path()).unwrap();
    let web = loop {
        if let Some(a) = managed.proxy().listener_addr("web") {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let started = Instant::now();
    // A random phase against the proxy's report ticks, as a real step would have.
    let step_at = started + Duration::from_millis(3000 + rand::random_range(0..report_ms));
    let end = step_at + Duration::from_secs(4);
    let load = {
        let client = client.clone();
        tokio::spawn(async move {
            // Open loop: requests are started on schedule, whatever the answers do.
            let mut next = Instant::now();
            while Instant::now() < end {
                let rps = if Instant::now() < step_at {
                    base_rps
                } else {
                    base_rps * 100.0
                };
                next += Duration::from_secs_f64(1.0 / rps);
                let req = Request::get(format!("http://{web}/x"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let c = client.clone();
                tokio::spawn(async move {
                    if let Ok(r) = c.request(req).await {
                        let _ = r.into_body().collect().await;
                    }
                });
                tokio::time::sleep_until(next.into()).await;
            }
        })
    };

    let desired = |c: Client<_, Full<Bytes>>| async move {
        let req = Request::get(format!("http://{cp}/v1/scale/app"))
            .header("authorization", format!("Bearer {OPERATOR}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp: Response<hyper::body::Incoming> = c.request(req).await.ok()?;
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        v["desired"].as_u64()
    };
    let mut t = Trial {
        first_move: None,
        ninety: None,
        full: None,
    };
    while Instant::now() < end {
        let d = desired(client.clone()).await.unwrap_or(0);
        let now = Instant::now();
        if now >= step_at {
            let since = now - step_at;
            if d > 1 && t.first_move.is_none() {
                t.first_move = Some(since);
            }
            if d >= 45 && t.ninety.is_none() {
                t.ninety = Some(since);
            }
            if d >= 50 && t.full.is_none() {
                t.full = Some(since);
                break;
            }
        } else if d > 1 {
            eprintln!("warning: desired {d} before the step");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    load.abort();
    drop(managed);
    drop(running);
    t
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "never".to_owned(), |d| format!("{} ms", d.as_millis()))
}

fn stats(mut v: Vec<Duration>) -> String {
    if v.is_empty() {
        return "-".to_owned();
    }
    v.sort();
    format!(
        "p50 {} ms, max {} ms",
        v[v.len() / 2].as_millis(),
        v[v.len() - 1].as_millis()
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let trials: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let base: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5.0);
    let report_ms: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(500);
    let mut all = Vec::new();
    for i in 0..trials {
        let t = trial(base, report_ms).await;
        println!(
            "trial {}: first move {}, desired ≥ 45 {}, desired = 50 {}",
            i + 1,
            ms(t.first_move),
            ms(t.ninety),
            ms(t.full)
        );
        all.push(t);
    }
    let pick = |f: fn(&Trial) -> Option<Duration>| all.iter().filter_map(f).collect::<Vec<_>>();
    println!(
        "step {base} → {} rps, report_interval {report_ms}ms, tick 250ms:\n  first move:   {}\n  desired ≥ 45: {}\n  desired = 50: {}",
        base * 100.0,
        stats(pick(|t| t.first_move)),
        stats(pick(|t| t.ninety)),
        stats(pick(|t| t.full)),
    );
}
