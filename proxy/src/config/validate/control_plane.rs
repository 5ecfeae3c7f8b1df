//! `control_plane:`: the bootstrap block of a proxy that takes its config from a
//! control plane. Every default is a public constant here and in `docs/config.md`.

use std::path::Path;
use std::time::Duration;

use super::grammar;
use super::Validator;
use crate::config::file::{FileBackoff, FileControlPlane, Scalar};
use crate::config::{secret, BackoffConfig, ControlPlaneConfig, EndpointAddr};
use crate::tls::pem as tls;

/// `control_plane.poll_timeout` default: above the control plane's default
/// `long_poll.timeout` (30s) plus its `jitter` (5s), with room for a slow network.
pub const DEFAULT_POLL_TIMEOUT: Duration = Duration::from_secs(45);
/// `control_plane.backoff.initial` default.
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_millis(250);
/// `control_plane.backoff.max` default.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// `control_plane.backoff.multiplier` default.
pub const DEFAULT_BACKOFF_MULTIPLIER: f64 = 2.0;

/// `control_plane.report_interval` default: two load reports a second.
pub const DEFAULT_REPORT_INTERVAL: Duration = Duration::from_millis(500);
/// Shortest `control_plane.report_interval` accepted (other than `0s`).
pub const MIN_REPORT_INTERVAL: Duration = Duration::from_millis(50);
/// Longest `control_plane.report_interval` accepted.
pub const MAX_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// The default `snapshot_file`: `.floodgate-snapshot-<group>.yaml` in `base_dir`.
pub fn default_snapshot_file(base_dir: &Path, group: &str) -> std::path::PathBuf {
    base_dir.join(format!(".floodgate-snapshot-{group}.yaml"))
}

impl Validator<'_> {
    /// `control_plane`: `url` (`http://` or `https://`, required), `group` (a name,
    /// required), `token` (literal, `file:` or `env:`, required), `node_id` (a name,
    /// default the hostname), `ca` (required with and only with `https://`),
    /// `snapshot_file` (default [`default_snapshot_file`]), `poll_timeout` (default
    /// 45s), `backoff`. `None` after reporting an error.
    pub(super) fn control_plane(&mut self, cp: &FileControlPlane) -> Option<ControlPlaneConfig> {
        let before = self.errors.len();
        let parsed = match control_plane_url(&cp.url) {
            Ok(u) => Some(u),
            Err(e) => {
                self.err("control_plane.url", e);
                None
            }
        };
        self.name("control_plane.group", &cp.group);
        let node_id = match &cp.node_id {
            Some(n) => n.clone(),
            None => match hostname() {
                Some(h) => h,
                None => {
                    self.err(
                        "control_plane.node_id",
                        "required: the hostname could not be read to default it",
                    );
                    String::new()
                }
            },
        };
        if !node_id.is_empty() || cp.node_id.is_some() {
            self.name("control_plane.node_id", &node_id);
        }
        let token = match secret::resolve(&cp.token, self.base_dir) {
            Ok(t) if t.is_empty() => {
                self.err("control_plane.token", "must not be empty");
                None
            }
            Ok(t) if !t.expose().iter().all(|b| b.is_ascii_graphic()) => {
                self.err(
                    "control_plane.token",
                    "may contain only visible ASCII characters (it is sent in a header)",
                );
                None
            }
            Ok(t) => Some(t),
            Err(reason) => {
                self.err("control_plane.token", reason);
                None
            }
        };
        let tls_url = parsed.as_ref().is_some_and(|u| u.0);
        let (ca, ca_pem) = match (&cp.ca, tls_url) {
            (Some(ca), true) => {
                let (resolved, pem) = self.read("control_plane.ca", ca);
                if let Some(pem) = &pem {
                    if let Err(e) = tls::check_ca_bundle(pem) {
                        self.err("control_plane.ca", format!("`{}`: {e}", resolved.display()));
                    }
                }
                (Some(resolved), pem.unwrap_or_default())
            }
            (Some(_), false) if parsed.is_some() => {
                self.err("control_plane.ca", "only for an `https://` url");
                (None, Vec::new())
            }
            (None, true) => {
                self.err(
                    "control_plane.ca",
                    "required with an `https://` url: the PEM CA bundle the control plane's certificate chains to",
                );
                (None, Vec::new())
            }
            _ => (None, Vec::new()),
        };
        let snapshot_file = match &cp.snapshot_file {
            Some(p) => self.base_dir.join(p),
            None => default_snapshot_file(self.base_dir, &cp.group),
        };
        let poll_timeout = self.positive_duration(
            "control_plane.poll_timeout",
            cp.poll_timeout.as_ref(),
            DEFAULT_POLL_TIMEOUT,
        );
        let backoff = self.backoff(cp.backoff.as_ref());
        let report_interval = self.report_interval(cp.report_interval.as_ref());
        let (tls_url, endpoint, base_path) = parsed?;
        let token = token?;
        (self.errors.len() == before).then(|| ControlPlaneConfig {
            url: cp.url.trim().trim_end_matches('/').to_owned(),
            tls: tls_url,
            endpoint,
            base_path,
            node_id,
            group: cp.group.clone(),
            token,
            ca,
            ca_pem,
            snapshot_file,
            poll_timeout,
            backoff,
            report_interval,
        })
    }

    /// `control_plane.report_interval`: default 500ms; `0s` turns reports off;
    /// otherwise from 50ms to 10s.
    fn report_interval(&mut self, v: Option<&Scalar>) -> Duration {
        let path = "control_plane.report_interval";
        let d = self.duration(path, v, DEFAULT_REPORT_INTERVAL);
        if !d.is_zero() && !(MIN_REPORT_INTERVAL..=MAX_REPORT_INTERVAL).contains(&d) {
            self.err(
                path,
                format!("{d:?}: must be 0s (no reports) or from 50ms to 10s"),
            );
            return DEFAULT_REPORT_INTERVAL;
        }
        d
    }

    /// `control_plane.backoff`: `initial` (default 250ms, > 0), `max` (default 30s,
    /// ≥ `initial`), `multiplier` (default 2, from 1 to 10).
    fn backoff(&mut self, b: Option<&FileBackoff>) -> BackoffConfig {
        let initial = self.positive_duration(
            "control_plane.backoff.initial",
            b.and_then(|b| b.initial.as_ref()),
            DEFAULT_BACKOFF_INITIAL,
        );
        let mut max = self.positive_duration(
            "control_plane.backoff.max",
            b.and_then(|b| b.max.as_ref()),
            DEFAULT_BACKOFF_MAX,
        );
        if max < initial {
            self.err(
                "control_plane.backoff.max",
                "must be at least control_plane.backoff.initial",
            );
            max = initial;
        }
        let mut multiplier = b
            .and_then(|b| b.multiplier)
            .unwrap_or(DEFAULT_BACKOFF_MULTIPLIER);
        if !(1.0..=10.0).contains(&multiplier) {
            self.err(
                "control_plane.backoff.multiplier",
                format!("{multiplier} must be from 1 to 10"),
            );
            multiplier = DEFAULT_BACKOFF_MULTIPLIER;
        }
        BackoffConfig {
            initial,
            max,
            multiplier,
        }
    }
}

/// Splits a control-plane URL into (https?, host:port, path prefix without a trailing
/// `/`); the port defaults to 80 or 443.
pub fn control_plane_url(text: &str) -> Result<(bool, EndpointAddr, String), String> {
    let t = text.trim();
    let (tls, rest) = if let Some(r) = t.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = t.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!(
            "`{t}` must start with `http://` or `https://` (e.g. `http://127.0.0.1:7070`)"
        ));
    };
    if rest.contains('?') || rest.contains('#') {
        return Err(format!("`{t}` must not have a query or a fragment"));
    }
    if rest.contains('@') {
        return Err(format!(
            "`{t}` must not carry credentials; use control_plane.token"
        ));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let default_port = if tls { 443 } else { 80 };
    let has_port = match authority.rfind(']') {
        Some(close) => authority[close..].contains(':'),
        None => authority.contains(':'),
    };
    let with_port = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:{default_port}")
    };
    let endpoint = grammar::endpoint(&with_port).map_err(|e| format!("`{t}`: {e}"))?;
    Ok((tls, endpoint, path.to_owned()))
}

/// This machine's host name (Linux `/proc`, then `/etc/hostname`, then `$HOSTNAME`).
fn hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::parse_str;

    const TOKEN: &str = "proxy-token-for-tests-0001";

    fn errors(text: &str) -> String {
        parse_str(text, "boot.yaml", Path::new("/etc/floodgate"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_bootstrap_may_carry_only_the_control_plane_block() {
        let text = format!(
            "control_plane: {{ url: \"http://127.0.0.1:7070/\", group: edge, node_id: n1, token: {TOKEN} }}\n"
        );
        let c = parse_str(&text, "boot.yaml", Path::new("/etc/floodgate")).unwrap();
        assert!(c.listeners.is_empty() && c.clusters.is_empty());
        let cp = c.control_plane.unwrap();
        assert_eq!(cp.url, "http://127.0.0.1:7070");
        assert_eq!(
            cp.snapshot_file,
            Path::new("/etc/floodgate/.floodgate-snapshot-edge.yaml")
        );
        assert_eq!(cp.poll_timeout, DEFAULT_POLL_TIMEOUT);
        assert_eq!(cp.backoff.initial, DEFAULT_BACKOFF_INITIAL);
        assert_eq!(cp.backoff.max, DEFAULT_BACKOFF_MAX);
        assert_eq!(cp.report_interval, DEFAULT_REPORT_INTERVAL);
        assert!(cp.token.matches(TOKEN.as_bytes()));
        // The token never reaches `/config`.
        assert!(!serde_json::to_string(&cp).unwrap().contains(TOKEN));
    }

    #[test]
    fn report_interval_is_off_or_in_range() {
        let with = |v: &str| {
            format!(
                "control_plane: {{ url: \"http://cp:7070\", group: edge, node_id: n1, token: {TOKEN}, report_interval: {v} }}\n"
            )
        };
        let cp = |v: &str| {
            parse_str(&with(v), "boot.yaml", Path::new("."))
                .unwrap()
                .control_plane
                .unwrap()
        };
        assert_eq!(cp("0s").report_interval, Duration::ZERO);
        assert_eq!(cp("1s").report_interval, Duration::from_secs(1));
        for bad in ["10ms", "1m", "soon"] {
            let e = errors(&with(bad));
            assert!(e.contains("control_plane.report_interval"), "{bad}: {e}");
        }
    }

    #[test]
    fn node_id_defaults_to_the_hostname() {
        let text =
            format!("control_plane: {{ url: \"http://cp:7070\", group: edge, token: {TOKEN} }}\n");
        if let Some(host) = hostname() {
            let c = parse_str(&text, "boot.yaml", Path::new(".")).unwrap();
            assert_eq!(c.control_plane.unwrap().node_id, host);
        }
    }

    #[test]
    fn a_bootstrap_with_listeners_must_be_a_whole_config() {
        let text = format!(
            "control_plane: {{ url: \"http://cp:7070\", group: edge, node_id: n1, token: {TOKEN} }}\n\
             listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    routes: [ {{ name: all, cluster: app }} ]\n"
        );
        let e = errors(&text);
        assert!(e.contains("clusters"), "{e}");
        // Without a control plane, listeners and clusters stay required.
        let e = errors("server: { access_log: false }\n");
        assert!(e.contains("at least one listener"), "{e}");
    }

    #[test]
    fn every_bad_field_is_reported() {
        let text =
            "control_plane:\n  url: \"ftp://cp\"\n  group: \"bad group\"\n  node_id: \"\"\n  \
                    token: env:FLOODGATE_TEST_SURELY_UNSET_TOKEN\n  poll_timeout: 0s\n  \
                    backoff: { initial: 2s, max: 1s, multiplier: 0.5 }\n";
        let e = errors(text);
        for field in [
            "control_plane.url",
            "control_plane.group",
            "control_plane.node_id",
            "control_plane.token",
            "control_plane.poll_timeout",
            "control_plane.backoff.max",
            "control_plane.backoff.multiplier",
        ] {
            assert!(e.contains(field), "{field} missing in:\n{e}");
        }
        assert!(e.contains("FLOODGATE_TEST_SURELY_UNSET_TOKEN"), "{e}");
    }

    #[test]
    fn https_needs_a_ca_and_http_takes_none() {
        let https = format!(
            "control_plane: {{ url: \"https://cp:7443\", group: edge, node_id: n1, token: {TOKEN} }}\n"
        );
        assert!(errors(&https).contains("control_plane.ca: required"));
        let http = format!(
            "control_plane: {{ url: \"http://cp:7070\", group: edge, node_id: n1, token: {TOKEN}, ca: ca.pem }}\n"
        );
        assert!(errors(&http).contains("only for an `https://` url"));
        let missing = format!(
            "control_plane: {{ url: \"https://cp:7443\", group: edge, node_id: n1, token: {TOKEN}, ca: nope.pem }}\n"
        );
        assert!(errors(&missing).contains("cannot read"));
    }

    #[test]
    fn urls_split_with_default_ports() {
        let (tls, ep, path) = control_plane_url("http://127.0.0.1:7070").unwrap();
        assert!(!tls);
        assert_eq!(
            (ep.host.as_str(), ep.port, path.as_str()),
            ("127.0.0.1", 7070, "")
        );
        let (tls, ep, path) = control_plane_url("https://cp.example.gov/base/").unwrap();
        assert!(tls);
        assert_eq!(
            (ep.host.as_str(), ep.port, path.as_str()),
            ("cp.example.gov", 443, "/base")
        );
        let (_, ep, _) = control_plane_url("http://[::1]:7070/").unwrap();
        assert_eq!((ep.host.as_str(), ep.port), ("::1", 7070));
        let (_, ep, _) = control_plane_url("http://[::1]").unwrap();
        assert_eq!(ep.port, 80);
        assert!(control_plane_url("127.0.0.1:7070").is_err());
        assert!(control_plane_url("ftp://x:1").is_err());
        assert!(control_plane_url("http://x:1/?a=b").is_err());
        assert!(control_plane_url("http://u:p@x:1").is_err());
        assert!(control_plane_url("http://x:0").is_err());
    }
}
