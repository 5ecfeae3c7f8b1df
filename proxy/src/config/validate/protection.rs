//! Validation of the burst-protection blocks: `trusted_proxies`, `rate_limit`,
//! `cache`, `priority`, `circuit_breaker` and `admission`.

use std::time::Duration;

use http::HeaderName;

use super::Validator;
use crate::config::file::{FileAdmission, FileBreaker, FileCache, FilePriority, FileRateLimit};
use crate::config::{
    AdaptiveLimit, AdmissionConfig, BreakerConfig, CacheConfig, ConcurrencyLimit,
    FailureRateConfig, KeyedRateConfig, Priority, Rate, RateKey, RateLimitConfig,
    DEFAULT_CLUSTER_MAX_CONNECTIONS, DEFAULT_CLUSTER_MAX_PENDING_REQUESTS,
};

/// `rate_limit.per_key.max_keys` default.
pub const DEFAULT_MAX_KEYS: usize = 100_000;
/// `cache.max_bytes` default (64 MiB).
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 64 << 20;
/// `cache.lock_timeout` default (nginx's `proxy_cache_lock_timeout`).
const DEFAULT_CACHE_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// `cache.max_object_bytes` default (1 MiB).
pub const DEFAULT_CACHE_MAX_OBJECT_BYTES: u64 = 1 << 20;
/// `circuit_breaker.open_for` default.
pub const DEFAULT_OPEN_FOR: Duration = Duration::from_secs(5);
/// `circuit_breaker.max_open_for` default.
pub const DEFAULT_MAX_OPEN_FOR: Duration = Duration::from_secs(60);
/// `circuit_breaker.half_open_probes` default.
pub const DEFAULT_HALF_OPEN_PROBES: u32 = 3;
/// `circuit_breaker.failure_rate.window` default.
pub const DEFAULT_FAILURE_WINDOW: Duration = Duration::from_secs(10);
/// `circuit_breaker.failure_rate.min_requests` default.
pub const DEFAULT_FAILURE_MIN_REQUESTS: u32 = 20;
/// `admission.max_queue` default: a memory bound only (the delay rule keeps the
/// queue far shorter); 10,000 waiters hold a few tens of MiB of requests at most,
/// and a 100 ms standing queue at 100,000 requests/s still fits.
pub const DEFAULT_MAX_QUEUE: usize = 10_000;
/// `admission.queue_timeout` default: a cap above the delay rule (a standing queue
/// sheds after its target; one that is not standing is drained within about
/// `queue_interval` + target), short enough to answer before clients with a 1 s
/// timeout give up.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_millis(500);
/// `admission.queue_interval` default: CoDel's and Fail at Scale's 100 ms.
pub const DEFAULT_QUEUE_INTERVAL: Duration = Duration::from_millis(100);

/// The runtime priority for a route's `priority` (default normal).
pub fn priority(p: Option<FilePriority>) -> Priority {
    match p {
        Some(FilePriority::Critical) => Priority::Critical,
        Some(FilePriority::Sheddable) => Priority::Sheddable,
        Some(FilePriority::Normal) | None => Priority::Normal,
    }
}

impl Validator<'_> {
    /// `trusted_proxies`: IPs (`10.0.0.1`) or CIDRs (`10.0.0.0/8`).
    pub(super) fn trusted_proxies(
        &mut self,
        path: &str,
        list: Option<&[String]>,
    ) -> Vec<ipnet::IpNet> {
        let mut out = Vec::new();
        for (i, text) in list.unwrap_or_default().iter().enumerate() {
            let t = text.trim();
            let parsed = t
                .parse::<ipnet::IpNet>()
                .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(net) => out.push(net.trunc()),
                Err(_) => self.err(
                    format!("{path}[{i}]"),
                    format!("`{t}` is not an IP address or CIDR (e.g. `10.0.0.0/8`)"),
                ),
            }
        }
        out
    }

    /// `rate_limit`: route-wide `rps` (> 0) and `burst` (≥ 1, default `rps`), `shadow`,
    /// and `per_key` (`key`: `client_ip`, `header:<name>`, `path_segment:<n ≥ 1>`; `rps` > 0;
    /// `burst` default `rps`; `max_keys` default 100000, ≥ 1). At least one limit is needed.
    pub(super) fn rate_limit(&mut self, path: &str, rl: &FileRateLimit) -> Option<RateLimitConfig> {
        let route = match (rl.rps, rl.burst) {
            (None, None) => None,
            (None, Some(_)) => {
                self.err(format!("{path}.burst"), "`burst` needs `rps`");
                None
            }
            (Some(rps), burst) => self.rate(path, rps, burst),
        };
        let per_key = rl.per_key.as_ref().and_then(|pk| {
            let kpath = format!("{path}.per_key");
            let key = self.rate_key(&format!("{kpath}.key"), &pk.key);
            let rate = self.rate(&kpath, pk.rps, pk.burst);
            let max_keys = pk.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
            if max_keys == 0 {
                self.err(format!("{kpath}.max_keys"), "must be at least 1");
            }
            Some(KeyedRateConfig {
                key: key?,
                rate: rate?,
                max_keys: max_keys.max(1),
            })
        });
        if rl.rps.is_none() && rl.per_key.is_none() {
            self.err(
                path,
                "needs `rps` (a route-wide limit) or `per_key`, or both",
            );
            return None;
        }
        Some(RateLimitConfig {
            route,
            per_key,
            shadow: rl.shadow.unwrap_or(false),
        })
    }

    fn rate(&mut self, path: &str, rps: u32, burst: Option<u32>) -> Option<Rate> {
        let mut ok = true;
        if rps == 0 {
            self.err(format!("{path}.rps"), "must be greater than 0");
            ok = false;
        }
        let burst = burst.unwrap_or(rps);
        if burst == 0 {
            self.err(format!("{path}.burst"), "must be at least 1");
            ok = false;
        }
        ok.then_some(Rate { rps, burst })
    }

    fn rate_key(&mut self, path: &str, text: &str) -> Option<RateKey> {
        let t = text.trim();
        if t == "client_ip" {
            return Some(RateKey::ClientIp);
        }
        if let Some(name) = t.strip_prefix("header:") {
            return match HeaderName::try_from(name.trim()) {
                Ok(h) => Some(RateKey::Header(h)),
                Err(_) => {
                    self.err(
                        path,
                        format!("`{}` is not a valid header name", name.trim()),
                    );
                    None
                }
            };
        }
        if let Some(n) = t.strip_prefix("path_segment:") {
            return match n.trim().parse::<usize>() {
                Ok(n) if n >= 1 => Some(RateKey::PathSegment(n)),
                _ => {
                    self.err(path, format!("`{t}`: the segment number must be 1 or more"));
                    None
                }
            };
        }
        self.err(
            path,
            format!("`{t}`: expected `client_ip`, `header:<name>` or `path_segment:<n>`"),
        );
        None
    }

    /// `cache`: `ttl` (> 0, required), `max_bytes` (64MiB), `max_object_bytes` (1MiB,
    /// ≤ max_bytes), `stale_if_error` (0s), `key_headers` (valid names),
    /// `cache_authorized` and `cache_set_cookie` (false), `lock_timeout` (5s, > 0).
    pub(super) fn cache(&mut self, path: &str, c: &FileCache) -> CacheConfig {
        let ttl =
            self.positive_duration(&format!("{path}.ttl"), Some(&c.ttl), Duration::from_secs(1));
        let max_bytes = self.size(
            &format!("{path}.max_bytes"),
            c.max_bytes.as_ref(),
            DEFAULT_CACHE_MAX_BYTES,
        );
        let max_object_bytes = self.size(
            &format!("{path}.max_object_bytes"),
            c.max_object_bytes.as_ref(),
            DEFAULT_CACHE_MAX_OBJECT_BYTES.min(max_bytes),
        );
        if max_bytes == 0 {
            self.err(format!("{path}.max_bytes"), "must be greater than 0");
        }
        if max_object_bytes > max_bytes {
            self.err(
                format!("{path}.max_object_bytes"),
                format!("{max_object_bytes} is larger than max_bytes ({max_bytes})"),
            );
        }
        let stale_if_error = self.duration(
            &format!("{path}.stale_if_error"),
            c.stale_if_error.as_ref(),
            Duration::ZERO,
        );
        let mut key_headers = Vec::new();
        for (i, name) in c
            .key_headers
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            match HeaderName::try_from(name.trim()) {
                Ok(h) => key_headers.push(h),
                Err(_) => self.err(
                    format!("{path}.key_headers[{i}]"),
                    format!("`{name}` is not a valid header name"),
                ),
            }
        }
        CacheConfig {
            ttl,
            max_bytes,
            max_object_bytes,
            stale_if_error,
            key_headers,
            cache_authorized: c.cache_authorized.unwrap_or(false),
            cache_set_cookie: c.cache_set_cookie.unwrap_or(false),
            lock_timeout: self.positive_duration(
                &format!("{path}.lock_timeout"),
                c.lock_timeout.as_ref(),
                DEFAULT_CACHE_LOCK_TIMEOUT,
            ),
        }
    }

    /// `circuit_breaker`: thresholds (each ≥ 1 when given, `max_pending_requests` ≥ 0;
    /// `max_connections` and `max_pending_requests` default to 1024 with or without
    /// the block, `max_requests` and `max_retries` to unlimited), `consecutive_failures` (≥ 1),
    /// `failure_rate` (`threshold_percent` 1–100, `window` 10s, `min_requests` 20),
    /// `open_for` (5s, > 0), `max_open_for` (60s, ≥ open_for), `half_open_probes` (3, ≥ 1).
    pub(super) fn breaker(&mut self, path: &str, b: &FileBreaker) -> BreakerConfig {
        for (field, value) in [
            ("max_connections", b.max_connections),
            ("max_pending_requests", b.max_pending_requests),
            ("max_requests", b.max_requests),
            ("max_retries", b.max_retries),
        ] {
            if value == Some(0) && field != "max_retries" && field != "max_pending_requests" {
                self.err(format!("{path}.{field}"), "must be at least 1");
            }
        }
        if b.consecutive_failures == Some(0) {
            self.err(format!("{path}.consecutive_failures"), "must be at least 1");
        }
        let failure_rate = b.failure_rate.as_ref().map(|f| {
            let fpath = format!("{path}.failure_rate");
            if !(1..=100).contains(&f.threshold_percent) {
                self.err(
                    format!("{fpath}.threshold_percent"),
                    "must be between 1 and 100",
                );
            }
            FailureRateConfig {
                threshold_percent: f.threshold_percent.clamp(1, 100),
                window: self.positive_duration(
                    &format!("{fpath}.window"),
                    f.window.as_ref(),
                    DEFAULT_FAILURE_WINDOW,
                ),
                min_requests: f.min_requests.unwrap_or(DEFAULT_FAILURE_MIN_REQUESTS),
            }
        });
        let open_for = self.positive_duration(
            &format!("{path}.open_for"),
            b.open_for.as_ref(),
            DEFAULT_OPEN_FOR,
        );
        let max_open_for = self.positive_duration(
            &format!("{path}.max_open_for"),
            b.max_open_for.as_ref(),
            DEFAULT_MAX_OPEN_FOR.max(open_for),
        );
        if max_open_for < open_for {
            self.err(
                format!("{path}.max_open_for"),
                "must be at least `open_for`",
            );
        }
        let half_open_probes = b.half_open_probes.unwrap_or(DEFAULT_HALF_OPEN_PROBES);
        if half_open_probes == 0 {
            self.err(format!("{path}.half_open_probes"), "must be at least 1");
        }
        BreakerConfig {
            max_connections: Some(b.max_connections.unwrap_or(DEFAULT_CLUSTER_MAX_CONNECTIONS)),
            max_pending_requests: Some(
                b.max_pending_requests
                    .unwrap_or(DEFAULT_CLUSTER_MAX_PENDING_REQUESTS),
            ),
            max_requests: b.max_requests,
            max_retries: b.max_retries,
            consecutive_failures: b.consecutive_failures,
            failure_rate,
            open_for,
            max_open_for: max_open_for.max(open_for),
            half_open_probes: half_open_probes.max(1),
        }
    }

    /// `admission`: `fixed_limit` (≥ 1) or the adaptive bounds `min_limit` (4, ≥ 1) ≤
    /// `initial_limit` (20) ≤ `max_limit` (1000); `tolerance` (1.0, ≥ 1); `update_interval`
    /// (100ms); `min_rtt_window` (10s); `max_queue` (10000); `queue_timeout` (500ms, > 0);
    /// `queue_target` (`auto`, or a duration > 0); `queue_interval` (100ms, > 0);
    /// `priority_header` (off unless given, e.g. `x-floodgate-priority`: clients could
    /// otherwise promote themselves; set it only where a trusted hop writes it).
    pub(super) fn admission(&mut self, path: &str, a: &FileAdmission) -> AdmissionConfig {
        let limit = match a.fixed_limit {
            Some(n) => {
                if n == 0 {
                    self.err(format!("{path}.fixed_limit"), "must be at least 1");
                }
                for (field, given) in [
                    ("initial_limit", a.initial_limit.is_some()),
                    ("min_limit", a.min_limit.is_some()),
                    ("max_limit", a.max_limit.is_some()),
                    ("tolerance", a.tolerance.is_some()),
                ] {
                    if given {
                        self.err(
                            format!("{path}.{field}"),
                            "applies to the adaptive limit; remove it or remove `fixed_limit`",
                        );
                    }
                }
                ConcurrencyLimit::Fixed(n.max(1))
            }
            None => {
                let min = a.min_limit.unwrap_or(4);
                let max = a.max_limit.unwrap_or(1000);
                let initial = a.initial_limit.unwrap_or(20.clamp(min.max(1), max.max(1)));
                if min == 0 {
                    self.err(format!("{path}.min_limit"), "must be at least 1");
                }
                if max < min {
                    self.err(
                        format!("{path}.max_limit"),
                        format!("must be at least min_limit ({min})"),
                    );
                }
                if initial < min || initial > max {
                    self.err(
                        format!("{path}.initial_limit"),
                        format!("must be between min_limit ({min}) and max_limit ({max})"),
                    );
                }
                let tolerance = a.tolerance.unwrap_or(1.0);
                if !(tolerance.is_finite() && tolerance >= 1.0) {
                    self.err(
                        format!("{path}.tolerance"),
                        "must be a number of at least 1",
                    );
                }
                let update_interval = self.positive_duration(
                    &format!("{path}.update_interval"),
                    a.update_interval.as_ref(),
                    Duration::from_millis(100),
                );
                let min_rtt_window = self.positive_duration(
                    &format!("{path}.min_rtt_window"),
                    a.min_rtt_window.as_ref(),
                    Duration::from_secs(10),
                );
                ConcurrencyLimit::Adaptive(AdaptiveLimit {
                    initial: initial.clamp(min.max(1), max.max(min.max(1))),
                    min: min.max(1),
                    max: max.max(min.max(1)),
                    tolerance: if tolerance.is_finite() && tolerance >= 1.0 {
                        tolerance
                    } else {
                        1.0
                    },
                    update_interval,
                    min_rtt_window,
                })
            }
        };
        let priority_header = match a.priority_header.as_deref().map(str::trim) {
            Some("") => None,
            Some(name) => match HeaderName::try_from(name) {
                Ok(h) => Some(h),
                Err(_) => {
                    self.err(
                        format!("{path}.priority_header"),
                        format!("`{name}` is not a valid header name"),
                    );
                    None
                }
            },
            None => None,
        };
        let queue_target = match a.queue_target.as_ref() {
            None => None,
            Some(t) if t.as_str().trim().eq_ignore_ascii_case("auto") => None,
            Some(t) => Some(self.positive_duration(
                &format!("{path}.queue_target"),
                Some(t),
                Duration::from_millis(5),
            )),
        };
        AdmissionConfig {
            limit,
            max_queue: a.max_queue.unwrap_or(DEFAULT_MAX_QUEUE),
            queue_timeout: self.positive_duration(
                &format!("{path}.queue_timeout"),
                a.queue_timeout.as_ref(),
                DEFAULT_QUEUE_TIMEOUT,
            ),
            queue_target,
            queue_interval: self.positive_duration(
                &format!("{path}.queue_interval"),
                a.queue_interval.as_ref(),
                DEFAULT_QUEUE_INTERVAL,
            ),
            priority_header,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{parse_str, ConcurrencyLimit, Priority, RateKey};

    fn config(route_extra: &str, cluster_extra: &str) -> String {
        format!(
            r#"
listeners:
  - name: public
    listen: 127.0.0.1:0
    trusted_proxies: ["10.0.0.0/8", "127.0.0.1"]
    routes:
      - name: all
        cluster: app
{route_extra}
clusters:
  - name: app
    endpoints: ["127.0.0.1:9001"]
{cluster_extra}
"#
        )
    }

    fn errors(text: &str) -> Vec<String> {
        match parse_str(text, "t.yaml", std::path::Path::new(".")) {
            Ok(_) => panic!("expected errors:\n{text}"),
            Err(e) => e
                .errors
                .into_iter()
                .map(|e| format!("{}: {}", e.path, e.reason))
                .collect(),
        }
    }

    #[test]
    fn protection_blocks_parse_with_defaults() {
        let text = config(
            "        priority: critical\n        rate_limit: { rps: 100, per_key: { key: \"header:x-user\", rps: 5 } }\n        cache: { ttl: 1s, key_headers: [accept-language] }",
            "    circuit_breaker: { max_requests: 100, consecutive_failures: 5 }\n    admission: { max_queue: 50 }",
        );
        let c = parse_str(&text, "t.yaml", std::path::Path::new(".")).unwrap();
        let l = &c.listeners[0];
        assert_eq!(l.trusted_proxies.len(), 2);
        let r = &l.routes[0];
        assert_eq!(r.priority, Priority::Critical);
        let rl = r.rate_limit.as_ref().unwrap();
        assert_eq!(rl.route.unwrap().burst, 100);
        let pk = rl.per_key.as_ref().unwrap();
        assert_eq!(
            pk.key,
            RateKey::Header(http::HeaderName::from_static("x-user"))
        );
        assert_eq!((pk.rate.rps, pk.rate.burst, pk.max_keys), (5, 5, 100_000));
        let cache = r.cache.as_ref().unwrap();
        assert_eq!(cache.max_bytes, 64 << 20);
        let cl = &c.clusters[0];
        let b = cl.circuit_breaker.as_ref().unwrap();
        assert_eq!(b.half_open_probes, 3);
        let a = cl.admission.as_ref().unwrap();
        assert!(
            matches!(a.limit, ConcurrencyLimit::Adaptive(ref l) if l.initial == 20 && l.min == 4)
        );
        assert_eq!(a.max_queue, 50);
        assert_eq!(a.queue_timeout, std::time::Duration::from_millis(500));
        assert_eq!(a.queue_target, None, "auto");
        assert_eq!(a.queue_interval, std::time::Duration::from_millis(100));
        assert!(a.priority_header.is_none());
    }

    #[test]
    fn queue_fields_parse_and_are_checked() {
        let text = config(
            "",
            "    admission: { queue_target: 20ms, queue_interval: 250ms }",
        );
        let c = parse_str(&text, "t.yaml", std::path::Path::new(".")).unwrap();
        let a = c.clusters[0].admission.as_ref().unwrap();
        assert_eq!(a.max_queue, 10_000);
        assert_eq!(a.queue_target, Some(std::time::Duration::from_millis(20)));
        assert_eq!(a.queue_interval, std::time::Duration::from_millis(250));
        let text = config("", "    admission: { queue_target: auto }");
        let c = parse_str(&text, "t.yaml", std::path::Path::new(".")).unwrap();
        assert_eq!(c.clusters[0].admission.as_ref().unwrap().queue_target, None);
        let e = errors(&config(
            "",
            "    admission: { queue_target: 0s, queue_interval: soon }",
        ))
        .join("\n");
        assert!(e.contains("clusters[0].admission.queue_target"), "{e}");
        assert!(e.contains("clusters[0].admission.queue_interval"), "{e}");
    }

    #[test]
    fn admission_is_on_by_default_and_can_be_turned_off() {
        let c = parse_str(&config("", ""), "t.yaml", std::path::Path::new(".")).unwrap();
        let a = c.clusters[0]
            .admission
            .as_ref()
            .expect("on without a block");
        assert!(matches!(a.limit, ConcurrencyLimit::Adaptive(ref l) if l.initial == 20));
        assert_eq!((a.max_queue, a.queue_target), (10_000, None));
        let off = config("", "    admission: { enabled: false }");
        let c = parse_str(&off, "t.yaml", std::path::Path::new(".")).unwrap();
        assert!(c.clusters[0].admission.is_none());
        let on = config("", "    admission: { enabled: true, fixed_limit: 3 }");
        let c = parse_str(&on, "t.yaml", std::path::Path::new(".")).unwrap();
        let a = c.clusters[0].admission.as_ref().unwrap();
        assert!(matches!(a.limit, ConcurrencyLimit::Fixed(3)));
        // A disabled block is still checked.
        let e = errors(&config(
            "",
            "    admission: { enabled: false, fixed_limit: 0 }",
        ));
        assert!(
            e.join("\n").contains("clusters[0].admission.fixed_limit"),
            "{e:?}"
        );
    }

    #[test]
    fn protection_errors_name_their_fields() {
        let e = errors(&config(
            "        rate_limit: { rps: 0, per_key: { key: \"path_segment:0\", rps: 5 } }\n        cache: { ttl: 0s }",
            "    circuit_breaker: { max_requests: 0, failure_rate: { threshold_percent: 150 } }\n    admission: { fixed_limit: 10, min_limit: 2 }",
        ));
        let joined = e.join("\n");
        for needle in [
            "listeners[0].routes[0].rate_limit.rps: must be greater than 0",
            "listeners[0].routes[0].rate_limit.per_key.key",
            "listeners[0].routes[0].cache.ttl",
            "clusters[0].circuit_breaker.max_requests",
            "clusters[0].circuit_breaker.failure_rate.threshold_percent",
            "clusters[0].admission.min_limit",
        ] {
            assert!(joined.contains(needle), "missing `{needle}` in:\n{joined}");
        }
    }

    #[test]
    fn bad_trusted_proxy_is_reported() {
        let e = errors(&config("", "").replace("\"127.0.0.1\"", "\"not-an-ip\""));
        assert!(
            e.iter()
                .any(|l| l.starts_with("listeners[0].trusted_proxies[1]")),
            "{e:?}"
        );
    }

    #[test]
    fn adaptive_defaults_and_tolerance_bounds() {
        let c = parse_str(
            &config("", "    admission: {}"),
            "t.yaml",
            std::path::Path::new("."),
        )
        .unwrap();
        let ConcurrencyLimit::Adaptive(a) = &c.clusters[0].admission.as_ref().unwrap().limit else {
            panic!("adaptive by default");
        };
        assert_eq!(
            (a.tolerance, a.min_rtt_window),
            (1.0, std::time::Duration::from_secs(10))
        );
        let ok = parse_str(
            &config("", "    admission: { tolerance: 1 }"),
            "t.yaml",
            std::path::Path::new("."),
        );
        assert!(ok.is_ok(), "tolerance 1 is the default and valid");
        assert_eq!(
            errors(&config("", "    admission: { tolerance: 0.9 }")),
            ["clusters[0].admission.tolerance: must be a number of at least 1"]
        );
    }
}
