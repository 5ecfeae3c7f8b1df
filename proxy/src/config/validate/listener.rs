//! Validation of `listeners`: addresses, server TLS, limits, headers (routes are in
//! [`super::route`]).

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::grammar::host_pattern;
use super::Validator;
use crate::config::file::{FileCert, FileHeaders, FileLimits, FileListener, FileServerTls};
use crate::config::{
    CertConfig, HostMatch, ListenerConfig, ListenerHeaders, ListenerLimits, ServerTlsConfig,
};

/// `listeners[].tls.alpn` default, and the only values allowed.
pub const DEFAULT_ALPN: [&str; 2] = ["h2", "http/1.1"];
/// `listeners[].limits.max_connections` default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// `listeners[].limits.header_read_timeout` default.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// `listeners[].limits.idle_timeout` default.
pub const DEFAULT_LISTENER_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// `listeners[].limits.send_timeout` default: nginx's `send_timeout`.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// `listeners[].limits.max_header_bytes` default (64 KiB).
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 64 * 1024;
/// Smallest `max_header_bytes`: hyper's HTTP/1 parser refuses buffers under 8 KiB.
pub const MIN_MAX_HEADER_BYTES: u64 = 8 * 1024;
/// `listeners[].limits.max_request_body_bytes` default (10 MiB).
pub const DEFAULT_MAX_REQUEST_BODY_BYTES: u64 = 10 * 1024 * 1024;
/// `listeners[].limits.max_concurrent_streams` default: Envoy's (nginx has 128).
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Largest `max_concurrent_streams`: HTTP/2 stream identifiers are 31 bits.
pub const MAX_MAX_CONCURRENT_STREAMS: u32 = (1 << 31) - 1;
/// `listeners[].limits.premature_reset_total_stream_count` default: Envoy's.
pub const DEFAULT_PREMATURE_RESET_TOTAL_STREAM_COUNT: u32 = 500;
/// `listeners[].limits.premature_reset_min_stream_lifetime` default: Envoy's.
pub const DEFAULT_PREMATURE_RESET_MIN_STREAM_LIFETIME: Duration = Duration::from_secs(1);

impl Validator<'_> {
    /// `listeners`: at least one; names unique; `listen` addresses distinct from each
    /// other and from `admin.listen` (port 0, "any free port", is exempt). Two addresses
    /// conflict when their ports are equal and their IPs are equal or one of them is the
    /// unspecified address of the same family (`0.0.0.0:8080` takes `127.0.0.1:8080`).
    pub(super) fn listeners(
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
            let routes = self.routes(&path, &l.name, &l.routes, clusters);
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
    /// (10s, above 0), `idle_timeout` (60s, above 0), `send_timeout` (60s, above 0),
    /// `max_header_bytes` (64KiB, at least
    /// 8KiB), `max_request_body_bytes` (10MiB), `max_concurrent_streams` (100, 1 to
    /// 2^31 - 1), `premature_reset_total_stream_count` (500, at least 2),
    /// `premature_reset_min_stream_lifetime` (1s, above 0).
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
        let send_timeout = self.positive_duration(
            &format!("{path}.send_timeout"),
            limits.and_then(|l| l.send_timeout.as_ref()),
            DEFAULT_SEND_TIMEOUT,
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
        let streams_path = format!("{path}.max_concurrent_streams");
        let max_concurrent_streams = limits
            .and_then(|l| l.max_concurrent_streams)
            .unwrap_or(DEFAULT_MAX_CONCURRENT_STREAMS);
        if !(1..=MAX_MAX_CONCURRENT_STREAMS).contains(&max_concurrent_streams) {
            self.err(
                streams_path,
                format!("must be between 1 and {MAX_MAX_CONCURRENT_STREAMS}; got {max_concurrent_streams}"),
            );
        }
        let premature_reset_total_stream_count = limits
            .and_then(|l| l.premature_reset_total_stream_count)
            .unwrap_or(DEFAULT_PREMATURE_RESET_TOTAL_STREAM_COUNT);
        if premature_reset_total_stream_count < 2 {
            self.err(
                format!("{path}.premature_reset_total_stream_count"),
                format!("must be at least 2; got {premature_reset_total_stream_count}"),
            );
        }
        let premature_reset_min_stream_lifetime = self.positive_duration(
            &format!("{path}.premature_reset_min_stream_lifetime"),
            limits.and_then(|l| l.premature_reset_min_stream_lifetime.as_ref()),
            DEFAULT_PREMATURE_RESET_MIN_STREAM_LIFETIME,
        );
        ListenerLimits {
            max_concurrent_streams: max_concurrent_streams.clamp(1, MAX_MAX_CONCURRENT_STREAMS),
            premature_reset_total_stream_count: premature_reset_total_stream_count.max(2),
            premature_reset_min_stream_lifetime,
            max_connections: max_connections.max(1),
            header_read_timeout,
            idle_timeout,
            send_timeout,
            max_header_bytes,
            max_request_body_bytes,
        }
    }
}

/// `listeners[].headers`: each switch defaults to on.
fn listener_headers(file: Option<&FileHeaders>) -> ListenerHeaders {
    let on = ListenerHeaders::default();
    ListenerHeaders {
        forwarded: file.and_then(|h| h.forwarded).unwrap_or(on.forwarded),
        request_id: file.and_then(|h| h.request_id).unwrap_or(on.request_id),
    }
}

/// Whether two listen addresses would fight over the same socket (port 0 never does).
fn addrs_conflict(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() == 0 || b.port() == 0 || a.port() != b.port() {
        return false;
    }
    a.ip() == b.ip()
        || (a.is_ipv4() == b.is_ipv4() && (a.ip().is_unspecified() || b.ip().is_unspecified()))
}
