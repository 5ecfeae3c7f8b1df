//! The one reload path (`Proxy::apply`): state survives where config did not
//! change, listeners come and go, and a config that cannot be applied changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
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

fn three_endpoints(endpoints: &[&Upstream]) -> String {
    let eps: Vec<String> = endpoints
        .iter()
        .map(|u| format!("\"{}\"", u.endpoint()))
        .collect();
    format!(
        r#"
server: {{ access_log: false, drain_timeout: 2s }}
listeners:
  - name: public
    listen: 127.0.0.1:0
    routes:
      - {{ name: all, cluster: app, timeout: 5s }}
clusters:
  - name: app
    balancer: round_robin
    endpoints: [{}]
    outlier: {{ consecutive_failures: 2, base_ejection: 60s, max_ejection_percent: 50 }}
    admission: {{ initial_limit: 7, min_limit: 2, max_limit: 64, update_interval: 50ms, max_queue: 1000, queue_timeout: 2s }}
    circuit_breaker: {{ max_requests: 1000, consecutive_failures: 50 }}
"#,
        eps.join(", ")
    )
}

#[tokio::test]
async fn an_endpoint_change_under_load_keeps_what_the_cluster_learned() {
    let good = upstream("good").await;
    let bad = upstream("bad").await;
    let added = upstream("added").await;
    bad.set(Behavior {
        status: 500,
        ..Default::default()
    });
    let p = start_proxy(&three_endpoints(&[&good, &bad])).await;
    burst(&p.url("/x"), 10, 1).await;
    let endpoints = || async {
        get(&p.admin_url("/clusters")).await.json()["clusters"][0]["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["address"].as_str().unwrap().to_owned(),
                    e["ejected"].as_bool().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        endpoints().await,
        vec![(good.endpoint(), false), (bad.endpoint(), true)]
    );
    let before = p.proxy.snapshot().clusters().next().unwrap().clone();
    let good_endpoint = before.endpoints()[0].clone();

    // Load, bounded in count and time, across the reload.
    let url = p.url("/x");
    let load = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
        let mut statuses = Vec::new();
        for _ in 0..400 {
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            statuses.extend(burst(&url, 8, 4).await);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        statuses
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let limit_before =
        get(&p.admin_url("/clusters")).await.json()["clusters"][0]["admission"]["limit"].clone();
    let applied = p
        .proxy
        .apply(parse(&three_endpoints(&[&good, &bad, &added])))
        .unwrap();
    assert_eq!(applied, Applied::New(2));

    // The same cluster object: its admission limit and breaker are the ones it had,
    // the endpoints that stayed are the same objects (pools, health, ejection).
    let after = p.proxy.snapshot().clusters().next().unwrap().clone();
    assert!(Arc::ptr_eq(&before, &after), "the cluster was rebuilt");
    assert!(Arc::ptr_eq(
        before.admission().unwrap(),
        after.admission().unwrap()
    ));
    assert!(Arc::ptr_eq(
        before.breaker().unwrap(),
        after.breaker().unwrap()
    ));
    assert!(Arc::ptr_eq(&good_endpoint, &after.endpoints()[0]));
    let status = get(&p.admin_url("/clusters")).await.json();
    let limit_after = status["clusters"][0]["admission"]["limit"].clone();
    assert!(limit_before.is_u64() && limit_after.is_u64());
    assert_eq!(status["clusters"][0]["breaker"]["state"], "closed");
    assert_eq!(
        endpoints().await,
        vec![
            (good.endpoint(), false),
            (bad.endpoint(), true),
            (added.endpoint(), false)
        ],
        "the ejection of the endpoint that stayed is kept"
    );

    let statuses = load.await.unwrap();
    assert!(
        statuses.len() >= 40,
        "load ran: {} requests",
        statuses.len()
    );
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every request across the reload succeeded: {statuses:?}"
    );
    assert!(added.hits() > 0, "the new endpoint takes traffic");

    // Quiet now: a removal keeps the limit exactly as it stands.
    let quiet =
        get(&p.admin_url("/clusters")).await.json()["clusters"][0]["admission"]["limit"].clone();
    p.proxy
        .apply(parse(&three_endpoints(&[&good, &added])))
        .unwrap();
    let status = get(&p.admin_url("/clusters")).await.json();
    assert_eq!(status["clusters"][0]["admission"]["limit"], quiet);
    assert_eq!(
        status["clusters"][0]["endpoints"].as_array().unwrap().len(),
        2
    );
    let hits = (good.hits(), added.hits(), bad.hits());
    burst(&p.url("/x"), 20, 2).await;
    assert_eq!(
        bad.hits(),
        hits.2,
        "a removed endpoint gets no new requests"
    );
    assert!(good.hits() > hits.0 && added.hits() > hits.1);
}

#[tokio::test]
async fn a_rejected_config_leaves_the_endpoint_set_alone() {
    let good = upstream("good").await;
    let other = upstream("other").await;
    let p = start_proxy(&three_endpoints(&[&good])).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    // The endpoint change comes with a listener that cannot bind: nothing applies.
    let rejected = three_endpoints(&[&good, &other]).replace(
        "clusters:",
        &format!(
            "  - name: extra\n    listen: 127.0.0.1:{port}\n    routes: [ {{ name: all, cluster: app }} ]\nclusters:"
        ),
    );
    assert!(p.proxy.apply(parse(&rejected)).is_err());
    let cluster = p.proxy.snapshot().clusters().next().unwrap().clone();
    assert_eq!(cluster.endpoints().len(), 1);
    burst(&p.url("/x"), 10, 2).await;
    assert_eq!(other.hits(), 0, "the rejected endpoint got no traffic");
}
