//! The gradient concurrency limit: pure arithmetic over latency samples.
//!
//! It follows the gradient idea of Netflix's concurrency-limits and Envoy's
//! adaptive concurrency filter: compare the recent latency with the minimum
//! latency and shrink the limit when latency rises above `tolerance` × minimum,
//! grow it (by √limit) when it does not. Time is passed in, so it is tested on
//! recorded latency series without a runtime.

use std::time::Duration;

use crate::config::AdaptiveLimit;
use crate::time::Instant;

/// Samples a window needs before it closes early (see [`GradientLimit::tick`]).
const MIN_WINDOW_SAMPLES: u64 = 10;

/// The gradient concurrency limit, as pure arithmetic over latency samples.
///
/// Every `update_interval` the window's mean RTT is compared with `min_rtt`:
/// `gradient = clamp(tolerance × min_rtt / rtt, 0.5, 1)`, `computed = limit ×
/// gradient + √limit` (the √limit headroom only when the window used at least
/// half the limit, so an idle cluster does not grow), and the limit moves a fifth
/// of the way there (`0.8 × old + 0.2 × computed`), within `[min, max]`.
///
/// `min_rtt` is measured with the limit held at `min` (as Envoy does): at start
/// and again every `min_rtt_window`, for at least one interval and until a request
/// admitted during it has completed; the mean RTT of those requests becomes
/// `min_rtt`, and the limit returns to where it was. Between measurements a lower
/// window mean lowers `min_rtt`.
#[derive(Debug, Clone)]
pub struct GradientLimit {
    params: AdaptiveLimit,
    limit: f64,
    min_rtt: Option<f64>,
    min_rtt_at: Instant,
    /// `Some(since)` while measuring `min_rtt`; only requests admitted after count.
    probing: Option<Instant>,
    window_start: Instant,
    sum: f64,
    count: u64,
    peak: usize,
}

impl GradientLimit {
    /// Starts at `params.initial`, measuring `min_rtt` first.
    pub fn new(params: &AdaptiveLimit, now: Instant) -> Self {
        let min = params.min.max(1) as f64;
        let max = (params.max as f64).max(min);
        Self {
            limit: (params.initial as f64).clamp(min, max),
            params: params.clone(),
            min_rtt: None,
            min_rtt_at: now,
            probing: Some(now),
            window_start: now,
            sum: 0.0,
            count: 0,
            peak: 0,
        }
    }

    /// The limit in force now (`min` while measuring `min_rtt`).
    pub fn limit(&self) -> usize {
        let min = self.params.min.max(1);
        if self.probing.is_some() {
            return min;
        }
        (self.limit.round() as usize).clamp(min, self.params.max.max(min))
    }

    /// The measured minimum RTT, once known.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt.map(Duration::from_secs_f64)
    }

    /// True while the limit is held at `min` to measure `min_rtt`.
    pub fn is_probing(&self) -> bool {
        self.probing.is_some()
    }

    /// Notes the number of requests in flight after an admission.
    pub fn note_in_flight(&mut self, in_flight: usize) {
        self.peak = self.peak.max(in_flight);
    }

    /// Adds one completed request's RTT to the current window.
    pub fn record(&mut self, admitted: Instant, rtt: Duration) {
        if self.probing.is_some_and(|since| admitted < since) {
            return;
        }
        self.sum += rtt.as_secs_f64();
        self.count += 1;
    }

    /// Closes the window if `update_interval` has passed and recomputes the limit;
    /// true when [`limit`](Self::limit) may have changed.
    pub fn tick(&mut self, now: Instant, in_flight: usize) -> bool {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < self.params.update_interval {
            return false;
        }
        // A window needs a few samples before its mean means anything: one fast answer
        // (a health endpoint, a 404) must not become `min_rtt` and pin the limit at
        // `min`. At low traffic the window stretches, up to ten intervals.
        if self.count < MIN_WINDOW_SAMPLES
            && elapsed < self.params.update_interval.saturating_mul(10)
        {
            return false;
        }
        let sample = (self.count > 0).then(|| self.sum / self.count as f64);
        let peak = self.peak.max(in_flight);
        self.window_start = now;
        self.sum = 0.0;
        self.count = 0;
        self.peak = in_flight;
        let Some(sample) = sample else {
            return false;
        };
        if self.probing.take().is_some() {
            self.min_rtt = Some(sample);
            self.min_rtt_at = now;
            return true;
        }
        if now.saturating_duration_since(self.min_rtt_at) >= self.params.min_rtt_window {
            self.probing = Some(now);
            return true;
        }
        let min_rtt = self.min_rtt.map_or(sample, |m| m.min(sample));
        self.min_rtt = Some(min_rtt);
        let gradient = if sample > 0.0 {
            (self.params.tolerance * min_rtt / sample).clamp(0.5, 1.0)
        } else {
            1.0
        };
        let used = peak.saturating_mul(2) >= self.limit();
        let mut computed = self.limit * gradient;
        if used {
            computed += self.limit.sqrt();
        } else {
            computed = computed.min(self.limit);
        }
        let min = self.params.min.max(1) as f64;
        let max = (self.params.max as f64).max(min);
        self.limit = (0.8 * self.limit + 0.2 * computed).clamp(min, max);
        true
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn params(min: usize, initial: usize, max: usize, tolerance: f64) -> AdaptiveLimit {
        AdaptiveLimit {
            initial,
            min,
            max,
            tolerance,
            update_interval: Duration::from_millis(100),
            min_rtt_window: Duration::from_secs(10),
        }
    }

    /// Runs `steps` update intervals with the limit saturated by load; each request
    /// takes `rtt(in_flight)`. Returns the limit after each step.
    fn simulate(
        g: &mut GradientLimit,
        start: Instant,
        steps: u32,
        rtt: impl Fn(usize) -> Duration,
    ) -> Vec<usize> {
        let mut now = start;
        let mut limits = Vec::new();
        for _ in 0..steps {
            let in_flight = g.limit();
            g.note_in_flight(in_flight);
            let interval = Duration::from_millis(100);
            now += interval;
            let r = rtt(in_flight);
            for _ in 0..in_flight {
                g.record(now - interval, r);
            }
            g.tick(now, in_flight);
            limits.push(g.limit());
        }
        limits
    }

    #[test]
    fn flat_latency_grows_the_limit_to_max() {
        let start = Instant::now();
        let mut g = GradientLimit::new(&params(4, 20, 100, 2.0), start);
        assert!(g.is_probing());
        assert_eq!(g.limit(), 4, "min_rtt is measured at the minimum limit");
        let limits = simulate(&mut g, start, 95, |_| Duration::from_millis(20));
        // The probe at limit 4 needs ten samples: three intervals of four requests.
        assert_eq!(
            &limits[..2],
            &[4, 4],
            "a window closes only with enough samples"
        );
        assert_eq!(limits[2], 20, "back to initial once min_rtt is known");
        assert_eq!(g.min_rtt(), Some(Duration::from_millis(20)));
        assert!(limits.windows(2).all(|w| w[1] >= w[0] || w[1] == 4));
        assert_eq!(*limits.last().unwrap(), 100);
    }

    #[test]
    fn latency_rising_past_n_workers_settles_the_limit_near_n() {
        for (workers, tolerance) in [(10usize, 1.5f64), (10, 2.0), (40, 1.5)] {
            let start = Instant::now();
            let mut g = GradientLimit::new(&params(2, 20, 1000, tolerance), start);
            let service = Duration::from_millis(20);
            // An app with `workers` workers: queueing starts past that concurrency.
            let limits = simulate(&mut g, start, 400, |in_flight| {
                service.mul_f64((in_flight as f64 / workers as f64).max(1.0))
            });
            let settled: Vec<usize> = limits[150..].iter().copied().filter(|&l| l > 2).collect();
            let n = workers as f64;
            let high = (tolerance * n + (tolerance * n).sqrt() + 2.0).ceil() as usize;
            assert!(settled.len() > 200, "mostly out of min_rtt probes");
            for l in settled {
                assert!(
                    (workers..=high).contains(&l),
                    "{workers} workers, tolerance {tolerance}: limit {l} outside {workers}..={high}"
                );
            }
        }
    }

    #[test]
    fn idle_cluster_does_not_grow() {
        let start = Instant::now();
        let mut g = GradientLimit::new(&params(4, 20, 100, 2.0), start);
        let mut now = start;
        for _ in 0..50 {
            g.note_in_flight(2);
            now += Duration::from_millis(100);
            g.record(now - Duration::from_millis(50), Duration::from_millis(5));
            g.tick(now, 0);
        }
        assert_eq!(g.limit(), 20);
    }

    #[test]
    fn bounds_are_respected() {
        let start = Instant::now();
        let mut g = GradientLimit::new(&params(3, 50, 60, 2.0), start);
        // Latency explodes with any concurrency: the limit falls to min, not below.
        let limits = simulate(&mut g, start, 200, |in_flight| {
            Duration::from_millis(10 * in_flight as u64 * in_flight as u64)
        });
        assert!(limits.iter().all(|&l| (3..=60).contains(&l)));
        assert!(limits[100..].iter().all(|&l| l <= 6), "{limits:?}");
        // And a flat one never passes max.
        let mut g = GradientLimit::new(&params(3, 50, 60, 2.0), start);
        let limits = simulate(&mut g, start, 200, |_| Duration::from_millis(1));
        assert!(limits.iter().all(|&l| (3..=60).contains(&l)));
    }
}
