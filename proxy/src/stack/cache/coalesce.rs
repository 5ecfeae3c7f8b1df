//! Request coalescing: one request per key goes upstream at a time.
//!
//! The first miss of a key becomes the *leader* of a flight; identical requests
//! arriving while it is in flight *follow* it and wait for its [`Outcome`]. A
//! leader dropped without an outcome (its client went away) tells its followers
//! `Cancelled`, so they elect a new leader instead of waiting forever. A follower
//! waits until its deadline at most (the cache's `lock_timeout`, as nginx's
//! `proxy_cache_lock_timeout`): a leader that is slower than that does not hold
//! it back, it goes upstream on its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use super::store::{Entry, Key};
use crate::time::Instant;

/// The flights in progress of one route, by key.
#[derive(Default)]
pub(super) struct Flights {
    map: Mutex<HashMap<Key, Arc<Flight>>>,
}

/// What a request that missed becomes.
pub(super) enum Role {
    /// The entry was stored meanwhile: answer it.
    Hit(Arc<Entry>),
    /// Another request leads the flight: wait for its outcome.
    Follower(watch::Receiver<Outcome>),
    /// The request leads the flight: go upstream.
    Leader(Leader),
}

impl Flights {
    /// Joins the flight for `key`, or starts it. `stored` re-checks the store under
    /// the lock, so a flight that just finished is seen as a hit rather than repeated.
    pub(super) fn join(
        self: &Arc<Self>,
        key: &Key,
        stored: impl FnOnce() -> Option<Arc<Entry>>,
    ) -> Role {
        let mut flights = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = stored() {
            return Role::Hit(entry);
        }
        if let Some(flight) = flights.get(key) {
            return Role::Follower(flight.tx.subscribe());
        }
        let (tx, _) = watch::channel(Outcome::Pending);
        let flight = Arc::new(Flight { tx });
        flights.insert(key.clone(), Arc::clone(&flight));
        Role::Leader(Leader {
            flights: Arc::clone(self),
            key: key.clone(),
            flight,
            done: false,
        })
    }

    /// Ends a flight: forgets it (if still the current one for `key`) and wakes followers.
    fn end(&self, key: &Key, flight: &Arc<Flight>, outcome: Outcome) {
        {
            let mut flights = self.map.lock().unwrap_or_else(PoisonError::into_inner);
            if flights.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
                flights.remove(key);
            }
        }
        flight.tx.send_replace(outcome);
    }
}

/// Waits for the leader's outcome until `deadline`; `Pending` when the deadline
/// came first (the follower then goes upstream on its own).
pub(super) async fn follow(mut rx: watch::Receiver<Outcome>, deadline: Instant) -> Outcome {
    let waited = tokio::time::timeout_at(deadline, rx.wait_for(|o| !matches!(o, Outcome::Pending)));
    match waited.await {
        Ok(Ok(outcome)) => outcome.clone(),
        Ok(Err(_)) => Outcome::Cancelled,
        Err(_) => Outcome::Pending,
    }
}

/// A flight in progress: followers wait on its outcome.
struct Flight {
    tx: watch::Sender<Outcome>,
}

/// How a flight ended, as its followers see it.
#[derive(Clone)]
pub(super) enum Outcome {
    /// The leader has not finished (as a follower's result: not by its deadline).
    Pending,
    /// The leader stored this entry: followers answer it.
    Stored(Arc<Entry>),
    /// The upstream failed and this stale entry was answered: followers answer it too.
    Stale(Arc<Entry>),
    /// Nothing shareable came back (uncacheable, too large, failed): each follower
    /// goes upstream on its own.
    Unshareable,
    /// The leader went away before an answer: followers elect a new one.
    Cancelled,
}

/// The first miss of a key; on drop without an outcome it wakes its followers.
pub(super) struct Leader {
    flights: Arc<Flights>,
    key: Key,
    flight: Arc<Flight>,
    done: bool,
}

impl Leader {
    /// The key the flight is for (where the leader stores its response).
    pub(super) fn key(&self) -> &Key {
        &self.key
    }

    /// Ends the flight with `outcome`.
    pub(super) fn finish(mut self, outcome: Outcome) {
        self.done = true;
        self.flights.end(&self.key, &self.flight, outcome);
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if !self.done {
            self.flights
                .end(&self.key, &self.flight, Outcome::Cancelled);
        }
    }
}
