//! Target URLs: parsing `http://host:port/path/{id}`, the loopback-only rule, and
//! building one concrete request from a template.
//!
//! Load tests in this project only ever target loopback (127.0.0.0/8, ::1, localhost).
//! `localhost` is mapped to 127.0.0.1 without consulting DNS or /etc/hosts, so the
//! address checked is the address connected to.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;

use crate::profile::{Protocol, TargetSpec};

/// Why a target was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    /// Not an `http://` URL.
    #[error("unsupported URL {0:?}: only http:// URLs are supported (h2c for HTTP/2)")]
    Scheme(String),
    /// The URL could not be parsed.
    #[error("invalid URL {url:?}: {reason}")]
    Invalid {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The host is not a loopback address.
    #[error(
        "refusing to send load to {host:?} (in {url:?}): floodgate-load only targets \
         loopback addresses (127.0.0.0/8, ::1, localhost)"
    )]
    NotLoopback {
        /// The URL.
        url: String,
        /// The offending host.
        host: String,
    },
    /// The method is not a valid HTTP method.
    #[error("invalid method {0:?}")]
    Method(String),
    /// A path target was given without a base URL.
    #[error("target {0:?} is a path but no base URL was given (--base-url or base_url:)")]
    NoBase(String),
}

/// A validated request template.
#[derive(Debug, Clone)]
pub struct Target {
    /// HTTP method.
    pub method: Method,
    /// The loopback address to connect to.
    pub addr: SocketAddr,
    /// The `host[:port]` written in the URL (sent as Host / :authority).
    pub authority: String,
    /// Path and query, possibly containing `{id}`.
    pub path: String,
    /// Body template, possibly containing `{id}`.
    pub body: Option<String>,
    /// Relative share of requests.
    pub weight: u32,
    /// The URL as given, for reports.
    pub url: String,
}

/// Whether `ip` is a loopback address (IPv4-mapped IPv6 loopback included).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Parses `http://host[:port][/path]` and enforces the loopback rule.
pub fn parse_url(url: &str) -> Result<(SocketAddr, String, String), TargetError> {
    let invalid = |reason: &str| TargetError::Invalid {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| TargetError::Scheme(url.to_string()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(invalid("missing or unsupported authority"));
    }
    let (host, port) = if let Some(r) = authority.strip_prefix('[') {
        let end = r.find(']').ok_or_else(|| invalid("unclosed ["))?;
        let port = match &r[end + 1..] {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| invalid("bad port"))?),
        };
        (&r[..end], port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port: u16 = match port {
        Some(p) => p.parse().map_err(|_| invalid("bad port"))?,
        None => 80,
    };
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse::<IpAddr>()
            .map_err(|_| TargetError::NotLoopback {
                url: url.to_string(),
                host: host.to_string(),
            })?
    };
    if !is_loopback(ip) {
        return Err(TargetError::NotLoopback {
            url: url.to_string(),
            host: host.to_string(),
        });
    }
    Ok((
        SocketAddr::new(ip, port),
        authority.to_string(),
        path.to_string(),
    ))
}

impl Target {
    /// Validates a template; `base` is used when `spec.url` is a path.
    pub fn from_spec(spec: &TargetSpec, base: Option<&str>) -> Result<Self, TargetError> {
        let url = if spec.url.starts_with('/') {
            let base = base.ok_or_else(|| TargetError::NoBase(spec.url.clone()))?;
            format!("{}{}", base.trim_end_matches('/'), spec.url)
        } else {
            spec.url.clone()
        };
        let (addr, authority, path) = parse_url(&url)?;
        let method = Method::from_bytes(spec.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| TargetError::Method(spec.method.clone()))?;
        Ok(Self {
            method,
            addr,
            authority,
            path,
            body: spec.body.clone(),
            weight: spec.weight,
            url,
        })
    }

    /// Builds the request for `id`: origin-form URI for HTTP/1.1, absolute for HTTP/2.
    pub fn request(
        &self,
        id: u64,
        protocol: Protocol,
    ) -> Result<Request<Full<Bytes>>, http::Error> {
        let id = id.to_string();
        let path = self.path.replace("{id}", &id);
        let uri = match protocol {
            Protocol::Http1 => path,
            Protocol::Http2 => format!("http://{}{}", self.authority, path),
        };
        let body = match &self.body {
            Some(b) => Bytes::from(b.replace("{id}", &id)),
            None => Bytes::new(),
        };
        let mut b = Request::builder().method(self.method.clone()).uri(uri);
        if protocol == Protocol::Http1 {
            b = b.header(http::header::HOST, self.authority.as_str());
        }
        if self.body.is_some() {
            b = b.header(http::header::CONTENT_TYPE, "application/json");
        }
        b.header(http::header::USER_AGENT, "floodgate-load/0.1")
            .body(Full::new(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str) -> TargetSpec {
        TargetSpec {
            url: url.into(),
            method: "GET".into(),
            body: None,
            weight: 1,
        }
    }

    #[test]
    fn loopback_targets_are_accepted() {
        for u in [
            "http://127.0.0.1:8080/api/v1/codes/{id}",
            "http://127.9.9.9/",
            "http://localhost:9001",
            "http://[::1]:8080/x",
        ] {
            assert!(Target::from_spec(&spec(u), None).is_ok(), "{u}");
        }
        let t = Target::from_spec(&spec("http://localhost:9001/a/{id}"), None).unwrap();
        assert_eq!(t.addr, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(t.path, "/a/{id}");
    }

    #[test]
    fn anything_else_is_refused() {
        for u in [
            "http://10.0.0.1:8080/",
            "http://192.168.1.1/",
            "http://8.8.8.8/",
            "http://example.com/",
            "http://[2001:db8::1]:80/",
            "http://0.0.0.0:80/",
        ] {
            let e = Target::from_spec(&spec(u), None).unwrap_err();
            assert!(matches!(e, TargetError::NotLoopback { .. }), "{u}: {e}");
            assert!(e.to_string().contains("only targets loopback"));
        }
        assert!(matches!(
            Target::from_spec(&spec("https://127.0.0.1/"), None),
            Err(TargetError::Scheme(_))
        ));
    }

    #[test]
    fn path_targets_join_the_base() {
        let t = Target::from_spec(&spec("/api/v1/scans"), Some("http://127.0.0.1:1234/")).unwrap();
        assert_eq!(t.url, "http://127.0.0.1:1234/api/v1/scans");
        assert!(Target::from_spec(&spec("/x"), None).is_err());
    }

    #[test]
    fn request_fills_the_id() {
        let mut s = spec("http://127.0.0.1:1/c/{id}");
        s.method = "post".into();
        s.body = Some(r#"{"id":"{id}"}"#.into());
        let t = Target::from_spec(&s, None).unwrap();
        let r = t.request(42, Protocol::Http1).unwrap();
        assert_eq!(r.uri(), "/c/42");
        assert_eq!(r.method(), Method::POST);
        let r2 = t.request(7, Protocol::Http2).unwrap();
        assert_eq!(r2.uri(), "http://127.0.0.1:1/c/7");
    }
}
