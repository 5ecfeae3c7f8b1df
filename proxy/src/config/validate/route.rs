//! Validation of `listeners[].routes`: matches, backends and retry policies.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, StatusCode};

use super::grammar::{host_pattern, method, url_path};
use super::protection::priority;
use super::Validator;
use crate::config::file::{FileBurst, FileMatch, FileRetry, FileRoute};
use crate::config::{
    format_duration, Backend, BurstConfig, PathMatch, RetryOn, RetryPolicy, RouteConfig,
    RouteMatch, WeightedCluster,
};

/// `routes[].timeout` default.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);
/// `routes[].retry.attempts` default.
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 2;
/// `routes[].retry.attempts` upper bound.
pub const MAX_RETRY_ATTEMPTS: u32 = 10;
/// `routes[].retry.budget_percent` default.
pub const DEFAULT_RETRY_BUDGET_PERCENT: f64 = 20.0;
/// `routes[].retry.min_retries_per_sec` default.
pub const DEFAULT_MIN_RETRIES_PER_SEC: u32 = 10;
/// `routes[].retry.backoff` default.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(25);

impl Validator<'_> {
    /// `listeners[].routes` of listener `name` (at field path `listener`): at least one
    /// per listener, names unique within the listener. A route the previous validation
    /// took with the same file form is taken as it was ([`super::reuse`]).
    pub(super) fn routes(
        &mut self,
        listener: &str,
        name: &str,
        routes: &[Arc<FileRoute>],
        clusters: &[&str],
    ) -> Vec<Arc<RouteConfig>> {
        if routes.is_empty() {
            self.err(
                format!("{listener}.routes"),
                "at least one route is required",
            );
        }
        let mut names: HashMap<&str, usize> = HashMap::with_capacity(routes.len());
        let mut out = Vec::with_capacity(routes.len());
        for (i, r) in routes.iter().enumerate() {
            let validated = self.reuse.as_ref().and_then(|reuse| reuse.route(name, r));
            if validated.is_none() {
                self.name(&format!("{listener}.routes[{i}].name"), &r.name);
            }
            if let Some(first) = names.insert(&r.name, i) {
                self.err(
                    format!("{listener}.routes[{i}].name"),
                    format!(
                        "duplicate route name `{}` in this listener (also routes[{first}])",
                        r.name
                    ),
                );
            }
            match validated {
                Some(validated) => out.push(Arc::clone(validated)),
                None => out.push(Arc::new(self.route(
                    &format!("{listener}.routes[{i}]"),
                    r,
                    clusters,
                ))),
            }
        }
        out
    }

    /// One route. Exactly one of `cluster` and `weighted`; `rewrite_prefix` needs a prefix
    /// match (the default `/` counts) and starts with `/`; `timeout` defaults to 15s and
    /// must be > 0; `preserve_host` defaults to true; `retry` is absent unless written.
    fn route(&mut self, path: &str, r: &FileRoute, clusters: &[&str]) -> RouteConfig {
        let matcher = self.route_match(&format!("{path}.match"), r.matcher.as_ref());
        let backend = self.backend(path, r, clusters);
        if let Some(rewrite) = &r.rewrite_prefix {
            let rpath = format!("{path}.rewrite_prefix");
            if let Err(e) = url_path(rewrite) {
                self.err(&rpath, e);
            }
            if let PathMatch::Exact(_) = matcher.path {
                self.err(
                    &rpath,
                    "needs a `path_prefix` match; this route matches an exact `path`",
                );
            }
        }
        let timeout = self.positive_duration(
            &format!("{path}.timeout"),
            r.timeout.as_ref(),
            DEFAULT_ROUTE_TIMEOUT,
        );
        let retry = r
            .retry
            .as_ref()
            .map(|retry| self.retry(&format!("{path}.retry"), retry, timeout));
        let rate_limit = r
            .rate_limit
            .as_ref()
            .and_then(|rl| self.rate_limit(&format!("{path}.rate_limit"), rl));
        let cache = r
            .cache
            .as_ref()
            .map(|c| self.cache(&format!("{path}.cache"), c));
        let burst = r
            .burst
            .as_ref()
            .map(|b| self.burst(&format!("{path}.burst"), b));
        let mut route = RouteConfig {
            name: r.name.clone(),
            matcher,
            backend,
            rewrite_prefix: r.rewrite_prefix.clone(),
            timeout: Some(timeout),
            retry,
            preserve_host: r.preserve_host.unwrap_or(true),
            rate_limit,
            cache,
            priority: priority(r.priority),
            burst,
            burst_active: false,
            global_rate_limit: r
                .global_rate_limit
                .as_ref()
                .and_then(|g| self.global_rate_limit(&format!("{path}.global_rate_limit"), g)),
        };
        self.apply_burst(&mut route);
        route
    }

    /// `burst:`: `rate_limit`, `cache` and `priority`, validated like the route's own
    /// (always, so a mistake shows before a burst does); at least one of them.
    fn burst(&mut self, path: &str, b: &FileBurst) -> BurstConfig {
        if b.rate_limit.is_none() && b.cache.is_none() && b.priority.is_none() {
            self.err(path, "needs `rate_limit`, `cache` or `priority`");
        }
        BurstConfig {
            rate_limit: b
                .rate_limit
                .as_ref()
                .and_then(|rl| self.rate_limit(&format!("{path}.rate_limit"), rl)),
            cache: b
                .cache
                .as_ref()
                .map(|c| self.cache(&format!("{path}.cache"), c)),
            priority: b.priority.map(|p| priority(Some(p))),
        }
    }

    /// While a cluster of the route is in burst mode, its `burst:` settings replace
    /// the route's own (a setting the block leaves out is kept).
    fn apply_burst(&self, route: &mut RouteConfig) {
        let Some(burst) = route.burst.clone() else {
            return;
        };
        let bursting = route
            .backend_arms()
            .iter()
            .any(|(cluster, _)| self.bursting.iter().any(|b| b == cluster));
        if !bursting {
            return;
        }
        route.burst_active = true;
        if let Some(rl) = burst.rate_limit {
            route.rate_limit = Some(rl);
        }
        if let Some(c) = burst.cache {
            route.cache = Some(c);
        }
        if let Some(p) = burst.priority {
            route.priority = p;
        }
    }

    /// `match`: `host` (see [`host_pattern`]), `path_prefix` or `path` (not both; default
    /// prefix `/`; must start with `/`), `method` (one or a list of upper-case method
    /// tokens), `headers` (name → exact value).
    fn route_match(&mut self, path: &str, m: Option<&FileMatch>) -> RouteMatch {
        let Some(m) = m else {
            return RouteMatch {
                host: None,
                path: PathMatch::Prefix("/".to_owned()),
                methods: Vec::new(),
                headers: Vec::new(),
            };
        };
        let host = match m.host.as_deref().map(host_pattern) {
            None => None,
            Some(Ok(h)) => h,
            Some(Err(e)) => {
                self.err(format!("{path}.host"), e);
                None
            }
        };
        let path_match = match (&m.path_prefix, &m.path) {
            (Some(_), Some(_)) => {
                self.err(path, "set either `path_prefix` or `path` (exact), not both");
                PathMatch::Prefix("/".to_owned())
            }
            (Some(p), None) => {
                if let Err(e) = url_path(p) {
                    self.err(format!("{path}.path_prefix"), e);
                }
                PathMatch::Prefix(p.clone())
            }
            (None, Some(p)) => {
                if let Err(e) = url_path(p) {
                    self.err(format!("{path}.path"), e);
                }
                PathMatch::Exact(p.clone())
            }
            (None, None) => PathMatch::Prefix("/".to_owned()),
        };
        let mut methods: Vec<Method> = Vec::new();
        for (i, text) in m.method.iter().flat_map(|l| l.0.iter()).enumerate() {
            let mpath = format!("{path}.method[{i}]");
            match method(text) {
                Ok(mth) if methods.contains(&mth) => {
                    self.err(mpath, format!("`{text}` is listed twice"));
                }
                Ok(mth) => methods.push(mth),
                Err(e) => self.err(mpath, e),
            }
        }
        let mut headers = Vec::new();
        for (name, value) in m.headers.iter().flat_map(|h| h.0.iter()) {
            let hpath = format!("{path}.headers.{name}");
            let n = HeaderName::from_bytes(name.as_bytes());
            let v = HeaderValue::from_str(value.as_str());
            match (n, v) {
                (Ok(n), Ok(v)) => {
                    if headers.iter().any(|(existing, _)| *existing == n) {
                        self.err(
                            hpath,
                            format!("header `{n}` is listed twice (names are case-insensitive)"),
                        );
                    } else {
                        headers.push((n, v));
                    }
                }
                (Err(_), _) => self.err(hpath, format!("`{name}` is not a valid header name")),
                (_, Err(_)) => self.err(
                    hpath,
                    format!(
                        "`{value}` is not a valid header value (visible ASCII and spaces only)"
                    ),
                ),
            }
        }
        RouteMatch {
            host,
            path: path_match,
            methods,
            headers,
        }
    }

    /// Exactly one of `cluster` and `weighted`. Every named cluster must exist; a weighted
    /// split lists each cluster once and at least one weight must be > 0.
    fn backend(&mut self, path: &str, r: &FileRoute, clusters: &[&str]) -> Backend {
        match (&r.cluster, &r.weighted) {
            (Some(_), Some(_)) => {
                self.err(path, "set either `cluster` or `weighted`, not both");
                Backend::Cluster(String::new())
            }
            (None, None) => {
                self.err(
                    path,
                    "needs a destination: `cluster: NAME` or `weighted: [...]`",
                );
                Backend::Cluster(String::new())
            }
            (Some(c), None) => {
                self.cluster_ref(&format!("{path}.cluster"), c, clusters);
                Backend::Cluster(c.clone())
            }
            (None, Some(arms)) => {
                let wpath = format!("{path}.weighted");
                if arms.is_empty() {
                    self.err(&wpath, "must list at least one cluster");
                }
                let mut seen: HashMap<&str, usize> = HashMap::new();
                for (i, arm) in arms.iter().enumerate() {
                    let cpath = format!("{wpath}[{i}].cluster");
                    self.cluster_ref(&cpath, &arm.cluster, clusters);
                    if let Some(first) = seen.insert(&arm.cluster, i) {
                        self.err(
                            cpath,
                            format!("cluster `{}` is listed twice (also [{first}])", arm.cluster),
                        );
                    }
                }
                if !arms.is_empty() && arms.iter().all(|a| a.weight == 0) {
                    self.err(&wpath, "at least one weight must be greater than 0");
                }
                Backend::Weighted(
                    arms.iter()
                        .map(|a| WeightedCluster {
                            cluster: a.cluster.clone(),
                            weight: a.weight,
                        })
                        .collect(),
                )
            }
        }
    }

    /// A reference to a cluster by name, which must exist.
    fn cluster_ref(&mut self, path: &str, name: &str, clusters: &[&str]) {
        if !clusters.contains(&name) {
            self.err(
                path,
                format!(
                    "unknown cluster \"{name}\" (known: {})",
                    clusters.join(", ")
                ),
            );
        }
    }

    /// `retry`: `attempts` (2, 1..=10), `on` (default `[connect_failure]`, see
    /// [`retry_on`]), `per_try_timeout` (none; > 0 and ≤ the route timeout),
    /// `budget_percent` (20, 0..=100), `min_retries_per_sec` (10), `backoff` (25ms).
    fn retry(&mut self, path: &str, r: &FileRetry, route_timeout: Duration) -> RetryPolicy {
        let attempts = r.attempts.unwrap_or(DEFAULT_RETRY_ATTEMPTS);
        if !(1..=MAX_RETRY_ATTEMPTS).contains(&attempts) {
            self.err(
                format!("{path}.attempts"),
                format!("must be between 1 and {MAX_RETRY_ATTEMPTS} (tries including the first); got {attempts}"),
            );
        }
        let on = match &r.on {
            None => RetryOn {
                connect_failure: true,
                ..RetryOn::default()
            },
            Some(list) => {
                if list.0.is_empty() {
                    self.err(
                        format!("{path}.on"),
                        "must list at least one condition (or omit `on` for `[connect_failure]`)",
                    );
                }
                let mut on = RetryOn::default();
                for (i, item) in list.0.iter().enumerate() {
                    if let Err(e) = retry_on(&mut on, item.as_str()) {
                        self.err(format!("{path}.on[{i}]"), e);
                    }
                }
                on.statuses.sort();
                on.statuses.dedup();
                on
            }
        };
        let ptpath = format!("{path}.per_try_timeout");
        let per_try_timeout = r.per_try_timeout.as_ref().map(|t| {
            let d = self.positive_duration(&ptpath, Some(t), route_timeout);
            if d > route_timeout {
                self.err(
                    &ptpath,
                    format!(
                        "{} is longer than the route timeout {}",
                        format_duration(d),
                        format_duration(route_timeout)
                    ),
                );
            }
            d
        });
        let budget_percent = r.budget_percent.unwrap_or(DEFAULT_RETRY_BUDGET_PERCENT);
        if !(0.0..=100.0).contains(&budget_percent) {
            self.err(
                format!("{path}.budget_percent"),
                format!("must be between 0 and 100; got {budget_percent}"),
            );
        }
        let backoff = self.duration(
            &format!("{path}.backoff"),
            r.backoff.as_ref(),
            DEFAULT_RETRY_BACKOFF,
        );
        RetryPolicy {
            attempts,
            on,
            per_try_timeout,
            budget_percent,
            min_retries_per_sec: r.min_retries_per_sec.unwrap_or(DEFAULT_MIN_RETRIES_PER_SEC),
            backoff,
        }
    }
}

/// Adds one `retry.on` condition: `connect_failure`, `reset`, `timeout`, `5xx` (every
/// status 500–599), `gateway_error` (502, 503, 504) or one status code 100–599.
fn retry_on(on: &mut RetryOn, item: &str) -> Result<(), String> {
    let status_range = |range: std::ops::RangeInclusive<u16>| {
        range
            .filter_map(|c| StatusCode::from_u16(c).ok())
            .collect::<Vec<_>>()
    };
    match item.trim() {
        "connect_failure" => on.connect_failure = true,
        "reset" => on.reset = true,
        "timeout" => on.timeout = true,
        "5xx" => on.statuses.extend(status_range(500..=599)),
        "gateway_error" => on.statuses.extend(status_range(502..=504)),
        other => {
            let unknown = || {
                format!(
                    "unknown retry condition `{other}` (expected connect_failure, reset, timeout, \
                     5xx, gateway_error or a status code 100-599)"
                )
            };
            let code: u16 = other.parse().map_err(|_| unknown())?;
            if !(100..=599).contains(&code) {
                return Err(format!("status code {code} is outside 100-599"));
            }
            on.statuses
                .push(StatusCode::from_u16(code).map_err(|_| unknown())?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod burst_tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::{parse_str, Config, Priority, RouteConfig};

    /// Route `codes` to cluster `app`, with burst overrides; `{mode}` is the cluster's
    /// `burst_mode` line.
    fn config(mode: &str) -> Config {
        let text = format!(
            "listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    routes:\n\
             \x20     - name: codes\n        cluster: app\n        rate_limit: {{ rps: 100 }}\n\
             \x20       cache: {{ ttl: 1s }}\n\
             \x20       burst:\n          rate_limit: {{ rps: 10, per_key: {{ key: client_ip, rps: 1 }} }}\n\
             \x20         cache: {{ ttl: 30s }}\n          priority: sheddable\n\
             \x20     - name: rest\n        cluster: other\n        burst: {{ priority: critical }}\n\
             clusters:\n  - name: app\n    endpoints: [127.0.0.1:9]\n{mode}\
             \x20 - name: other\n    endpoints: [127.0.0.1:10]\n"
        );
        parse_str(&text, "t.yaml", Path::new(".")).unwrap()
    }

    fn route<'a>(c: &'a Config, name: &str) -> &'a RouteConfig {
        c.listeners[0]
            .routes
            .iter()
            .find(|r| r.name == name)
            .unwrap()
    }

    #[test]
    fn overrides_apply_only_in_burst_mode_and_leave_the_rest() {
        let normal = config("");
        let r = route(&normal, "codes");
        assert!(!r.burst_active);
        assert_eq!(r.priority, Priority::Normal);
        assert_eq!(r.cache.as_ref().unwrap().ttl, Duration::from_secs(1));
        assert!(r.rate_limit.as_ref().unwrap().per_key.is_none());
        assert_eq!(config("    burst_mode: false\n"), normal);

        let burst = config("    burst_mode: true\n");
        let r = route(&burst, "codes");
        assert!(r.burst_active);
        let b = r.burst.clone().unwrap();
        assert_eq!(r.rate_limit, b.rate_limit);
        assert!(r.rate_limit.as_ref().unwrap().per_key.is_some());
        assert_eq!(r.cache.as_ref().unwrap().ttl, Duration::from_secs(30));
        assert_eq!(r.priority, Priority::Sheddable);
        // A route to another cluster is not in burst.
        let rest = route(&burst, "rest");
        assert!(!rest.burst_active);
        assert_eq!(rest.priority, Priority::Normal);
        // Leaving burst mode is the normal config again.
        assert_eq!(route(&normal, "codes").burst, route(&burst, "codes").burst);
    }

    #[test]
    fn burst_blocks_are_validated_even_when_not_in_force() {
        let text = "listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    routes:\n\
                    \x20     - name: a\n        cluster: app\n        burst: {}\n\
                    \x20     - name: b\n        cluster: app\n        burst: { cache: { ttl: 0s }, shed: true }\n\
                    clusters:\n  - name: app\n    endpoints: [127.0.0.1:9]\n";
        let e = parse_str(text, "t.yaml", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("routes[1].burst.shed: unknown field"), "{e}");
        let text = text.replace(", shed: true", "");
        let e = parse_str(&text, "t.yaml", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("routes[0].burst: needs `rate_limit`, `cache` or `priority`"),
            "{e}"
        );
        assert!(e.contains("routes[1].burst.cache.ttl"), "{e}");
    }
}
