//! The adaptive concurrency limit: pure arithmetic over latency samples.
//!
//! Vegas's queue estimate in a gradient's clothes: with `L` requests at an app
//! that serves `C` at once, latency is `floor × L / C` past the knee, so
//! `L × floor / rtt` is the app's own concurrency `C`, whatever `L` is. The limit
//! aims at that plus a small headroom, the no-load latency (`floor`) is
//! re-measured by a shallow probe, and latency that does not follow the limit
//! down is taken for a slower app, not for a queue. Time is passed in, so it is
//! tested on a simulated app without a runtime (`gradient/tests.rs`).

use std::time::Duration;

use crate::config::AdaptiveLimit;
use crate::time::Instant;

/// Samples a window needs before it closes early (see [`GradientLimit::tick`]).
const MIN_WINDOW_SAMPLES: u64 = 10;
/// A probe holds the limit at this fraction of itself for one window.
const PROBE_DEPTH: f64 = 0.75;
/// A first window filled by demand is followed by one at `min` only when its
/// mean latency is at most this (seconds).
const PIN_FASTER_THAN: f64 = 0.100;
/// The deepest probe, after probes that still saw a queue.
const DEEPEST_PROBE: f64 = 0.5;
/// A probe that still saw a queue, or a window faster than the floor, brings the
/// next probe this close.
const PROBE_SOON: Duration = Duration::from_secs(1);
/// A floor not confirmed for this many `min_rtt_window`s gives way to a probe.
const FLOOR_EXPIRES_AFTER: u32 = 3;
/// Samples are capped at this multiple of the floor for the limit's mean, so a
/// few very slow answers weigh no more than a halving of the limit asks.
const GRADIENT_CAP: f64 = 2.0;
/// Samples are capped at this multiple of the floor for the stall detector.
const STALL_CAP: f64 = 4.0;
/// Latency up to this much (seconds) above `tolerance × floor` is not taken for
/// a queue: on a busy host a fast app's answers vary by a fraction of a
/// millisecond with scheduling alone, and a queue at the app that costs less than
/// this is not worth a smaller limit (Envoy's `min_rtt_buffer`, in absolute form).
const LATENCY_SLACK: f64 = 0.001;

/// One update window's samples.
#[derive(Debug, Clone)]
struct Window {
    start: Instant,
    /// Sum of samples capped at [`GRADIENT_CAP`] × floor (seconds).
    sum: f64,
    /// Sum of samples capped at [`STALL_CAP`] × floor (seconds).
    wide_sum: f64,
    count: u64,
    /// Most requests in flight during the window.
    peak: usize,
}

/// What a closed window saw: its peak concurrency and its two means.
#[derive(Debug, Clone, Copy)]
struct Seen {
    peak: usize,
    mean: f64,
    wide: f64,
}

/// The adaptive concurrency limit, as pure arithmetic over latency samples.
///
/// Every `update_interval` (and at least ten samples) a window closes. If the
/// window used the limit (in flight reached half of it):
/// `gradient = clamp((tolerance × floor + 1 ms) / mean_rtt, 0.5, 1)`,
/// `target = min(limit × gradient + headroom, 2 × peak_in_flight + headroom)` with
/// `headroom = clamp(√limit, 1, limit / 5)`; the limit rises to a higher target at
/// once and moves half of the way to a lower one.
///
/// `floor` is the app's no-load latency: taken from the first window, which runs
/// at `initial` (or, when demand filled it, from a second one at `min`); lowered by
/// any faster window, and re-measured every `min_rtt_window` by a probe that holds
/// the limit at 0.75 × itself for one window (deeper, down to 0.5, and again after
/// a second while the probe still sees a queue). A probe slower than the floor
/// with no queue means the app is slower now: it becomes a temporary `slow` floor
/// (the floor itself after three unconfirmed windows). So does a latency that
/// does not fall when the limit has fallen by a tenth, twice in a row. The
/// `slow` floor ends with the first window faster than it.
#[derive(Debug, Clone)]
pub struct GradientLimit {
    params: AdaptiveLimit,
    limit: f64,
    floor: Option<f64>,
    floor_confirmed: Instant,
    slow: Option<f64>,
    /// `Some(since)` while probing; only requests admitted after count.
    probing: Option<Instant>,
    /// Before any floor is known: the first window, then maybe one at `min`.
    start: Option<Start>,
    depth: f64,
    next_probe: Instant,
    window: Window,
    prev: Option<Seen>,
    stalls: u8,
}

impl GradientLimit {
    /// Starts at `params.initial`, taking the first window's latency for the floor.
    pub fn new(params: &AdaptiveLimit, now: Instant) -> Self {
        let (min, max) = bounds(params);
        Self {
            limit: (params.initial as f64).clamp(min, max),
            params: params.clone(),
            floor: None,
            floor_confirmed: now,
            slow: None,
            probing: Some(now),
            start: Some(Start::Open),
            depth: PROBE_DEPTH,
            next_probe: now + params.min_rtt_window,
            window: Window {
                start: now,
                sum: 0.0,
                wide_sum: 0.0,
                count: 0,
                peak: 0,
            },
            prev: None,
            stalls: 0,
        }
    }

    /// The limit in force now (lower while probing).
    pub fn limit(&self) -> usize {
        let min = self.params.min.max(1);
        let max = self.params.max.max(min);
        let limit = match self.probing {
            Some(_) if self.start == Some(Start::Pinned) => return min,
            Some(_) if self.start == Some(Start::Open) => self.limit.round(),
            Some(_) => (self.depth * self.limit).ceil(),
            None => self.limit.round(),
        };
        (limit as usize).clamp(min, max)
    }

    /// The no-load latency the limit is measured against, once known.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.baseline().map(Duration::from_secs_f64)
    }

    /// True while the limit is lowered to measure the no-load latency.
    pub fn is_probing(&self) -> bool {
        self.probing.is_some()
    }

    /// Notes the number of requests in flight after an admission.
    pub fn note_in_flight(&mut self, in_flight: usize) {
        self.window.peak = self.window.peak.max(in_flight);
    }

    /// Adds one completed request's RTT to the current window.
    pub fn record(&mut self, admitted: Instant, rtt: Duration) {
        if self.probing.is_some_and(|since| admitted < since) {
            return;
        }
        let rtt = rtt.as_secs_f64();
        let (capped, wide) = match (self.baseline(), self.floor) {
            (Some(b), Some(floor)) => (rtt.min(GRADIENT_CAP * b), rtt.min(STALL_CAP * floor)),
            _ => (rtt, rtt),
        };
        self.window.sum += capped;
        self.window.wide_sum += wide;
        self.window.count += 1;
    }

    /// Closes the window if `update_interval` has passed and recomputes the limit;
    /// true when [`limit`](Self::limit) may have changed.
    pub fn tick(&mut self, now: Instant, in_flight: usize) -> bool {
        let elapsed = now.saturating_duration_since(self.window.start);
        if elapsed < self.params.update_interval {
            return false;
        }
        // A window needs a few samples before its mean means anything: one fast answer
        // (a health endpoint, a 404) must not become the floor. At low traffic the
        // window stretches, up to ten intervals.
        if self.window.count < MIN_WINDOW_SAMPLES
            && elapsed < self.params.update_interval.saturating_mul(10)
        {
            return false;
        }
        let in_force = self.limit();
        let w = std::mem::replace(
            &mut self.window,
            Window {
                start: now,
                sum: 0.0,
                wide_sum: 0.0,
                count: 0,
                peak: in_flight,
            },
        );
        if w.count == 0 {
            return false;
        }
        let seen = Seen {
            // The window starts with the previous one's requests in flight: what
            // it asked of the app is at most the limit in force.
            peak: w.peak.max(in_flight).min(in_force),
            mean: w.sum / w.count as f64,
            wide: w.wide_sum / w.count as f64,
        };
        let prev = self.prev.replace(seen);
        if self.probing.take().is_some() {
            self.end_probe(now, seen, prev, in_force);
            return true;
        }
        if now >= self.next_probe {
            self.probing = Some(now);
            return true;
        }
        self.follow_floor(now, seen);
        if seen.peak.saturating_mul(2) < in_force {
            // The app was not asked for much: its latency says nothing about the limit.
            self.prev = None;
            self.stalls = 0;
            return false;
        }
        self.detect_stall(seen, prev);
        self.update(seen);
        true
    }

    /// The floor in force: the measured one, or the `slow` one while it lasts.
    fn baseline(&self) -> Option<f64> {
        let floor = self.floor?;
        Some(self.slow.map_or(floor, |s| s.max(floor)))
    }

    /// A probe window closed: decide what its latency says about the floor.
    fn end_probe(&mut self, now: Instant, seen: Seen, prev: Option<Seen>, in_force: usize) {
        self.next_probe = now + self.params.min_rtt_window;
        if self.start == Some(Start::Open) && seen.peak >= in_force && seen.mean <= PIN_FASTER_THAN
        {
            // Demand filled the first window: its latency may be the app's queue.
            // Measure the floor at `min` for one window, as a probe would. Only for
            // a fast app: a window at `min` lasts ten of its answers, and for a slow
            // one that is longer than its waiters can wait (the floor it measured is
            // then taken as it is, and the next probe corrects it).
            self.start = Some(Start::Pinned);
            self.probing = Some(now);
            self.prev = None;
            return;
        }
        let Some(floor) = self.floor.filter(|_| self.start.is_none()) else {
            // The first window's latency: at `min` in flight, or at less than the
            // limit (demand did not fill it, so the app was not pushed past it).
            self.start = None;
            self.floor = Some(seen.wide);
            self.floor_confirmed = now;
            return;
        };
        // Latency fell with concurrency: the app still queued during the probe, so
        // its latency is only an upper bound of the floor. Probe deeper, soon.
        let still_queued = prev.is_some_and(|p| {
            p.peak > 0 && seen.mean < p.mean * (seen.peak as f64 / p.peak as f64) * 1.03
        });
        if still_queued {
            self.floor = Some(floor.min(seen.mean));
            self.depth = (self.depth * PROBE_DEPTH).max(DEEPEST_PROBE);
            self.next_probe = now + PROBE_SOON;
            return;
        }
        self.depth = PROBE_DEPTH;
        let expired = now.saturating_duration_since(self.floor_confirmed)
            >= self
                .params
                .min_rtt_window
                .saturating_mul(FLOOR_EXPIRES_AFTER);
        if seen.mean <= floor * 1.1 || expired {
            self.floor = Some(if expired {
                seen.mean
            } else {
                floor.min(seen.mean)
            });
            self.floor_confirmed = now;
            self.slow = None;
        } else {
            // No queue, yet slower than the floor: the app is slower for now.
            self.slow = Some(seen.mean);
        }
    }

    /// A window faster than the floor lowers it (and, if much faster, calls a
    /// probe soon); one faster than the `slow` floor ends it.
    fn follow_floor(&mut self, now: Instant, seen: Seen) {
        let Some(floor) = self.floor else {
            return;
        };
        if seen.wide <= floor * 1.1 {
            self.floor_confirmed = now;
        }
        if seen.wide < floor * 0.9 {
            self.next_probe = self.next_probe.min(now + PROBE_SOON);
        }
        self.floor = Some(floor.min(seen.mean));
        if self.slow.is_some_and(|s| seen.wide < s) {
            self.slow = None;
        }
    }

    /// Latency that stays put while the limit falls by a tenth, twice in a row, is
    /// the app's own slowness, not a queue: it becomes the `slow` floor.
    fn detect_stall(&mut self, seen: Seen, prev: Option<Seen>) {
        let (Some(prev), Some(base), Some(floor)) = (prev, self.baseline(), self.floor) else {
            self.stalls = 0;
            return;
        };
        // Latency at the cap cannot show whether it fell.
        let measurable = 0.9 * STALL_CAP * floor;
        let (peak, prev_peak) = (seen.peak as f64, prev.peak as f64);
        if peak > 0.9 * prev_peak || seen.wide >= measurable || prev.wide >= measurable {
            self.stalls = 0;
            return;
        }
        let fall = 1.0 - peak / prev_peak;
        if seen.wide >= prev.wide * (1.0 - 0.25 * fall) && seen.wide > 1.1 * base {
            self.stalls += 1;
            if self.stalls >= 2 {
                self.slow = Some(seen.wide);
                self.stalls = 0;
            }
        } else {
            self.stalls = 0;
        }
    }

    /// Moves the limit towards the app's estimated concurrency plus headroom.
    fn update(&mut self, seen: Seen) {
        let Some(base) = self.baseline() else {
            return;
        };
        let gradient = if seen.mean > 0.0 {
            ((self.params.tolerance * base + LATENCY_SLACK) / seen.mean).clamp(0.5, 1.0)
        } else {
            1.0
        };
        let headroom = self.limit.sqrt().min(self.limit / 5.0).max(1.0);
        let target = (self.limit * gradient + headroom).min(seen.peak as f64 * 2.0 + headroom);
        let next = if target >= self.limit {
            target
        } else {
            self.limit - 0.5 * (self.limit - target)
        };
        let (min, max) = bounds(&self.params);
        self.limit = next.clamp(min, max);
    }
}

/// The cold start, before the floor is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// The first window, at `initial`: admission is on by default, and a start
    /// pinned at `min` would queue (and shed) the first window of every busy
    /// cluster's traffic, even when the app is far from full.
    Open,
    /// Demand filled the first window: one window at `min` measures the floor.
    Pinned,
}

/// `[min, max]` of the limit, as floats (`min ≥ 1`, `max ≥ min`).
fn bounds(params: &AdaptiveLimit) -> (f64, f64) {
    let min = params.min.max(1) as f64;
    (min, (params.max as f64).max(min))
}

#[cfg(test)]
mod tests;
