//! Samples from other producers, bucketed into the report's per-second `extra_series`.
//!
//! The input is JSON lines (`--extra-series FILE`), one sample per line:
//! `{"unix_ms": 1764600000123, "desired": 2, "ready": 1, "panic": true}`. Every field
//! other than `unix_ms` that is a number (or a bool: 1/0) is a series of that name; a
//! second's value is the **last** sample taken in it (`null` when none was). Samples
//! outside the run are dropped. An unterminated last line (a sampler still writing) is
//! ignored; any other line that is not such an object is an error.

use std::collections::BTreeMap;

/// A malformed sample line.
#[derive(Debug, thiserror::Error)]
#[error("extra series line {line}: {reason}")]
pub struct ExtraError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// Buckets `text` into `seconds` one-second slots from `started_at_unix_ms`.
pub fn bucket(
    text: &str,
    started_at_unix_ms: u64,
    seconds: usize,
) -> Result<BTreeMap<String, Vec<Option<f64>>>, ExtraError> {
    let mut out: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.split('\n').collect();
    for (i, raw) in lines.iter().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let last_unterminated = !complete && i + 1 == lines.len();
        let parsed = serde_json::from_str::<serde_json::Value>(line);
        let obj = match parsed {
            Ok(serde_json::Value::Object(o)) => o,
            _ if last_unterminated => continue,
            Ok(_) => return Err(err(i, "not a JSON object")),
            Err(e) => return Err(err(i, &e.to_string())),
        };
        let at = obj
            .get("unix_ms")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| err(i, "no unix_ms (integer milliseconds)"))?;
        let Some(offset) = at.checked_sub(started_at_unix_ms) else {
            continue;
        };
        let slot = usize::try_from(offset / 1000).unwrap_or(usize::MAX);
        if slot >= seconds {
            continue;
        }
        for (name, v) in &obj {
            let value = match v {
                _ if name == "unix_ms" => continue,
                serde_json::Value::Number(n) => n.as_f64(),
                serde_json::Value::Bool(b) => Some(f64::from(u8::from(*b))),
                _ => None,
            };
            if let Some(value) = value {
                out.entry(name.clone())
                    .or_insert_with(|| vec![None; seconds])[slot] = Some(value);
            }
        }
    }
    Ok(out)
}

fn err(index: usize, reason: &str) -> ExtraError {
    ExtraError {
        line: index + 1,
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_sample_of_each_second_wins() {
        let text = "{\"unix_ms\":1000,\"desired\":1,\"ready\":1}\n\
                    {\"unix_ms\":1600,\"desired\":3,\"ready\":1,\"panic\":true}\n\
                    {\"unix_ms\":3100,\"desired\":3,\"ready\":3,\"panic\":false,\"reason\":\"x\"}\n";
        let s = bucket(text, 1000, 4).unwrap();
        assert_eq!(s["desired"], vec![Some(3.0), None, Some(3.0), None]);
        assert_eq!(s["ready"], vec![Some(1.0), None, Some(3.0), None]);
        assert_eq!(s["panic"], vec![Some(1.0), None, Some(0.0), None]);
        assert!(!s.contains_key("reason"));
    }

    #[test]
    fn samples_outside_the_run_are_dropped() {
        let text = "{\"unix_ms\":500,\"ready\":9}\n{\"unix_ms\":5000,\"ready\":9}\n";
        assert!(bucket(text, 1000, 2).unwrap().is_empty());
    }

    #[test]
    fn unterminated_last_line_is_ignored_but_bad_lines_are_errors() {
        let ok = bucket("{\"unix_ms\":1000,\"ready\":1}\n{\"unix_ms\":10", 1000, 1).unwrap();
        assert_eq!(ok["ready"], vec![Some(1.0)]);
        let e = bucket("nope\n{\"unix_ms\":1000}\n", 1000, 1).unwrap_err();
        assert_eq!(e.line, 1);
        let e = bucket("{\"ready\":1}\n", 1000, 1).unwrap_err();
        assert!(e.to_string().contains("unix_ms"), "{e}");
    }
}
