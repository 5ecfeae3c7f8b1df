//! Per-cluster load counters for the control plane's load reports: answers by
//! class, 429s, 503s by reason, and a fixed-bucket latency histogram of the
//! answers the upstream gave. Monotonic atomics only (relaxed), no lock and no
//! allocation per request: three `fetch_add`s for an upstream answer, two for a
//! proxy-made one. The cluster owns them, so they survive a reload that keeps it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Sub-buckets per power of two of the latency histogram (±9 % resolution).
const SUB: u32 = 4;
/// Powers of two of microseconds covered (2^27 µs ≈ 134 s; longer lands in the last).
const OCTAVES: u32 = 27;
/// Buckets of the latency histogram.
pub const BUCKETS: usize = (OCTAVES * SUB) as usize;

/// Why the proxy answered 503 itself (the `x-floodgate-reason` values), or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// `overloaded`: shed by admission control.
    Overloaded,
    /// `circuit_open`: the breaker is open.
    CircuitOpen,
    /// `overflow`: the breaker's connection or pending limits.
    Overflow,
    /// `no_healthy_endpoint`.
    NoHealthyEndpoint,
    /// Any other 503, the upstream's own included.
    Other,
}

impl Unavailable {
    /// From the reason header's bytes (None: the upstream's 503).
    pub fn from_reason(reason: Option<&[u8]>) -> Self {
        match reason {
            Some(b"overloaded") => Unavailable::Overloaded,
            Some(b"circuit_open") => Unavailable::CircuitOpen,
            Some(b"overflow") => Unavailable::Overflow,
            Some(b"no_healthy_endpoint") => Unavailable::NoHealthyEndpoint,
            _ => Unavailable::Other,
        }
    }
}

/// Who made an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// The upstream (its latency is recorded).
    Upstream,
    /// The cache, from memory (latency not recorded: the app did no work).
    Cache,
    /// The proxy itself, with this reason header (bytes).
    Proxy,
}

/// One cluster's counters.
#[derive(Debug)]
pub struct LoadCounters {
    /// Answers with status below 400, 4xx, 5xx.
    class: [AtomicU64; 3],
    /// 429 answers (the route limiters' and the upstream's).
    too_many: AtomicU64,
    /// 503 answers by [`Unavailable`] (index = declaration order).
    unavailable: [AtomicU64; 5],
    /// Latency of upstream answers, by bucket.
    buckets: [AtomicU64; BUCKETS],
    /// Sum of those latencies, microseconds.
    latency_sum_us: AtomicU64,
}

impl Default for LoadCounters {
    fn default() -> Self {
        Self::new()
    }
}

impl LoadCounters {
    /// All zero.
    pub fn new() -> Self {
        LoadCounters {
            class: Default::default(),
            too_many: AtomicU64::new(0),
            unavailable: Default::default(),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            latency_sum_us: AtomicU64::new(0),
        }
    }

    /// Counts one answer. `reason` is read only for a 503 made by the proxy.
    pub fn record(&self, status: u16, by: Answered, reason: Option<&[u8]>, elapsed: Duration) {
        let class = match status {
            0..=399 => 0,
            400..=499 => 1,
            _ => 2,
        };
        bump(&self.class[class]);
        if status == 429 {
            bump(&self.too_many);
        } else if status == 503 {
            let why = match by {
                Answered::Proxy => Unavailable::from_reason(reason),
                _ => Unavailable::Other,
            };
            bump(&self.unavailable[why as usize]);
        }
        if by == Answered::Upstream {
            let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
            bump(&self.buckets[bucket(us)]);
            self.latency_sum_us.fetch_add(us, Relaxed);
        }
    }

    /// A copy of the counters now.
    pub fn snapshot(&self) -> LoadSnapshot {
        let get = |a: &AtomicU64| a.load(Relaxed);
        let buckets: Vec<u64> = self.buckets.iter().map(get).collect();
        let unavailable = |u: Unavailable| get(&self.unavailable[u as usize]);
        LoadSnapshot {
            completed: Classes {
                ok: get(&self.class[0]),
                client_error: get(&self.class[1]),
                server_error: get(&self.class[2]),
            },
            too_many_requests: get(&self.too_many),
            unavailable: UnavailableCounts {
                overloaded: unavailable(Unavailable::Overloaded),
                circuit_open: unavailable(Unavailable::CircuitOpen),
                overflow: unavailable(Unavailable::Overflow),
                no_healthy_endpoint: unavailable(Unavailable::NoHealthyEndpoint),
                other: unavailable(Unavailable::Other),
            },
            latency_count: buckets.iter().sum(),
            latency_sum_us: get(&self.latency_sum_us),
            buckets,
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Relaxed);
}

/// The bucket of a latency in microseconds: `SUB` buckets per power of two.
pub fn bucket(us: u64) -> usize {
    let us = us.max(1);
    let octave = 63 - us.leading_zeros();
    let sub = if octave >= 2 {
        (us >> (octave - 2)) & 3
    } else {
        (us << (2 - octave)) & 3
    };
    let i = octave * SUB + u32::try_from(sub).unwrap_or(0);
    usize::try_from(i).unwrap_or(BUCKETS - 1).min(BUCKETS - 1)
}

/// The upper bound of a bucket, microseconds.
pub fn bucket_upper_us(i: usize) -> f64 {
    let i = u32::try_from(i).unwrap_or(u32::MAX);
    let (octave, sub) = (i / SUB, i % SUB);
    let base = f64::from(1u32 << octave.min(31));
    base * (1.0 + f64::from(sub + 1) / f64::from(SUB))
}

/// The `q` quantile (0..1) of the bucket counts `delta`, milliseconds; None when empty.
pub fn quantile_ms(delta: &[u64], q: f64) -> Option<f64> {
    let total: u64 = delta.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in delta.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(bucket_upper_us(i) / 1000.0);
        }
    }
    None
}

/// Answers by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classes {
    /// Status below 400 (1xx, 2xx, 3xx).
    #[serde(rename = "2xx")]
    pub ok: u64,
    /// 4xx.
    #[serde(rename = "4xx")]
    pub client_error: u64,
    /// 5xx.
    #[serde(rename = "5xx")]
    pub server_error: u64,
}

/// 503 answers by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnavailableCounts {
    /// Shed by admission control.
    pub overloaded: u64,
    /// The breaker was open.
    pub circuit_open: u64,
    /// The breaker's limits overflowed.
    pub overflow: u64,
    /// No endpoint was healthy.
    pub no_healthy_endpoint: u64,
    /// Any other 503 (the upstream's own).
    pub other: u64,
}

/// The counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadSnapshot {
    /// Answers by class.
    pub completed: Classes,
    /// 429 answers.
    pub too_many_requests: u64,
    /// 503 answers by reason.
    pub unavailable: UnavailableCounts,
    /// Upstream answers timed.
    pub latency_count: u64,
    /// Sum of their latencies, microseconds.
    pub latency_sum_us: u64,
    /// Their latencies by bucket.
    pub buckets: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for us in [
            1u64,
            2,
            3,
            5,
            8,
            100,
            1000,
            1500,
            10_000,
            1_000_000,
            u64::MAX,
        ] {
            let b = bucket(us);
            assert!(b >= last, "{us}");
            last = b;
            if us < 1 << 26 {
                let upper = bucket_upper_us(b);
                assert!(
                    upper >= us as f64 && upper <= us as f64 * 1.5 + 1.0,
                    "{us} -> {upper}"
                );
            }
        }
    }

    #[test]
    fn counts_classes_reasons_and_latency() {
        let c = LoadCounters::new();
        let ms = Duration::from_millis;
        c.record(200, Answered::Upstream, None, ms(10));
        c.record(200, Answered::Cache, None, ms(0));
        c.record(429, Answered::Proxy, Some(b"rate_limited"), ms(0));
        c.record(503, Answered::Proxy, Some(b"overloaded"), ms(1));
        c.record(503, Answered::Upstream, None, ms(30));
        let s = c.snapshot();
        assert_eq!(
            s.completed,
            Classes {
                ok: 2,
                client_error: 1,
                server_error: 2
            }
        );
        assert_eq!(s.too_many_requests, 1);
        assert_eq!(s.unavailable.overloaded, 1);
        assert_eq!(s.unavailable.other, 1);
        assert_eq!(s.latency_count, 2);
        assert_eq!(s.latency_sum_us, 40_000);
        let p50 = quantile_ms(&s.buckets, 0.5).unwrap();
        assert!((10.0..12.0).contains(&p50), "{p50}");
        let p99 = quantile_ms(&s.buckets, 0.99).unwrap();
        assert!((30.0..36.0).contains(&p99), "{p99}");
    }
}
