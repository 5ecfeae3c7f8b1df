//! The access log through the real binary: what a line says, a file reopened for
//! logrotate, no colour escapes off a terminal, and a log that cannot keep up
//! dropping (and counting) lines instead of slowing requests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{client, metric, send, upstream, Bin};
use http::Request;
use http_body_util::Full;

fn config(dir: &std::path::Path, up: &common::Upstream, access_log: &str) -> std::path::PathBuf {
    let path = dir.join("floodgate.yaml");
    std::fs::write(
        &path,
        format!(
            "admin: {{ listen: 127.0.0.1:0 }}\n\
             server: {{ drain_timeout: 2s, access_log: {access_log} }}\n\
             listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    \
             routes: [ {{ name: codes, cluster: app }} ]\n\
             clusters:\n  - name: app\n    endpoints: [\"{}\"]\n    admission: {{ enabled: false }}\n",
            up.addr
        ),
    )
    .unwrap();
    path
}

/// Lines of `file` once it holds at least `n` (bounded wait).
async fn lines_of(file: &std::path::Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_line_says_what_happened_to_the_request() {
    let up = upstream("app-body").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let bin = Bin::start(&config(dir.path(), &up, "{ path: access.log }")).await;
    let c = client();
    let req = Request::post(bin.url("web", "/api/v1/codes/42?x=1"))
        .header("host", "codes.test")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let resp = send(&c, req).await;
    assert_eq!(resp.status, 200);
    let id = resp.headers["x-request-id"].to_str().unwrap().to_owned();

    let lines = lines_of(&log, 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["host"], "codes.test");
    assert_eq!(v["path"], "/api/v1/codes/42?x=1");
    assert_eq!(v["protocol"], "HTTP/1.1");
    assert_eq!(v["status"], 200);
    assert_eq!(v["bytes_in"], 5);
    assert_eq!(v["bytes_out"].as_u64(), Some(resp.body.len() as u64));
    assert_eq!(v["upstream"], up.addr.to_string());
    assert!(v["upstream_ms"].as_f64().unwrap() <= v["duration_ms"].as_f64().unwrap());
    assert_eq!(v["route"], "codes");
    assert_eq!(v["cluster"], "app");
    assert_eq!(v["listener"], "web");
    assert!(v["reason"].is_null());
    assert_eq!(v["request_id"], id.as_str());
    assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(v["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(v["time"].as_str().unwrap().ends_with('Z'));

    // The proxy's own answer carries its reason, and no upstream.
    let resp = common::get_host(&bin.url("web", "/x"), "[bad host").await;
    assert_eq!(resp.status, 400);
    let lines = lines_of(&log, 2).await;
    let v: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(v["status"], 400);
    assert!(v["upstream"].is_null());
    assert!(v["route"].is_null());

    // Off a terminal, the process's own log has no colour escapes either.
    let all = bin.lines.lock().unwrap().join("\n");
    assert!(!all.contains('\u{1b}'), "{all}");
    assert!(!std::fs::read(&log).unwrap().contains(&0x1b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_log_file_is_reopened_on_sigusr1_with_no_line_lost_or_split() {
    let up = upstream("app").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let mut bin = Bin::start(&config(dir.path(), &up, "{ path: access.log }")).await;
    let c = client();
    let mut sent = 0;
    for round in 0..2 {
        for _ in 0..200 {
            let req = Request::get(bin.url("web", "/r"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            assert_eq!(send(&c, req).await.status, 200);
            sent += 1;
        }
        if round == 0 {
            // What logrotate does: rename, then tell the process.
            lines_of(&log, 200).await;
            std::fs::rename(&log, &rotated).unwrap();
            bin.signal("USR1");
            common::eventually(Duration::from_secs(10), "a new access.log", || {
                let exists = log.exists();
                async move { exists }
            })
            .await;
        }
    }
    bin.signal("TERM");
    let status = tokio::time::timeout(Duration::from_secs(20), bin.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    let mut total = 0;
    for file in [&rotated, &log] {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(text.ends_with('\n'), "{} ends mid-line", file.display());
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: {e}: {line}", file.display()));
            assert_eq!(v["path"], "/r");
            total += 1;
        }
    }
    assert_eq!(total, sent);
    assert!(std::fs::read_to_string(&log).unwrap().lines().count() >= 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_cannot_keep_up_drops_and_counts_lines_and_requests_still_pass() {
    let up = upstream("app").await;
    let dir = tempfile::tempdir().unwrap();
    // A FIFO nobody reads: the writer blocks opening it, as on a stuck disk or pipe.
    let fifo = dir.path().join("stuck.log");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let bin = Bin::start(&config(dir.path(), &up, "{ path: stuck.log }")).await;
    let n = 6_000;
    let statuses = common::burst(&bin.url("web", "/s"), n, 32).await;
    assert_eq!(statuses.len(), n);
    assert!(statuses.iter().all(|s| s.as_u16() == 200));
    let page = common::get(&bin.admin_url("/metrics")).await;
    let dropped = metric(&page.body, "floodgate_access_log_dropped_total");
    assert!(dropped > 0.0, "nothing dropped");
    assert!(dropped <= n as f64);
}
