//! Scripted upstreams that misbehave at the byte level, on 127.0.0.1:0.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a raw upstream does once it has read a request head.
#[derive(Debug, Clone, Copy)]
pub enum Script {
    /// Never answers (keeps the connection open).
    StallBeforeHead,
    /// Sends a head promising 1,000 bytes, 10 of them, then goes silent.
    StallInBody,
    /// Sends a valid response one byte every 2 ms.
    Trickle,
    /// Sends bytes that are not HTTP, then closes.
    Garbage,
    /// Answers with a body of [`BIG_BODY`] bytes, as fast as the proxy takes it.
    Big,
}

/// The size of a [`Script::Big`] body: 16 MiB.
pub const BIG_BODY: usize = 16 << 20;

/// Starts a raw upstream following `script` on every connection.
pub async fn raw_upstream(script: Script) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(serve(stream, script));
        }
    });
    addr
}

/// Reads up to the end of a request head; false when the peer closed first.
async fn read_head(stream: &mut TcpStream) -> bool {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        if seen.windows(4).any(|w| w == b"\r\n\r\n") {
            return true;
        }
    }
}

async fn serve(mut stream: TcpStream, script: Script) {
    while read_head(&mut stream).await {
        match script {
            Script::StallBeforeHead => {
                // Hold the connection until the proxy gives up on it.
                let mut buf = [0u8; 1024];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
                return;
            }
            Script::StallInBody => {
                let head = "HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 1024];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
                return;
            }
            Script::Trickle => {
                let response = "HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\ntrickled-ok!";
                for b in response.as_bytes() {
                    if stream.write_all(&[*b]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            Script::Big => {
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {BIG_BODY}\r\n\r\n");
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 << 10];
                for _ in 0..BIG_BODY / chunk.len() {
                    if stream.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
            }
            Script::Garbage => {
                let _ = stream
                    .write_all(b"\x16\x03\x01garbage, not HTTP at all\r\n\r\n")
                    .await;
                return;
            }
        }
    }
}
