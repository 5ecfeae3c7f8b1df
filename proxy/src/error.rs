//! The one error type of the request path, and the one function that turns it into
//! the response a client gets.
//!
//! Every error says where it came from ([`Origin`]), what happened ([`ErrorKind`],
//! which fixes the status code and the `x-floodgate-reason` value) and whether the
//! request reached the upstream, which decides whether a retry is safe.

use std::fmt;
use std::time::Duration;

use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};

use crate::body::{self, Body, BoxError};

/// Response header naming why the proxy answered by itself.
pub const REASON_HEADER: &str = "x-floodgate-reason";

/// Which side of the proxy an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The client sent something the proxy cannot forward.
    Downstream,
    /// The proxy's own policy decided (no route, no endpoint, deadline).
    Proxy,
    /// The upstream endpoint failed.
    Upstream,
}

/// What went wrong; fixes the status code and reason of the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No route matched the request.
    NoRoute,
    /// The request body is larger than the listener allows.
    BodyTooLarge,
    /// The request could not be read from the client.
    BadRequest,
    /// The cluster has no healthy, non-ejected endpoint.
    NoHealthyEndpoint,
    /// The TCP or TLS connection to the endpoint failed (nothing was sent).
    ConnectFailed,
    /// The connection to the endpoint was not made within `connect_timeout`.
    ConnectTimeout,
    /// The upstream closed or reset the connection before a full response.
    UpstreamReset,
    /// The upstream's response broke the protocol (a malformed head, an invalid
    /// or ambiguous body length): Envoy's `UPE`.
    UpstreamProtocol,
    /// A try took longer than its `per_try_timeout`.
    UpstreamTimeout,
    /// The whole request took longer than the route's `timeout`.
    RequestTimeout,
    /// A rate limit refused the request.
    RateLimited,
    /// Admission control shed the request (queue full or queue deadline passed).
    Overloaded,
    /// The cluster's circuit breaker is open.
    CircuitOpen,
    /// A circuit-breaker threshold (connections, pending, requests, retries) is reached.
    Overflow,
}

impl ErrorKind {
    /// The status code the client receives.
    pub fn status(self) -> StatusCode {
        match self {
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::NoHealthyEndpoint | Self::Overloaded | Self::CircuitOpen | Self::Overflow => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::ConnectFailed | Self::UpstreamReset | Self::UpstreamProtocol => {
                StatusCode::BAD_GATEWAY
            }
            Self::ConnectTimeout | Self::UpstreamTimeout | Self::RequestTimeout => {
                StatusCode::GATEWAY_TIMEOUT
            }
        }
    }

    /// The machine-readable reason (`x-floodgate-reason` and the JSON body).
    pub fn reason(self) -> &'static str {
        match self {
            Self::NoRoute => "no_route",
            Self::BodyTooLarge => "body_too_large",
            Self::BadRequest => "bad_request",
            Self::NoHealthyEndpoint => "no_healthy_endpoint",
            Self::ConnectFailed => "connect_failed",
            Self::ConnectTimeout => "connect_timeout",
            Self::UpstreamReset => "upstream_reset",
            Self::UpstreamProtocol => "upstream_protocol_error",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::RequestTimeout => "request_timeout",
            Self::RateLimited => "rate_limited",
            Self::Overloaded => "overloaded",
            Self::CircuitOpen => "circuit_open",
            Self::Overflow => "overflow",
        }
    }

    /// Where errors of this kind come from.
    pub fn origin(self) -> Origin {
        match self {
            Self::BodyTooLarge | Self::BadRequest => Origin::Downstream,
            Self::NoRoute
            | Self::NoHealthyEndpoint
            | Self::RequestTimeout
            | Self::RateLimited
            | Self::Overloaded
            | Self::CircuitOpen
            | Self::Overflow => Origin::Proxy,
            Self::ConnectFailed
            | Self::ConnectTimeout
            | Self::UpstreamReset
            | Self::UpstreamProtocol
            | Self::UpstreamTimeout => Origin::Upstream,
        }
    }

    /// The default `Retry-After` hint sent with this kind, if any (an error may carry its own).
    pub fn retry_after(self) -> Option<Duration> {
        match self {
            Self::NoHealthyEndpoint
            | Self::RateLimited
            | Self::Overloaded
            | Self::CircuitOpen
            | Self::Overflow => Some(Duration::from_secs(1)),
            _ => None,
        }
    }

    /// True when the upstream endpoint is to blame (counts against it for outlier
    /// ejection and in the breaker): the errors whose [`Origin`] is the upstream.
    pub fn is_endpoint_failure(self) -> bool {
        self.origin() == Origin::Upstream
    }
}

/// An error on the request path.
pub struct ProxyError {
    kind: ErrorKind,
    source: Option<BoxError>,
    unsent: Option<Box<Request<Body>>>,
    retry_after: Option<Duration>,
    headers: Option<Box<HeaderMap>>,
}

impl ProxyError {
    /// An error of `kind` with no further cause.
    pub fn new(kind: ErrorKind) -> Self {
        Self {
            kind,
            source: None,
            unsent: None,
            retry_after: None,
            headers: None,
        }
    }

    /// An error of `kind` caused by `source`.
    pub fn with_source(kind: ErrorKind, source: impl Into<BoxError>) -> Self {
        Self {
            kind,
            source: Some(source.into()),
            unsent: None,
            retry_after: None,
            headers: None,
        }
    }

    /// Hands back a request that was never sent, so a retry can reuse its body.
    pub fn with_unsent(mut self, request: Request<Body>) -> Self {
        self.unsent = Some(Box::new(request));
        self
    }

    /// Overrides the kind's default `Retry-After` (rounded up to whole seconds, at least 1).
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Adds headers to the error response (e.g. `RateLimit-Policy`).
    pub fn with_headers(mut self, headers: HeaderMap) -> Self {
        self.headers = Some(Box::new(headers));
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// True when no byte of the request reached the upstream: any method may be retried.
    pub fn is_unsent(&self) -> bool {
        self.unsent.is_some()
    }

    /// Takes the unsent request back, if the error carries it.
    pub fn take_unsent(&mut self) -> Option<Request<Body>> {
        self.unsent.take().map(|r| *r)
    }

    /// Builds the response the client receives for this error.
    pub fn to_response(&self, request_id: Option<&HeaderValue>) -> Response<Body> {
        let mut response = error_response(self.kind, request_id);
        if let Some(after) = self.retry_after {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if let Some(extra) = &self.headers {
            for (name, value) in extra.iter() {
                response.headers_mut().append(name, value.clone());
            }
        }
        response
    }
}

impl fmt::Debug for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyError")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .field("unsent", &self.unsent.is_some())
            .finish()
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.reason())?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProxyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The response the proxy sends on its own behalf: the kind's status, the reason
/// header, `Retry-After` where a retry later can help, and a small JSON body.
pub fn error_response(kind: ErrorKind, request_id: Option<&HeaderValue>) -> Response<Body> {
    let status = kind.status();
    let id = request_id.and_then(|v| v.to_str().ok());
    // Written by hand, not through `format!` and `serde_json`: a burst's refusals
    // are most of its answers, so this body is on the hottest path a burst has.
    let mut json = String::with_capacity(48 + id.map_or(0, str::len));
    json.push_str("{\"status\":");
    json.push_str(status.as_str());
    json.push_str(",\"reason\":\"");
    json.push_str(kind.reason());
    json.push('"');
    if let Some(id) = id {
        // Request ids are generated by us or checked to be visible ASCII; escape anyway.
        json.push_str(",\"request_id\":\"");
        push_json_escaped(&mut json, id);
        json.push('"');
    }
    json.push_str("}\n");
    let mut headers = HeaderMap::with_capacity(4);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(REASON_HEADER, HeaderValue::from_static(kind.reason()));
    if let Some(after) = kind.retry_after() {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(after.as_secs().max(1)),
        );
    }
    if let Some(id) = request_id {
        headers.insert("x-request-id", id.clone());
    }
    let mut response = Response::new(body::full(json));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Appends `s` to `out` as the inside of a JSON string.
fn push_json_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let b = u32::from(c) as usize;
                out.push_str("\\u00");
                out.push(char::from(HEX[b >> 4]));
                out.push(char::from(HEX[b & 0xf]));
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_carry_reason_and_retry_after() {
        let r = error_response(ErrorKind::NoHealthyEndpoint, None);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[REASON_HEADER], "no_healthy_endpoint");
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let r = error_response(ErrorKind::NoRoute, Some(&HeaderValue::from_static("abc")));
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(r.headers().get(header::RETRY_AFTER).is_none());
        assert_eq!(r.headers()["x-request-id"], "abc");
    }

    #[tokio::test]
    async fn the_json_body_parses_and_carries_an_escaped_request_id() {
        use http_body_util::BodyExt;
        let id = HeaderValue::from_static("a\"b\\c");
        let r = error_response(ErrorKind::Overloaded, Some(&id));
        let bytes = r.into_body().collect().await.map(|b| b.to_bytes());
        let bytes = bytes.unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        assert_eq!(v["status"], 503);
        assert_eq!(v["reason"], "overloaded");
        assert_eq!(v["request_id"], "a\"b\\c");
    }

    #[test]
    fn statuses_follow_design() {
        assert_eq!(ErrorKind::ConnectFailed.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            ErrorKind::UpstreamTimeout.status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            ErrorKind::RequestTimeout.status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert!(ErrorKind::ConnectFailed.is_endpoint_failure());
        assert!(!ErrorKind::NoRoute.is_endpoint_failure());
    }
}
