//! Shared helpers for the integration tests: a tiny real hyper server on 127.0.0.1:0
//! and a way to run the generator in-process. Every loop here is bounded.
#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)] // test support code

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use floodgate_loadtest::profile::{KeySpec, ProfileSpec, Protocol, TargetSpec};
use floodgate_loadtest::runner::RunConfig;
use floodgate_loadtest::target::Target;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// Requests arriving inside `window` (as offsets from the server's start) sleep `stall`.
#[derive(Clone, Copy, Debug)]
pub struct Stall {
    pub from: Duration,
    pub until: Duration,
    pub stall: Duration,
}

/// Starts a fast server (HTTP/1.1 + h2c) answering 200 "ok"; returns its address and
/// the instant its stall window is measured from.
pub async fn fast_server(stall: Option<Stall>) -> (SocketAddr, Instant) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let start = Instant::now();
    let stall = Arc::new(stall);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let _ = stream.set_nodelay(true);
            let stall = stall.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    let stall = *stall;
                    async move {
                        if let Some(s) = stall {
                            let t = start.elapsed();
                            if t >= s.from && t < s.until {
                                tokio::time::sleep(s.stall).await;
                            }
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, start)
}

/// A run config for one GET target at `url`.
pub fn config(url: &str, profile: ProfileSpec, connections: usize) -> RunConfig {
    let spec = TargetSpec {
        url: url.to_string(),
        method: "GET".into(),
        body: None,
        weight: 1,
    };
    RunConfig {
        targets: vec![Target::from_spec(&spec, None).unwrap()],
        keys: KeySpec::default(),
        protocol: Protocol::Http1,
        connections,
        max_in_flight: 100_000,
        timeout: Duration::from_secs(5),
        drain: Duration::from_secs(3),
        segments: profile.segments().unwrap(),
        max_requests: None,
    }
}

/// A fresh, empty folder under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let d = std::env::temp_dir().join(format!("floodgate-lt-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
