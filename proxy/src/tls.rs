//! TLS: rustls server configs (SNI certificate choice) and upstream client configs.
//! (Temporary stand-in until the real module lands.)

use std::sync::Arc;

use crate::config::{ServerTlsConfig, UpstreamTlsConfig};

/// A TLS setup error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

/// Builds a server config.
pub fn server_config(_tls: &ServerTlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    Err(TlsError("not built".into()))
}

/// Builds a client config.
pub fn client_config(
    _tls: &UpstreamTlsConfig,
    _http2: bool,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    Err(TlsError("not built".into()))
}
