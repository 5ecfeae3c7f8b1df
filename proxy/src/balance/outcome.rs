//! What one upstream answer says about its endpoint: it worked, it was busy, or
//! it failed. A pure classification of the status and headers (or the error), so
//! that the balancer, outlier detection and the breaker agree on one rule.
//!
//! - **Overloaded**: any `429 Too Many Requests`, and a `503 Service Unavailable`
//!   that carries `Retry-After`: the endpoint says "busy, come back later" (a full
//!   queue, a local rate limit, another Floodgate's admission control). It is
//!   alive and answering; sending it less is the cure, ejecting it is not.
//! - **Failure**: any other 5xx (a 503 without `Retry-After` included), and the
//!   endpoint's own errors ([`crate::error::ErrorKind::is_endpoint_failure`]:
//!   connect failures and timeouts, resets, upstream timeouts).
//! - **Success**: every other answer (1xx–4xx but 429).

use http::{HeaderMap, StatusCode};

/// What one answer of an endpoint counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered usefully.
    Success,
    /// The endpoint said it is busy (429, or 503 with `Retry-After`).
    Overloaded,
    /// The endpoint failed (other 5xx, reset, connect failure, timeout).
    Failure,
}

impl Outcome {
    /// Classifies a response head from the endpoint.
    pub fn of_response(status: StatusCode, headers: &HeaderMap) -> Self {
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Self::Overloaded;
        }
        if !status.is_server_error() {
            return Self::Success;
        }
        if status == StatusCode::SERVICE_UNAVAILABLE
            && headers.contains_key(http::header::RETRY_AFTER)
        {
            return Self::Overloaded;
        }
        Self::Failure
    }

    /// The outcome for the circuit breaker: `Some(true)` success, `Some(false)`
    /// failure, `None` (neither) for an overload answer, which must not open it.
    pub fn for_breaker(self) -> Option<bool> {
        match self {
            Self::Success => Some(true),
            Self::Failure => Some(false),
            Self::Overloaded => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_retry_after() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        );
        h
    }

    #[test]
    fn busy_answers_are_overload_not_failure() {
        let none = HeaderMap::new();
        let ra = with_retry_after();
        let of = |s: u16, h: &HeaderMap| Outcome::of_response(StatusCode::from_u16(s).unwrap(), h);
        assert_eq!(of(200, &none), Outcome::Success);
        assert_eq!(of(404, &none), Outcome::Success);
        assert_eq!(of(429, &none), Outcome::Overloaded);
        assert_eq!(of(429, &ra), Outcome::Overloaded);
        assert_eq!(of(503, &ra), Outcome::Overloaded);
        // A 503 without Retry-After, and any other 5xx, is a failure.
        assert_eq!(of(503, &none), Outcome::Failure);
        assert_eq!(of(500, &ra), Outcome::Failure);
        assert_eq!(of(502, &none), Outcome::Failure);
        assert_eq!(of(504, &ra), Outcome::Failure);
    }

    #[test]
    fn the_breaker_sees_overload_as_neither() {
        assert_eq!(Outcome::Success.for_breaker(), Some(true));
        assert_eq!(Outcome::Failure.for_breaker(), Some(false));
        assert_eq!(Outcome::Overloaded.for_breaker(), None);
    }
}
