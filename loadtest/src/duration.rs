//! Human durations: `250ms`, `2s`, `1m`, `1.5s`, `1h`, `500us`, a bare `0`.
//!
//! Every duration on the command line and in scenario files goes through [`parse`],
//! which is Floodgate's own config grammar ([`floodgate::config::parse_duration`]), so
//! the load generator and the proxy accept the same text. [`format()`] writes the short
//! report form (`1m`, `2s`, `1500ms`), which that grammar reads back.

use std::time::Duration;

pub use floodgate::config::{parse_duration as parse, DurationError};

/// Formats a duration the way reports show it (`1m`, `2s`, `1500ms`); [`parse`] reads it.
pub fn format(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 60_000.0 && ms % 60_000.0 == 0.0 {
        format!("{}m", ms / 60_000.0)
    } else if ms >= 1000.0 && ms % 1000.0 == 0.0 {
        format!("{}s", ms / 1000.0)
    } else {
        format!("{ms}ms")
    }
}

/// Serde helpers so scenario files can write `duration: 10s`.
pub mod serde_human {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Deserializes a human duration string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse(&s).map_err(serde::de::Error::custom)
    }

    /// Serializes a duration as a human string.
    pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*v))
    }
}

/// Serde helpers for `Option<Duration>` fields.
pub mod serde_human_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Deserializes an optional human duration string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| super::parse(&s).map_err(serde::de::Error::custom))
            .transpose()
    }

    /// Serializes an optional duration as a human string.
    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&super::format(*v)),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("500us").unwrap(), Duration::from_micros(500));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_bad_forms() {
        for bad in ["", "5", "ms", "5x", "1.2.3s", "-1s"] {
            assert!(parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn format_round_trips() {
        for s in ["250ms", "2s", "1m", "1500ms", "0.5ms"] {
            assert_eq!(format(parse(s).unwrap()), s);
        }
    }
}
