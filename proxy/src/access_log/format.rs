//! One access-log line, formatted straight into a byte buffer: JSON (one object per
//! line) or logfmt-style text (`key=value`, quoted when needed). No `String`s, no
//! maps, no `fmt` machinery: numbers through `itoa`, the time from a per-thread
//! cache of the current second. Pure: unit-tested on fixed entries and times.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// The format of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per line; absent values are `null`.
    Json,
    /// `key=value` pairs separated by spaces; absent values are `-`.
    Text,
}

/// A field of the line, in the order the config lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// When the request arrived, RFC 3339 UTC with milliseconds.
    Time,
    /// The client's `ip:port`.
    Client,
    /// The request method.
    Method,
    /// The authority the request was routed by (`Host` / `:authority`).
    Host,
    /// Path and query as the client sent them.
    Path,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2.0`.
    Protocol,
    /// The response status.
    Status,
    /// The request body's `Content-Length` (0 without a body; absent when chunked).
    BytesIn,
    /// Response body bytes sent to the client.
    BytesOut,
    /// Arrival to the last response byte handed to the connection, milliseconds.
    DurationMs,
    /// The upstream endpoint that answered (absent when the proxy answered itself).
    Upstream,
    /// From sending the request upstream to its response head, milliseconds.
    UpstreamMs,
    /// The route's name (absent: no route matched).
    Route,
    /// The cluster's name.
    Cluster,
    /// The listener's name.
    Listener,
    /// `x-floodgate-reason` of the proxy's own answers.
    Reason,
    /// The request id (`x-request-id`).
    RequestId,
    /// The trace id of a W3C `traceparent` request header.
    TraceId,
}

impl Field {
    /// Every field, in the default order.
    pub const ALL: [Field; 18] = [
        Field::Time,
        Field::Client,
        Field::Method,
        Field::Host,
        Field::Path,
        Field::Protocol,
        Field::Status,
        Field::BytesIn,
        Field::BytesOut,
        Field::DurationMs,
        Field::Upstream,
        Field::UpstreamMs,
        Field::Route,
        Field::Cluster,
        Field::Listener,
        Field::Reason,
        Field::RequestId,
        Field::TraceId,
    ];

    /// The field's name in the config and in the line.
    pub fn name(self) -> &'static str {
        match self {
            Field::Time => "time",
            Field::Client => "client",
            Field::Method => "method",
            Field::Host => "host",
            Field::Path => "path",
            Field::Protocol => "protocol",
            Field::Status => "status",
            Field::BytesIn => "bytes_in",
            Field::BytesOut => "bytes_out",
            Field::DurationMs => "duration_ms",
            Field::Upstream => "upstream",
            Field::UpstreamMs => "upstream_ms",
            Field::Route => "route",
            Field::Cluster => "cluster",
            Field::Listener => "listener",
            Field::Reason => "reason",
            Field::RequestId => "request_id",
            Field::TraceId => "trace_id",
        }
    }

    /// `,"name":`, the field's key in a JSON line after the separator before it.
    fn json_key(self) -> &'static str {
        match self {
            Field::Time => ",\"time\":",
            Field::Client => ",\"client\":",
            Field::Method => ",\"method\":",
            Field::Host => ",\"host\":",
            Field::Path => ",\"path\":",
            Field::Protocol => ",\"protocol\":",
            Field::Status => ",\"status\":",
            Field::BytesIn => ",\"bytes_in\":",
            Field::BytesOut => ",\"bytes_out\":",
            Field::DurationMs => ",\"duration_ms\":",
            Field::Upstream => ",\"upstream\":",
            Field::UpstreamMs => ",\"upstream_ms\":",
            Field::Route => ",\"route\":",
            Field::Cluster => ",\"cluster\":",
            Field::Listener => ",\"listener\":",
            Field::Reason => ",\"reason\":",
            Field::RequestId => ",\"request_id\":",
            Field::TraceId => ",\"trace_id\":",
        }
    }

    /// ` name=`, the field's key in a text line after the separator before it.
    fn text_key(self) -> &'static str {
        match self {
            Field::Time => " time=",
            Field::Client => " client=",
            Field::Method => " method=",
            Field::Host => " host=",
            Field::Path => " path=",
            Field::Protocol => " protocol=",
            Field::Status => " status=",
            Field::BytesIn => " bytes_in=",
            Field::BytesOut => " bytes_out=",
            Field::DurationMs => " duration_ms=",
            Field::Upstream => " upstream=",
            Field::UpstreamMs => " upstream_ms=",
            Field::Route => " route=",
            Field::Cluster => " cluster=",
            Field::Listener => " listener=",
            Field::Reason => " reason=",
            Field::RequestId => " request_id=",
            Field::TraceId => " trace_id=",
        }
    }

    /// The field named `name`.
    pub fn parse(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// What one line says, borrowed from the finished exchange.
#[derive(Debug, Clone)]
pub struct Line<'a> {
    /// When the request arrived.
    pub time: SystemTime,
    /// The client.
    pub client: SocketAddr,
    /// The method: an HTTP token (as `http::Method` holds it), written unescaped.
    pub method: &'a str,
    /// The authority, as bytes of a header value.
    pub host: Option<&'a [u8]>,
    /// Path and query as received.
    pub path: &'a str,
    /// The downstream protocol.
    pub protocol: &'static str,
    /// The status.
    pub status: u16,
    /// Request body length, when known.
    pub bytes_in: Option<u64>,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// The whole exchange.
    pub duration: Duration,
    /// The endpoint that answered: host (IP or DNS name) and port.
    pub upstream: Option<(&'a str, u16)>,
    /// The endpoint's time to response head.
    pub upstream_time: Option<Duration>,
    /// The route.
    pub route: Option<&'a str>,
    /// The cluster.
    pub cluster: Option<&'a str>,
    /// The listener.
    pub listener: &'a str,
    /// The proxy's own reason.
    pub reason: Option<&'a [u8]>,
    /// The request id.
    pub request_id: Option<&'a [u8]>,
    /// The trace id (32 hex digits) of a `traceparent`.
    pub trace_id: Option<&'a [u8]>,
}

/// The trace id of a W3C `traceparent` value (`00-<32 hex>-<16 hex>-<2 hex>`), if
/// it is well formed and not all zeros.
pub fn trace_id(traceparent: &[u8]) -> Option<&[u8]> {
    let id = traceparent.get(3..35)?;
    let well_formed = traceparent.get(2) == Some(&b'-')
        && traceparent.get(35) == Some(&b'-')
        && id
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        && id.iter().any(|&b| b != b'0');
    well_formed.then_some(id)
}

/// Appends one line (with its `\n`) to `out`.
pub fn write(line: &Line<'_>, format: Format, fields: &[Field], out: &mut Vec<u8>) {
    // One copy of the line's code per format, so no field asks which format it is in.
    match format {
        Format::Json => write_as::<true>(line, fields, out),
        Format::Text => write_as::<false>(line, fields, out),
    }
}

fn write_as<const JSON: bool>(line: &Line<'_>, fields: &[Field], out: &mut Vec<u8>) {
    let format = if JSON { Format::Json } else { Format::Text };
    if JSON {
        out.push(b'{');
    }
    for (i, &field) in fields.iter().enumerate() {
        // The key with the separator before it, as one copy.
        let key = if JSON {
            field.json_key()
        } else {
            field.text_key()
        };
        out.extend_from_slice(if i == 0 { &key[1..] } else { key }.as_bytes());
        value(line, field, format, out);
    }
    out.extend_from_slice(if JSON { b"}\n" } else { b"\n" });
}

#[inline(always)]
fn value(line: &Line<'_>, field: Field, format: Format, out: &mut Vec<u8>) {
    match field {
        Field::Time => {
            let mut time = [0u8; 24];
            rfc3339(line.time, &mut time);
            out.extend_from_slice(quote_open(format));
            out.extend_from_slice(&time);
            out.extend_from_slice(quote_open(format));
        }
        Field::Client => addr(line.client, format, out),
        // An HTTP token, safe unquoted and unescaped in both formats.
        Field::Method => verbatim(line.method, format, out),
        Field::Host => text(line.host, format, out),
        Field::Path => text(Some(line.path.as_bytes()), format, out),
        Field::Protocol => verbatim(line.protocol, format, out),
        Field::Status => number(u64::from(line.status), out),
        Field::BytesIn => match line.bytes_in {
            Some(n) => number(n, out),
            None => absent(format, out),
        },
        Field::BytesOut => number(line.bytes_out, out),
        Field::DurationMs => millis(line.duration, out),
        Field::Upstream => match line.upstream {
            Some((host, port)) => {
                out.extend_from_slice(quote_open(format));
                if host.contains(':') {
                    out.push(b'[');
                    escape(host.as_bytes(), out, format == Format::Json);
                    out.push(b']');
                } else {
                    escape(host.as_bytes(), out, format == Format::Json);
                }
                out.push(b':');
                number(u64::from(port), out);
                out.extend_from_slice(quote_open(format));
            }
            None => absent(format, out),
        },
        Field::UpstreamMs => match line.upstream_time {
            Some(d) => millis(d, out),
            None => absent(format, out),
        },
        Field::Route => token(line.route, format, out),
        Field::Cluster => token(line.cluster, format, out),
        Field::Listener => token(Some(line.listener), format, out),
        Field::Reason => text(line.reason, format, out),
        Field::RequestId => text(line.request_id, format, out),
        Field::TraceId => text(line.trace_id, format, out),
    }
}

/// A value that needs no escaping in either format — a name the config validated (letters, digits, `-`, `_`, `.`) — is
/// copied as it is; anything else goes through [`text`].
#[inline]
fn token(value: Option<&str>, format: Format, out: &mut Vec<u8>) {
    let Some(v) = value else {
        absent(format, out);
        return;
    };
    let safe = !v.is_empty() && v.bytes().all(|b| TOKEN[usize::from(b)]);
    if safe {
        verbatim(v, format, out);
    } else {
        text(Some(v.as_bytes()), format, out);
    }
}

/// A value known to need no escaping (an HTTP method is a token: no space, quote,
/// `=`, backslash or control byte; the protocol is one of ours), copied as it is.
#[inline]
fn verbatim(v: &str, format: Format, out: &mut Vec<u8>) {
    match format {
        Format::Json => {
            out.push(b'"');
            out.extend_from_slice(v.as_bytes());
            out.push(b'"');
        }
        Format::Text => out.extend_from_slice(v.as_bytes()),
    }
}

#[inline]
fn quote_open(format: Format) -> &'static [u8] {
    match format {
        Format::Json => b"\"",
        Format::Text => b"",
    }
}

#[inline]
fn absent(format: Format, out: &mut Vec<u8>) {
    out.extend_from_slice(match format {
        Format::Json => b"null",
        Format::Text => b"-",
    });
}

#[inline]
fn number(n: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Milliseconds with three decimals (microsecond resolution), no float formatting.
#[inline]
fn millis(d: Duration, out: &mut Vec<u8>) {
    let micros = d.as_micros();
    let micros = u64::try_from(micros).unwrap_or(u64::MAX);
    number(micros / 1000, out);
    let frac = micros % 1000;
    out.push(b'.');
    out.push(b'0' + (frac / 100) as u8);
    out.push(b'0' + (frac / 10 % 10) as u8);
    out.push(b'0' + (frac % 10) as u8);
}

#[inline]
fn addr(a: SocketAddr, format: Format, out: &mut Vec<u8>) {
    out.extend_from_slice(quote_open(format));
    match a {
        SocketAddr::V4(v4) => {
            for (i, octet) in v4.ip().octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                number(u64::from(*octet), out);
            }
        }
        SocketAddr::V6(v6) => {
            // Rare enough for `fmt`; no `String` all the same.
            use std::io::Write;
            let _ = write!(out, "[{}]", v6.ip());
        }
    }
    out.push(b':');
    number(u64::from(a.port()), out);
    out.extend_from_slice(quote_open(format));
}

/// A string value: JSON-escaped and quoted, or in text quoted only when it holds a
/// space, `"`, `=` or a control byte. Bytes that are not UTF-8 are written as `\u00XX`
/// (JSON) or `\xXX` (text), so a line is always valid UTF-8 and one line.
#[inline]
fn text(value: Option<&[u8]>, format: Format, out: &mut Vec<u8>) {
    let Some(v) = value else {
        absent(format, out);
        return;
    };
    match format {
        Format::Json => {
            out.push(b'"');
            escape(v, out, true);
            out.push(b'"');
        }
        Format::Text => {
            let plain = !v.is_empty()
                && v.iter()
                    .all(|&b| b > b' ' && b != b'"' && b != b'=' && b != b'\\' && b < 0x7f);
            if plain {
                out.extend_from_slice(v);
            } else {
                out.push(b'"');
                escape(v, out, false);
                out.push(b'"');
            }
        }
    }
}

/// Bytes a [`token`] value may hold: ASCII letters and digits, `-`, `_`, `.`, `/`.
const TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'/');
        b += 1;
    }
    t
};

/// Bytes written as they are inside a quoted value: printable ASCII but `"` and `\\`.
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0x20;
    while b < 0x7f {
        t[b] = b != b'"' as usize && b != b'\\' as usize;
        b += 1;
    }
    t
};

/// Copies `v`, escaping what must be: runs of plain bytes are copied whole (the
/// common case is one copy of the whole value); UTF-8 above ASCII is kept when the
/// value is valid UTF-8.
#[inline]
fn escape(v: &[u8], out: &mut Vec<u8>, json: bool) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut valid_utf8: Option<bool> = None;
    let mut run = 0;
    for (i, &b) in v.iter().enumerate() {
        if PLAIN[usize::from(b)] {
            continue;
        }
        if b >= 0x80 && *valid_utf8.get_or_insert_with(|| std::str::from_utf8(v).is_ok()) {
            continue;
        }
        out.extend_from_slice(&v[run..i]);
        run = i + 1;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                out.extend_from_slice(if json { b"\\u00" } else { b"\\x" });
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
    }
    out.extend_from_slice(&v[run..]);
}

thread_local! {
    /// The last second formatted on this thread and its `YYYY-MM-DDTHH:MM:SS`.
    static SECOND: RefCell<(u64, [u8; 19])> = const { RefCell::new((u64::MAX, [0; 19])) };
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of `t` (before 1970: the epoch).
pub fn rfc3339(t: SystemTime, out: &mut [u8; 24]) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != secs {
            *cache = (secs, civil(secs));
        }
        out[..19].copy_from_slice(&cache.1);
    });
    let ms = since.subsec_millis();
    out[19] = b'.';
    out[20] = b'0' + (ms / 100) as u8;
    out[21] = b'0' + (ms / 10 % 10) as u8;
    out[22] = b'0' + (ms % 10) as u8;
    out[23] = b'Z';
}

/// `YYYY-MM-DDTHH:MM:SS` of Unix seconds (Howard Hinnant's `civil_from_days`).
fn civil(secs: u64) -> [u8; 19] {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut s = [0u8; 19];
    let digits = |out: &mut [u8], mut n: u64| {
        for slot in out.iter_mut().rev() {
            *slot = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    digits(&mut s[0..4], u64::try_from(year).unwrap_or(0));
    s[4] = b'-';
    digits(&mut s[5..7], u64::try_from(month).unwrap_or(0));
    s[7] = b'-';
    digits(&mut s[8..10], u64::try_from(day).unwrap_or(0));
    s[10] = b'T';
    digits(&mut s[11..13], rem / 3600);
    s[13] = b':';
    digits(&mut s[14..16], rem / 60 % 60);
    s[16] = b':';
    digits(&mut s[17..19], rem % 60);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Line<'static> {
        Line {
            time: UNIX_EPOCH + Duration::from_millis(1_796_137_445_123),
            client: "127.0.0.1:5123".parse().unwrap(),
            method: "GET",
            host: Some(b"codes.test"),
            path: "/api/v1/codes/42?x=\"y\"",
            protocol: "HTTP/1.1",
            status: 200,
            bytes_in: Some(0),
            bytes_out: 64,
            duration: Duration::from_micros(1234),
            upstream: Some(("127.0.0.1", 9001)),
            upstream_time: Some(Duration::from_micros(1005)),
            route: Some("codes"),
            cluster: Some("healthcode"),
            listener: "public",
            reason: None,
            request_id: Some(b"abc-1"),
            trace_id: None,
        }
    }

    #[test]
    fn a_json_line_holds_every_field_and_parses() {
        let mut out = Vec::new();
        write(&sample(), Format::Json, &Field::ALL, &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["time"], "2026-12-01T15:04:05.123Z");
        assert_eq!(v["client"], "127.0.0.1:5123");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["host"], "codes.test");
        assert_eq!(v["path"], "/api/v1/codes/42?x=\"y\"");
        assert_eq!(v["protocol"], "HTTP/1.1");
        assert_eq!(v["status"], 200);
        assert_eq!(v["bytes_in"], 0);
        assert_eq!(v["bytes_out"], 64);
        assert_eq!(v["duration_ms"].as_f64(), Some(1.234));
        assert_eq!(v["upstream"], "127.0.0.1:9001");
        assert_eq!(v["upstream_ms"].as_f64(), Some(1.005));
        assert_eq!(v["route"], "codes");
        assert_eq!(v["cluster"], "healthcode");
        assert_eq!(v["listener"], "public");
        assert!(v["reason"].is_null());
        assert_eq!(v["request_id"], "abc-1");
        assert!(v["trace_id"].is_null());
        assert_eq!(v.as_object().unwrap().len(), Field::ALL.len());
    }

    #[test]
    fn a_text_line_quotes_only_what_needs_it() {
        let mut out = Vec::new();
        let fields = [Field::Method, Field::Path, Field::Status, Field::Reason];
        write(&sample(), Format::Text, &fields, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "method=GET path=\"/api/v1/codes/42?x=\\\"y\\\"\" status=200 reason=-\n"
        );
    }

    #[test]
    fn any_method_http_accepts_is_written_as_it_is_and_parses() {
        // Every byte `http::Method` allows in an extension method (the HTTP tchars).
        let method = http::Method::from_bytes(b"M-SEARCH!#$%&'*+.^_`|~9").unwrap();
        let mut line = sample();
        line.method = method.as_str();
        let mut json = Vec::new();
        write(&line, Format::Json, &[Field::Method], &mut json);
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["method"], method.as_str());
        let mut text = Vec::new();
        write(
            &line,
            Format::Text,
            &[Field::Method, Field::Status],
            &mut text,
        );
        assert_eq!(
            text,
            format!("method={} status=200\n", method.as_str()).into_bytes()
        );
    }

    #[test]
    fn hostile_bytes_stay_on_one_valid_line() {
        let mut line = sample();
        line.host = Some(b"a\nb\x1b[31m\xff");
        line.path = "/\u{7f}é";
        for format in [Format::Json, Format::Text] {
            let mut out = Vec::new();
            write(&line, format, &[Field::Host, Field::Path], &mut out);
            let s = String::from_utf8(out.clone()).unwrap();
            assert_eq!(s.matches('\n').count(), 1, "{s}");
            assert!(!out.contains(&0x1b), "{s}");
            if format == Format::Json {
                let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
                assert_eq!(v["host"], "a\nb\u{1b}[31m\u{ff}");
                assert_eq!(v["path"], "/\u{7f}é");
            }
        }
    }

    #[test]
    fn the_civil_date_matches_known_days() {
        let at = |s: u64| String::from_utf8(civil(s).to_vec()).unwrap();
        assert_eq!(at(0), "1970-01-01T00:00:00");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59");
        assert_eq!(at(1_796_137_445), "2026-12-01T15:04:05");
    }

    #[test]
    fn a_trace_id_is_taken_only_from_a_well_formed_traceparent() {
        let good = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            trace_id(good),
            Some(&b"4bf92f3577b34da6a3ce929d0e0e4736"[..])
        );
        assert_eq!(
            trace_id(b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(
            trace_id(b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(trace_id(b"garbage"), None);
    }

    #[test]
    fn millis_keep_microseconds() {
        let mut out = Vec::new();
        millis(Duration::from_micros(12_345_678), &mut out);
        assert_eq!(out, b"12345.678");
        out.clear();
        millis(Duration::from_nanos(999), &mut out);
        assert_eq!(out, b"0.000");
    }
}
