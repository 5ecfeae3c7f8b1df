//! The in-memory store: one process, state behind short-lived mutexes (never held
//! across an `.await`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::{
    NodeReport, NodeStatus, Registered, Registration, Snapshot, Store, StoreError, Version,
};

/// The embedded default store.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    last_version: Version,
    snapshots: BTreeMap<String, Arc<Snapshot>>,
    nodes: BTreeMap<(String, String), NodeStatus>,
    /// Registrations with the instant their lease runs out.
    endpoints: BTreeMap<(String, String), (Registration, Instant)>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store. Versions start at the current Unix time in microseconds,
    /// so a restarted control plane still hands out versions above those its
    /// proxies run (they need not, but it keeps logs readable).
    pub fn new() -> Self {
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(0))
            .unwrap_or(0);
        MemoryStore {
            inner: Mutex::new(Inner {
                last_version: start,
                snapshots: BTreeMap::new(),
                nodes: BTreeMap::new(),
                endpoints: BTreeMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for MemoryStore {
    fn next_version(&self) -> Result<Version, StoreError> {
        let mut inner = self.lock();
        inner.last_version += 1;
        Ok(inner.last_version)
    }

    fn put_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        self.lock()
            .snapshots
            .insert(snapshot.group.clone(), Arc::new(snapshot));
        Ok(())
    }

    fn snapshot(&self, group: &str) -> Result<Option<Arc<Snapshot>>, StoreError> {
        Ok(self.lock().snapshots.get(group).cloned())
    }

    fn report(&self, group: &str, node: &str, report: NodeReport) -> Result<(), StoreError> {
        let now = SystemTime::now();
        let mut inner = self.lock();
        let status = inner
            .nodes
            .entry((group.to_owned(), node.to_owned()))
            .or_insert_with(|| NodeStatus {
                group: group.to_owned(),
                node: node.to_owned(),
                version: None,
                last_seen: now,
                last_ack: None,
                last_nack: None,
            });
        status.last_seen = now;
        match report {
            NodeReport::Poll(v) => status.version = v,
            NodeReport::Ack(v) => {
                status.version = Some(v);
                status.last_ack = Some(v);
            }
            NodeReport::Nack(n) => status.last_nack = Some(n),
        }
        Ok(())
    }

    fn node(&self, group: &str, node: &str) -> Result<Option<NodeStatus>, StoreError> {
        Ok(self
            .lock()
            .nodes
            .get(&(group.to_owned(), node.to_owned()))
            .cloned())
    }

    fn nodes(&self) -> Result<Vec<NodeStatus>, StoreError> {
        Ok(self.lock().nodes.values().cloned().collect())
    }

    fn register(&self, mut registration: Registration) -> Result<Registered, StoreError> {
        let deadline = Instant::now() + registration.ttl;
        let key = (registration.cluster.clone(), registration.address.clone());
        let mut inner = self.lock();
        let outcome = match inner.endpoints.get(&key) {
            Some((old, _)) => {
                registration.registered_at = old.registered_at;
                Registered::Renewed
            }
            None => Registered::New,
        };
        inner.endpoints.insert(key, (registration, deadline));
        Ok(outcome)
    }

    fn deregister(&self, cluster: &str, address: &str) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .endpoints
            .remove(&(cluster.to_owned(), address.to_owned()))
            .is_some())
    }

    fn expire(&self) -> Result<Vec<Registration>, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        let mut gone = Vec::new();
        inner.endpoints.retain(|_, (reg, deadline)| {
            if *deadline <= now {
                gone.push(reg.clone());
                false
            } else {
                true
            }
        });
        Ok(gone)
    }

    fn endpoints(&self) -> Result<Vec<Registration>, StoreError> {
        Ok(self
            .lock()
            .endpoints
            .values()
            .map(|(r, _)| r.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn reg(address: &str, ttl: Duration) -> Registration {
        Registration {
            cluster: "app".into(),
            address: address.into(),
            metadata: BTreeMap::new(),
            ttl,
            registered_at: SystemTime::now(),
            renewed_at: SystemTime::now(),
        }
    }

    #[test]
    fn versions_increase() {
        let s = MemoryStore::new();
        let a = s.next_version().unwrap();
        let b = s.next_version().unwrap();
        assert!(b > a);
    }

    #[test]
    fn register_renew_expire_deregister() {
        let s = MemoryStore::new();
        assert_eq!(
            s.register(reg("a:1", Duration::ZERO)).unwrap(),
            Registered::New
        );
        assert_eq!(
            s.register(reg("b:1", Duration::from_secs(60))).unwrap(),
            Registered::New
        );
        assert_eq!(
            s.register(reg("b:1", Duration::from_secs(60))).unwrap(),
            Registered::Renewed
        );
        let gone = s.expire().unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].address, "a:1");
        assert!(s.deregister("app", "b:1").unwrap());
        assert!(!s.deregister("app", "b:1").unwrap());
        assert!(s.endpoints().unwrap().is_empty());
    }

    #[test]
    fn nack_keeps_the_running_version() {
        let s = MemoryStore::new();
        s.report("g", "n", NodeReport::Ack(5)).unwrap();
        s.report(
            "g",
            "n",
            NodeReport::Nack(super::super::Nack {
                version: 6,
                error: "bad".into(),
            }),
        )
        .unwrap();
        let n = s.node("g", "n").unwrap().unwrap();
        assert_eq!(n.version, Some(5));
        assert_eq!(n.last_nack.unwrap().version, 6);
    }
}
