//! The latency table: what a series of changes measured and its p50/p99/max rows.

use std::time::Duration;

/// What a series of changes measured: pollers' ACKs, real proxies' latencies (and
/// how many real proxies missed the timeout), the last version.
pub struct Measured {
    pub pollers: Vec<Duration>,
    pub real: Vec<Duration>,
    pub real_missed: usize,
    pub version: u64,
}

/// p50, p99 and max of a set of latencies (nearest rank).
pub fn summary(mut v: Vec<Duration>) -> Option<(Duration, Duration, Duration)> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Some((rank(0.50), rank(0.99), v[v.len() - 1]))
}

/// Milliseconds with one decimal.
pub fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1e3)
}

/// One row of the latency table.
pub struct Row {
    pub name: String,
    pub expected: usize,
    pub latencies: Vec<Duration>,
    pub goal: &'static str,
}

/// Prints the latency table.
pub fn print_latency(rows: &[Row]) {
    println!(
        "{:<40} {:>11} {:>9} {:>9} {:>9}  goal",
        "latency", "acked/due", "p50", "p99", "max"
    );
    for r in rows {
        let n = r.latencies.len();
        let (p50, p99, max) = summary(r.latencies.clone())
            .map(|(a, b, c)| (ms(a), ms(b), ms(c)))
            .unwrap_or_else(|| ("-".into(), "-".into(), "-".into()));
        println!(
            "{:<40} {:>11} {:>9} {:>9} {:>9}  {}",
            r.name,
            format!("{n}/{}", r.expected),
            p50,
            p99,
            max,
            r.goal
        );
    }
}

/// How many results a row expects: pollers, real proxies, changes.
#[derive(Clone, Copy)]
pub struct Due {
    pub pollers: usize,
    pub proxies: usize,
    pub changes: usize,
}

/// The rows of one measurement: the pollers' ACKs, then (with real proxies) `real_what`.
pub fn rows_for(
    rows: &mut Vec<Row>,
    what: &str,
    m: &Measured,
    due: Due,
    goal: &'static str,
    real_what: &str,
) {
    rows.push(Row {
        name: format!("{what} -> ACK ({} pollers)", due.pollers),
        expected: due.pollers * due.changes,
        latencies: m.pollers.clone(),
        goal,
    });
    if due.proxies > 0 {
        rows.push(Row {
            name: format!("{what} -> {real_what} ({} real)", due.proxies),
            expected: due.proxies * due.changes,
            latencies: m.real.clone(),
            goal,
        });
    }
}
