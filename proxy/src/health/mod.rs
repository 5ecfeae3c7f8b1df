//! Active health checking: a periodic `GET` of a cluster's health path on every
//! endpoint. `unhealthy_threshold` failures in a row take an endpoint out of
//! balancing; `healthy_threshold` passes in a row bring it back.
//! (Passive outlier ejection lives with the balancer, in `balance`.)

use std::sync::{Arc, Weak};

use http::{header, Request};
use http_body_util::BodyExt;

use crate::balance::{Cluster, Endpoint};
use crate::body;
use crate::config::HealthCheckConfig;

/// Starts the health-check task of `cluster` if it has checks configured.
/// The task holds only a weak reference and ends when the cluster is dropped.
pub fn spawn(cluster: &Arc<Cluster>) -> Option<tokio::task::AbortHandle> {
    let config = cluster.config().health_check.clone()?;
    let weak = Arc::downgrade(cluster);
    let handle = tokio::spawn(run(weak, config));
    Some(handle.abort_handle())
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
    let mut streaks: Vec<Streak> = Vec::new();
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let (name, endpoints) = match cluster.upgrade() {
            Some(c) => (c.name().to_owned(), c.endpoints().to_vec()),
            None => return,
        };
        streaks.resize(endpoints.len(), Streak::default());
        let checks = endpoints.iter().map(|ep| check(ep, &config));
        let results = futures_util::future::join_all(checks).await;
        for ((ep, passed), streak) in endpoints.iter().zip(results).zip(streaks.iter_mut()) {
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
        let sent = crate::balance::send_on(conn, req)
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
