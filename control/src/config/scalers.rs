//! `scalers:`: what acts on the autoscaler's decisions, per cluster — a local
//! process scaler (`process:`) and a webhook (`webhook:`). File types, validation
//! and runtime types; every field and default is in `docs/control-plane.md`
//! ("Scalers").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use floodgate::config::file::Scalar;
use floodgate::config::secret::{self, Secret};
use floodgate::config::BackoffConfig;
use serde::Deserialize;

use super::autoscale::AutoscalePolicy;
use super::template::{Template, Var};
use super::{duration, zero_ok, ConfigError};

/// `process.start_timeout` default: time for a replica to register.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);
/// `process.stop_timeout` default: SIGTERM to SIGKILL.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// `process.drain` default: deregistration to SIGTERM.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(5);
/// `process.min_replicas` default without an autoscale policy for the cluster.
pub const DEFAULT_MIN_REPLICAS: u32 = 1;
/// The most replicas one process scaler runs (one machine).
pub const MAX_PROCESS_REPLICAS: u32 = 64;
/// `webhook.timeout` default: one POST, connect to answer.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// `webhook.backoff` default: 250ms ×2 up to 30s, jittered.
pub const DEFAULT_WEBHOOK_BACKOFF: BackoffConfig = BackoffConfig {
    initial: Duration::from_millis(250),
    max: Duration::from_secs(30),
    multiplier: 2.0,
};

/// One cluster's entry under `scalers:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileScaler {
    /// The local process scaler.
    pub process: Option<FileProcess>,
    /// The webhook.
    pub webhook: Option<FileWebhook>,
}

/// `scalers.<cluster>.process`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileProcess {
    /// Program and arguments, with placeholders.
    pub command: Option<Vec<String>>,
    /// Fewest replicas kept running.
    pub min_replicas: Option<u32>,
    /// Most replicas ever running.
    pub max_replicas: Option<u32>,
    /// `auto` or `FIRST-LAST`.
    pub ports: Option<Scalar>,
    /// Time allowed to register.
    pub start_timeout: Option<Scalar>,
    /// SIGTERM to SIGKILL.
    pub stop_timeout: Option<Scalar>,
    /// Deregistration to SIGTERM.
    pub drain: Option<Scalar>,
    /// What `{register_url}` is.
    pub register_url: Option<String>,
}

/// `scalers.<cluster>.webhook`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileWebhook {
    /// `http://` or `https://` URL.
    pub url: Option<String>,
    /// Bearer token: literal, `file:` or `env:`.
    pub token: Option<String>,
    /// PEM CA for `https://`.
    pub ca: Option<String>,
    /// Time allowed for one POST.
    pub timeout: Option<Scalar>,
    /// Retry schedule.
    pub backoff: Option<FileBackoff>,
}

/// `webhook.backoff`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBackoff {
    /// First delay.
    pub initial: Option<Scalar>,
    /// Longest delay.
    pub max: Option<Scalar>,
}

/// Every cluster's scalers, by cluster name.
pub type ScalerSettings = BTreeMap<String, ClusterScalers>;

/// What acts on one cluster's desired replicas.
#[derive(Debug, Clone)]
pub struct ClusterScalers {
    /// The local process scaler.
    pub process: Option<ProcessSettings>,
    /// The webhook.
    pub webhook: Option<WebhookSettings>,
}

/// A validated `process:` block.
#[derive(Debug, Clone)]
pub struct ProcessSettings {
    /// The program (a path with `/` resolved against the config file's directory,
    /// else looked up in `PATH`).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Template,
    /// Fewest replicas kept running, even before the first decision.
    pub min_replicas: u32,
    /// Most replicas ever running (draining ones not counted).
    pub max_replicas: u32,
    /// Where replica ports come from.
    pub ports: Ports,
    /// A replica that has not registered within this is stopped and counted as failed.
    pub start_timeout: Duration,
    /// SIGTERM to SIGKILL.
    pub stop_timeout: Duration,
    /// Deregistration to SIGTERM, so proxies stop sending first.
    pub drain: Duration,
    /// `{register_url}`; None: this control plane's own address.
    pub register_url: Option<String>,
}

/// Where replica ports come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ports {
    /// A free loopback port chosen by the OS.
    Auto,
    /// The lowest free port of `first..=last`.
    Range {
        /// First port.
        first: u16,
        /// Last port (included).
        last: u16,
    },
}

/// A validated `webhook:` block.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Where the POST goes.
    pub url: WebhookUrl,
    /// `Authorization: Bearer` token, if any.
    pub token: Option<Secret>,
    /// The CA's PEM bytes for `https://`.
    pub ca_pem: Option<Vec<u8>>,
    /// Time allowed for one POST (connect, TLS, answer).
    pub timeout: Duration,
    /// Retry schedule.
    pub backoff: BackoffConfig,
}

/// A parsed `http[s]://host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    /// `https://`.
    pub https: bool,
    /// Host name or IP (brackets of an IPv6 literal removed).
    pub host: String,
    /// Port (80 / 443 by default).
    pub port: u16,
    /// Path and query, from `/`.
    pub path: String,
}

impl std::fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}{}", self.host, self.port, self.path)
        } else {
            write!(f, "{scheme}://{}:{}{}", self.host, self.port, self.path)
        }
    }
}

/// Validates `scalers:`, pushing every error.
pub(super) fn validate(
    f: Option<BTreeMap<String, FileScaler>>,
    policies: &BTreeMap<String, AutoscalePolicy>,
    base_dir: &Path,
    errors: &mut Vec<ConfigError>,
) -> ScalerSettings {
    let mut out = ScalerSettings::new();
    for (cluster, s) in f.unwrap_or_default() {
        let at = format!("scalers.{cluster}");
        if cluster.trim().is_empty() {
            errors.push(ConfigError::at(
                "scalers",
                "a cluster name must not be empty",
            ));
            continue;
        }
        if s.process.is_none() && s.webhook.is_none() {
            errors.push(ConfigError::at(&at, "needs `process:`, `webhook:` or both"));
            continue;
        }
        let policy = policies.get(&cluster);
        let process = s
            .process
            .and_then(|p| process(p, policy, &format!("{at}.process"), base_dir, errors));
        let webhook = s
            .webhook
            .and_then(|w| webhook(w, &format!("{at}.webhook"), base_dir, errors));
        out.insert(cluster, ClusterScalers { process, webhook });
    }
    out
}

fn process(
    p: FileProcess,
    policy: Option<&AutoscalePolicy>,
    at: &str,
    base_dir: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<ProcessSettings> {
    let before = errors.len();
    let command = p.command.unwrap_or_default();
    let (program, args) = match command.split_first() {
        None => {
            errors.push(ConfigError::at(
                format!("{at}.command"),
                "required: the program and its arguments, e.g. \
                 [healthcode-app, --listen, \"{address}\", --register, \"{register_url}\"]",
            ));
            (PathBuf::new(), Template::default())
        }
        Some((program, rest)) => {
            let program = program_path(program, base_dir).unwrap_or_else(|why| {
                errors.push(ConfigError::at(format!("{at}.command"), why));
                PathBuf::new()
            });
            let args = match Template::parse(rest) {
                Ok(t) => t,
                Err(why) => {
                    errors.push(ConfigError::at(format!("{at}.command"), why));
                    Template::default()
                }
            };
            if errors.len() == before && !args.uses(Var::Port) && !args.uses(Var::Address) {
                errors.push(ConfigError::at(
                    format!("{at}.command"),
                    "must pass `{port}` or `{address}`: the port allocated to the replica",
                ));
            }
            (program, args)
        }
    };
    // Without their own bounds, the cluster's autoscale policy's; without a policy,
    // one replica.
    let min_replicas = p
        .min_replicas
        .or(policy.map(|a| a.min_replicas))
        .unwrap_or(DEFAULT_MIN_REPLICAS);
    let max_replicas = p
        .max_replicas
        .or(policy.map(|a| a.max_replicas.min(MAX_PROCESS_REPLICAS)))
        .unwrap_or(min_replicas.max(1));
    if max_replicas == 0 {
        errors.push(ConfigError::at(
            format!("{at}.max_replicas"),
            "must be at least 1",
        ));
    }
    if max_replicas > MAX_PROCESS_REPLICAS {
        errors.push(ConfigError::at(
            format!("{at}.max_replicas"),
            format!("the local process scaler runs at most {MAX_PROCESS_REPLICAS} replicas"),
        ));
    }
    if min_replicas > max_replicas {
        errors.push(ConfigError::at(
            format!("{at}.min_replicas"),
            format!("must not be above max_replicas ({max_replicas})"),
        ));
    }
    let ports = match p.ports {
        None => Ports::Auto,
        Some(Scalar(t)) => ports(&t, max_replicas).unwrap_or_else(|why| {
            errors.push(ConfigError::at(
                format!("{at}.ports"),
                format!("`{t}`: {why}"),
            ));
            Ports::Auto
        }),
    };
    let start_timeout = duration(
        p.start_timeout,
        &format!("{at}.start_timeout"),
        DEFAULT_START_TIMEOUT,
        errors,
    );
    let stop_timeout = duration(
        p.stop_timeout,
        &format!("{at}.stop_timeout"),
        DEFAULT_STOP_TIMEOUT,
        errors,
    );
    let drain = zero_ok(p.drain, &format!("{at}.drain"), DEFAULT_DRAIN, errors);
    if let Some(u) = &p.register_url {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            errors.push(ConfigError::at(
                format!("{at}.register_url"),
                format!("`{u}` must start with http:// or https://"),
            ));
        }
    }
    (errors.len() == before).then_some(ProcessSettings {
        program,
        args,
        min_replicas,
        max_replicas,
        ports,
        start_timeout,
        stop_timeout,
        drain,
        register_url: p.register_url,
    })
}

/// The program: a path with a `/` is resolved against `base_dir` and must be a file;
/// a bare name is looked up in `PATH` when started.
fn program_path(program: &str, base_dir: &Path) -> Result<PathBuf, String> {
    if program.trim().is_empty() {
        return Err("the program (argument 0) must not be empty".into());
    }
    if program.contains('{') || program.contains('}') {
        return Err(format!(
            "the program `{program}` cannot hold placeholders; only its arguments can"
        ));
    }
    if !program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    let path = base_dir.join(program);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "the program {} is not a file (a path with `/` is relative to this file's \
             directory; build it first, e.g. `cargo build --release -p floodgate-loadtest`)",
            path.display()
        ))
    }
}

/// `auto` or `FIRST-LAST`, holding at least `max_replicas` ports.
fn ports(text: &str, max_replicas: u32) -> Result<Ports, String> {
    if text.trim() == "auto" {
        return Ok(Ports::Auto);
    }
    let (a, b) = text
        .split_once('-')
        .ok_or("expected `auto` or a range `FIRST-LAST` such as `9100-9199`")?;
    let first: u16 = a.trim().parse().map_err(|_| "FIRST is not a port")?;
    let last: u16 = b.trim().parse().map_err(|_| "LAST is not a port")?;
    if first == 0 || first > last {
        return Err("needs 1 <= FIRST <= LAST".into());
    }
    if u32::from(last - first) + 1 < max_replicas {
        return Err(format!(
            "holds {} ports, fewer than max_replicas ({max_replicas})",
            u32::from(last - first) + 1
        ));
    }
    Ok(Ports::Range { first, last })
}

fn webhook(
    w: FileWebhook,
    at: &str,
    base_dir: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<WebhookSettings> {
    let before = errors.len();
    let url = match w.url.as_deref().map(parse_url) {
        None => {
            errors.push(ConfigError::at(
                format!("{at}.url"),
                "required: http:// or https:// URL to POST to",
            ));
            None
        }
        Some(Err(why)) => {
            errors.push(ConfigError::at(format!("{at}.url"), why));
            None
        }
        Some(Ok(u)) => Some(u),
    };
    let token = w
        .token
        .and_then(|spec| match secret::resolve(&spec, base_dir) {
            Ok(s) if s.is_empty() => {
                errors.push(ConfigError::at(format!("{at}.token"), "the token is empty"));
                None
            }
            Ok(s) => Some(s),
            Err(why) => {
                errors.push(ConfigError::at(format!("{at}.token"), why));
                None
            }
        });
    let ca_pem = w.ca.and_then(|ca| {
        let path = base_dir.join(&ca);
        match std::fs::read(&path) {
            Ok(pem) => Some(pem),
            Err(e) => {
                errors.push(ConfigError::at(
                    format!("{at}.ca"),
                    format!("cannot read {}: {e}", path.display()),
                ));
                None
            }
        }
    });
    match (&url, &ca_pem) {
        (Some(u), None) if u.https && errors.len() == before => errors.push(ConfigError::at(
            format!("{at}.ca"),
            "an https:// webhook needs `ca`: the PEM CA its certificate chains to",
        )),
        (Some(u), Some(_)) if !u.https => errors.push(ConfigError::at(
            format!("{at}.ca"),
            "only with an https:// url",
        )),
        _ => {}
    }
    let timeout = duration(
        w.timeout,
        &format!("{at}.timeout"),
        DEFAULT_WEBHOOK_TIMEOUT,
        errors,
    );
    let b = w.backoff.unwrap_or_default();
    let backoff = BackoffConfig {
        initial: duration(
            b.initial,
            &format!("{at}.backoff.initial"),
            DEFAULT_WEBHOOK_BACKOFF.initial,
            errors,
        ),
        max: duration(
            b.max,
            &format!("{at}.backoff.max"),
            DEFAULT_WEBHOOK_BACKOFF.max,
            errors,
        ),
        multiplier: DEFAULT_WEBHOOK_BACKOFF.multiplier,
    };
    if backoff.initial > backoff.max {
        errors.push(ConfigError::at(
            format!("{at}.backoff.initial"),
            "must not be longer than backoff.max",
        ));
    }
    match url {
        Some(url) if errors.len() == before => Some(WebhookSettings {
            url,
            token,
            ca_pem,
            timeout,
            backoff,
        }),
        _ => None,
    }
}

/// Parses `http[s]://host[:port][/path]` (no user info, no fragment).
pub fn parse_url(text: &str) -> Result<WebhookUrl, String> {
    let (https, rest) = if let Some(r) = text.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = text.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("`{text}` must start with http:// or https://"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') || path.contains('#') {
        return Err(format!(
            "`{text}`: user info and fragments are not supported"
        ));
    }
    let default_port = if https { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("`{text}`: `[` without `]`"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| format!("`{text}`: bad port"))?,
            None if after.is_empty() => default_port,
            None => return Err(format!("`{text}`: bad authority")),
        };
        (h.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.to_owned(),
                p.parse().map_err(|_| format!("`{text}`: bad port"))?,
            ),
            None => (authority.to_owned(), default_port),
        }
    };
    if host.is_empty() {
        return Err(format!("`{text}`: no host"));
    }
    Ok(WebhookUrl {
        https,
        host,
        port,
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::parse_str;

    const HEAD: &str = "configs_dir: .\ntokens: { proxy: proxy-token-0123456789, app: app-token-0123456789, operator: operator-token-0123456789 }\n";

    #[test]
    fn defaults_of_process_and_webhook() {
        let text = format!(
            "{HEAD}scalers:\n  app:\n    process: {{ command: [healthcode-app, --listen, \"{{address}}\"] }}\n    \
             webhook: {{ url: \"http://127.0.0.1:9000/scale?x=1\" }}\n"
        );
        let c = parse_str(&text, "control.yaml", Path::new(".")).unwrap();
        let s = &c.scalers["app"];
        let p = s.process.as_ref().unwrap();
        assert_eq!(p.program, PathBuf::from("healthcode-app"));
        assert_eq!((p.min_replicas, p.max_replicas), (1, 1));
        assert_eq!(p.ports, Ports::Auto);
        assert_eq!(p.start_timeout, DEFAULT_START_TIMEOUT);
        assert_eq!(p.stop_timeout, DEFAULT_STOP_TIMEOUT);
        assert_eq!(p.drain, DEFAULT_DRAIN);
        let w = s.webhook.as_ref().unwrap();
        assert_eq!(w.url.path, "/scale?x=1");
        assert_eq!((w.url.host.as_str(), w.url.port), ("127.0.0.1", 9000));
        assert_eq!(w.timeout, DEFAULT_WEBHOOK_TIMEOUT);
        assert_eq!(w.backoff, DEFAULT_WEBHOOK_BACKOFF);
        assert!(w.token.is_none());
        let none = parse_str(HEAD, "control.yaml", Path::new(".")).unwrap();
        assert!(none.scalers.is_empty());
        // The bounds of the cluster's autoscale policy (its max capped to 64).
        let text = format!(
            "{HEAD}autoscale:\n  app: {{ min_replicas: 2, max_replicas: 6 }}\n  big: {{}}\n\
             scalers:\n  app:\n    process: {{ command: [app, \"{{port}}\"] }}\n  \
             big:\n    process: {{ command: [app, \"{{port}}\"] }}\n"
        );
        let c = parse_str(&text, "control.yaml", Path::new(".")).unwrap();
        let p = c.scalers["app"].process.as_ref().unwrap();
        assert_eq!((p.min_replicas, p.max_replicas), (2, 6));
        let p = c.scalers["big"].process.as_ref().unwrap();
        assert_eq!((p.min_replicas, p.max_replicas), (1, MAX_PROCESS_REPLICAS));
        assert!(none.scalers.is_empty());
    }

    #[test]
    fn every_scaler_error_is_reported_with_its_field() {
        let text = format!(
            "{HEAD}scalers:\n  a:\n    process:\n      command: [app, \"{{token}}\"]\n      ports: 9000-9001\n      \
             min_replicas: 5\n      max_replicas: 3\n      drain: soon\n  \
             b:\n    process: {{ command: [app, --flag] }}\n    webhook: {{ url: \"https://h/x\" }}\n  \
             c: {{}}\n  d:\n    process: {{ command: [./missing/app, \"{{port}}\"] }}\n    \
             webhook: {{ url: \"ftp://x\", backoff: {{ initial: 1m, max: 1s }} }}\n"
        );
        let e = parse_str(&text, "control.yaml", Path::new(".")).unwrap_err();
        let text = e.to_string();
        for needle in [
            "scalers.a.process.command: argument 1 `{token}`: unknown placeholder",
            "scalers.a.process.min_replicas: must not be above max_replicas (3)",
            "scalers.a.process.ports: `9000-9001`: holds 2 ports, fewer than max_replicas (3)",
            "scalers.a.process.drain: `soon`",
            "scalers.b.process.command: must pass `{port}` or `{address}`",
            "scalers.b.webhook.ca: an https:// webhook needs `ca`",
            "scalers.c: needs `process:`, `webhook:` or both",
            "scalers.d.process.command: the program ././missing/app is not a file",
            "scalers.d.webhook.url: `ftp://x` must start with http:// or https://",
            "scalers.d.webhook.backoff.initial: must not be longer than backoff.max",
        ] {
            assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
        }
    }

    #[test]
    fn urls_and_port_ranges() {
        let u = parse_url("https://[::1]:8443").unwrap();
        assert_eq!(
            (u.https, u.host.as_str(), u.port, u.path.as_str()),
            (true, "::1", 8443, "/")
        );
        assert_eq!(u.to_string(), "https://[::1]:8443/");
        assert_eq!(parse_url("http://hooks.example").unwrap().port, 80);
        assert!(parse_url("http://user@h/").is_err());
        assert!(parse_url("http://:80/").is_err());
        assert_eq!(
            ports("9100-9103", 4),
            Ok(Ports::Range {
                first: 9100,
                last: 9103
            })
        );
        assert!(ports("9103-9100", 1).is_err());
        assert!(ports("nine", 1).is_err());
        assert_eq!(ports("auto", 64), Ok(Ports::Auto));
    }
}
