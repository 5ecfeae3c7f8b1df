//! `--check` gates: `metric OP value`, evaluated against a report's summary.
//!
//! Metrics: `unanswered`, `dropped`, `errors`, `offered`, `sent`, `responses`,
//! `admitted`, `rejected`, `failed`, `goodput` (2xx/s), `goodput_peak`, `send_rate`
//! (sent/s), `error_rate` and `reject_rate` (fractions of sent), and latency
//! percentiles `p50|p90|p99|p999|max` optionally suffixed `_admitted` or `_rejected`
//! (e.g. `p99_admitted`). Operators: `<`, `<=`, `>`, `>=`, `=`/`==`, `!=`.
//! Latency values accept durations (`50ms`, `1s`) or plain numbers (milliseconds).
//! A gate on a metric with no data (e.g. no 2xx at all for `p99_admitted`) fails.

use std::fmt;
use std::str::FromStr;

use crate::report::{Percentiles, Report};

/// Why a gate could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid check {gate:?}: {reason}")]
pub struct CheckError {
    /// The gate text.
    pub gate: String,
    /// What is wrong.
    pub reason: String,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `=` or `==`
    Eq,
    /// `!=`
    Ne,
}

impl Op {
    /// Applies the operator.
    pub fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Self::Lt => a < b,
            Self::Le => a <= b,
            Self::Gt => a > b,
            Self::Ge => a >= b,
            Self::Eq => (a - b).abs() < 1e-9,
            Self::Ne => (a - b).abs() >= 1e-9,
        }
    }
}

/// A parsed gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// The text as given.
    pub text: String,
    /// The metric name.
    pub metric: String,
    /// The operator.
    pub op: Op,
    /// The threshold (milliseconds for latency metrics).
    pub value: f64,
}

const COUNTERS: [&str; 13] = [
    "unanswered",
    "dropped",
    "errors",
    "offered",
    "sent",
    "responses",
    "admitted",
    "rejected",
    "failed",
    "goodput",
    "goodput_peak",
    "send_rate",
    "error_rate",
];

fn is_latency(metric: &str) -> bool {
    let base = metric
        .strip_suffix("_admitted")
        .or_else(|| metric.strip_suffix("_rejected"))
        .unwrap_or(metric);
    matches!(base, "p50" | "p90" | "p99" | "p999" | "max")
}

impl FromStr for Check {
    type Err = CheckError;

    fn from_str(s: &str) -> Result<Self, CheckError> {
        let err = |reason: &str| CheckError {
            gate: s.to_string(),
            reason: reason.to_string(),
        };
        let text = s.trim();
        let i = text
            .find(['<', '>', '=', '!'])
            .ok_or_else(|| err("expected metric OP value, e.g. p99_admitted<50ms"))?;
        let (metric, rest) = text.split_at(i);
        let (op, value) = [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<", Op::Lt),
            (">", Op::Gt),
            ("=", Op::Eq),
        ]
        .iter()
        .find_map(|(sym, op)| rest.strip_prefix(sym).map(|v| (*op, v.trim())))
        .ok_or_else(|| err("unknown operator"))?;
        let metric = metric.trim().to_ascii_lowercase().replace("p99.9", "p999");
        let latency = is_latency(&metric);
        if !latency && !COUNTERS.contains(&metric.as_str()) && metric != "reject_rate" {
            return Err(err("unknown metric"));
        }
        let value = if latency && value.ends_with(|c: char| c.is_ascii_alphabetic()) {
            crate::duration::parse(value)
                .map_err(|e| err(&e.to_string()))?
                .as_secs_f64()
                * 1000.0
        } else {
            value
                .parse::<f64>()
                .map_err(|_| err("value is not a number"))?
        };
        Ok(Self {
            text: text.to_string(),
            metric,
            op,
            value,
        })
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn pct(p: &Percentiles, name: &str) -> Option<f64> {
    match name {
        "p50" => p.p50,
        "p90" => p.p90,
        "p99" => p.p99,
        "p999" => p.p999,
        "max" => p.max,
        _ => None,
    }
}

/// The value of `metric` in a report (None when there is no data).
pub fn metric_value(report: &Report, metric: &str) -> Option<f64> {
    let s = &report.summary;
    let frac = |n: u64| (s.sent > 0).then(|| n as f64 / s.sent as f64);
    let errors: u64 = s.errors.values().sum();
    Some(match metric {
        "unanswered" => s.unanswered as f64,
        "dropped" => s.dropped as f64,
        "errors" => errors as f64,
        "offered" => s.offered as f64,
        "sent" => s.sent as f64,
        "responses" => s.responses as f64,
        "admitted" => s.admitted as f64,
        "rejected" => s.rejected as f64,
        "failed" => s.failed as f64,
        "goodput" => s.goodput_rps,
        "goodput_peak" => s.goodput_peak_rps as f64,
        "send_rate" => s.send_rps,
        "error_rate" => return frac(errors),
        "reject_rate" => return frac(s.rejected),
        m => {
            let (base, p) = if let Some(b) = m.strip_suffix("_admitted") {
                (b, &s.latency_ms.admitted)
            } else if let Some(b) = m.strip_suffix("_rejected") {
                (b, &s.latency_ms.rejected)
            } else {
                (m, &s.latency_ms.all)
            };
            return pct(p, base);
        }
    })
}

impl Check {
    /// Evaluates the gate: the measured value and whether it passed.
    pub fn evaluate(&self, report: &Report) -> (Option<f64>, bool) {
        let actual = metric_value(report, &self.metric);
        let passed = actual.is_some_and(|a| self.op.holds(a, self.value));
        (actual, passed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_gates() {
        let c: Check = "unanswered=0".parse().unwrap();
        assert_eq!(
            (c.metric.as_str(), c.op, c.value),
            ("unanswered", Op::Eq, 0.0)
        );
        let c: Check = "p99_admitted<50ms".parse().unwrap();
        assert_eq!(
            (c.metric.as_str(), c.op, c.value),
            ("p99_admitted", Op::Lt, 50.0)
        );
        let c: Check = "goodput>=900".parse().unwrap();
        assert_eq!((c.op, c.value), (Op::Ge, 900.0));
        let c: Check = " p99.9_rejected <= 1s ".parse().unwrap();
        assert_eq!(
            (c.metric.as_str(), c.op, c.value),
            ("p999_rejected", Op::Le, 1000.0)
        );
        let c: Check = "p50 != 3".parse().unwrap();
        assert_eq!((c.op, c.value), (Op::Ne, 3.0));
    }

    #[test]
    fn rejects_bad_gates() {
        for bad in [
            "",
            "unanswered",
            "nope=1",
            "goodput>=lots",
            "p99<5parsecs",
            "p99~5",
        ] {
            assert!(bad.parse::<Check>().is_err(), "{bad}");
        }
    }

    #[test]
    fn operators() {
        assert!(Op::Lt.holds(1.0, 2.0));
        assert!(!Op::Lt.holds(2.0, 2.0));
        assert!(Op::Le.holds(2.0, 2.0));
        assert!(Op::Ge.holds(2.0, 2.0));
        assert!(Op::Gt.holds(3.0, 2.0));
        assert!(Op::Eq.holds(0.0, 0.0));
        assert!(Op::Ne.holds(0.0, 1.0));
    }
}
