use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use http::{HeaderMap, HeaderName};

use super::*;
use crate::config::AdaptiveLimit;

fn fixed(limit: usize, max_queue: usize) -> Arc<AdmissionControl> {
    let config = AdmissionConfig {
        limit: ConcurrencyLimit::Fixed(limit),
        max_queue,
        queue_timeout: Duration::from_secs(1),
        // Far above any wait here: these tests are about limits and priorities.
        queue_target: Some(Duration::from_secs(1)),
        queue_interval: Duration::from_millis(100),
        priority_header: Some(HeaderName::from_static("x-priority")),
    };
    Arc::new(AdmissionControl::new(
        &config,
        &metrics::SharedString::from("test"),
    ))
}

/// A fixed limit with a queue of explicit CoDel `target` and `interval`.
fn codel(limit: usize, target_ms: u64, interval_ms: u64) -> Arc<AdmissionControl> {
    let config = AdmissionConfig {
        limit: ConcurrencyLimit::Fixed(limit),
        max_queue: 100,
        queue_timeout: Duration::from_secs(10),
        queue_target: Some(Duration::from_millis(target_ms)),
        queue_interval: Duration::from_millis(interval_ms),
        priority_header: None,
    };
    Arc::new(AdmissionControl::new(
        &config,
        &metrics::SharedString::from("test"),
    ))
}

/// Every arrival is accounted for: admitted, shed, gone while queued, or queued now.
fn assert_accounted(adm: &AdmissionControl) {
    let s = adm.status();
    assert_eq!(
        s.offered,
        s.admitted + s.shed.total + s.client_gone.queued + s.queue_depth as u64,
        "{s:?}"
    );
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

/// Yields until the queue holds `depth` waiters (spawned tasks run on yield).
async fn until_depth(adm: &AdmissionControl, depth: usize) {
    for _ in 0..1000 {
        if adm.queue_depth() == depth {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("queue depth {} never became {depth}", adm.queue_depth());
}

/// Yields until `check` holds (spawned tasks run on yield).
async fn until(check: impl Fn() -> bool) {
    for _ in 0..1000 {
        if check() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("never true");
}

/// Spawns one waiter that reports its label and result.
fn spawn(adm: &Arc<AdmissionControl>, label: &'static str, priority: Priority) -> Granted {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let adm = Arc::clone(adm);
    tokio::spawn(async move {
        let result = adm.acquire(priority, far()).await;
        let _ = tx.send((label, result));
    });
    rx
}

type Granted = tokio::sync::mpsc::UnboundedReceiver<(&'static str, Result<Permit, Shed>)>;

/// Spawns waiters in the given order, each reporting its label and result.
async fn spawn_waiters(
    adm: &Arc<AdmissionControl>,
    waiters: &[(&'static str, Priority)],
) -> Granted {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    for (label, priority) in waiters.iter().copied() {
        let (adm2, tx) = (Arc::clone(adm), tx.clone());
        let before = adm.queue_depth();
        tokio::spawn(async move {
            let result = adm2.acquire(priority, far()).await;
            let _ = tx.send((label, result));
        });
        until_depth(adm, before + 1).await;
    }
    rx
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_by_priority_then_fifo() {
    let adm = fixed(1, 10);
    let first = adm.acquire(Priority::Normal, far()).await.unwrap();
    let mut granted = spawn_waiters(
        &adm,
        &[
            ("s1", Priority::Sheddable),
            ("n1", Priority::Normal),
            ("c1", Priority::Critical),
            ("s2", Priority::Sheddable),
            ("n2", Priority::Normal),
            ("c2", Priority::Critical),
        ],
    )
    .await;
    assert_eq!(adm.queue_depth(), 6);
    drop(first);
    let mut order = Vec::new();
    for _ in 0..6 {
        let (label, permit) = granted.recv().await.unwrap();
        order.push(label);
        assert_eq!(adm.in_flight(), 1, "one at a time");
        drop(permit.unwrap());
    }
    assert_eq!(order, ["c1", "c2", "n1", "n2", "s1", "s2"]);
    assert_eq!((adm.in_flight(), adm.queue_depth()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn full_queue_sheds_or_displaces_the_newest_lower_priority_waiter() {
    let adm = fixed(1, 2);
    let first = adm.acquire(Priority::Normal, far()).await.unwrap();
    let mut granted = spawn_waiters(
        &adm,
        &[("s1", Priority::Sheddable), ("s2", Priority::Sheddable)],
    )
    .await;
    // Full, and nothing below sheddable to displace.
    assert_eq!(
        adm.acquire(Priority::Sheddable, far()).await.unwrap_err(),
        Shed::QueueFull
    );
    // A critical arrival takes the place of the newest sheddable waiter.
    let critical = tokio::spawn({
        let adm = Arc::clone(&adm);
        async move { adm.acquire(Priority::Critical, far()).await.map(drop) }
    });
    let (label, result) = granted.recv().await.unwrap();
    assert_eq!((label, result.unwrap_err()), ("s2", Shed::Displaced));
    until_depth(&adm, 2).await;
    drop(first);
    critical.await.unwrap().unwrap();
    let (label, result) = granted.recv().await.unwrap();
    assert_eq!(label, "s1");
    drop(result.unwrap());
    assert_eq!((adm.in_flight(), adm.queue_depth()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn no_queue_sheds_at_once() {
    let adm = fixed(1, 0);
    let _first = adm.acquire(Priority::Normal, far()).await.unwrap();
    assert_eq!(
        adm.acquire(Priority::Critical, far()).await.unwrap_err(),
        Shed::QueueFull
    );
}

#[tokio::test(start_paused = true)]
async fn deadline_sheds_and_leaves_the_queue() {
    let adm = fixed(1, 10);
    let first = adm.acquire(Priority::Normal, far()).await.unwrap();
    let start = Instant::now();
    let deadline = start + Duration::from_millis(100);
    let err = adm.acquire(Priority::Normal, deadline).await.unwrap_err();
    assert_eq!(err, Shed::QueueTimeout);
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!((adm.in_flight(), adm.queue_depth()), (1, 0));
    drop(first);
    assert_eq!(adm.in_flight(), 0, "no slot handed to the gone waiter");
    let _again = adm.try_acquire().unwrap();
}

#[tokio::test(start_paused = true)]
async fn dropped_waiter_leaves_the_queue_at_once() {
    let adm = fixed(1, 10);
    let _first = adm.acquire(Priority::Normal, far()).await.unwrap();
    let task = tokio::spawn({
        let adm = Arc::clone(&adm);
        async move { adm.acquire(Priority::Normal, far()).await.map(drop) }
    });
    until_depth(&adm, 1).await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert_eq!(adm.queue_depth(), 0);
    assert_eq!(adm.in_flight(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_grant_to_a_dropped_waiter_passes_on() {
    let adm = fixed(1, 10);
    let first = adm.acquire(Priority::Normal, far()).await.unwrap();
    let mut w1 = Box::pin(adm.acquire(Priority::Critical, far()));
    assert!((&mut w1).now_or_never().is_none());
    let mut w2 = Box::pin(adm.acquire(Priority::Normal, far()));
    assert!((&mut w2).now_or_never().is_none());
    assert_eq!(adm.queue_depth(), 2);
    // The slot goes to w1, whose client leaves before it looks.
    drop(first);
    assert_eq!((adm.in_flight(), adm.queue_depth()), (1, 1));
    drop(w1);
    // w2 got the slot instead of it being lost.
    let permit = (&mut w2).now_or_never().expect("w2 granted").unwrap();
    assert_eq!((adm.in_flight(), adm.queue_depth()), (1, 0));
    drop(permit);
    assert_eq!(adm.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn tombstones_are_compacted() {
    let adm = fixed(1, 1000);
    let _first = adm.acquire(Priority::Normal, far()).await.unwrap();
    for _ in 0..500 {
        let mut w = Box::pin(adm.acquire(Priority::Sheddable, far()));
        assert!((&mut w).now_or_never().is_none());
    }
    assert_eq!(adm.queue_depth(), 0);
    assert!(adm.lock().waiters.stored() <= 65);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_limit_holds_under_concurrent_load() {
    let adm = fixed(5, 1000);
    let now = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let (adm, now, max) = (Arc::clone(&adm), Arc::clone(&now), Arc::clone(&max));
        let priority = [Priority::Critical, Priority::Normal, Priority::Sheddable][i % 3];
        tasks.spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            let permit = adm.acquire(priority, deadline).await.unwrap();
            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_micros(200)).await;
            now.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let max = max.load(Ordering::SeqCst);
    assert!((1..=5).contains(&max), "max in flight {max}");
    assert_eq!((adm.in_flight(), adm.queue_depth()), (0, 0));
}

#[test]
fn priority_header_is_read_when_configured_and_valid() {
    let adm = fixed(1, 1);
    let mut h = HeaderMap::new();
    assert_eq!(adm.header_priority(&h), None);
    h.insert("x-priority", http::HeaderValue::from_static(" Critical "));
    assert_eq!(adm.header_priority(&h), Some(Priority::Critical));
    h.insert("x-priority", http::HeaderValue::from_static("sheddable"));
    assert_eq!(adm.header_priority(&h), Some(Priority::Sheddable));
    h.insert("x-priority", http::HeaderValue::from_static("urgent"));
    assert_eq!(adm.header_priority(&h), None);
}

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

#[tokio::test(start_paused = true)]
async fn adaptive_admission_publishes_the_limit_and_admits_more_waiters() {
    let config = AdmissionConfig {
        limit: ConcurrencyLimit::Adaptive(params(1, 3, 10, 2.0)),
        max_queue: 10,
        queue_timeout: Duration::from_secs(10),
        queue_target: Some(Duration::from_secs(5)),
        queue_interval: Duration::from_millis(100),
        priority_header: None,
    };
    let adm = Arc::new(AdmissionControl::new(
        &config,
        &metrics::SharedString::from("t"),
    ));
    assert_eq!(adm.limit(), 3, "the first window runs at the initial limit");
    let mut slots = Vec::new();
    for _ in 0..3 {
        slots.push(adm.acquire(Priority::Normal, far()).await.unwrap());
    }
    let mut granted = spawn_waiters(
        &adm,
        &[
            ("a", Priority::Normal),
            ("b", Priority::Normal),
            ("c", Priority::Normal),
        ],
    )
    .await;
    tokio::time::advance(Duration::from_millis(1050)).await;
    // Demand filled the first window (a lone sample closes it after ten
    // intervals): the next window measures the floor at the minimum limit.
    slots.remove(0).complete(Some(Duration::from_millis(50)));
    assert_eq!((adm.limit(), adm.queue_depth()), (1, 3));
    slots.clear();
    let (label, first) = granted.recv().await.unwrap();
    assert_eq!(label, "a");
    assert_eq!((adm.in_flight(), adm.queue_depth()), (1, 2));
    // Its sample ends the measurement: the limit is back at 3, and the one
    // release admits both remaining waiters.
    tokio::time::advance(Duration::from_millis(1050)).await;
    first.unwrap().complete(Some(Duration::from_millis(50)));
    assert_eq!(adm.limit(), 3);
    let mut permits = Vec::new();
    for _ in 0..2 {
        permits.push(granted.recv().await.unwrap().1.unwrap());
    }
    assert_eq!((adm.in_flight(), adm.queue_depth()), (2, 0));
}

#[tokio::test(start_paused = true)]
async fn a_standing_queue_sheds_waiters_older_than_the_target() {
    let adm = codel(1, 50, 100);
    let first = adm.acquire(Priority::Normal, far()).await.unwrap();
    let mut granted = spawn_waiters(&adm, &[("a", Priority::Normal)]).await;
    // a turns 50 ms old at +50ms: above target, but not yet for a whole interval.
    tokio::time::advance(Duration::from_millis(120)).await;
    adm.check_queue();
    assert_eq!(adm.queue_depth(), 1);
    assert!(!adm.status().queue_standing);
    // At +200ms the delay has stayed above 50 ms for 150 ms: standing. The next
    // look at the queue (a's own check or an arrival) finds it so and sheds a.
    tokio::time::advance(Duration::from_millis(80)).await;
    let mut more = spawn(&adm, "b", Priority::Normal);
    let (label, result) = granted.recv().await.unwrap();
    assert_eq!((label, result.unwrap_err()), ("a", Shed::QueueDelay));
    until(|| adm.status().queued == 2).await;
    let s = adm.status();
    assert!(s.queue_standing);
    assert_eq!((s.queue_depth, s.shed.queue_delay), (1, 1));
    // b is shed by its own check once it has waited longer than the target.
    let start = Instant::now();
    let (label, result) = more.recv().await.unwrap();
    assert_eq!((label, result.unwrap_err()), ("b", Shed::QueueDelay));
    assert!(
        start.elapsed() <= Duration::from_millis(52),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(adm.status().shed.queue_delay, 2);
    assert_accounted(&adm);
    // A slot that frees up with nobody waiting does not end the episode at once
    // (a short standing queue empties now and then under overload); an empty
    // interval does.
    drop(first);
    let p = adm.acquire(Priority::Normal, far()).await.unwrap();
    assert!(adm.status().queue_standing);
    drop(p);
    tokio::time::advance(Duration::from_millis(101)).await;
    let _p = adm.acquire(Priority::Normal, far()).await.unwrap();
    assert!(!adm.status().queue_standing);
    assert_accounted(&adm);
}

#[tokio::test(start_paused = true)]
async fn a_standing_queue_is_short_refuses_at_once_and_serves_by_priority_then_oldest() {
    let adm = codel(32, 50, 100);
    // Answers of 8 ms: the standing queue's room is 4.
    let p = adm.acquire(Priority::Normal, far()).await.unwrap();
    p.complete(Some(Duration::from_millis(8)));
    let mut slots = Vec::new();
    for _ in 0..32 {
        slots.push(adm.acquire(Priority::Normal, far()).await.unwrap());
    }
    let mut old = spawn_waiters(&adm, &[("old", Priority::Normal)]).await;
    tokio::time::advance(Duration::from_millis(200)).await;
    adm.check_queue();
    assert_eq!(old.recv().await.unwrap().1.unwrap_err(), Shed::QueueDelay);
    assert!(
        adm.status().queue_standing,
        "emptied by shedding: still standing"
    );
    let mut granted = spawn_waiters(
        &adm,
        &[
            ("n1", Priority::Normal),
            ("s1", Priority::Sheddable),
            ("c1", Priority::Critical),
            ("n2", Priority::Normal),
        ],
    )
    .await;
    // Full to its room: an arrival that outranks a waiter takes its place ...
    let mut n3 = spawn(&adm, "n3", Priority::Normal);
    let (label, result) = granted.recv().await.unwrap();
    assert_eq!((label, result.unwrap_err()), ("s1", Shed::Displaced));
    until(|| adm.queue_depth() == 4).await;
    // ... one that outranks nobody is refused at once, having waited for nothing.
    let mut n4 = spawn(&adm, "n4", Priority::Normal);
    assert_eq!(n4.recv().await.unwrap().1.unwrap_err(), Shed::QueueFull);
    let mut s2 = spawn(&adm, "s2", Priority::Sheddable);
    assert_eq!(s2.recv().await.unwrap().1.unwrap_err(), Shed::QueueFull);
    assert_eq!(adm.queue_depth(), 4);
    // Served by priority, then oldest first: within its room nobody is left behind.
    let mut order = Vec::new();
    for _ in 0..4 {
        drop(slots.pop());
        let (label, permit) = tokio::select! {
            Some(g) = granted.recv() => g,
            Some(g) = n3.recv() => g,
        };
        order.push(label);
        slots.insert(0, permit.unwrap());
    }
    assert_eq!(order, ["c1", "n1", "n2", "n3"]);
    let s = adm.status();
    assert_eq!((s.queued, s.shed.total), (6, 4));
    assert_eq!((s.shed.queue_full, s.shed.superseded), (2, 0));
    assert_accounted(&adm);
}

#[tokio::test(start_paused = true)]
async fn a_backlog_larger_than_the_room_serves_newest_first() {
    let adm = codel(2, 50, 100);
    // Answers of 1 ms: with a limit of 2, the room is 2.
    let p = adm.acquire(Priority::Normal, far()).await.unwrap();
    p.complete(Some(Duration::from_millis(1)));
    let mut slots = vec![
        adm.acquire(Priority::Normal, far()).await.unwrap(),
        adm.acquire(Priority::Normal, far()).await.unwrap(),
    ];
    let mut old = spawn_waiters(&adm, &[("old", Priority::Normal)]).await;
    tokio::time::advance(Duration::from_millis(200)).await;
    adm.check_queue();
    assert_eq!(old.recv().await.unwrap().1.unwrap_err(), Shed::QueueDelay);
    let mut granted =
        spawn_waiters(&adm, &[("a", Priority::Normal), ("b", Priority::Normal)]).await;
    // A much slower answer shrinks the room to 1: until the next arrival trims it,
    // the queue holds a backlog, and the slot that answer frees goes to the newest.
    let p = slots.pop().unwrap();
    p.complete(Some(Duration::from_secs(1)));
    let (label, permit) = granted.recv().await.unwrap();
    assert_eq!(label, "b");
    slots.push(permit.unwrap());
    assert_accounted(&adm);
}
#[tokio::test(start_paused = true)]
async fn a_queue_that_drains_within_the_interval_is_served_fifo_and_sheds_nothing() {
    let adm = codel(1, 5, 100);
    let mut first = Some(adm.acquire(Priority::Normal, far()).await.unwrap());
    let mut granted = spawn_waiters(
        &adm,
        &[
            ("a", Priority::Normal),
            ("b", Priority::Normal),
            ("c", Priority::Normal),
        ],
    )
    .await;
    // Each request holds the slot 30 ms: waits reach 90 ms, above the 5 ms target
    // but for less than the 100 ms interval: a burst the interval absorbs is
    // queued and served oldest first, not shed.
    let mut order = Vec::new();
    for _ in 0..3 {
        tokio::time::advance(Duration::from_millis(30)).await;
        drop(first.take());
        let (label, permit) = granted.recv().await.unwrap();
        order.push(label);
        first = Some(permit.unwrap());
    }
    assert_eq!(order, ["a", "b", "c"]);
    let s = adm.status();
    assert_eq!((s.shed.total, s.queue_standing), (0, false));
}

#[tokio::test(start_paused = true)]
async fn a_queue_longer_than_an_interval_of_service_stands_at_once() {
    let adm = codel(1, 5, 100);
    // One answer of 30 ms: the app serves about 3 requests per 100 ms interval.
    let p = adm.acquire(Priority::Normal, far()).await.unwrap();
    p.complete(Some(Duration::from_millis(30)));
    let _first = adm.acquire(Priority::Normal, far()).await.unwrap();
    let _granted = spawn_waiters(
        &adm,
        &[
            ("a", Priority::Normal),
            ("b", Priority::Normal),
            ("c", Priority::Normal),
        ],
    )
    .await;
    assert!(
        !adm.status().queue_standing,
        "90 ms of work drains within 100 ms"
    );
    // A fourth waiter: 120 ms of work, more than an interval: standing now, with
    // no time passed, and the backlog keeps only its newest waiter (the room of
    // one slot of 30 ms): the three before it are superseded.
    let mut more = spawn(&adm, "d", Priority::Normal);
    until(|| adm.status().shed.superseded == 3).await;
    let s = adm.status();
    assert!(s.queue_standing, "{s:?}");
    assert_eq!((s.shed.superseded, s.queue_depth), (3, 1));
    // A fifth finds the room taken and is refused at once.
    let mut e = spawn(&adm, "e", Priority::Normal);
    assert_eq!(e.recv().await.unwrap().1.unwrap_err(), Shed::QueueFull);
    assert_eq!(adm.queue_depth(), 1);
    assert!(more.try_recv().is_err(), "d still waits");
    assert_accounted(&adm);
}

#[tokio::test(start_paused = true)]
async fn waiters_that_go_away_are_counted_apart_from_deadlines() {
    let adm = fixed(1, 10);
    let _first = adm.acquire(Priority::Normal, far()).await.unwrap();
    let deadline = Instant::now() + Duration::from_millis(100);
    let mut gone = Box::pin(adm.acquire(Priority::Normal, deadline));
    assert!((&mut gone).now_or_never().is_none());
    let mut timed = Box::pin(adm.acquire(Priority::Normal, deadline));
    assert!((&mut timed).now_or_never().is_none());
    drop(gone);
    assert_eq!(adm.status().client_gone.queued, 1);
    // Dropped at its deadline (as the route timeout does): a queue timeout.
    tokio::time::advance(Duration::from_millis(100)).await;
    drop(timed);
    let s = adm.status();
    assert_eq!((s.client_gone.queued, s.shed.queue_timeout), (1, 1));
    assert_eq!(s.queue_depth, 0);
    assert_accounted(&adm);
}
