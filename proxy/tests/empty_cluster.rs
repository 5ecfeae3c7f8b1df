//! A registry-only cluster (`endpoints: []`): it answers 503 `no_healthy_endpoint`
//! at once while it has no endpoint, `/clusters` lists it empty, and an
//! endpoint-only change makes it serve without rebuilding the cluster.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use floodgate::state::Applied;

fn parse(yaml: &str) -> floodgate::config::Config {
    floodgate::config::parse_str(yaml, "empty.yaml", std::path::Path::new(".")).unwrap()
}

#[tokio::test]
async fn an_empty_cluster_answers_503_until_an_endpoint_arrives() {
    let app = upstream("app").await;
    let p = start_proxy(&config_for_endpoints(&[], "", "")).await;

    let resp = get(&p.url("/x")).await;
    assert_eq!(resp.status, 503, "{}", resp.body);
    assert_eq!(resp.header("x-floodgate-reason"), "no_healthy_endpoint");
    assert!(!resp.header("retry-after").is_empty());
    let clusters = get(&p.admin_url("/clusters")).await.json();
    assert_eq!(clusters["clusters"][0]["name"], "app");
    assert_eq!(
        clusters["clusters"][0]["endpoints"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // The endpoint arrives: an endpoint-only change, the same cluster object.
    let before = p.proxy.snapshot().clusters().next().unwrap().clone();
    let applied = p
        .proxy
        .apply(parse(&config_for_endpoints(&[app.endpoint()], "", "")))
        .unwrap();
    assert!(matches!(applied, Applied::New(_)), "{applied:?}");
    let after = p.proxy.snapshot().clusters().next().unwrap().clone();
    assert!(Arc::ptr_eq(&before, &after), "the cluster was rebuilt");
    let resp = get(&p.url("/x")).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.header("x-upstream"), "app");

    // And it can go back to empty: 503 again, nothing else changes.
    p.proxy
        .apply(parse(&config_for_endpoints(&[], "", "")))
        .unwrap();
    let resp = get(&p.url("/x")).await;
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("x-floodgate-reason"), "no_healthy_endpoint");
}
