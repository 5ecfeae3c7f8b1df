//! Dot segments removed before routing (RFC 3986 §5.2.4), so that a route for
//! `/api/` cannot carry `/api/../admin` to an app that resolves it to `/admin`.
//!
//! A segment that is `.` or `..`, written plainly or percent-encoded (`%2e`,
//! `.%2E`, …), is resolved; every other byte of the path is kept as sent (no
//! decoding, no slash merging: Envoy's `normalize_path` without
//! `merge_slashes`). `..` never climbs above the root. The normalised path is
//! what is routed and what is forwarded. A path without a `.` in it, nearly
//! every path, is checked with one scan and left alone.

use http::uri::{PathAndQuery, Uri};

/// Is `segment` `.` (1) or `..` (2), plainly or percent-encoded? 0 otherwise.
fn dots(segment: &str) -> u8 {
    let mut n = 0u8;
    let mut rest = segment.as_bytes();
    while !rest.is_empty() {
        match rest {
            [b'.', tail @ ..] => rest = tail,
            [b'%', b'2', b'e' | b'E', tail @ ..] => rest = tail,
            _ => return 0,
        }
        n += 1;
        if n > 2 {
            return 0;
        }
    }
    n
}

/// The path with its dot segments resolved, if that changes it.
pub fn remove_dot_segments(path: &str) -> Option<String> {
    let b = path.as_bytes();
    if !b.contains(&b'.')
        && !b
            .windows(3)
            .any(|w| w[0] == b'%' && w[1] == b'2' && (w[2] | 0x20) == b'e')
    {
        return None;
    }
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    if !segments.iter().any(|s| dots(s) > 0) {
        return None;
    }
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    let last = segments.len().saturating_sub(1);
    let mut trailing = false;
    for (i, seg) in segments.iter().enumerate() {
        match dots(seg) {
            1 => trailing = i == last,
            2 => {
                out.pop();
                trailing = i == last;
            }
            _ => {
                out.push(seg);
                trailing = false;
            }
        }
    }
    let mut normalized = String::with_capacity(path.len());
    for seg in &out {
        normalized.push('/');
        normalized.push_str(seg);
    }
    if trailing || normalized.is_empty() {
        normalized.push('/');
    }
    Some(normalized)
}

/// The request target with its path normalised, if that changes it (query,
/// scheme and authority kept).
pub fn normalize(uri: &Uri) -> Option<Uri> {
    let normalized = remove_dot_segments(uri.path())?;
    let pq = match uri.query() {
        Some(q) => format!("{normalized}?{q}"),
        None => normalized,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(pq).ok()?);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_resolved_plain_or_encoded() {
        for (from, to) in [
            ("/api/../admin", "/admin"),
            ("/api/%2e%2e/admin", "/admin"),
            ("/api/.%2E/admin", "/admin"),
            ("/api/%2E./admin", "/admin"),
            ("/a/./b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/..", "/"),
        ] {
            assert_eq!(remove_dot_segments(from).as_deref(), Some(to), "{from}");
        }
    }

    #[test]
    fn other_paths_are_left_as_sent() {
        for p in [
            "/",
            "/api/v1/codes/42",
            "/file.txt",
            "/a..b/c",
            "/.well-known/x",
            "/a//b",
            "/%2e%2e%2e",
        ] {
            assert_eq!(remove_dot_segments(p), None, "{p}");
        }
    }

    #[test]
    fn the_query_and_authority_are_kept() {
        let uri: Uri = "http://a.test/x/../y?q=../z".parse().unwrap();
        assert_eq!(normalize(&uri).unwrap(), "http://a.test/y?q=../z");
        let uri: Uri = "/x/./y?a=1".parse().unwrap();
        assert_eq!(normalize(&uri).unwrap(), "/x/y?a=1");
        assert!(normalize(&"/plain?x=..".parse().unwrap()).is_none());
    }
}

/// Property tests (stable-toolchain fuzzing, bounded cases): arbitrary paths, with
/// dots, encoded dots and slashes made likely.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// A path segment built mostly from the pieces that matter here.
    fn segment() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just("%2e".to_owned()),
            Just("%2E".to_owned()),
            Just("%2".to_owned()),
            Just("%".to_owned()),
            Just("a".to_owned()),
            Just("admin".to_owned()),
            Just("é".to_owned()),
            "[ -~]{0,3}".prop_map(|s| s.replace('/', "")),
        ];
        proptest::collection::vec(piece, 0..4).prop_map(|p| p.concat())
    }

    fn path() -> impl Strategy<Value = String> {
        proptest::collection::vec(segment(), 0..8).prop_map(|segs| {
            let mut p = String::new();
            for s in segs {
                p.push('/');
                p.push_str(&s);
            }
            if p.is_empty() {
                p.push('/');
            }
            p
        })
    }

    fn normalized(p: &str) -> String {
        remove_dot_segments(p).unwrap_or_else(|| p.to_owned())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn normalizing_is_idempotent(p in path()) {
            let once = normalized(&p);
            prop_assert_eq!(remove_dot_segments(&once), None, "{} -> {}", p, once);
        }

        #[test]
        fn no_dot_segment_survives_and_the_root_is_kept(p in path()) {
            let n = normalized(&p);
            prop_assert!(n.starts_with('/'), "{} -> {}", p, n);
            for seg in n.split('/').skip(1) {
                prop_assert_eq!(dots(seg), 0, "{} -> {} keeps `{}`", p, n, seg);
            }
        }

        #[test]
        fn only_dot_segments_are_removed(p in path()) {
            // What is left is the input's other segments, in order, as sent.
            let n = normalized(&p);
            let kept: Vec<&str> = n.split('/').skip(1).filter(|s| !s.is_empty()).collect();
            let mut others = p.split('/').skip(1).filter(|s| !s.is_empty() && dots(s) == 0);
            for seg in &kept {
                prop_assert!(others.any(|o| o == *seg), "{} -> {}: `{}` is new", p, n, seg);
            }
        }

        #[test]
        fn a_normalized_uri_keeps_its_query_and_authority(p in path(), q in "[a-z0-9=&./%]{0,12}") {
            let Ok(uri) = format!("http://a.test{p}?{q}").parse::<Uri>() else {
                return Ok(());
            };
            let out = normalize(&uri).unwrap_or_else(|| uri.clone());
            prop_assert_eq!(out.query(), uri.query());
            prop_assert_eq!(out.authority(), uri.authority());
            prop_assert_eq!(remove_dot_segments(out.path()), None);
        }

        #[test]
        fn arbitrary_text_never_panics(p in any::<String>()) {
            let _ = remove_dot_segments(&p);
        }
    }
}
