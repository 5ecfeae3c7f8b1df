//! The report of a run: the data model (schema `floodgate-load/v1`), built from what the
//! [`Recorder`](crate::recorder::Recorder) collected, and its three renderings:
//! [`json`] (`report.json`), [`chart`] (`report.html` with inline SVG) and
//! [`summary`] (`summary.txt`).
//!
//! The timeline is columnar (one array per series, one value per second) so more series
//! can be added without a schema change: producers other than the generator (e.g. the
//! control plane's desired/ready replicas) go into `extra_series`, which the chart draws.

pub mod chart;
pub mod extra;
pub mod json;
pub mod summary;

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::client::ErrorKind;
use crate::profile::{KeySpec, Protocol, Segment};
use crate::recorder::{Bucket, Latencies, Recorded};
use crate::runner::RunConfig;

/// The schema tag written into every report.
pub const SCHEMA: &str = "floodgate-load/v1";

/// Latency percentiles in milliseconds; `null` when there were no samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Number of samples.
    pub count: u64,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// 99.9th percentile.
    pub p999: Option<f64>,
    /// Maximum.
    pub max: Option<f64>,
    /// Mean.
    pub mean: Option<f64>,
}

fn ms(us: f64) -> f64 {
    (us / 1000.0 * 1000.0).round() / 1000.0
}

impl Percentiles {
    /// Percentiles of a µs histogram.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let q = |q: f64| Some(ms(h.value_at_quantile(q) as f64));
        Self {
            count: h.len(),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: Some(ms(h.max() as f64)),
            mean: Some(ms(h.mean())),
        }
    }
}

/// Percentiles per response class.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassLatency {
    /// All responses.
    pub all: Percentiles,
    /// 2xx responses.
    pub admitted: Percentiles,
    /// 429 and 503 responses.
    pub rejected: Percentiles,
}

impl ClassLatency {
    fn of(l: &Latencies) -> Self {
        Self {
            all: Percentiles::of(&l.all),
            admitted: Percentiles::of(&l.admitted),
            rejected: Percentiles::of(&l.rejected),
        }
    }
}

/// A target as it appears in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetInfo {
    /// HTTP method.
    pub method: String,
    /// URL template.
    pub url: String,
    /// Relative weight.
    pub weight: u32,
}

/// The settings of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Request templates.
    pub targets: Vec<TargetInfo>,
    /// `http1` or `http2`.
    pub protocol: Protocol,
    /// Connections per target address.
    pub connections: usize,
    /// In-flight cap.
    pub max_in_flight: usize,
    /// Per-request timeout.
    pub timeout_ms: u64,
    /// Drain grace after the profile.
    pub drain_ms: u64,
    /// Count bound, if any.
    pub max_requests: Option<u64>,
    /// Profile segments (rate moves linearly from `from_rps` to `to_rps`).
    pub profile: Vec<Segment>,
    /// Key space.
    pub keys: KeySpec,
}

/// Whole-run figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Length of the profile in seconds (the denominator of the rates below).
    pub duration_s: f64,
    /// Wall time of the run including drain.
    pub elapsed_s: f64,
    /// Requests the profile scheduled.
    pub offered: u64,
    /// Not sent because `max_in_flight` was reached.
    pub dropped: u64,
    /// Handed to a connection (including those that then failed to connect).
    pub sent: u64,
    /// HTTP responses of any status.
    pub responses: u64,
    /// 2xx responses.
    pub admitted: u64,
    /// 429/503 responses.
    pub rejected: u64,
    /// Of those, responses without `Retry-After`.
    pub rejected_without_retry_after: u64,
    /// Other responses (e.g. 500).
    pub failed: u64,
    /// Errors by kind: connect, timeout, reset, other.
    pub errors: BTreeMap<String, u64>,
    /// Accepted requests (offered − dropped) that got no HTTP response by the end:
    /// errors, timeouts, and requests abandoned at the hard stop.
    pub unanswered: u64,
    /// Requests still queued or on the wire at the hard stop (part of `unanswered`).
    pub in_flight_at_end: u64,
    /// Responses per status code.
    pub by_status: BTreeMap<String, u64>,
    /// Responses per `x-floodgate-reason` value.
    pub by_reason: BTreeMap<String, u64>,
    /// offered / duration.
    pub offered_rps: f64,
    /// Achieved send rate: (sent − 1) / (last send − first send).
    pub send_rps: f64,
    /// 2xx responses / duration.
    pub goodput_rps: f64,
    /// Highest 2xx responses in one second.
    pub goodput_peak_rps: u64,
    /// Latency from the intended send time (no coordinated omission).
    pub latency_ms: ClassLatency,
    /// Latency from the actual send time: what a closed-loop tool would report.
    pub service_latency_ms: ClassLatency,
    /// How late requests were handed to a connection (generator or pool saturation).
    pub send_lag_ms: Percentiles,
}

/// Per-second series; index i covers [i s, i+1 s) from the start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// Second offsets: 0, 1, 2, …
    pub t: Vec<u64>,
    /// Requests whose intended send time fell in the second.
    pub offered: Vec<u64>,
    /// Offered requests dropped by the in-flight cap.
    pub dropped: Vec<u64>,
    /// Requests handed to a connection in the second.
    pub sent: Vec<u64>,
    /// Responses received in the second.
    pub responses: Vec<u64>,
    /// 2xx received.
    pub admitted: Vec<u64>,
    /// 429/503 received.
    pub rejected: Vec<u64>,
    /// Other statuses received.
    pub failed: Vec<u64>,
    /// Errors (all kinds) in the second.
    pub errors: Vec<u64>,
    /// Highest in-flight count seen in the second.
    pub in_flight: Vec<u64>,
    /// Responses per status code.
    pub by_status: BTreeMap<String, Vec<u64>>,
    /// Responses per `x-floodgate-reason`.
    pub by_reason: BTreeMap<String, Vec<u64>>,
    /// Errors per kind.
    pub errors_by_kind: BTreeMap<String, Vec<u64>>,
    /// Latency ms of responses received in the second: class → percentile → values.
    pub latency_ms: BTreeMap<String, BTreeMap<String, Vec<Option<f64>>>>,
}

/// A gate's verdict, as stored in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckVerdict {
    /// The gate as written, e.g. `p99_admitted<50ms`.
    pub gate: String,
    /// The measured value (null if not available).
    pub actual: Option<f64>,
    /// Whether it passed.
    pub passed: bool,
}

/// A complete report (`report.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Tool and version.
    pub generator: String,
    /// Scenario name, if any.
    pub name: Option<String>,
    /// Wall-clock start, ms since the Unix epoch.
    pub started_at_unix_ms: u64,
    /// The settings.
    pub config: RunInfo,
    /// Whole-run figures.
    pub summary: Summary,
    /// Per-second series.
    pub timeline: Timeline,
    /// More per-second series from other producers: name → one value per second.
    #[serde(default)]
    pub extra_series: BTreeMap<String, Vec<Option<f64>>>,
    /// `--check` verdicts.
    #[serde(default)]
    pub checks: Vec<CheckVerdict>,
}

fn errors_map(errors: &[u64; 4]) -> BTreeMap<String, u64> {
    ErrorKind::ALL
        .iter()
        .map(|k| (k.name().to_string(), errors[k.index()]))
        .collect()
}

fn timeline(secs: &[Bucket]) -> Timeline {
    let col = |f: &dyn Fn(&Bucket) -> u64| secs.iter().map(f).collect::<Vec<u64>>();
    let mut by_status: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut by_reason: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (i, b) in secs.iter().enumerate() {
        for (s, n) in &b.by_status {
            by_status
                .entry(s.to_string())
                .or_insert_with(|| vec![0; secs.len()])[i] = *n;
        }
        for (r, n) in &b.by_reason {
            by_reason
                .entry(r.clone())
                .or_insert_with(|| vec![0; secs.len()])[i] = *n;
        }
    }
    let errors_by_kind = ErrorKind::ALL
        .iter()
        .map(|k| (k.name().to_string(), col(&|b| b.errors[k.index()])))
        .collect();
    let mut latency_ms = BTreeMap::new();
    type Pick = fn(&Latencies) -> &Histogram<u64>;
    let classes: [(&str, Pick); 3] = [
        ("all", |l| &l.all),
        ("admitted", |l| &l.admitted),
        ("rejected", |l| &l.rejected),
    ];
    for (name, get) in classes {
        let mut pcts = BTreeMap::new();
        for (pname, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)] {
            let v = secs
                .iter()
                .map(|b| {
                    let h = get(&b.latency);
                    (!h.is_empty()).then(|| ms(h.value_at_quantile(q) as f64))
                })
                .collect();
            pcts.insert(pname.to_string(), v);
        }
        latency_ms.insert(name.to_string(), pcts);
    }
    Timeline {
        t: (0..secs.len() as u64).collect(),
        offered: col(&|b| b.offered),
        dropped: col(&|b| b.dropped),
        sent: col(&|b| b.sent),
        responses: col(&|b| b.responses),
        admitted: col(&|b| b.admitted),
        rejected: col(&|b| b.rejected),
        failed: col(&|b| b.failed),
        errors: col(&|b| b.error_total()),
        in_flight: col(&|b| b.max_in_flight),
        by_status,
        by_reason,
        errors_by_kind,
        latency_ms,
    }
}

impl Report {
    /// Builds the report of a finished run.
    pub fn build(
        name: Option<String>,
        cfg: &RunConfig,
        rec: &Recorded,
        started_at_unix_ms: u64,
    ) -> Self {
        let duration = cfg.profile_duration().as_secs_f64().max(1e-9);
        let t = &rec.total;
        let send_rps = match (rec.first_send, rec.last_send) {
            (Some(a), Some(b)) if t.sent >= 2 && b > a => {
                (t.sent - 1) as f64 / (b - a).as_secs_f64()
            }
            _ => 0.0,
        };
        let round = |x: f64| (x * 100.0).round() / 100.0;
        let summary = Summary {
            duration_s: round(duration),
            elapsed_s: round(rec.elapsed.as_secs_f64()),
            offered: t.offered,
            dropped: t.dropped,
            sent: t.sent,
            responses: t.responses,
            admitted: t.admitted,
            rejected: t.rejected,
            rejected_without_retry_after: t.rejected_without_retry_after,
            failed: t.failed,
            errors: errors_map(&t.errors),
            unanswered: rec.accepted.saturating_sub(t.responses),
            in_flight_at_end: rec.in_flight_at_end,
            by_status: t
                .by_status
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            by_reason: t.by_reason.clone(),
            offered_rps: round(t.offered as f64 / duration),
            send_rps: round(send_rps),
            goodput_rps: round(t.admitted as f64 / duration),
            goodput_peak_rps: rec.seconds.iter().map(|b| b.admitted).max().unwrap_or(0),
            latency_ms: ClassLatency::of(&t.latency),
            service_latency_ms: ClassLatency::of(&rec.service),
            send_lag_ms: Percentiles::of(&rec.send_lag),
        };
        Self {
            schema: SCHEMA.to_string(),
            generator: format!("floodgate-load {}", env!("CARGO_PKG_VERSION")),
            name,
            started_at_unix_ms,
            config: RunInfo {
                targets: cfg
                    .targets
                    .iter()
                    .map(|t| TargetInfo {
                        method: t.method.to_string(),
                        url: t.url.clone(),
                        weight: t.weight,
                    })
                    .collect(),
                protocol: cfg.protocol,
                connections: cfg.connections,
                max_in_flight: cfg.max_in_flight,
                timeout_ms: duration_ms(cfg.timeout),
                drain_ms: duration_ms(cfg.drain),
                max_requests: cfg.max_requests,
                profile: cfg.segments.clone(),
                keys: cfg.keys,
            },
            summary,
            timeline: timeline(&rec.seconds),
            extra_series: BTreeMap::new(),
            checks: Vec::new(),
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    d.as_millis() as u64
}
