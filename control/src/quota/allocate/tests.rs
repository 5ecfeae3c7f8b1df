//! The split over simulated proxies on a fake clock (1 ms steps): each reports
//! every 500 ms (its own phase), applies the lease its reply carries (possibly
//! late or lost), and falls back when its lease runs out. At every step the
//! leases the proxies apply add up to at most `rps`, and each is within what the
//! split counts the proxy as holding.

use super::*;

const N: u32 = 300;
const INTERVAL: u64 = 500;

struct Proxy {
    node: String,
    phase: u64,
    demand: Box<dyn Fn(u64) -> f64>,
    offered: f64,
    lease: Option<(u64, u32, u64)>,
    pending: Vec<(u64, Grant, u64)>,
    reports: bool,
}

impl Proxy {
    fn new(i: usize, demand: impl Fn(u64) -> f64 + 'static) -> Self {
        Proxy {
            node: format!("g/p{i}"),
            phase: 37 * i as u64 + 11,
            demand: Box::new(demand),
            offered: 0.0,
            lease: None,
            pending: Vec::new(),
            reports: true,
        }
    }

    fn applied(&self, now: u64) -> u32 {
        match self.lease {
            Some((_, rps, expires)) if expires > now => rps,
            _ => 0,
        }
    }
}

struct Sim {
    quota: RouteQuota,
    proxies: Vec<Proxy>,
    now: u64,
    started: u64,
    next_id: u64,
    /// Reply fate by report number: None delivered after `delay` ms, or lost.
    lose_every: Option<u64>,
    delay: u64,
    sent: u64,
}

impl Sim {
    fn new(proxies: Vec<Proxy>) -> Self {
        Sim {
            quota: RouteQuota::default(),
            proxies,
            now: 1_000_000,
            started: 1_000_000,
            next_id: 1,
            lose_every: None,
            delay: 0,
            sent: 0,
        }
    }

    fn share(&self, i: usize) -> u32 {
        self.proxies[i].applied(self.now)
    }

    /// Runs `ms` steps, checking the invariant at each.
    fn run(&mut self, ms: u64) {
        for _ in 0..ms {
            self.now += 1;
            let now = self.now;
            for p in &mut self.proxies {
                p.offered += (p.demand)(now) / 1000.0;
                let (due, later): (Vec<_>, Vec<_>) =
                    p.pending.drain(..).partition(|(at, _, _)| *at <= now);
                p.pending = later;
                for (_, g, sent_at) in due {
                    p.lease = Some((g.id, g.rps, sent_at + LEASE_INTERVALS * INTERVAL));
                }
                if !p.reports || (now + p.phase) % INTERVAL != 0 {
                    continue;
                }
                let lease = p.lease.filter(|l| l.2 > now);
                let d = RouteDemand {
                    route: "codes".into(),
                    rps: N,
                    offered: p.offered as u64,
                    share_rps: lease.map_or(10, |l| l.1),
                    lease: lease.map(|l| l.0),
                    lease_expires_in_ms: lease.map(|l| l.2 - now),
                };
                self.quota.observe(&p.node, &d, INTERVAL, now);
                let granted = self.quota.grant(&p.node, now, self.started, self.next_id);
                self.next_id += 1;
                self.sent += 1;
                let lost = self.lose_every.is_some_and(|k| self.sent % k == 0);
                if let (Some(g), false) = (granted, lost) {
                    p.pending.push((now + self.delay, g, now));
                }
            }
            let _ = self.quota.forget_gone(now);
            let applied: u32 = self.proxies.iter().map(|p| p.applied(now)).sum();
            assert!(applied <= N, "at {now}: proxies apply {applied} > {N}");
            assert!(
                self.quota.held_total(now) <= u64::from(N),
                "at {now}: held > N"
            );
            // (A restarted split learns a proxy's lease from its next report.)
            for p in &self.proxies {
                if let Some(m) = self.quota.members.get(&p.node) {
                    assert!(
                        p.applied(now) <= m.held(now),
                        "{} applies more than counted",
                        p.node
                    );
                }
            }
        }
    }
}

fn busy(_: u64) -> f64 {
    400.0
}

fn idle(_: u64) -> f64 {
    0.0
}

#[test]
fn fair_share_is_floor_plus_proportional() {
    assert_eq!(fair_share(300, &[400.0, 400.0, 0.0], 0), 145);
    assert_eq!(fair_share(300, &[400.0, 400.0, 0.0], 2), 10);
    assert_eq!(fair_share(300, &[0.0, 0.0, 0.0], 1), 100);
    assert_eq!(fair_share(300, &[1.0], 0), 300);
    let all: u32 = (0..3).map(|i| fair_share(7, &[1.0, 5.0, 9.0], i)).sum();
    assert!(all <= 7);
}

#[test]
fn two_busy_one_idle_converges_and_stays_within_rps() {
    let mut sim = Sim::new(vec![
        Proxy::new(0, busy),
        Proxy::new(1, busy),
        Proxy::new(2, idle),
    ]);
    sim.run(5_000);
    let busy_sum = sim.share(0) + sim.share(1);
    assert!(busy_sum >= N * 9 / 10, "busy ones hold {busy_sum}");
    assert_eq!(sim.share(2), 10, "the idle one is at its floor");
}

#[test]
fn an_idle_proxys_share_flows_to_a_busy_one_within_2s() {
    // p0 busy until t0+5 s then idle; p2 idle until then, busy after.
    let t0 = 1_000_000;
    let mut sim = Sim::new(vec![
        Proxy::new(0, move |t| if t < t0 + 5_000 { 400.0 } else { 0.0 }),
        Proxy::new(1, busy),
        Proxy::new(2, move |t| if t < t0 + 5_000 { 0.0 } else { 400.0 }),
    ]);
    sim.run(5_000);
    assert_eq!(sim.share(2), 10);
    sim.run(2_000);
    assert!(sim.share(2) >= 130, "p2 has {}", sim.share(2));
    assert_eq!(sim.share(0), 10);
}

#[test]
fn lost_and_late_replies_never_break_the_sum() {
    for (lose, delay) in [(Some(2), 0), (Some(3), 400), (None, 499), (Some(5), 700)] {
        let mut sim = Sim::new(vec![
            Proxy::new(0, |t| if (t / 1_500) % 2 == 0 { 500.0 } else { 0.0 }),
            Proxy::new(1, |t| if (t / 2_300) % 2 == 0 { 0.0 } else { 300.0 }),
            Proxy::new(2, busy),
        ]);
        sim.lose_every = lose;
        sim.delay = delay;
        sim.run(20_000);
    }
}

#[test]
fn a_vanished_proxys_share_is_freed_after_its_lease() {
    let mut sim = Sim::new(vec![
        Proxy::new(0, busy),
        Proxy::new(1, busy),
        Proxy::new(2, busy),
    ]);
    sim.run(4_000);
    sim.proxies[2].reports = false;
    // Its lease (2 s) runs out, it stops being live (1.5 s): the others take it.
    sim.run(3_500);
    assert!(sim.share(0) + sim.share(1) >= N * 9 / 10);
    assert!(!sim.quota.members.contains_key("g/p2"), "forgotten");
}

#[test]
fn a_joining_proxy_gets_a_share_and_the_sum_holds() {
    let mut sim = Sim::new(vec![Proxy::new(0, busy), Proxy::new(1, busy)]);
    sim.run(3_000);
    assert!(sim.share(0) + sim.share(1) >= N * 9 / 10);
    sim.proxies.push(Proxy::new(2, busy));
    sim.run(3_000);
    for i in 0..3 {
        assert!(sim.share(i) >= 80, "p{i} has {}", sim.share(i));
    }
}

#[test]
fn a_restarted_split_counts_the_leases_the_proxies_report() {
    let mut sim = Sim::new(vec![
        Proxy::new(0, busy),
        Proxy::new(1, idle),
        Proxy::new(2, busy),
    ]);
    sim.run(4_000);
    // A new control plane: no memory of the grants; it must not hand out more.
    sim.quota = RouteQuota::default();
    sim.started = sim.now;
    sim.run(1_000);
    let held = sim.quota.held_total(sim.now);
    assert!(held > 0, "the reported leases are counted");
    sim.run(5_000);
    assert!(sim.share(0) + sim.share(2) >= N * 9 / 10);
}
