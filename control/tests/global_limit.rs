//! Cluster-wide rate limit end to end: a real control plane and three real
//! proxies (each with a `control_plane` bootstrap, default 500 ms reports) serving
//! a route with `global_rate_limit: { rps: 300, burst: 30, fallback_rps: 20 }`.
//! Load goes to two of them. The split gives the busy ones nearly all of it and
//! the idle one its floor, the shares never add up to more than 300, and the
//! upstream gets no more than 300 per second; with the control plane killed,
//! every proxy keeps its share until its lease ends, then runs on `fallback_rps`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use floodgate::admin::Admin;
use floodgate::control_client::quota::{ShareSource, ShareView};
use floodgate::control_client::report;
use floodgate::control_client::Managed;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use support::{counting_upstream, eventually, get_text, managed_proxy, ControlPlane};

const N: u64 = 300;
const BURST: u64 = 30;
const FALLBACK: u32 = 20;

/// The route with the global limit; admission is off so that only the limit
/// decides what reaches the upstream.
fn group(endpoint: std::net::SocketAddr) -> String {
    format!(
        "listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    routes:\n\
         \x20     - name: codes\n        cluster: app\n\
         \x20       global_rate_limit: {{ rps: {N}, burst: {BURST}, fallback_rps: {FALLBACK} }}\n\
         clusters:\n  - name: app\n    endpoints: [\"{endpoint}\"]\n    admission: {{ enabled: false }}\n"
    )
}

struct Stack {
    cp: ControlPlane,
    proxies: Vec<Managed>,
    upstream: Arc<AtomicU64>,
    _dir: tempfile::TempDir,
}

async fn stack() -> Stack {
    let (app, upstream) = counting_upstream().await;
    let cp = ControlPlane::start("edge", &group(app)).await;
    let dir = tempfile::tempdir().unwrap();
    let proxies: Vec<Managed> = ["p1", "p2", "p3"]
        .iter()
        .map(|node| managed_proxy(&cp, "edge", node, dir.path()))
        .collect();
    for m in &proxies {
        eventually("the proxy serves the snapshot", || async {
            m.proxy().listener_addr("web").map(|_| ())
        })
        .await;
    }
    Stack {
        cp,
        proxies,
        upstream,
        _dir: dir,
    }
}

/// Sends requests at `m` from `workers` loops (each paced by a short pause) until
/// `stop` or 60 s; counts 429s into `refused`.
fn drive(m: &Managed, workers: usize, stop: &Arc<AtomicBool>, refused: &Arc<AtomicU64>) {
    let addr = m.proxy().listener_addr("web").unwrap();
    for _ in 0..workers {
        let (stop, refused) = (Arc::clone(stop), Arc::clone(refused));
        tokio::spawn(async move {
            let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
            let until = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                let req = Request::get(format!("http://{addr}/code"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                if let Ok(resp) = client.request(req).await {
                    if resp.status() == http::StatusCode::TOO_MANY_REQUESTS {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = resp.into_body().collect().await;
                }
                tokio::time::sleep(Duration::from_millis(4)).await;
            }
        });
    }
}

/// `GET /v1/quotas`' route `codes`: (rps, share by node).
fn shares(quotas: &Value) -> Option<(u64, Vec<(String, u64)>)> {
    let route = quotas["routes"]
        .as_array()?
        .iter()
        .find(|r| r["route"] == "codes")?;
    let proxies = route["proxies"]
        .as_array()?
        .iter()
        .map(|p| {
            (
                p["node"].as_str().unwrap_or("").to_owned(),
                p["share_rps"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    Some((route["rps"].as_u64()?, proxies))
}

fn share_of(all: &[(String, u64)], node: &str) -> u64 {
    all.iter()
        .find(|(n, _)| n == &format!("edge/{node}"))
        .map_or(0, |(_, s)| *s)
}

fn global(m: &Managed) -> Option<ShareView> {
    m.status()
        .view()
        .global_limits
        .into_iter()
        .find(|s| s.route == "codes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_split_follows_demand_and_never_exceeds_the_limit() {
    let s = stack().await;
    let (stop, refused) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    drive(&s.proxies[0], 3, &stop, &refused);
    drive(&s.proxies[1], 3, &stop, &refused);

    // Every poll of the split: what the proxies hold adds up to at most N.
    let most = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (addr, most, stop) = (s.cp.addr(), Arc::clone(&most), Arc::clone(&stop));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (_, body) = support::call(
                    addr,
                    http::Method::GET,
                    "/v1/quotas",
                    Some(support::OPERATOR),
                    None,
                )
                .await;
                let quotas: Value = serde_json::from_slice(&body).unwrap();
                if let Some((_, all)) = shares(&quotas) {
                    let sum: u64 = all.iter().map(|(_, s)| s).sum();
                    most.fetch_max(sum, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };

    let (rps, all) = eventually(
        "the busy proxies hold ≥ 90% of N, the idle one its floor",
        || async {
            let (rps, all) = shares(&s.cp.operator_get("/v1/quotas").await)?;
            let busy = share_of(&all, "p1") + share_of(&all, "p2");
            // A live proxy keeps a floor (it may be 0 for a moment, while the first
            // proxies to report still hold everything).
            let idle = share_of(&all, "p3");
            (busy >= N * 9 / 10 && (1..=N / 30).contains(&idle)).then_some((rps, all))
        },
    )
    .await;
    assert_eq!(rps, N);
    let (status, _) = support::call(s.cp.addr(), http::Method::GET, "/v1/quotas", None, None).await;
    assert_eq!(status, http::StatusCode::UNAUTHORIZED, "operators only");
    // Each proxy applies what it was granted.
    let p3 = eventually("p3 runs on its lease", || async {
        global(&s.proxies[2]).filter(|g| g.source == ShareSource::Lease)
    })
    .await;
    assert!(u64::from(p3.share_rps) <= N / 30, "{p3:?}");

    // What reached the upstream over a measured stretch: at most N per second, plus
    // the buckets' bursts (30 in all) and 5% for timing the stretch.
    let (c0, t0) = (s.upstream.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (c1, elapsed) = (s.upstream.load(Ordering::Relaxed), t0.elapsed());
    let passed = c1 - c0;
    let bound = (N as f64 * elapsed.as_secs_f64() * 1.05) as u64 + BURST;
    eprintln!(
        "upstream: {passed} answers in {elapsed:?} ({:.0}/s; bound {bound}); shares {all:?}",
        passed as f64 / elapsed.as_secs_f64()
    );
    assert!(
        passed <= bound,
        "{passed} answers in {elapsed:?} (bound {bound})"
    );
    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "the load was over the limit"
    );

    stop.store(true, Ordering::Relaxed);
    watcher.await.unwrap();
    let most = most.load(Ordering::Relaxed);
    eprintln!("largest sum of shares seen in /v1/quotas: {most}");
    assert!(
        most > 0 && most <= N,
        "the shares added up to {most} at most"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_control_plane_gone_proxies_keep_their_lease_then_fall_back() {
    let mut s = stack().await;
    let (stop, refused) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    drive(&s.proxies[0], 3, &stop, &refused);
    drive(&s.proxies[1], 3, &stop, &refused);
    let admin = Admin::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .with_control(Arc::clone(s.proxies[0].status()));
    let admin_addr = admin.local_addr().unwrap();
    tokio::spawn(admin.serve(Arc::clone(s.proxies[0].proxy())));

    eventually(
        "the busy proxies run on leases above the fallback, the idle one on its floor lease",
        || async {
            let g = global(&s.proxies[0])?;
            let h = global(&s.proxies[1])?;
            let idle = global(&s.proxies[2])?;
            let ok = [&g, &h]
                .iter()
                .all(|v| v.source == ShareSource::Lease && v.share_rps > 2 * FALLBACK)
                && idle.source == ShareSource::Lease;
            ok.then_some(())
        },
    )
    .await;

    s.cp.stop();
    let stopped = Instant::now();
    let last: Vec<ShareView> = s.proxies.iter().map(|m| global(m).unwrap()).collect();
    // Right after: the share the last lease gave is still in force everywhere.
    for (m, was) in s.proxies.iter().zip(&last) {
        assert_eq!(was.source, ShareSource::Lease, "{was:?}");
        assert_eq!(global(m).unwrap().share_rps, was.share_rps);
    }
    for (m, was) in s.proxies.iter().zip(&last) {
        // Then `fallback_rps`, and not before that lease ran out (its time left was
        // read at the last report tick, up to one interval before the stop).
        let left = was.lease_expires_in_ms.unwrap();
        eventually("the proxy's bucket falls back to fallback_rps", || async {
            let bucket = report::global_limiters(m.proxy()).into_iter().next()?;
            (bucket.share() == FALLBACK).then_some(())
        })
        .await;
        let waited = stopped.elapsed();
        eprintln!(
            "{}: fallback seen {waited:?} after the stop (lease had {left} ms)",
            was.route
        );
        assert!(
            waited + Duration::from_millis(600) >= Duration::from_millis(left),
            "fell back after {waited:?}, the lease had {left} ms left"
        );
    }
    // The status (at the next report tick) and the admin page show it.
    for m in &s.proxies {
        eventually("the status shows the fallback", || async {
            global(m).filter(|g| g.source == ShareSource::Fallback && g.share_rps == FALLBACK)
        })
        .await;
    }
    let (_, text) = get_text(admin_addr, "/control").await.unwrap();
    let page: Value = serde_json::from_str(&text).unwrap();
    let g = &page["global_limits"][0];
    assert_eq!(g["route"], "codes", "{text}");
    assert_eq!(g["source"], "fallback", "{text}");
    assert_eq!(g["share_rps"], u64::from(FALLBACK), "{text}");
    stop.store(true, Ordering::Relaxed);
}
