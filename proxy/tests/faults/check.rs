//! Reconciliation after a case: the client's counts against the proxy's own
//! (`floodgate_requests_total` on its admin `/metrics`), the process's memory
//! and CPU from `/proc`, and the case's row of the table.

// Shared with control/tests/faults.rs, which uses only part of it.
#![allow(dead_code)]

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::load::Report;

/// Generous bound on the proxy's peak RSS in any case (a debug build idles near 20 MiB).
pub const MAX_RSS_KIB: u64 = 256 * 1024;

/// What a case accepts besides "zero lost".
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// Responses whose body was cut off are expected (the fault is mid-body).
    pub cut_allowed: bool,
    /// Closed-without-response outcomes are expected (only where no response can be sent).
    pub resets_allowed: bool,
    /// Refused connections are expected (the listener is closing).
    pub refused_allowed: bool,
    /// The lowest acceptable normal-traffic success, in percent.
    pub min_normal_success: f64,
    /// Compare the proxy's request counter with the client's answers.
    pub reconcile_counters: bool,
    /// Requests the case's fault sent and the proxy answers, outside the load's count.
    pub side_requests: usize,
}

impl Default for Expect {
    fn default() -> Self {
        Expect {
            cut_allowed: false,
            resets_allowed: false,
            refused_allowed: false,
            min_normal_success: 99.0,
            reconcile_counters: true,
            side_requests: 0,
        }
    }
}

/// A line of `/proc/PID/status` (`VmHWM`, `VmRSS`) in KiB, 0 if absent.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time the process has used so far (user + system), from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Duration {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // USER_HZ is 100 on every Linux the suite runs on.
    Duration::from_millis(ticks * 10)
}

/// The proxy's own count of answered requests: the sum of the
/// `floodgate_requests_total` samples whose line starts with `prefix` (the bare
/// name for every route, or `floodgate_requests_total{route="NAME"` for one).
/// (Self-contained: the control crate's suite shares this file.)
pub async fn requests_counted(admin_metrics_url: &str, prefix: &str) -> f64 {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = http::Request::get(admin_metrics_url)
        .body(Full::default())
        .expect("request");
    let resp = client.request(req).await.expect("admin /metrics answers");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Where the proxy's counters are: its `/metrics` URL, the sample prefix to sum
/// ([`requests_counted`]) and the sum before the load.
#[derive(Debug, Clone, Copy)]
pub struct Counters<'a> {
    /// `http://ADMIN/metrics`.
    pub url: &'a str,
    /// The sample prefix.
    pub prefix: &'a str,
    /// The count before the load.
    pub before: f64,
}

/// Asserts the case's outcome and prints (and, with `FLOODGATE_FAULTS_TABLE`, appends)
/// its row. `counters` say where the proxy counts its answers; `rss_kib` is the
/// proxy's peak RSS (`VmHWM`; 0 when the proxy runs in the test's own process).
pub async fn reconcile(
    case: &str,
    report: &Report,
    expect: Expect,
    counters: Option<Counters<'_>>,
    rss_kib: u64,
) {
    let rss = rss_kib;
    row(case, report, rss);
    assert!(report.sent() > 0, "{case}: no load ran");
    assert_eq!(
        report.lost(),
        0,
        "{case}: requests lost: {:?}",
        report.errors()
    );
    let resets = report.resets();
    assert!(
        expect.resets_allowed || resets.is_empty(),
        "{case}: {} closed without a response, e.g. {:?}",
        resets.len(),
        resets.first()
    );
    assert!(
        expect.cut_allowed || report.cut() == 0,
        "{case}: bodies cut: {:?}",
        report.errors()
    );
    assert!(
        expect.refused_allowed || !report.errors().contains_key("refused"),
        "{case}: refused: {:?}",
        report.errors()
    );
    let success = report.normal_success();
    assert!(
        success >= expect.min_normal_success,
        "{case}: normal traffic {success:.1}% < {}%: {:?}",
        expect.min_normal_success,
        report.errors()
    );
    assert!(rss < MAX_RSS_KIB, "{case}: peak RSS {rss} KiB");
    check_counters(case, report, expect, counters).await;
}

async fn check_counters(
    case: &str,
    report: &Report,
    expect: Expect,
    counters: Option<Counters<'_>>,
) {
    if let (true, Some(c)) = (expect.reconcile_counters, counters) {
        let want = (report.answered() + expect.side_requests) as f64;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let seen = requests_counted(c.url, c.prefix).await - c.before;
            if seen == want {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{case}: the proxy counted {seen} requests, the client got {want} answers"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Formats and emits one table row.
fn row(case: &str, report: &Report, rss_kib: u64) {
    let errors: Vec<String> = report
        .errors()
        .iter()
        .map(|(k, v)| format!("{k} ×{v}"))
        .collect();
    let errors = if errors.is_empty() {
        "—".to_owned()
    } else {
        errors.join(", ")
    };
    let rss = if rss_kib == 0 {
        "—".to_owned()
    } else {
        format!("{:.1} MiB", rss_kib as f64 / 1024.0)
    };
    let line = format!(
        "| {case} | {} | {} | {} | {errors} | {:.1}% | {rss} |",
        report.sent(),
        report.answered(),
        report.lost(),
        report.normal_success(),
    );
    println!("FAULT-ROW {line}");
    if let Ok(path) = std::env::var("FLOODGATE_FAULTS_TABLE") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}
