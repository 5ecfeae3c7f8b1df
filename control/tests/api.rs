//! The control plane over real HTTP on 127.0.0.1:0, started in-process from its
//! library, with a temporary config directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

const PROXY: &str = "proxy-token-for-tests-0001";
const APP: &str = "app-token-for-tests-000002";
const OPERATOR: &str = "operator-token-for-tests-3";

/// A group config serving cluster `app` with one static endpoint.
fn group_config(static_endpoint: &str) -> String {
    format!(
        "listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    routes: [ {{ name: all, cluster: app }} ]\n\
         clusters:\n  - name: app\n    endpoints: [\"{static_endpoint}\"]\n"
    )
}

struct Harness {
    dir: tempfile::TempDir,
    running: floodgate_control::Running,
    client: Client<HttpConnector, Full<Bytes>>,
}

struct Reply {
    status: StatusCode,
    json: Value,
    version_header: Option<u64>,
}

async fn start(poll_timeout: &str) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let configs = dir.path().join("groups");
    std::fs::create_dir(&configs).unwrap();
    std::fs::write(configs.join("edge.yaml"), group_config("127.0.0.1:9001")).unwrap();
    let text = format!(
        "listen: 127.0.0.1:0\nconfigs_dir: groups\n\
         tokens: {{ proxy: {PROXY}, app: {APP}, operator: {OPERATOR} }}\n\
         registry: {{ default_ttl: 300ms, max_ttl: 10s, sweep_interval: 20ms }}\n\
         long_poll: {{ timeout: {poll_timeout}, jitter: 0s }}\n\
         source: {{ debounce: 20ms, poll_interval: 200ms }}\n"
    );
    let config = floodgate_control::config::parse_str(&text, "control.yaml", dir.path()).unwrap();
    let running = floodgate_control::start(config).await.unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http();
    Harness {
        dir,
        running,
        client,
    }
}

impl Harness {
    fn configs(&self) -> std::path::PathBuf {
        self.dir.path().join("groups")
    }

    fn addr(&self) -> SocketAddr {
        self.running.local_addr()
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        call(&self.client, self.addr(), method, path, token, body).await
    }

    async fn groups(&self) -> Value {
        let r = self
            .call(Method::GET, "/v1/groups", Some(OPERATOR), None)
            .await;
        assert_eq!(r.status, StatusCode::OK);
        r.json["groups"].clone()
    }

    async fn version(&self) -> u64 {
        self.groups().await[0]["version"]
            .as_u64()
            .expect("a published version")
    }

    async fn poll(&self, node: &str, version: u64) -> Reply {
        self.call(
            Method::GET,
            &format!("/v1/snapshot?group=edge&node={node}&version={version}"),
            Some(PROXY),
            None,
        )
        .await
    }

    async fn endpoints(&self) -> Vec<Value> {
        let r = self
            .call(Method::GET, "/v1/endpoints", Some(OPERATOR), None)
            .await;
        assert_eq!(r.status, StatusCode::OK);
        r.json["endpoints"].as_array().unwrap().clone()
    }

    async fn register(&self, address: &str, ttl: &str) -> Reply {
        self.call(
            Method::POST,
            "/v1/endpoints",
            Some(APP),
            Some(json!({ "cluster": "app", "address": address, "ttl": ttl, "metadata": { "zone": "a" } })),
        )
        .await
    }
}

async fn call(
    client: &Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let resp = client
        .request(req.body(Full::new(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let version_header = resp
        .headers()
        .get("x-floodgate-version")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        json,
        version_header,
    }
}

/// Retries `check` until it returns Some or `within` passes.
async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const SOON: Duration = Duration::from_secs(5);

#[tokio::test]
async fn publish_wakes_a_waiting_poll_at_once() {
    let h = start("20s").await;
    let first = h.poll("n1", 0).await;
    assert_eq!(first.status, StatusCode::OK);
    let v1 = first.json["version"].as_u64().unwrap();
    assert!(first.json["config"]
        .as_str()
        .unwrap()
        .contains("127.0.0.1:9001"));

    let waiting = {
        let client = h.client.clone();
        let addr = h.addr();
        tokio::spawn(async move {
            let path = format!("/v1/snapshot?group=edge&node=n1&version={v1}");
            call(&client, addr, Method::GET, &path, Some(PROXY), None).await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiting.is_finished(),
        "a poll at the current version must wait"
    );
    let started = Instant::now();
    std::fs::write(
        h.configs().join("edge.yaml"),
        group_config("127.0.0.1:9002"),
    )
    .unwrap();
    let r = tokio::time::timeout(SOON, waiting).await.unwrap().unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let v2 = r.json["version"].as_u64().unwrap();
    assert!(v2 > v1);
    assert!(r.json["config"]
        .as_str()
        .unwrap()
        .contains("127.0.0.1:9002"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(h.version().await, v2);
}

#[tokio::test]
async fn a_poll_without_news_ends_with_304_and_the_current_version() {
    let h = start("300ms").await;
    let v = h.version().await;
    let r = h.poll("n1", v).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert_eq!(r.version_header, Some(v));
    let r = h
        .call(
            Method::GET,
            "/v1/snapshot?group=nope&node=n1&version=0",
            Some(PROXY),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_invalid_file_is_never_published_and_its_error_shows() {
    let h = start("300ms").await;
    let v = h.version().await;
    std::fs::write(
        h.configs().join("edge.yaml"),
        group_config("127.0.0.1:9001").replace("cluster: app", "cluster: missing"),
    )
    .unwrap();
    let error = eventually(SOON, || async {
        let g = h.groups().await;
        g[0]["last_error"].as_str().map(str::to_owned)
    })
    .await;
    assert!(error.contains("edge.yaml"), "{error}");
    assert!(error.contains("listeners[0].routes[0]"), "{error}");
    assert_eq!(h.version().await, v);
    let r = h.poll("n1", v).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);

    // A new group whose only file is invalid has no version at all.
    std::fs::write(
        h.configs().join("broken.yaml"),
        "clusters: [ { name: x } ]\n",
    )
    .unwrap();
    let broken = eventually(SOON, || async {
        let g = h.groups().await;
        g.as_array()
            .unwrap()
            .iter()
            .find(|g| g["group"] == "broken")
            .cloned()
    })
    .await;
    assert!(broken["version"].is_null());
    assert!(broken["last_error"]
        .as_str()
        .unwrap()
        .contains("broken.yaml"));

    // Fixing the file publishes and clears the error.
    std::fs::write(
        h.configs().join("edge.yaml"),
        group_config("127.0.0.1:9003"),
    )
    .unwrap();
    eventually(SOON, || async {
        let g = h.groups().await;
        (g[1]["group"] == "edge"
            && g[1]["last_error"].is_null()
            && g[1]["version"].as_u64() > Some(v))
        .then_some(())
    })
    .await;
}

#[tokio::test]
async fn ack_and_nack_show_in_nodes() {
    let h = start("300ms").await;
    let v = h.version().await;
    let ack = json!({ "group": "edge", "node": "a", "version": v });
    assert_eq!(
        h.call(Method::POST, "/v1/ack", Some(PROXY), Some(ack))
            .await
            .status,
        StatusCode::OK
    );
    let nack =
        json!({ "group": "edge", "node": "b", "version": v, "error": "listener web: cannot bind" });
    assert_eq!(
        h.call(Method::POST, "/v1/nack", Some(PROXY), Some(nack))
            .await
            .status,
        StatusCode::OK
    );

    let nodes = h
        .call(Method::GET, "/v1/nodes", Some(OPERATOR), None)
        .await
        .json["nodes"]
        .clone();
    assert_eq!(nodes[0]["node"], "a");
    assert_eq!(nodes[0]["version"].as_u64(), Some(v));
    assert_eq!(nodes[0]["last_ack"].as_u64(), Some(v));
    assert_eq!(nodes[1]["node"], "b");
    assert!(nodes[1]["version"].is_null());
    assert_eq!(nodes[1]["last_nack"]["version"].as_u64(), Some(v));
    assert_eq!(nodes[1]["last_nack"]["error"], "listener web: cannot bind");
    assert!(nodes[1]["last_seen"].as_u64().unwrap() > 0);

    // The refused version is not sent again to the node that refused it.
    let r = h.poll("b", 0).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    // A poll records the version the node runs.
    let r = h.poll("c", v).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    let nodes = h
        .call(Method::GET, "/v1/nodes", Some(OPERATOR), None)
        .await
        .json["nodes"]
        .clone();
    assert_eq!(nodes[2]["node"], "c");
    assert_eq!(nodes[2]["version"].as_u64(), Some(v));
}

#[tokio::test]
async fn register_heartbeat_expire_deregister() {
    let h = start("300ms").await;
    let v1 = h.version().await;

    let r = h.register("127.0.0.1:9100", "300ms").await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.json["groups"], json!(["edge"]));
    let snap = h.poll("n", v1).await;
    assert_eq!(snap.status, StatusCode::OK);
    let v2 = snap.json["version"].as_u64().unwrap();
    assert!(v2 > v1);
    let text = snap.json["config"].as_str().unwrap();
    let config = floodgate::config::parse_str(text, "snapshot", Path::new(".")).unwrap();
    assert_eq!(config.cluster("app").unwrap().endpoints.len(), 2);
    assert_eq!(h.endpoints().await[0]["metadata"]["zone"], "a");

    // Heartbeats for well over the TTL keep it, without new versions.
    let until = Instant::now() + Duration::from_millis(900);
    while Instant::now() < until {
        assert_eq!(
            h.register("127.0.0.1:9100", "300ms").await.status,
            StatusCode::OK
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(h.endpoints().await.len(), 1);
    assert_eq!(h.version().await, v2);

    // Silence: it expires and a new version drops it.
    eventually(SOON, || async {
        h.endpoints().await.is_empty().then_some(())
    })
    .await;
    let snap = h.poll("n", v2).await;
    let v3 = snap.json["version"].as_u64().unwrap();
    assert!(v3 > v2);
    assert!(!snap.json["config"].as_str().unwrap().contains("9100"));

    // Register again, then deregister.
    assert_eq!(
        h.register("127.0.0.1:9101", "10s").await.status,
        StatusCode::CREATED
    );
    let v4 = h.poll("n", v3).await.json["version"].as_u64().unwrap();
    let del = json!({ "cluster": "app", "address": "127.0.0.1:9101" });
    let r = h
        .call(
            Method::DELETE,
            "/v1/endpoints",
            Some(APP),
            Some(del.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(h.endpoints().await.is_empty());
    let snap = h.poll("n", v4).await;
    assert!(snap.json["version"].as_u64().unwrap() > v4);
    assert!(!snap.json["config"].as_str().unwrap().contains("9101"));
    let r = h
        .call(Method::DELETE, "/v1/endpoints", Some(APP), Some(del))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_registrations_are_refused() {
    let h = start("300ms").await;
    for (address, ttl) in [
        ("no-port", "1s"),
        ("127.0.0.1:9100", "1h"),
        ("127.0.0.1:9100", "soon"),
    ] {
        let r = h.register(address, ttl).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{address} {ttl}: {}",
            r.json
        );
    }
    assert!(h.endpoints().await.is_empty());
}

#[tokio::test]
async fn every_token_check() {
    let h = start("300ms").await;
    let v = h.version().await;
    let body = json!({ "cluster": "app", "address": "127.0.0.1:9100" });
    let ack = json!({ "group": "edge", "node": "x", "version": v });
    let cases: Vec<(Method, &str, Option<Value>, Vec<&str>)> = vec![
        (
            Method::GET,
            "/v1/snapshot?group=edge&node=x&version=0",
            None,
            vec![APP, OPERATOR],
        ),
        (
            Method::POST,
            "/v1/ack",
            Some(ack.clone()),
            vec![APP, OPERATOR],
        ),
        (Method::POST, "/v1/nack", Some(ack), vec![APP, OPERATOR]),
        (Method::GET, "/v1/nodes", None, vec![PROXY, APP]),
        (Method::GET, "/v1/groups", None, vec![PROXY, APP]),
        (Method::GET, "/v1/endpoints", None, vec![PROXY, APP]),
        (Method::GET, "/metrics", None, vec![PROXY, APP]),
        (
            Method::POST,
            "/v1/endpoints",
            Some(body.clone()),
            vec![PROXY],
        ),
        (Method::DELETE, "/v1/endpoints", Some(body), vec![PROXY]),
    ];
    for (method, path, body, wrong_roles) in cases {
        for token in [None, Some("wrong-token-wrong-token"), Some("")] {
            let r = h.call(method.clone(), path, token, body.clone()).await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {token:?}"
            );
        }
        for token in wrong_roles {
            let r = h
                .call(method.clone(), path, Some(token), body.clone())
                .await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {path}");
        }
    }
    // Nothing changed: no registration, no node, same version.
    assert!(h.endpoints().await.is_empty());
    let nodes = h.call(Method::GET, "/v1/nodes", Some(OPERATOR), None).await;
    assert_eq!(nodes.json["nodes"], json!([]));
    assert_eq!(h.version().await, v);
    // The token is never echoed back.
    let groups = h
        .call(Method::GET, "/v1/groups", Some(OPERATOR), None)
        .await;
    assert!(!groups.json.to_string().contains(OPERATOR));
    // Health needs no token; metrics with the operator token.
    assert_eq!(
        h.call(Method::GET, "/live", None, None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        h.call(Method::GET, "/ready", None, None).await.status,
        StatusCode::OK
    );
    let metrics = h.client.request(
        Request::get(format!("http://{}/metrics", h.addr()))
            .header("authorization", format!("Bearer {OPERATOR}"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    );
    let metrics = metrics.await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let page = metrics.into_body().collect().await.unwrap().to_bytes();
    let page = String::from_utf8_lossy(&page);
    assert!(page.contains("floodgate_control_published_total"), "{page}");
    assert!(
        page.contains("floodgate_control_auth_refused_total"),
        "{page}"
    );
}
