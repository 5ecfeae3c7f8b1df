//! Routing end to end: host, path, method and header matches, first match wins,
//! prefix rewrite, weighted split, forwarding headers (and hop-by-hop ones dropped
//! both ways), and the 404 for no route.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use http::Request;
use http_body_util::Full;

#[tokio::test]
async fn routes_by_host_path_method_and_header() {
    let api = upstream("api").await;
    let admin = upstream("admin").await;
    let status = upstream("status").await;
    let fallback = upstream("fallback").await;
    let yaml = format!(
        r#"
server: {{ access_log: false }}
listeners:
  - name: public
    listen: 127.0.0.1:0
    routes:
      - name: prod-api
        match: {{ host: "code.example.gov", path_prefix: "/api/", method: [GET], headers: {{ x-env: prod }} }}
        cluster: api
      - name: admin
        match: {{ host: "code.example.gov", path: "/admin" }}
        cluster: admin
      - name: status
        match: {{ host: "*.status.example.gov" }}
        cluster: status
      - name: rest
        match: {{ host: "code.example.gov" }}
        cluster: fallback
clusters:
  - {{ name: api, endpoints: ["{}"] }}
  - {{ name: admin, endpoints: ["{}"] }}
  - {{ name: status, endpoints: ["{}"] }}
  - {{ name: fallback, endpoints: ["{}"] }}
"#,
        api.endpoint(),
        admin.endpoint(),
        status.endpoint(),
        fallback.endpoint()
    );
    let p = start_proxy(&yaml).await;
    let c = client();
    let go = |method: &str, path: &str, host: &str, env: Option<&str>| {
        let mut b = Request::builder()
            .method(method)
            .uri(p.url(path))
            .header("host", host);
        if let Some(env) = env {
            b = b.header("x-env", env);
        }
        b.body(Full::default()).unwrap()
    };
    let r = send(
        &c,
        go("GET", "/api/v1/codes/1", "code.example.gov", Some("prod")),
    )
    .await;
    assert_eq!(r.header("x-upstream"), "api");
    // Same path without the header, or with another method, falls through to `rest`.
    let r = send(&c, go("GET", "/api/v1/codes/1", "code.example.gov", None)).await;
    assert_eq!(r.header("x-upstream"), "fallback");
    let r = send(
        &c,
        go("POST", "/api/v1/codes/1", "code.example.gov", Some("prod")),
    )
    .await;
    assert_eq!(r.header("x-upstream"), "fallback");
    // Exact path: /admin matches, /admin/x does not.
    let r = send(&c, go("GET", "/admin", "CODE.example.gov:8080", None)).await;
    assert_eq!(r.header("x-upstream"), "admin");
    let r = send(&c, go("GET", "/admin/x", "code.example.gov", None)).await;
    assert_eq!(r.header("x-upstream"), "fallback");
    // Wildcard host.
    let r = send(&c, go("GET", "/", "east.status.example.gov", None)).await;
    assert_eq!(r.header("x-upstream"), "status");
    // No route: 404 with the reason header and a JSON body.
    let r = send(&c, go("GET", "/", "other.example.gov", None)).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-floodgate-reason"), "no_route");
    assert_eq!(r.json()["reason"], "no_route");
    assert!(!r.header("x-request-id").is_empty());
}

#[tokio::test]
async fn prefix_rewrite_and_forwarding_headers() {
    let app = upstream("app").await;
    let yaml = format!(
        r#"
server: {{ access_log: false }}
listeners:
  - name: public
    listen: 127.0.0.1:0
    routes:
      - name: v1
        match: {{ path_prefix: "/api/v1/" }}
        rewrite_prefix: "/internal/"
        cluster: app
      - name: rest
        cluster: app
clusters:
  - {{ name: app, endpoints: ["{}"] }}
"#,
        app.endpoint()
    );
    let p = start_proxy(&yaml).await;
    let req = Request::get(p.url("/api/v1/codes/42?x=1"))
        .header("host", "code.example.gov")
        .header("x-request-id", "req-123")
        .header("x-forwarded-for", "203.0.113.9")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret")
        .header("keep-alive", "timeout=5")
        .body(Full::default())
        .unwrap();
    let r = send(&client(), req).await;
    assert_eq!(r.status, 200);
    let echo = r.json();
    assert_eq!(echo["path"], "/internal/codes/42?x=1");
    let h = &echo["headers"];
    assert_eq!(
        h["host"], "code.example.gov",
        "Host is preserved by default"
    );
    assert_eq!(h["x-request-id"], "req-123");
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "code.example.gov");
    assert!(
        h.get("x-hop").is_none(),
        "headers named in Connection are hop-by-hop"
    );
    assert!(h.get("keep-alive").is_none());
    assert_eq!(r.header("x-request-id"), "req-123");

    // A request without an id gets a generated one, the same up and down.
    let r = get(&p.url("/other")).await;
    let id = r.json()["headers"]["x-request-id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 36);
    assert_eq!(r.header("x-request-id"), id);
    assert_eq!(r.json()["path"], "/other");
}

/// A listener can leave out the forwarding headers and the request id, as a mesh
/// sidecar's inbound side often does: the request goes up as the client sent it
/// (a client's own `x-request-id` included) and nothing is added on the way down.
#[tokio::test]
async fn a_listener_can_add_no_forwarding_headers_and_no_request_id() {
    let app = upstream("app").await;
    let yaml = simple_config(&[&app], "", "").replace(
        "    routes:\n",
        "    headers: { forwarded: false, request_id: false }\n    routes:\n",
    );
    let p = start_proxy(&yaml).await;
    let r = get(&p.url("/plain")).await;
    assert_eq!(r.status, 200);
    let h = &r.json()["headers"];
    for added in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-request-id",
    ] {
        assert!(h.get(added).is_none(), "{added} was added: {h}");
    }
    assert!(r.headers.get("x-request-id").is_none());

    let req = Request::get(p.url("/with-id"))
        .header("x-request-id", "client-7")
        .body(Full::default())
        .unwrap();
    let r = send(&client(), req).await;
    assert_eq!(r.json()["headers"]["x-request-id"], "client-7");
    assert!(r.headers.get("x-request-id").is_none(), "not echoed");
}

#[tokio::test]
async fn weighted_clusters_split_traffic() {
    let stable = upstream("stable").await;
    let canary = upstream("canary").await;
    let yaml = format!(
        r#"
server: {{ access_log: false }}
listeners:
  - name: public
    listen: 127.0.0.1:0
    routes:
      - name: split
        weighted: [ {{ cluster: stable, weight: 90 }}, {{ cluster: canary, weight: 10 }} ]
clusters:
  - {{ name: stable, endpoints: ["{}"] }}
  - {{ name: canary, endpoints: ["{}"] }}
"#,
        stable.endpoint(),
        canary.endpoint()
    );
    let p = start_proxy(&yaml).await;
    let statuses = burst(&p.url("/"), 1000, 16).await;
    assert!(statuses.iter().all(|s| s.is_success()));
    let share = canary.hits() as f64 / 1000.0;
    assert_eq!(stable.hits() + canary.hits(), 1000);
    // 10% expected; binomial sd is ~0.95% at n=1000, so 6%..14% is > 4 sd wide.
    assert!((0.06..0.14).contains(&share), "canary share {share}");
}

#[tokio::test]
async fn preserve_host_false_sends_the_endpoint_address() {
    let app = upstream("app").await;
    let yaml = simple_config(&[&app], "        preserve_host: false", "");
    let p = start_proxy(&yaml).await;
    let r = get_host(&p.url("/"), "code.example.gov").await;
    assert_eq!(r.json()["headers"]["host"], app.endpoint());
    assert_eq!(r.json()["headers"]["x-forwarded-host"], "code.example.gov");
}

/// An upstream that answers every request on a connection with `response`, verbatim.
async fn raw_upstream(response: &'static [u8]) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    // Bodiless requests: one answer per complete head.
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        if s.write_all(response).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn hop_by_hop_response_headers_stay_with_the_upstream() {
    let up = raw_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, x-hop\r\n\
          X-Hop: secret\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\n\
          Trailer: x-sum\r\nUpgrade: h2c\r\nX-End: kept\r\n\r\nok",
    )
    .await;
    let yaml = config_for_endpoints(&[up.to_string()], "", "");
    let p = start_proxy(&yaml).await;
    for _ in 0..3 {
        let r = get(&p.url("/")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-end"), "kept");
        for hop in [
            "x-hop",
            "keep-alive",
            "proxy-authenticate",
            "trailer",
            "upgrade",
        ] {
            assert!(r.headers.get(hop).is_none(), "{hop} passed downstream");
        }
    }
}
