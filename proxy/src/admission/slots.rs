//! A cluster's in-flight count, shared by every worker without a lock: the common case
//! (room, nobody waiting) takes and frees a slot with one atomic operation each, and
//! only a queue, a standing queue or a latency sample takes the controller's lock.
//!
//! The lock-free path admits only while the gate is open (no waiter, no standing
//! queue). Whoever closes the gate (under the lock) reads the count after closing it,
//! and whoever frees a slot reads the gate after freeing it, both sequentially
//! consistent: so a slot freed while a waiter was being queued is always handed on,
//! by one side or the other.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

/// The in-flight count, the limit it is held to and the gate of the lock-free path.
pub(super) struct Slots {
    in_flight: AtomicUsize,
    limit: AtomicUsize,
    open: AtomicBool,
}

impl Slots {
    /// No request in flight, the gate open under `limit`.
    pub(super) fn new(limit: usize) -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
            open: AtomicBool::new(true),
        }
    }

    /// Requests in flight now.
    pub(super) fn count(&self) -> usize {
        self.in_flight.load(SeqCst)
    }

    /// Takes a slot if fewer than `limit` are in flight; the count with it.
    pub(super) fn take(&self, limit: usize) -> Option<usize> {
        self.in_flight
            .fetch_update(SeqCst, SeqCst, |n| (n < limit).then_some(n + 1))
            .ok()
            .map(|n| n + 1)
    }

    /// Takes a slot without the lock: only while the gate is open, under the
    /// limit last published.
    pub(super) fn take_if_open(&self) -> Option<usize> {
        if !self.open.load(SeqCst) {
            return None;
        }
        self.take(self.limit.load(SeqCst))
    }

    /// Frees a slot; whether the gate was open afterwards (closed: the caller must
    /// take the lock and hand the slot on to a waiter).
    pub(super) fn free(&self) -> bool {
        // Never below zero: the closure always returns `Some`.
        let _ = self
            .in_flight
            .fetch_update(SeqCst, SeqCst, |n| Some(n.saturating_sub(1)));
        self.open.load(SeqCst)
    }

    /// Publishes, from under the lock, the limit and whether the lock-free path may
    /// admit; true when the gate is closed and a slot is free (a slot freed while it
    /// closed, which the caller must hand on while it holds the lock).
    pub(super) fn publish(&self, limit: usize, open: bool) -> bool {
        self.limit.store(limit, SeqCst);
        self.open.store(open, SeqCst);
        !open && self.count() < limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_taken_up_to_the_limit_and_freed() {
        let slots = Slots::new(2);
        assert_eq!(slots.take_if_open(), Some(1));
        assert_eq!(slots.take(2), Some(2));
        assert_eq!(slots.take_if_open(), None, "at the limit");
        assert!(slots.free(), "the gate is open");
        assert_eq!(slots.count(), 1);
        assert_eq!(slots.take(1), None, "a lower limit holds what is in flight");
    }

    #[test]
    fn a_closed_gate_stops_the_lock_free_path_and_reports_a_free_slot() {
        let slots = Slots::new(2);
        assert_eq!(slots.take_if_open(), Some(1));
        assert!(
            slots.publish(2, false),
            "closed with a slot free: hand it on"
        );
        assert_eq!(slots.take_if_open(), None, "closed");
        assert_eq!(slots.take(2), Some(2), "the locked path still takes slots");
        assert!(!slots.publish(2, false), "closed and full: nothing owed");
        assert!(!slots.free(), "freed while closed: the caller hands it on");
        assert!(!slots.publish(2, true), "open: nothing owed");
    }

    #[test]
    fn freeing_never_goes_below_zero() {
        let slots = Slots::new(1);
        assert!(slots.free());
        assert_eq!(slots.count(), 0);
    }
}
