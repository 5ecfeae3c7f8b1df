//! Self-registration with Floodgate's control plane (`healthcode-app --register URL`).
//!
//! Once the app listens, the agent `POST`s `{cluster, address, metadata, ttl}` to
//! `URL/v1/endpoints`, heartbeats (the same `POST`) every third of the TTL, retries with
//! jittered exponential backoff ([`backoff`]) while the control plane is away or refuses
//! (it never stops the app), and on shutdown `DELETE`s the registration before the app
//! stops serving, so proxies drop it at once instead of after the TTL. An app that dies
//! without deregistering (SIGKILL, a crash) leaves when its TTL runs out.
//!
//! - [`backoff`]: the retry schedule (pure);
//! - [`client`]: one request to the registry over HTTP/1.1.

pub mod backoff;
pub mod client;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{json, Map, Value};
use tokio_rustls::TlsConnector;

use self::backoff::Backoff;
use self::client::{call, Answer, ControlUrl, UrlError};

/// `--register-cluster` default.
pub const DEFAULT_CLUSTER: &str = "healthcode";
/// `--register-ttl` default: an app that dies unannounced leaves within about this long.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// The environment variable read for the token when `--token` is not given.
pub const TOKEN_ENV: &str = "FLOODGATE_APP_TOKEN";
/// Timeout of one registry call (connect + answer).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Shortest TTL accepted (the heartbeat is a third of it).
pub const MIN_TTL: Duration = Duration::from_millis(300);

/// Why the registration settings are unusable (reported before the app starts).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The control-plane URL.
    #[error("--register: {0}")]
    Url(#[from] UrlError),
    /// The token could not be resolved.
    #[error("--token: {0}")]
    Token(String),
    /// The address to register.
    #[error("--advertise: {0}")]
    Address(String),
    /// The TTL.
    #[error("--register-ttl: {0}")]
    Ttl(String),
    /// The cluster name.
    #[error("--register-cluster: must not be empty")]
    Cluster,
    /// The CA for `https://`.
    #[error("--register-ca: {0}")]
    Ca(String),
}

/// What to register, where, and how.
#[derive(Clone)]
pub struct Settings {
    /// The control plane.
    pub url: ControlUrl,
    /// The app-role bearer token.
    pub token: String,
    /// The cluster this replica belongs to.
    pub cluster: String,
    /// `host:port` proxies should send to.
    pub address: String,
    /// Free-form labels stored with the registration.
    pub metadata: Map<String, Value>,
    /// How long the registration lives without a heartbeat.
    pub ttl: Duration,
    /// TLS client config for `https://` (trusting only `--register-ca`).
    pub tls: Option<TlsConnector>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of logs and panics.
        f.debug_struct("Settings")
            .field("url", &self.url)
            .field("cluster", &self.cluster)
            .field("address", &self.address)
            .field("metadata", &self.metadata)
            .field("ttl", &self.ttl)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Validates the flags: `url`, a token spec (see [`resolve_token`]), the cluster,
    /// the address to advertise (`advertise`, else `listening`, which must then not
    /// be a wildcard address), the TTL.
    #[allow(clippy::too_many_arguments)] // one per flag, named at the one call site
    pub fn new(
        url: &str,
        token: Option<&str>,
        cluster: &str,
        advertise: Option<&str>,
        listening: SocketAddr,
        ttl: Duration,
        metadata: Map<String, Value>,
        ca: Option<&Path>,
    ) -> Result<Self, SettingsError> {
        let url = ControlUrl::parse(url)?;
        let token = resolve_token(token, |name| std::env::var(name).ok())?;
        if cluster.trim().is_empty() {
            return Err(SettingsError::Cluster);
        }
        let address = advertised(advertise, listening)?;
        if ttl < MIN_TTL {
            return Err(SettingsError::Ttl(format!(
                "must be at least {MIN_TTL:?} (the heartbeat is a third of it)"
            )));
        }
        let tls = match (url.https, ca) {
            (true, Some(ca)) => Some(connector(ca)?),
            (true, None) => {
                return Err(SettingsError::Ca(
                    "an https:// control plane needs the PEM CA to verify it".into(),
                ))
            }
            (false, Some(_)) => {
                return Err(SettingsError::Ca(
                    "only with an https:// --register URL".into(),
                ))
            }
            (false, None) => None,
        };
        Ok(Self {
            url,
            token,
            cluster: cluster.to_owned(),
            address,
            metadata,
            ttl,
            tls,
        })
    }

    /// The heartbeat period: a third of the TTL, so two heartbeats may be lost.
    pub fn heartbeat(&self) -> Duration {
        self.ttl / 3
    }

    fn register_body(&self) -> Value {
        json!({
            "cluster": self.cluster,
            "address": self.address,
            "metadata": self.metadata,
            "ttl": format!("{}ms", self.ttl.as_millis()),
        })
    }

    fn deregister_body(&self) -> Value {
        json!({ "cluster": self.cluster, "address": self.address })
    }
}

/// A TLS client trusting only the PEM CA bundle at `path` (the proxy's rustls client
/// builder, TLS 1.2/1.3).
fn connector(path: &Path) -> Result<TlsConnector, SettingsError> {
    let ca_pem = std::fs::read(path)
        .map_err(|e| SettingsError::Ca(format!("cannot read {}: {e}", path.display())))?;
    let config = floodgate::tls::client_config(
        &floodgate::config::UpstreamTlsConfig {
            ca: path.to_owned(),
            sni: None,
            client_cert: None,
            client_key: None,
            ca_pem,
            client_cert_pem: Vec::new(),
            client_key_pem: Vec::new(),
        },
        false,
    )
    .map_err(|e| SettingsError::Ca(format!("{}: {e}", path.display())))?;
    Ok(TlsConnector::from(config))
}

/// Resolves the token: `spec` is a literal, `env:NAME` or `file:PATH` (whitespace
/// trimmed); without `spec`, the variable [`TOKEN_ENV`]. `env` looks variables up.
pub fn resolve_token(
    spec: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<String, SettingsError> {
    let token = match spec {
        None => env(TOKEN_ENV).ok_or_else(|| {
            SettingsError::Token(format!(
                "no token: pass --token (a literal, env:NAME or file:PATH) or set {TOKEN_ENV}"
            ))
        })?,
        Some(s) => {
            if let Some(name) = s.strip_prefix("env:") {
                env(name).ok_or_else(|| {
                    SettingsError::Token(format!("environment variable {name} is not set"))
                })?
            } else if let Some(path) = s.strip_prefix("file:") {
                std::fs::read_to_string(Path::new(path))
                    .map_err(|e| SettingsError::Token(format!("cannot read {path}: {e}")))?
            } else {
                s.to_owned()
            }
        }
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        return Err(SettingsError::Token("the token is empty".into()));
    }
    Ok(token)
}

/// The address to register: `advertise` when given, else the listening address,
/// which must not be a wildcard (`0.0.0.0`, `::`) nobody can connect to.
fn advertised(advertise: Option<&str>, listening: SocketAddr) -> Result<String, SettingsError> {
    match advertise {
        Some(a) if a.trim().is_empty() => Err(SettingsError::Address("must not be empty".into())),
        Some(a) => match a.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(a.to_owned())
            }
            _ => Err(SettingsError::Address(format!("`{a}` is not host:port"))),
        },
        None if listening.ip().is_unspecified() => Err(SettingsError::Address(format!(
            "the app listens on {listening}, which proxies cannot connect to: \
             pass --advertise HOST:PORT"
        ))),
        None => Ok(listening.to_string()),
    }
}

/// Registers, heartbeats until `shutdown` resolves, then deregisters (bounded by
/// [`CALL_TIMEOUT`]) and returns. Failures are logged and retried; they never end it.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let cap = backoff::MAX.min(settings.heartbeat());
    let mut backoff = Backoff::new(backoff::INITIAL.min(cap), cap);
    let mut registered = false;
    loop {
        let wait = match heartbeat(&settings).await {
            Ok(()) => {
                if !registered || backoff.failures() > 0 {
                    eprintln!(
                        "healthcode-app: registered {} in cluster {} (ttl {:?}, heartbeat {:?})",
                        settings.address,
                        settings.cluster,
                        settings.ttl,
                        settings.heartbeat()
                    );
                }
                registered = true;
                backoff.reset();
                settings.heartbeat()
            }
            Err(why) => {
                let wait = backoff.next_delay(rand::random::<f64>());
                // The first failure and then every tenth, so a long outage does not flood the log.
                if backoff.failures() == 1 || backoff.failures() % 10 == 0 {
                    eprintln!(
                        "healthcode-app: registration failed ({why}); retrying in {wait:?} \
                         (attempt {})",
                        backoff.failures()
                    );
                }
                wait
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = &mut shutdown => break,
        }
    }
    deregister(&settings).await;
}

/// One register-or-heartbeat call; `Err` says why it did not count.
async fn heartbeat(settings: &Settings) -> Result<(), String> {
    let answer = call(
        &settings.url,
        settings.tls.as_ref(),
        Method::POST,
        &settings.token,
        &settings.register_body(),
        CALL_TIMEOUT,
    )
    .await
    .map_err(|e| e.to_string())?;
    match answer.status {
        StatusCode::OK | StatusCode::CREATED => Ok(()),
        _ => Err(refusal(&answer)),
    }
}

async fn deregister(settings: &Settings) {
    match call(
        &settings.url,
        settings.tls.as_ref(),
        Method::DELETE,
        &settings.token,
        &settings.deregister_body(),
        CALL_TIMEOUT,
    )
    .await
    {
        Ok(a) if a.status == StatusCode::OK => {
            eprintln!("healthcode-app: deregistered {}", settings.address);
        }
        Ok(a) if a.status == StatusCode::NOT_FOUND => {}
        Ok(a) => eprintln!(
            "healthcode-app: deregistration refused ({}); the registration expires after its TTL",
            refusal(&a)
        ),
        Err(e) => eprintln!(
            "healthcode-app: cannot deregister ({e}); the registration expires after its TTL"
        ),
    }
}

fn refusal(a: &Answer) -> String {
    let hint = match a.status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            " (check --token: it must be the app token)"
        }
        _ => "",
    };
    match &a.error {
        Some(e) => format!("{}: {e}{hint}", a.status),
        None => format!("{}{hint}", a.status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            TOKEN_ENV => Some("default-token\n".into()),
            "MINE" => Some("mine".into()),
            "EMPTY" => Some("  ".into()),
            _ => None,
        }
    }

    #[test]
    fn token_sources() {
        assert_eq!(resolve_token(None, env).unwrap(), "default-token");
        assert_eq!(resolve_token(Some("env:MINE"), env).unwrap(), "mine");
        assert_eq!(resolve_token(Some("literal"), env).unwrap(), "literal");
        let e = resolve_token(Some("env:NOPE"), env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("NOPE is not set"), "{e}");
        let e = resolve_token(Some("env:EMPTY"), env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty"), "{e}");
        let e = resolve_token(None, |_| None).unwrap_err().to_string();
        assert!(e.contains(TOKEN_ENV), "{e}");
        let e = resolve_token(Some("file:/definitely/not/here"), env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/definitely/not/here"), "{e}");
    }

    #[test]
    fn token_from_a_file_is_trimmed() {
        let path = std::env::temp_dir().join(format!("hc-token-{}", std::process::id()));
        std::fs::write(&path, "  from-file \n").unwrap();
        let spec = format!("file:{}", path.display());
        assert_eq!(resolve_token(Some(&spec), env).unwrap(), "from-file");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn advertised_address() {
        let local: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:9001".parse().unwrap();
        assert_eq!(advertised(None, local).unwrap(), "127.0.0.1:9001");
        assert!(advertised(None, any)
            .unwrap_err()
            .to_string()
            .contains("--advertise"));
        assert_eq!(
            advertised(Some("app-1.internal:9001"), any).unwrap(),
            "app-1.internal:9001"
        );
        assert!(advertised(Some("nope"), any).is_err());
        assert!(advertised(Some(":80"), any).is_err());
    }

    #[test]
    fn settings_heartbeat_and_bodies() {
        let s = Settings::new(
            "http://127.0.0.1:7070",
            Some("literal-token"),
            "healthcode",
            None,
            "127.0.0.1:9001".parse().unwrap(),
            DEFAULT_TTL,
            Map::new(),
            None,
        )
        .unwrap();
        assert_eq!(s.heartbeat(), DEFAULT_TTL / 3);
        assert_eq!(s.register_body()["ttl"], "10000ms");
        assert_eq!(s.deregister_body()["address"], "127.0.0.1:9001");
        assert!(!format!("{s:?}").contains("literal-token"));
        let short = Settings::new(
            "http://127.0.0.1:7070",
            Some("t"),
            "c",
            None,
            "127.0.0.1:9001".parse().unwrap(),
            Duration::from_millis(100),
            Map::new(),
            None,
        );
        assert!(matches!(short, Err(SettingsError::Ttl(_))));
        let local = "127.0.0.1:9001".parse().unwrap();
        let https = |ca: Option<&Path>| {
            Settings::new(
                "https://cp:7070",
                Some("t"),
                "c",
                None,
                local,
                DEFAULT_TTL,
                Map::new(),
                ca,
            )
        };
        assert!(matches!(https(None), Err(SettingsError::Ca(_))));
        let missing = https(Some(Path::new("/definitely/not/ca.pem"))).unwrap_err();
        assert!(
            missing.to_string().contains("/definitely/not/ca.pem"),
            "{missing}"
        );
        let plain = Settings::new(
            "http://cp:7070",
            Some("t"),
            "c",
            None,
            local,
            DEFAULT_TTL,
            Map::new(),
            Some(Path::new("ca.pem")),
        );
        assert!(matches!(plain, Err(SettingsError::Ca(_))));
    }
}
