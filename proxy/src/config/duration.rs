//! Human durations in config files: `250ms`, `2s`, `1m`, `1h`, `1.5s`.

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

/// Parses `250ms`, `2s`, `1m`, `1h` (a decimal number is allowed: `1.5s`).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(DurationError::Empty);
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
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
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
    }

    #[test]
    fn formats_round_trip() {
        for d in ["250ms", "2s", "90s", "0s"] {
            assert_eq!(format_duration(parse_duration(d).unwrap()), d);
        }
    }
}
