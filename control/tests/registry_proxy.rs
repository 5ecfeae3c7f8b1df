//! The endpoint registry end to end through a real proxy: a real control plane
//! (this crate's library) and a real proxy (`floodgate::control_client::Managed`)
//! on 127.0.0.1, registrations over real HTTP, requests through the proxy.
//!
//! A registered endpoint is an endpoint-only change for the proxy: the cluster keeps
//! its admission state and the stats of the endpoints that stayed, the new one takes
//! traffic, a deregistered one drains, and TTL expiry removes it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use floodgate::control_client::Managed;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use support::{call, eventually, get_text, managed_admin, managed_proxy, ControlPlane, APP};
use tokio::sync::watch;

/// An upstream that answers with its name; requests to `/hold` wait until
/// [`Held::release`] (no timing involved), and are counted while they wait.
#[derive(Clone)]
struct Held {
    addr: SocketAddr,
    holding: Arc<AtomicUsize>,
    release: watch::Sender<bool>,
}

impl Held {
    async fn start(name: &'static str) -> Self {
        let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let holding = Arc::new(AtomicUsize::new(0));
        let (release, released) = watch::channel(false);
        let h = Held {
            addr,
            holding: Arc::clone(&holding),
            release,
        };
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = socket.accept().await else {
                    continue;
                };
                let holding = Arc::clone(&holding);
                let released = released.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let holding = Arc::clone(&holding);
                        let mut released = released.clone();
                        async move {
                            if req.uri().path() == "/hold" {
                                holding.fetch_add(1, Ordering::SeqCst);
                                let _ = released.wait_for(|r| *r).await;
                                holding.fetch_sub(1, Ordering::SeqCst);
                            }
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(name))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        h
    }

    fn holding(&self) -> usize {
        self.holding.load(Ordering::SeqCst)
    }
}

/// Group `edge`: listener `web` routing to cluster `app` with `endpoints`
/// (YAML flow list items); admission on (the default), as in production.
fn group(endpoints: &str) -> String {
    format!(
        "server: {{ access_log: false, drain_timeout: 5s }}\n\
         listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    routes: [ {{ name: all, cluster: app }} ]\n\
         clusters:\n  - name: app\n    endpoints: [{endpoints}]\n    connect_timeout: 500ms\n"
    )
}

async fn listener(m: &Managed) -> SocketAddr {
    eventually("the listener from the snapshot", || async {
        m.proxy().listener_addr("web")
    })
    .await
}

/// `/clusters`' entry of cluster `app`.
async fn cluster(admin: SocketAddr) -> Value {
    let (status, body) = get_text(admin, "/clusters").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    v["clusters"][0].clone()
}

fn endpoint_field(cluster: &Value, address: SocketAddr, field: &str) -> Option<u64> {
    cluster["endpoints"]
        .as_array()?
        .iter()
        .find(|e| e["address"] == address.to_string())?[field]
        .as_u64()
}

fn listed(cluster: &Value, address: SocketAddr) -> bool {
    endpoint_field(cluster, address, "requests_total").is_some()
}

async fn register(cp: &ControlPlane, address: SocketAddr, ttl: &str) {
    let (status, body) = call(
        cp.addr(),
        Method::POST,
        "/v1/endpoints",
        Some(APP),
        Some(json!({ "cluster": "app", "address": address.to_string(), "ttl": ttl })),
    )
    .await;
    assert!(status.is_success(), "{status} {body:?}");
}

async fn deregister(cp: &ControlPlane, address: SocketAddr) {
    let (status, body) = call(
        cp.addr(),
        Method::DELETE,
        "/v1/endpoints",
        Some(APP),
        Some(json!({ "cluster": "app", "address": address.to_string() })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
}

/// One GET through the proxy: `(status, body)`, status 0 for a transport error.
async fn get(
    client: &Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    path: &str,
) -> (u16, String) {
    let req = Request::get(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let Ok(resp) = client.request(req).await else {
        return (0, String::new());
    };
    let status = resp.status().as_u16();
    match resp.into_body().collect().await {
        Ok(b) => (status, String::from_utf8_lossy(&b.to_bytes()).into_owned()),
        Err(_) => (0, String::new()),
    }
}

/// Load through the proxy: 3 concurrent loops of GET `/x` until `stop` (or 30 s,
/// or 15,000 requests: bounded); returns every `(status, body)`.
fn load(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<(u16, String)>> {
    tokio::spawn(async move {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut loops = Vec::new();
        for _ in 0..3 {
            let client = client.clone();
            let stop = Arc::clone(&stop);
            let sent = Arc::clone(&sent);
            loops.push(tokio::spawn(async move {
                let mut out = Vec::new();
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline && out.len() < 5_000
                {
                    out.push(get(&client, addr, "/x").await);
                    sent.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                out
            }));
        }
        let mut all = Vec::new();
        for l in loops {
            all.extend(l.await.unwrap());
        }
        all
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_only_cluster_answers_503_until_an_endpoint_registers() {
    let a = support::upstream("a").await;
    let cp = ControlPlane::start("edge", &group("")).await;
    let dir = tempfile::tempdir().unwrap();
    let m = managed_proxy(&cp, "edge", "e1", dir.path());
    let admin = managed_admin(&m).await;
    let web = listener(&m).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();

    let (status, body) = get(&client, web, "/x").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no_healthy_endpoint"), "{body}");
    let c = cluster(admin).await;
    assert_eq!(c["name"], "app");
    assert_eq!(c["endpoints"].as_array().unwrap().len(), 0, "{c}");

    register(&cp, a, "30s").await;
    eventually("the registered endpoint serves", || {
        let client = client.clone();
        async move { (get(&client, web, "/x").await == (200, "a".into())).then_some(()) }
    })
    .await;
    assert!(listed(&cluster(admin).await, a));
    m.proxy().drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_registered_under_load_keeps_the_cluster_state_and_drains_on_deregistration() {
    let a = Held::start("a").await;
    let b = Held::start("b").await;
    let cp = ControlPlane::start("edge", &group(&format!("\"{}\"", a.addr))).await;
    let dir = tempfile::tempdir().unwrap();
    let m = managed_proxy(&cp, "edge", "e2", dir.path());
    let admin = managed_admin(&m).await;
    let web = listener(&m).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let loader = load(web, Arc::clone(&stop), Arc::clone(&sent));
    // The load has reached the cluster and its admission controller.
    let before = eventually("load reaches the cluster", || async {
        let c = cluster(admin).await;
        (c["admission"]["offered"].as_u64()? >= 50).then_some(c)
    })
    .await;
    let offered_before = before["admission"]["offered"].as_u64().unwrap();
    let a_before = endpoint_field(&before, a.addr, "requests_total").unwrap();
    assert!(before["admission"]["limit"].is_u64(), "{before}");
    let version_before = cp.version("edge").await.unwrap();

    // Registration: the new endpoint takes traffic, the cluster keeps counting.
    register(&cp, b.addr, "30s").await;
    eventually("a request reaches the registered endpoint", || {
        let client = client.clone();
        async move { (get(&client, web, "/x").await == (200, "b".into())).then_some(()) }
    })
    .await;
    let after = cluster(admin).await;
    assert!(
        after["admission"]["offered"].as_u64().unwrap() > offered_before,
        "the admission counters kept counting: {before} -> {after}"
    );
    assert!(after["admission"]["limit"].is_u64(), "{after}");
    assert!(
        endpoint_field(&after, a.addr, "requests_total").unwrap() >= a_before,
        "the endpoint that stayed keeps its stats: {before} -> {after}"
    );
    let registered = cp.version("edge").await.unwrap();
    assert_ne!(registered, version_before);
    let node = cp.node("e2").await.unwrap();
    assert_eq!(node["last_ack"].as_u64(), Some(registered), "{node}");

    // Requests held on both endpoints, then `b` deregisters while they are in flight.
    let held: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { get(&client, web, "/hold").await })
        })
        .collect();
    eventually(
        "a request is in flight on the registered endpoint",
        || async { (b.holding() >= 1).then_some(()) },
    )
    .await;
    deregister(&cp, b.addr).await;
    let removed = eventually("a version without it", || async {
        cp.version("edge").await.filter(|v| *v != registered)
    })
    .await;
    eventually("the proxy ACKs it", || async {
        cp.node("e2")
            .await
            .filter(|n| n["last_ack"].as_u64() == Some(removed))
    })
    .await;
    eventually("the proxy no longer lists it", || async {
        (!listed(&cluster(admin).await, b.addr)).then_some(())
    })
    .await;
    // The held request on `b` is still being served: it completes, and so do all.
    assert!(b.holding() >= 1);
    a.release.send_replace(true);
    b.release.send_replace(true);
    let mut answered_by_b = 0;
    for h in held {
        let (status, body) = h.await.unwrap();
        assert_eq!(status, 200, "{body}");
        answered_by_b += usize::from(body == "b");
    }
    assert!(answered_by_b >= 1, "an in-flight request on `b` drained");
    // Nothing new reaches `b`.
    for _ in 0..20 {
        assert_eq!(get(&client, web, "/x").await, (200, "a".into()));
    }

    // The load goes on across all of it, and a while after.
    let so_far = sent.load(Ordering::SeqCst);
    eventually("more load after the deregistration", || async {
        (sent.load(Ordering::SeqCst) >= so_far + 30).then_some(())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let statuses = loader.await.unwrap();
    let failed: Vec<_> = statuses.iter().filter(|(s, _)| *s != 200).collect();
    assert!(failed.is_empty(), "no request failed: {failed:?}");
    assert!(statuses.len() >= 30, "the load ran: {}", statuses.len());
    assert!(statuses.iter().any(|(_, body)| body == "b"));
    m.proxy().drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_stops_heartbeating_is_removed_from_the_proxy() {
    let a = support::upstream("a").await;
    let b = support::upstream("b").await;
    let cp = ControlPlane::start("edge", &group(&format!("\"{a}\""))).await;
    let dir = tempfile::tempdir().unwrap();
    let m = managed_proxy(&cp, "edge", "e3", dir.path());
    let admin = managed_admin(&m).await;
    let web = listener(&m).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();

    register(&cp, b, "1s").await;
    eventually("the registered endpoint is listed", || async {
        listed(&cluster(admin).await, b).then_some(())
    })
    .await;
    // No heartbeat: the sweep removes it within a TTL and a sweep interval.
    eventually("the expired endpoint leaves the proxy", || async {
        (!listed(&cluster(admin).await, b)).then_some(())
    })
    .await;
    let (_, endpoints) = call(
        cp.addr(),
        Method::GET,
        "/v1/endpoints",
        Some(support::OPERATOR),
        None,
    )
    .await;
    let endpoints: Value = serde_json::from_slice(&endpoints).unwrap();
    assert_eq!(endpoints["endpoints"].as_array().unwrap().len(), 0);
    for _ in 0..10 {
        assert_eq!(get(&client, web, "/x").await, (200, "a".into()));
    }
    m.proxy().drain().await;
}
