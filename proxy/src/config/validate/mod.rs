//! Validation: file types → runtime types, reporting every error with its field path.
//!
//! One pass walks the whole file and collects every problem (like linkerd's
//! `parse_config`): a bad value is reported, replaced by its default so the walk can go
//! on, and the result is an error list if anything was reported. Each rule and default
//! is documented on the function that applies it and in `docs/config.md`.
//!
//! This file holds the [`Validator`] core (error list, duration/size/name/file helpers,
//! `admin`, `server`) and the entry point; one file per section does the rest:
//! [`listener`] (listeners, server TLS, limits, headers), [`route`] (routes, matches,
//! backends, retry), [`cluster`] (clusters, health check, outlier, upstream TLS) and
//! [`protection`] (rate limit, cache, priority, breaker, admission), [`control_plane`]
//! (the bootstrap's `control_plane` block). [`grammar`] has the
//! small parsers they share (host pattern, DNS name, URL path, method, endpoint). Each
//! section's defaults (`DEFAULT_*`) are public constants in its own file.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::file::{FileAccessLog, FileAdmin, FileConfig, FileServer, Scalar};
use super::units::{parse_duration, parse_size};
use super::{AccessLogConfig, AdminConfig, Config, ConfigError, ConfigErrors, ServerConfig};
use crate::access_log::{Field, Format, Target};
use crate::tls::pem::{self as tls, TlsError};

mod cluster;
mod control_plane;
mod global_limit;
mod grammar;
mod listener;
mod protection;
mod reuse;
mod route;

use reuse::Reuse;
pub use reuse::Validated;

/// `admin.listen` default.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9901);
/// Shortest `admin.token` accepted (as the control plane's tokens).
pub const MIN_ADMIN_TOKEN: usize = 16;
/// `server.drain_timeout` default.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Converts file types into a runtime [`Config`], or reports every problem found.
/// [`validate_reusing`] without a previous validation.
pub(super) fn validate(
    file: FileConfig,
    source: &str,
    base_dir: &Path,
) -> Result<Config, ConfigErrors> {
    validate_reusing(file, source, base_dir, None).map(Validated::into_config)
}

/// Converts file types into a runtime [`Config`], taking the routes of `previous` whose
/// file form is unchanged as they were validated (see [`reuse`]), or reports every
/// problem found.
pub(super) fn validate_reusing(
    file: FileConfig,
    source: &str,
    base_dir: &Path,
    previous: Option<&Validated>,
) -> Result<Validated, ConfigErrors> {
    let bursting: Vec<String> = file
        .clusters
        .iter()
        .filter(|c| c.burst_mode == Some(true))
        .map(|c| c.name.clone())
        .collect();
    let mut known: Vec<&str> = Vec::with_capacity(file.clusters.len());
    for c in &file.clusters {
        if !known.contains(&c.name.as_str()) {
            known.push(&c.name);
        }
    }
    let mut v = Validator {
        base_dir,
        errors: Vec::new(),
        reuse: previous.and_then(|p| Reuse::new(p, &known, &bursting)),
        bursting,
    };
    let admin = v.admin(file.admin.as_ref());
    let server = v.server(file.server.as_ref());
    let control_plane = file
        .control_plane
        .as_ref()
        .and_then(|cp| v.control_plane(cp));
    // A bootstrap may carry only `admin` and `control_plane`: its listeners and
    // clusters then come from the first snapshot. If it carries either, they are
    // static resources served until then, validated like any config.
    let bootstrap_only =
        file.control_plane.is_some() && file.listeners.is_empty() && file.clusters.is_empty();
    let (listeners, clusters) = if bootstrap_only {
        (Vec::new(), Vec::new())
    } else {
        (
            v.listeners(&file.listeners, &known, admin.listen),
            v.clusters(&file.clusters),
        )
    };
    v.global_limit_names(&file.listeners);
    if v.errors.is_empty() {
        let config = Config {
            source: source.to_owned(),
            admin,
            server,
            listeners,
            clusters,
            control_plane,
        };
        let known: Vec<String> = known.iter().map(|c| (*c).to_owned()).collect();
        let bursting = std::mem::take(&mut v.bursting);
        drop(v);
        Ok(Validated::new(config, file, known, bursting))
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
    /// Clusters with `burst_mode: true`: their routes' `burst:` overrides apply.
    bursting: Vec<String>,
    /// The routes of a previous validation that may be taken as they are.
    reuse: Option<Reuse<'a>>,
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

    /// Whether an error was already reported at `path`.
    fn has_errors_at(&self, path: &str) -> bool {
        self.errors.iter().any(|e| e.path == path)
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
        let token = match admin.and_then(|a| a.token.as_deref()) {
            Some(spec) => match super::secret::resolve(spec, self.base_dir) {
                Ok(t) if t.expose().len() >= MIN_ADMIN_TOKEN => Some(t),
                Ok(_) => {
                    self.err(
                        "admin.token",
                        format!("must be at least {MIN_ADMIN_TOKEN} bytes"),
                    );
                    None
                }
                Err(why) => {
                    self.err("admin.token", why);
                    None
                }
            },
            None => None,
        };
        if token.is_none() && !listen.ip().is_loopback() && !self.has_errors_at("admin.token") {
            self.err(
                "admin.token",
                format!(
                    "required when admin.listen ({listen}) is not a loopback address: the \
                     admin API shows the config and every cluster's state (/live and /ready \
                     stay open for probes)"
                ),
            );
        }
        AdminConfig { listen, token }
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
            access_log: self.access_log(server.and_then(|s| s.access_log.as_ref())),
        }
    }

    /// `server.access_log`: `true` (default: JSON lines with every field on stdout),
    /// `false`, or `{ enabled, path, format, fields }`.
    fn access_log(&mut self, log: Option<&FileAccessLog>) -> Option<Arc<AccessLogConfig>> {
        let block = match log {
            None | Some(FileAccessLog::Switch(true)) => {
                return Some(Arc::new(AccessLogConfig::default()))
            }
            Some(FileAccessLog::Switch(false)) => return None,
            Some(FileAccessLog::Block(b)) => b,
        };
        let mut config = AccessLogConfig::default();
        let at = "server.access_log";
        match block.path.as_deref().map(str::trim) {
            None | Some("stdout") => {}
            Some("stderr") => config.path = Target::Stderr,
            Some("") => self.err(
                format!("{at}.path"),
                "must be stdout, stderr or a file path",
            ),
            Some(file) => {
                let path = self.base_dir.join(file);
                match path.parent() {
                    Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => self.err(
                        format!("{at}.path"),
                        format!("`{file}`: directory {} does not exist", dir.display()),
                    ),
                    _ if path.is_dir() => {
                        self.err(format!("{at}.path"), format!("`{file}` is a directory"))
                    }
                    _ => config.path = Target::File(path),
                }
            }
        }
        match block.format.as_deref() {
            None | Some("json") => {}
            Some("text") => config.format = Format::Text,
            Some(other) => self.err(
                format!("{at}.format"),
                format!("`{other}`: must be json or text"),
            ),
        }
        if let Some(names) = &block.fields {
            if names.is_empty() {
                self.err(format!("{at}.fields"), "must name at least one field");
            }
            let mut fields = Vec::with_capacity(names.len());
            for (i, name) in names.iter().enumerate() {
                match Field::parse(name) {
                    Some(f) if fields.contains(&f) => self.err(
                        format!("{at}.fields[{i}]"),
                        format!("`{name}` is listed twice"),
                    ),
                    Some(f) => fields.push(f),
                    None => {
                        let known: Vec<&str> = Field::ALL.iter().map(|f| f.name()).collect();
                        self.err(
                            format!("{at}.fields[{i}]"),
                            format!("unknown field `{name}` (known: {})", known.join(", ")),
                        );
                    }
                }
            }
            config.fields = fields;
        }
        block.enabled.unwrap_or(true).then(|| Arc::new(config))
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
}

#[cfg(test)]
mod tests;
