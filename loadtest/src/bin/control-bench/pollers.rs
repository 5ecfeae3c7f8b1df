//! Simulated proxies: light long-pollers that ACK every version they get, and the
//! collection of their ACKs into latencies.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::bail;
use http::{Method, StatusCode};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::control::send;
use super::{GROUP, PROXY};

/// A poller ACKed `version` at `at`.
#[derive(Debug, Clone, Copy)]
pub struct Acked {
    pub poller: usize,
    pub version: u64,
    pub at: Instant,
}

/// A simulated proxy: long-polls, ACKs each new version, reports the ACK; reconnects
/// after errors. Runs until the process ends.
pub async fn poller(id: usize, addr: SocketAddr, events: mpsc::UnboundedSender<Acked>) {
    let node = format!("bench-{id}");
    let mut version = 0u64;
    loop {
        let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok((mut sender, conn)) = http1::handshake(TokioIo::new(stream)).await else {
            continue;
        };
        tokio::spawn(conn);
        loop {
            let path = format!("/v1/snapshot?group={GROUP}&node={node}&version={version}");
            let polled = tokio::time::timeout(
                Duration::from_secs(45),
                send(&mut sender, addr, Method::GET, &path, PROXY, None),
            )
            .await;
            let (status, body) = match polled {
                Ok(Ok(r)) => r,
                _ => break,
            };
            if status == StatusCode::NOT_MODIFIED {
                continue;
            }
            let Some(v) = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|b| b["version"].as_u64())
            else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let ack = json!({ "group": GROUP, "node": node, "version": v });
            match send(&mut sender, addr, Method::POST, "/v1/ack", PROXY, Some(ack)).await {
                Ok((StatusCode::OK, _)) => {}
                _ => break,
            }
            version = v;
            if events
                .send(Acked {
                    poller: id,
                    version: v,
                    at: Instant::now(),
                })
                .is_err()
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Collects, for pollers `0..n`, the first ACK of a version other than `old` after
/// `t0`; returns the latencies and the new version (None when none came in time).
pub async fn round(
    events: &mut mpsc::UnboundedReceiver<Acked>,
    n: usize,
    old: Option<u64>,
    t0: Instant,
    timeout: Duration,
) -> (Vec<Duration>, Option<u64>) {
    let mut seen = vec![false; n];
    let mut latencies = Vec::with_capacity(n);
    let mut new = None;
    let deadline = tokio::time::Instant::now() + timeout;
    while latencies.len() < n {
        let Ok(Some(e)) = tokio::time::timeout_at(deadline, events.recv()).await else {
            break;
        };
        if Some(e.version) == old || e.poller >= n || seen[e.poller] {
            continue;
        }
        if new.is_some_and(|v| v != e.version) {
            continue;
        }
        new = Some(e.version);
        seen[e.poller] = true;
        latencies.push(e.at.saturating_duration_since(t0));
    }
    (latencies, new)
}

/// Starts pollers `from..to` and waits until each has ACKed the current version.
pub async fn add_pollers(
    addr: SocketAddr,
    from: usize,
    to: usize,
    tx: &mpsc::UnboundedSender<Acked>,
    rx: &mut mpsc::UnboundedReceiver<Acked>,
) -> anyhow::Result<u64> {
    for id in from..to {
        tokio::spawn(poller(id, addr, tx.clone()));
    }
    let mut seen = vec![false; to];
    let mut count = 0;
    let mut version = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while count < to - from {
        let Ok(Some(e)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            bail!("only {count} of {} new pollers got the snapshot", to - from);
        };
        if e.poller >= from && e.poller < to && !seen[e.poller] {
            seen[e.poller] = true;
            count += 1;
            version = e.version;
        }
    }
    Ok(version)
}
