//! One proxy's reports for one cluster as a series, and windowed rates over it —
//! pure, no clock of its own: times are the control plane's receive times in
//! milliseconds, passed in.
//!
//! Reports carry cumulative counters. Each sample keeps them **reset-adjusted**
//! (a counter that went down — a rebuilt cluster, a restarted proxy — adds its
//! new value, as Prometheus' `rate()` does) plus a running sum of the concurrency
//! gauge, so a window is two binary searches and a subtraction.

use std::collections::VecDeque;

use floodgate::control_client::report::ClusterLoad;

/// One report of one cluster, accumulated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Receive time, ms.
    pub at_ms: u64,
    /// Reset-adjusted cumulative arrivals at admission.
    pub offered: f64,
    /// Reset-adjusted cumulative admitted requests.
    pub admitted: f64,
    /// Reset-adjusted cumulative answers below 400.
    pub goodput: f64,
    /// Reset-adjusted cumulative shed requests.
    pub shed: f64,
    /// Reset-adjusted cumulative latency sum of app answers, µs.
    pub latency_sum_us: f64,
    /// Reset-adjusted cumulative count of app answers timed.
    pub latency_count: f64,
    /// Running sum of the concurrency gauge (in flight + queued) over samples.
    pub concurrency_sum: f64,
    /// The concurrency gauge of this sample.
    pub concurrency: f64,
    /// The p99 latency of the report's interval, ms.
    pub p99_ms: Option<f64>,
}

/// A node's series for one cluster.
#[derive(Debug, Clone, Default)]
pub struct Series {
    last: Option<ClusterLoad>,
    samples: VecDeque<Sample>,
}

/// What one node saw over one window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NodeWindow {
    /// Seconds between the window's first and last samples (0: one sample).
    pub span_s: f64,
    /// Arrivals at admission in the window.
    pub offered: f64,
    /// Admitted.
    pub admitted: f64,
    /// Answers below 400.
    pub goodput: f64,
    /// Shed.
    pub shed: f64,
    /// Latency sum of app answers, µs.
    pub latency_sum_us: f64,
    /// App answers timed.
    pub latency_count: f64,
    /// Mean concurrency gauge over the window's samples.
    pub concurrency: f64,
}

fn delta(now: u64, before: Option<u64>) -> f64 {
    match before {
        Some(b) if now >= b => (now - b) as f64,
        // First sight, or a reset: only what came after counts, and a first
        // report's totals are history, not this window's.
        Some(_) => now as f64,
        None => 0.0,
    }
}

impl Series {
    /// Appends a report received at `at_ms` (times must not go backwards; an
    /// earlier one is taken as `at_ms` of the last sample).
    pub fn push(&mut self, at_ms: u64, load: &ClusterLoad) {
        let prev = self.samples.back().copied();
        let at_ms = prev.map_or(at_ms, |p| at_ms.max(p.at_ms));
        let last = self.last.as_ref();
        let d = |now: u64, before: fn(&ClusterLoad) -> u64| delta(now, last.map(before));
        let concurrency = (load.in_flight + load.queue_depth) as f64;
        let base = prev.unwrap_or(Sample {
            at_ms,
            offered: 0.0,
            admitted: 0.0,
            goodput: 0.0,
            shed: 0.0,
            latency_sum_us: 0.0,
            latency_count: 0.0,
            concurrency_sum: 0.0,
            concurrency: 0.0,
            p99_ms: None,
        });
        let sample = Sample {
            at_ms,
            offered: base.offered + d(load.offered, |l| l.offered),
            admitted: base.admitted + d(load.admitted, |l| l.admitted),
            goodput: base.goodput + d(load.completed.ok, |l| l.completed.ok),
            shed: base.shed + d(load.shed, |l| l.shed),
            latency_sum_us: base.latency_sum_us + d(load.latency_sum_us, |l| l.latency_sum_us),
            latency_count: base.latency_count + d(load.latency_count, |l| l.latency_count),
            concurrency_sum: base.concurrency_sum + concurrency,
            concurrency,
            p99_ms: load.latency_p99_ms,
        };
        self.samples.push_back(sample);
        self.last = Some(load.clone());
    }

    /// Drops samples older than `keep_from_ms`, keeping the last one at or before
    /// it (the base of a window that starts there).
    pub fn prune(&mut self, keep_from_ms: u64) {
        while self.samples.len() >= 2 && self.samples[1].at_ms <= keep_from_ms {
            self.samples.pop_front();
        }
    }

    /// The last report's load, as the proxy sent it.
    pub fn last_load(&self) -> Option<&ClusterLoad> {
        self.last.as_ref()
    }

    /// The latest sample.
    pub fn latest(&self) -> Option<&Sample> {
        self.samples.back()
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True without samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The window of `window_ms` ending at the latest sample: from the last sample
    /// at or before `latest - window_ms + slack_ms` (the oldest one when the series
    /// is shorter). `slack_ms` (a quarter of the report interval) keeps a window of
    /// two intervals from reaching back three when reports come a little early.
    pub fn window(&self, window_ms: u64, slack_ms: u64) -> Option<NodeWindow> {
        let latest = *self.samples.back()?;
        let start = (latest.at_ms + slack_ms).saturating_sub(window_ms);
        // The first sample after `start`; the base is the one before it.
        let after = self.samples.partition_point(|s| s.at_ms <= start);
        let base_index = after.saturating_sub(1);
        let base = self.samples.get(base_index).copied().unwrap_or(latest);
        let samples = (self.samples.len() - 1).saturating_sub(base_index);
        let concurrency = if samples == 0 {
            latest.concurrency
        } else {
            (latest.concurrency_sum - base.concurrency_sum) / samples as f64
        };
        Some(NodeWindow {
            span_s: latest.at_ms.saturating_sub(base.at_ms) as f64 / 1000.0,
            offered: latest.offered - base.offered,
            admitted: latest.admitted - base.admitted,
            goodput: latest.goodput - base.goodput,
            shed: latest.shed - base.shed,
            latency_sum_us: latest.latency_sum_us - base.latency_sum_us,
            latency_count: latest.latency_count - base.latency_count,
            concurrency,
        })
    }
}

/// A cluster's load over one window, summed over its reporting proxies.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct ClusterWindow {
    /// Arrivals at admission per second (shed included).
    pub offered_rps: f64,
    /// Admitted per second.
    pub admitted_rps: f64,
    /// Answers below 400 per second.
    pub goodput_rps: f64,
    /// Shed per second.
    pub shed_rps: f64,
    /// Mean requests in the system (in flight + queued), summed over proxies.
    pub concurrency: f64,
    /// Mean latency of the app's answers, seconds (None: no answer in the window).
    pub latency_s: Option<f64>,
}

impl ClusterWindow {
    /// Sums node windows (rates per node, over each node's own span).
    pub fn sum<'a>(nodes: impl IntoIterator<Item = &'a NodeWindow>) -> Self {
        let mut w = ClusterWindow::default();
        let (mut lat_sum, mut lat_n) = (0.0, 0.0);
        for n in nodes {
            if n.span_s > 0.0 {
                w.offered_rps += n.offered / n.span_s;
                w.admitted_rps += n.admitted / n.span_s;
                w.goodput_rps += n.goodput / n.span_s;
                w.shed_rps += n.shed / n.span_s;
            }
            w.concurrency += n.concurrency;
            lat_sum += n.latency_sum_us;
            lat_n += n.latency_count;
        }
        w.latency_s = (lat_n > 0.0).then(|| lat_sum / lat_n / 1e6);
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floodgate::load::{Classes, UnavailableCounts};

    pub(crate) fn load(offered: u64, in_flight: u64, latency_ms: u64) -> ClusterLoad {
        ClusterLoad {
            cluster: "app".into(),
            offered,
            admitted: offered,
            shed: 0,
            completed: Classes {
                ok: offered,
                client_error: 0,
                server_error: 0,
            },
            too_many_requests: 0,
            unavailable: UnavailableCounts::default(),
            latency_count: offered,
            latency_sum_us: offered * latency_ms * 1000,
            in_flight,
            queue_depth: 0,
            limit: None,
            latency_p50_ms: None,
            latency_p99_ms: None,
            available_endpoints: None,
        }
    }

    #[test]
    fn rates_over_windows_and_resets() {
        let mut s = Series::default();
        // 100 rps for 2 s, reports every 500 ms.
        for i in 0..=4u64 {
            s.push(i * 500, &load(1000 + i * 50, 5, 10));
        }
        let w = s.window(1000, 125).unwrap();
        assert_eq!(w.span_s, 1.0);
        assert_eq!(w.offered, 100.0);
        // Shorter series than the window: the whole series.
        let w = s.window(60_000, 125).unwrap();
        assert_eq!((w.span_s, w.offered), (2.0, 200.0));
        // The first report's totals (1000) are history: not in any window.
        assert_eq!(s.latest().unwrap().offered, 200.0);
        // A reset: counters start again from 30.
        s.push(2500, &load(30, 5, 10));
        let w = s.window(500, 125).unwrap();
        assert_eq!(w.offered, 30.0);
        s.prune(2000);
        assert_eq!(s.len(), 2);
        let sum = ClusterWindow::sum([&w, &w]);
        assert_eq!(sum.offered_rps, 120.0);
        assert_eq!(sum.concurrency, 10.0);
        assert!((sum.latency_s.unwrap() - 0.010).abs() < 1e-9);
    }

    #[test]
    fn one_sample_has_no_rate_but_its_gauge() {
        let mut s = Series::default();
        s.push(0, &load(500, 7, 10));
        let w = s.window(1000, 125).unwrap();
        assert_eq!((w.span_s, w.offered, w.concurrency), (0.0, 0.0, 7.0));
        assert_eq!(ClusterWindow::sum([&w]).offered_rps, 0.0);
    }
}
