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
