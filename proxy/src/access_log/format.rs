//! One access-log line, formatted straight into a byte buffer: JSON (one object per
//! line) or logfmt-style text (`key=value`, quoted when needed). No `String`s, no
//! maps, no `fmt` machinery: the line's room reserved once, its pieces written by
//! [`emit`] (fixed-size copies, a fast scan for bytes to escape, the time from a
//! per-thread cache of the current second). Pure: unit-tested on fixed entries.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use super::emit::{self, Cursor, Key};

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
    const fn json_key(self) -> &'static str {
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
    const fn text_key(self) -> &'static str {
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
    /// When the request arrived, in milliseconds since the Unix epoch.
    pub time: u64,
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
    // Room for the line at once: more than its fixed part (keys, numbers, the time,
    // an address, as whole blocks) and every value escaped at worst (6 bytes for one).
    let values = line.method.len()
        + line.path.len()
        + line.host.map_or(0, <[u8]>::len)
        + line.request_id.map_or(0, <[u8]>::len)
        + line.reason.map_or(0, <[u8]>::len)
        + line.trace_id.map_or(0, <[u8]>::len)
        + line.upstream.map_or(0, |(h, _)| h.len())
        + line.route.map_or(0, str::len)
        + line.cluster.map_or(0, str::len)
        + line.listener.len();
    let start = out.len();
    out.resize(start + 1024 + 6 * values, 0);
    let written = {
        let mut c = Cursor::new(out.get_mut(start..).unwrap_or_default());
        // One copy of the line's code per format, so no field asks which format it is in.
        match format {
            Format::Json => write_as::<true>(line, fields, &mut c),
            Format::Text => write_as::<false>(line, fields, &mut c),
        }
        c.written()
    };
    // A line that did not fit (the room above is a bound: never) is left out whole.
    debug_assert!(written.is_some(), "an access-log line overflowed its room");
    out.truncate(start + written.unwrap_or(0));
}

/// Writes each key with what stands around it as one fixed-size copy: the closing
/// quote of the value before, the separator, the key and the opening quote of its
/// own value.
struct Keys<'k> {
    keys: &'k KeyForms,
    /// The value before is quoted (its closing quote comes with the next key).
    open: bool,
    /// 1 before the line's first key (no separator), then 0.
    skip: usize,
}

impl Keys<'_> {
    #[inline(always)]
    fn put(&mut self, c: &mut Cursor<'_>, field: Field, quoted: bool) {
        let key = &self.keys[field as usize][usize::from(self.open) << 1 | usize::from(quoted)];
        emit::put_key(c, key, self.skip);
        self.skip = 0;
        self.open = quoted;
    }
}

fn write_as<const JSON: bool>(line: &Line<'_>, fields: &[Field], c: &mut Cursor<'_>) {
    let mut keys = Keys {
        keys: if JSON { &JSON_KEYS } else { &TEXT_KEYS },
        open: false,
        skip: 1,
    };
    if JSON {
        c.byte(b'{');
    }
    for &field in fields {
        match field {
            Field::Time => {
                keys.put(c, field, JSON);
                c.put(&emit::rfc3339(line.time));
            }
            Field::Client => {
                keys.put(c, field, JSON);
                addr(line.client, c);
            }
            // An HTTP token and a protocol of ours: never escaped, in text unquoted.
            Field::Method => {
                keys.put(c, field, JSON);
                c.put(line.method.as_bytes());
            }
            Field::Protocol => {
                keys.put(c, field, JSON);
                c.put(line.protocol.as_bytes());
            }
            Field::Host => text::<JSON>(&mut keys, c, field, line.host),
            Field::Path => text::<JSON>(&mut keys, c, field, Some(line.path.as_bytes())),
            Field::Route => text::<JSON>(&mut keys, c, field, line.route.map(str::as_bytes)),
            Field::Cluster => {
                text::<JSON>(&mut keys, c, field, line.cluster.map(str::as_bytes));
            }
            Field::Listener => text::<JSON>(&mut keys, c, field, Some(line.listener.as_bytes())),
            Field::Reason => text::<JSON>(&mut keys, c, field, line.reason),
            Field::RequestId => text::<JSON>(&mut keys, c, field, line.request_id),
            Field::TraceId => text::<JSON>(&mut keys, c, field, line.trace_id),
            Field::Status => {
                keys.put(c, field, false);
                emit::status(line.status, c);
            }
            Field::BytesIn => {
                keys.put(c, field, false);
                match line.bytes_in {
                    Some(n) => emit::number(n, c),
                    None => absent::<JSON>(c),
                }
            }
            Field::BytesOut => {
                keys.put(c, field, false);
                emit::number(line.bytes_out, c);
            }
            Field::DurationMs => {
                keys.put(c, field, false);
                emit::millis(micros(line.duration), c);
            }
            Field::Upstream => match line.upstream {
                Some((host, port)) => {
                    keys.put(c, field, JSON);
                    endpoint(host, port, c, JSON);
                }
                None => {
                    keys.put(c, field, false);
                    absent::<JSON>(c);
                }
            },
            Field::UpstreamMs => {
                keys.put(c, field, false);
                match line.upstream_time {
                    Some(d) => emit::millis(micros(d), c),
                    None => absent::<JSON>(c),
                }
            }
        }
    }
    if keys.open {
        c.byte(b'"');
    }
    if JSON {
        c.put(b"}\n");
    } else {
        c.byte(b'\n');
    }
}

/// A string value: JSON-escaped and quoted, or in text bare when [`text_plain`]
/// and quoted and escaped otherwise; absent: `null` or `-`.
#[inline(always)]
fn text<const JSON: bool>(keys: &mut Keys<'_>, c: &mut Cursor<'_>, field: Field, v: Option<&[u8]>) {
    let Some(v) = v else {
        keys.put(c, field, false);
        absent::<JSON>(c);
        return;
    };
    if JSON || !text_plain(v) {
        keys.put(c, field, true);
        emit::escape(v, c, JSON);
    } else {
        keys.put(c, field, false);
        c.put(v);
    }
}

#[inline(always)]
fn absent<const JSON: bool>(c: &mut Cursor<'_>) {
    if JSON {
        c.put_block(b"null", 4);
    } else {
        c.byte(b'-');
    }
}

/// An endpoint's `host:port`, an IPv6 host in brackets.
#[inline]
fn endpoint(host: &str, port: u16, c: &mut Cursor<'_>, json: bool) {
    if emit::contains(host.as_bytes(), b':') {
        c.byte(b'[');
        emit::escape(host.as_bytes(), c, json);
        c.byte(b']');
    } else {
        emit::escape(host.as_bytes(), c, json);
    }
    c.byte(b':');
    emit::number(u64::from(port), c);
}

/// The keys of each field (by its discriminant) in four forms, indexed by
/// (the value before was quoted) × 2 + (this value is quoted): `"` closing the value
/// before, the separator, the key, and `"` opening this value.
type KeyForms = [[Key; 4]; Field::ALL.len()];

const fn keys(json: bool) -> KeyForms {
    let mut keys = [[emit::key_of([0; emit::KEY_BLOCK], 0); 4]; Field::ALL.len()];
    let mut i = 0;
    while i < Field::ALL.len() {
        let field = Field::ALL[i];
        let key = if json {
            field.json_key()
        } else {
            field.text_key()
        };
        let mut form = 0;
        while form < 4 {
            let mut bytes = [0u8; emit::KEY_BLOCK];
            let mut len = 0;
            if form & 2 != 0 {
                bytes[0] = b'"';
                len = 1;
            }
            let k = key.as_bytes();
            let mut j = 0;
            while j < k.len() {
                bytes[len] = k[j];
                len += 1;
                j += 1;
            }
            if form & 1 != 0 {
                bytes[len] = b'"';
                len += 1;
            }
            keys[field as usize][form] = emit::key_of(bytes, len);
            form += 1;
        }
        i += 1;
    }
    keys
}

const JSON_KEYS: KeyForms = keys(true);
const TEXT_KEYS: KeyForms = keys(false);

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// In text, a value written bare: not empty, no space, `"`, `=`, `\`, control or
/// non-ASCII byte. Anything else is quoted and escaped, so a line is always valid
/// UTF-8 and one line.
fn text_plain(v: &[u8]) -> bool {
    !v.is_empty()
        && v.iter()
            .all(|&b| b > b' ' && b != b'"' && b != b'=' && b != b'\\' && b < 0x7f)
}

#[inline]
fn addr(a: SocketAddr, c: &mut Cursor<'_>) {
    match a {
        SocketAddr::V4(v4) => emit::ipv4(v4.ip().octets(), c),
        SocketAddr::V6(v6) => {
            // Rare enough for `fmt`; no `String` all the same.
            use std::io::Write;
            let mut text = [0u8; 48];
            let mut w = &mut text[..];
            let _ = write!(w, "[{}]", v6.ip());
            let len = 48 - w.len();
            c.put(&text[..len]);
        }
    }
    c.byte(b':');
    emit::number(u64::from(a.port()), c);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Line<'static> {
        Line {
            time: 1_796_137_445_123,
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
}
