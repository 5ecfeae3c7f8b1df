//! The HTTP caching rules, as pure functions of a request or response head:
//! which requests may use the cache, whether and for how long a response may be
//! stored (RFC 9111 freshness, `Cache-Control`, `Expires`, `Vary`), and which
//! failures a stale entry may stand in for (RFC 5861 stale-if-error).

use std::time::{Duration, SystemTime};

use http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body::Body as HttpBody;

use crate::config::CacheConfig;

/// Why this request must not use the cache, if it must not.
pub(super) fn bypass_reason<B: HttpBody>(
    config: &CacheConfig,
    req: &Request<B>,
) -> Option<&'static str> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Some("method");
    }
    if !req.body().is_end_stream() && req.body().size_hint().upper() != Some(0) {
        return Some("request body");
    }
    let headers = req.headers();
    if headers.contains_key(header::AUTHORIZATION) && !config.cache_authorized {
        return Some("authorization");
    }
    if headers.contains_key(header::RANGE) {
        return Some("range");
    }
    let cc = CacheControl::parse(headers);
    let pragma_no_cache = headers
        .get_all(header::PRAGMA)
        .iter()
        .any(|v| contains_token(v.as_bytes(), b"no-cache"));
    if cc.no_store || cc.no_cache || pragma_no_cache {
        return Some("request cache-control");
    }
    None
}

/// How a cacheable response is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Policy {
    /// How long from its origin the response is fresh.
    pub(super) freshness: Duration,
    /// How long past freshness it may be served when the upstream fails.
    pub(super) stale_if_error: Duration,
    /// `Age` the response already had when it arrived.
    pub(super) initial_age: Duration,
}

/// Statuses cacheable without explicit freshness (RFC 9111 §4.2.2, RFC 9110 §15.1).
fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Whether and how long a response with this head may be stored.
pub(super) fn policy(
    config: &CacheConfig,
    status: StatusCode,
    headers: &HeaderMap,
) -> Option<Policy> {
    if !heuristically_cacheable(status) {
        return None;
    }
    let cc = CacheControl::parse(headers);
    if cc.no_store || cc.no_cache || cc.private {
        return None;
    }
    if headers.contains_key(header::SET_COOKIE) && !config.cache_set_cookie {
        return None;
    }
    for value in headers.get_all(header::VARY) {
        let Ok(value) = value.to_str() else {
            return None;
        };
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !config
                .key_headers
                .iter()
                .any(|k| k.as_str().eq_ignore_ascii_case(name))
            {
                return None;
            }
        }
    }
    let freshness = match cc.s_maxage.or(cc.max_age) {
        Some(secs) => Duration::from_secs(secs),
        None => match expires_freshness(headers) {
            Some(freshness) => freshness,
            None => config.ttl,
        },
    };
    let initial_age = headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs);
    if freshness <= initial_age {
        return None;
    }
    let stale_if_error = if cc.must_revalidate {
        Duration::ZERO
    } else {
        cc.stale_if_error
            .map_or(config.stale_if_error, Duration::from_secs)
    };
    Some(Policy {
        freshness,
        stale_if_error,
        initial_age,
    })
}

/// Freshness from `Expires` (minus `Date`, or now), when `Expires` is present.
/// An unparseable `Expires` means "already expired" (RFC 9111 §5.3).
fn expires_freshness(headers: &HeaderMap) -> Option<Duration> {
    let expires = headers.get(header::EXPIRES)?;
    let Some(expires) = parse_http_date(expires) else {
        return Some(Duration::ZERO);
    };
    let date = headers
        .get(header::DATE)
        .and_then(parse_http_date)
        .unwrap_or_else(SystemTime::now);
    Some(expires.duration_since(date).unwrap_or(Duration::ZERO))
}

/// An HTTP-date field value, if it is one.
fn parse_http_date(value: &HeaderValue) -> Option<SystemTime> {
    httpdate::parse_http_date(value.to_str().ok()?).ok()
}

/// The `Cache-Control` directives the cache acts on (request or response).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct CacheControl {
    no_store: bool,
    no_cache: bool,
    private: bool,
    must_revalidate: bool,
    max_age: Option<u64>,
    s_maxage: Option<u64>,
    stale_if_error: Option<u64>,
}

impl CacheControl {
    /// Parses every `Cache-Control` header. Unreadable values count as `no-store`;
    /// an unparseable age counts as 0; a repeated age keeps the smallest.
    fn parse(headers: &HeaderMap) -> Self {
        let mut cc = Self::default();
        for value in headers.get_all(header::CACHE_CONTROL) {
            let Ok(value) = value.to_str() else {
                cc.no_store = true;
                continue;
            };
            for directive in split_directives(value) {
                let (name, arg) = match directive.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (directive.trim(), None),
                };
                let secs = || arg.and_then(|a| a.parse::<u64>().ok()).unwrap_or(0);
                let keep_min = |slot: &mut Option<u64>, v: u64| {
                    *slot = Some(slot.map_or(v, |old| old.min(v)));
                };
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => cc.no_store = true,
                    "no-cache" => cc.no_cache = true,
                    "private" => cc.private = true,
                    "must-revalidate" | "proxy-revalidate" => cc.must_revalidate = true,
                    "max-age" => keep_min(&mut cc.max_age, secs()),
                    "s-maxage" => keep_min(&mut cc.s_maxage, secs()),
                    "stale-if-error" => keep_min(&mut cc.stale_if_error, secs()),
                    _ => {}
                }
            }
        }
        cc
    }
}

/// Splits a `Cache-Control` value on commas outside quoted strings.
fn split_directives(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&value[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect()
}

/// True when the comma-separated `value` holds `token` (ASCII case-insensitive).
fn contains_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// 500, 502, 503 and 504: the responses stale-if-error stands in for (RFC 5861).
pub(super) fn is_error_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{self, Body};
    use http::HeaderName;

    fn config() -> CacheConfig {
        CacheConfig {
            ttl: Duration::from_secs(1),
            max_bytes: 1 << 20,
            max_object_bytes: 1 << 16,
            stale_if_error: Duration::from_secs(30),
            key_headers: vec![HeaderName::from_static("accept-language")],
            cache_authorized: false,
            cache_set_cookie: false,
            lock_timeout: Duration::from_secs(5),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                HeaderName::try_from(*name).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        h
    }

    fn get(uri: &str) -> Request<Body> {
        Request::get(uri)
            .header("host", "Example.COM")
            .body(body::empty())
            .unwrap()
    }

    #[test]
    fn cache_control_is_parsed() {
        let cc = CacheControl::parse(&headers(&[(
            "cache-control",
            "public, Max-Age=60, s-maxage=\"30\"",
        )]));
        assert_eq!(cc.max_age, Some(60));
        assert_eq!(cc.s_maxage, Some(30));
        assert!(!cc.private && !cc.no_store && !cc.no_cache);

        // Commas inside quotes do not split; the field-list form of private is still private.
        let cc = CacheControl::parse(&headers(&[(
            "cache-control",
            "private=\"set-cookie, x-a\", max-age=5",
        )]));
        assert!(cc.private);
        assert_eq!(cc.max_age, Some(5));

        // Several headers combine; a repeated age keeps the smallest; a bad age is 0.
        let cc = CacheControl::parse(&headers(&[
            ("cache-control", "max-age=100, no-cache"),
            (
                "cache-control",
                "max-age=10, stale-if-error=7, must-revalidate",
            ),
        ]));
        assert_eq!(cc.max_age, Some(10));
        assert_eq!(cc.stale_if_error, Some(7));
        assert!(cc.no_cache && cc.must_revalidate);
        let cc = CacheControl::parse(&headers(&[("cache-control", "max-age=soon, no-store")]));
        assert_eq!(cc.max_age, Some(0));
        assert!(cc.no_store);
    }

    #[test]
    fn cacheability_follows_status_and_directives() {
        let c = config();
        let ok = StatusCode::OK;
        let p = policy(&c, ok, &HeaderMap::new()).unwrap();
        assert_eq!(p.freshness, c.ttl, "ttl applies without max-age");
        assert_eq!(p.stale_if_error, c.stale_if_error);
        for status in [200, 203, 204, 301, 404, 410] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(policy(&c, status, &HeaderMap::new()).is_some(), "{status}");
        }
        for status in [201, 206, 302, 500, 502, 503] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(policy(&c, status, &HeaderMap::new()).is_none(), "{status}");
        }
        for value in ["no-store", "private", "no-cache", "max-age=0"] {
            let h = headers(&[("cache-control", value)]);
            assert!(policy(&c, ok, &h).is_none(), "{value}");
        }
        let p = policy(
            &c,
            ok,
            &headers(&[("cache-control", "max-age=60, s-maxage=5")]),
        )
        .unwrap();
        assert_eq!(p.freshness, Duration::from_secs(5), "s-maxage wins");
        let p = policy(
            &c,
            ok,
            &headers(&[("cache-control", "max-age=60"), ("age", "20")]),
        )
        .unwrap();
        assert_eq!(p.initial_age, Duration::from_secs(20));
        let p = policy(&c, ok, &headers(&[("cache-control", "must-revalidate")])).unwrap();
        assert_eq!(p.stale_if_error, Duration::ZERO);
        let p = policy(&c, ok, &headers(&[("cache-control", "stale-if-error=3")])).unwrap();
        assert_eq!(p.stale_if_error, Duration::from_secs(3));
        let p = policy(
            &c,
            ok,
            &headers(&[
                ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
                ("expires", "Sun, 06 Nov 1994 08:50:37 GMT"),
            ]),
        )
        .unwrap();
        assert_eq!(p.freshness, Duration::from_secs(60));
        assert!(policy(&c, ok, &headers(&[("expires", "0")])).is_none());
    }

    #[test]
    fn set_cookie_and_vary_are_respected() {
        let mut c = config();
        let ok = StatusCode::OK;
        let cookie = headers(&[("set-cookie", "session=abc")]);
        assert!(policy(&c, ok, &cookie).is_none());
        c.cache_set_cookie = true;
        assert!(policy(&c, ok, &cookie).is_some());

        assert!(policy(&c, ok, &headers(&[("vary", "Accept-Language")])).is_some());
        assert!(policy(&c, ok, &headers(&[("vary", "accept-language, cookie")])).is_none());
        assert!(policy(&c, ok, &headers(&[("vary", "*")])).is_none());
    }

    #[test]
    fn unsafe_requests_bypass() {
        let c = config();
        assert_eq!(bypass_reason(&c, &get("/")), None);
        let mut post = get("/");
        *post.method_mut() = Method::POST;
        assert!(bypass_reason(&c, &post).is_some());
        for (name, value) in [
            ("authorization", "Bearer x"),
            ("cache-control", "no-cache"),
            ("cache-control", "no-store"),
            ("pragma", "no-cache"),
            ("range", "bytes=0-10"),
        ] {
            let mut req = get("/");
            req.headers_mut()
                .insert(name, HeaderValue::from_static(value));
            assert!(bypass_reason(&c, &req).is_some(), "{name}: {value}");
        }
        let with_body = Request::get("/").body(body::full("x")).unwrap();
        assert!(bypass_reason(&c, &with_body).is_some());
        let authorized = CacheConfig {
            cache_authorized: true,
            ..config()
        };
        let mut req = get("/");
        req.headers_mut()
            .insert("authorization", HeaderValue::from_static("Bearer x"));
        assert_eq!(bypass_reason(&authorized, &req), None);
    }
}
