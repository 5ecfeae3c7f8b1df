//! The admin listener: `/live`, `/ready`, `/metrics`, `/config`, `/clusters`.
//!
//! Served on its own address (default `127.0.0.1:9901`) so probes and scrapes
//! never compete with, or get routed like, proxied traffic.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::body::{self, Body};
use crate::observe;
use crate::state::Proxy;

/// A bound admin server.
pub struct Admin {
    socket: TcpListener,
}

impl Admin {
    /// Binds the admin address.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        Ok(Self {
            socket: TcpListener::bind(addr).await?,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Serves admin requests until the task is dropped or aborted.
    pub async fn serve(self, proxy: Arc<Proxy>) {
        loop {
            let (stream, _) = match self.socket.accept().await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let proxy = Arc::clone(&proxy);
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let proxy = Arc::clone(&proxy);
                    async move { Ok::<_, Infallible>(respond(&proxy, req)) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}

/// Answers one admin request.
pub fn respond(proxy: &Proxy, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match req.uri().path() {
        "/live" => text(StatusCode::OK, "live\n"),
        "/ready" => {
            if proxy.is_ready() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
            }
        }
        "/metrics" => {
            proxy.publish_gauges();
            let mut r = Response::new(body::full(observe::prometheus().render()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        "/config" => {
            let snapshot = proxy.snapshot();
            json(&serde_json::json!({
                "version": snapshot.version,
                "source": snapshot.config.source,
                "config": &*snapshot.config,
            }))
        }
        "/clusters" => json(&serde_json::json!({
            "version": proxy.snapshot().version,
            "clusters": proxy.cluster_status(),
        })),
        "/" => text(
            StatusCode::OK,
            "floodgate admin: /live /ready /metrics /config /clusters\n",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body_text: &'static str) -> Response<Body> {
    let mut r = Response::new(body::full(body_text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json(value: &serde_json::Value) -> Response<Body> {
    match serde_json::to_vec_pretty(value) {
        Ok(bytes) => {
            let mut r = Response::new(body::full(bytes));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "serialization failed\n"),
    }
}
