//! The byte-level writers an access-log line is made of, each cheap on the common
//! case: pieces written through a [`Cursor`] into room made once per line, keys and
//! short numbers copied as fixed-size blocks (no `memcpy` call per piece), numbers
//! two digits per division, values scanned eight bytes at a time for a byte that
//! needs escaping and copied whole when none does, the time's
//! `YYYY-MM-DDTHH:MM:SS` made once a second per thread. Pure: unit-tested on fixed
//! inputs.

use std::cell::Cell;

/// A line being written into room made for it beforehand: every piece is a
/// bounds-checked copy into a slice (no capacity check, no length update of a
/// `Vec` per piece), fixed-size pieces as constant-size copies. A piece that
/// does not fit marks the cursor overflowed instead of being written.
pub struct Cursor<'a> {
    buf: &'a mut [u8],
    pos: usize,
    overflow: bool,
}

impl<'a> Cursor<'a> {
    /// Writes into `buf` from its start.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            overflow: false,
        }
    }

    /// The bytes written, or `None` when a piece did not fit.
    pub fn written(&self) -> Option<usize> {
        (!self.overflow).then_some(self.pos)
    }

    /// Appends `bytes`.
    #[inline(always)]
    pub fn put(&mut self, bytes: &[u8]) {
        match self.buf.get_mut(self.pos..self.pos + bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.pos += bytes.len();
            }
            None => self.overflow = true,
        }
    }

    /// Appends the first `len` bytes of `block`, copying the whole block (the
    /// room needs `N` bytes; what is past `len` is overwritten by the next piece).
    #[inline(always)]
    pub fn put_block<const N: usize>(&mut self, block: &[u8; N], len: usize) {
        match self.buf.get_mut(self.pos..self.pos + N) {
            Some(dst) => {
                dst.copy_from_slice(block);
                self.pos += len.min(N);
            }
            None => self.overflow = true,
        }
    }

    /// Appends one byte.
    #[inline(always)]
    pub fn byte(&mut self, b: u8) {
        match self.buf.get_mut(self.pos) {
            Some(dst) => {
                *dst = b;
                self.pos += 1;
            }
            None => self.overflow = true,
        }
    }
}

/// The longest key with the quotes around it (`","duration_ms":"`) and more fit in one block.
pub const KEY_BLOCK: usize = 24;

/// A key padded to [`KEY_BLOCK`] bytes, and its length.
pub type Key = ([u8; KEY_BLOCK], u8);

/// The first `len` bytes of `block` as a [`Key`] (at compile time).
pub const fn key_of(block: [u8; KEY_BLOCK], len: usize) -> Key {
    assert!(len <= KEY_BLOCK);
    (block, len as u8)
}

/// Appends `key`, skipping its first `skip` bytes (0 or 1: the separator before
/// the line's first field).
#[inline(always)]
pub fn put_key(c: &mut Cursor<'_>, key: &Key, skip: usize) {
    if skip == 0 {
        c.put_block(&key.0, usize::from(key.1));
    } else {
        c.put(key.0.get(skip..usize::from(key.1)).unwrap_or_default());
    }
}

/// Two decimal digits of each number below 100.
const DEC2: [[u8; 2]; 100] = {
    let mut t = [[0u8; 2]; 100];
    let mut n = 0;
    while n < 100 {
        t[n] = [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
        n += 1;
    }
    t
};

/// Appends `n` in decimal: two digits per division, numbers below 10^8 (every
/// status, port and most sizes and durations) as one fixed-size copy.
#[inline]
pub fn number(n: u64, c: &mut Cursor<'_>) {
    if n < 10 {
        c.byte(b'0' + n as u8);
        return;
    }
    if n >= 100_000_000 {
        c.put(itoa::Buffer::new().format(n).as_bytes());
        return;
    }
    let digits = n.ilog10() as usize + 1;
    let mut block = [0u8; 8];
    let mut end = digits;
    let mut rest = n as usize;
    while rest >= 100 {
        if let Some(pair) = block.get_mut(end.saturating_sub(2)..end) {
            pair.copy_from_slice(&DEC2[rest % 100]);
        }
        rest /= 100;
        end = end.saturating_sub(2);
    }
    if rest >= 10 {
        block[..2].copy_from_slice(&DEC2[rest]);
    } else {
        block[0] = b'0' + rest as u8;
    }
    c.put_block(&block, digits);
}

/// Appends a status code: three digits as one fixed-size copy.
#[inline]
pub fn status(code: u16, c: &mut Cursor<'_>) {
    if (100..1000).contains(&code) {
        let [a, b] = DEC2[usize::from(code % 100)];
        c.put_block(&[b'0' + (code / 100) as u8, a, b], 3);
    } else {
        number(u64::from(code), c);
    }
}

/// `octet` and a dot, in decimal, padded to four bytes, and the length of the digits.
const OCTETS: [([u8; 4], u8); 256] = {
    let mut t = [([0u8; 4], 0u8); 256];
    let mut n = 0;
    while n < 256 {
        let (digits, len) = if n >= 100 {
            (
                [
                    b'0' + (n / 100) as u8,
                    b'0' + (n / 10 % 10) as u8,
                    b'0' + (n % 10) as u8,
                    b'.',
                ],
                3,
            )
        } else if n >= 10 {
            ([b'0' + (n / 10) as u8, b'0' + (n % 10) as u8, b'.', 0], 2)
        } else {
            ([b'0' + n as u8, b'.', 0, 0], 1)
        };
        t[n] = (digits, len);
        n += 1;
    }
    t
};

/// Appends an IPv4 address in dotted decimal, an octet per fixed-size copy.
#[inline]
pub fn ipv4(octets: [u8; 4], c: &mut Cursor<'_>) {
    let [a, b, d, last] = octets;
    for octet in [a, b, d] {
        let (digits, len) = &OCTETS[usize::from(octet)];
        // With its dot.
        c.put_block(digits, usize::from(*len) + 1);
    }
    let (digits, len) = &OCTETS[usize::from(last)];
    c.put_block(digits, usize::from(*len));
}

/// Appends microseconds as milliseconds with three decimals (`1.234`).
#[inline]
pub fn millis(micros: u64, c: &mut Cursor<'_>) {
    number(micros / 1000, c);
    let frac = (micros % 1000) as usize;
    let [a, b] = DEC2[frac % 100];
    c.put_block(&[b'.', b'0' + (frac / 100) as u8, a, b], 4);
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Whether a byte of `x` is zero (exact as an existence test).
#[inline(always)]
fn has_zero(x: u64) -> u64 {
    x.wrapping_sub(LO) & !x & HI
}

/// Whether a byte of the word `x` must be escaped in a JSON string (or needs the
/// UTF-8 check): a control byte, `"`, `\`, DEL, or a byte above ASCII.
#[inline(always)]
fn word_needs_escape(x: u64) -> bool {
    let control = x.wrapping_sub(LO * 0x20) & !x & HI;
    let quote = has_zero(x ^ (LO * u64::from(b'"')));
    let backslash = has_zero(x ^ (LO * u64::from(b'\\')));
    let del = has_zero(x ^ (LO * 0x7f));
    (control | quote | backslash | del | (x & HI)) != 0
}

/// True when every byte of `v` is printable ASCII other than `"` and `\`: the
/// value is copied into a quoted string as it is. Eight bytes per step.
#[inline]
pub fn plain(v: &[u8]) -> bool {
    let word = |chunk: &[u8]| {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        !word_needs_escape(u64::from_le_bytes(word))
    };
    let Some(last) = v.len().checked_sub(8) else {
        return v.iter().all(|&b| PLAIN[usize::from(b)]);
    };
    // Whole words, then the last eight bytes (overlapping the words before).
    v.chunks_exact(8).all(word) && word(&v[last..])
}

/// Whether `v` holds `byte`, eight bytes per step.
#[inline]
pub fn contains(v: &[u8], byte: u8) -> bool {
    let mut chunks = v.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if has_zero(u64::from_le_bytes(word) ^ (LO * u64::from(byte))) != 0 {
            return true;
        }
    }
    chunks.remainder().contains(&byte)
}

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

/// Copies `v`, escaping what must be: a value with nothing to escape (the common
/// case, found by [`plain`]) is one copy; otherwise runs of plain bytes are copied
/// whole and UTF-8 above ASCII is kept when the value is valid UTF-8. Bytes that are
/// not are written `\u00XX` (`json`) or `\xXX`, so a line stays valid UTF-8.
#[inline]
pub fn escape(v: &[u8], c: &mut Cursor<'_>, json: bool) {
    if plain(v) {
        c.put(v);
    } else {
        escape_slow(v, c, json);
    }
}

#[cold]
fn escape_slow(v: &[u8], out: &mut Cursor<'_>, json: bool) {
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
        out.put(&v[run..i]);
        run = i + 1;
        match b {
            b'"' => out.put(b"\\\""),
            b'\\' => out.put(b"\\\\"),
            b'\n' => out.put(b"\\n"),
            b'\r' => out.put(b"\\r"),
            b'\t' => out.put(b"\\t"),
            _ => {
                out.put(if json { b"\\u00" } else { b"\\x" });
                out.byte(HEX[usize::from(b >> 4)]);
                out.byte(HEX[usize::from(b & 0xf)]);
            }
        }
    }
    out.put(&v[run..]);
}

thread_local! {
    /// The last second formatted on this thread and its `YYYY-MM-DDTHH:MM:SS`.
    static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of `unix_ms` (milliseconds since the Unix epoch); the
/// part up to the second is formatted once a second per thread.
pub fn rfc3339(unix_ms: u64) -> [u8; 24] {
    let secs = unix_ms / 1000;
    let mut out = [0u8; 24];
    let cached = SECOND.try_with(|cache| {
        let (at, text) = cache.get();
        if at == secs {
            return text;
        }
        let text = crate::time::civil(secs);
        cache.set((secs, text));
        text
    });
    out[..19].copy_from_slice(&cached.unwrap_or_else(|_| crate::time::civil(secs)));
    let ms = unix_ms % 1000;
    out[19] = b'.';
    out[20] = b'0' + (ms / 100) as u8;
    out[21] = b'0' + (ms / 10 % 10) as u8;
    out[22] = b'0' + (ms % 10) as u8;
    out[23] = b'Z';
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `write` puts through a cursor with room to spare.
    fn written(write: impl FnOnce(&mut Cursor<'_>)) -> Vec<u8> {
        let mut buf = vec![0u8; 256];
        let mut c = Cursor::new(&mut buf);
        write(&mut c);
        let n = c.written().expect("room enough");
        buf.truncate(n);
        buf
    }

    #[test]
    fn numbers_are_written_in_decimal_at_every_length() {
        let mut n = 0u64;
        let mut samples = vec![u64::MAX, 99_999_999, 100_000_000, 1_234_567, 1_000];
        while n < u64::MAX / 10 {
            samples.extend([n, n + 1, n.saturating_sub(1)]);
            n = n * 10 + 9;
        }
        for n in samples {
            let out = written(|c| {
                c.byte(b'x');
                number(n, c);
            });
            assert_eq!(out, format!("x{n}").into_bytes());
        }
        for code in [0, 99, 100, 200, 404, 999, 1000, u16::MAX] {
            assert_eq!(written(|c| status(code, c)), code.to_string().into_bytes());
        }
    }

    #[test]
    fn a_piece_that_does_not_fit_overflows_the_cursor() {
        let mut buf = [0u8; 10];
        let mut c = Cursor::new(&mut buf);
        c.put(b"12345678");
        assert_eq!(c.written(), Some(8));
        // A number's block is 8 bytes wide although it has two digits.
        number(42, &mut c);
        assert_eq!(c.written(), None);
    }

    #[test]
    fn keys_are_copied_whole_or_without_their_separator() {
        let mut block = [0u8; KEY_BLOCK];
        block[..15].copy_from_slice(b",\"duration_ms\":");
        let k = key_of(block, 15);
        let out = written(|c| {
            c.byte(b'{');
            put_key(c, &k, 1);
            put_key(c, &k, 0);
        });
        assert_eq!(out, b"{\"duration_ms\":,\"duration_ms\":");
    }

    #[test]
    fn the_fast_scan_agrees_with_a_byte_by_byte_check() {
        // Every byte at every position of values of 3, 8, 13 and 17 bytes (short,
        // one word, a word and an overlapping tail, two words and a tail).
        for len in [3, 8, 13, 17] {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut v = b"abcdefghijklmnopq"[..len].to_vec();
                    v[at] = b;
                    let expected = v.iter().all(|&c| PLAIN[usize::from(c)]);
                    assert_eq!(plain(&v), expected, "byte {b:#x} at {at} of {len}");
                    assert_eq!(contains(&v, b':'), v.contains(&b':'), "{b:#x} at {at}");
                }
            }
        }
    }

    #[test]
    fn escaping_keeps_plain_values_and_escapes_the_rest() {
        let out = written(|c| escape(b"plain value / 123", c, true));
        assert_eq!(out, b"plain value / 123");
        let out = written(|c| escape("a\"b\\c\nd\u{7f}é".as_bytes(), c, true));
        assert_eq!(out, "a\\\"b\\\\c\\nd\\u007fé".as_bytes());
        let out = written(|c| escape(b"\xff\x1b", c, false));
        assert_eq!(out, b"\\xff\\x1b");
    }

    #[test]
    fn every_ipv4_octet_is_written_in_dotted_decimal() {
        for n in 0..=255u8 {
            let out = written(|c| ipv4([n, 0, 255, n], c));
            assert_eq!(out, format!("{n}.0.255.{n}").into_bytes());
        }
    }

    #[test]
    fn millis_keep_microseconds() {
        assert_eq!(written(|c| millis(12_345_678, c)), b"12345.678");
        assert_eq!(written(|c| millis(1_005, c)), b"1.005");
        assert_eq!(written(|c| millis(0, c)), b"0.000");
    }

    #[test]
    fn the_time_is_rfc3339_with_milliseconds() {
        assert_eq!(&rfc3339(1_796_137_445_123), b"2026-12-01T15:04:05.123Z");
        // The same second again (from the cache), then the next one.
        assert_eq!(&rfc3339(1_796_137_445_999), b"2026-12-01T15:04:05.999Z");
        assert_eq!(&rfc3339(1_796_137_446_007), b"2026-12-01T15:04:06.007Z");
    }

    #[test]
    fn the_civil_date_matches_known_days() {
        let at = |s: u64| String::from_utf8(crate::time::civil(s).to_vec()).unwrap();
        assert_eq!(at(0), "1970-01-01T00:00:00");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59");
        assert_eq!(at(1_796_137_445), "2026-12-01T15:04:05");
    }
}
