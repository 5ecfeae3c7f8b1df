//! The admin listener: `/live`, `/ready`, `/metrics`, `/config`, `/clusters`, and
//! `/control` when the proxy takes its config from a control plane.
//!
//! `/ready` is 200 while not draining and, for a proxy with a control plane, once
//! it has something to serve (the bootstrap's listeners, a persisted snapshot or
//! one from the control plane), connected or not, as Envoy is ready after its first
//! config; its body then says `connected` or `not_connected` and the version.
//!
//! Served on its own address (default `127.0.0.1:9901`) so probes and scrapes
//! never compete with, or get routed like, proxied traffic.
//!
//! Bound to a loopback address, it answers only requests whose `Host` is an IP
//! address or `localhost` (403 otherwise, `/live` and `/ready` excepted): a page
//! in a browser on the same host could otherwise read `/config` through DNS
//! rebinding (its requests carry the attacker's host name). With `admin.token`
//! (required when it is bound to any other address) every request but `/live` and
//! `/ready` must carry `Authorization: Bearer <token>` (401 otherwise): the API
//! shows the config and every cluster's state.

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
use crate::config::secret::Secret;
use crate::control_client::status::Status;
use crate::observe;
use crate::state::Proxy;

/// A bound admin server.
pub struct Admin {
    socket: TcpListener,
    control: Option<Arc<Status>>,
    /// Bound to loopback: only IP or `localhost` hosts are answered.
    loopback: bool,
    /// The bearer token asked for (all but `/live` and `/ready`).
    token: Option<Arc<Secret>>,
}

impl Admin {
    /// Binds the admin address.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        Ok(Self {
            socket: TcpListener::bind(addr).await?,
            control: None,
            loopback: addr.ip().is_loopback(),
            token: None,
        })
    }

    /// Asks every request but `/live` and `/ready` for `Authorization: Bearer <token>`.
    pub fn with_token(mut self, token: Option<Secret>) -> Self {
        self.token = token.map(Arc::new);
        self
    }

    /// Reports the control-plane client's status on `/ready` and `/control`.
    pub fn with_control(mut self, status: Arc<Status>) -> Self {
        self.control = Some(status);
        self
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
            let control = self.control.clone();
            let loopback = self.loopback;
            let token = self.token.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let proxy = Arc::clone(&proxy);
                    let control = control.clone();
                    let token = token.clone();
                    async move {
                        let response = if loopback && !local_host(&req) {
                            text(
                                StatusCode::FORBIDDEN,
                                "admin: the Host must be an IP address or localhost\n",
                            )
                        } else if !authorized(token.as_deref(), &req) {
                            let mut r = text(
                                StatusCode::UNAUTHORIZED,
                                "admin: Authorization: Bearer <admin.token> required\n",
                            );
                            r.headers_mut().insert(
                                header::WWW_AUTHENTICATE,
                                HeaderValue::from_static("Bearer"),
                            );
                            r
                        } else {
                            respond(&proxy, control.as_deref(), req)
                        };
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}

/// Answers one admin request; `control` is the control-plane client's status, if any.
pub fn respond(proxy: &Proxy, control: Option<&Status>, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match req.uri().path() {
        "/live" => text(StatusCode::OK, "live\n"),
        "/ready" => match control {
            _ if !proxy.is_ready() => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
            None => text(StatusCode::OK, "ready\n"),
            Some(c) if c.is_serving() => {
                owned_text(StatusCode::OK, format!("ready\n{}", c.summary()))
            }
            Some(c) => owned_text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("waiting for the first snapshot\n{}", c.summary()),
            ),
        },
        "/control" => match control {
            Some(c) => json(&serde_json::json!(c.view())),
            None => text(StatusCode::NOT_FOUND, "no control_plane configured\n"),
        },
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
            "floodgate admin: /live /ready /metrics /config /clusters /control\n",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Whether a request passes the admin token: no token configured, a probe path
/// (`/live`, `/ready`), or `Authorization: Bearer <token>` (compared in constant time).
fn authorized<B>(token: Option<&Secret>, req: &Request<B>) -> bool {
    let Some(token) = token else {
        return true;
    };
    if matches!(req.uri().path(), "/live" | "/ready") {
        return true;
    }
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|presented| token.matches(presented.trim_ascii()))
}

/// Whether a request may be answered by a loopback-bound admin listener: `Host`
/// (or the URI's authority) absent, an IP address, or `localhost`; `/live` and
/// `/ready` always.
fn local_host<B>(req: &Request<B>) -> bool {
    if matches!(req.uri().path(), "/live" | "/ready") {
        return true;
    }
    let host = req.uri().host().map(str::to_owned).or_else(|| {
        let value = req.headers().get(header::HOST)?.to_str().ok()?;
        let authority = http::uri::Authority::try_from(value).ok()?;
        Some(authority.host().to_owned())
    });
    let Some(host) = host else {
        // No Host at all (HTTP/1.0 tools): nothing a browser would send.
        return req.headers().get(header::HOST).is_none();
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>().is_ok()
        || bare.eq_ignore_ascii_case("localhost")
        || bare.to_ascii_lowercase().ends_with(".localhost")
}

fn text(status: StatusCode, body_text: &'static str) -> Response<Body> {
    owned_text(status, body_text.to_owned())
}

fn owned_text(status: StatusCode, body_text: String) -> Response<Body> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with_host(path: &str, host: Option<&str>) -> Request<()> {
        let mut b = Request::get(path);
        if let Some(h) = host {
            b = b.header(header::HOST, h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn only_ip_and_localhost_hosts_reach_a_loopback_admin() {
        for ok in [
            Some("127.0.0.1:9901"),
            Some("[::1]:9901"),
            Some("localhost:9901"),
            Some("LOCALHOST"),
            Some("10.1.2.3"),
            None,
        ] {
            assert!(local_host(&with_host("/config", ok)), "{ok:?}");
        }
        for bad in [
            "evil.test:9901",
            "rebind.attacker.example",
            "127.0.0.1.nip.io",
            "a b",
        ] {
            assert!(!local_host(&with_host("/config", Some(bad))), "{bad}");
        }
        assert!(
            local_host(&with_host("/ready", Some("evil.test"))),
            "probes pass"
        );
    }

    #[test]
    fn off_loopback_every_path_but_the_probes_needs_the_bearer_token() {
        let token = Secret::new("admin-token-0123456789");
        let req = |path: &str, auth: Option<&str>| {
            let mut b = Request::get(path);
            if let Some(a) = auth {
                b = b.header(header::AUTHORIZATION, a);
            }
            b.body(()).unwrap()
        };
        assert!(authorized(None, &req("/config", None)));
        for probe in ["/live", "/ready"] {
            assert!(authorized(Some(&token), &req(probe, None)));
        }
        for path in ["/config", "/clusters", "/metrics", "/control", "/"] {
            assert!(!authorized(Some(&token), &req(path, None)), "{path}");
            assert!(!authorized(
                Some(&token),
                &req(path, Some("Bearer wrong-token-0123456789"))
            ));
            assert!(!authorized(
                Some(&token),
                &req(path, Some("Basic admin-token-0123456789"))
            ));
            assert!(authorized(
                Some(&token),
                &req(path, Some("Bearer admin-token-0123456789"))
            ));
        }
    }
}
