//! `summary.txt`: a small table for people and terminals.

use std::fmt::Write as _;

use super::{Percentiles, Report};

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}ms"))
}

fn row(out: &mut String, name: &str, p: &Percentiles) {
    let _ = writeln!(
        out,
        "  {name:<10} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10}",
        p.count,
        ms(p.p50),
        ms(p.p90),
        ms(p.p99),
        ms(p.p999),
        ms(p.max)
    );
}

/// Renders the summary table.
pub fn render(r: &Report) -> String {
    let s = &r.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} — {}",
        r.name.as_deref().unwrap_or("floodgate-load run"),
        r.generator
    );
    let _ = writeln!(
        out,
        "duration {:.1}s (elapsed {:.1}s), {:?}, {} connections",
        s.duration_s, s.elapsed_s, r.config.protocol, r.config.connections
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "  offered {} ({:.1}/s)  sent {} ({:.1}/s)  dropped {}",
        s.offered, s.offered_rps, s.sent, s.send_rps, s.dropped
    );
    let _ = writeln!(
        out,
        "  responses {}  admitted(2xx) {}  rejected(429/503) {} ({} without Retry-After)  failed(other) {}",
        s.responses, s.admitted, s.rejected, s.rejected_without_retry_after, s.failed
    );
    let errs: Vec<String> = s.errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(out, "  errors: {}", errs.join(", "));
    let _ = writeln!(
        out,
        "  goodput {:.1}/s (peak {}/s)  unanswered {}",
        s.goodput_rps, s.goodput_peak_rps, s.unanswered
    );
    if !s.by_status.is_empty() {
        let st: Vec<String> = s
            .by_status
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let _ = writeln!(out, "  status: {}", st.join(", "));
    }
    if !s.by_reason.is_empty() {
        let st: Vec<String> = s
            .by_reason
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let _ = writeln!(out, "  x-floodgate-reason: {}", st.join(", "));
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "  latency from intended send time:\n  {:<10} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "class", "count", "p50", "p90", "p99", "p99.9", "max"
    );
    row(&mut out, "all", &s.latency_ms.all);
    row(&mut out, "admitted", &s.latency_ms.admitted);
    row(&mut out, "rejected", &s.latency_ms.rejected);
    let _ = writeln!(out, "  from actual send (closed-loop view):");
    row(&mut out, "all", &s.service_latency_ms.all);
    let _ = writeln!(
        out,
        "  send lag: p50 {} p99 {} max {}",
        ms(s.send_lag_ms.p50),
        ms(s.send_lag_ms.p99),
        ms(s.send_lag_ms.max)
    );
    if !r.checks.is_empty() {
        let _ = writeln!(out);
        for c in &r.checks {
            let _ = writeln!(
                out,
                "  check {:<28} actual {:>10}  {}",
                c.gate,
                c.actual.map_or_else(|| "n/a".into(), |v| format!("{v:.2}")),
                if c.passed { "PASS" } else { "FAIL" }
            );
        }
    }
    out
}
