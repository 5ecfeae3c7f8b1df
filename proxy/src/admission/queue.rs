//! The priority queue of requests waiting for admission.
//!
//! Three queues, one per [`Priority`], served critical → normal → sheddable;
//! within a class oldest first (FIFO), or newest first (LIFO) when the
//! controller asks (a standing queue holding a backlog, see `mod.rs`): there the
//! newest waiter's client is the one most likely still waiting. Each
//! waiter remembers when it was queued, so the oldest waiters' age is the
//! queueing delay and those older than a cutoff can be popped for shedding. Each
//! waiter is the sending half of a oneshot channel; a waiter
//! that left (its receiver closed) stays stored as a tombstone that the next pop
//! skips, and the tombstones are dropped in one pass once they outnumber the live
//! waiters. The queue knows nothing of limits: the controller decides who may be
//! granted, under its lock.

use std::collections::VecDeque;

use tokio::sync::oneshot;

use crate::config::Priority;
use crate::time::Instant;

/// What a queued waiter is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Grant {
    /// A slot is the waiter's.
    Admitted,
    /// A higher-priority arrival took the waiter's place in a full queue.
    Displaced,
    /// The queue was standing and the waiter had waited longer than the target.
    Expired,
    /// The queue was standing and full: a newer arrival took the waiter's place.
    Superseded,
}

/// One queued waiter. A closed sender (the waiter left) is a tombstone that the
/// next pop skips; [`Waiters::len`] already stopped counting it.
pub(super) struct Entry {
    tx: oneshot::Sender<Grant>,
    enqueued: Instant,
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

    /// Queues a waiter of `priority`, queued at `now`, last in its class; it hears
    /// on the receiver.
    pub(super) fn push(&mut self, priority: Priority, now: Instant) -> oneshot::Receiver<Grant> {
        let (tx, rx) = oneshot::channel();
        if let Some(q) = self.queues.get_mut(class(priority)) {
            q.push_back(Entry { tx, enqueued: now });
            self.depth += 1;
        }
        rx
    }

    /// Pops the next live waiter: highest priority first; within the class the
    /// oldest (FIFO), or the newest when `lifo`.
    pub(super) fn pop_next(&mut self, lifo: bool) -> Option<Entry> {
        for queue in &mut self.queues {
            let pop = |q: &mut VecDeque<Entry>| if lifo { q.pop_back() } else { q.pop_front() };
            while let Some(entry) = pop(queue) {
                if entry.is_live() {
                    self.depth = self.depth.saturating_sub(1);
                    return Some(entry);
                }
                self.tombstones = self.tombstones.saturating_sub(1);
            }
        }
        None
    }

    /// When the oldest live waiter (of any class) was queued; drops the tombstones
    /// in front of each class on the way.
    pub(super) fn oldest(&mut self) -> Option<Instant> {
        let mut oldest: Option<Instant> = None;
        for q in &mut self.queues {
            while q.front().is_some_and(|e| !e.is_live()) {
                q.pop_front();
                self.tombstones = self.tombstones.saturating_sub(1);
            }
            if let Some(front) = q.front() {
                oldest = Some(oldest.map_or(front.enqueued, |o| o.min(front.enqueued)));
            }
        }
        oldest
    }

    /// Pops a live waiter queued before `cutoff` (the oldest of its class), if any.
    pub(super) fn pop_older_than(&mut self, cutoff: Instant) -> Option<Entry> {
        for q in &mut self.queues {
            while let Some(front) = q.front() {
                if front.is_live() && front.enqueued >= cutoff {
                    break;
                }
                let live = front.is_live();
                let entry = q.pop_front()?;
                if live {
                    self.depth = self.depth.saturating_sub(1);
                    return Some(entry);
                }
                self.tombstones = self.tombstones.saturating_sub(1);
            }
        }
        None
    }

    /// Pops the oldest live waiter of the lowest priority at or below `than` (a
    /// standing queue's drop-oldest: the waiter least likely to be served in time).
    pub(super) fn pop_oldest_at_or_below(&mut self, than: Priority) -> Option<Entry> {
        for q in (class(than)..self.queues.len()).rev() {
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
    use std::time::Duration;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Pops every waiter, reporting the order (indexes into `rxs`) they were served in.
    fn drain(w: &mut Waiters, rxs: &mut [oneshot::Receiver<Grant>], lifo: bool) -> Vec<usize> {
        let mut order = Vec::new();
        while let Some(entry) = w.pop_next(lifo) {
            assert!(entry.send(Grant::Admitted));
            let i = rxs
                .iter_mut()
                .position(|rx| rx.try_recv() == Ok(Grant::Admitted))
                .unwrap();
            order.push(i);
        }
        order
    }

    fn mixed(w: &mut Waiters, t0: Instant) -> Vec<oneshot::Receiver<Grant>> {
        [Priority::Sheddable, Priority::Normal, Priority::Critical]
            .into_iter()
            .cycle()
            .take(6)
            .enumerate()
            .map(|(i, p)| w.push(p, t0 + MS * i as u32))
            .collect()
    }

    #[test]
    fn pops_by_priority_then_oldest_first() {
        let mut w = Waiters::default();
        let t0 = Instant::now();
        let mut rxs = mixed(&mut w, t0);
        assert_eq!(w.len(), 6);
        assert_eq!(drain(&mut w, &mut rxs, false), [2, 5, 1, 4, 0, 3]);
        assert!(w.is_empty());
    }

    #[test]
    fn lifo_pops_by_priority_then_newest_first() {
        let mut w = Waiters::default();
        let t0 = Instant::now();
        let mut rxs = mixed(&mut w, t0);
        assert_eq!(drain(&mut w, &mut rxs, true), [5, 2, 4, 1, 3, 0]);
    }

    #[test]
    fn oldest_and_older_than_look_across_classes() {
        let mut w = Waiters::default();
        let t0 = Instant::now();
        let mut n = w.push(Priority::Normal, t0 + 3 * MS);
        let mut gone = w.push(Priority::Critical, t0);
        gone.close();
        w.left();
        let mut s = w.push(Priority::Sheddable, t0 + MS);
        let _c = w.push(Priority::Critical, t0 + 9 * MS);
        assert_eq!(w.oldest(), Some(t0 + MS), "the tombstone does not count");
        let cutoff = t0 + 4 * MS;
        let first = w.pop_older_than(cutoff).unwrap();
        assert!(first.send(Grant::Expired));
        assert_eq!(
            n.try_recv(),
            Ok(Grant::Expired),
            "class order, not age order"
        );
        assert!(w.pop_older_than(cutoff).unwrap().send(Grant::Expired));
        assert_eq!(s.try_recv(), Ok(Grant::Expired));
        assert!(w.pop_older_than(cutoff).is_none());
        assert_eq!((w.len(), w.oldest()), (1, Some(t0 + 9 * MS)));
    }

    #[test]
    fn the_victim_is_the_newest_strictly_lower_waiter() {
        let mut w = Waiters::default();
        let t0 = Instant::now();
        let _n = w.push(Priority::Normal, t0);
        let _s1 = w.push(Priority::Sheddable, t0);
        let mut s2 = w.push(Priority::Sheddable, t0);
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
        let t0 = Instant::now();
        for _ in 0..500 {
            let mut rx = w.push(Priority::Sheddable, t0);
            rx.close();
            w.left();
        }
        assert!(w.is_empty());
        assert!(w.stored() <= 65);
        assert!(w.pop_next(false).is_none());
        assert!(w.oldest().is_none());
    }
}
