//! The request path, top to bottom: identify the request, find its route, fix
//! forwarding headers, run the route stack, and answer — with the upstream's
//! response or the proxy's own error response — then count and log it.

mod access;
mod authority;
mod path;
mod request_id;

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, Uri, Version};
use http_body_util::Limited;
use hyper::body::Incoming;
use tower::ServiceExt;

use crate::balance::{UpstreamServed, UseEndpointHost};
use crate::body::Body;
use crate::error::{error_response, ErrorKind, REASON_HEADER};
use crate::headers::{
    append_forwarded_for, client_ip, content_length, strip_hop_by_hop, ClientIp, TRACEPARENT,
    X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REQUEST_ID,
};
use crate::listener::ConnInfo;
use crate::load::Answered;
use crate::observe;
use crate::snapshot::{ListenerRuntime, Snapshot};
use crate::stack::cache::CACHE_HEADER;
pub use access::LoggedBody;
use request_id::ensure_request_id;

/// Handles one downstream request against the published `snapshot`.
pub async fn handle(
    snapshot: Arc<Snapshot>,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> Response<LoggedBody> {
    let start = crate::time::now();
    let log_on = snapshot.config.server.access_log.is_some();
    let (mut head, body) = req.into_parts();
    let listener = snapshot.listener(&conn.listener);
    let added = listener.map(|l| l.config.headers).unwrap_or_default();
    // Room for the id and forwarding headers, so they don't each grow the map.
    head.headers.reserve(4);
    // The id the proxy answers with (and logs); without it, only a client's id is logged.
    let request_id = if added.request_id {
        Some(ensure_request_id(&mut head.headers))
    } else {
        None
    };
    // A client's id is copied for the log (the headers move upstream) only when
    // the proxy has no id of its own and the log is on.
    let client_id = (request_id.is_none() && log_on)
        .then(|| head.headers.get(&X_REQUEST_ID).cloned())
        .flatten();
    let logged_id = request_id.as_ref().or(client_id.as_ref());
    // Kept for the access log only; no copy when the log is off.
    // A clone shares the request's bytes: no copy of the path.
    let original_path = log_on.then(|| {
        head.uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"))
    });
    let downstream_version = head.version;
    let method = head.method.clone();

    // One authority, checked before routing: routed and forwarded by the same host.
    // Dot segments resolved before routing: `/api/../admin` is routed as `/admin`.
    if let Some(uri) = path::normalize(&head.uri) {
        head.uri = uri;
    }
    let routed = match authority::normalize(&mut head) {
        Ok(()) => listener
            .and_then(|l| Some((l.router.find(&head)?, l)))
            .ok_or(ErrorKind::NoRoute),
        Err(e) => {
            tracing::debug!(reason = ?e, "request refused: its authority");
            Err(ErrorKind::BadRequest)
        }
    };
    // Looked up once for the body limit, the forwarded host and the log.
    let host = head.headers.get(header::HOST).cloned();
    let length = content_length(&head.headers);
    let seen = log_on.then(|| Seen {
        time: crate::time::unix_millis(start.into_std()),
        host: host.clone(),
        traceparent: head.headers.get(TRACEPARENT).cloned(),
        // The body's own size: its length, 0 without one, unknown when chunked
        // (no second header lookup).
        bytes_in: http_body::Body::size_hint(&body).exact(),
        path: original_path.unwrap_or_else(|| PathAndQuery::from_static("/")),
        request_id: logged_id.cloned(),
    });
    let (route, listener) = match routed {
        Ok(found) => found,
        Err(kind) => {
            let response = error_response(kind, request_id.as_ref());
            return finish(
                &snapshot,
                conn,
                Done {
                    route: None,
                    arm: None,
                    method,
                    version: downstream_version,
                    start,
                    seen,
                },
                response,
            );
        }
    };

    let response = match forward(listener, route, &mut head, body, conn, host, length) {
        Err(kind) => (error_response(kind, request_id.as_ref()), None),
        Ok((arm, req)) => {
            let result = arm.service.clone().oneshot(req).await;
            let response = match result {
                // The cluster answers with end-to-end fields only (hop-by-hop
                // fields are dropped as the upstream's head is read).
                Ok(mut response) => {
                    if let Some(id) = &request_id {
                        response.headers_mut().insert(X_REQUEST_ID, id.clone());
                    }
                    response
                }
                Err(e) => {
                    tracing::debug!(route = %route.config.name, error = %e, "request failed");
                    e.to_response(request_id.as_ref())
                }
            };
            (response, Some(arm))
        }
    };
    let (response, arm) = response;
    finish(
        &snapshot,
        conn,
        Done {
            route: Some(&route.name),
            arm,
            method,
            version: downstream_version,
            start,
            seen,
        },
        response,
    )
}

/// The request as the access log records it, taken before its head moves upstream.
struct Seen {
    time: u64,
    host: Option<HeaderValue>,
    traceparent: Option<HeaderValue>,
    bytes_in: Option<u64>,
    path: PathAndQuery,
    request_id: Option<HeaderValue>,
}

/// Turns the downstream request into the upstream one: body limit, forwarding
/// headers, rewrite; and picks the destination arm. `original_host` is the
/// authority the client addressed (`authority::normalize` made it `Host`), `length`
/// the request's `Content-Length`.
fn forward<'r>(
    listener: &ListenerRuntime,
    route: &'r crate::router::Route,
    head: &mut http::request::Parts,
    body: Incoming,
    conn: &ConnInfo,
    original_host: Option<HeaderValue>,
    length: Option<u64>,
) -> Result<(&'r crate::router::Arm, Request<Body>), ErrorKind> {
    let limit = listener.config.limits.max_request_body_bytes;
    if length.is_some_and(|len| len > limit) {
        return Err(ErrorKind::BodyTooLarge);
    }
    let arm = route.pick_arm().ok_or(ErrorKind::NoRoute)?;

    // Worked out before the forwarding headers change, only for a stack that reads it.
    let client_ip = route.needs_client_ip.then(|| {
        client_ip(
            conn.client.ip().to_canonical(),
            &head.headers,
            &listener.config.trusted_proxies,
        )
    });
    strip_hop_by_hop(&mut head.headers);
    let forwarded = listener.config.headers.forwarded;
    if let Some(host) = original_host {
        // Re-set only when missing (HTTP/2 request, or `Host` named in `Connection`).
        if !head.headers.contains_key(header::HOST) {
            head.headers.insert(header::HOST, host.clone());
        }
        if forwarded {
            head.headers.insert(X_FORWARDED_HOST, host);
        }
    }
    if forwarded {
        append_forwarded_for(&mut head.headers, &conn.client_text);
        head.headers.insert(
            X_FORWARDED_PROTO,
            HeaderValue::from_static(if conn.tls { "https" } else { "http" }),
        );
    }
    let rewritten = route.rewrite(&head.uri);
    let uri = rewritten.as_ref().unwrap_or(&head.uri);
    // Upstream HTTP/1.1 wants origin-form; the cluster re-adds the authority for HTTP/2.
    let path_and_query = match uri.path_and_query() {
        Some(pq) => Uri::from(pq.clone()),
        None => Uri::from_static("/"),
    };

    let body = Body::new(Limited::new(
        body,
        usize::try_from(limit).unwrap_or(usize::MAX),
    ));
    let mut req = Request::new(body);
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = path_and_query;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = std::mem::take(&mut head.headers);
    if !route.config.preserve_host {
        req.extensions_mut().insert(UseEndpointHost);
    }
    if let Some(ip) = client_ip {
        req.extensions_mut().insert(ClientIp(ip));
    }
    Ok((arm, req))
}

struct Done<'a> {
    route: Option<&'a metrics::SharedString>,
    arm: Option<&'a crate::router::Arm>,
    method: http::Method,
    version: Version,
    start: crate::time::Instant,
    seen: Option<Seen>,
}

/// Counts a finished request; with the access log on, its line is written when
/// the response body ends.
fn finish(
    snapshot: &Arc<Snapshot>,
    conn: &ConnInfo,
    d: Done<'_>,
    response: Response<Body>,
) -> Response<LoggedBody> {
    let elapsed = crate::time::now().saturating_duration_since(d.start);
    let status = response.status();
    // The proxy's own answers carry a reason; they are all errors.
    let reason = if status.as_u16() >= 400 {
        response.headers().get(REASON_HEADER)
    } else {
        None
    };
    match d.arm {
        Some(arm) => {
            arm.metrics.record(status, elapsed);
            record_load(arm, &response, reason, elapsed);
        }
        None => unrouted_metrics().record(status, elapsed),
    }
    let reason = reason.cloned();
    let (Some(config), Some(seen)) = (&snapshot.config.server.access_log, d.seen) else {
        return response.map(LoggedBody::unlogged);
    };
    let pending = access::Pending {
        config: Arc::clone(config),
        start: d.start,
        time: seen.time,
        client: conn.client,
        listener: Arc::clone(&conn.listener),
        method: d.method,
        host: seen.host,
        path: seen.path,
        version: d.version,
        status: status.as_u16(),
        bytes_in: seen.bytes_in,
        upstream: response.extensions().get::<UpstreamServed>().cloned(),
        route: d.route.cloned(),
        cluster: d.arm.map(|a| a.cluster.clone()),
        reason,
        request_id: seen.request_id,
        traceparent: seen.traceparent,
    };
    access::log_on_end(response, pending)
}

/// Counts the answer in the cluster's load counters: who made it (the proxy's own
/// answers carry a `reason`, the cache's hits a cache header) decides whether its
/// latency is the app's (`HIT` and `STALE` come from memory). At most one header
/// lookup.
fn record_load(
    arm: &crate::router::Arm,
    response: &Response<Body>,
    reason: Option<&HeaderValue>,
    elapsed: std::time::Duration,
) {
    let status = response.status().as_u16();
    let by = if reason.is_some() {
        Answered::Proxy
    } else if response
        .headers()
        .get(CACHE_HEADER)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"miss"))
    {
        Answered::Cache
    } else {
        Answered::Upstream
    };
    arm.load
        .record(status, by, reason.map(HeaderValue::as_bytes), elapsed);
}

/// Metrics of requests that matched no route (labels `route="-"`, `cluster="-"`).
fn unrouted_metrics() -> &'static observe::RequestMetrics {
    static METRICS: std::sync::OnceLock<observe::RequestMetrics> = std::sync::OnceLock::new();
    METRICS.get_or_init(|| {
        observe::RequestMetrics::new(
            metrics::SharedString::const_str("-"),
            metrics::SharedString::const_str("-"),
        )
    })
}
