//! The limit against a simulated app: `C` slots shared by the requests in it
//! (processor sharing), each request needing `S` of work. Latency is `S` up to
//! `C` in flight and `S × in_flight / C` past it. A driver offers more than the
//! app can take (or a fixed small concurrency), admits up to the limit, and feeds
//! each completion to the limit on a simulated clock.

use super::*;

const S: f64 = 0.010;

fn params() -> AdaptiveLimit {
    AdaptiveLimit {
        initial: 20,
        min: 4,
        max: 1000,
        tolerance: 1.0,
        update_interval: Duration::from_millis(100),
        min_rtt_window: Duration::from_secs(10),
    }
}

/// A tiny seeded generator (xorshift64*), so runs are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What one run saw, sampled every millisecond of simulated time.
struct Run {
    /// `(t, limit in force)`.
    limits: Vec<(f64, usize)>,
    /// Completion times.
    done: Vec<f64>,
}

impl Run {
    /// Limits in force during `[from, to)`.
    fn limits(&self, from: f64, to: f64) -> Vec<usize> {
        self.limits
            .iter()
            .filter(|(t, _)| (from..to).contains(t))
            .map(|&(_, l)| l)
            .collect()
    }

    /// Completions in each whole second of `[from, to)`.
    fn per_second(&self, from: u32, to: u32) -> Vec<usize> {
        (from..to)
            .map(|s| {
                let s = f64::from(s);
                self.done.iter().filter(|&&t| t >= s && t < s + 1.0).count()
            })
            .collect()
    }
}

/// The simulated world. `capacity(t)` is the app's slots, `work` a request's
/// service time (seconds), `slowness(t)` divides its speed, `noise` draws a
/// request's work multiplier, `offered` caps the driver's concurrency
/// (`usize::MAX`: always more than the limit).
struct Sim<'a> {
    capacity: &'a dyn Fn(f64) -> usize,
    work: f64,
    slowness: &'a dyn Fn(f64) -> f64,
    noise: Option<&'a dyn Fn(&mut Rng) -> f64>,
    offered: usize,
}

impl Sim<'_> {
    fn flat(capacity: &dyn Fn(f64) -> usize) -> Sim<'_> {
        Sim {
            capacity,
            work: S,
            slowness: &|_| 1.0,
            noise: None,
            offered: usize::MAX,
        }
    }

    fn run(&self, limiter: &mut GradientLimit, start: Instant, secs: f64) -> Run {
        let dt = (self.work / 20.0).min(0.0005);
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut in_app: Vec<(f64, f64)> = Vec::new(); // (admitted at, work left)
        let mut run = Run {
            limits: Vec::new(),
            done: Vec::new(),
        };
        let at = |t: f64| start + Duration::from_secs_f64(t);
        let steps = (secs / dt) as u64;
        let every = ((0.001 / dt) as u64 / 2).max(1);
        for step in 0..steps {
            let t = step as f64 * dt;
            while in_app.len() < limiter.limit().min(self.offered) {
                let work = self.work * self.noise.map_or(1.0, |n| n(&mut rng));
                in_app.push((t, work));
                limiter.note_in_flight(in_app.len());
            }
            let share = ((self.capacity)(t) as f64 / in_app.len().max(1) as f64).min(1.0);
            let progress = share * dt / (self.slowness)(t);
            let now = t + dt;
            let mut i = 0;
            while i < in_app.len() {
                in_app[i].1 -= progress;
                if in_app[i].1 <= 0.0 {
                    let (admitted, _) = in_app.swap_remove(i);
                    limiter.record(at(admitted), Duration::from_secs_f64(now - admitted));
                    run.done.push(now);
                    limiter.tick(at(now), in_app.len());
                } else {
                    i += 1;
                }
            }
            if step % every == 0 {
                run.limits.push((now, limiter.limit()));
            }
        }
        run
    }
}

/// ±30 % on every request, and one in fifty takes five times as long.
fn spiky(rng: &mut Rng) -> f64 {
    let spike = if rng.next() < 0.02 { 5.0 } else { 1.0 };
    (0.7 + 0.6 * rng.next()) * spike
}

#[test]
fn converges_on_the_apps_concurrency() {
    for c in [4usize, 8, 16, 50, 100] {
        let start = Instant::now();
        let mut g = GradientLimit::new(&params(), start);
        let run = Sim::flat(&|_| c).run(&mut g, start, 25.0);
        let band = c..=(c * 3).div_ceil(2);
        let settled = run.limits(3.0, 25.0);
        let mut sorted = settled.clone();
        sorted.sort_unstable();
        let median = sorted[sorted.len() / 2];
        eprintln!(
            "C={c}: median {median}, range {}..={}",
            sorted[0],
            sorted[sorted.len() - 1]
        );
        assert!(
            band.contains(&median),
            "C={c}: median {median} outside {band:?}"
        );
        // Out of band only during the probes (one window every ten seconds).
        let outside = settled.iter().filter(|l| !band.contains(l)).count();
        assert!(
            outside * 20 < settled.len(),
            "C={c}: {outside} of {} samples outside {band:?}",
            settled.len()
        );
        assert!(
            sorted[0] >= (c * 3 / 4).max(4),
            "C={c}: dipped to {}",
            sorted[0]
        );
    }
}

#[test]
fn latency_noise_neither_collapses_nor_inflates_the_limit() {
    let start = Instant::now();
    let mut g = GradientLimit::new(&params(), start);
    let sim = Sim {
        noise: Some(&spiky),
        ..Sim::flat(&|_| 16)
    };
    let run = sim.run(&mut g, start, 30.0);
    let settled = run.limits(3.0, 30.0);
    let mut sorted = settled.clone();
    sorted.sort_unstable();
    let (low, median, high) = (
        sorted[0],
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1],
    );
    let mut hist = std::collections::BTreeMap::new();
    for l in &settled {
        *hist.entry(*l).or_insert(0usize) += 1;
    }
    eprintln!("noise: median {median}, range {low}..={high}: {hist:?}");
    // Spikes make the mean request 8 % longer: the band is C..=1.6 C here.
    assert!((16..=26).contains(&median), "median {median}");
    assert!(high <= 26, "rose to {high}");
    assert!(low >= 8, "fell to {low}");
    let outside = settled.iter().filter(|l| !(16..=26).contains(*l)).count();
    assert!(
        outside * 20 < settled.len(),
        "{outside} of {} outside 16..=26",
        settled.len()
    );
}

#[test]
fn a_fast_apps_scheduling_noise_does_not_shrink_the_limit() {
    // A 0.1 ms app (64 slots) asked for 12 at a time on a busy host: for 50 ms at
    // a time everything runs one to six times slower (scheduling, not a queue).
    // The floor is the fastest window's mean; without the absolute slack every
    // slower window reads as a queue, the limit falls window after window and
    // the 12 requests queue in the proxy.
    let busy = |t: f64| {
        let mut r = Rng(((t / 0.05) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        1.0 + 5.0 * r.next()
    };
    let start = Instant::now();
    let mut g = GradientLimit::new(&params(), start);
    let sim = Sim {
        work: 0.000_1,
        slowness: &busy,
        offered: 12,
        ..Sim::flat(&|_| 64)
    };
    let run = sim.run(&mut g, start, 12.0);
    let settled = run.limits(1.0, 12.0);
    let low = settled.iter().copied().min().unwrap_or(0);
    eprintln!("fast app: lowest limit {low}");
    assert!(low >= 12, "the limit fell to {low}, below the 12 asked for");
}

#[test]
fn a_slow_second_does_not_collapse_the_limit_and_a_slow_minute_passes() {
    for begins in [13.0, 17.3, 25.55] {
        let start = Instant::now();
        let mut g = GradientLimit::new(&params(), start);
        let sim = Sim {
            slowness: &|t| {
                if (begins..begins + 1.0).contains(&t) {
                    2.0
                } else {
                    1.0
                }
            },
            noise: Some(&spiky),
            ..Sim::flat(&|_| 16)
        };
        let run = sim.run(&mut g, start, begins + 5.0);
        let during = run.limits(begins, begins + 3.0);
        let low = *during.iter().min().unwrap();
        eprintln!("slow second at {begins}: lowest {low}");
        assert!(low > 4, "slow second at {begins}: fell to min_limit");
        let after = run.limits(begins + 3.0, begins + 5.0);
        assert!(
            after.iter().all(|l| (12..=24).contains(l)),
            "after the slow second at {begins}: {:?}..={:?}",
            after.iter().min(),
            after.iter().max()
        );
    }
    // Twice as slow for 30 s (long enough for the floor to expire), then back.
    let start = Instant::now();
    let mut g = GradientLimit::new(&params(), start);
    let sim = Sim {
        slowness: &|t| if (13.0..43.0).contains(&t) { 2.0 } else { 1.0 },
        ..Sim::flat(&|_| 16)
    };
    let run = sim.run(&mut g, start, 60.0);
    let during = run.limits(15.0, 43.0);
    assert!(
        during.iter().all(|&l| l >= 10),
        "slow minute: fell to {:?}",
        during.iter().min()
    );
    let after = run.limits(48.0, 60.0);
    let outside = after.iter().filter(|l| !(16..=24).contains(*l)).count();
    assert!(
        outside * 20 < after.len(),
        "not recovered: {outside} of {}",
        after.len()
    );
}

#[test]
fn follows_a_capacity_step_up_and_down_within_a_second() {
    let start = Instant::now();
    let mut g = GradientLimit::new(&params(), start);
    let capacity = |t: f64| if (10.0..20.0).contains(&t) { 32 } else { 16 };
    let run = Sim::flat(&capacity).run(&mut g, start, 30.0);
    let reached = |from: f64, band: std::ops::RangeInclusive<usize>| {
        run.limits
            .iter()
            .find(|(t, l)| *t >= from && band.contains(l))
            .map(|(t, _)| t - from)
    };
    let (t_up, t_down) = (reached(10.0, 32..=48), reached(20.0, 16..=24));
    eprintln!("into the new band: up {t_up:?} s, down {t_down:?} s");
    assert!(t_up.is_some_and(|t| t <= 1.0), "step up took {t_up:?} s");
    assert!(
        t_down.is_some_and(|t| t <= 1.0),
        "step down took {t_down:?} s"
    );
    let up = run.limits(11.0, 20.0);
    eprintln!(
        "after step up: {:?}..={:?}",
        up.iter().min(),
        up.iter().max()
    );
    assert!(
        up.iter().all(|&l| l >= 24),
        "step up: fell to {:?}",
        up.iter().min()
    );
    let up_median = {
        let mut s = up.clone();
        s.sort_unstable();
        s[s.len() / 2]
    };
    assert!(
        (32..=48).contains(&up_median),
        "step up: median {up_median}"
    );
    let down = run.limits(21.0, 30.0);
    eprintln!(
        "after step down: {:?}..={:?}",
        down.iter().min(),
        down.iter().max()
    );
    let outside = down.iter().filter(|l| !(16..=24).contains(*l)).count();
    assert!(
        outside * 20 < down.len(),
        "step down: {outside} of {} outside",
        down.len()
    );
}

#[test]
fn remeasuring_the_floor_keeps_throughput_near_capacity() {
    for c in [8usize, 16, 50] {
        let start = Instant::now();
        let mut g = GradientLimit::new(&params(), start);
        let run = Sim::flat(&|_| c).run(&mut g, start, 45.0);
        let capacity = c as f64 / S;
        let per_second = run.per_second(2, 45);
        let worst = per_second.iter().min().copied().unwrap_or(0) as f64 / capacity;
        eprintln!("C={c}: worst second {:.1} % of capacity", worst * 100.0);
        assert!(
            worst >= 0.9,
            "C={c}: a second at {:.0} % of capacity",
            worst * 100.0
        );
        assert!(
            run.limits(2.0, 45.0).iter().all(|&l| l > 4),
            "C={c}: dipped to min_limit"
        );
    }
}

#[test]
fn low_load_keeps_the_limit_bounded() {
    for initial in [4, 20] {
        let start = Instant::now();
        let mut g = GradientLimit::new(
            &AdaptiveLimit {
                initial,
                ..params()
            },
            start,
        );
        let sim = Sim {
            offered: 3,
            ..Sim::flat(&|_| 16)
        };
        let run = sim.run(&mut g, start, 30.0);
        let limits = run.limits(1.0, 30.0);
        let high = *limits.iter().max().unwrap();
        assert!(
            high <= initial.max(2 * 3 + 2),
            "initial {initial}: grew to {high}"
        );
        assert!(
            limits.iter().all(|&l| l >= 3),
            "initial {initial}: below the load"
        );
    }
}

#[test]
fn flat_latency_grows_the_limit_to_max() {
    let start = Instant::now();
    let mut g = GradientLimit::new(
        &AdaptiveLimit {
            max: 100,
            ..params()
        },
        start,
    );
    assert!(g.is_probing());
    assert_eq!(g.limit(), 20, "the first window runs at the initial limit");
    let run = Sim::flat(&|_| 10_000).run(&mut g, start, 5.0);
    assert_eq!(g.min_rtt(), Some(Duration::from_secs_f64(S)));
    // Demand filled it: one window at the minimum measures the floor.
    assert!(run.limits(0.0, 0.09).iter().all(|&l| l == 20));
    assert!(run.limits(0.12, 0.19).iter().all(|&l| l == 4));
    assert_eq!(run.limits(4.0, 5.0).iter().max(), Some(&100));
}

#[test]
fn bounds_are_respected() {
    let start = Instant::now();
    let p = AdaptiveLimit {
        min: 3,
        initial: 50,
        max: 60,
        ..params()
    };
    // An app that serves one at a time: the limit falls to min, not below. (It
    // starts idle, as a proxy does before a burst: a first window filled by
    // demand at 500 ms per answer is too slow to be followed by one at `min`.)
    let mut g = GradientLimit::new(&p, start);
    let idle = Sim {
        offered: 1,
        ..Sim::flat(&|_| 1)
    };
    idle.run(&mut g, start, 1.0);
    let start = start + Duration::from_secs(1);
    let run = Sim::flat(&|_| 1).run(&mut g, start, 10.0);
    assert!(run.limits(0.0, 10.0).iter().all(|&l| (3..=60).contains(&l)));
    let late = run.limits(5.0, 10.0);
    assert!(late.iter().all(|&l| l <= 4), "{:?}", late.iter().max());
    // And one that never queues never passes max.
    let mut g = GradientLimit::new(&p, start);
    let run = Sim::flat(&|_| 10_000).run(&mut g, start, 10.0);
    assert!(run.limits(0.0, 10.0).iter().all(|&l| (3..=60).contains(&l)));
}

#[test]
fn idle_cluster_does_not_grow() {
    let start = Instant::now();
    let mut g = GradientLimit::new(&params(), start);
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
fn a_slow_app_met_with_demand_at_start_is_not_pinned_at_min() {
    // 200 ms per answer, no queue in the app, 40 requests at once from the start:
    // the first window is filled, but a window at `min` would hold waiters for
    // longer than they can wait. The limit never falls below `initial` and grows.
    let start = Instant::now();
    let mut g = GradientLimit::new(&params(), start);
    let sim = Sim {
        slowness: &|_| 20.0,
        offered: 40,
        ..Sim::flat(&|_| 10_000)
    };
    let run = sim.run(&mut g, start, 5.0);
    assert!(run.limits(0.0, 5.0).iter().all(|&l| l >= 20));
    assert!(
        run.limits(4.0, 5.0).iter().all(|&l| l >= 40),
        "{:?}",
        run.limits(4.0, 5.0).iter().min()
    );
    assert_eq!(g.min_rtt(), Some(Duration::from_secs_f64(0.2)));
}
