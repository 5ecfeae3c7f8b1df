//! TLS on the API: the rustls server config comes from the proxy's own builder
//! (`floodgate::tls::server_config`: TLS 1.2 and 1.3, ring, ALPN `h2`/`http/1.1`);
//! [`accept`] handshakes one connection, bounded by [`HANDSHAKE_TIMEOUT`], and answers
//! a plain-HTTP request on the TLS port with a readable 400 instead of a bare reset.

use std::time::Duration;

use floodgate::config::{CertConfig, ServerTlsConfig};
use floodgate::tls::TlsError;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::ApiTls;
use crate::observe;

/// Longest time a client gets to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The first byte of a TLS record carrying a handshake (a ClientHello).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What a plain-HTTP client on the TLS port gets back before the connection closes.
const PLAINTEXT_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
content-type: application/json\r\n\
connection: close\r\n\
content-length: 58\r\n\r\n\
{\"error\":\"this port speaks TLS: use https:// to connect\"}\n";

/// Builds the acceptor of the API's TLS config.
pub fn acceptor(tls: &ApiTls) -> Result<TlsAcceptor, TlsError> {
    let config = floodgate::tls::server_config(&ServerTlsConfig {
        certs: vec![CertConfig {
            cert: tls.cert.clone(),
            key: tls.key.clone(),
            sni: Vec::new(),
            cert_pem: tls.cert_pem.clone(),
            key_pem: tls.key_pem.clone(),
        }],
        alpn: vec!["h2".into(), "http/1.1".into()],
    })?;
    Ok(TlsAcceptor::from(config))
}

/// Handshakes `stream`; `None` (after logging at debug and counting) when the client
/// spoke plain HTTP, failed the handshake or took longer than [`HANDSHAKE_TIMEOUT`].
pub async fn accept(acceptor: &TlsAcceptor, stream: TcpStream) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(acceptor, stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(reason)) => {
            metrics::counter!(observe::TLS_REFUSED, "reason" => reason).increment(1);
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            metrics::counter!(observe::TLS_REFUSED, "reason" => "timeout").increment(1);
            None
        }
    }
}

async fn handshake(
    acceptor: &TlsAcceptor,
    mut stream: TcpStream,
) -> Result<TlsStream<TcpStream>, &'static str> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(0) | Err(_) => return Err("closed"),
        Ok(_) => {}
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        tracing::debug!("plain-text request on the TLS port; answered 400");
        let _ = stream.write_all(PLAINTEXT_ANSWER).await;
        let _ = stream.shutdown().await;
        return Err("plaintext");
    }
    acceptor.accept(stream).await.map_err(|e| {
        tracing::debug!(error = %e, "TLS handshake failed");
        "handshake"
    })
}

#[cfg(test)]
mod tests {
    use super::PLAINTEXT_ANSWER;

    #[test]
    fn the_plaintext_answer_has_the_right_length() {
        let text = std::str::from_utf8(PLAINTEXT_ANSWER).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}
