//! Routing: the first route (in file order) whose host, path, method and header
//! conditions all hold takes the request.
//!
//! A route table is immutable; a reload builds a new one and publishes it with the
//! rest of the snapshot, so an in-flight request keeps the table it started with.
//! Lookups go through a [`RouteIndex`] (hosts and exact paths hashed, prefixes in a
//! trie), so their cost does not grow with the number of routes.

#[cfg(test)]
mod first_match;
mod index;

pub use index::RouteIndex;

use std::sync::Arc;

use http::request::Parts;
use http::{header, HeaderMap, Method, Uri};
use rand::Rng;

use crate::config::{HostMatch, PathMatch, RouteConfig, RouteMatch};
use crate::stack::{RouteService, RouteState};

/// One destination arm of a route: a cluster, its weight and the stack towards it.
pub struct Arm {
    /// Cluster name (metrics label).
    pub cluster: metrics::SharedString,
    /// Relative weight.
    pub weight: u32,
    /// The route stack towards this cluster.
    pub service: RouteService,
    /// Request count and duration handles for this route and cluster.
    pub metrics: crate::observe::RequestMetrics,
    /// The cluster's load counters (answers by class, latency) for load reports.
    pub load: std::sync::Arc<crate::load::LoadCounters>,
}

/// A compiled route.
pub struct Route {
    /// Route name (metrics label; shared, so a log line or label copies a pointer).
    pub name: metrics::SharedString,
    /// The route's config (match, rewrite, host handling), shared with the snapshot's config.
    pub config: std::sync::Arc<RouteConfig>,
    /// Destination arms; one unless the route splits by weight.
    pub arms: Vec<Arm>,
    /// Long-lived state (limiter, cache) a reload may carry over.
    pub state: RouteState,
    /// Something in the stack reads the [`crate::headers::ClientIp`] extension
    /// (a rate limit keyed by client IP); otherwise it is not worked out.
    pub needs_client_ip: bool,
    total_weight: u64,
}

impl Route {
    /// A route from its config and arms (at least one with weight > 0, checked by validation).
    pub fn new(
        config: impl Into<std::sync::Arc<RouteConfig>>,
        arms: Vec<Arm>,
        state: RouteState,
    ) -> Self {
        let config = config.into();
        let total_weight = arms.iter().map(|a| u64::from(a.weight)).sum();
        let needs_client_ip = config
            .rate_limit
            .as_ref()
            .and_then(|r| r.per_key.as_ref())
            .is_some_and(|k| k.key == crate::config::RateKey::ClientIp);
        Self {
            needs_client_ip,
            name: metrics::SharedString::from_shared(std::sync::Arc::from(config.name.as_str())),
            config,
            arms,
            state,
            total_weight,
        }
    }

    /// Picks the arm for one request, by weight.
    pub fn pick_arm(&self) -> Option<&Arm> {
        if self.arms.len() == 1 || self.total_weight == 0 {
            return self.arms.first();
        }
        let mut ticket = rand::rng().random_range(0..self.total_weight);
        for arm in &self.arms {
            let w = u64::from(arm.weight);
            if ticket < w {
                return Some(arm);
            }
            ticket -= w;
        }
        self.arms.last()
    }

    /// The path to forward: with `rewrite_prefix`, the matched prefix is replaced.
    pub fn rewrite(&self, uri: &Uri) -> Option<Uri> {
        let replacement = self.config.rewrite_prefix.as_deref()?;
        let PathMatch::Prefix(prefix) = &self.config.matcher.path else {
            return None;
        };
        let path = uri.path();
        let rest = path.strip_prefix(prefix.as_str())?;
        let mut new_path = String::with_capacity(replacement.len() + rest.len() + 1);
        new_path.push_str(replacement);
        // Avoid `//` when both sides carry the slash, and a missing one when neither does.
        match (replacement.ends_with('/'), rest.starts_with('/')) {
            (true, true) => new_path.push_str(&rest[1..]),
            (false, false) if !rest.is_empty() => {
                new_path.push('/');
                new_path.push_str(rest);
            }
            _ => new_path.push_str(rest),
        }
        if let Some(q) = uri.query() {
            new_path.push('?');
            new_path.push_str(q);
        }
        let mut parts = uri.clone().into_parts();
        parts.path_and_query = new_path.parse().ok();
        Uri::from_parts(parts).ok()
    }
}

/// The routes of one listener, in match order, and their index.
///
/// Routes are shared (`Arc`): a reload that leaves a route unchanged hands the
/// running route, its stack and its metric handles, to the new router as it is.
#[derive(Default)]
pub struct Router {
    routes: Vec<Arc<Route>>,
    index: RouteIndex,
}

impl Router {
    /// A router over routes in file order.
    pub fn new(routes: Vec<Route>) -> Self {
        Self::shared(routes.into_iter().map(Arc::new).collect())
    }

    /// A router over shared routes in file order (some may be a running router's).
    pub fn shared(routes: Vec<Arc<Route>>) -> Self {
        let index = RouteIndex::new(routes.iter().map(|r| &r.config.matcher));
        Self { routes, index }
    }

    /// The routes in file order.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// The route named `name` (a scan: for lookups by name in bulk, index [`Router::routes`]).
    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.config.name == name)
            .map(Arc::as_ref)
    }

    /// The first route in file order matching the request head.
    pub fn find(&self, head: &Parts) -> Option<&Route> {
        // Worked out only when some route matches on the host.
        let host = match self.index.uses_host() {
            true => request_host(&head.uri, &head.headers),
            false => None,
        };
        let path = head.uri.path();
        let pos = self.index.find(host, path, |pos| {
            self.routes.get(pos).is_some_and(|r| {
                matches(&r.config.matcher, host, path, &head.method, &head.headers)
            })
        })?;
        self.routes.get(pos).map(Arc::as_ref)
    }
}

/// The request's host without port: the URI authority (HTTP/2, absolute-form) or `Host`.
pub fn request_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    if let Some(host) = uri.host() {
        return Some(host);
    }
    let value = headers.get(header::HOST)?.to_str().ok()?;
    Some(strip_port(value))
}

fn strip_port(hostport: &str) -> &str {
    if let Some(rest) = hostport.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or(rest);
    }
    match hostport.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => hostport,
    }
}

fn matches(
    m: &RouteMatch,
    host: Option<&str>,
    path: &str,
    method: &Method,
    headers: &HeaderMap,
) -> bool {
    host_matches(m.host.as_ref(), host)
        && match &m.path {
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Exact(p) => path == p,
        }
        && (m.methods.is_empty() || m.methods.contains(method))
        && m.headers
            .iter()
            .all(|(name, value)| headers.get_all(name).iter().any(|v| v == value))
}

fn host_matches(pattern: Option<&HostMatch>, host: Option<&str>) -> bool {
    let Some(pattern) = pattern else {
        return true;
    };
    let Some(host) = host else {
        return false;
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    match pattern {
        HostMatch::Exact(name) => host.eq_ignore_ascii_case(name),
        HostMatch::Suffix(suffix) => {
            host.len() > suffix.len()
                && host
                    .get(host.len() - suffix.len()..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
        }
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn m(host: Option<HostMatch>, path: PathMatch) -> RouteMatch {
        RouteMatch {
            host,
            path,
            methods: vec![],
            headers: vec![],
        }
    }

    #[test]
    fn hosts_match_exact_and_wildcard() {
        let exact = HostMatch::Exact("code.example.gov".into());
        let wild = HostMatch::Suffix(".example.gov".into());
        assert!(host_matches(Some(&exact), Some("CODE.example.gov")));
        assert!(host_matches(Some(&exact), Some("code.example.gov.")));
        assert!(!host_matches(Some(&exact), Some("x.code.example.gov")));
        assert!(host_matches(Some(&wild), Some("a.example.gov")));
        assert!(host_matches(Some(&wild), Some("a.b.example.gov")));
        assert!(!host_matches(Some(&wild), Some("example.gov")));
        assert!(!host_matches(Some(&wild), Some("badexample.gov")));
        assert!(host_matches(None, None));
        assert!(!host_matches(Some(&exact), None));
    }

    #[test]
    fn host_header_port_is_ignored() {
        assert_eq!(strip_port("a.gov:8080"), "a.gov");
        assert_eq!(strip_port("a.gov"), "a.gov");
        assert_eq!(strip_port("[::1]:80"), "::1");
    }

    #[test]
    fn path_method_and_headers_all_must_hold() {
        let mut rm = m(None, PathMatch::Prefix("/api/".into()));
        rm.methods = vec![Method::GET];
        rm.headers = vec![(
            http::HeaderName::from_static("x-env"),
            HeaderValue::from_static("prod"),
        )];
        let mut h = HeaderMap::new();
        h.insert("x-env", HeaderValue::from_static("prod"));
        assert!(matches(&rm, None, "/api/x", &Method::GET, &h));
        assert!(!matches(&rm, None, "/apx", &Method::GET, &h));
        assert!(!matches(&rm, None, "/api/x", &Method::POST, &h));
        assert!(!matches(
            &rm,
            None,
            "/api/x",
            &Method::GET,
            &HeaderMap::new()
        ));
        let exact = m(None, PathMatch::Exact("/healthz".into()));
        assert!(matches(&exact, None, "/healthz", &Method::GET, &h));
        assert!(!matches(&exact, None, "/healthz/x", &Method::GET, &h));
    }
}
