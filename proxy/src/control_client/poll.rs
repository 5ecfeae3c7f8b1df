//! The poll loop: long poll → validate and combine → [`Proxy::apply`] → persist →
//! ACK; or NACK and keep the running version. A 304 polls again at once; a
//! failure (connection, TLS, timeout, 401/403/404/5xx) keeps serving and retries
//! after a jittered exponential [`Backoff`]. Changes of state (connected, lost,
//! a different error) are logged once; retries only at debug level.

use std::sync::Arc;

use super::backoff::Backoff;
use super::http::{ControlHttp, HttpError, PollAnswer, SnapshotBody};
use super::status::{Nack, Origin, Status, CONTROL_APPLIES};
use super::{persist, Bootstrap, SNAPSHOT_SOURCE};
use crate::config::Validated;
use crate::state::{Applied, Proxy};

/// Runs until the task is aborted.
pub async fn run(proxy: Arc<Proxy>, boot: Arc<Bootstrap>, http: ControlHttp, status: Arc<Status>) {
    let cp = boot.control_plane();
    tracing::info!(url = %cp.url, group = %cp.group, node = %cp.node_id, "polling the control plane");
    let mut backoff = Backoff::new(cp.backoff);
    // The last snapshot validated: the next one takes its unchanged routes as they are.
    let mut validated = None;
    loop {
        match http.poll(status.running_version()).await {
            Ok(answer) => {
                if !status.view().connected {
                    tracing::info!(url = %cp.url, "control plane connected");
                }
                status.update(|v| {
                    v.connected = true;
                    v.last_error = None;
                });
                backoff.reset();
                if let PollAnswer::Snapshot(snapshot) = answer {
                    handle(&proxy, &boot, &http, &status, snapshot, &mut validated).await;
                }
            }
            Err(e) => {
                lost(&status, &e, cp.url.as_str());
                let delay = backoff.next_delay(rand::random::<f64>());
                tracing::debug!(error = %e, ?delay, failures = backoff.failures(), "control plane poll failed; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Records a failed exchange; logs it when the state or the error changes.
fn lost(status: &Status, e: &HttpError, url: &str) {
    let text = e.to_string();
    let before = status.view();
    if before.connected || before.last_error.as_deref() != Some(text.as_str()) {
        tracing::warn!(url, error = %text, version = ?before.version, "control plane unreachable; serving the running config");
    }
    status.update(|v| {
        v.connected = false;
        v.last_error = Some(text);
    });
}

/// Applies one snapshot, then persists and ACKs it, or NACKs it. `validated` is the
/// last snapshot validated, whose unchanged routes this one takes as they are; a
/// snapshot that validates takes its place.
async fn handle(
    proxy: &Arc<Proxy>,
    boot: &Bootstrap,
    http: &ControlHttp,
    status: &Status,
    snapshot: SnapshotBody,
    validated: &mut Option<Validated>,
) {
    let version = snapshot.version;
    let file = snapshot.file.map(|f| *f);
    let applied = boot
        .combine_reusing(&snapshot.config, file, SNAPSHOT_SOURCE, validated.as_ref())
        .and_then(|next| {
            let applied = proxy.apply(next.config.clone()).map_err(|e| e.to_string());
            *validated = Some(next);
            applied
        });
    match applied {
        Ok(outcome) => {
            match outcome {
                Applied::New(local) => {
                    tracing::info!(
                        version,
                        local_version = local,
                        "control-plane snapshot applied"
                    )
                }
                Applied::Unchanged(_) => {
                    tracing::info!(version, "control-plane snapshot equals the running config")
                }
            }
            let serving = !proxy.snapshot().config.listeners.is_empty();
            status.update(|v| {
                v.version = Some(version);
                v.origin = Origin::ControlPlane;
                v.serving = serving;
            });
            metrics::counter!(CONTROL_APPLIES, "result" => "ack").increment(1);
            // Persist before the ACK: an ACKed version is one a restart serves.
            let cp = boot.control_plane();
            let (path, group, text) = (cp.snapshot_file.clone(), cp.group.clone(), snapshot.config);
            let written =
                tokio::task::spawn_blocking(move || persist::write(&path, &group, version, &text))
                    .await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot persist the snapshot; a restart without the control plane will not serve it")
                }
                Err(e) => tracing::warn!(error = %e, "persisting the snapshot failed"),
            }
            if let Err(e) = http.report(version, None).await {
                tracing::warn!(version, error = %e, "ACK not delivered; the next poll reports the running version");
            }
        }
        Err(error) => {
            for line in error.lines() {
                tracing::error!(
                    version,
                    error = line,
                    "control-plane snapshot refused; the running config keeps serving"
                );
            }
            metrics::counter!(CONTROL_APPLIES, "result" => "nack").increment(1);
            status.update(|v| {
                v.last_nack = Some(Nack {
                    version,
                    error: error.clone(),
                });
            });
            if let Err(e) = http.report(version, Some(&error)).await {
                tracing::warn!(version, error = %e, "NACK not delivered");
            }
        }
    }
}
