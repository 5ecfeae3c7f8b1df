//! Intended send instants from a profile.
//!
//! Request `k` (0, 1, 2, …) is due at the time `t` where the cumulative count
//! `C(t) = ∫ rate` reaches `k`. Within a linear segment this is a quadratic solved in
//! closed form, so a schedule is exact, independent of timer jitter, and bounded: it
//! yields at most `floor(total area)` (or `max_requests`) instants.

use std::time::Duration;

use crate::profile::Segment;

/// An iterator over intended send offsets (from the run's start), in order.
#[derive(Debug, Clone)]
pub struct Schedule {
    segments: Vec<Segment>,
    seg: usize,
    seg_start: Duration,
    seg_count_start: f64,
    next_k: u64,
    limit: u64,
}

impl Schedule {
    /// A schedule over `segments`, stopping after `max_requests` if given.
    pub fn new(segments: Vec<Segment>, max_requests: Option<u64>) -> Self {
        let area: f64 = segments.iter().map(Segment::area).sum();
        // Requests k with C(t_k) = k < area; a tiny epsilon absorbs float error.
        let total = (area - 1e-9).ceil().max(0.0) as u64;
        let limit = max_requests.map_or(total, |m| m.min(total));
        Self {
            segments,
            seg: 0,
            seg_start: Duration::ZERO,
            seg_count_start: 0.0,
            next_k: 0,
            limit,
        }
    }

    /// How many requests this schedule will yield in total.
    pub fn total(&self) -> u64 {
        self.limit
    }

    /// How many requests fall in each whole second (for tests and the `offered` series).
    pub fn per_second(self) -> Vec<u64> {
        let mut out = Vec::new();
        for t in self {
            let i = t.as_secs() as usize;
            if out.len() <= i {
                out.resize(i + 1, 0);
            }
            out[i] += 1;
        }
        out
    }
}

impl Iterator for Schedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.next_k >= self.limit {
            return None;
        }
        let k = self.next_k as f64;
        // Segments are finite, so this loop runs at most `segments.len()` times.
        while let Some(seg) = self.segments.get(self.seg) {
            let x = k - self.seg_count_start;
            if x < seg.area() - 1e-9 {
                let tau = solve(seg, x);
                self.next_k += 1;
                return Some(self.seg_start + Duration::from_secs_f64(tau));
            }
            self.seg_count_start += seg.area();
            self.seg_start += seg.duration;
            self.seg += 1;
        }
        None
    }
}

/// Time into `seg` at which `x` requests have been scheduled since its start.
fn solve(seg: &Segment, x: f64) -> f64 {
    let d = seg.duration.as_secs_f64();
    let (a, b) = (seg.from_rps, seg.to_rps);
    if x <= 0.0 {
        return 0.0;
    }
    // a·τ + (b−a)/(2d)·τ² = x  →  τ = 2x / (a + √(a² + 2(b−a)x/d)), stable for a = b.
    let disc = (a * a + 2.0 * (b - a) * x / d).max(0.0);
    let denom = a + disc.sqrt();
    if denom <= 0.0 {
        return 0.0;
    }
    (2.0 * x / denom).min(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{ProfileSpec, Step};

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn per_second(p: ProfileSpec) -> Vec<u64> {
        Schedule::new(p.segments().unwrap(), None).per_second()
    }

    #[test]
    fn constant_is_flat_and_exact() {
        let c = per_second(ProfileSpec::Constant {
            rate: 2000.0,
            duration: secs(5),
        });
        assert_eq!(c, vec![2000; 5]);
        let s = Schedule::new(
            ProfileSpec::Constant {
                rate: 4.0,
                duration: secs(1),
            }
            .segments()
            .unwrap(),
            None,
        );
        let v: Vec<_> = s.map(|d| d.as_millis()).collect();
        assert_eq!(v, vec![0, 250, 500, 750]);
    }

    #[test]
    fn step_changes_rate_per_stage() {
        let c = per_second(ProfileSpec::Step {
            steps: vec![
                Step {
                    rate: 10.0,
                    duration: secs(2),
                },
                Step {
                    rate: 50.0,
                    duration: secs(1),
                },
                Step {
                    rate: 0.0,
                    duration: secs(1),
                },
                Step {
                    rate: 5.0,
                    duration: secs(1),
                },
            ],
        });
        assert_eq!(c, vec![10, 10, 50, 0, 5]);
    }

    #[test]
    fn ramp_grows_linearly() {
        let c = per_second(ProfileSpec::Ramp {
            from: 0.0,
            to: 100.0,
            duration: secs(2),
        });
        assert_eq!(c, vec![25, 75]);
        let c = per_second(ProfileSpec::Ramp {
            from: 100.0,
            to: 300.0,
            duration: secs(4),
        });
        // rate at second i's midpoint: 125, 175, 225, 275
        assert_eq!(c, vec![125, 175, 225, 275]);
    }

    #[test]
    fn spike_is_baseline_then_n_times_then_baseline() {
        let c = per_second(ProfileSpec::Spike {
            baseline: 20.0,
            multiplier: 100.0,
            before: secs(2),
            spike: secs(3),
            after: secs(2),
        });
        assert_eq!(c, vec![20, 20, 2000, 2000, 2000, 20, 20]);
    }

    #[test]
    fn max_requests_bounds_the_schedule() {
        let s = Schedule::new(
            ProfileSpec::Constant {
                rate: 1000.0,
                duration: secs(10),
            }
            .segments()
            .unwrap(),
            Some(123),
        );
        assert_eq!(s.total(), 123);
        assert_eq!(s.count(), 123);
    }

    #[test]
    fn instants_are_monotonic() {
        let s = Schedule::new(
            ProfileSpec::Ramp {
                from: 300.0,
                to: 10.0,
                duration: secs(3),
            }
            .segments()
            .unwrap(),
            None,
        );
        let v: Vec<_> = s.collect();
        assert!(v.windows(2).all(|w| w[0] <= w[1]));
        assert!(v.last().unwrap() < &secs(3));
    }
}
