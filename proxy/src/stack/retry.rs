//! Retry layer: repeats a failed try only when that is safe and the budget allows.
//!
//! Safe means either nothing reached the upstream (a connect failure hands the
//! request back, so even a POST can go again), or the method is idempotent and
//! the request has no body to replay. Retries are capped by a token budget
//! (a percentage of regular requests plus a floor per second, as in Finagle and
//! Linkerd) so that retries cannot multiply load on an upstream that is already
//! failing. Tries are spaced by a jittered exponential backoff. A cluster's
//! circuit breaker may also cap retries in flight (`max_retries`): each retry
//! holds a slot for its try, and without one the retrying stops (`overflow`).

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::{Method, Request, Response};
use http_body::Body as _;
use rand::Rng;
use tower::retry::budget::{Budget, TpsBudget};
use tower::{Layer, Service, ServiceExt};

use super::RouteInner;
use crate::balance::breaker::{Breaker, RetrySlot};
use crate::balance::UseEndpointHost;
use crate::body::{self, Body};
use crate::config::RetryPolicy;
use crate::error::{ErrorKind, ProxyError};
use crate::observe;

/// Wraps a service with [`Retry`].
#[derive(Clone)]
pub struct RetryLayer {
    shared: Arc<Shared>,
}

/// A route's retry policy, budget and metrics, shared by every clone of the service.
struct Shared {
    policy: RetryPolicy,
    budget: TpsBudget,
    retries: metrics::Counter,
    exhausted: metrics::Counter,
    breaker: Option<Arc<Breaker>>,
}

impl RetryLayer {
    /// Retries per `policy` (at most `attempts` tries), counting metrics under
    /// `route`; each retry takes one of `breaker`'s `max_retries` slots, when a
    /// breaker is given.
    pub fn new(
        route: &metrics::SharedString,
        policy: RetryPolicy,
        breaker: Option<Arc<Breaker>>,
    ) -> Self {
        let percent = (policy.budget_percent / 100.0).clamp(0.0, 1000.0) as f32;
        let floor = policy.min_retries_per_sec.min(1_000_000);
        let shared = Arc::new(Shared {
            budget: TpsBudget::new(Duration::from_secs(10), floor, percent),
            retries: metrics::counter!(observe::RETRIES_TOTAL, "route" => route.clone()),
            exhausted: metrics::counter!(
                observe::RETRY_BUDGET_EXHAUSTED, "route" => route.clone()
            ),
            policy,
            breaker,
        });
        Self { shared }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// A service that retries safe failures within a budget.
#[derive(Clone)]
pub struct Retry<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: RouteInner> Service<Request<Body>> for Retry<S> {
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = BoxFuture<'static, Result<Response<Body>, ProxyError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let mut inner = super::take_ready(&mut self.inner);
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            shared.budget.deposit();
            let head = Head::of(&req);
            let replayable = head.idempotent && req.body().is_end_stream();
            let mut req = req;
            let mut attempt = 1;
            // Held for the duration of one retry (its backoff and its try).
            let mut retry_slot: Option<RetrySlot> = None;
            loop {
                let mut result = inner.ready().await?.call(req).await;
                if attempt >= shared.policy.attempts || !should_retry(&shared.policy, &result) {
                    return result;
                }
                let next_body = match &mut result {
                    Err(e) if e.is_unsent() => e.take_unsent().map(Request::into_body),
                    _ if replayable => Some(body::empty()),
                    _ => None,
                };
                let Some(next_body) = next_body else {
                    return result;
                };
                // The cluster's max_retries first: no slot, no retry (counted as overflow).
                drop(retry_slot.take());
                let slot = match &shared.breaker {
                    Some(b) => match b.try_retry() {
                        Some(slot) => Some(slot),
                        None => return result,
                    },
                    None => None,
                };
                if !shared.budget.withdraw() {
                    shared.exhausted.increment(1);
                    return result;
                }
                shared.retries.increment(1);
                retry_slot = slot;
                tokio::time::sleep(backoff(shared.policy.backoff, attempt)).await;
                req = head.build(next_body);
                attempt += 1;
            }
        })
    }
}

/// Whether the policy lists this outcome as retryable (safety is checked apart).
fn should_retry(policy: &RetryPolicy, result: &Result<Response<Body>, ProxyError>) -> bool {
    match result {
        Ok(response) => policy.on.statuses.contains(&response.status()),
        Err(e) => match e.kind() {
            ErrorKind::ConnectFailed | ErrorKind::ConnectTimeout => policy.on.connect_failure,
            ErrorKind::UpstreamReset => policy.on.reset,
            ErrorKind::UpstreamTimeout => policy.on.timeout,
            _ => false,
        },
    }
}

/// Full-jitter exponential backoff: random in `[0, base * 2^(attempt-1)]`, capped at 1s.
fn backoff(base: Duration, attempt: u32) -> Duration {
    if base.is_zero() {
        return Duration::ZERO;
    }
    let ceiling = base
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(Duration::from_secs(1));
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::rng().random_range(0..=nanos))
}

/// What is needed to rebuild a request for another try.
struct Head {
    method: Method,
    uri: http::Uri,
    version: http::Version,
    headers: http::HeaderMap,
    endpoint_host: bool,
    idempotent: bool,
}

impl Head {
    fn of(req: &Request<Body>) -> Self {
        let method = req.method().clone();
        Self {
            // RFC 9110 §9.2.2, plus QUERY (safe and idempotent by its draft); the
            // same rule decides a stale pooled connection's replay (`upstream::http1`).
            idempotent: method.is_idempotent(),
            method,
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
            endpoint_host: req.extensions().get::<UseEndpointHost>().is_some(),
        }
    }

    fn build(&self, body: Body) -> Request<Body> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        if self.endpoint_host {
            req.extensions_mut().insert(UseEndpointHost);
        }
        req
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RetryOn;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn policy(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            on: RetryOn {
                connect_failure: true,
                reset: true,
                timeout: true,
                statuses: vec![http::StatusCode::SERVICE_UNAVAILABLE],
            },
            per_try_timeout: None,
            budget_percent: 20.0,
            min_retries_per_sec: 1000,
            backoff: Duration::ZERO,
        }
    }

    /// A service failing the first `failures` calls with `kind` (unsent or not).
    fn flaky(
        failures: u32,
        kind: ErrorKind,
        unsent: bool,
        calls: Arc<AtomicU32>,
    ) -> impl Service<
        Request<Body>,
        Response = Response<Body>,
        Error = ProxyError,
        Future = BoxFuture<'static, Result<Response<Body>, ProxyError>>,
    > + Clone {
        tower::service_fn(move |req: Request<Body>| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            let fut: BoxFuture<'static, _> = Box::pin(async move {
                if n < failures {
                    let e = ProxyError::new(kind);
                    Err(if unsent { e.with_unsent(req) } else { e })
                } else {
                    Ok(Response::new(body::empty()))
                }
            });
            fut
        })
    }

    fn route() -> metrics::SharedString {
        metrics::SharedString::from("test")
    }

    #[tokio::test]
    async fn connect_failure_is_retried_even_for_post_with_body() {
        let calls = Arc::new(AtomicU32::new(0));
        let svc = RetryLayer::new(&route(), policy(3), None).layer(flaky(
            2,
            ErrorKind::ConnectFailed,
            true,
            calls.clone(),
        ));
        let req = Request::post("/").body(body::full("payload")).unwrap();
        assert!(svc.oneshot(req).await.is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn sent_post_is_not_retried() {
        let calls = Arc::new(AtomicU32::new(0));
        let svc = RetryLayer::new(&route(), policy(3), None).layer(flaky(
            1,
            ErrorKind::UpstreamReset,
            false,
            calls.clone(),
        ));
        let req = Request::post("/").body(body::full("payload")).unwrap();
        assert!(svc.oneshot(req).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn sent_get_without_body_is_retried() {
        let calls = Arc::new(AtomicU32::new(0));
        let svc = RetryLayer::new(&route(), policy(2), None).layer(flaky(
            1,
            ErrorKind::UpstreamReset,
            false,
            calls.clone(),
        ));
        let req = Request::get("/").body(body::empty()).unwrap();
        assert!(svc.oneshot(req).await.is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn attempts_cap_tries() {
        let calls = Arc::new(AtomicU32::new(0));
        let svc = RetryLayer::new(&route(), policy(2), None).layer(flaky(
            10,
            ErrorKind::ConnectFailed,
            true,
            calls.clone(),
        ));
        let req = Request::get("/").body(body::empty()).unwrap();
        assert!(svc.oneshot(req).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn budget_caps_retries() {
        let mut p = policy(2);
        p.min_retries_per_sec = 0;
        p.budget_percent = 10.0;
        let calls = Arc::new(AtomicU32::new(0));
        let layer = RetryLayer::new(&route(), p, None);
        let svc = layer.layer(flaky(
            u32::MAX,
            ErrorKind::ConnectFailed,
            true,
            calls.clone(),
        ));
        for _ in 0..100 {
            let req = Request::get("/").body(body::empty()).unwrap();
            let _ = svc.clone().oneshot(req).await;
        }
        let retries = calls.load(Ordering::SeqCst) - 100;
        assert!(
            retries <= 11,
            "budget allowed {retries} retries for 100 requests"
        );
        assert!(retries >= 5, "budget allowed only {retries} retries");
    }

    #[tokio::test]
    async fn max_retries_stops_retrying_when_no_slot_is_free() {
        let config = crate::config::BreakerConfig {
            max_connections: None,
            max_pending_requests: None,
            max_requests: None,
            max_retries: Some(1),
            consecutive_failures: None,
            failure_rate: None,
            open_for: Duration::from_secs(5),
            max_open_for: Duration::from_secs(60),
            half_open_probes: 1,
        };
        let breaker = Breaker::new("retry-test", &config);
        let calls = Arc::new(AtomicU32::new(0));
        let svc = RetryLayer::new(&route(), policy(3), Some(breaker.clone())).layer(flaky(
            u32::MAX,
            ErrorKind::ConnectFailed,
            true,
            calls.clone(),
        ));
        // The one slot is taken elsewhere: the first failure is final.
        let held = breaker.try_retry().unwrap();
        let req = Request::get("/").body(body::empty()).unwrap();
        assert!(svc.clone().oneshot(req).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Freed: retries go on, one at a time, up to the attempts.
        drop(held);
        let req = Request::get("/").body(body::empty()).unwrap();
        assert!(svc.oneshot(req).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(breaker.status().retries_in_flight, 0);
    }

    #[test]
    fn idempotent_methods_are_those_of_rfc_9110_and_query() {
        for m in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", "QUERY"] {
            assert!(
                Method::from_bytes(m.as_bytes()).unwrap().is_idempotent(),
                "{m}"
            );
        }
        for m in ["POST", "PATCH", "CONNECT", "PURGE"] {
            assert!(
                !Method::from_bytes(m.as_bytes()).unwrap().is_idempotent(),
                "{m}"
            );
        }
    }

    #[test]
    fn backoff_is_bounded() {
        for attempt in 1..20 {
            assert!(backoff(Duration::from_millis(25), attempt) <= Duration::from_secs(1));
        }
        assert_eq!(backoff(Duration::ZERO, 3), Duration::ZERO);
    }
}
