//! How an upstream response body ends, and its decoding from the buffered bytes
//! (pure: no I/O, no runtime).
//!
//! The rules are hyper's client's, byte for byte (hyper 1.x `proto/h1/decode.rs`), so
//! that what Floodgate accepts is what a hyper-based proxy would: a chunk-size line
//! is one or more hex digits (no sign, no leading space, no overflow of a `u64`),
//! optional spaces or tabs, an optional extension, then CRLF (a bare LF is an
//! error, and so is an LF inside an extension); chunk extensions count against
//! 16 KiB over the whole body; chunk data ends with CRLF; trailer fields take at
//! most 100 lines and 16 KiB and must parse as header fields. `httparse::parse_chunk_size`
//! is not used because it is laxer than hyper on three counts (an empty size, an
//! LF inside an extension) and stricter on one (more than 16 digits with leading
//! zeros): the differential tests (`differential.rs`) hold this file to hyper.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};

/// Most bytes of chunk extensions over one body (hyper's `CHUNKED_EXTENSIONS_LIMIT`).
const EXTENSIONS_LIMIT: u64 = 16 * 1024;
/// Most bytes of a body's trailer section (hyper's `TRAILER_LIMIT`).
const TRAILERS_LIMIT: usize = 16 * 1024;
/// Most trailer fields (hyper's default `max_headers`).
const MAX_TRAILERS: usize = 100;
/// Most body bytes copied out of the read buffer; larger pieces are split off it
/// without copying (the buffer then reallocates on its next read).
const COPY_MAX: usize = 4 * 1024;

/// Why a response body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum FramingError {
    /// The chunked coding broke one of its rules.
    #[error("malformed chunked body: {0}")]
    Chunked(&'static str),
    /// The upstream closed before the body's declared end.
    #[error("upstream closed the connection in the middle of the body")]
    Truncated,
}

/// How a response body is framed, and how far it has been read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Framing {
    /// This many bytes are still to come (0: the body is complete).
    Length(u64),
    /// Chunked transfer coding.
    Chunked(Box<Chunked>),
    /// Everything until the upstream closes (the connection is not reused).
    UntilClose,
}

/// What the buffered bytes give the body reader next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// A piece of the body.
    Data(Bytes),
    /// More bytes are needed from the connection.
    NeedMore,
    /// The body is complete.
    Done,
}

impl Framing {
    /// The chunked coding at its start.
    pub(super) fn chunked() -> Self {
        Self::Chunked(Box::default())
    }

    /// True once the whole body has been decoded.
    pub(super) fn is_complete(&self) -> bool {
        match self {
            Self::Length(n) => *n == 0,
            Self::Chunked(c) => c.state == State::End,
            Self::UntilClose => false,
        }
    }

    /// True when the body ends with the connection.
    pub(super) fn is_close_delimited(&self) -> bool {
        matches!(self, Self::UntilClose)
    }

    /// Bytes still to come, when the framing says.
    pub(super) fn remaining(&self) -> Option<u64> {
        match self {
            Self::Length(n) => Some(*n),
            _ => None,
        }
    }

    /// The next piece of body in `buf`, advancing the framing and consuming what it read.
    pub(super) fn step(&mut self, buf: &mut BytesMut) -> Result<Step, FramingError> {
        match self {
            Self::Length(0) => Ok(Step::Done),
            Self::Length(left) => {
                if buf.is_empty() {
                    return Ok(Step::NeedMore);
                }
                let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                *left -= n as u64;
                Ok(Step::Data(take_bytes(buf, n)))
            }
            Self::UntilClose => {
                if buf.is_empty() {
                    return Ok(Step::NeedMore);
                }
                let n = buf.len();
                Ok(Step::Data(take_bytes(buf, n)))
            }
            Self::Chunked(c) => c.step(buf),
        }
    }

    /// The connection ended with the body at this point: fine only for a body that
    /// ends with it (or one already complete).
    pub(super) fn at_eof(&self) -> Result<(), FramingError> {
        if self.is_close_delimited() || self.is_complete() {
            Ok(())
        } else {
            Err(FramingError::Truncated)
        }
    }
}

/// The chunked decoder's position (hyper's `ChunkedState`, one state per byte class).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// The first hex digit of a chunk size.
    #[default]
    Start,
    /// More hex digits, or what ends them.
    Size,
    /// Spaces or tabs after the size.
    SizeLws,
    /// Inside a chunk extension, up to CR.
    Extension,
    /// The LF ending a chunk-size line.
    SizeLf,
    /// Chunk data.
    Body,
    /// The CR after chunk data.
    BodyCr,
    /// The LF after chunk data.
    BodyLf,
    /// Inside a trailer field line, up to CR.
    Trailer,
    /// The LF ending a trailer line.
    TrailerLf,
    /// After the last chunk or a trailer line: CR of the end, or a trailer's first byte.
    EndCr,
    /// The LF of the end.
    EndLf,
    /// The body is complete.
    End,
}

/// The chunked coding's state between reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Chunked {
    state: State,
    /// The current chunk's size, then the bytes of it still to come.
    size: u64,
    /// Extension bytes seen over the whole body.
    extensions: u64,
    /// The trailer section as received (checked when the body ends).
    trailers: Option<BytesMut>,
    /// Trailer lines seen.
    trailer_lines: usize,
}

/// A malformed-chunked error.
fn bad(why: &'static str) -> FramingError {
    FramingError::Chunked(why)
}

impl Chunked {
    fn step(&mut self, buf: &mut BytesMut) -> Result<Step, FramingError> {
        loop {
            match self.state {
                State::End => return Ok(Step::Done),
                State::Body => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let n = usize::try_from(self.size)
                        .unwrap_or(usize::MAX)
                        .min(buf.len());
                    self.size -= n as u64;
                    if self.size == 0 {
                        self.state = State::BodyCr;
                    }
                    return Ok(Step::Data(take_bytes(buf, n)));
                }
                _ => {
                    let Some(&byte) = buf.first() else {
                        return Ok(Step::NeedMore);
                    };
                    buf.advance(1);
                    self.state = self.next(byte)?;
                    if self.state == State::End {
                        self.check_trailers()?;
                        return Ok(Step::Done);
                    }
                }
            }
        }
    }

    /// The state after `byte` (every state but `Body` and `End` reads one byte).
    fn next(&mut self, byte: u8) -> Result<State, FramingError> {
        Ok(match self.state {
            State::Start => {
                self.push_digit(byte)
                    .ok_or(bad("missing chunk size digit"))??;
                State::Size
            }
            State::Size => match byte {
                b'\t' | b' ' => State::SizeLws,
                b';' => State::Extension,
                b'\r' => State::SizeLf,
                _ => {
                    self.push_digit(byte).ok_or(bad("invalid chunk size"))??;
                    State::Size
                }
            },
            State::SizeLws => match byte {
                b'\t' | b' ' => State::SizeLws,
                b';' => State::Extension,
                b'\r' => State::SizeLf,
                _ => return Err(bad("invalid whitespace after chunk size")),
            },
            State::Extension => match byte {
                b'\r' => State::SizeLf,
                b'\n' => return Err(bad("chunk extension contains a newline")),
                _ => {
                    self.extensions += 1;
                    if self.extensions >= EXTENSIONS_LIMIT {
                        return Err(bad("chunk extensions over 16 KiB"));
                    }
                    State::Extension
                }
            },
            State::SizeLf => match byte {
                b'\n' if self.size == 0 => State::EndCr,
                b'\n' => State::Body,
                _ => return Err(bad("chunk-size line without CRLF")),
            },
            State::BodyCr => match byte {
                b'\r' => State::BodyLf,
                _ => return Err(bad("chunk data longer than its size")),
            },
            State::BodyLf => match byte {
                b'\n' => State::Start,
                _ => return Err(bad("chunk data without CRLF")),
            },
            State::Trailer => {
                self.push_trailer(byte)?;
                if byte == b'\r' {
                    State::TrailerLf
                } else {
                    State::Trailer
                }
            }
            State::TrailerLf => match byte {
                b'\n' => {
                    if self.trailer_lines >= MAX_TRAILERS {
                        return Err(bad("more than 100 trailer fields"));
                    }
                    self.trailer_lines += 1;
                    self.push_trailer(byte)?;
                    State::EndCr
                }
                _ => return Err(bad("trailer line without CRLF")),
            },
            State::EndCr => {
                if byte == b'\r' {
                    if self.trailers.is_some() {
                        self.push_trailer(byte)?;
                    }
                    State::EndLf
                } else {
                    match self.trailers.as_mut() {
                        // hyper starts the section without checking its limit.
                        None => self.trailers = Some(BytesMut::from(&[byte][..])),
                        Some(_) => self.push_trailer(byte)?,
                    }
                    State::Trailer
                }
            }
            State::EndLf => match byte {
                b'\n' => {
                    if self.trailers.is_some() {
                        self.push_trailer(byte)?;
                    }
                    State::End
                }
                _ => return Err(bad("last chunk without CRLF")),
            },
            State::Body | State::End => self.state,
        })
    }

    /// Adds a hex digit to the size: `None` when `byte` is no hex digit.
    fn push_digit(&mut self, byte: u8) -> Option<Result<(), FramingError>> {
        let digit = char::from(byte).to_digit(16)?;
        let size = self
            .size
            .checked_mul(16)
            .and_then(|s| s.checked_add(u64::from(digit)));
        Some(match size {
            Some(size) => {
                self.size = size;
                Ok(())
            }
            None => Err(bad("chunk size overflows")),
        })
    }

    fn push_trailer(&mut self, byte: u8) -> Result<(), FramingError> {
        let trailers = self.trailers.get_or_insert_with(BytesMut::new);
        trailers.extend_from_slice(&[byte]);
        if trailers.len() >= TRAILERS_LIMIT {
            return Err(bad("trailer section over 16 KiB"));
        }
        Ok(())
    }

    /// The trailer section must parse as header fields (they are not forwarded).
    fn check_trailers(&mut self) -> Result<(), FramingError> {
        let Some(section) = self.trailers.take() else {
            return Ok(());
        };
        let mut slots = vec![httparse::EMPTY_HEADER; self.trailer_lines];
        match httparse::parse_headers(&section, &mut slots) {
            Ok(httparse::Status::Complete((_, fields))) => {
                for field in fields.iter() {
                    HeaderName::from_bytes(field.name.as_bytes())
                        .map_err(|_| bad("invalid trailer field name"))?;
                    HeaderValue::from_bytes(field.value)
                        .map_err(|_| bad("invalid trailer field value"))?;
                }
                Ok(())
            }
            Ok(httparse::Status::Partial) | Err(_) => Err(bad("malformed trailer section")),
        }
    }
}

/// The first `n` bytes of `buf` as a frame: small ones copied, so the buffer stays
/// unshared and reusable; large ones split off without copying.
pub(super) fn take_bytes(buf: &mut BytesMut, n: usize) -> Bytes {
    if n <= COPY_MAX {
        let data = Bytes::copy_from_slice(&buf[..n]);
        buf.advance(n);
        data
    } else {
        buf.split_to(n).freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` whole as a chunked body: the data, or the first error.
    fn decode(input: &[u8]) -> Result<(Vec<u8>, usize), FramingError> {
        let mut framing = Framing::chunked();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match framing.step(&mut buf)? {
                Step::Data(d) => out.extend_from_slice(&d),
                Step::Done => return Ok((out, buf.len())),
                Step::NeedMore => return Err(FramingError::Truncated),
            }
        }
    }

    #[test]
    fn chunks_with_extensions_and_trailers_decode() {
        let (data, left) =
            decode(b"5;a=1\r\nhello\r\n6 \t;b\r\n world\r\n0\r\nx: 1\r\n\r\nNEXT").unwrap();
        assert_eq!((data.as_slice(), left), (&b"hello world"[..], 4));
    }

    #[test]
    fn sizes_are_strict_hex_with_crlf() {
        for bad_input in [
            &b"\r\n\r\n"[..],             // empty size (httparse accepts it)
            b"+5\r\nhello\r\n0\r\n\r\n",  // sign
            b" 5\r\nhello\r\n0\r\n\r\n",  // leading space
            b"5\nhello\r\n0\r\n\r\n",     // bare LF after the size
            b"5;a\nhello\r\n0\r\n\r\n",   // LF inside an extension
            b"5 5\r\nhello\r\n0\r\n\r\n", // digits after whitespace
            b"10000000000000000\r\n",     // 17 significant digits: overflow
            b"5\r\nhelloX\r\n0\r\n\r\n",  // data longer than its size
            b"5\r\nhello\rX0\r\n\r\n",    // CR without LF after data
            b"0\r\nnot a field\r\n\r\n",  // trailer that is no field
            b"0\r\n\r\r",                 // end without LF
        ] {
            assert!(
                matches!(decode(bad_input), Err(FramingError::Chunked(_))),
                "{:?}",
                String::from_utf8_lossy(bad_input)
            );
        }
        // Leading zeros are fine however many (hyper counts value, not digits).
        let (data, _) = decode(b"00000000000000000005\r\nhello\r\n0\r\n\r\n").unwrap();
        assert_eq!(data, b"hello");
        let (data, _) = decode(b"A\r\n0123456789\r\n0\r\n\r\n").unwrap();
        assert_eq!(data.len(), 10);
    }

    #[test]
    fn extension_and_trailer_limits_hold_over_the_body() {
        let ext = "x".repeat(9000);
        let two = format!("1;{ext}\r\na\r\n1;{ext}\r\nb\r\n0\r\n\r\n");
        assert!(decode(two.as_bytes()).is_err(), "18 000 extension bytes");
        let one = format!("1;{ext}\r\na\r\n0\r\n\r\n");
        assert!(decode(one.as_bytes()).is_ok());
        let many: String = (0..101).map(|i| format!("t{i}: v\r\n")).collect();
        assert!(decode(format!("0\r\n{many}\r\n").as_bytes()).is_err());
    }

    #[test]
    fn a_body_read_in_single_bytes_decodes_the_same() {
        let input = b"3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nt: 1\r\n\r\n";
        let mut framing = Framing::chunked();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for &b in input.iter() {
            buf.extend_from_slice(&[b]);
            while let Step::Data(d) = framing.step(&mut buf).unwrap() {
                out.extend_from_slice(&d);
            }
        }
        assert!(framing.is_complete());
        assert_eq!(out, b"abcde");
    }

    #[test]
    fn eof_ends_only_a_close_delimited_or_complete_body() {
        assert_eq!(Framing::UntilClose.at_eof(), Ok(()));
        assert_eq!(Framing::Length(0).at_eof(), Ok(()));
        assert_eq!(Framing::Length(3).at_eof(), Err(FramingError::Truncated));
        assert_eq!(Framing::chunked().at_eof(), Err(FramingError::Truncated));
    }
}
