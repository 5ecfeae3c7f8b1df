//! The one reload path (`Proxy::apply`): state survives where config did not
//! change, listeners come and go, and a config that cannot be applied changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use floodgate::state::Applied;

fn parse(yaml: &str) -> floodgate::config::Config {
    floodgate::config::parse_str(yaml, "reload.yaml", std::path::Path::new(".")).unwrap()
}

fn two_routes(
    bad: &Upstream,
    good: &Upstream,
    route_timeout: &str,
    extra_listener: &str,
) -> String {
    format!(
        r#"
server: {{ access_log: false, drain_timeout: 2s }}
listeners:
  - name: public
    listen: 127.0.0.1:0
    routes:
      - {{ name: all, cluster: app, timeout: {route_timeout} }}
{extra_listener}
clusters:
  - name: app
    balancer: round_robin
    endpoints: ["{}", "{}"]
    outlier: {{ consecutive_failures: 2, base_ejection: 60s, max_ejection_percent: 50 }}
"#,
        bad.endpoint(),
        good.endpoint()
    )
}

async fn ejected(p: &TestProxy) -> Vec<bool> {
    get(&p.admin_url("/clusters")).await.json()["clusters"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["ejected"].as_bool().unwrap())
        .collect()
}

#[tokio::test]
async fn unchanged_clusters_keep_their_state() {
    let bad = upstream("bad").await;
    let good = upstream("good").await;
    bad.set(Behavior {
        status: 500,
        ..Default::default()
    });
    let p = start_proxy(&two_routes(&bad, &good, "5s", "")).await;
    burst(&p.url("/x"), 10, 1).await;
    assert_eq!(ejected(&p).await, vec![true, false]);

    // A route-only change: the cluster object, its pools and its ejections are kept.
    let applied = p
        .proxy
        .apply(parse(&two_routes(&bad, &good, "6s", "")))
        .unwrap();
    assert_eq!(applied, Applied::New(2));
    assert_eq!(ejected(&p).await, vec![true, false]);

    // The same config again changes nothing.
    let applied = p
        .proxy
        .apply(parse(&two_routes(&bad, &good, "6s", "")))
        .unwrap();
    assert_eq!(applied, Applied::Unchanged(2));

    // A cluster change builds it afresh: the ejection is gone.
    let changed =
        two_routes(&bad, &good, "6s", "").replace("base_ejection: 60s", "base_ejection: 61s");
    p.proxy.apply(parse(&changed)).unwrap();
    assert_eq!(ejected(&p).await, vec![false, false]);
}

#[tokio::test]
async fn listeners_are_bound_and_drained_on_reload() {
    let bad = upstream("bad").await;
    let good = upstream("good").await;
    let p = start_proxy(&two_routes(&bad, &good, "5s", "")).await;
    assert!(p.proxy.listener_addr("extra").is_none());

    let extra = r#"  - name: extra
    listen: 127.0.0.1:0
    routes: [ { name: all, cluster: app } ]"#;
    p.proxy
        .apply(parse(&two_routes(&bad, &good, "5s", extra)))
        .unwrap();
    let addr = p.proxy.listener_addr("extra").expect("new listener bound");
    assert_eq!(get(&format!("http://{addr}/x")).await.status, 200);

    p.proxy
        .apply(parse(&two_routes(&bad, &good, "5s", "")))
        .unwrap();
    assert!(p.proxy.listener_addr("extra").is_none());
    eventually(
        Duration::from_secs(5),
        "removed listener stops accepting",
        || async { tokio::net::TcpStream::connect(addr).await.is_err() },
    )
    .await;
    assert_eq!(
        get(&p.url("/x")).await.status,
        200,
        "the kept listener still serves"
    );
}

#[tokio::test]
async fn a_config_that_cannot_be_applied_changes_nothing() {
    let bad = upstream("bad").await;
    let good = upstream("good").await;
    let p = start_proxy(&two_routes(&bad, &good, "5s", "")).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let clash = format!(
        "  - name: extra\n    listen: 127.0.0.1:{port}\n    routes: [ {{ name: all, cluster: app }} ]"
    );
    let err = p
        .proxy
        .apply(parse(&two_routes(&bad, &good, "7s", &clash)))
        .unwrap_err();
    assert!(err.to_string().contains("cannot bind"), "{err}");
    let running = get(&p.admin_url("/config")).await.json();
    assert_eq!(running["version"], 1);
    assert_eq!(
        running["config"]["listeners"][0]["routes"][0]["timeout"],
        "5s"
    );
    assert_eq!(get(&p.url("/x")).await.status, 200);
    let metrics = get(&p.admin_url("/metrics")).await.body;
    assert!(
        metric(
            &metrics,
            "floodgate_config_reloads_total{result=\"failed\"}"
        ) >= 1.0
    );
}
