//! One authority per request, checked before routing: the request is routed and
//! forwarded by the same host, or refused with 400.
//!
//! - More than one `Host` line, or a `Host` that is not a valid authority:
//!   400 (RFC 9112 §3.2: a server MUST answer 400); a `Host` or a target with
//!   userinfo (`user@host`) too (RFC 9110 §4.2.4: treat it as an error).
//! - HTTP/1.1 absolute-form (`GET http://a.test/ HTTP/1.1`): the URI's authority
//!   wins and replaces `Host` (RFC 9112 §3.2.2: the recipient MUST ignore `Host`
//!   and use the target's authority), so routing (by the URI) and the upstream
//!   (by `Host`) see the same host.
//! - HTTP/2 (and HTTP/3): `:authority` and a `host` field that names another
//!   host: 400 (RFC 9113 §8.3.1: such a request SHOULD be treated as malformed);
//!   a `host` field alone is the authority.
//! - HTTP/1.1 without `Host` and without absolute-form: 400 (RFC 9112 §3.2).
//!   HTTP/1.0 may omit it (routes by host then see none).
//! - `CONNECT` (a tunnel to its authority-form target): 400. A reverse proxy does
//!   not open tunnels; forwarded, it asked the upstream for one on a pooled
//!   connection, and a 2xx answer would have turned the client's connection into
//!   a tunnel to nowhere.

use http::header::{self, HeaderValue};
use http::uri::Authority;
use http::Version;

/// Why a request's authority was refused (each answered 400 `bad_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorityError {
    /// More than one `Host` field line.
    ManyHosts,
    /// A `Host` value that is not `host[:port]`.
    BadHost,
    /// HTTP/1.1 with no `Host` and no absolute-form target.
    MissingHost,
    /// `:authority` and `host` name different hosts.
    Conflict,
    /// The target's authority carries userinfo (`http://user@host/`).
    UserInfo,
    /// A `CONNECT` request (tunnels are not proxied).
    Connect,
}

/// Makes `Host` the request's one authority, or says why the request is refused.
pub fn normalize(head: &mut http::request::Parts) -> Result<(), AuthorityError> {
    if head.method == http::Method::CONNECT {
        return Err(AuthorityError::Connect);
    }
    let mut hosts = head.headers.get_all(header::HOST).iter();
    let host = hosts.next().cloned();
    if hosts.next().is_some() {
        return Err(AuthorityError::ManyHosts);
    }
    if let Some(h) = &host {
        // `Authority` allows userinfo; `Host` is `uri-host [":" port]` only.
        if h.as_bytes().contains(&b'@') || Authority::try_from(h.as_bytes()).is_err() {
            return Err(AuthorityError::BadHost);
        }
    }
    let Some(authority) = head.uri.authority() else {
        return match (host, head.version) {
            (None, Version::HTTP_11) => Err(AuthorityError::MissingHost),
            _ => Ok(()),
        };
    };
    if authority.as_str().contains('@') {
        return Err(AuthorityError::UserInfo);
    }
    let is_h1 = matches!(
        head.version,
        Version::HTTP_09 | Version::HTTP_10 | Version::HTTP_11
    );
    if !is_h1 {
        if let Some(h) = &host {
            if !h
                .as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes())
            {
                return Err(AuthorityError::Conflict);
            }
        }
    }
    // Absolute-form: the target's authority replaces whatever `Host` said; an
    // HTTP/2 request without `host` gets one. A `Host` that already says it stays.
    let same = host
        .as_ref()
        .is_some_and(|h| h.as_bytes() == authority.as_str().as_bytes());
    if !same {
        if let Ok(value) = HeaderValue::from_str(authority.as_str()) {
            head.headers.insert(header::HOST, value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(version: Version, uri: &str, hosts: &[&str]) -> http::request::Parts {
        let mut b = Request::get(uri).version(version);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn host(p: &http::request::Parts) -> Vec<&str> {
        p.headers
            .get_all(header::HOST)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn absolute_form_replaces_host() {
        let mut p = parts(Version::HTTP_11, "http://public.test/x", &["admin.test"]);
        normalize(&mut p).unwrap();
        assert_eq!(host(&p), ["public.test"]);
        let mut p = parts(Version::HTTP_11, "http://public.test:8080/x", &[]);
        normalize(&mut p).unwrap();
        assert_eq!(host(&p), ["public.test:8080"]);
    }

    #[test]
    fn http2_authority_and_a_different_host_conflict() {
        let mut p = parts(Version::HTTP_2, "https://public.test/x", &["admin.test"]);
        assert_eq!(normalize(&mut p), Err(AuthorityError::Conflict));
        let mut p = parts(Version::HTTP_2, "https://Public.test/x", &["public.TEST"]);
        normalize(&mut p).unwrap();
        let mut p = parts(Version::HTTP_2, "https://public.test/x", &[]);
        normalize(&mut p).unwrap();
        assert_eq!(host(&p), ["public.test"]);
    }

    #[test]
    fn hosts_must_be_one_and_valid_and_present_on_http11() {
        let mut p = parts(Version::HTTP_11, "/x", &["a.test", "b.test"]);
        assert_eq!(normalize(&mut p), Err(AuthorityError::ManyHosts));
        let mut p = parts(Version::HTTP_11, "/x", &["a b"]);
        assert_eq!(normalize(&mut p), Err(AuthorityError::BadHost));
        let mut p = parts(Version::HTTP_11, "/x", &[]);
        assert_eq!(normalize(&mut p), Err(AuthorityError::MissingHost));
        let mut p = parts(Version::HTTP_10, "/x", &[]);
        normalize(&mut p).unwrap();
        let mut p = parts(Version::HTTP_11, "/x", &["a.test:81"]);
        normalize(&mut p).unwrap();
        assert_eq!(host(&p), ["a.test:81"]);
    }

    /// Found by `tests/fuzz_request_head.rs`: `CONNECT http://a.test/x` was forwarded,
    /// and the upstream's 200 left the client with no answer at all.
    #[test]
    fn connect_is_refused() {
        for (v, target) in [
            (Version::HTTP_11, "http://a.test/x"),
            (Version::HTTP_11, "a.test:443"),
            (Version::HTTP_2, "a.test:443"),
        ] {
            let mut p = Request::builder()
                .method(http::Method::CONNECT)
                .version(v)
                .uri(target)
                .header(header::HOST, "a.test")
                .body(())
                .unwrap()
                .into_parts()
                .0;
            assert_eq!(normalize(&mut p), Err(AuthorityError::Connect), "{target}");
        }
    }

    /// Found by `fuzz::an_accepted_request_has_exactly_one_authority`: `Host:
    /// user@a.test` was accepted (and forwarded) because `Authority` allows userinfo.
    #[test]
    fn userinfo_in_host_or_target_is_refused() {
        let mut p = parts(Version::HTTP_09, "/x", &["user@a.test"]);
        assert_eq!(normalize(&mut p), Err(AuthorityError::BadHost));
        let mut p = parts(Version::HTTP_11, "/x", &["user:pw@a.test:80"]);
        assert_eq!(normalize(&mut p), Err(AuthorityError::BadHost));
        // Absolute-form: routing used `a.test`, Host would have said `evil@a.test`.
        let mut p = parts(Version::HTTP_11, "http://evil@a.test/x", &["a.test"]);
        assert_eq!(normalize(&mut p), Err(AuthorityError::UserInfo));
        let mut p = parts(Version::HTTP_2, "https://evil@a.test/x", &[]);
        assert_eq!(normalize(&mut p), Err(AuthorityError::UserInfo));
    }
}

/// Property tests (stable-toolchain fuzzing, bounded cases): request heads with
/// arbitrary versions, targets and `Host` lines.
#[cfg(test)]
mod fuzz {
    use super::*;
    use http::Request;
    use proptest::prelude::*;

    fn host_value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"a.test".to_vec()),
            Just(b"A.Test".to_vec()),
            Just(b"b.test:8080".to_vec()),
            Just(b"[::1]:80".to_vec()),
            Just(b"".to_vec()),
            Just(b"a b".to_vec()),
            Just(b"a.test:".to_vec()),
            Just(b"a.test:99999".to_vec()),
            Just(b"user@a.test".to_vec()),
            Just(b"a.test@b.test".to_vec()),
            Just(b"a.test/x".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..12),
        ]
    }

    fn target() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("/x".to_owned()),
            Just("*".to_owned()),
            Just("http://a.test/x".to_owned()),
            Just("http://b.test:8080/".to_owned()),
            Just("https://A.test/x?q".to_owned()),
            Just("a.test:443".to_owned()),
            Just("http://user@a.test/x".to_owned()),
            "[a-z]{1,4}://[a-z.]{1,6}(:[0-9]{1,5})?/[a-z]{0,3}",
        ]
    }

    fn version() -> impl Strategy<Value = Version> {
        prop_oneof![
            Just(Version::HTTP_09),
            Just(Version::HTTP_10),
            Just(Version::HTTP_11),
            Just(Version::HTTP_2),
            Just(Version::HTTP_3),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn an_accepted_request_has_exactly_one_authority(
            v in version(),
            t in target(),
            hosts in proptest::collection::vec(host_value(), 0..3),
        ) {
            let mut b = Request::get(t.as_str()).version(v);
            for h in &hosts {
                if let Ok(value) = HeaderValue::from_bytes(h) {
                    b = b.header(header::HOST, value);
                }
            }
            let Ok(req) = b.body(()) else {
                return Ok(());
            };
            let (mut head, ()) = req.into_parts();
            let sent: Vec<HeaderValue> = head.headers.get_all(header::HOST).iter().cloned().collect();
            let Ok(()) = normalize(&mut head) else {
                return Ok(());
            };
            let now: Vec<&HeaderValue> = head.headers.get_all(header::HOST).iter().collect();
            prop_assert!(now.len() <= 1, "{} Host fields after normalizing", now.len());
            if let Some(h) = now.first() {
                prop_assert!(Authority::try_from(h.as_bytes()).is_ok(), "{:?} is not an authority", h);
                // Host is `uri-host [":" port]` (RFC 9110 §7.2): no userinfo.
                prop_assert!(!h.as_bytes().contains(&b'@'), "Host {:?} carries userinfo", h);
            }
            match head.uri.authority() {
                // Routing (by the URI) and the upstream (by Host) see the same host.
                Some(a) => {
                    let h = now.first().map(|h| h.as_bytes().to_ascii_lowercase());
                    prop_assert_eq!(h, Some(a.as_str().as_bytes().to_ascii_lowercase()));
                }
                None if v == Version::HTTP_11 => prop_assert_eq!(now.len(), 1),
                None => prop_assert_eq!(now.len(), sent.len()),
            }
        }
    }
}
