//! Admission layer: sends a route's requests through its cluster's
//! [`AdmissionControl`], shedding with 503 `overloaded` those it does not admit.
//!
//! The limiter itself (queue, permits, gradient limit) is [`crate::admission`];
//! this layer only picks the request's priority and queueing deadline, waits for
//! a permit, feeds the outcome's latency back when the response head arrives, and
//! counts an admitted request whose client went away before that.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::{Request, Response};
use tower::{Layer, Service};

use super::RouteInner;
use crate::admission::{AdmissionControl, Permit};
use crate::body::Body;
use crate::config::Priority;
use crate::error::{ErrorKind, ProxyError};
use crate::time::{self, Instant};

/// A drop this close to the route deadline is taken for the deadline (timers fire
/// on millisecond ticks).
const DEADLINE_SLACK: Duration = Duration::from_millis(1);

/// Wraps a service with [`AdmissionService`].
#[derive(Clone)]
pub struct AdmissionLayer {
    admission: Arc<AdmissionControl>,
    priority: Priority,
    route_timeout: Option<Duration>,
}

impl AdmissionLayer {
    /// Admits through `admission` at the route's default `priority`; a queued
    /// request waits at most the shorter of the queue timeout and the route's timeout.
    pub fn new(
        admission: Arc<AdmissionControl>,
        priority: Priority,
        route_timeout: Option<Duration>,
    ) -> Self {
        Self {
            admission,
            priority,
            route_timeout,
        }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = AdmissionService<S>;

    fn layer(&self, inner: S) -> AdmissionService<S> {
        AdmissionService {
            inner,
            admission: self.admission.clone(),
            priority: self.priority,
            route_timeout: self.route_timeout,
        }
    }
}

/// A service that sends only admitted requests and sheds the rest with 503.
#[derive(Clone)]
pub struct AdmissionService<S> {
    inner: S,
    admission: Arc<AdmissionControl>,
    priority: Priority,
    route_timeout: Option<Duration>,
}

impl<S: RouteInner> Service<Request<Body>> for AdmissionService<S> {
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = BoxFuture<'static, Result<Response<Body>, ProxyError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let mut inner = super::take_ready(&mut self.inner);
        let admission = Arc::clone(&self.admission);
        let priority = admission
            .header_priority(req.headers())
            .unwrap_or(self.priority);
        let now = time::now();
        let wait = match self.route_timeout {
            Some(route) => admission.queue_timeout().min(route),
            None => admission.queue_timeout(),
        };
        // Both deadlines are taken now, as the route's timeout layer just did, so a
        // drop at the route deadline is told apart from a client going away.
        let deadline = now + wait;
        let route_deadline = self.route_timeout.map(|t| now + t);
        Box::pin(async move {
            let permit = admission
                .acquire(priority, deadline)
                .await
                .map_err(|shed| admission.shed_error(shed))?;
            let mut service = InService {
                admission: &admission,
                permit: Some(permit),
                route_deadline,
            };
            let result = inner.call(req).await;
            if let Some(permit) = service.permit.take() {
                let rtt = time::now().saturating_duration_since(permit.admitted());
                permit.complete(latency_sample(&result, rtt));
            }
            result
        })
    }
}

/// An admitted request until its response head; dropped before that (the
/// downstream connection closed, or the route timeout fired), it releases the
/// permit and says why: a route deadline feeds its long wait to the limit, a
/// client that went away is counted (`client_gone`, stage `in_service`). The
/// upstream exchange, dropped with it, is cut off: see `docs/burst-protection.md`.
struct InService<'a> {
    admission: &'a AdmissionControl,
    permit: Option<Permit>,
    route_deadline: Option<Instant>,
}

impl Drop for InService<'_> {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let now = time::now();
        if self
            .route_deadline
            .is_some_and(|d| now + DEADLINE_SLACK >= d)
        {
            let rtt = now.saturating_duration_since(permit.admitted());
            permit.complete(Some(rtt));
        } else {
            self.admission.client_gone_in_service();
            drop(permit);
        }
    }
}

/// The RTT sample an outcome gives: answers that are not 5xx, and timeouts (whose
/// long wait is exactly the signal); other failures say nothing about latency.
fn latency_sample(result: &Result<Response<Body>, ProxyError>, rtt: Duration) -> Option<Duration> {
    match result {
        Ok(response) if !response.status().is_server_error() => Some(rtt),
        Ok(_) => None,
        Err(e) => matches!(
            e.kind(),
            ErrorKind::UpstreamTimeout | ErrorKind::RequestTimeout | ErrorKind::ConnectTimeout
        )
        .then_some(rtt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AdmissionConfig, ConcurrencyLimit};
    use tower::ServiceExt;

    #[tokio::test(start_paused = true)]
    async fn layer_sheds_with_503_overloaded_and_retry_after() {
        let config = AdmissionConfig {
            limit: ConcurrencyLimit::Fixed(1),
            max_queue: 0,
            queue_timeout: Duration::from_secs(1),
            queue_target: None,
            queue_interval: Duration::from_millis(100),
            priority_header: None,
        };
        let adm = Arc::new(AdmissionControl::new(
            &config,
            &metrics::SharedString::from("test"),
        ));
        let slow = tower::service_fn(|_req: Request<Body>| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, ProxyError>(Response::new(crate::body::empty()))
        });
        let svc = AdmissionLayer::new(Arc::clone(&adm), Priority::Normal, None).layer(slow);
        let held = tokio::spawn(svc.clone().oneshot(Request::new(crate::body::empty())));
        while adm.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        let err = svc
            .clone()
            .oneshot(Request::new(crate::body::empty()))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Overloaded);
        let response = err.to_response(None);
        assert_eq!(response.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "1");
        assert!(held.await.unwrap().is_ok());
        assert_eq!(adm.in_flight(), 0, "permit released with the response");
    }
}
