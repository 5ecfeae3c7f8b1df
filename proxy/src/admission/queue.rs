//! The priority queue of requests waiting for admission.
//!
//! Three FIFO queues, one per [`Priority`], served critical → normal → sheddable,
//! oldest first. Each waiter is the sending half of a oneshot channel; a waiter
//! that left (its receiver closed) stays stored as a tombstone that the next pop
//! skips, and the tombstones are dropped in one pass once they outnumber the live
//! waiters. The queue knows nothing of limits: the controller decides who may be
//! granted, under its lock.

use std::collections::VecDeque;

use tokio::sync::oneshot;

use crate::config::Priority;

/// What a queued waiter is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Grant {
    /// A slot is the waiter's.
    Admitted,
    /// A higher-priority arrival took the waiter's place in a full queue.
    Displaced,
}

/// One queued waiter. A closed sender (the waiter left) is a tombstone that the
/// next pop skips; [`Waiters::len`] already stopped counting it.
pub(super) struct Entry {
    tx: oneshot::Sender<Grant>,
}

impl Entry {
    fn is_live(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Tells the waiter; false when it left in the meantime.
    pub(super) fn send(self, grant: Grant) -> bool {
        self.tx.send(grant).is_ok()
    }
}

/// Queue index of a priority: 0 critical, 1 normal, 2 sheddable.
fn class(p: Priority) -> usize {
    match p {
        Priority::Critical => 0,
        Priority::Normal => 1,
        Priority::Sheddable => 2,
    }
}

/// The waiters of one cluster, by priority.
#[derive(Default)]
pub(super) struct Waiters {
    /// One FIFO per priority, indexed by [`class`].
    queues: [VecDeque<Entry>; 3],
    /// Live waiters (tombstones excluded).
    depth: usize,
    /// Tombstones still stored in the queues.
    tombstones: usize,
}

impl Waiters {
    /// Live waiters.
    pub(super) fn len(&self) -> usize {
        self.depth
    }

    /// True when no live waiter is queued.
    pub(super) fn is_empty(&self) -> bool {
        self.depth == 0
    }

    /// Queues a waiter of `priority` last in its class; it hears on the receiver.
    pub(super) fn push(&mut self, priority: Priority) -> oneshot::Receiver<Grant> {
        let (tx, rx) = oneshot::channel();
        if let Some(q) = self.queues.get_mut(class(priority)) {
            q.push_back(Entry { tx });
            self.depth += 1;
        }
        rx
    }

    /// Pops the next live waiter, highest priority first, oldest first.
    pub(super) fn pop_next(&mut self) -> Option<Entry> {
        for q in 0..self.queues.len() {
            while let Some(entry) = self.queues.get_mut(q).and_then(VecDeque::pop_front) {
                if entry.is_live() {
                    self.depth = self.depth.saturating_sub(1);
                    return Some(entry);
                }
                self.tombstones = self.tombstones.saturating_sub(1);
            }
        }
        None
    }

    /// Pops the newest live waiter of the lowest priority strictly below `than`.
    pub(super) fn pop_victim(&mut self, than: Priority) -> Option<Entry> {
        for q in (class(than) + 1..self.queues.len()).rev() {
            while let Some(entry) = self.queues.get_mut(q).and_then(VecDeque::pop_back) {
                if entry.is_live() {
                    self.depth = self.depth.saturating_sub(1);
                    return Some(entry);
                }
                self.tombstones = self.tombstones.saturating_sub(1);
            }
        }
        None
    }

    /// Counts a waiter that closed its receiver while queued: its entry is now a
    /// tombstone. Drops the tombstones once they outnumber live waiters
    /// (amortised O(1) per waiter).
    pub(super) fn left(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        self.tombstones += 1;
        if self.tombstones > 64 && self.tombstones > self.depth {
            for q in &mut self.queues {
                q.retain(Entry::is_live);
            }
            self.tombstones = 0;
        }
    }

    /// Entries stored, tombstones included.
    #[cfg(test)]
    pub(super) fn stored(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_priority_then_oldest_first() {
        let mut w = Waiters::default();
        let mut rxs: Vec<_> = [Priority::Sheddable, Priority::Normal, Priority::Critical]
            .into_iter()
            .cycle()
            .take(6)
            .map(|p| w.push(p))
            .collect();
        assert_eq!(w.len(), 6);
        let mut order = Vec::new();
        while let Some(entry) = w.pop_next() {
            assert!(entry.send(Grant::Admitted));
            let i = rxs
                .iter_mut()
                .position(|rx| rx.try_recv() == Ok(Grant::Admitted))
                .unwrap();
            order.push(i);
        }
        assert_eq!(order, [2, 5, 1, 4, 0, 3]);
        assert!(w.is_empty());
    }

    #[test]
    fn the_victim_is_the_newest_strictly_lower_waiter() {
        let mut w = Waiters::default();
        let _n = w.push(Priority::Normal);
        let _s1 = w.push(Priority::Sheddable);
        let mut s2 = w.push(Priority::Sheddable);
        assert!(w.pop_victim(Priority::Sheddable).is_none());
        assert!(w
            .pop_victim(Priority::Normal)
            .unwrap()
            .send(Grant::Displaced));
        assert_eq!(s2.try_recv(), Ok(Grant::Displaced));
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn waiters_that_left_are_skipped_and_compacted() {
        let mut w = Waiters::default();
        for _ in 0..500 {
            let mut rx = w.push(Priority::Sheddable);
            rx.close();
            w.left();
        }
        assert!(w.is_empty());
        assert!(w.stored() <= 65);
        assert!(w.pop_next().is_none());
    }
}
