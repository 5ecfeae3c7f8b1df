//! A parked connection: an idle HTTP/1.1 keep-alive connection that hyper has let
//! go of (see `serve.rs`), so that only the client stream and the connection's
//! small shared state wait for the next request, not hyper's 8 KiB read and write
//! buffers and its per-connection state. A new connection waits the same way for
//! its first bytes. When bytes arrive they are read here, a few at a time, and
//! replayed in front of the stream ([`super::rewind`]) to the next HTTP connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// The most bytes one wake-up of a parked connection reads: enough to tell HTTP/2's
/// preface from an HTTP/1 request line; hyper reads the rest into its own buffer.
const WAKE_READ: usize = 32;

/// What a parked stream had to say.
#[derive(Debug)]
pub enum Woken {
    /// Bytes arrived; they were appended to the prefix.
    Bytes,
    /// The client closed its side.
    Closed,
}

/// Polls a parked `stream` for its next bytes, appending what it reads to `prefix`.
/// Pending until the client sends something (or leaves).
pub fn poll_wake<S: AsyncRead + Unpin>(
    stream: &mut S,
    cx: &mut Context<'_>,
    prefix: &mut Vec<u8>,
) -> Poll<io::Result<Woken>> {
    let mut bytes = [0u8; WAKE_READ];
    let mut buf = ReadBuf::new(&mut bytes);
    match Pin::new(stream).poll_read(cx, &mut buf) {
        Poll::Pending => Poll::Pending,
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(Ok(Woken::Closed)),
        Poll::Ready(Ok(())) => {
            prefix.extend_from_slice(buf.filled());
            Poll::Ready(Ok(Woken::Bytes))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_parked_stream_wakes_with_its_bytes_and_reads_few() {
        let (mut client, mut server) = tokio::io::duplex(256);
        let mut prefix = Vec::new();
        let mut woken = Vec::new();
        poll_fn(|cx| {
            // Nothing sent yet: parked.
            assert!(poll_wake(&mut server, cx, &mut prefix).is_pending());
            Poll::Ready(())
        })
        .await;
        client
            .write_all(b"GET /a-long-path-of-more-than-32-bytes HTTP/1.1\r\n")
            .await
            .unwrap();
        let first = poll_fn(|cx| poll_wake(&mut server, cx, &mut prefix))
            .await
            .unwrap();
        woken.push(first);
        assert_eq!(prefix, b"GET /a-long-path-of-more-than-32");
        drop(client);
        let second = poll_fn(|cx| poll_wake(&mut server, cx, &mut prefix))
            .await
            .unwrap();
        assert!(matches!(second, Woken::Bytes), "the rest first");
        let last = poll_fn(|cx| poll_wake(&mut server, cx, &mut prefix))
            .await
            .unwrap();
        assert!(matches!(last, Woken::Closed));
        assert!(prefix.ends_with(b"HTTP/1.1\r\n"));
        assert!(matches!(woken[0], Woken::Bytes));
    }
}
