//! Deadline timers reused from request to request, pooled per worker thread.
//!
//! A fresh tokio `Sleep` per request costs a timer-wheel insert on its first poll
//! and a removal under the time driver's lock when it is dropped. A pooled one,
//! reset to a later deadline than it had, only moves its expiry forward (one
//! atomic update); the wheel re-files it when the old expiry comes round. Most
//! routes share one timeout, so nearly every reset moves the deadline forward.
//!
//! A timer belongs to the runtime that made it, so pooling is switched on only on
//! a thread that runs one runtime for as long as the switch is on (each worker, see
//! [`enable`]); elsewhere every deadline gets a timer of its own.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

/// Timers kept per thread at most; a burst's extra timers are dropped, not kept.
const POOL_MAX: usize = 1024;

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(false) };
    static POOL: RefCell<Vec<Pin<Box<Sleep>>>> = const { RefCell::new(Vec::new()) };
}

/// Switches pooling on for the calling thread until the guard is dropped, which
/// empties the pool. Call inside the runtime that the thread runs for that time.
pub fn enable() -> PoolGuard {
    ENABLED.with(|e| e.set(true));
    PoolGuard {
        _not_send: std::marker::PhantomData,
    }
}

/// Keeps timer pooling on for its thread; dropping it switches pooling off.
pub struct PoolGuard {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for PoolGuard {
    fn drop(&mut self) {
        let _ = ENABLED.try_with(|e| e.set(false));
        let timers = POOL
            .try_with(|p| p.try_borrow_mut().map(|mut p| std::mem::take(&mut *p)))
            .ok()
            .and_then(Result::ok);
        drop(timers);
    }
}

/// A timer that fires at a deadline: taken from the thread's pool when there is
/// one and given back when dropped.
#[derive(Debug)]
pub struct Deadline {
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Deadline {
    /// A timer firing at `deadline`.
    pub fn at(deadline: Instant) -> Self {
        let sleep = match take_pooled() {
            Some(mut sleep) => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        Self { sleep: Some(sleep) }
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.sleep.as_mut() {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if let Some(sleep) = self.sleep.take() {
            give_back(sleep);
        }
    }
}

fn enabled() -> bool {
    ENABLED.try_with(Cell::get).unwrap_or(false)
}

fn take_pooled() -> Option<Pin<Box<Sleep>>> {
    if !enabled() {
        return None;
    }
    POOL.try_with(|p| p.try_borrow_mut().ok().and_then(|mut p| p.pop()))
        .ok()
        .flatten()
}

fn give_back(sleep: Pin<Box<Sleep>>) {
    if !enabled() {
        return;
    }
    let _ = POOL.try_with(|p| {
        if let Ok(mut pool) = p.try_borrow_mut() {
            if pool.len() < POOL_MAX {
                pool.push(sleep);
            }
        }
    });
}

#[cfg(test)]
fn pooled() -> usize {
    POOL.with(|p| p.borrow().len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_pooled_timer_fires_at_its_new_deadline_earlier_or_later() {
        let guard = enable();
        let start = Instant::now();
        // Leaves a timer in the pool, registered for start + 10 s.
        let mut first = Box::pin(Deadline::at(start + Duration::from_secs(10)));
        assert!(futures_util::FutureExt::now_or_never(first.as_mut()).is_none());
        drop(first);
        assert_eq!(pooled(), 1);

        // Reused with a later deadline: fires then, not at the old one.
        Deadline::at(start + Duration::from_secs(30)).await;
        let waited = Instant::now() - start;
        assert!(
            waited >= Duration::from_secs(30) && waited < Duration::from_secs(31),
            "{waited:?}"
        );
        assert_eq!(pooled(), 1, "given back");

        // Reused with an earlier deadline than its last one: fires on time too.
        let mid = Instant::now();
        Deadline::at(mid + Duration::from_secs(1)).await;
        let waited = Instant::now() - mid;
        assert!(
            waited >= Duration::from_secs(1) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
        drop(guard);
        assert_eq!(pooled(), 0, "the guard empties the pool");
    }

    #[tokio::test(start_paused = true)]
    async fn without_pooling_each_deadline_has_its_own_timer() {
        let start = Instant::now();
        Deadline::at(start + Duration::from_secs(2)).await;
        assert!(Instant::now() - start >= Duration::from_secs(2));
        assert_eq!(pooled(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_pool_keeps_at_most_pool_max_timers() {
        let _guard = enable();
        let deadline = Instant::now() + Duration::from_secs(5);
        let many: Vec<Deadline> = (0..POOL_MAX + 10).map(|_| Deadline::at(deadline)).collect();
        drop(many);
        assert_eq!(pooled(), POOL_MAX);
    }
}
