//! Bearer tokens: where they come from (literal, `file:`, `env:`), the roles they
//! grant, and a constant-time comparison. A token is never logged or serialized:
//! its `Debug` shows only the role.

use std::fmt;
use std::path::Path;

use super::file::FileTokens;
use super::{ConfigError, MIN_TOKEN_LEN};

/// Who a caller is, by the token it presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A proxy: polls snapshots, ACKs and NACKs.
    Proxy,
    /// An app instance: registers, heartbeats, deregisters itself.
    App,
    /// An operator: reads everything, may drive the registry.
    Operator,
}

impl Role {
    /// Every role, in `tokens:` order.
    pub const ALL: [Role; 3] = [Role::Proxy, Role::App, Role::Operator];

    /// The field name in `tokens:`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Proxy => "proxy",
            Role::App => "app",
            Role::Operator => "operator",
        }
    }
}

/// A secret; `Debug` redacts it.
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl Token {
    /// Wraps a secret.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Token(secret.into())
    }

    /// Whether `presented` equals this token, in time that depends only on the lengths.
    pub fn matches(&self, presented: &[u8]) -> bool {
        constant_time_eq(&self.0, presented)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
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

/// The token of every role.
#[derive(Debug, Clone)]
pub struct Tokens {
    proxy: Token,
    app: Token,
    operator: Token,
}

impl Tokens {
    /// Builds the set directly (for embedding and tests).
    pub fn new(proxy: Token, app: Token, operator: Token) -> Self {
        Tokens {
            proxy,
            app,
            operator,
        }
    }

    /// The role whose token `presented` is; every token is compared, so the time
    /// taken does not tell which one (if any) matched.
    pub fn role_of(&self, presented: &[u8]) -> Option<Role> {
        let p = self.proxy.matches(presented);
        let a = self.app.matches(presented);
        let o = self.operator.matches(presented);
        match (p, a, o) {
            (true, _, _) => Some(Role::Proxy),
            (_, true, _) => Some(Role::App),
            (_, _, true) => Some(Role::Operator),
            _ => None,
        }
    }
}

/// Resolves `tokens:`; `None` when any is missing or invalid (errors pushed).
pub(super) fn validate(
    f: Option<FileTokens>,
    base_dir: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<Tokens> {
    let f = f.unwrap_or_default();
    let mut resolved: Vec<Option<Vec<u8>>> = Vec::new();
    for (role, spec) in [
        (Role::Proxy, f.proxy),
        (Role::App, f.app),
        (Role::Operator, f.operator),
    ] {
        let path = format!("tokens.{}", role.name());
        let secret = match spec {
            None => {
                errors.push(ConfigError::at(
                    &path,
                    "required: a literal, `file:PATH` or `env:NAME`",
                ));
                None
            }
            Some(spec) => match resolve(&spec, base_dir) {
                Ok(s) if s.len() < MIN_TOKEN_LEN => {
                    errors.push(ConfigError::at(
                        &path,
                        format!("the token must be at least {MIN_TOKEN_LEN} bytes long"),
                    ));
                    None
                }
                Ok(s) => Some(s),
                Err(reason) => {
                    errors.push(ConfigError::at(&path, reason));
                    None
                }
            },
        };
        resolved.push(secret);
    }
    for i in 0..resolved.len() {
        for j in (i + 1)..resolved.len() {
            if let (Some(a), Some(b)) = (&resolved[i], &resolved[j]) {
                if a == b {
                    errors.push(ConfigError::at(
                        format!("tokens.{}", Role::ALL[j].name()),
                        format!(
                            "must differ from tokens.{}: each role needs its own token",
                            Role::ALL[i].name()
                        ),
                    ));
                }
            }
        }
    }
    let mut it = resolved.into_iter();
    match (it.next()??, it.next()??, it.next()??) {
        (p, a, o) if errors.is_empty() => Some(Tokens::new(Token(p), Token(a), Token(o))),
        _ => None,
    }
}

/// Reads one token spec; the error never contains the secret.
fn resolve(spec: &str, base_dir: &Path) -> Result<Vec<u8>, String> {
    if let Some(path) = spec.strip_prefix("file:") {
        let full = base_dir.join(path);
        let text = std::fs::read_to_string(&full)
            .map_err(|e| format!("cannot read token file {}: {e}", full.display()))?;
        Ok(text.trim().as_bytes().to_vec())
    } else if let Some(name) = spec.strip_prefix("env:") {
        let value = std::env::var(name).map_err(|e| format!("environment variable {name}: {e}"))?;
        Ok(value.trim().as_bytes().to_vec())
    } else {
        Ok(spec.as_bytes().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let t = Token::new("super-secret-token-value");
        assert!(!format!("{t:?}").contains("secret"));
    }
}
