//! The decision on recorded series: proxies' reports fed into a [`MemoryLoad`]
//! at their times, the decider asked every tick. No runtime, no wall clock.

use std::time::Duration;

use floodgate::control_client::report::{ClusterLoad, LoadReport};
use floodgate::load::{Classes, UnavailableCounts};

use super::*;
use crate::config::AutoscalePolicy;
use crate::reports::MemoryLoad;

const REPORT_MS: u64 = 500;
const TICK_MS: u64 = 250;

/// A cluster seen by `proxies` proxies: offered rps and ready replicas as
/// functions of time (ms); the app answers in `latency_s`; admission caps what is
/// in flight at `limit` per proxy (the rest is shed), as a shedding proxy does.
struct Sim {
    proxies: u64,
    latency_s: f64,
    limit: f64,
    offered: f64,
    admitted: f64,
    latency_sum_us: f64,
    load: MemoryLoad,
    decider: Decider,
}

/// One tick's outcome.
#[derive(Debug, Clone)]
struct Step {
    t_ms: u64,
    ready: u32,
    d: Decision,
}

impl Sim {
    fn new(policy: AutoscalePolicy, proxies: u64) -> Self {
        Sim {
            proxies,
            latency_s: 0.1,
            limit: 20.0,
            offered: 0.0,
            admitted: 0.0,
            latency_sum_us: 0.0,
            load: MemoryLoad::new(),
            decider: Decider::new(policy),
        }
    }

    /// Runs from `from_ms` to `to_ms`; `rps(t)` is the total offered rate, `ready(t, desired)`
    /// the ready replicas given the last desired.
    fn run(
        &mut self,
        from_ms: u64,
        to_ms: u64,
        rps: impl Fn(u64) -> f64,
        mut ready: impl FnMut(u64, u32) -> u32,
    ) -> Vec<Step> {
        let mut out = Vec::new();
        let mut desired = 1;
        let mut t = from_ms;
        while t <= to_ms {
            if t % REPORT_MS == 0 {
                // The interval that just ended, split evenly over the proxies.
                let per_proxy = rps(t.saturating_sub(1)) / self.proxies as f64;
                let arrivals = per_proxy * REPORT_MS as f64 / 1000.0;
                let capacity = self.limit / self.latency_s * REPORT_MS as f64 / 1000.0;
                let admitted = arrivals.min(capacity);
                self.offered += arrivals;
                self.admitted += admitted;
                self.latency_sum_us += admitted * self.latency_s * 1e6;
                let in_flight = (per_proxy * self.latency_s).min(self.limit);
                for p in 0..self.proxies {
                    let r = report(
                        p,
                        self.offered,
                        self.admitted,
                        self.latency_sum_us,
                        in_flight,
                    );
                    self.load.record(&r, t).unwrap();
                }
            }
            if t % TICK_MS == 0 {
                let r = ready(t, desired);
                let policy = self.decider.policy().clone();
                let obs = observe(&self.load, "app", &policy, r, t).unwrap();
                let d = self.decider.decide(&obs, t);
                desired = d.desired;
                out.push(Step {
                    t_ms: t,
                    ready: r,
                    d,
                });
            }
            t += TICK_MS.min(REPORT_MS);
        }
        out
    }
}

fn report(p: u64, offered: f64, admitted: f64, latency_sum_us: f64, in_flight: f64) -> LoadReport {
    let (offered, admitted) = (offered.round() as u64, admitted.round() as u64);
    LoadReport {
        group: "g".into(),
        node: format!("proxy-{p}"),
        interval_ms: REPORT_MS,
        seq: 0,
        clusters: vec![ClusterLoad {
            cluster: "app".into(),
            offered,
            admitted,
            shed: offered - admitted,
            completed: Classes {
                ok: admitted,
                client_error: 0,
                server_error: offered - admitted,
            },
            too_many_requests: 0,
            unavailable: UnavailableCounts {
                overloaded: offered - admitted,
                ..UnavailableCounts::default()
            },
            latency_count: admitted,
            latency_sum_us: latency_sum_us.round() as u64,
            in_flight: in_flight.round() as u64,
            queue_depth: 0,
            limit: Some(20),
            latency_p50_ms: Some(100.0),
            latency_p99_ms: Some(100.0),
            available_endpoints: None,
        }],
        routes: Vec::new(),
    }
}

/// Target 10 concurrent requests per replica at full utilization, max 1000.
fn policy() -> AutoscalePolicy {
    let mut p = AutoscalePolicy::with_target(Target::Concurrency(10.0));
    p.target_utilization = 1.0;
    p.max_replicas = 1000;
    p
}

fn at(steps: &[Step], t_ms: u64) -> &Step {
    steps.iter().find(|s| s.t_ms >= t_ms).unwrap()
}

#[test]
fn a_100x_step_shows_within_a_second_though_admission_caps_concurrency() {
    // 2 proxies; 100 rps × 0.1 s = 10 in the system: 1 replica. At 60 s, 10,000 rps:
    // demand 1,000, 100 replicas — while each proxy admits at most 20 at once.
    let mut sim = Sim::new(policy(), 2);
    let steps = sim.run(
        0,
        70_000,
        |t| if t < 60_000 { 100.0 } else { 10_000.0 },
        |_, d| d.min(1),
    );
    assert_eq!(at(&steps, 59_750).d.desired, 1, "{:?}", at(&steps, 59_750));
    assert!(!at(&steps, 59_750).d.panic);
    // Half a second of the step is in the first report: panic, about half the way.
    let first = at(&steps, 60_500);
    assert!(first.d.panic && first.d.desired >= 50, "{first:?}");
    // One second after the step: all of it.
    let second = at(&steps, 61_000);
    assert_eq!(second.d.desired, 100, "{second:?}");
    assert!((second.d.offered_rps - 10_000.0).abs() < 1.0, "{second:?}");
    // Concurrency alone would have said 40 in flight: 4 replicas.
    assert!(second.d.demand > 900.0);
    // Only one replica ever became ready: desired never drops during the burst.
    let during: Vec<u32> = steps
        .iter()
        .filter(|s| s.t_ms >= 61_000)
        .map(|s| s.d.desired)
        .collect();
    assert!(during.iter().all(|d| *d == 100), "{during:?}");
}

#[test]
fn a_slow_ramp_scales_without_panic() {
    // 100 → 1,000 rps over 120 s; replicas become ready as desired.
    let mut sim = Sim::new(policy(), 1);
    sim.limit = 1e9;
    let steps = sim.run(
        0,
        150_000,
        |t| 100.0 + 900.0 * (t.min(120_000) as f64 / 120_000.0),
        |_, d| d,
    );
    assert!(
        steps.iter().all(|s| !s.d.panic),
        "panicked on a ramp: {:?}",
        steps.iter().find(|s| s.d.panic)
    );
    let desired: Vec<u32> = steps.iter().map(|s| s.d.desired).collect();
    assert!(
        desired.windows(2).all(|w| w[1] >= w[0]),
        "went down on a ramp: {desired:?}"
    );
    let last = steps.last().unwrap().d.desired;
    // 1,000 rps × 0.1 s = 100 → 10 replicas once the stable window has seen it.
    assert!((9..=10).contains(&last), "{last}");
}

#[test]
fn noise_does_not_flap() {
    // 1,000 rps ± 20 % per report interval (a fixed pseudo-random sequence).
    let mut sim = Sim::new(policy(), 2);
    sim.limit = 1e9;
    let noise = |t: u64| {
        let x = (t / REPORT_MS)
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((x >> 33) % 400) as f64 / 1000.0 - 0.2
    };
    let steps = sim.run(0, 180_000, |t| 1000.0 * (1.0 + noise(t)), |_, d| d);
    let settled: Vec<u32> = steps
        .iter()
        .filter(|s| s.t_ms >= 95_000)
        .map(|s| s.d.desired)
        .collect();
    let (lo, hi) = (settled.iter().min().unwrap(), settled.iter().max().unwrap());
    assert!(
        *lo >= 10 && *hi <= 11,
        "{lo}..{hi}: {:?}",
        steps
            .iter()
            .find(|s| s.t_ms >= 95_000 && s.d.desired == *hi)
    );
    let changes = settled.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(changes <= 2, "{changes} changes");
    assert!(steps
        .iter()
        .filter(|s| s.t_ms >= 95_000)
        .all(|s| !s.d.panic));
}

#[test]
fn a_burst_outlasting_the_panic_window_holds_while_replicas_start_slowly() {
    // 100x for 120 s (twice the stable window); a replica becomes ready every 20 s.
    let mut sim = Sim::new(policy(), 2);
    let burst = |t: u64| {
        if (60_000..180_000).contains(&t) {
            10_000.0
        } else {
            100.0
        }
    };
    let steps = sim.run(0, 300_000, burst, |t, d| {
        let started = 1 + (t.saturating_sub(60_000) / 20_000) as u32;
        started.min(d.max(1))
    });
    let during: Vec<&Step> = steps
        .iter()
        .filter(|s| (61_000..180_000).contains(&s.t_ms))
        .collect();
    // Never below the burst's 100 and always in panic while the few ready cannot carry it
    // (Knative's serving#3153: leaving panic 60 s in undid the scale-up).
    assert!(
        during.iter().all(|s| s.d.desired == 100 && s.d.panic),
        "{:?}",
        during.iter().find(|s| s.d.desired != 100 || !s.d.panic)
    );
    // The burst ends at 180 s. Still holding while demand's stable window drains
    // and the scale-down delay runs.
    assert_eq!(at(&steps, 185_000).d.desired, 100);
    // Well after: back to 1.
    assert_eq!(steps.last().unwrap().d.desired, 1, "{:?}", steps.last());
    assert!(!steps.last().unwrap().d.panic);
}

#[test]
fn scale_down_waits_for_the_delay_then_steps_by_the_rate() {
    // 1,000 rps (10 replicas) for 90 s, then 100 rps (1 replica).
    let mut p = policy();
    p.stable_window = Duration::from_secs(10);
    p.panic_window = Duration::from_secs(1);
    p.scale_down_delay = Duration::from_secs(30);
    let mut sim = Sim::new(p, 1);
    sim.limit = 1e9;
    let steps = sim.run(
        0,
        150_000,
        |t| if t < 90_000 { 1000.0 } else { 100.0 },
        |_, d| d,
    );
    assert_eq!(at(&steps, 89_750).d.desired, 10);
    // The stable window (10 s) wants 1 by 100 s; the delay holds 10 until 30 s
    // after the last tick that wanted 10.
    let held: Vec<u32> = steps
        .iter()
        .filter(|s| (90_000..115_000).contains(&s.t_ms))
        .map(|s| s.d.desired)
        .collect();
    assert!(held.iter().all(|d| *d == 10), "{held:?}");
    let end = steps.last().unwrap();
    assert_eq!(end.d.desired, 1, "{end:?}");
    // max_scale_down_rate 2: never below half of what was ready.
    for w in steps.windows(2) {
        assert!(w[1].d.desired >= w[1].ready / 2, "{:?}", w[1]);
    }
}

#[test]
fn min_and_max_clamp() {
    let mut p = policy();
    p.min_replicas = 2;
    p.max_replicas = 5;
    let mut sim = Sim::new(p, 1);
    let steps = sim.run(0, 10_000, |_| 0.0, |_, d| d);
    assert!(steps.iter().all(|s| s.d.desired == 2), "{:?}", steps.last());
    let steps = sim.run(10_250, 20_000, |_| 100_000.0, |_, d| d);
    let end = steps.last().unwrap();
    assert_eq!(end.d.desired, 5);
    assert!(end.d.reason.contains("max_replicas"), "{}", end.d.reason);
}

#[test]
fn rps_target_uses_offered_rate() {
    let mut p = AutoscalePolicy::with_target(Target::Rps(100.0));
    p.target_utilization = 0.5;
    let mut sim = Sim::new(p, 1);
    sim.limit = 1e9;
    let steps = sim.run(0, 70_000, |_| 1000.0, |_, d| d);
    // 1,000 rps at 50 per replica.
    assert_eq!(steps.last().unwrap().d.desired, 20);
}

#[test]
fn a_restarted_control_plane_holds_ready_replicas_until_reports_arrive() {
    let mut d = Decider::new(policy());
    let idle = Observation {
        ready: 8,
        ..Observation::default()
    };
    assert_eq!(d.decide(&idle, 0).desired, 8);
    assert_eq!(d.decide(&idle, 29_000).desired, 8);
    // After scale_down_delay (30 s), max_scale_down_rate halves it per tick.
    assert_eq!(d.decide(&idle, 31_000).desired, 4);
}

#[test]
fn panic_ends_once_replicas_caught_up_and_the_window_is_quiet() {
    let mut p = policy();
    p.stable_window = Duration::from_secs(10);
    p.panic_window = Duration::from_secs(2);
    p.scale_down_delay = Duration::ZERO;
    let mut sim = Sim::new(p, 1);
    sim.limit = 1e9;
    // A 10x step to 1,000 rps at 5 s; replicas ready at once.
    let steps = sim.run(
        0,
        40_000,
        |t| if t < 5_000 { 100.0 } else { 1000.0 },
        |_, d| d,
    );
    assert!(at(&steps, 6_000).d.panic);
    let end = steps.last().unwrap();
    assert!(!end.d.panic, "{end:?}");
    assert_eq!(end.d.desired, 10);
}
