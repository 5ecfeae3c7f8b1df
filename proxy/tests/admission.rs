//! End-to-end admission control: a fixed limit with a queue in front of a slow
//! upstream, a burst far above an app's capacity with the defaults, clients
//! leaving while queued or in service (HTTP/1.1 and HTTP/2), and the adaptive
//! limit settling around an app's real capacity.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// The `admission` object of cluster `app` in `/clusters`.
async fn admission_status(proxy: &TestProxy) -> serde_json::Value {
    let page = get(&proxy.admin_url("/clusters")).await.json();
    page["clusters"][0]["admission"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_limit_admits_two_and_sheds_the_rest_with_503() {
    let up = upstream("slow").await;
    up.set(Behavior {
        delay: Duration::from_millis(200),
        ..Behavior::default()
    });
    let proxy = start_proxy(&simple_config(
        &[&up],
        "",
        "    admission: { fixed_limit: 2, max_queue: 2, queue_timeout: 100ms }",
    ))
    .await;

    // Count the most requests the upstream ever serves at once.
    let done = Arc::new(AtomicBool::new(false));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let sampler = tokio::spawn({
        let (done, max_seen) = (done.clone(), max_seen.clone());
        let in_flight = move || up.in_flight();
        async move {
            let start = Instant::now();
            while !done.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(20) {
                max_seen.fetch_max(in_flight(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });

    let client = client();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (client, url) = (client.clone(), proxy.url("/code/42"));
        set.spawn(
            async move { send(&client, Request::get(url).body(Full::default()).unwrap()).await },
        );
    }
    let mut answers = Vec::new();
    while let Some(r) = set.join_next().await {
        answers.push(r.unwrap());
    }
    done.store(true, Ordering::SeqCst);
    sampler.await.unwrap();

    let ok = answers
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    let shed: Vec<&Resp> = answers
        .iter()
        .filter(|r| r.status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(ok >= 2, "only {ok} admitted: {answers:?}");
    assert!(!shed.is_empty(), "nothing shed");
    assert_eq!(ok + shed.len(), 10, "{answers:?}");
    for r in shed {
        assert_eq!(r.header("x-floodgate-reason"), "overloaded");
        assert!(!r.header("retry-after").is_empty(), "no Retry-After");
        assert_eq!(r.json()["reason"], "overloaded");
    }
    let max = max_seen.load(Ordering::SeqCst);
    assert!(max <= 2, "{max} requests at the upstream at once");
    let status = admission_status(&proxy).await;
    assert_eq!(status["limit"], 2);
    eventually(Duration::from_secs(5), "all permits released", || async {
        admission_status(&proxy).await["in_flight"] == 0
    })
    .await;
    let page = get(&proxy.admin_url("/metrics")).await.body;
    assert!(metric(&page, "floodgate_shed_total{cluster=\"app\"") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_while_queued_frees_its_slot() {
    let up = upstream("slow").await;
    up.set(Behavior {
        delay: Duration::from_secs(4),
        ..Behavior::default()
    });
    let proxy = start_proxy(&simple_config(
        &[&up],
        "",
        "    admission: { fixed_limit: 1, max_queue: 4, queue_timeout: 10s }",
    ))
    .await;

    // One request holds the only slot for 4 s.
    let url = proxy.url("/hold");
    let holder = tokio::spawn(async move { get(&url).await });
    eventually(Duration::from_secs(5), "holder admitted", || async {
        admission_status(&proxy).await["in_flight"] == 1
    })
    .await;

    // A second client queues behind it, then hangs up.
    let mut stream = TcpStream::connect(proxy.addr("public")).await.unwrap();
    stream
        .write_all(b"GET /queued HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    eventually(Duration::from_secs(3), "second request queued", || async {
        admission_status(&proxy).await["queue_depth"] == 1
    })
    .await;
    drop(stream);
    let left = Instant::now();
    eventually(Duration::from_secs(2), "queue slot freed", || async {
        admission_status(&proxy).await["queue_depth"] == 0
    })
    .await;
    assert!(
        !holder.is_finished(),
        "the queue emptied only because the holder finished ({:?} after hang-up)",
        left.elapsed()
    );
    assert_eq!(holder.await.unwrap().status, StatusCode::OK);
    assert_eq!(
        up.hits(),
        1,
        "the gone client's request never reached the upstream"
    );
    let status = admission_status(&proxy).await;
    assert_eq!(status["client_gone"]["queued"], 1, "{status}");
    assert_eq!(status["client_gone"]["in_service"], 0, "{status}");
    assert_eq!(status["offered"], 2, "{status}");
    assert_eq!(status["admitted"], 1, "{status}");
}

/// An app with `workers` workers, each holding a request for `service`: past
/// `workers` concurrent requests, latency grows with the queue inside the app.
async fn worker_app(
    workers: usize,
    service: Duration,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let pool = Arc::new(tokio::sync::Semaphore::new(workers));
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let pool = pool.clone();
            conns.spawn(async move {
                let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let pool = pool.clone();
                    async move {
                        let _worker = pool.acquire_owned().await.unwrap();
                        tokio::time::sleep(service).await;
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_limit_settles_around_the_apps_capacity() {
    const WORKERS: usize = 4;
    let (addr, app) = worker_app(WORKERS, Duration::from_millis(20)).await;
    let proxy = start_proxy(&format!(
        r#"
server: {{ drain_timeout: 5s, access_log: false }}
listeners:
  - name: public
    listen: 127.0.0.1:0
    routes:
      - name: all
        match: {{ path_prefix: "/" }}
        cluster: app
clusters:
  - name: app
    endpoints: ["{addr}"]
    connect_timeout: 500ms
    admission:
      min_limit: 1
      initial_limit: 2
      max_limit: 64
      tolerance: 1.5
      update_interval: 50ms
      min_rtt_window: 2s
      max_queue: 10000
      queue_timeout: 5s
"#
    ))
    .await;

    // Closed-loop load well past the app's capacity, bounded in time and count.
    let client = client();
    let stop = Instant::now() + Duration::from_secs(5);
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (client, url) = (client.clone(), proxy.url("/code"));
        load.spawn(async move {
            let mut ok = 0;
            for _ in 0..2000 {
                if Instant::now() >= stop {
                    break;
                }
                let r = send(
                    &client,
                    Request::get(url.as_str()).body(Full::default()).unwrap(),
                )
                .await;
                ok += usize::from(r.status == StatusCode::OK);
            }
            ok
        });
    }
    // Watch the limit during the second half of the run.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut limits = Vec::new();
    while Instant::now() < stop {
        if let Some(l) = admission_status(&proxy).await["limit"].as_u64() {
            limits.push(l);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut ok = 0;
    while let Some(n) = load.join_next().await {
        ok += n.unwrap();
    }
    app.abort();

    assert!(ok > 100, "only {ok} requests served");
    assert!(limits.len() >= 5, "too few samples: {limits:?}");
    limits.sort_unstable();
    let median = limits[limits.len() / 2];
    // Wide enough for a loaded 2-core machine (latency noise lifts the estimate).
    let band = (WORKERS as u64 / 2)..=(WORKERS as u64 * 4);
    assert!(
        band.contains(&median),
        "median limit {median} outside {band:?} for {WORKERS} workers: {limits:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_far_above_capacity_with_default_admission_is_answered_quickly() {
    // 4 workers × 20 ms: about 200 requests/s; the burst is 300 at once.
    let (addr, app) = worker_app(4, Duration::from_millis(20)).await;
    let proxy = start_proxy(&config_for_endpoints(
        &[addr.to_string()],
        "",
        "    admission: {}",
    ))
    .await;
    let client = client();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..300 {
        let (client, url) = (client.clone(), proxy.url("/code"));
        set.spawn(async move {
            let start = Instant::now();
            let r = send(&client, Request::get(url).body(Full::default()).unwrap()).await;
            (r, start.elapsed())
        });
    }
    let (mut ok, mut shed, mut slowest_ok, mut slowest) = (0, 0, Duration::ZERO, Duration::ZERO);
    while let Some(r) = set.join_next().await {
        let (r, took) = r.unwrap();
        slowest = slowest.max(took);
        match r.status {
            StatusCode::OK => {
                ok += 1;
                slowest_ok = slowest_ok.max(took);
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                shed += 1;
                assert_eq!(r.header("x-floodgate-reason"), "overloaded");
                assert!(!r.header("retry-after").is_empty(), "no Retry-After");
            }
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    app.abort();
    assert_eq!(ok + shed, 300);
    assert!(ok >= 4, "only {ok} admitted");
    // Generous bounds for a loaded 2-core machine: a count-bounded queue with a 1 s
    // timeout holds admitted requests for most of a second; the delay rule does not.
    assert!(
        slowest_ok < Duration::from_millis(750),
        "an admitted request took {slowest_ok:?}"
    );
    assert!(
        slowest < Duration::from_secs(2),
        "an answer took {slowest:?}"
    );
    eventually(Duration::from_secs(5), "all permits released", || async {
        admission_status(&proxy).await["in_flight"] == 0
    })
    .await;
    let s = admission_status(&proxy).await;
    assert_eq!(s["offered"], 300, "{s}");
    assert_eq!(s["admitted"], ok, "{s}");
    assert_eq!(s["shed"]["total"], shed, "{s}");
    assert_eq!(s["queue_depth"], 0, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_is_on_by_default_and_a_fresh_proxy_does_not_shed_a_slow_apps_traffic() {
    // A slow app (150 ms per answer, no slot limit) that a fresh proxy meets with
    // 40 requests at once, no `admission` block: admission is on, and its cold
    // start admits them all: 20 at once, 20 when those answer (no window pinned
    // at the minimum limit, no 5 ms queue target before any latency is known).
    let up = upstream("slow").await;
    up.set(Behavior {
        delay: Duration::from_millis(150),
        ..Behavior::default()
    });
    let proxy = start_proxy(&simple_config(&[&up], "", "")).await;
    let s = admission_status(&proxy).await;
    assert_eq!(s["limit"], 20, "on by default, at the initial limit: {s}");
    let client = client();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let (client, url) = (client.clone(), proxy.url("/slow"));
        set.spawn(
            async move { send(&client, Request::get(url).body(Full::default()).unwrap()).await },
        );
    }
    while let Some(r) = set.join_next().await {
        let r = r.unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let s = admission_status(&proxy).await;
    assert_eq!(
        (s["offered"].as_u64(), s["shed"]["total"].as_u64()),
        (Some(40), Some(0)),
        "{s}"
    );

    // `enabled: false` turns it off (and `/clusters` says so).
    let off = start_proxy(&simple_config(
        &[&up],
        "",
        "    admission: { enabled: false }",
    ))
    .await;
    assert!(admission_status(&off).await.is_null());
}

/// An upstream that holds every request for 30 s and counts the requests it
/// started and those whose handling was dropped before the answer (the proxy
/// closed the connection or reset the stream).
async fn holding_app() -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    struct Cancelled(Arc<AtomicUsize>);
    impl Drop for Cancelled {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let cancelled = Arc::new(AtomicUsize::new(0));
    let (s, c) = (started.clone(), cancelled.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (s, c) = (s.clone(), c.clone());
            tokio::spawn(async move {
                let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let (s, c) = (s.clone(), c.clone());
                    async move {
                        s.fetch_add(1, Ordering::SeqCst);
                        let guard = Cancelled(c);
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        std::mem::forget(guard);
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"late"))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, started, cancelled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_client_that_hangs_up_in_service_cancels_the_upstream_request() {
    let (addr, started, cancelled) = holding_app().await;
    let proxy = start_proxy(&config_for_endpoints(
        &[addr.to_string()],
        "",
        "    admission: { fixed_limit: 4 }",
    ))
    .await;
    let mut stream = TcpStream::connect(proxy.addr("public")).await.unwrap();
    stream
        .write_all(b"GET /held HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    eventually(
        Duration::from_secs(5),
        "request at the upstream",
        || async { started.load(Ordering::SeqCst) == 1 },
    )
    .await;
    assert_eq!(admission_status(&proxy).await["in_flight"], 1);
    drop(stream);
    // The proxy drops the exchange: the upstream connection is closed, so the
    // upstream's handler is dropped long before its 30 s.
    eventually(
        Duration::from_secs(5),
        "upstream request cancelled",
        || async { cancelled.load(Ordering::SeqCst) == 1 },
    )
    .await;
    eventually(Duration::from_secs(5), "permit released", || async {
        admission_status(&proxy).await["in_flight"] == 0
    })
    .await;
    let s = admission_status(&proxy).await;
    assert_eq!(s["client_gone"]["in_service"], 1, "{s}");
    assert_eq!(s["client_gone"]["queued"], 0, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_reset_in_service_resets_the_upstream_stream() {
    let (addr, started, cancelled) = holding_app().await;
    let proxy = start_proxy(&config_for_endpoints(
        &[addr.to_string()],
        "",
        "    protocol: http2\n    admission: { fixed_limit: 4 }",
    ))
    .await;
    let tcp = TcpStream::connect(proxy.addr("public")).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let url = proxy.url("/held");
    // A second handle keeps the connection open after the request is dropped.
    let _keep = send.clone();
    let held = tokio::spawn(async move {
        let req = Request::get(url).body(Full::<Bytes>::default()).unwrap();
        send.send_request(req).await.map(drop)
    });
    eventually(
        Duration::from_secs(5),
        "request at the upstream",
        || async { started.load(Ordering::SeqCst) == 1 },
    )
    .await;
    // Dropping the response future resets the stream; the connection stays open.
    held.abort();
    eventually(Duration::from_secs(5), "upstream stream reset", || async {
        cancelled.load(Ordering::SeqCst) == 1
    })
    .await;
    eventually(Duration::from_secs(5), "permit released", || async {
        admission_status(&proxy).await["in_flight"] == 0
    })
    .await;
    assert!(!conn.is_finished(), "the client's connection is still open");
    let s = admission_status(&proxy).await;
    assert_eq!(s["client_gone"]["in_service"], 1, "{s}");
}
