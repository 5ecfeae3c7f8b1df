//! The endpoint registry: register (or heartbeat), deregister, and the sweep
//! that expires registrations whose TTL ran out. Every change that alters a
//! group's merged config publishes a new version of that group.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::observe;
use crate::plane::Plane;
use crate::snapshot;
use crate::store::{Registered, Registration, StoreError};

/// `POST /v1/endpoints` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The cluster (as named in the group configs).
    pub cluster: String,
    /// `host:port`.
    pub address: String,
    /// Free-form labels.
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// TTL such as `"15s"`; the configured `registry.default_ttl` when absent.
    pub ttl: Option<String>,
}

/// `DELETE /v1/endpoints` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeregisterRequest {
    /// The cluster.
    pub cluster: String,
    /// `host:port`.
    pub address: String,
}

/// Why a registration was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The request is wrong (the message says how).
    #[error("{0}")]
    Invalid(String),
    /// The endpoint is being drained and stopped by the process scaler.
    #[error("{0}")]
    Draining(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Registers or heartbeats; returns what happened, the TTL in force and the groups
/// whose snapshots include the endpoint.
pub fn register(
    plane: &Plane,
    req: RegisterRequest,
) -> Result<(Registered, Duration, Vec<String>), RegistryError> {
    if req.cluster.trim().is_empty() {
        return Err(RegistryError::Invalid("cluster: must not be empty".into()));
    }
    snapshot::check_address(&req.address)
        .map_err(|e| RegistryError::Invalid(format!("address: `{}`: {e}", req.address)))?;
    if plane.fences.is_fenced(&req.cluster, &req.address) {
        return Err(RegistryError::Draining(format!(
            "{} in cluster {} is being drained and stopped by the process scaler",
            req.address, req.cluster
        )));
    }
    let settings = plane.config.registry;
    let ttl = match &req.ttl {
        None => settings.default_ttl,
        Some(t) => floodgate::config::parse_duration(t)
            .map_err(|e| RegistryError::Invalid(format!("ttl: `{t}`: {e}")))?,
    };
    if ttl.is_zero() || ttl > settings.max_ttl {
        return Err(RegistryError::Invalid(format!(
            "ttl: must be above zero and at most {}",
            floodgate::config::format_duration(settings.max_ttl)
        )));
    }
    let now = SystemTime::now();
    let outcome = plane.store.register(Registration {
        cluster: req.cluster.clone(),
        address: req.address.clone(),
        metadata: req.metadata,
        ttl,
        registered_at: now,
        renewed_at: now,
    })?;
    if outcome == Registered::New {
        tracing::info!(cluster = %req.cluster, address = %req.address, ttl = ?ttl, "endpoint registered");
        metrics::counter!(observe::REGISTRY_CHANGES, "change" => "registered").increment(1);
        plane.registry_changed(Some(&BTreeSet::from([req.cluster.clone()])))?;
        gauge_registrations(plane);
    }
    Ok((outcome, ttl, plane.groups_with_cluster(&req.cluster)))
}

/// Deregisters; false if the endpoint was not registered.
pub fn deregister(plane: &Plane, req: &DeregisterRequest) -> Result<bool, StoreError> {
    let removed = plane.store.deregister(&req.cluster, &req.address)?;
    if removed {
        tracing::info!(cluster = %req.cluster, address = %req.address, "endpoint deregistered");
        metrics::counter!(observe::REGISTRY_CHANGES, "change" => "deregistered").increment(1);
        plane.registry_changed(Some(&BTreeSet::from([req.cluster.clone()])))?;
        gauge_registrations(plane);
    }
    Ok(removed)
}

/// Expires what ran out, publishing the affected groups; returns how many expired.
pub fn sweep(plane: &Plane) -> Result<usize, StoreError> {
    let gone = plane.store.expire()?;
    if gone.is_empty() {
        return Ok(0);
    }
    let mut clusters = BTreeSet::new();
    for r in &gone {
        tracing::warn!(cluster = %r.cluster, address = %r.address, ttl = ?r.ttl, "endpoint expired: no heartbeat within its TTL");
        clusters.insert(r.cluster.clone());
    }
    metrics::counter!(observe::REGISTRY_CHANGES, "change" => "expired")
        .increment(gone.len() as u64);
    plane.registry_changed(Some(&clusters))?;
    gauge_registrations(plane);
    Ok(gone.len())
}

/// Runs [`sweep`] every `registry.sweep_interval` until aborted.
pub fn spawn_sweeper(plane: Arc<Plane>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(plane.config.registry.sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = sweep(&plane) {
                tracing::error!(error = %e, "registry sweep failed");
            }
        }
    })
}

fn gauge_registrations(plane: &Plane) {
    if let Ok(all) = plane.store.endpoints() {
        metrics::gauge!(observe::REGISTRATIONS).set(all.len() as f64);
    }
}
