//! The storage interface: versions, published snapshots per group, node status and
//! endpoint registrations. [`memory::MemoryStore`] is the embedded default (one
//! process); a highly available backend (etcd: revisions for versions, leases for
//! TTLs) implements the same trait. Nothing above this module assumes memory:
//! versions are opaque increasing numbers handed out by the store, and a
//! registration carries its own TTL, which the store enforces.

pub mod memory;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// A snapshot version: opaque, increasing across every group.
pub type Version = u64;

/// One published snapshot of a node group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The node group (the config file's stem).
    pub group: String,
    /// Its version.
    pub version: Version,
    /// The proxy config, as YAML text the proxy parses with `floodgate::config::parse_str`.
    pub config: Arc<str>,
    /// The same config in the file form the control plane validated it as, JSON
    /// (`floodgate::config::file::FileConfig`): a proxy validates it without parsing
    /// the YAML text again. `None`: proxies parse `config`.
    pub file: Option<Arc<str>>,
    /// When it was published.
    pub published_at: SystemTime,
}

/// What the control plane knows about one proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    /// The node's group.
    pub group: String,
    /// The node's id.
    pub node: String,
    /// The version it runs (from its last poll or ACK); None before it has one.
    pub version: Option<Version>,
    /// Its last poll, ACK or NACK.
    #[serde(with = "unix_ms")]
    pub last_seen: SystemTime,
    /// The last version it ACKed.
    pub last_ack: Option<Version>,
    /// The last version it refused, and why.
    pub last_nack: Option<Nack>,
}

/// A refused version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Nack {
    /// The refused version.
    pub version: Version,
    /// The proxy's error.
    pub error: String,
}

/// What a node reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeReport {
    /// A poll, carrying the version the node runs (None: nothing yet).
    Poll(Option<Version>),
    /// It applied this version.
    Ack(Version),
    /// It refused this version.
    Nack(Nack),
}

/// One registered endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Registration {
    /// The cluster it belongs to (a cluster name in the group configs).
    pub cluster: String,
    /// `host:port`.
    pub address: String,
    /// Free-form labels (zone, weight, ...), kept and listed.
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// How long it lives without a heartbeat.
    #[serde(with = "duration_ms", rename = "ttl_ms")]
    pub ttl: Duration,
    /// First registration.
    #[serde(with = "unix_ms")]
    pub registered_at: SystemTime,
    /// Last heartbeat (or the registration).
    #[serde(with = "unix_ms")]
    pub renewed_at: SystemTime,
}

/// What a register call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// A new endpoint.
    New,
    /// A known endpoint's TTL was refreshed (its metadata replaced).
    Renewed,
}

/// A storage failure (a remote backend may be unreachable).
#[derive(Debug, Clone, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

/// The storage interface.
pub trait Store: Send + Sync + 'static {
    /// A new version, greater than every version handed out before.
    fn next_version(&self) -> Result<Version, StoreError>;
    /// Publishes a group's snapshot (replacing the previous one).
    fn put_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError>;
    /// The group's current snapshot.
    fn snapshot(&self, group: &str) -> Result<Option<Arc<Snapshot>>, StoreError>;
    /// Records what a node reported (creating the node on first sight).
    fn report(&self, group: &str, node: &str, report: NodeReport) -> Result<(), StoreError>;
    /// One node's status.
    fn node(&self, group: &str, node: &str) -> Result<Option<NodeStatus>, StoreError>;
    /// Every node, by group and id.
    fn nodes(&self) -> Result<Vec<NodeStatus>, StoreError>;
    /// Registers an endpoint or refreshes its TTL; `registration.ttl` is its lease.
    fn register(&self, registration: Registration) -> Result<Registered, StoreError>;
    /// Removes an endpoint; false if it was not registered.
    fn deregister(&self, cluster: &str, address: &str) -> Result<bool, StoreError>;
    /// Removes and returns the registrations whose TTL ran out.
    fn expire(&self) -> Result<Vec<Registration>, StoreError>;
    /// Every live registration, by cluster and address.
    fn endpoints(&self) -> Result<Vec<Registration>, StoreError>;
}

/// `SystemTime` as milliseconds since the Unix epoch.
mod unix_ms {
    use std::time::{SystemTime, UNIX_EPOCH};

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        s.serialize_u64(u64::try_from(ms).unwrap_or(u64::MAX))
    }
}

/// `Duration` as milliseconds.
mod duration_ms {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}
