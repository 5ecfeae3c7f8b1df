//! Addresses being drained: the process scaler deregisters a replica before it
//! stops it, and until the process is gone the registry refuses that replica's
//! heartbeats (409), so a heartbeat during the drain cannot put it back into the
//! proxies' snapshots. A leaf: the registry reads it, the scaler writes it.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// The fenced `(cluster, address)` pairs.
#[derive(Debug, Default)]
pub struct Fences {
    fenced: Mutex<BTreeSet<(String, String)>>,
}

impl Fences {
    /// Refuses registrations of `address` in `cluster` from now on.
    pub fn fence(&self, cluster: &str, address: &str) {
        self.lock().insert((cluster.to_owned(), address.to_owned()));
    }

    /// Accepts them again (the process is gone; its port may be reused).
    pub fn lift(&self, cluster: &str, address: &str) {
        self.lock()
            .remove(&(cluster.to_owned(), address.to_owned()));
    }

    /// Whether `address` in `cluster` is fenced.
    pub fn is_fenced(&self, cluster: &str, address: &str) -> bool {
        self.lock()
            .contains(&(cluster.to_owned(), address.to_owned()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<(String, String)>> {
        self.fenced.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fence_and_lift() {
        let f = Fences::default();
        f.fence("app", "127.0.0.1:1");
        assert!(f.is_fenced("app", "127.0.0.1:1"));
        assert!(!f.is_fenced("other", "127.0.0.1:1"));
        f.lift("app", "127.0.0.1:1");
        assert!(!f.is_fenced("app", "127.0.0.1:1"));
    }
}
