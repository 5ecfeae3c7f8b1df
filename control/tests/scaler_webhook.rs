//! The webhook scaler against a real local HTTP server on 127.0.0.1:0: a POST of
//! the cluster's scale state on each change of desired, with the bearer token;
//! failures retried with backoff, the latest desired winning. The autoscaler's
//! decisions are published on the plane's scale board by the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use floodgate_control::autoscale::ScaleState;
use floodgate_control::plane::Plane;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use support::{eventually, APP, OPERATOR, PROXY};

/// One POST the hook received: the status it answered, its Authorization, its body.
#[derive(Debug, Clone)]
struct Hit {
    accepted: bool,
    auth: Option<String>,
    content_type: Option<String>,
    body: Value,
}

#[derive(Default)]
struct Hook {
    hits: Mutex<Vec<Hit>>,
    failing: AtomicBool,
}

impl Hook {
    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    fn accepted(&self) -> Vec<u64> {
        self.hits()
            .iter()
            .filter(|h| h.accepted)
            .map(|h| h.body["desired"].as_u64().unwrap())
            .collect()
    }
}

/// A webhook receiver answering 200, or 503 while `failing`.
async fn hook_server() -> (SocketAddr, Arc<Hook>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hook = Arc::new(Hook::default());
    let shared = Arc::clone(&hook);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let hook = Arc::clone(&shared);
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let hook = Arc::clone(&hook);
                    async move {
                        let header = |name: http::header::HeaderName| {
                            req.headers()
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned)
                        };
                        let auth = header(http::header::AUTHORIZATION);
                        let content_type = header(http::header::CONTENT_TYPE);
                        assert_eq!(req.uri().path(), "/hook");
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let accepted = !hook.failing.load(Ordering::SeqCst);
                        hook.hits.lock().unwrap().push(Hit {
                            accepted,
                            auth,
                            content_type,
                            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                        });
                        let status = if accepted {
                            StatusCode::OK
                        } else {
                            StatusCode::SERVICE_UNAVAILABLE
                        };
                        let mut resp = Response::new(Full::new(Bytes::from_static(b"{}")));
                        *resp.status_mut() = status;
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, hook)
}

/// A control plane with a webhook for cluster `app` pointing at `hook`.
async fn control_plane(hook: SocketAddr) -> (tempfile::TempDir, floodgate_control::Running) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("groups")).unwrap();
    std::fs::write(
        dir.path().join("groups/edge.yaml"),
        support::group_config("127.0.0.1:9".parse().unwrap()),
    )
    .unwrap();
    let text = format!(
        "listen: 127.0.0.1:0\nconfigs_dir: groups\n\
         tokens: {{ proxy: {PROXY}, app: {APP}, operator: {OPERATOR} }}\n\
         scalers:\n  app:\n    webhook:\n      url: http://{hook}/hook\n      \
         token: hook-token-0123456789\n      backoff: {{ initial: 20ms, max: 100ms }}\n"
    );
    let config = floodgate_control::config::parse_str(&text, "control.yaml", dir.path()).unwrap();
    (dir, floodgate_control::start(config).await.unwrap())
}

fn decide(plane: &Plane, desired: u32, reason: &str) {
    let state = ScaleState {
        reason: reason.to_owned(),
        ..ScaleState::idle("app", desired, 1, 1_767_225_600_000)
    };
    plane
        .scale
        .publish(BTreeMap::from([("app".to_owned(), state)]));
}

#[tokio::test]
async fn posts_the_state_on_each_change_of_desired_with_the_token() {
    let (addr, hook) = hook_server().await;
    let (_dir, cp) = control_plane(addr).await;
    decide(cp.plane(), 2, "first");
    eventually("the first POST", || async {
        (hook.accepted() == [2]).then_some(())
    })
    .await;
    let hit = hook.hits()[0].clone();
    assert_eq!(hit.auth.as_deref(), Some("Bearer hook-token-0123456789"));
    assert_eq!(hit.content_type.as_deref(), Some("application/json"));
    for field in [
        "cluster",
        "desired",
        "ready",
        "observed_demand",
        "panic",
        "reason",
        "at_unix_ms",
    ] {
        assert!(
            hit.body.get(field).is_some(),
            "no `{field}` in {}",
            hit.body
        );
    }
    assert_eq!(hit.body["cluster"], "app");
    assert_eq!(hit.body["reason"], "first");

    // Same desired, another reason: no POST. Then 3: one POST.
    decide(cp.plane(), 2, "same desired");
    decide(cp.plane(), 3, "up");
    eventually("the second POST", || async {
        (hook.accepted().len() >= 2).then_some(())
    })
    .await;
    assert_eq!(hook.accepted(), [2, 3], "{:?}", hook.hits());
    assert_eq!(hook.hits().len(), 2);
}

#[tokio::test]
async fn retries_with_backoff_and_the_latest_desired_wins() {
    let (addr, hook) = hook_server().await;
    hook.failing.store(true, Ordering::SeqCst);
    let (_dir, cp) = control_plane(addr).await;
    decide(cp.plane(), 4, "a");
    eventually("retried", || async {
        (hook.hits().len() >= 3).then_some(())
    })
    .await;
    decide(cp.plane(), 5, "b");
    decide(cp.plane(), 6, "c");
    eventually("6 attempted", || async {
        hook.hits()
            .iter()
            .any(|h| h.body["desired"] == 6)
            .then_some(())
    })
    .await;
    hook.failing.store(false, Ordering::SeqCst);
    eventually("6 delivered", || async {
        (!hook.accepted().is_empty()).then_some(())
    })
    .await;
    assert_eq!(hook.accepted(), [6], "{:?}", hook.hits());
    // Nothing older is sent after the latest was delivered.
    let hits = hook.hits();
    let last = hits.iter().rposition(|h| h.accepted).unwrap();
    assert_eq!(last, hits.len() - 1, "{hits:?}");
}
