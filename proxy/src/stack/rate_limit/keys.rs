//! The per-key side of the limiter: how a request's key is found and hashed,
//! and the bounded key table behind the keyed GCRA limiter.
//!
//! Keys are hashed to a `u64` with a per-process random SipHash key, so a decision
//! allocates nothing; two keys whose hashes collide share a bucket. The table never
//! holds more than `max_keys` entries (plus at most one per concurrently deciding
//! thread): when it is full, a sweep drops the keys whose state is
//! indistinguishable from a fresh one, and keys still without room share one
//! overflow bucket.

use std::cell::Cell;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{InMemoryState, NotKeyed, StateStore};
use http::{HeaderName, Request};

use crate::config::RateKey;
use crate::headers::ClientIp;

/// Hasher for already-hashed `u64` keys: one multiply spreads the bits over
/// both ends of the word (hashbrown reads the top bits, dashmap the next ones).
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// The key table's map: pre-hashed keys to GCRA cells.
pub(super) type KeyMap = DashMapStateStore<u64, BuildHasherDefault<KeyHasher>>;

/// The bounded key table behind the keyed GCRA limiter.
pub(super) struct KeyTable {
    pub(super) map: KeyMap,
    /// One bucket shared by keys that found the table full.
    overflow: InMemoryState,
    max_keys: usize,
    /// Keys in `map`, counted on insert and reset by each sweep (never under).
    len: AtomicUsize,
    /// A new key found the table full since the last sweep.
    pub(super) full: AtomicBool,
    pub(super) sweeping: AtomicBool,
    /// Clock reading (nanoseconds since the limiter started) of the last sweep.
    pub(super) last_sweep: AtomicU64,
    overflowed: metrics::Counter,
    keys: metrics::Gauge,
}

impl KeyTable {
    /// An empty table of at most `max_keys` keys, counting under `route`.
    pub(super) fn new(max_keys: usize, route: &str) -> Self {
        Self {
            map: KeyMap::with_hasher(BuildHasherDefault::default()),
            overflow: InMemoryState::default(),
            max_keys: max_keys.max(1),
            len: AtomicUsize::new(0),
            full: AtomicBool::new(false),
            sweeping: AtomicBool::new(false),
            last_sweep: AtomicU64::new(0),
            overflowed: metrics::counter!(
                crate::observe::RATE_LIMIT_OVERFLOW_TOTAL, "route" => route.to_owned()
            ),
            keys: metrics::gauge!(crate::observe::RATE_LIMIT_KEYS, "route" => route.to_owned()),
        }
    }
}

/// A [`StateStore`] over a shared [`KeyTable`]: known keys and new keys while
/// there is room get their own cell; other keys share the overflow cell.
#[derive(Clone)]
pub(super) struct BoundedStore(pub(super) Arc<KeyTable>);

impl StateStore for BoundedStore {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let table = &*self.0;
        if table.len.load(Ordering::Relaxed) >= table.max_keys && !table.map.contains_key(key) {
            table.full.store(true, Ordering::Relaxed);
            table.overflowed.increment(1);
            return table.overflow.measure_and_replace(&NotKeyed::NonKey, f);
        }
        // A cell seen empty was just inserted (by us, or by a racing thread:
        // then the count is one high until the next sweep, which is harmless).
        let fresh = Cell::new(false);
        let result = table.map.measure_and_replace(key, |prev| {
            if prev.is_none() {
                fresh.set(true);
            }
            f(prev)
        });
        if fresh.get() {
            table.len.fetch_add(1, Ordering::Relaxed);
            table.keys.increment(1.0);
        }
        result
    }
}

impl ShrinkableKeyedStateStore<u64> for BoundedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&self.0.map, drop_below);
        self.0.len.store(self.0.map.len(), Ordering::Relaxed);
    }

    fn shrink_to_fit(&self) {
        self.0.map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.0.map.len()
    }

    fn is_empty(&self) -> bool {
        self.0.map.is_empty()
    }
}

/// The keyed GCRA limiter over a [`BoundedStore`].
pub(super) type KeyedLimiter<C> =
    governor::RateLimiter<u64, BoundedStore, C, StateInformationMiddleware>;

/// Drops keys whose state equals a fresh one's, gives memory back when the table
/// emptied enough, and lets new keys in again.
pub(super) fn sweep<C: Clock>(limiter: &KeyedLimiter<C>, table: &KeyTable) {
    limiter.retain_recent();
    let len = table.map.len();
    if len <= table.max_keys / 2 {
        limiter.shrink_to_fit();
    }
    table.keys.set(len as f64);
    table.full.store(false, Ordering::Relaxed);
    table.sweeping.store(false, Ordering::Release);
}

/// How the per-key limit finds a request's key, and hashes it.
pub(super) struct KeySource {
    from: Source,
    hasher: RandomState,
    /// The key of requests that lack theirs (no header, path too short).
    missing: u64,
}

/// Where a request's key is read.
enum Source {
    ClientIp,
    Header(HeaderName),
    PathSegment(usize),
}

impl KeySource {
    /// Reads keys as `key` says, hashed with a fresh per-process random key.
    pub(super) fn new(key: &RateKey) -> Self {
        let hasher = RandomState::new();
        Self {
            from: match key {
                RateKey::ClientIp => Source::ClientIp,
                RateKey::Header(name) => Source::Header(name.clone()),
                RateKey::PathSegment(n) => Source::PathSegment(*n),
            },
            missing: hasher.hash_one(()),
            hasher,
        }
    }

    /// The hashed key of `req` (the shared "missing" key when it has none).
    pub(super) fn key_of<B>(&self, req: &Request<B>) -> u64 {
        let key = match &self.from {
            Source::ClientIp => req
                .extensions()
                .get::<ClientIp>()
                .map(|ip| self.hasher.hash_one(ip.0)),
            Source::Header(name) => req
                .headers()
                .get(name)
                .map(|v| self.hasher.hash_one(v.as_bytes())),
            Source::PathSegment(n) => {
                let path = req.uri().path();
                path.strip_prefix('/')
                    .unwrap_or(path)
                    .split('/')
                    .nth(n.saturating_sub(1))
                    .map(|segment| self.hasher.hash_one(segment.as_bytes()))
            }
        };
        key.unwrap_or(self.missing)
    }

    /// Hashes raw key bytes as [`key_of`](Self::key_of) does.
    pub(super) fn hash(&self, bytes: &[u8]) -> u64 {
        self.hasher.hash_one(bytes)
    }
}
