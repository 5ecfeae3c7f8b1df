//! Idle HTTP/1.1 keep-alive connections of one endpoint, one LIFO list per
//! worker: a connection's socket is registered with the runtime that opened it,
//! so only that worker reuses it. Each list has its own cache line, so workers do
//! not contend for one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_utils::CachePadded;

use super::Http1Conn;
use crate::time::{self, Instant};
use crate::upstream::limits::ConnLimits;

struct IdleConn {
    conn: Http1Conn,
    since: Instant,
}

/// The idle connections of one endpoint, per worker.
pub struct IdleConns {
    lists: Box<[CachePadded<Mutex<Vec<IdleConn>>>]>,
    /// Idle connections older than this are closed instead of reused.
    idle_timeout: Duration,
    /// Most idle connections kept per worker.
    max_idle: usize,
    /// Woken when a connection comes back (requests may wait for one).
    limits: Arc<ConnLimits>,
}

impl IdleConns {
    /// Empty lists, one per worker slot.
    pub fn new(idle_timeout: Duration, max_idle: usize, limits: Arc<ConnLimits>) -> Self {
        Self {
            lists: (0..crate::workers::slots())
                .map(|_| CachePadded::new(Mutex::new(Vec::new())))
                .collect(),
            idle_timeout,
            max_idle,
            limits,
        }
    }

    /// Connections idle over all workers.
    pub fn len(&self) -> usize {
        self.lists
            .iter()
            .map(|list| list.lock().map(|idle| idle.len()).unwrap_or(0))
            .sum()
    }

    /// Whether no worker keeps an idle connection.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The calling worker's list.
    fn here(&self) -> Option<&Mutex<Vec<IdleConn>>> {
        self.lists.get(crate::workers::slot()).map(|list| &**list)
    }

    /// The calling worker's most recently used connection that is still fresh and
    /// reusable; stale ones met on the way are closed.
    pub fn take(&self) -> Option<Http1Conn> {
        let mut idle = self.here()?.lock().ok()?;
        let mut now = None;
        // LIFO: the most recently used connection is the likeliest to be alive and warm.
        while let Some(mut entry) = idle.pop() {
            let now = *now.get_or_insert_with(time::now);
            if now.duration_since(entry.since) < self.idle_timeout && entry.conn.is_reusable() {
                return Some(entry.conn);
            }
        }
        None
    }

    /// Closes the oldest idle connection of some worker; true if there was one.
    pub fn drop_one(&self) -> bool {
        for list in self.lists.iter() {
            let taken = match list.lock() {
                Ok(mut idle) if !idle.is_empty() => Some(idle.remove(0)),
                _ => None,
            };
            // Dropped outside the lock, which frees its count and permit.
            if taken.is_some() {
                return true;
            }
        }
        false
    }

    /// Keeps a finished connection for reuse, and wakes requests waiting for one.
    pub fn checkin(&self, conn: Http1Conn) {
        // No list for this thread (not one this pool keeps connections for) or a
        // full list: the connection closes.
        let surplus = match self.here().map(Mutex::lock) {
            Some(Ok(mut idle)) if idle.len() < self.max_idle => {
                idle.push(IdleConn {
                    conn,
                    since: time::now(),
                });
                None
            }
            _ => Some(conn),
        };
        // Closed outside the lock, freeing its count.
        drop(surplus);
        self.limits.signal();
    }
}
