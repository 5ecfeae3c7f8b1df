//! Header rules of an HTTP intermediary: hop-by-hop fields (RFC 9110 §7.6.1),
//! forwarding fields and the client IP they carry, and the framing length.
//!
//! A leaf: it knows HTTP, nothing of the proxy's own modules.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// W3C trace context (the access log takes its trace id).
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The request id field, kept or generated and echoed.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The client chain a proxy appends to.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// The scheme the client used.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// The authority the client addressed.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Request extension: the client's IP address, from the peer address or, when the
/// peer is a trusted proxy, from `x-forwarded-for` (the rightmost untrusted hop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Hop-by-hop fields by definition, lower case (besides those a `Connection` field
/// names): they describe one connection and never cross the proxy in either direction.
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether a field name (any case) is hop-by-hop by definition.
pub fn is_hop_by_hop_name(name: &str) -> bool {
    // Most names have a length no hop-by-hop field has: decided without comparing.
    if !matches!(name.len(), 2 | 7 | 10 | 16 | 17 | 18) {
        return false;
    }
    HOP_BY_HOP.iter().any(|f| f.eq_ignore_ascii_case(name))
}

/// The client IP: the peer, unless the peer is a trusted proxy, in which case
/// `x-forwarded-for` is walked from the right past trusted hops. An untrusted peer
/// cannot choose its own key by sending the header.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            break;
        };
        let ip = ip.to_canonical();
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// Appends the client (`ip`, as header text) to `x-forwarded-for`, or sets it.
pub fn append_forwarded_for(headers: &mut HeaderMap, ip: &HeaderValue) {
    // One lookup of the name for both the read and the write.
    let mut sent = match headers.entry(X_FORWARDED_FOR) {
        header::Entry::Vacant(slot) => {
            slot.insert(ip.clone());
            return;
        }
        header::Entry::Occupied(sent) => sent,
    };
    // Several lines of the field are one comma-separated list, in order.
    let mut joined = Vec::with_capacity(64);
    for line in sent.iter() {
        let hops = line.as_bytes().trim_ascii();
        if !hops.is_empty() {
            if !joined.is_empty() {
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(hops);
        }
    }
    let value = if joined.is_empty() {
        ip.clone()
    } else {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(ip.as_bytes());
        HeaderValue::from_bytes(&joined).unwrap_or_else(|_| ip.clone())
    };
    // The joined list replaces every earlier line of the field.
    sent.insert(value);
}

/// The proxy's own header namespace: what it says to clients (`x-floodgate-reason`,
/// `x-floodgate-cache`) and what trusted hops may say to it (a priority header).
pub const INTERNAL_PREFIX: &str = "x-floodgate-";

/// Removes every `x-floodgate-*` field: a client's never reach an upstream (it
/// could pose as the proxy, or as a trusted hop, to the app), and an upstream's
/// never reach a client as if this proxy had said them. Most messages carry none,
/// so the common case is one pass over the names.
pub fn strip_internal(headers: &mut HeaderMap) {
    let is_internal = |n: &HeaderName| n.as_str().starts_with(INTERNAL_PREFIX);
    if !headers.keys().any(is_internal) {
        return;
    }
    let present: Vec<HeaderName> = headers.keys().filter(|n| is_internal(n)).cloned().collect();
    for name in present {
        headers.remove(name);
    }
}

/// Whether `name` is hop-by-hop by definition (besides those a `Connection` header names).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    // `HeaderName`s are lower case already.
    HOP_BY_HOP.contains(&name.as_str())
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names finds what is there; most messages carry none, or
    // only `Connection: keep-alive`.
    let present: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_hop_by_hop(n))
        .cloned()
        .collect();
    if present.is_empty() {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        // The common tokens name no header of their own.
        .filter(|t| !t.eq_ignore_ascii_case("keep-alive") && !t.eq_ignore_ascii_case("close"))
        .filter_map(|t| HeaderName::try_from(t).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in present {
        // `TE: trailers` may pass; any other TE value is hop-by-hop.
        if name == header::TE
            && headers
                .get(header::TE)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"))
        {
            continue;
        }
        headers.remove(name);
    }
}

/// The `Content-Length` of a message, when present and a number.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn client_text(addr: &str) -> HeaderValue {
        let addr: SocketAddr = addr.parse().unwrap();
        HeaderValue::try_from(addr.ip().to_canonical().to_string()).unwrap()
    }

    #[test]
    fn every_hop_by_hop_name_is_known_in_any_case() {
        for name in HOP_BY_HOP {
            assert!(is_hop_by_hop_name(name), "{name}");
            assert!(is_hop_by_hop_name(&name.to_ascii_uppercase()), "{name}");
            assert!(is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
        for name in ["content-type", "x-te", "te2", "upgrades", "host"] {
            assert!(!is_hop_by_hop_name(name), "{name}");
        }
    }

    #[test]
    fn internal_headers_are_removed_and_others_kept() {
        let mut h = HeaderMap::new();
        h.insert("x-floodgate-reason", HeaderValue::from_static("overloaded"));
        h.append("x-floodgate-cache", HeaderValue::from_static("hit"));
        h.insert(
            "x-floodgatex",
            HeaderValue::from_static("kept: not the namespace"),
        );
        h.insert("x-request-id", HeaderValue::from_static("abc"));
        strip_internal(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["x-floodgatex", "x-request-id"]);
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("gzip"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut h);
        assert!(h.contains_key(header::TE));
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = HeaderMap::new();
        let conn = client_text;
        append_forwarded_for(&mut h, &conn("10.0.0.1:5"));
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1");
        append_forwarded_for(&mut h, &conn("[::ffff:10.0.0.2]:5"));
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1, 10.0.0.2");

        // Several lines are one list, in order; blank lines add nothing.
        let mut h = HeaderMap::new();
        h.append(
            &X_FORWARDED_FOR,
            HeaderValue::from_static("1.1.1.1, 2.2.2.2"),
        );
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static(" "));
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("3.3.3.3"));
        append_forwarded_for(&mut h, &conn("10.0.0.1:5"));
        let lines: Vec<_> = h.get_all(&X_FORWARDED_FOR).iter().collect();
        assert_eq!(lines, ["1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.1"]);

        // Only blank lines: the client starts the list.
        let mut h = HeaderMap::new();
        h.insert(&X_FORWARDED_FOR, HeaderValue::from_static(""));
        append_forwarded_for(&mut h, &conn("10.0.0.1:5"));
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1");
    }

    #[test]
    fn client_ip_believes_only_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert(
            &X_FORWARDED_FOR,
            HeaderValue::from_static("1.2.3.4, 5.6.7.8, 10.1.1.1"),
        );
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        assert_eq!(
            client_ip(peer, &h, &trusted),
            "5.6.7.8".parse::<IpAddr>().unwrap()
        );
        let untrusted: IpAddr = "9.9.9.9".parse().unwrap();
        assert_eq!(client_ip(untrusted, &h, &trusted), untrusted);
        assert_eq!(client_ip(peer, &HeaderMap::new(), &trusted), peer);
        h.insert(
            &X_FORWARDED_FOR,
            HeaderValue::from_static("garbage, 10.2.2.2"),
        );
        assert_eq!(
            client_ip(peer, &h, &trusted),
            "10.2.2.2".parse::<IpAddr>().unwrap()
        );
    }
}
