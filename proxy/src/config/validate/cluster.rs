//! Validation of `clusters`: endpoints, health checks, outlier detection, upstream TLS.

use std::collections::HashMap;
use std::time::Duration;

use http::HeaderValue;

use super::grammar::{endpoint, url_path};
use super::{tls, Validator};
use crate::config::file::{
    FileBalancer, FileCluster, FileHealthCheck, FileOutlier, FileProtocol, FileUpstreamTls,
};
use crate::config::{
    format_duration, BalancerKind, ClusterConfig, EndpointAddr, HealthCheckConfig, OutlierConfig,
    UpstreamProtocol, UpstreamTlsConfig,
};

/// `clusters[].connect_timeout` default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// `clusters[].idle_timeout` default.
pub const DEFAULT_CLUSTER_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// `clusters[].read_timeout` default: nginx's `proxy_read_timeout`.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
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
/// `clusters[].healthy_panic_threshold` default (Envoy's).
pub const DEFAULT_HEALTHY_PANIC_THRESHOLD: u32 = 50;

impl Validator<'_> {
    /// `clusters`: at least one, names unique (a cluster no route uses is fine).
    pub(super) fn clusters(&mut self, clusters: &[FileCluster]) -> Vec<ClusterConfig> {
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

    /// One cluster: `endpoints` (`host:port`, no duplicates, see [`endpoint`]; an
    /// explicit `[]` is a cluster whose endpoints all come from the control plane's
    /// registry: it answers 503 `no_healthy_endpoint` until one arrives), `balancer` (`p2c_least_request`), `protocol` (`http1`),
    /// `connect_timeout` (1s, > 0), `idle_timeout` (90s, > 0), `read_timeout` (60s, > 0), `max_idle_per_endpoint`
    /// (256), `healthy_panic_threshold` (50, 0..=100), optional `health_check`,
    /// `outlier` and `upstream_tls`.
    fn cluster(&mut self, path: &str, c: &FileCluster) -> ClusterConfig {
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
        let read_timeout = self.positive_duration(
            &format!("{path}.read_timeout"),
            c.read_timeout.as_ref(),
            DEFAULT_READ_TIMEOUT,
        );
        let healthy_panic_threshold = c
            .healthy_panic_threshold
            .unwrap_or(DEFAULT_HEALTHY_PANIC_THRESHOLD);
        if healthy_panic_threshold > 100 {
            self.err(
                format!("{path}.healthy_panic_threshold"),
                format!("must be between 0 and 100; got {healthy_panic_threshold}"),
            );
        }
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
            read_timeout,
            max_idle_per_endpoint: c
                .max_idle_per_endpoint
                .unwrap_or(DEFAULT_MAX_IDLE_PER_ENDPOINT),
            healthy_panic_threshold,
            health_check,
            outlier,
            upstream_tls,
            circuit_breaker: c
                .circuit_breaker
                .as_ref()
                .map(|b| self.breaker(&format!("{path}.circuit_breaker"), b)),
            admission: {
                // On by default: an absent block is `admission: {}`. A disabled
                // block is still validated, so its mistakes show before it is enabled.
                let file = c.admission.clone().unwrap_or_default();
                let admission = self.admission(&format!("{path}.admission"), &file);
                (file.enabled != Some(false)).then_some(admission)
            },
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
                    format_duration(timeout),
                    format_duration(interval)
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
                    format_duration(max_ejection),
                    format_duration(base_ejection)
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
