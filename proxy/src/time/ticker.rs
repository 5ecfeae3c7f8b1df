//! Periodic ticks shared by every connection of a thread: one tokio timer per
//! (thread, period) wakes all the connections waiting on it, instead of a timer
//! (a boxed `Sleep` and its timer-wheel entry) per connection.
//!
//! A connection's wait is a [`Tick`] future inline in its task; dropping it (the
//! connection ended) takes it off the ticker's list, so a ticker never keeps an
//! ended connection's task alive. The timer runs as a task of the runtime that
//! first asked for the period on that thread, and stops when no connection holds
//! the ticker any more (or with its runtime: the next ask starts a new one).

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;
use tokio::time::MissedTickBehavior;

/// The wait for a [`Ticker`]'s next tick.
pub type Tick = OwnedNotified;

/// A shared periodic tick; cloning it shares it.
#[derive(Clone, Debug)]
pub struct Ticker {
    notify: Arc<Notify>,
}

impl Ticker {
    /// Completes at the ticker's next tick after this call (the wait is on the
    /// ticker's list from its first poll).
    pub fn tick(&self) -> Tick {
        Arc::clone(&self.notify).notified_owned()
    }
}

/// A ticker of this thread: its period, the ticks, and whether its timer task runs.
struct Entry {
    period: Duration,
    notify: Weak<Notify>,
    running: Arc<AtomicBool>,
}

thread_local! {
    static TICKERS: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

/// This thread's ticker of `period`, its timer started on the current tokio
/// runtime when there is none yet. Call inside a runtime.
pub fn shared(period: Duration) -> Ticker {
    let found = TICKERS.try_with(|tickers| {
        let mut tickers = tickers.borrow_mut();
        tickers.retain(|e| e.running.load(Ordering::Acquire) && e.notify.strong_count() > 0);
        if let Some(notify) = tickers
            .iter()
            .filter(|e| e.period == period)
            .find_map(|e| e.notify.upgrade())
        {
            return Ticker { notify };
        }
        let ticker = start(period);
        tickers.push(Entry {
            period,
            notify: Arc::downgrade(&ticker.0.notify),
            running: ticker.1,
        });
        ticker.0
    });
    // A thread being torn down: a ticker of its own, not shared.
    found.unwrap_or_else(|_| start(period).0)
}

/// A new ticker of `period` and its timer task's running flag.
fn start(period: Duration) -> (Ticker, Arc<AtomicBool>) {
    let notify = Arc::new(Notify::new());
    let running = Arc::new(AtomicBool::new(true));
    tokio::spawn(run(
        Arc::downgrade(&notify),
        period,
        Running(Arc::clone(&running)),
    ));
    (Ticker { notify }, running)
}

/// Clears the running flag when the timer task ends or its runtime drops it.
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The timer task: wakes every waiting connection each period, until none holds the ticker.
async fn run(notify: Weak<Notify>, period: Duration, _running: Running) {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(notify) = notify.upgrade() else {
            return;
        };
        notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll};

    fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        let waker = futures_util::task::noop_waker();
        f.poll(&mut Context::from_waker(&waker))
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_of_one_period_share_a_ticker_and_all_wake_each_tick() {
        let a = shared(Duration::from_secs(1));
        let b = shared(Duration::from_secs(1));
        let other = shared(Duration::from_secs(3));
        assert!(Arc::ptr_eq(&a.notify, &b.notify));
        assert!(!Arc::ptr_eq(&a.notify, &other.notify));
        let mut ta = pin!(a.tick());
        let mut tb = pin!(b.tick());
        let mut t3 = pin!(other.tick());
        assert!(poll_once(ta.as_mut()).is_pending());
        assert!(poll_once(tb.as_mut()).is_pending());
        assert!(poll_once(t3.as_mut()).is_pending());
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(poll_once(ta.as_mut()).is_ready());
        assert!(poll_once(tb.as_mut()).is_ready());
        assert!(poll_once(t3.as_mut()).is_pending(), "its period is 3 s");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(poll_once(t3.as_mut()).is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn a_ticker_nobody_holds_stops_and_a_new_one_is_made() {
        let first = shared(Duration::from_secs(1));
        let weak = Arc::downgrade(&first.notify);
        drop(first);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(weak.strong_count(), 0);
        let again = shared(Duration::from_secs(1));
        let mut tick = pin!(again.tick());
        assert!(poll_once(tick.as_mut()).is_pending());
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(poll_once(tick.as_mut()).is_ready(), "the new ticker ticks");
    }
}
