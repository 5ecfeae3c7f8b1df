//! The control plane's own configuration: file types (what the user writes) →
//! `validate.rs` → runtime [`ControlConfig`], every error naming the file, the
//! field path and the reason (the proxy's [`ConfigErrors`] type, so both binaries
//! report alike).

pub mod autoscale;
mod file;
pub mod scalers;
pub mod template;
mod tls;
mod token;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use autoscale::{AutoscalePolicy, Target};
use floodgate::config::file::Scalar;
pub use floodgate::config::{ConfigError, ConfigErrors};
pub use scalers::{ClusterScalers, Ports, ProcessSettings, ScalerSettings, WebhookSettings};
pub use tls::ApiTls;
pub use token::{Role, Token, Tokens};

/// `listen` default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
/// `registry.default_ttl` default.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15);
/// `registry.max_ttl` default.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(300);
/// `registry.sweep_interval` default.
pub const DEFAULT_SWEEP: Duration = Duration::from_secs(1);
/// `long_poll.timeout` default.
pub const DEFAULT_POLL_TIMEOUT: Duration = Duration::from_secs(30);
/// `long_poll.jitter` default.
pub const DEFAULT_POLL_JITTER: Duration = Duration::from_secs(5);
/// `source.debounce` default.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(50);
/// `source.poll_interval` default.
pub const DEFAULT_SOURCE_POLL: Duration = Duration::from_secs(5);
/// Shortest accepted token, so a guessable one is refused at start.
pub const MIN_TOKEN_LEN: usize = 16;

/// The validated control-plane configuration.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// The file it came from.
    pub source: String,
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Directory of proxy configs, one per node group (resolved against the file's directory).
    pub configs_dir: PathBuf,
    /// The bearer token of each role.
    pub tokens: Tokens,
    /// Endpoint registry settings.
    pub registry: RegistrySettings,
    /// Long-poll settings.
    pub long_poll: LongPollSettings,
    /// Config directory watch settings.
    pub source_watch: SourceSettings,
    /// TLS on the API (`tls:`); `None` serves plain HTTP.
    pub tls: Option<ApiTls>,
    /// What acts on the autoscaler's decisions (`scalers:`), by cluster.
    pub scalers: ScalerSettings,
    /// Autoscaling policy per cluster (`autoscale:`); clusters not named are not autoscaled.
    pub autoscale: BTreeMap<String, AutoscalePolicy>,
}

/// `registry:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrySettings {
    /// TTL of a registration that names none.
    pub default_ttl: Duration,
    /// Longest TTL a registration may ask for.
    pub max_ttl: Duration,
    /// How often expired registrations are looked for.
    pub sweep_interval: Duration,
}

/// `long_poll:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongPollSettings {
    /// How long a poll waits for a newer version before answering 304.
    pub timeout: Duration,
    /// The wait is `timeout` ± a uniform random amount up to this.
    pub jitter: Duration,
}

/// `source:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceSettings {
    /// Quiet time after a change in the directory before it is read.
    pub debounce: Duration,
    /// Safety-net poll of the directory (for filesystems without notifications).
    pub poll_interval: Duration,
}

/// Reads, parses and validates a control-plane config file, reporting every error.
pub fn load_file(path: &Path) -> Result<ControlConfig, ConfigErrors> {
    let source = floodgate::config::read_source(path)?;
    parse_str(&source.text, &source.name, source.base_dir)
}

/// Parses and validates config text; `base_dir` resolves a relative `configs_dir`
/// and `file:` tokens.
pub fn parse_str(text: &str, source: &str, base_dir: &Path) -> Result<ControlConfig, ConfigErrors> {
    let file = file::parse(text).map_err(|e| ConfigErrors::one(source, e))?;
    validate(file, source, base_dir)
}

fn validate(
    f: file::FileControl,
    source: &str,
    base_dir: &Path,
) -> Result<ControlConfig, ConfigErrors> {
    let mut errors = Vec::new();
    let listen_text = f.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = listen_text.parse::<SocketAddr>().unwrap_or_else(|e| {
        errors.push(ConfigError::at(
            "listen",
            format!("`{listen_text}` is not ip:port: {e}"),
        ));
        SocketAddr::from(([127, 0, 0, 1], 0))
    });

    let configs_dir = match f.configs_dir {
        Some(d) if !d.trim().is_empty() => base_dir.join(d),
        _ => {
            errors.push(ConfigError::at(
                "configs_dir",
                "required: the directory of proxy configs, one file per node group",
            ));
            PathBuf::new()
        }
    };
    if !configs_dir.as_os_str().is_empty() && !configs_dir.is_dir() {
        errors.push(ConfigError::at(
            "configs_dir",
            format!("{} is not a directory", configs_dir.display()),
        ));
    }

    let tokens = token::validate(f.tokens, base_dir, &mut errors);
    let tls = f.tls.and_then(|t| tls::validate(t, base_dir, &mut errors));

    let r = f.registry.unwrap_or_default();
    let registry = RegistrySettings {
        default_ttl: duration(
            r.default_ttl,
            "registry.default_ttl",
            DEFAULT_TTL,
            &mut errors,
        ),
        max_ttl: duration(r.max_ttl, "registry.max_ttl", DEFAULT_MAX_TTL, &mut errors),
        sweep_interval: duration(
            r.sweep_interval,
            "registry.sweep_interval",
            DEFAULT_SWEEP,
            &mut errors,
        ),
    };
    if registry.default_ttl > registry.max_ttl {
        errors.push(ConfigError::at(
            "registry.default_ttl",
            "must not be longer than registry.max_ttl",
        ));
    }

    let p = f.long_poll.unwrap_or_default();
    let long_poll = LongPollSettings {
        timeout: duration(
            p.timeout,
            "long_poll.timeout",
            DEFAULT_POLL_TIMEOUT,
            &mut errors,
        ),
        jitter: zero_ok(
            p.jitter,
            "long_poll.jitter",
            DEFAULT_POLL_JITTER,
            &mut errors,
        ),
    };
    if long_poll.jitter >= long_poll.timeout {
        errors.push(ConfigError::at(
            "long_poll.jitter",
            "must be shorter than long_poll.timeout",
        ));
    }

    let s = f.source.unwrap_or_default();
    let source_watch = SourceSettings {
        debounce: zero_ok(s.debounce, "source.debounce", DEFAULT_DEBOUNCE, &mut errors),
        poll_interval: duration(
            s.poll_interval,
            "source.poll_interval",
            DEFAULT_SOURCE_POLL,
            &mut errors,
        ),
    };

    let autoscale = autoscale::validate(f.autoscale.unwrap_or_default(), &mut errors);
    // After `autoscale:`: a process scaler's bounds default to its cluster's policy.
    let scalers = scalers::validate(f.scalers, &autoscale, base_dir, &mut errors);

    match tokens {
        Some(tokens) if errors.is_empty() => Ok(ControlConfig {
            autoscale,
            source: source.to_owned(),
            listen,
            configs_dir,
            tokens,
            registry,
            long_poll,
            source_watch,
            tls,
            scalers,
        }),
        _ => Err(ConfigErrors {
            file: source.to_owned(),
            errors,
        }),
    }
}

/// A duration field that must be positive.
fn duration(
    text: Option<Scalar>,
    path: &str,
    default: Duration,
    errors: &mut Vec<ConfigError>,
) -> Duration {
    let d = zero_ok(text, path, default, errors);
    if d.is_zero() {
        errors.push(ConfigError::at(path, "must be longer than zero"));
    }
    d
}

/// A duration field where zero is allowed.
fn zero_ok(
    text: Option<Scalar>,
    path: &str,
    default: Duration,
    errors: &mut Vec<ConfigError>,
) -> Duration {
    match text {
        None => default,
        Some(Scalar(t)) => floodgate::config::parse_duration(&t).unwrap_or_else(|e| {
            errors.push(ConfigError::at(path, format!("`{t}`: {e}")));
            default
        }),
    }
}

#[cfg(test)]
mod tests;
