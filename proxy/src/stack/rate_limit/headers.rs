//! The `RateLimit-Policy` and `RateLimit` response fields of
//! draft-ietf-httpapi-ratelimit-headers-10, in the Structured Field syntax.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::policy::{Decision, Scope};
use crate::config::Rate;

/// `RateLimit-Policy` response field (draft-ietf-httpapi-ratelimit-headers-10).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` response field (draft-ietf-httpapi-ratelimit-headers-10).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The `RateLimit-Policy` value listing every configured limit of `route`.
pub(super) fn policy_value(
    route: &str,
    route_rate: Option<Rate>,
    key_rate: Option<Rate>,
) -> Option<HeaderValue> {
    let mut policies = Vec::new();
    if let Some(rate) = route_rate {
        policies.push(policy_item(route, Scope::Route, rate));
    }
    if let Some(rate) = key_rate {
        policies.push(policy_item(route, Scope::Key, rate));
    }
    (!policies.is_empty())
        .then(|| HeaderValue::from_str(&policies.join(", ")).ok())
        .flatten()
}

/// `RateLimit-Policy` (`policy`, every configured limit) and `RateLimit` (the
/// limits `decision` checked) for the route named `route`.
pub(super) fn fields(policy: Option<&HeaderValue>, route: &str, decision: &Decision) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(policy) = policy {
        headers.insert(RATELIMIT_POLICY, policy.clone());
    }
    let mut items = Vec::with_capacity(2);
    for (scope, standing) in [(Scope::Route, decision.route), (Scope::Key, decision.key)] {
        let Some(s) = standing else { continue };
        let mut secs = s.reset.as_secs() + u64::from(s.reset.subsec_nanos() > 0);
        if decision.denied_by == Some(scope) {
            // Agree with `Retry-After`, which is at least one second.
            secs = secs.max(1);
        }
        items.push(format!(
            "{};r={};t={}",
            policy_name(route, scope),
            s.remaining,
            secs
        ));
    }
    if let Ok(value) = HeaderValue::from_str(&items.join(", ")) {
        if !items.is_empty() {
            headers.insert(RATELIMIT, value);
        }
    }
    headers
}

/// The policy's name as a Structured Field String: the route name, or
/// `<route>-key` for the per-key limit.
fn policy_name(route: &str, scope: Scope) -> String {
    let suffix = match scope {
        Scope::Route => "",
        Scope::Key => "-key",
    };
    let mut out = String::with_capacity(route.len() + suffix.len() + 2);
    out.push('"');
    for c in route.chars().chain(suffix.chars()) {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('_'),
        }
    }
    out.push('"');
    out
}

/// One `RateLimit-Policy` member: the sustained rate per one-second window.
fn policy_item(route: &str, scope: Scope, rate: Rate) -> String {
    format!("{};q={};w=1", policy_name(route, scope), rate.rps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_are_escaped() {
        assert_eq!(policy_name("a\"b\\c", Scope::Key), "\"a\\\"b\\\\c-key\"");
        assert_eq!(policy_name("é", Scope::Route), "\"_\"");
    }
}
