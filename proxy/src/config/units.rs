//! The workspace's one grammar for human durations and byte sizes.
//!
//! Durations (`500us`, `250ms`, `2s`, `1.5s`, `1m`, `1h`, a bare `0`) are read by
//! [`parse_duration`] and written by [`format_duration`]; sizes (`65536`, `64KiB`,
//! `10MB`) by [`parse_size`]. Config files, the load generator's flags and its scenario
//! files all go through these functions, so they accept the same text.

use std::time::Duration;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string was empty.
    #[error("empty duration")]
    Empty,
    /// No unit, or an unknown one.
    #[error("`{0}` needs a unit: ms, s, m or h (e.g. `250ms`, `2s`)")]
    Unit(String),
    /// The number part did not parse or was negative.
    #[error("`{0}` is not a non-negative number followed by a unit")]
    Number(String),
}

/// Parses `<number><unit>`: a non-negative decimal number (`2`, `1.5`) and a unit `us`
/// (or `µs`), `ms`, `s`, `m` (or `min`) or `h`, spaces around and between allowed
/// (`250ms`, `2s`, `1.5s`, `1m`, `1h`, `500us`). A bare `0` is zero; any other number
/// needs a unit.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(DurationError::Empty);
    }
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| DurationError::Unit(t.to_owned()))?;
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| DurationError::Number(t.to_owned()))?;
    if !value.is_finite() || value < 0.0 {
        return Err(DurationError::Number(t.to_owned()));
    }
    let secs = match unit.trim() {
        "us" | "µs" => value / 1_000_000.0,
        "ms" => value / 1000.0,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(DurationError::Unit(t.to_owned())),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| DurationError::Number(t.to_owned()))
}

/// Formats a duration the way config files write it (`250ms`, `2s`, `90s`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else if d.subsec_nanos() % 1_000_000 == 0 {
        format!("{ms}ms")
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// Parses a byte size: a plain integer (`65536`) or an integer with a unit: `B`, `KiB`,
/// `MiB`, `GiB` (powers of 1024) or `KB`, `MB`, `GB` (powers of 1000).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        format!("`{text}` is not a size: write bytes (`65536`) or a number with KiB, MiB, GiB, KB, MB or GB (`64KiB`)")
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Serde helper writing a duration as `format_duration` text.
pub fn serialize_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

/// Serde helper writing an optional duration as text or null.
pub fn serialize_opt_duration<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&format_duration(*d)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration(" 0s "), Ok(Duration::ZERO));
        assert_eq!(parse_duration("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("500µs"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("2 s"), Ok(Duration::from_secs(2)));
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert!(matches!(parse_duration("10"), Err(DurationError::Unit(_))));
        assert!(matches!(parse_duration("10d"), Err(DurationError::Unit(_))));
        assert!(matches!(parse_duration("s"), Err(DurationError::Number(_))));
        assert!(matches!(
            parse_duration("1.2.3s"),
            Err(DurationError::Number(_))
        ));
        for bad in ["5", "ms", "5x", "-1s", "0.0", "1e3s"] {
            assert!(parse_duration(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn formats_round_trip() {
        for d in ["250ms", "2s", "90s", "0s"] {
            assert_eq!(format_duration(parse_duration(d).unwrap()), d);
        }
    }
}
