//! End-to-end admission control: a fixed limit with a bounded queue in front of a
//! slow upstream, a client leaving the queue, and the adaptive limit settling
//! around an app's real capacity.
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
    let band = (WORKERS as u64 / 2)..=(WORKERS as u64 * 7 / 2);
    assert!(
        band.contains(&median),
        "median limit {median} outside {band:?} for {WORKERS} workers: {limits:?}"
    );
}
