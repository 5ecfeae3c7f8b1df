//! The HTTP/JSON API (hyper 1, HTTP/1.1 and HTTP/2): routing, auth, bodies.
//! `docs/control-plane.md` lists every endpoint with its requests and answers.

mod auth;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use floodgate::control_client::report::LoadReport;

use crate::autoscale::ScaleState;
use crate::config::Role;
use crate::observe;
use crate::plane::Plane;
use crate::push::{self, PollOutcome};
use crate::registry::{self, DeregisterRequest, RegisterRequest, RegistryError};
use crate::reports::ReportError;
use crate::store::{Nack, NodeReport, Registered, Snapshot, StoreError};

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;
/// Largest load report accepted (a proxy with many clusters).
const MAX_REPORT_BODY: usize = 1024 * 1024;
/// The response header carrying the group's current version (also on 304).
pub const VERSION_HEADER: &str = "x-floodgate-version";

type Body = Full<Bytes>;

/// Serves the API on `socket` (over TLS when `tls` is given) until the task is
/// aborted; aborting it also closes every open connection (kept-alive report
/// connections included), as a stopped process would.
pub async fn serve(socket: TcpListener, plane: Arc<Plane>, tls: Option<TlsAcceptor>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        // Reap finished connections so the set holds only open ones.
        while connections.try_join_next().is_some() {}
        let (stream, _) = match socket.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let plane = Arc::clone(&plane);
        let tls = tls.clone();
        connections.spawn(async move {
            match tls {
                None => serve_connection(stream, plane).await,
                Some(acceptor) => {
                    if let Some(stream) = crate::tls::accept(&acceptor, stream).await {
                        serve_connection(stream, plane).await;
                    }
                }
            }
        });
    }
}

/// Serves HTTP/1.1 or HTTP/2 on one accepted connection (plain or TLS).
async fn serve_connection<I>(io: I, plane: Arc<Plane>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let plane = Arc::clone(&plane);
        async move { Ok::<_, Infallible>(respond(&plane, req).await) }
    });
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), service)
        .await;
}

/// Who may call an endpoint; None for an unknown one.
fn allowed(method: &Method, path: &str) -> Option<&'static [Role]> {
    const PROXY: &[Role] = &[Role::Proxy];
    const OPERATOR: &[Role] = &[Role::Operator];
    const REGISTRANT: &[Role] = &[Role::App, Role::Operator];
    const OPEN: &[Role] = &[];
    Some(match (method, path) {
        (&Method::GET, "/live" | "/ready") => OPEN,
        (&Method::GET, "/v1/snapshot") | (&Method::POST, "/v1/ack" | "/v1/nack") => PROXY,
        (&Method::POST, "/v1/reports") => PROXY,
        (&Method::GET, "/v1/nodes" | "/v1/groups" | "/v1/endpoints" | "/metrics") => OPERATOR,
        (&Method::GET, "/v1/reports" | "/v1/scale" | "/v1/scalers" | "/v1/quotas") => OPERATOR,
        (&Method::GET, p) if p.strip_prefix("/v1/scale/").is_some_and(|c| !c.is_empty()) => {
            OPERATOR
        }
        (&Method::POST | &Method::DELETE, "/v1/endpoints") => REGISTRANT,
        _ => return None,
    })
}

/// Answers one request.
pub async fn respond(plane: &Plane, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let Some(roles) = allowed(req.method(), &path) else {
        return error(
            StatusCode::NOT_FOUND,
            "no such endpoint (see docs/control-plane.md)",
        );
    };
    if !roles.is_empty() {
        if let Err(status) = auth::check(&plane.config.tokens, req.headers(), roles) {
            let why = if status == StatusCode::FORBIDDEN {
                "this token's role may not call this endpoint"
            } else {
                "a valid `Authorization: Bearer <token>` is required"
            };
            let mut r = error(status, why);
            if status == StatusCode::UNAUTHORIZED {
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            return r;
        }
    }
    let result = match (req.method().clone(), path.as_str()) {
        (_, "/live") => Ok(text(StatusCode::OK, "live\n")),
        (_, "/ready") => Ok(text(StatusCode::OK, "ready\n")),
        (_, "/metrics") => Ok(metrics_page()),
        (_, "/v1/snapshot") => snapshot(plane, req.uri().query().unwrap_or("")).await,
        (_, "/v1/ack") => ack(plane, req, false).await,
        (_, "/v1/nack") => ack(plane, req, true).await,
        (_, "/v1/nodes") => plane.store.nodes().map(|n| ok_json(&json!({ "nodes": n }))),
        (_, "/v1/groups") => Ok(ok_json(&json!({ "groups": plane.groups() }))),
        (Method::GET, "/v1/endpoints") => plane
            .store
            .endpoints()
            .map(|e| ok_json(&json!({ "endpoints": e }))),
        (Method::POST, "/v1/endpoints") => register(plane, req).await,
        (Method::POST, "/v1/reports") => report(plane, req).await,
        (Method::GET, "/v1/reports") => plane
            .load
            .reporters(crate::autoscale::run::now_ms())
            .map(|r| ok_json(&json!({ "reporters": r }))),
        (Method::GET, "/v1/scale") => Ok(scale_all(plane)),
        (Method::GET, "/v1/quotas") => Ok(ok_json(&json!({
            "routes": plane.quotas.view(crate::autoscale::run::now_ms())
        }))),
        (Method::GET, "/v1/scalers") => Ok(ok_json(&json!({ "scalers": plane.replicas.all() }))),
        (Method::GET, p) if p.starts_with("/v1/scale/") => Ok(scale_one(plane, p)),
        (_, "/v1/endpoints") => deregister(plane, req).await,
        _ => Ok(error(StatusCode::NOT_FOUND, "no such endpoint")),
    };
    result.unwrap_or_else(|e| {
        tracing::error!(error = %e, "store failure");
        error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
    })
}

#[derive(Deserialize)]
struct PollQuery {
    group: String,
    node: String,
    #[serde(default)]
    version: u64,
}

async fn snapshot(plane: &Plane, query: &str) -> Result<Response<Body>, StoreError> {
    let q: PollQuery = match serde_urlencoded(query) {
        Ok(q) => q,
        Err(e) => return Ok(error(StatusCode::BAD_REQUEST, &e)),
    };
    if q.node.is_empty() || q.group.is_empty() {
        return Ok(error(
            StatusCode::BAD_REQUEST,
            "group and node must not be empty",
        ));
    }
    let running = (q.version != 0).then_some(q.version);
    Ok(match push::poll(plane, &q.group, &q.node, running).await? {
        PollOutcome::Snapshot(s) => {
            let mut r = json_bytes(StatusCode::OK, snapshot_body(&s));
            set_version(&mut r, Some(s.version));
            r
        }
        PollOutcome::NotModified(current) => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            set_version(&mut r, current);
            r
        }
        PollOutcome::UnknownGroup => error(
            StatusCode::NOT_FOUND,
            &format!(
                "no group `{}`: no such file in the config directory",
                q.group
            ),
        ),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckRequest {
    group: String,
    node: String,
    version: u64,
    #[serde(default)]
    error: Option<String>,
}

async fn ack(
    plane: &Plane,
    req: Request<Incoming>,
    nack: bool,
) -> Result<Response<Body>, StoreError> {
    let a: AckRequest = match read_json(req).await {
        Ok(a) => a,
        Err(r) => return Ok(r),
    };
    let report = if nack {
        let error = a.error.unwrap_or_default();
        tracing::warn!(group = %a.group, node = %a.node, version = a.version, error = %error, "node refused a version (NACK)");
        NodeReport::Nack(Nack {
            version: a.version,
            error,
        })
    } else {
        if a.error.is_some() {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                "an ACK has no `error`; send a NACK",
            ));
        }
        tracing::debug!(group = %a.group, node = %a.node, version = a.version, "node runs a version (ACK)");
        NodeReport::Ack(a.version)
    };
    plane.store.report(&a.group, &a.node, report)?;
    Ok(ok_json(&json!({ "ok": true })))
}

async fn register(plane: &Plane, req: Request<Incoming>) -> Result<Response<Body>, StoreError> {
    let r: RegisterRequest = match read_json(req).await {
        Ok(r) => r,
        Err(resp) => return Ok(resp),
    };
    let (cluster, address) = (r.cluster.clone(), r.address.clone());
    match registry::register(plane, r) {
        Ok((outcome, ttl, groups)) => {
            let mut resp = ok_json(&json!({
                "cluster": cluster,
                "address": address,
                "registered": outcome == Registered::New,
                "ttl_ms": u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
                "groups": groups,
            }));
            if outcome == Registered::New {
                *resp.status_mut() = StatusCode::CREATED;
            }
            Ok(resp)
        }
        Err(RegistryError::Invalid(why)) => Ok(error(StatusCode::BAD_REQUEST, &why)),
        Err(RegistryError::Draining(why)) => Ok(error(StatusCode::CONFLICT, &why)),
        Err(RegistryError::Store(e)) => Err(e),
    }
}

async fn deregister(plane: &Plane, req: Request<Incoming>) -> Result<Response<Body>, StoreError> {
    let r: DeregisterRequest = match read_json(req).await {
        Ok(r) => r,
        Err(resp) => return Ok(resp),
    };
    if registry::deregister(plane, &r)? {
        Ok(ok_json(&json!({ "deregistered": true })))
    } else {
        Ok(error(StatusCode::NOT_FOUND, "no such registration"))
    }
}

async fn report(plane: &Plane, req: Request<Incoming>) -> Result<Response<Body>, StoreError> {
    let r: LoadReport = match read_json_up_to(req, MAX_REPORT_BODY).await {
        Ok(r) => r,
        Err(resp) => {
            metrics::counter!(observe::REPORTS, "result" => "refused").increment(1);
            return Ok(resp);
        }
    };
    let now_ms = crate::autoscale::run::now_ms();
    let checked = crate::quota::check(&r).map_err(ReportError::Invalid);
    match checked.and_then(|()| plane.load.record(&r, now_ms)) {
        Ok(()) => {
            metrics::counter!(observe::REPORTS, "result" => "ok").increment(1);
            plane.reports_arrived.notify_one();
            // The reply carries the reporter's leases of cluster-wide limits, if any.
            let leases = plane.quotas.on_report(&r, now_ms);
            if leases.is_empty() {
                Ok(ok_json(&json!({ "ok": true })))
            } else {
                Ok(ok_json(&json!({ "ok": true, "leases": leases })))
            }
        }
        Err(ReportError::Invalid(why)) => {
            metrics::counter!(observe::REPORTS, "result" => "refused").increment(1);
            Ok(error(StatusCode::BAD_REQUEST, &why))
        }
        Err(ReportError::Store(e)) => Err(e),
    }
}

/// `GET /v1/scale`: every autoscaled cluster's state.
fn scale_all(plane: &Plane) -> Response<Body> {
    let map = plane.scale.current();
    let clusters: Vec<&ScaleState> = map.values().collect();
    ok_json(&json!({ "clusters": clusters }))
}

/// `GET /v1/scale/{cluster}`: one cluster's state, flat (for KEDA's `valueLocation`).
fn scale_one(plane: &Plane, path: &str) -> Response<Body> {
    let name = path.trim_start_matches("/v1/scale/");
    let name = percent_decode(name).unwrap_or_else(|| name.to_owned());
    let map = plane.scale.current();
    match map.get(&name) {
        Some(state) => ok_json(&json!(state)),
        None if plane.config.autoscale.contains_key(&name) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("cluster `{name}` has no decision yet (the autoscaler starts within a tick)"),
        ),
        None => error(
            StatusCode::NOT_FOUND,
            &format!("cluster `{name}` is not autoscaled (no `autoscale.{name}` in the control-plane config)"),
        ),
    }
}

/// Query strings are `k=v&k=v` with percent-encoding; parsed through JSON so
/// serde does the typing.
fn serde_urlencoded<T: DeserializeOwned>(query: &str) -> Result<T, String> {
    let mut map = serde_json::Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).ok_or_else(|| format!("bad percent-encoding in `{k}`"))?;
        let value = match v.parse::<u64>() {
            Ok(n) if k == "version" => serde_json::Value::from(n),
            _ => serde_json::Value::String(v),
        };
        map.insert(k.to_owned(), value);
    }
    serde_json::from_value(serde_json::Value::Object(map))
        .map_err(|e| format!("query: {e} (expected group=G&node=N&version=V)"))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

async fn read_json<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, Response<Body>> {
    read_json_up_to(req, MAX_BODY).await
}

async fn read_json_up_to<T: DeserializeOwned>(
    req: Request<Incoming>,
    limit: usize,
) -> Result<T, Response<Body>> {
    let bytes = match Limited::new(req.into_body(), limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                &format!("cannot read body: {e}"),
            ))
        }
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("body: {e}")))
}

fn set_version(r: &mut Response<Body>, version: Option<u64>) {
    if let Some(v) = version {
        if let Ok(value) = HeaderValue::from_str(&v.to_string()) {
            r.headers_mut().insert(VERSION_HEADER, value);
        }
    }
}

fn metrics_page() -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(
        floodgate::observe::prometheus().render(),
    )));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn ok_json(value: &serde_json::Value) -> Response<Body> {
    json_response(StatusCode::OK, value)
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({ "error": message }))
}

/// `GET /v1/snapshot`'s answer: `group`, `version`, `config` (the YAML text) and, when
/// the snapshot has it, `file` (the file form, already JSON), written without building
/// a JSON value of a config that may be a megabyte.
fn snapshot_body(s: &Snapshot) -> Vec<u8> {
    fn text(v: &str) -> String {
        serde_json::to_string(v).unwrap_or_else(|_| "\"\"".to_owned())
    }
    let mut out = Vec::with_capacity(s.config.len() + s.file.as_ref().map_or(0, |f| f.len()) + 128);
    out.extend_from_slice(b"{\"group\":");
    out.extend_from_slice(text(&s.group).as_bytes());
    out.extend_from_slice(format!(",\"version\":{},\"config\":", s.version).as_bytes());
    out.extend_from_slice(text(&s.config).as_bytes());
    if let Some(file) = &s.file {
        out.extend_from_slice(b",\"file\":");
        out.extend_from_slice(file.as_bytes());
    }
    out.push(b'}');
    out
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let bytes = serde_json::to_vec_pretty(value).unwrap_or_else(|_| b"{}".to_vec());
    json_bytes(status, bytes)
}

fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let q: PollQuery = serde_urlencoded("group=edge&node=a%20b&version=7").unwrap();
        assert_eq!(
            (q.group.as_str(), q.node.as_str(), q.version),
            ("edge", "a b", 7)
        );
        let q: PollQuery = serde_urlencoded("group=edge&node=n").unwrap();
        assert_eq!(q.version, 0);
        assert!(serde_urlencoded::<PollQuery>("node=n").is_err());
        assert!(serde_urlencoded::<PollQuery>("group=g&node=%zz").is_err());
    }
}
