//! Bearer tokens: where they come from (literal, `file:`, `env:`), the roles they
//! grant, and a constant-time comparison. A token is never logged or serialized:
//! its `Debug` shows only the role.

use std::path::Path;

use floodgate::config::secret::{self, Secret};

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

/// A bearer token: the floodgate library's [`Secret`] (`Debug` redacts it,
/// comparison is constant-time), shared with the proxy's `control_plane.token`.
pub type Token = Secret;

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

    /// The app role's token: what the process scaler hands its replicas in
    /// `FLOODGATE_APP_TOKEN` (never on their command line).
    pub fn app(&self) -> &Token {
        &self.app
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
        (p, a, o) if errors.is_empty() => {
            Some(Tokens::new(Token::new(p), Token::new(a), Token::new(o)))
        }
        _ => None,
    }
}

/// Reads one token spec (the floodgate library's one reader of secrets).
fn resolve(spec: &str, base_dir: &Path) -> Result<Vec<u8>, String> {
    secret::resolve(spec, base_dir).map(|s| s.expose().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let t = Token::new("super-secret-token-value");
        assert!(!format!("{t:?}").contains("secret"));
    }
}
