//! The real binary: `--check`, hot reload under load (file watch and SIGHUP),
//! graceful drain on SIGTERM, and several workers sharing listeners and limits.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use http::Request;
use http_body_util::Full;

fn config_text(upstream: &str, version: usize) -> String {
    format!(
        r#"
admin: {{ listen: 127.0.0.1:0 }}
server: {{ drain_timeout: 10s, access_log: false }}
listeners:
  - name: public
    listen: 127.0.0.1:0
    routes:
      - name: all
        match: {{ path_prefix: "/" }}
        rewrite_prefix: "/v{version}/"
        cluster: app
clusters:
  - name: app
    endpoints: ["{upstream}"]
"#
    )
}

#[tokio::test]
async fn check_reports_every_error_and_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, config_text("127.0.0.1:9", 1)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_floodgate"))
        .args(["--check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        r#"
listeners:
  - name: public
    listen: 127.0.0.1:8080
    routes:
      - name: all
        cluster: nope
        timeout: 5 parsecs
clusters:
  - name: app
    endpoints: ["127.0.0.1"]
"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_floodgate"))
        .args(["--config"])
        .arg(&bad)
        .arg("--check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml"), "{err}");
    assert!(err.contains("listeners[0].routes[0].cluster"), "{err}");
    assert!(err.contains("listeners[0].routes[0].timeout"), "{err}");
    assert!(err.contains("clusters[0].endpoints[0]"), "{err}");
    assert!(err.contains("3 errors"), "{err}");
}

#[tokio::test]
async fn reload_under_load_drops_nothing() {
    let app = upstream("app").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("floodgate.yaml");
    std::fs::write(&path, config_text(&app.endpoint(), 0)).unwrap();
    let bin = Bin::start(&path).await;
    let url = bin.url("public", "/x");

    // A bounded client loop: 4 workers, at most 60 s and 50,000 requests in total.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (stop, sent, failures, url) =
            (stop.clone(), sent.clone(), failures.clone(), url.clone());
        workers.push(tokio::spawn(async move {
            let c = client();
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed)
                && Instant::now() < deadline
                && sent.fetch_add(1, Ordering::Relaxed) < 50_000
            {
                let req = Request::get(url.as_str()).body(Full::default()).unwrap();
                match c.request(req).await {
                    Ok(r) if r.status() == 200 => {}
                    Ok(r) => failures
                        .lock()
                        .unwrap()
                        .push(format!("status {}", r.status())),
                    Err(e) => failures.lock().unwrap().push(format!("error {e}")),
                }
            }
        }));
    }

    let metrics_url = bin.admin_url("/metrics");
    for i in 1..=50 {
        if i == 25 {
            // One invalid rewrite: a route to a cluster that does not exist.
            let invalid =
                config_text(&app.endpoint(), i).replace("cluster: app", "cluster: missing");
            std::fs::write(&path, invalid).unwrap();
            eventually(
                Duration::from_secs(10),
                "invalid config rejected",
                || async {
                    metric(
                        &get(&metrics_url).await.body,
                        "floodgate_config_reloads_total{result=\"rejected\"}",
                    ) >= 1.0
                },
            )
            .await;
            continue;
        }
        let text = config_text(&app.endpoint(), i);
        if i % 2 == 0 {
            std::fs::write(&path, text).unwrap();
        } else {
            let tmp = dir.path().join("floodgate.yaml.tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
            // Every other rewrite is also signalled, so reloads happen faster than
            // the watcher's debounce would coalesce them.
            bin.signal("HUP");
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    eventually(Duration::from_secs(10), "last config serves", || async {
        get(&url).await.json()["path"] == "/v50/x"
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    let total = sent.load(Ordering::Relaxed);
    assert!(total > 200, "the load loop ran ({total} requests)");
    assert!(
        failures.is_empty(),
        "{} of {total} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );

    let page = get(&metrics_url).await.body;
    let applied = metric(&page, "floodgate_config_reloads_total{result=\"applied\"}");
    assert!(applied >= 20.0, "only {applied} reloads applied");
    assert!(metric(&page, "floodgate_config_version") >= 20.0);
    let rejected = bin.log_lines("config rejected");
    assert!(
        rejected
            .iter()
            .any(|l| l.contains("floodgate.yaml") && l.contains("listeners[0].routes[0].cluster")),
        "rejection logged with file and field: {rejected:?}"
    );

    // SIGHUP reloads too (here: the file is unchanged, so the version stays).
    let version = metric(&page, "floodgate_config_version");
    std::fs::write(&path, config_text(&app.endpoint(), 77)).unwrap();
    bin.signal("HUP");
    eventually(
        Duration::from_secs(10),
        "SIGHUP or watch applied v77",
        || async { get(&url).await.json()["path"] == "/v77/x" },
    )
    .await;
    let page = get(&metrics_url).await.body;
    assert!(metric(&page, "floodgate_config_version") > version);
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests() {
    let slow = upstream("slow").await;
    slow.set(Behavior {
        delay: Duration::from_millis(1500),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("floodgate.yaml");
    std::fs::write(&path, config_text(&slow.endpoint(), 1)).unwrap();
    let mut bin = Bin::start(&path).await;
    let url = bin.url("public", "/slow");
    let in_flight = tokio::spawn(async move { get(&url).await });
    eventually(
        Duration::from_secs(5),
        "request reached the upstream",
        || async { slow.in_flight() == 1 },
    )
    .await;
    bin.signal("TERM");
    let ready = bin.admin_url("/ready");
    eventually(Duration::from_secs(5), "/ready turns 503", || async {
        match client()
            .request(Request::get(ready.as_str()).body(Full::default()).unwrap())
            .await
        {
            Ok(r) => r.status() == 503,
            Err(_) => false,
        }
    })
    .await;
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 200, "the in-flight request finished: {}", r.body);
    let status = tokio::time::timeout(Duration::from_secs(10), bin.child.wait())
        .await
        .expect("exits after draining")
        .unwrap();
    assert!(status.success(), "{status}");
}

/// Every worker accepts on the listener and keeps its own idle upstream
/// connections; under a cluster-wide `max_connections: 1`, a worker that has no
/// connection closes the idle one another worker keeps instead of waiting for it.
#[tokio::test]
async fn workers_share_listeners_and_the_cluster_connection_limit() {
    let app = upstream("app").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("floodgate.yaml");
    let yaml = format!(
        r#"
admin: {{ listen: 127.0.0.1:0 }}
server: {{ access_log: false }}
listeners:
  - name: public
    listen: 127.0.0.1:0
    routes:
      - name: all
        cluster: app
        timeout: 2s
clusters:
  - name: app
    endpoints: ["{}"]
    circuit_breaker: {{ max_connections: 1 }}
"#,
        app.endpoint()
    );
    std::fs::write(&path, yaml).unwrap();
    let bin = Bin::start_with(&path, &["--workers", "3"]).await;
    assert_eq!(
        bin.log_lines("\"workers\":3").len(),
        1,
        "three workers start"
    );
    // Each request on a new downstream connection, so they land on different workers.
    for i in 0..30 {
        let r = get(&bin.url("public", &format!("/{i}"))).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
    }
    let clusters = get(&bin.admin_url("/clusters")).await.json();
    let open = clusters["clusters"][0]["breaker"]["open_connections"].clone();
    assert!(
        open.as_u64().unwrap() <= 1,
        "at most one upstream connection: {open}"
    );
    assert_eq!(app.hits(), 30);
}

/// Whichever worker the kernel wakes to accept, connections are placed evenly:
/// the metric shows each worker serving its share.
#[tokio::test]
async fn connections_spread_evenly_over_workers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = upstream("app").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("floodgate.yaml");
    std::fs::write(&path, config_text(&app.endpoint(), 1)).unwrap();
    let bin = Bin::start_with(&path, &["--workers", "2"]).await;
    let addr = bin.url("public", "").replace("http://", "");
    // Eight keep-alive connections opened back to back, each with one answered request.
    let mut open = Vec::new();
    for i in 0..8 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(format!("GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        open.push(s);
    }
    let page = get(&bin.admin_url("/metrics")).await.body;
    for worker in ["1", "2"] {
        let series =
            format!("floodgate_worker_connections{{listener=\"public\",worker=\"{worker}\"}}");
        assert_eq!(metric(&page, &series), 4.0, "worker {worker}:\n{page}");
    }
    drop(open);
}

/// Signal handlers are installed before the first listener serves: a SIGHUP sent
/// as soon as the process is listening reloads instead of ending it.
#[tokio::test]
async fn sighup_right_after_start_reloads() {
    let app = upstream("app").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("floodgate.yaml");
    std::fs::write(&path, config_text(&app.endpoint(), 1)).unwrap();
    let mut bin = Bin::start(&path).await;
    std::fs::write(&path, config_text(&app.endpoint(), 2)).unwrap();
    bin.signal("HUP");
    let url = bin.url("public", "/x");
    eventually(Duration::from_secs(10), "v2 serves", || async {
        get(&url).await.json()["path"] == "/v2/x"
    })
    .await;
    assert!(bin.child.try_wait().unwrap().is_none(), "still running");
}

/// On worker threads the route deadline's timers are reused from request to
/// request: a timer that fast requests kept pushing forward, and then one that has
/// fired, still give a slow request its 504 at the route timeout and no sooner.
#[tokio::test]
async fn route_deadlines_fire_on_time_with_reused_worker_timers() {
    let app = upstream("app").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("floodgate.yaml");
    let config = format!(
        "admin: {{ listen: 127.0.0.1:0 }}\n{}",
        simple_config(&[&app], "        timeout: 400ms", "")
    );
    std::fs::write(&path, config).unwrap();
    let bin = Bin::start_with(&path, &["--workers", "2"]).await;
    let client = client();
    let url = bin.url("public", "/code");
    let fast = Behavior::default();
    let slow = Behavior {
        delay: Duration::from_secs(3),
        ..Behavior::default()
    };
    for round in 0..2 {
        app.set(fast.clone());
        for _ in 0..5 {
            let resp = send(&client, Request::get(&url).body(Full::default()).unwrap()).await;
            assert_eq!(resp.status, 200, "round {round}");
        }
        app.set(slow.clone());
        let started = Instant::now();
        let resp = send(&client, Request::get(&url).body(Full::default()).unwrap()).await;
        let took = started.elapsed();
        assert_eq!(resp.status, 504, "round {round}: {}", resp.body);
        assert_eq!(resp.header("x-floodgate-reason"), "request_timeout");
        assert!(
            took >= Duration::from_millis(390) && took < Duration::from_millis(2500),
            "round {round}: 504 after {took:?}"
        );
    }
}
