//! File types of `control.yaml`: what the user writes, nothing resolved yet.

use floodgate::config::file::Scalar;
use floodgate::config::ConfigError;
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileControl {
    /// `ip:port` of the HTTP API.
    pub listen: Option<String>,
    /// Directory of proxy configs, one file per node group.
    pub configs_dir: Option<String>,
    /// Bearer token per role.
    pub tokens: Option<FileTokens>,
    /// Endpoint registry.
    pub registry: Option<FileRegistry>,
    /// Long polls.
    pub long_poll: Option<FileLongPoll>,
    /// The config directory watch.
    pub source: Option<FileSource>,
    /// TLS on the API; plain HTTP when absent.
    pub tls: Option<FileTls>,
    /// What acts on the autoscaler's decisions, by cluster.
    pub scalers: Option<std::collections::BTreeMap<String, super::scalers::FileScaler>>,
    /// Autoscaling policy per cluster.
    pub autoscale: Option<std::collections::BTreeMap<String, super::autoscale::FileAutoscale>>,
}

/// `tls:`; paths relative to the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    /// PEM certificate chain.
    pub cert: Option<String>,
    /// PEM private key.
    pub key: Option<String>,
}

/// `tokens:`; each a literal, `file:PATH` or `env:NAME`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTokens {
    /// Proxies (snapshot polls, ACK, NACK).
    pub proxy: Option<String>,
    /// App instances (register, heartbeat, deregister).
    pub app: Option<String>,
    /// Operators (everything read-only, and the registry).
    pub operator: Option<String>,
}

/// `registry:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRegistry {
    /// TTL when a registration names none.
    pub default_ttl: Option<Scalar>,
    /// Longest TTL accepted.
    pub max_ttl: Option<Scalar>,
    /// Expiry sweep period.
    pub sweep_interval: Option<Scalar>,
}

/// `long_poll:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLongPoll {
    /// Wait before answering 304.
    pub timeout: Option<Scalar>,
    /// ± random spread of the wait.
    pub jitter: Option<Scalar>,
}

/// `source:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    /// Quiet time before a changed directory is read.
    pub debounce: Option<Scalar>,
    /// Safety-net poll period.
    pub poll_interval: Option<Scalar>,
}

/// Parses YAML text; syntax and type errors carry line, column and field path.
pub fn parse(text: &str) -> Result<FileControl, ConfigError> {
    if matches!(
        serde_norway::from_str::<serde_norway::Value>(text),
        Ok(serde_norway::Value::Null)
    ) {
        return Err(ConfigError::at(
            "",
            "the config is empty: it needs at least `configs_dir` and `tokens` \
             (see configs/control.yaml)",
        ));
    }
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let inner = e.inner();
        let location = inner.location();
        let mut reason = inner.to_string();
        if let Some(loc) = &location {
            reason = reason.replace(
                &format!(" at line {} column {}", loc.line(), loc.column()),
                "",
            );
        }
        ConfigError {
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
            path,
            reason,
        }
    })
}
