//! What the process scaler runs, as `GET /v1/scalers` and `Running::scalers` show
//! it: one [`ProcessStatus`] per cluster, replaced by the scaler after each look.
//! A leaf: the scaler writes it, the API reads it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

/// What `GET /v1/scalers` shows of one process scaler.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProcessStatus {
    /// The cluster.
    pub cluster: String,
    /// The autoscaler's last desired replicas (None before the first decision).
    pub desired: Option<u32>,
    /// What the scaler runs towards: `desired` clamped to `min..=max`.
    pub target: u32,
    /// `min_replicas`.
    pub min_replicas: u32,
    /// `max_replicas`.
    pub max_replicas: u32,
    /// Failed replicas in a row (exited on their own or never registered).
    pub failures: u32,
    /// Every replica it runs, oldest first.
    pub replicas: Vec<ReplicaStatus>,
}

/// One replica.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaStatus {
    /// Its number (from 1, newer is higher).
    pub replica: u64,
    /// The PID the scaler started (and signals).
    pub pid: u32,
    /// `127.0.0.1:port`.
    pub address: String,
    /// `starting`, `ready`, `draining`, `stopping` or `killed`.
    pub phase: &'static str,
    /// When it was started, Unix milliseconds.
    pub started_at: u64,
}

/// Every process scaler's latest status, by cluster.
#[derive(Debug, Default)]
pub struct ReplicaBoard {
    by_cluster: Mutex<BTreeMap<String, ProcessStatus>>,
}

impl ReplicaBoard {
    /// Replaces the cluster's status.
    pub fn set(&self, status: ProcessStatus) {
        let mut map = self.by_cluster.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(&status.cluster) != Some(&status) {
            map.insert(status.cluster.clone(), status);
        }
    }

    /// Every cluster's status, by cluster name.
    pub fn all(&self) -> Vec<ProcessStatus> {
        let map = self.by_cluster.lock().unwrap_or_else(|p| p.into_inner());
        map.values().cloned().collect()
    }
}
