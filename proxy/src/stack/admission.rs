//! Admission layer: sends a route's requests through its cluster's
//! [`AdmissionControl`], shedding with 503 `overloaded` those it does not admit.
//!
//! The limiter itself (queue, permits, gradient limit) is [`crate::admission`];
//! this layer only picks the request's priority and queueing deadline, waits for
//! a permit, and feeds the outcome's latency back when the response head arrives.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::{Request, Response};
use tower::{Layer, Service};

use super::RouteInner;
use crate::admission::AdmissionControl;
use crate::body::Body;
use crate::config::Priority;
use crate::error::{ErrorKind, ProxyError};
use crate::time;

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
        let wait = match self.route_timeout {
            Some(route) => admission.queue_timeout().min(route),
            None => admission.queue_timeout(),
        };
        Box::pin(async move {
            let deadline = time::now() + wait;
            let permit = admission
                .acquire(priority, deadline)
                .await
                .map_err(|shed| admission.shed_error(shed))?;
            let result = inner.call(req).await;
            let rtt = permit.admitted().elapsed();
            permit.complete(latency_sample(&result, rtt));
            result
        })
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
