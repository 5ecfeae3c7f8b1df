//! Active health checking: a periodic `GET` of a cluster's health path on every
//! endpoint. `unhealthy_threshold` failures in a row take an endpoint out of
//! balancing; `healthy_threshold` passes in a row bring it back.
//! (Passive outlier ejection lives with the balancer, in `balance`.)

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use http::{header, Request};
use http_body_util::BodyExt;

use crate::balance::{Cluster, Endpoint};
use crate::body;
use crate::config::{EndpointAddr, HealthCheckConfig};

/// Starts the health-check task of `cluster` if it has checks configured; called
/// by whoever builds clusters (the snapshot builder), which keeps the returned
/// handle as long as the cluster serves. The task holds only a weak reference to
/// the cluster, and ends when the handle is dropped or the cluster is gone.
pub fn spawn(cluster: &Arc<Cluster>) -> Option<HealthChecks> {
    let config = cluster.config().health_check.clone()?;
    let weak = Arc::downgrade(cluster);
    let handle = tokio::spawn(run(weak, config));
    Some(HealthChecks(handle.abort_handle()))
}

/// A cluster's running health-check task; dropping it stops the checks.
pub struct HealthChecks(tokio::task::AbortHandle);

impl Drop for HealthChecks {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Consecutive results of one endpoint.
#[derive(Debug, Default, Clone, Copy)]
struct Streak {
    passes: u32,
    failures: u32,
}

impl Streak {
    /// Records a result; returns the new health verdict if a threshold was crossed.
    fn record(&mut self, passed: bool, healthy: bool, config: &HealthCheckConfig) -> Option<bool> {
        if passed {
            self.passes = self.passes.saturating_add(1);
            self.failures = 0;
            (!healthy && self.passes >= config.healthy_threshold).then_some(true)
        } else {
            self.failures = self.failures.saturating_add(1);
            self.passes = 0;
            (healthy && self.failures >= config.unhealthy_threshold).then_some(false)
        }
    }
}

async fn run(cluster: Weak<Cluster>, config: HealthCheckConfig) {
    // Keyed by endpoint (the set may change between rounds); an endpoint that
    // left the set leaves its streak behind.
    let mut streaks: HashMap<EndpointAddr, Streak> = HashMap::new();
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let (name, endpoints) = match cluster.upgrade() {
            Some(c) => (c.name().to_owned(), c.endpoints()),
            None => return,
        };
        streaks.retain(|addr, _| endpoints.iter().any(|e| e.addr() == addr));
        let checks = endpoints.iter().map(|ep| check(ep, &config));
        let results = futures_util::future::join_all(checks).await;
        for (ep, passed) in endpoints.iter().zip(results) {
            let streak = streaks.entry(ep.addr().clone()).or_default();
            let Some(verdict) = streak.record(passed.is_ok(), ep.is_healthy(), &config) else {
                continue;
            };
            ep.set_healthy(verdict);
            match (&passed, verdict) {
                (_, true) => {
                    tracing::info!(cluster = %name, endpoint = %ep.addr(), "endpoint healthy")
                }
                (Err(reason), false) => tracing::warn!(
                    cluster = %name, endpoint = %ep.addr(), %reason, "endpoint unhealthy"
                ),
                (Ok(()), false) => {}
            }
        }
    }
}

/// One check: `GET path` within `timeout`, passing on a 2xx answer.
async fn check(endpoint: &Arc<Endpoint>, config: &HealthCheckConfig) -> Result<(), String> {
    let attempt = async {
        let host = config
            .host
            .clone()
            .unwrap_or_else(|| endpoint.addr().to_string());
        let req = Request::get(config.path.as_str())
            .header(header::HOST, host)
            .header(header::USER_AGENT, "floodgate-health-check")
            .body(body::empty())
            .map_err(|e| e.to_string())?;
        let pool = endpoint.pool();
        let conn = pool.checkout().await.map_err(|e| e.to_string())?;
        let sent = crate::upstream::send::<()>(conn, req)
            .await
            .map_err(|e| e.to_string())?;
        let response = sent.into_response(pool, None);
        let status = response.status();
        // Read the (small) body so the connection goes back to the pool.
        response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("status {status}"))
        }
    };
    match tokio::time::timeout(config.timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {:?}", config.timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config(healthy: u32, unhealthy: u32) -> HealthCheckConfig {
        HealthCheckConfig {
            path: "/healthz".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            healthy_threshold: healthy,
            unhealthy_threshold: unhealthy,
            host: None,
        }
    }

    #[test]
    fn thresholds_flip_the_verdict() {
        let c = config(2, 3);
        let mut s = Streak::default();
        assert_eq!(s.record(false, true, &c), None);
        assert_eq!(s.record(false, true, &c), None);
        assert_eq!(s.record(false, true, &c), Some(false));
        assert_eq!(s.record(true, false, &c), None);
        assert_eq!(s.record(true, false, &c), Some(true));
    }

    #[test]
    fn a_pass_resets_the_failure_streak() {
        let c = config(1, 2);
        let mut s = Streak::default();
        assert_eq!(s.record(false, true, &c), None);
        assert_eq!(s.record(true, true, &c), None);
        assert_eq!(s.record(false, true, &c), None);
        assert_eq!(s.record(false, true, &c), Some(false));
    }
}
