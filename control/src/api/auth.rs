//! Bearer-token checks: 401 without a valid token, 403 with a token of a role the
//! endpoint does not accept. Runs before the request is read, so a refused
//! request changes nothing.

use http::{header, HeaderMap, StatusCode};

use crate::config::{Role, Tokens};
use crate::observe;

/// Which role the request's bearer token grants, if it is one of `allowed`.
pub fn check(tokens: &Tokens, headers: &HeaderMap, allowed: &[Role]) -> Result<Role, StatusCode> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .map(|t| t.trim_ascii());
    let Some(role) = presented.and_then(|t| tokens.role_of(t)) else {
        metrics::counter!(observe::AUTH_REFUSED, "status" => "401").increment(1);
        return Err(StatusCode::UNAUTHORIZED);
    };
    if allowed.contains(&role) {
        Ok(role)
    } else {
        metrics::counter!(observe::AUTH_REFUSED, "status" => "403").increment(1);
        Err(StatusCode::FORBIDDEN)
    }
}
