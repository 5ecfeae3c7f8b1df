//! The app's capacity model: a fair (FIFO) semaphore of `workers` slots and a bounded
//! count of waiters.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde::Serialize;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Worker slots, the wait queue and the app's counters.
#[derive(Debug)]
pub struct Capacity {
    slots: Semaphore,
    max_queue: usize,
    queued: AtomicUsize,
    in_service: AtomicUsize,
    served: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
    scans: AtomicU64,
}

/// A snapshot of the counters (`GET /stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Stats {
    /// Requests that got a worker slot and were answered (2xx or injected 500).
    pub served: u64,
    /// Requests answered 503 because the queue was full.
    pub rejected: u64,
    /// Requests answered 500 by `--fail-rate`.
    pub failed: u64,
    /// Requests holding a worker slot now.
    pub in_service: u64,
    /// Requests waiting for a slot now.
    pub queued: u64,
    /// Scans recorded by `POST /api/v1/scans`.
    pub scans: u64,
}

/// A held worker slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot<'a> {
    _permit: SemaphorePermit<'a>,
    cap: &'a Capacity,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.cap.in_service.fetch_sub(1, Ordering::Relaxed);
        self.cap.served.fetch_add(1, Ordering::Relaxed);
    }
}

/// Decrements the queue count even if the waiting request is cancelled.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Capacity {
    /// `workers` slots (at least 1) and room for `max_queue` waiters.
    pub fn new(workers: usize, max_queue: usize) -> Self {
        Self {
            slots: Semaphore::new(workers.max(1)),
            max_queue,
            queued: AtomicUsize::new(0),
            in_service: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            scans: AtomicU64::new(0),
        }
    }

    /// Takes a slot, waiting in FIFO order; `None` (answer 503) when the queue is full.
    pub async fn admit(&self) -> Option<Slot<'_>> {
        let permit = match self.slots.try_acquire() {
            Ok(p) => p,
            Err(_) => {
                if self.queued.fetch_add(1, Ordering::Relaxed) >= self.max_queue {
                    self.queued.fetch_sub(1, Ordering::Relaxed);
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                let _waiting = Waiting(&self.queued);
                self.slots.acquire().await.ok()?
            }
        };
        self.in_service.fetch_add(1, Ordering::Relaxed);
        Some(Slot {
            _permit: permit,
            cap: self,
        })
    }

    /// Counts an injected failure.
    pub fn count_failure(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one scan and returns the new total.
    pub fn record_scan(&self) -> u64 {
        self.scans.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        Stats {
            served: self.served.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            in_service: self.in_service.load(Ordering::Relaxed) as u64,
            queued: self.queued.load(Ordering::Relaxed) as u64,
            scans: self.scans.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queue_beyond_max_is_rejected() {
        let cap = Capacity::new(1, 1);
        let held = cap.admit().await.unwrap();
        // One waiter fits in the queue…
        let waiter = cap.admit();
        tokio::pin!(waiter);
        assert!(futures_poll_once(waiter.as_mut()).await.is_none());
        assert_eq!(cap.stats().queued, 1);
        // …the next is refused at once.
        assert!(cap.admit().await.is_none());
        assert_eq!(cap.stats().rejected, 1);
        drop(held);
        assert!(waiter.await.is_some());
        assert_eq!(cap.stats().queued, 0);
        assert_eq!(cap.stats().served, 2);
    }

    /// Polls a future once; `Some` if it completed.
    async fn futures_poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
        let mut f = f;
        tokio::select! {
            biased;
            v = &mut f => Some(v),
            _ = std::future::ready(()) => None,
        }
    }
}
