//! The small grammars that validation shares: host patterns, DNS names, URL paths,
//! HTTP methods and endpoint addresses. Pure functions, no config walk.

use std::net::{Ipv4Addr, Ipv6Addr};

use http::Method;

use crate::config::{EndpointAddr, HostMatch};

/// Parses a route host pattern: an exact DNS name, `*.suffix` (any name ending in
/// `.suffix` with at least one more label), or `*` for any host (`None`). Lower-cased;
/// a trailing dot is dropped; a port is not allowed (matching ignores the port).
pub fn host_pattern(text: &str) -> Result<Option<HostMatch>, String> {
    let raw = text.trim().to_ascii_lowercase();
    if raw == "*" {
        return Ok(None);
    }
    // One trailing dot (a fully qualified name) is dropped; `*.` is left invalid.
    let t = raw.strip_suffix('.').unwrap_or(&raw).to_owned();
    if t.is_empty() || t == "*" {
        return Err(format!("`{text}` is not a host; use `*` to match any host"));
    }
    if t.contains(':') {
        return Err(format!(
            "`{text}` must not include a port (hosts are matched with the port ignored)"
        ));
    }
    if let Some(suffix) = t.strip_prefix("*.") {
        dns_name(suffix).map_err(|e| format!("`{text}`: {e}"))?;
        return Ok(Some(HostMatch::Suffix(format!(".{suffix}"))));
    }
    if t.contains('*') {
        return Err(format!(
            "`{text}`: `*` is only allowed alone or as the whole first label (`*.example.com`)"
        ));
    }
    dns_name(&t).map_err(|e| format!("`{text}`: {e}"))?;
    Ok(Some(HostMatch::Exact(t)))
}

/// Checks a DNS name: 1–253 characters, labels of 1–63 letters, digits, `-` or `_`,
/// not starting or ending with `-`.
fn dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err("a DNS name has 1 to 253 characters".to_owned());
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each dot-separated label needs 1 to 63 characters".to_owned());
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "label `{label}` may contain only letters, digits, `-` and `_`"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label `{label}` must not start or end with `-`"));
        }
    }
    Ok(())
}

/// Checks a URL path used for matching or rewriting: starts with `/`, no spaces, control
/// characters, query (`?`) or fragment (`#`).
pub(super) fn url_path(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!("`{p}` must start with `/`"));
    }
    if p.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{p}` must not contain spaces or control characters"
        ));
    }
    if p.contains(['?', '#']) {
        return Err(format!(
            "`{p}` must not contain a query (`?`) or fragment (`#`)"
        ));
    }
    Ok(())
}

/// Parses an HTTP method token; methods are case-sensitive, so lower case is refused
/// with a hint rather than silently never matching.
pub(super) fn method(text: &str) -> Result<Method, String> {
    let t = text.trim();
    if t != t.to_ascii_uppercase() {
        return Err(format!(
            "`{t}`: methods are case-sensitive; did you mean `{}`?",
            t.to_ascii_uppercase()
        ));
    }
    Method::from_bytes(t.as_bytes()).map_err(|_| format!("`{t}` is not a valid HTTP method"))
}

/// Parses an endpoint `host:port`: an IPv4 address, `[IPv6]`, or a DNS name, and a port
/// 1–65535. IPv6 hosts are stored without brackets; DNS names are lower-cased.
pub fn endpoint(text: &str) -> Result<EndpointAddr, String> {
    let t = text.trim();
    if t.contains("://") {
        return Err(format!("`{t}`: write host:port without a scheme"));
    }
    if t.contains('/') {
        return Err(format!("`{t}`: write host:port without a path"));
    }
    let (host, port) = if let Some(rest) = t.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{t}`: missing `]` after the IPv6 address"))?;
        h.parse::<Ipv6Addr>()
            .map_err(|_| format!("`{h}` is not an IPv6 address"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("`{t}` needs a port: `[{h}]:8080`"))?;
        (h.to_owned(), port)
    } else {
        let (h, p) = t
            .rsplit_once(':')
            .ok_or_else(|| format!("`{t}` needs a port: `host:port`"))?;
        if h.contains(':') {
            return Err(format!("`{t}`: IPv6 addresses need brackets: `[{h}]:{p}`"));
        }
        if h.chars().all(|c| c.is_ascii_digit() || c == '.') {
            h.parse::<Ipv4Addr>()
                .map_err(|_| format!("`{h}` is not a valid IPv4 address"))?;
        } else {
            dns_name(h).map_err(|e| format!("`{h}`: {e}"))?;
        }
        (h.to_ascii_lowercase(), p)
    };
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("`{t}`: port `{port}` is not a number from 1 to 65535"))?;
    Ok(EndpointAddr { host, port })
}
