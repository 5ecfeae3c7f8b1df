//! Validation: file types → runtime types, reporting every error with its field path.
//!
//! One pass walks the whole file and collects every problem (like linkerd's
//! `parse_config`): a bad value is reported, replaced by its default so the walk can go
//! on, and the result is an error list if anything was reported. Each rule and default
//! is documented on the function that applies it and in `docs/config.md`.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, StatusCode};

use super::duration::parse_duration;
use super::file::{
    FileAdmin, FileBalancer, FileCert, FileCluster, FileConfig, FileHeaders, FileHealthCheck,
    FileLimits, FileListener, FileMatch, FileOutlier, FileProtocol, FileRetry, FileRoute,
    FileServer, FileServerTls, FileUpstreamTls, Scalar,
};
use super::{
    AdminConfig, Backend, BalancerKind, CertConfig, ClusterConfig, Config, ConfigError,
    ConfigErrors, EndpointAddr, HealthCheckConfig, HostMatch, ListenerConfig, ListenerHeaders,
    ListenerLimits, OutlierConfig, PathMatch, RetryOn, RetryPolicy, RouteConfig, RouteMatch,
    ServerConfig, ServerTlsConfig, UpstreamProtocol, UpstreamTlsConfig, WeightedCluster,
};
use crate::tls::{self, TlsError};

/// `admin.listen` default.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9901);
/// `server.drain_timeout` default.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// `listeners[].tls.alpn` default, and the only values allowed.
pub const DEFAULT_ALPN: [&str; 2] = ["h2", "http/1.1"];
/// `listeners[].limits.max_connections` default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// `listeners[].limits.header_read_timeout` default.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// `listeners[].limits.idle_timeout` default.
pub const DEFAULT_LISTENER_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// `listeners[].limits.max_header_bytes` default (64 KiB).
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 64 * 1024;
/// Smallest `max_header_bytes`: hyper's HTTP/1 parser refuses buffers under 8 KiB.
pub const MIN_MAX_HEADER_BYTES: u64 = 8 * 1024;
/// `listeners[].limits.max_request_body_bytes` default (10 MiB).
pub const DEFAULT_MAX_REQUEST_BODY_BYTES: u64 = 10 * 1024 * 1024;
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
/// `clusters[].connect_timeout` default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// `clusters[].idle_timeout` default.
pub const DEFAULT_CLUSTER_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// `clusters[].max_idle_per_endpoint` default.
pub const DEFAULT_MAX_IDLE_PER_ENDPOINT: usize = 256;
/// `clusters[].health_check.interval` default.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// `clusters[].health_check.timeout` default.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// `clusters[].health_check.healthy_threshold` default.
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
/// `clusters[].health_check.unhealthy_threshold` default.
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
/// `clusters[].outlier.consecutive_failures` default.
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;
/// `clusters[].outlier.base_ejection` default.
pub const DEFAULT_BASE_EJECTION: Duration = Duration::from_secs(30);
/// `clusters[].outlier.max_ejection` default.
pub const DEFAULT_MAX_EJECTION: Duration = Duration::from_secs(300);
/// `clusters[].outlier.max_ejection_percent` default.
pub const DEFAULT_MAX_EJECTION_PERCENT: u32 = 10;

/// Converts file types into a runtime [`Config`], or reports every problem found.
pub(super) fn validate(
    file: FileConfig,
    source: &str,
    base_dir: &Path,
) -> Result<Config, ConfigErrors> {
    let mut v = Validator {
        base_dir,
        errors: Vec::new(),
    };
    let admin = v.admin(file.admin.as_ref());
    let server = v.server(file.server.as_ref());
    let mut known: Vec<&str> = Vec::with_capacity(file.clusters.len());
    for c in &file.clusters {
        if !known.contains(&c.name.as_str()) {
            known.push(&c.name);
        }
    }
    let listeners = v.listeners(&file.listeners, &known, admin.listen);
    let clusters = v.clusters(&file.clusters);
    if v.errors.is_empty() {
        Ok(Config {
            source: source.to_owned(),
            admin,
            server,
            listeners,
            clusters,
        })
    } else {
        Err(ConfigErrors {
            file: source.to_owned(),
            errors: v.errors,
        })
    }
}

/// Walks the file types, collecting errors; each method returns a usable value (the
/// default where the input was bad) so that the walk always reaches the end.
struct Validator<'a> {
    /// Folder that relative certificate paths are resolved against.
    base_dir: &'a Path,
    /// Every problem found so far, in file order.
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    fn err(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(ConfigError::at(path, reason));
    }

    /// A duration field (`250ms`, `2s`, `1m`, `1h`); `default` when absent.
    fn duration(&mut self, path: &str, value: Option<&Scalar>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(text) => parse_duration(text.as_str()).unwrap_or_else(|e| {
                self.err(path, e.to_string());
                default
            }),
        }
    }

    /// A duration field that must be greater than zero.
    fn positive_duration(
        &mut self,
        path: &str,
        value: Option<&Scalar>,
        default: Duration,
    ) -> Duration {
        let d = self.duration(path, value, default);
        if d.is_zero() {
            self.err(path, "must be greater than 0");
            return default;
        }
        d
    }

    /// A byte-size field: an integer or `64KiB`, `10MiB` (see [`parse_size`]).
    fn size(&mut self, path: &str, value: Option<&Scalar>, default: u64) -> u64 {
        match value {
            None => default,
            Some(text) => parse_size(text.as_str()).unwrap_or_else(|e| {
                self.err(path, e);
                default
            }),
        }
    }

    /// Checks a name used in logs and metrics: non-empty, letters, digits, `-`, `_`, `.`.
    fn name(&mut self, path: &str, name: &str) {
        if name.is_empty() {
            self.err(path, "must not be empty");
        } else if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            self.err(
                path,
                format!("`{name}` may contain only letters, digits, `-`, `_` and `.`"),
            );
        }
    }

    /// Reads a file named in the config, relative paths resolved against `base_dir`.
    /// Returns the resolved path and the bytes (`None` after reporting an error).
    fn read(&mut self, path: &str, file: &Path) -> (PathBuf, Option<Vec<u8>>) {
        let resolved = self.base_dir.join(file);
        match std::fs::read(&resolved) {
            Ok(bytes) => (resolved, Some(bytes)),
            Err(e) => {
                self.err(path, format!("cannot read `{}`: {e}", resolved.display()));
                (resolved, None)
            }
        }
    }

    /// Checks a certificate and key pair with the TLS module, naming the files; the error
    /// lands on the field that is most likely wrong.
    fn cert_and_key(&mut self, path: &str, cert: (&Path, &[u8]), key: (&Path, &[u8])) {
        if let Err(e) = tls::check_cert_and_key(cert.1, key.1) {
            let (field, reason) = match &e {
                TlsError::NoCertificate | TlsError::InvalidCertificate(_) => {
                    ("cert", format!("`{}`: {e}", cert.0.display()))
                }
                TlsError::NoPrivateKey | TlsError::InvalidKey(_) => {
                    ("key", format!("`{}`: {e}", key.0.display()))
                }
                TlsError::KeyMismatch => (
                    "key",
                    format!(
                        "`{}` does not belong to certificate `{}`: {e}",
                        key.0.display(),
                        cert.0.display()
                    ),
                ),
                _ => (
                    "",
                    format!("`{}` / `{}`: {e}", cert.0.display(), key.0.display()),
                ),
            };
            let at = if field.is_empty() {
                path.to_owned()
            } else {
                format!("{path}.{field}")
            };
            self.err(at, reason);
        }
    }

    /// `admin`: `listen` defaults to [`DEFAULT_ADMIN_LISTEN`] (`127.0.0.1:9901`).
    fn admin(&mut self, admin: Option<&FileAdmin>) -> AdminConfig {
        let listen = match admin.and_then(|a| a.listen.as_deref()) {
            None => DEFAULT_ADMIN_LISTEN,
            Some(text) => self
                .socket_addr("admin.listen", text)
                .unwrap_or(DEFAULT_ADMIN_LISTEN),
        };
        AdminConfig { listen }
    }

    /// `server`: `drain_timeout` (default 30s, `0s` allowed: no drain) and `access_log`
    /// (default true).
    fn server(&mut self, server: Option<&FileServer>) -> ServerConfig {
        let drain_timeout = self.duration(
            "server.drain_timeout",
            server.and_then(|s| s.drain_timeout.as_ref()),
            DEFAULT_DRAIN_TIMEOUT,
        );
        ServerConfig {
            drain_timeout,
            access_log: server.and_then(|s| s.access_log).unwrap_or(true),
        }
    }

    /// Parses an `ip:port` socket address.
    fn socket_addr(&mut self, path: &str, text: &str) -> Option<SocketAddr> {
        match text.trim().parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                let hint = if text.trim().starts_with(':') {
                    format!(
                        " (write `0.0.0.0{}` to listen on every address)",
                        text.trim()
                    )
                } else {
                    String::new()
                };
                self.err(
                    path,
                    format!(
                        "`{text}` is not an ip:port address such as `0.0.0.0:8080` or `[::]:8080`{hint}"
                    ),
                );
                None
            }
        }
    }

    /// `listeners`: at least one; names unique; `listen` addresses distinct from each
    /// other and from `admin.listen` (port 0, "any free port", is exempt). Two addresses
    /// conflict when their ports are equal and their IPs are equal or one of them is the
    /// unspecified address of the same family (`0.0.0.0:8080` takes `127.0.0.1:8080`).
    fn listeners(
        &mut self,
        listeners: &[FileListener],
        clusters: &[&str],
        admin: SocketAddr,
    ) -> Vec<ListenerConfig> {
        if listeners.is_empty() {
            self.err("listeners", "at least one listener is required");
        }
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut addrs: Vec<(String, SocketAddr)> = vec![("admin.listen".to_owned(), admin)];
        let mut out = Vec::with_capacity(listeners.len());
        for (i, l) in listeners.iter().enumerate() {
            let path = format!("listeners[{i}]");
            self.name(&format!("{path}.name"), &l.name);
            if let Some(first) = names.insert(&l.name, i) {
                self.err(
                    format!("{path}.name"),
                    format!(
                        "duplicate listener name `{}` (also listeners[{first}])",
                        l.name
                    ),
                );
            }
            let listen_path = format!("{path}.listen");
            let listen = self.socket_addr(&listen_path, &l.listen);
            if let Some(addr) = listen {
                if let Some((other, o)) = addrs.iter().find(|(_, o)| addrs_conflict(*o, addr)) {
                    self.err(
                        &listen_path,
                        format!("`{addr}` conflicts with {other} (`{o}`)"),
                    );
                }
                addrs.push((listen_path, addr));
            }
            let tls = l.tls.as_ref().map(|t| self.server_tls(&path, t));
            let limits = self.limits(&path, l.limits.as_ref());
            let routes = self.routes(&path, &l.routes, clusters);
            let trusted_proxies = self.trusted_proxies(
                &format!("{path}.trusted_proxies"),
                l.trusted_proxies.as_deref(),
            );
            out.push(ListenerConfig {
                name: l.name.clone(),
                listen: listen.unwrap_or(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0)),
                tls: tls.flatten(),
                limits,
                trusted_proxies,
                headers: listener_headers(l.headers.as_ref()),
                routes,
            });
        }
        out
    }

    /// `listeners[].tls`: at least one cert; each cert's `cert` and `key` are read
    /// (relative to the config file's folder) and checked to parse and match; `sni`
    /// names are exact DNS names or `*.suffix`, lower-cased, each listed once per
    /// listener; `alpn` defaults to `["h2", "http/1.1"]` and allows only those values.
    fn server_tls(&mut self, listener: &str, tls: &FileServerTls) -> Option<ServerTlsConfig> {
        let path = format!("{listener}.tls");
        if tls.certs.is_empty() {
            self.err(
                format!("{path}.certs"),
                "at least one certificate is required",
            );
        }
        let mut sni_seen: HashMap<String, usize> = HashMap::new();
        let mut certs = Vec::with_capacity(tls.certs.len());
        let mut ok = true;
        for (i, c) in tls.certs.iter().enumerate() {
            let cpath = format!("{path}.certs[{i}]");
            match self.cert(&cpath, c, &mut sni_seen, i) {
                Some(cert) => certs.push(cert),
                None => ok = false,
            }
        }
        let alpn = match &tls.alpn {
            None => DEFAULT_ALPN.iter().map(|s| s.to_string()).collect(),
            Some(list) => {
                if list.is_empty() {
                    self.err(
                        format!("{path}.alpn"),
                        "must list at least one protocol (`h2`, `http/1.1`) or be omitted",
                    );
                }
                let mut seen = HashSet::new();
                for (j, p) in list.iter().enumerate() {
                    if !DEFAULT_ALPN.contains(&p.as_str()) {
                        self.err(
                            format!("{path}.alpn[{j}]"),
                            format!("unsupported ALPN protocol `{p}` (allowed: h2, http/1.1)"),
                        );
                    } else if !seen.insert(p.as_str()) {
                        self.err(
                            format!("{path}.alpn[{j}]"),
                            format!("`{p}` is listed twice"),
                        );
                    }
                }
                list.clone()
            }
        };
        ok.then_some(ServerTlsConfig { certs, alpn })
    }

    /// One server certificate: files read and checked, SNI names normalised.
    fn cert(
        &mut self,
        path: &str,
        c: &FileCert,
        sni_seen: &mut HashMap<String, usize>,
        index: usize,
    ) -> Option<CertConfig> {
        let mut sni = Vec::new();
        for (j, name) in c.sni.iter().flat_map(|s| s.0.iter()).enumerate() {
            let npath = format!("{path}.sni[{j}]");
            match host_pattern(name) {
                Ok(Some(pattern)) => {
                    let normal = match pattern {
                        HostMatch::Exact(n) => n,
                        HostMatch::Suffix(s) => format!("*{s}"),
                    };
                    if let Some(first) = sni_seen.get(&normal) {
                        let reason = format!("`{normal}` is already served by certs[{first}]");
                        self.err(npath, reason);
                    } else {
                        sni_seen.insert(normal.clone(), index);
                        sni.push(normal);
                    }
                }
                Ok(None) => self.err(
                    npath,
                    "`*` is not a server name; leave `sni` empty to make this the default certificate",
                ),
                Err(e) => self.err(npath, e),
            }
        }
        let (cert, cert_pem) = self.read(&format!("{path}.cert"), &c.cert);
        let (key, key_pem) = self.read(&format!("{path}.key"), &c.key);
        let (cert_pem, key_pem) = (cert_pem?, key_pem?);
        let errors_before = self.errors.len();
        self.cert_and_key(path, (&cert, &cert_pem), (&key, &key_pem));
        (self.errors.len() == errors_before).then_some(CertConfig {
            cert,
            key,
            sni,
            cert_pem,
            key_pem,
        })
    }

    /// `listeners[].limits`: `max_connections` (10000, at least 1), `header_read_timeout`
    /// (10s, above 0), `idle_timeout` (60s, above 0), `max_header_bytes` (64KiB, at least
    /// 8KiB), `max_request_body_bytes` (10MiB).
    fn limits(&mut self, listener: &str, limits: Option<&FileLimits>) -> ListenerLimits {
        let path = format!("{listener}.limits");
        let max_connections = limits
            .and_then(|l| l.max_connections)
            .unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            self.err(format!("{path}.max_connections"), "must be at least 1");
        }
        let header_read_timeout = self.positive_duration(
            &format!("{path}.header_read_timeout"),
            limits.and_then(|l| l.header_read_timeout.as_ref()),
            DEFAULT_HEADER_READ_TIMEOUT,
        );
        let idle_timeout = self.positive_duration(
            &format!("{path}.idle_timeout"),
            limits.and_then(|l| l.idle_timeout.as_ref()),
            DEFAULT_LISTENER_IDLE_TIMEOUT,
        );
        let hpath = format!("{path}.max_header_bytes");
        let mut max_header_bytes = self.size(
            &hpath,
            limits.and_then(|l| l.max_header_bytes.as_ref()),
            DEFAULT_MAX_HEADER_BYTES,
        );
        if max_header_bytes < MIN_MAX_HEADER_BYTES {
            self.err(
                &hpath,
                format!("must be at least 8KiB ({MIN_MAX_HEADER_BYTES}); got {max_header_bytes}"),
            );
            max_header_bytes = DEFAULT_MAX_HEADER_BYTES;
        }
        let max_header_bytes = usize::try_from(max_header_bytes).unwrap_or_else(|_| {
            self.err(&hpath, "is too large");
            usize::MAX
        });
        let max_request_body_bytes = self.size(
            &format!("{path}.max_request_body_bytes"),
            limits.and_then(|l| l.max_request_body_bytes.as_ref()),
            DEFAULT_MAX_REQUEST_BODY_BYTES,
        );
        ListenerLimits {
            max_connections: max_connections.max(1),
            header_read_timeout,
            idle_timeout,
            max_header_bytes,
            max_request_body_bytes,
        }
    }

    /// `listeners[].routes`: at least one per listener, names unique within the listener.
    fn routes(
        &mut self,
        listener: &str,
        routes: &[FileRoute],
        clusters: &[&str],
    ) -> Vec<RouteConfig> {
        if routes.is_empty() {
            self.err(
                format!("{listener}.routes"),
                "at least one route is required",
            );
        }
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut out = Vec::with_capacity(routes.len());
        for (i, r) in routes.iter().enumerate() {
            let path = format!("{listener}.routes[{i}]");
            self.name(&format!("{path}.name"), &r.name);
            if let Some(first) = names.insert(&r.name, i) {
                self.err(
                    format!("{path}.name"),
                    format!(
                        "duplicate route name `{}` in this listener (also routes[{first}])",
                        r.name
                    ),
                );
            }
            out.push(self.route(&path, r, clusters));
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
        RouteConfig {
            name: r.name.clone(),
            matcher,
            backend,
            rewrite_prefix: r.rewrite_prefix.clone(),
            timeout: Some(timeout),
            retry,
            preserve_host: r.preserve_host.unwrap_or(true),
            rate_limit: r
                .rate_limit
                .as_ref()
                .and_then(|rl| self.rate_limit(&format!("{path}.rate_limit"), rl)),
            cache: r
                .cache
                .as_ref()
                .map(|c| self.cache(&format!("{path}.cache"), c)),
            priority: priority(r.priority),
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
                        super::format_duration(d),
                        super::format_duration(route_timeout)
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

    /// `clusters`: at least one, names unique (a cluster no route uses is fine).
    fn clusters(&mut self, clusters: &[FileCluster]) -> Vec<ClusterConfig> {
        if clusters.is_empty() {
            self.err("clusters", "at least one cluster is required");
        }
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut out = Vec::with_capacity(clusters.len());
        for (i, c) in clusters.iter().enumerate() {
            let path = format!("clusters[{i}]");
            self.name(&format!("{path}.name"), &c.name);
            if let Some(first) = names.insert(&c.name, i) {
                self.err(
                    format!("{path}.name"),
                    format!(
                        "duplicate cluster name `{}` (also clusters[{first}])",
                        c.name
                    ),
                );
            }
            out.push(self.cluster(&path, c));
        }
        out
    }

    /// One cluster: `endpoints` (non-empty, `host:port`, no duplicates, see
    /// [`endpoint`]), `balancer` (`p2c_least_request`), `protocol` (`http1`),
    /// `connect_timeout` (1s, > 0), `idle_timeout` (90s, > 0), `max_idle_per_endpoint`
    /// (256), optional `health_check`, `outlier` and `upstream_tls`.
    fn cluster(&mut self, path: &str, c: &FileCluster) -> ClusterConfig {
        if c.endpoints.is_empty() {
            self.err(
                format!("{path}.endpoints"),
                "at least one endpoint is required",
            );
        }
        let mut endpoints: Vec<EndpointAddr> = Vec::with_capacity(c.endpoints.len());
        let mut seen: HashMap<EndpointAddr, usize> = HashMap::new();
        for (i, text) in c.endpoints.iter().enumerate() {
            let epath = format!("{path}.endpoints[{i}]");
            match endpoint(text) {
                Ok(addr) => {
                    if let Some(first) = seen.get(&addr) {
                        self.err(
                            epath,
                            format!("duplicate endpoint `{addr}` (also endpoints[{first}])"),
                        );
                    } else {
                        seen.insert(addr.clone(), i);
                        endpoints.push(addr);
                    }
                }
                Err(e) => self.err(epath, e),
            }
        }
        let connect_timeout = self.positive_duration(
            &format!("{path}.connect_timeout"),
            c.connect_timeout.as_ref(),
            DEFAULT_CONNECT_TIMEOUT,
        );
        let idle_timeout = self.positive_duration(
            &format!("{path}.idle_timeout"),
            c.idle_timeout.as_ref(),
            DEFAULT_CLUSTER_IDLE_TIMEOUT,
        );
        let health_check = c
            .health_check
            .as_ref()
            .map(|h| self.health_check(&format!("{path}.health_check"), h));
        let outlier = c
            .outlier
            .as_ref()
            .map(|o| self.outlier(&format!("{path}.outlier"), o));
        let upstream_tls = c
            .upstream_tls
            .as_ref()
            .and_then(|t| self.upstream_tls(&format!("{path}.upstream_tls"), t));
        ClusterConfig {
            name: c.name.clone(),
            endpoints,
            balancer: match c.balancer.unwrap_or(FileBalancer::P2cLeastRequest) {
                FileBalancer::P2cLeastRequest => BalancerKind::P2cLeastRequest,
                FileBalancer::RoundRobin => BalancerKind::RoundRobin,
            },
            protocol: match c.protocol.unwrap_or(FileProtocol::Http1) {
                FileProtocol::Http1 => UpstreamProtocol::Http1,
                FileProtocol::Http2 => UpstreamProtocol::Http2,
            },
            connect_timeout,
            idle_timeout,
            max_idle_per_endpoint: c
                .max_idle_per_endpoint
                .unwrap_or(DEFAULT_MAX_IDLE_PER_ENDPOINT),
            health_check,
            outlier,
            upstream_tls,
            circuit_breaker: c
                .circuit_breaker
                .as_ref()
                .map(|b| self.breaker(&format!("{path}.circuit_breaker"), b)),
            admission: c
                .admission
                .as_ref()
                .map(|a| self.admission(&format!("{path}.admission"), a)),
        }
    }

    /// `health_check`: `path` (required, starts with `/`), `interval` (5s, > 0), `timeout`
    /// (1s, > 0, ≤ interval), `healthy_threshold` (2, ≥ 1), `unhealthy_threshold` (3, ≥ 1),
    /// `host` (optional `Host` header value).
    fn health_check(&mut self, path: &str, h: &FileHealthCheck) -> HealthCheckConfig {
        if let Err(e) = url_path(&h.path) {
            self.err(format!("{path}.path"), e);
        }
        let interval = self.positive_duration(
            &format!("{path}.interval"),
            h.interval.as_ref(),
            DEFAULT_HEALTH_INTERVAL,
        );
        let tpath = format!("{path}.timeout");
        let timeout = self.positive_duration(&tpath, h.timeout.as_ref(), DEFAULT_HEALTH_TIMEOUT);
        if timeout > interval {
            self.err(
                &tpath,
                format!(
                    "{} is longer than the interval {}",
                    super::format_duration(timeout),
                    super::format_duration(interval)
                ),
            );
        }
        let healthy_threshold = h.healthy_threshold.unwrap_or(DEFAULT_HEALTHY_THRESHOLD);
        if healthy_threshold == 0 {
            self.err(format!("{path}.healthy_threshold"), "must be at least 1");
        }
        let unhealthy_threshold = h.unhealthy_threshold.unwrap_or(DEFAULT_UNHEALTHY_THRESHOLD);
        if unhealthy_threshold == 0 {
            self.err(format!("{path}.unhealthy_threshold"), "must be at least 1");
        }
        if let Some(host) = &h.host {
            if host.is_empty() || HeaderValue::from_str(host).is_err() {
                self.err(
                    format!("{path}.host"),
                    format!("`{host}` is not a valid Host header value"),
                );
            }
        }
        HealthCheckConfig {
            path: h.path.clone(),
            interval,
            timeout,
            healthy_threshold,
            unhealthy_threshold,
            host: h.host.clone(),
        }
    }

    /// `outlier`: `consecutive_failures` (5, ≥ 1), `base_ejection` (30s, > 0),
    /// `max_ejection` (300s, ≥ base), `max_ejection_percent` (10, 0..=100).
    fn outlier(&mut self, path: &str, o: &FileOutlier) -> OutlierConfig {
        let consecutive_failures = o
            .consecutive_failures
            .unwrap_or(DEFAULT_CONSECUTIVE_FAILURES);
        if consecutive_failures == 0 {
            self.err(format!("{path}.consecutive_failures"), "must be at least 1");
        }
        let base_ejection = self.positive_duration(
            &format!("{path}.base_ejection"),
            o.base_ejection.as_ref(),
            DEFAULT_BASE_EJECTION,
        );
        let mpath = format!("{path}.max_ejection");
        let max_ejection = self.duration(&mpath, o.max_ejection.as_ref(), DEFAULT_MAX_EJECTION);
        if max_ejection < base_ejection {
            self.err(
                &mpath,
                format!(
                    "{} is shorter than base_ejection {}",
                    super::format_duration(max_ejection),
                    super::format_duration(base_ejection)
                ),
            );
        }
        let max_ejection_percent = o
            .max_ejection_percent
            .unwrap_or(DEFAULT_MAX_EJECTION_PERCENT);
        if max_ejection_percent > 100 {
            self.err(
                format!("{path}.max_ejection_percent"),
                format!("must be between 0 and 100; got {max_ejection_percent}"),
            );
        }
        OutlierConfig {
            consecutive_failures,
            base_ejection,
            max_ejection,
            max_ejection_percent,
        }
    }

    /// `upstream_tls`: `ca` (required PEM bundle, read and parsed), `sni` (a DNS name or
    /// IP), `client_cert` and `client_key` (both or neither; read and checked to match).
    fn upstream_tls(&mut self, path: &str, t: &FileUpstreamTls) -> Option<UpstreamTlsConfig> {
        let before = self.errors.len();
        let ca_path = format!("{path}.ca");
        let (ca, ca_pem) = self.read(&ca_path, &t.ca);
        if let Some(pem) = &ca_pem {
            if let Err(e) = tls::check_ca_bundle(pem) {
                self.err(&ca_path, format!("`{}`: {e}", ca.display()));
            }
        }
        if let Some(sni) = &t.sni {
            if rustls_pki_types::ServerName::try_from(sni.as_str()).is_err() {
                self.err(
                    format!("{path}.sni"),
                    format!("`{sni}` is not a valid DNS name or IP address"),
                );
            }
        }
        let (client_cert, client_key, cert_pem, key_pem) = match (&t.client_cert, &t.client_key) {
            (None, None) => (None, None, Vec::new(), Vec::new()),
            (Some(c), Some(k)) => {
                let (c, cp) = self.read(&format!("{path}.client_cert"), c);
                let (k, kp) = self.read(&format!("{path}.client_key"), k);
                if let (Some(cp), Some(kp)) = (&cp, &kp) {
                    let (cert_field, key_field) = (c.as_path(), k.as_path());
                    let at = path.to_owned();
                    let errors_before = self.errors.len();
                    self.cert_and_key(&at, (cert_field, cp), (key_field, kp));
                    // Name the mTLS fields rather than `cert`/`key`.
                    for e in &mut self.errors[errors_before..] {
                        if let Some(rest) = e.path.strip_prefix(&at) {
                            e.path = match rest {
                                ".cert" => format!("{at}.client_cert"),
                                ".key" => format!("{at}.client_key"),
                                _ => e.path.clone(),
                            };
                        }
                    }
                }
                (
                    Some(c),
                    Some(k),
                    cp.unwrap_or_default(),
                    kp.unwrap_or_default(),
                )
            }
            _ => {
                self.err(
                    path,
                    "`client_cert` and `client_key` must be given together",
                );
                (None, None, Vec::new(), Vec::new())
            }
        };
        (self.errors.len() == before).then(|| UpstreamTlsConfig {
            ca,
            sni: t.sni.clone(),
            client_cert,
            client_key,
            ca_pem: ca_pem.unwrap_or_default(),
            client_cert_pem: cert_pem,
            client_key_pem: key_pem,
        })
    }
}

/// Whether two listen addresses would fight over the same socket (port 0 never does).
/// `listeners[].headers`: each switch defaults to on.
fn listener_headers(file: Option<&FileHeaders>) -> ListenerHeaders {
    let on = ListenerHeaders::default();
    ListenerHeaders {
        forwarded: file.and_then(|h| h.forwarded).unwrap_or(on.forwarded),
        request_id: file.and_then(|h| h.request_id).unwrap_or(on.request_id),
    }
}

fn addrs_conflict(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() == 0 || b.port() == 0 || a.port() != b.port() {
        return false;
    }
    a.ip() == b.ip()
        || (a.is_ipv4() == b.is_ipv4() && (a.ip().is_unspecified() || b.ip().is_unspecified()))
}

/// Parses a byte size: a plain integer (`65536`) or an integer with a unit: `B`, `KiB`,
/// `MiB`, `GiB` (powers of 1024) or `KB`, `MB`, `GB` (powers of 1000).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        format!("`{text}` is not a size: write bytes (`65536`) or a number with KiB, MiB, GiB, KB, MB or GB (`64KiB`)")
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{text}` is too large"))
}

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
fn url_path(p: &str) -> Result<(), String> {
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
fn method(text: &str) -> Result<Method, String> {
    let t = text.trim();
    if t != t.to_ascii_uppercase() {
        return Err(format!(
            "`{t}`: methods are case-sensitive; did you mean `{}`?",
            t.to_ascii_uppercase()
        ));
    }
    Method::from_bytes(t.as_bytes()).map_err(|_| format!("`{t}` is not a valid HTTP method"))
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

mod protection;
use protection::priority;

#[cfg(test)]
mod tests;
