//! Secrets named in config files (bearer tokens): a literal, `file:PATH` (relative
//! to the config file's directory, surrounding whitespace trimmed) or `env:NAME`.
//! Shared by the proxy's `control_plane.token` and the control plane's `tokens:`, so
//! both read a secret alike. A [`Secret`] is never logged or serialized: `Debug` and
//! `Serialize` show `<redacted>`.

use std::fmt;
use std::path::Path;

/// A secret's bytes; `Debug` and `Serialize` redact it, equality is constant-time.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Secret(secret.into())
    }

    /// Whether `presented` equals this secret, in time that depends only on the lengths.
    pub fn matches(&self, presented: &[u8]) -> bool {
        constant_time_eq(&self.0, presented)
    }

    /// The secret's bytes, to send (never to log).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret's length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// Compares two byte strings without an early exit on the first difference.
///
/// The length is not secret (tokens have a public minimum length); the content is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimizer from turning the fold into an early-exit compare.
    std::hint::black_box(diff) == 0
}

/// Reads one secret spec (`literal`, `file:PATH`, `env:NAME`); the error names the
/// file or variable, never the secret.
pub fn resolve(spec: &str, base_dir: &Path) -> Result<Secret, String> {
    if let Some(path) = spec.strip_prefix("file:") {
        let full = base_dir.join(path);
        let text = std::fs::read_to_string(&full)
            .map_err(|e| format!("cannot read token file {}: {e}", full.display()))?;
        Ok(Secret::new(text.trim().as_bytes()))
    } else if let Some(name) = spec.strip_prefix("env:") {
        let value = std::env::var(name).map_err(|e| format!("environment variable {name}: {e}"))?;
        Ok(Secret::new(value.trim().as_bytes()))
    } else {
        Ok(Secret::new(spec.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn debug_and_serialize_never_show_the_secret() {
        let t = Secret::new("super-secret-token-value");
        assert!(!format!("{t:?}").contains("secret-token"));
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"<redacted>\"");
    }

    #[test]
    fn resolves_literal_file_and_env() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "  from-a-file-0123456789\n").unwrap();
        let f = resolve("file:tok", dir.path()).unwrap();
        assert!(f.matches(b"from-a-file-0123456789"));
        assert!(resolve("plain-literal", dir.path())
            .unwrap()
            .matches(b"plain-literal"));
        let missing = resolve("file:nope", dir.path()).unwrap_err();
        assert!(missing.contains("nope"), "{missing}");
        let unset = resolve("env:FLOODGATE_TEST_SURELY_UNSET_VAR", dir.path()).unwrap_err();
        assert!(unset.contains("FLOODGATE_TEST_SURELY_UNSET_VAR"), "{unset}");
    }
}
