//! The command end to end: report files and their schema, HTTP/2, loopback-only refusal,
//! and `--check` gates driving the exit code.

#![allow(clippy::unwrap_used)] // helpers below are test code too

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use clap::Parser;
use floodgate_loadtest::app::server::RunningApp;
use floodgate_loadtest::app::AppConfig;
use floodgate_loadtest::load::{execute, LoadArgs, LoadError};
use floodgate_loadtest::target::TargetError;
use serde_json::Value;

async fn app() -> RunningApp {
    RunningApp::start(
        "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
        AppConfig {
            workers: 32,
            service_time: Duration::from_millis(1),
            max_queue: 64,
            fail_rate: 0.0,
            cache_control: Some("max-age=1".into()),
        },
    )
    .await
    .unwrap()
}

fn is_u64_array(v: &Value) -> bool {
    v.as_array().is_some_and(|a| a.iter().all(Value::is_u64))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_a_versioned_report_with_chart_and_summary() {
    let app = app().await;
    let out = common::temp_dir("schema");
    let scenario = out.join("s.yaml");
    std::fs::write(
        &scenario,
        format!(
            "name: schema-test\nbase_url: http://{}\ntargets:\n  - url: /api/v1/codes/{{id}}\n    weight: 3\n  - url: /api/v1/scans\n    method: POST\n    body: '{{\"id\":\"{{id}}\"}}'\nkeys: {{ count: 1000, zipf_exponent: 1.1 }}\nprotocol: http2\nconnections: 2\nprofile: {{ kind: step, steps: [{{rate: 100, duration: 1s}}, {{rate: 200, duration: 1s}}] }}\n",
            app.addr
        ),
    )
    .unwrap();
    let args = LoadArgs::try_parse_from([
        "floodgate-load",
        "--scenario",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--check",
        "unanswered=0",
        "--check",
        "p99_admitted<1s",
    ])
    .unwrap();
    let (report, passed) = tokio::time::timeout(Duration::from_secs(20), execute(&args))
        .await
        .unwrap()
        .unwrap();
    assert!(passed, "{:?}", report.checks);
    assert_eq!(report.summary.offered, 300);
    assert_eq!(report.summary.admitted, 300, "{:?}", report.summary);
    assert!(app.stats().scans > 0, "POST targets reached the app");

    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(v["schema"], "floodgate-load/v1");
    assert_eq!(v["name"], "schema-test");
    assert!(v["started_at_unix_ms"].is_u64());
    assert_eq!(v["config"]["protocol"], "http2");
    assert!(v["config"]["targets"].as_array().unwrap().len() == 2);
    let s = &v["summary"];
    for k in [
        "offered",
        "dropped",
        "sent",
        "responses",
        "admitted",
        "rejected",
        "failed",
        "unanswered",
        "goodput_peak_rps",
    ] {
        assert!(s[k].is_u64(), "summary.{k}");
    }
    for k in ["goodput_rps", "offered_rps", "send_rps", "duration_s"] {
        assert!(s[k].is_f64() || s[k].is_u64(), "summary.{k}");
    }
    for class in ["all", "admitted", "rejected"] {
        let p = &s["latency_ms"][class];
        assert!(p["count"].is_u64());
        for q in ["p50", "p90", "p99", "p999", "max"] {
            assert!(p[q].is_number() || p[q].is_null(), "{class}.{q}");
        }
    }
    assert!(s["latency_ms"]["admitted"]["p99"].is_number());
    assert!(
        s["latency_ms"]["rejected"]["p99"].is_null(),
        "no rejections → null"
    );
    assert!(s["errors"]["timeout"].is_u64());
    let t = &v["timeline"];
    let n = t["t"].as_array().unwrap().len();
    assert!(n >= 2);
    for k in [
        "offered",
        "sent",
        "responses",
        "admitted",
        "rejected",
        "failed",
        "errors",
        "dropped",
        "in_flight",
    ] {
        assert!(is_u64_array(&t[k]), "timeline.{k}");
        assert_eq!(t[k].as_array().unwrap().len(), n, "timeline.{k} length");
    }
    assert_eq!(t["offered"][0], 100);
    assert_eq!(t["offered"][1], 200);
    assert!(is_u64_array(&t["by_status"]["200"]) && is_u64_array(&t["by_status"]["201"]));
    assert!(t["latency_ms"]["admitted"]["p99"].as_array().unwrap().len() == n);
    assert!(v["extra_series"].is_object());
    assert_eq!(v["checks"][0]["gate"], "unanswered=0");
    assert_eq!(v["checks"][0]["passed"], true);

    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 3);
    assert!(html.contains("Requests per second by outcome"));
    let txt = std::fs::read_to_string(out.join("summary.txt")).unwrap();
    assert!(txt.contains("goodput") && txt.contains("unanswered"));
    app.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(out);
}

#[tokio::test]
async fn non_loopback_targets_are_refused_before_any_traffic() {
    for url in [
        "http://10.1.2.3:8080/api/v1/codes/{id}",
        "http://example.com/",
        "http://192.168.0.1/",
    ] {
        let args = LoadArgs::try_parse_from([
            "floodgate-load",
            "--url",
            url,
            "--rate",
            "10",
            "--duration",
            "1s",
        ])
        .unwrap();
        let err = execute(&args).await.unwrap_err();
        assert!(
            matches!(err, LoadError::Target(TargetError::NotLoopback { .. })),
            "{url}: {err}"
        );
    }
    // And the binary says so clearly, with a failing exit code, at once.
    let out = Command::new(env!("CARGO_BIN_EXE_floodgate-load"))
        .args([
            "--url",
            "http://10.0.0.1/",
            "--rate",
            "1",
            "--duration",
            "1s",
            "--out",
        ])
        .arg(common::temp_dir("refuse"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("only targets loopback"), "{stderr}");
}

/// Runs the binary against `url` at 50 rps for 0.5 s with `checks`.
fn run_bin(url: &str, out: &std::path::Path, checks: &[&str]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_floodgate-load"));
    c.args([
        "--url",
        url,
        "--rate",
        "50",
        "--duration",
        "500ms",
        "--quiet",
        "--out",
    ])
    .arg(out);
    for g in checks {
        c.args(["--check", g]);
    }
    c.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn violated_gates_fail_the_exit_code() {
    let app = app().await;
    let out = common::temp_dir("gates");
    let url = format!("http://{}/api/v1/codes/{{id}}", app.addr);
    let dir = out.clone();
    let (pass, fail, bad) = tokio::task::spawn_blocking(move || {
        (
            run_bin(&url, &dir, &["unanswered=0", "goodput>=40"]),
            run_bin(&url, &dir, &["unanswered=0", "p99_admitted<1us"]),
            run_bin(&url, &dir, &["bogus>1"]),
        )
    })
    .await
    .unwrap();
    assert_eq!(
        pass.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&pass.stdout)
    );
    assert_eq!(fail.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&fail.stdout);
    assert!(stdout.contains("check unanswered=0: PASS"), "{stdout}");
    assert!(stdout.contains("check p99_admitted<1us: FAIL"), "{stdout}");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown metric"));
    app.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_series_file_lands_in_the_report_and_its_chart() {
    let app = app().await;
    let out = common::temp_dir("extra");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // A sample every 100 ms over the next 5 s: whatever the run's start, its seconds
    // have samples.
    let mut text = String::new();
    for i in 0..50 {
        text.push_str(&format!(
            "{{\"unix_ms\": {}, \"ready replicas\": 2, \"panic\": true}}\n",
            now + i * 100
        ));
    }
    let samples = out.join("scale.jsonl");
    std::fs::write(&samples, text).unwrap();
    let base = format!("http://{}/api/v1/codes/{{id}}", app.addr);
    let args = |file: &str| {
        LoadArgs::try_parse_from([
            "floodgate-load",
            "--url",
            &base,
            "--rate",
            "20",
            "--duration",
            "2s",
            "--out",
            out.to_str().unwrap(),
            "--extra-series",
            file,
        ])
        .unwrap()
    };
    let (report, _) = tokio::time::timeout(
        Duration::from_secs(20),
        execute(&args(samples.to_str().unwrap())),
    )
    .await
    .unwrap()
    .unwrap();
    let ready = &report.extra_series["ready replicas"];
    assert_eq!(ready.len(), report.timeline.t.len());
    assert!(ready.contains(&Some(2.0)), "{ready:?}");
    assert!(report.extra_series["panic"].contains(&Some(1.0)));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(
        html.matches("<svg").count(),
        4,
        "rates, extra, latency, in flight"
    );
    assert!(html.contains("ready replicas"));

    std::fs::remove_file(out.join("report.json")).unwrap();
    let bad = out.join("bad.jsonl");
    std::fs::write(&bad, "not json\n").unwrap();
    let err = execute(&args(bad.to_str().unwrap())).await.unwrap_err();
    assert!(matches!(err, LoadError::Extra { .. }), "{err}");
    assert!(err.to_string().contains("line 1"), "{err}");
    assert!(
        out.join("report.json").exists(),
        "the run's report is still written"
    );
    app.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(out);
}
