//! Tests for config validation: defaults, every rule, and error reporting.

use std::path::Path;
use std::time::Duration;

use http::{Method, StatusCode};

use super::super::{
    parse_size, parse_str, Backend, BalancerKind, Config, ConfigErrors, EndpointAddr, HostMatch,
    ListenerHeaders, PathMatch, RetryOn, UpstreamProtocol, WeightedCluster,
};
use super::grammar::{endpoint, host_pattern};
use crate::tls::test_certs::{write_pair, TestCa};

/// A valid config that the table below breaks one line at a time.
const BASE: &str = r#"
admin:
  listen: 127.0.0.1:9901
listeners:
  - name: web
    listen: 127.0.0.1:8080
    routes:
      - name: api
        match:
          path_prefix: /api/
        cluster: healthcode
        timeout: 2s
        retry:
          attempts: 3
      - name: rest
        cluster: audit
clusters:
  - name: healthcode
    endpoints: [127.0.0.1:9001, 127.0.0.1:9002]
  - name: audit
    endpoints: ["audit.svc:80"]
"#;

fn check(text: &str) -> Result<Config, ConfigErrors> {
    parse_str(text, "test.yaml", Path::new("."))
}

fn errors(text: &str) -> Vec<(String, String)> {
    match check(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => {
            assert_eq!(e.file, "test.yaml");
            e.errors.into_iter().map(|e| (e.path, e.reason)).collect()
        }
    }
}

/// BASE with `from` replaced by `to` (which must occur).
fn edit(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "BASE lacks {from:?}");
    BASE.replacen(from, to, 1)
}

#[test]
fn base_is_valid_and_source_is_set() {
    let c = check(BASE).unwrap();
    assert_eq!(c.source, "test.yaml");
    assert_eq!(c.listeners[0].routes.len(), 2);
    assert!(c.cluster("audit").is_some());
}

#[test]
fn defaults_are_applied() {
    let c = check(
        "
listeners:
  - name: web
    listen: 127.0.0.1:8080
    routes:
      - name: all
        cluster: app
        retry: {}
clusters:
  - name: app
    endpoints: [127.0.0.1:9001]
    health_check: {path: /healthz}
    outlier: {}
",
    )
    .unwrap();
    assert_eq!(c.admin.listen, "127.0.0.1:9901".parse().unwrap());
    assert_eq!(c.server.drain_timeout, Duration::from_secs(30));
    assert_eq!(
        c.server.access_log.as_deref(),
        Some(&crate::config::AccessLogConfig::default())
    );
    let l = &c.listeners[0];
    assert!(l.tls.is_none());
    assert_eq!(l.limits.max_connections, 10_000);
    assert_eq!(l.limits.header_read_timeout, Duration::from_secs(10));
    assert_eq!(l.limits.idle_timeout, Duration::from_secs(60));
    assert_eq!(l.limits.max_header_bytes, 65_536);
    assert_eq!(l.limits.max_request_body_bytes, 10_485_760);
    assert_eq!(l.limits.max_concurrent_streams, 100);
    assert_eq!(l.limits.premature_reset_total_stream_count, 500);
    assert_eq!(
        l.limits.premature_reset_min_stream_lifetime,
        Duration::from_secs(1)
    );
    let r = &l.routes[0];
    assert_eq!(r.matcher.host, None);
    assert_eq!(r.matcher.path, PathMatch::Prefix("/".into()));
    assert!(r.matcher.methods.is_empty() && r.matcher.headers.is_empty());
    assert_eq!(r.backend, Backend::Cluster("app".into()));
    assert_eq!(r.timeout, Some(Duration::from_secs(15)));
    assert!(r.preserve_host);
    assert_eq!(r.rewrite_prefix, None);
    let retry = r.retry.as_ref().unwrap();
    assert_eq!(retry.attempts, 2);
    assert_eq!(
        retry.on,
        RetryOn {
            connect_failure: true,
            ..RetryOn::default()
        }
    );
    assert_eq!(retry.per_try_timeout, None);
    assert_eq!(retry.budget_percent, 20.0);
    assert_eq!(retry.min_retries_per_sec, 10);
    assert_eq!(retry.backoff, Duration::from_millis(25));
    let cl = &c.clusters[0];
    assert_eq!(cl.balancer, BalancerKind::P2cLeastRequest);
    assert_eq!(cl.protocol, UpstreamProtocol::Http1);
    assert_eq!(cl.connect_timeout, Duration::from_secs(1));
    assert_eq!(cl.idle_timeout, Duration::from_secs(90));
    assert_eq!(cl.max_idle_per_endpoint, 256);
    let hc = cl.health_check.as_ref().unwrap();
    assert_eq!(
        (
            hc.interval,
            hc.timeout,
            hc.healthy_threshold,
            hc.unhealthy_threshold
        ),
        (Duration::from_secs(5), Duration::from_secs(1), 2, 3)
    );
    assert_eq!(cl.healthy_panic_threshold, 50);
    let o = cl.outlier.as_ref().unwrap();
    assert_eq!(
        (
            o.consecutive_failures,
            o.base_ejection,
            o.max_ejection,
            o.max_ejection_percent
        ),
        (5, Duration::from_secs(30), Duration::from_secs(300), 10)
    );
    assert!(cl.upstream_tls.is_none());
}

#[test]
fn no_retry_block_means_no_retries() {
    let c = check(BASE).unwrap();
    assert!(c.listeners[0].routes[1].retry.is_none());
}

/// One bad edit of BASE → the path and a fragment of the reason it must report.
#[test]
fn bad_configs_report_path_and_reason() {
    let table: &[(&str, &str, &str, &str)] = &[
        // admin / server
        ("listen: 127.0.0.1:9901", "listen: localhost:9901", "admin.listen", "not an ip:port"),
        ("admin:\n", "server: {drain_timeout: 30}\nadmin:\n", "server.drain_timeout", "needs a unit"),
        // listeners
        ("listen: 127.0.0.1:8080", "listen: :8080", "listeners[0].listen", "0.0.0.0:8080"),
        ("listen: 127.0.0.1:8080", "listen: 127.0.0.1:9901", "listeners[0].listen", "conflicts with admin.listen"),
        ("name: web", "name: web server", "listeners[0].name", "may contain only"),
        ("    routes:\n      - name: api", "    limits: {max_connections: 0}\n    routes:\n      - name: api", "listeners[0].limits.max_connections", "at least 1"),
        ("    routes:\n      - name: api", "    limits: {idle_timeout: 0s}\n    routes:\n      - name: api", "listeners[0].limits.idle_timeout", "greater than 0"),
        ("    routes:\n      - name: api", "    limits: {max_header_bytes: 1KiB}\n    routes:\n      - name: api", "listeners[0].limits.max_header_bytes", "at least 8KiB"),
        ("    routes:\n      - name: api", "    limits: {max_request_body_bytes: 10 furlongs}\n    routes:\n      - name: api", "listeners[0].limits.max_request_body_bytes", "is not a size"),
        ("    routes:\n      - name: api", "    limits: {max_concurrent_streams: 0}\n    routes:\n      - name: api", "listeners[0].limits.max_concurrent_streams", "between 1 and"),
        ("    routes:\n      - name: api", "    limits: {max_concurrent_streams: 4294967295}\n    routes:\n      - name: api", "listeners[0].limits.max_concurrent_streams", "between 1 and"),
        ("    routes:\n      - name: api", "    limits: {premature_reset_total_stream_count: 1}\n    routes:\n      - name: api", "listeners[0].limits.premature_reset_total_stream_count", "at least 2"),
        ("    routes:\n      - name: api", "    limits: {premature_reset_min_stream_lifetime: 0s}\n    routes:\n      - name: api", "listeners[0].limits.premature_reset_min_stream_lifetime", "greater than 0"),
        ("    routes:\n      - name: api", "    tls: {certs: []}\n    routes:\n      - name: api", "listeners[0].tls.certs", "at least one certificate"),
        // routes
        ("      - name: rest", "      - name: api", "listeners[0].routes[1].name", "duplicate route name `api`"),
        ("        cluster: audit", "        cluster: helthcode", "listeners[0].routes[1].cluster", "unknown cluster \"helthcode\" (known: healthcode, audit)"),
        ("        cluster: audit", "        cluster: audit\n        weighted: [{cluster: audit, weight: 1}]", "listeners[0].routes[1]", "not both"),
        ("        cluster: audit", "        timeout: 1s", "listeners[0].routes[1]", "needs a destination"),
        ("path_prefix: /api/", "path_prefix: api/", "listeners[0].routes[0].match.path_prefix", "must start with `/`"),
        ("path_prefix: /api/", "path_prefix: /api/\n          path: /api", "listeners[0].routes[0].match", "not both"),
        ("path_prefix: /api/", "path: /a b", "listeners[0].routes[0].match.path", "spaces"),
        ("path_prefix: /api/", "host: api.example.com:443", "listeners[0].routes[0].match.host", "must not include a port"),
        ("path_prefix: /api/", "host: api.*.com", "listeners[0].routes[0].match.host", "whole first label"),
        ("path_prefix: /api/", "host: bad_host!.com", "listeners[0].routes[0].match.host", "only letters"),
        ("path_prefix: /api/", "method: [GET, get]", "listeners[0].routes[0].match.method[1]", "did you mean `GET`"),
        ("path_prefix: /api/", "method: [GET, GET]", "listeners[0].routes[0].match.method[1]", "listed twice"),
        ("path_prefix: /api/", "method: \"G(T\"", "listeners[0].routes[0].match.method[0]", "not a valid HTTP method"),
        ("path_prefix: /api/", "headers: {\"bad header\": x}", "listeners[0].routes[0].match.headers.bad header", "not a valid header name"),
        ("path_prefix: /api/", "headers: {x-a: \"line\\nbreak\"}", "listeners[0].routes[0].match.headers.x-a", "not a valid header value"),
        ("        timeout: 2s", "        timeout: 0s", "listeners[0].routes[0].timeout", "greater than 0"),
        ("        timeout: 2s", "        timeout: 2", "listeners[0].routes[0].timeout", "needs a unit"),
        ("        timeout: 2s", "        timeout: 2s\n        rewrite_prefix: v1/", "listeners[0].routes[0].rewrite_prefix", "must start with `/`"),
        // retry
        ("          attempts: 3", "          attempts: 0", "listeners[0].routes[0].retry.attempts", "between 1 and 10"),
        ("          attempts: 3", "          attempts: 11", "listeners[0].routes[0].retry.attempts", "between 1 and 10"),
        ("          attempts: 3", "          on: [connect_failure, 5xy]", "listeners[0].routes[0].retry.on[1]", "unknown retry condition `5xy`"),
        ("          attempts: 3", "          on: [600]", "listeners[0].routes[0].retry.on[0]", "outside 100-599"),
        ("          attempts: 3", "          on: []", "listeners[0].routes[0].retry.on", "at least one condition"),
        ("          attempts: 3", "          per_try_timeout: 3s", "listeners[0].routes[0].retry.per_try_timeout", "longer than the route timeout 2s"),
        ("          attempts: 3", "          budget_percent: 150", "listeners[0].routes[0].retry.budget_percent", "between 0 and 100"),
        ("          attempts: 3", "          backoff: soon", "listeners[0].routes[0].retry.backoff", "not a non-negative number followed by a unit"),
        // clusters
        ("  - name: audit", "  - name: healthcode\n    endpoints: [\"127.0.0.1:1\"]\n  - name: audit", "clusters[1].name", "duplicate cluster name `healthcode` (also clusters[0])"),
        ("[127.0.0.1:9001, 127.0.0.1:9002]", "[127.0.0.1:9001, 127.0.0.1:9001]", "clusters[0].endpoints[1]", "duplicate endpoint `127.0.0.1:9001`"),
        ("[127.0.0.1:9001, 127.0.0.1:9002]", "[127.0.0.1]", "clusters[0].endpoints[0]", "needs a port"),
        ("[127.0.0.1:9001, 127.0.0.1:9002]", "[\"127.0.0.1:0\"]", "clusters[0].endpoints[0]", "1 to 65535"),
        ("[127.0.0.1:9001, 127.0.0.1:9002]", "[\"127.0.0.1:70000\"]", "clusters[0].endpoints[0]", "1 to 65535"),
        ("[127.0.0.1:9001, 127.0.0.1:9002]", "[\"::1:80\"]", "clusters[0].endpoints[0]", "need brackets"),
        ("[127.0.0.1:9001, 127.0.0.1:9002]", "[\"http://app:80\"]", "clusters[0].endpoints[0]", "without a scheme"),
        ("[127.0.0.1:9001, 127.0.0.1:9002]", "[\"300.1.1.1:80\"]", "clusters[0].endpoints[0]", "not a valid IPv4"),
        ("    endpoints: [\"audit.svc:80\"]", "    endpoints: [\"audit.svc:80\"]\n    connect_timeout: 0ms", "clusters[1].connect_timeout", "greater than 0"),
        ("    endpoints: [\"audit.svc:80\"]", "    endpoints: [\"audit.svc:80\"]\n    health_check: {path: healthz}", "clusters[1].health_check.path", "must start with `/`"),
        ("    endpoints: [\"audit.svc:80\"]", "    endpoints: [\"audit.svc:80\"]\n    health_check: {path: /h, interval: 1s, timeout: 2s}", "clusters[1].health_check.timeout", "longer than the interval 1s"),
        ("    endpoints: [\"audit.svc:80\"]", "    endpoints: [\"audit.svc:80\"]\n    health_check: {path: /h, healthy_threshold: 0}", "clusters[1].health_check.healthy_threshold", "at least 1"),
        ("    endpoints: [\"audit.svc:80\"]", "    endpoints: [\"audit.svc:80\"]\n    health_check: {path: /h, unhealthy_threshold: 0}", "clusters[1].health_check.unhealthy_threshold", "at least 1"),
        ("    endpoints: [\"audit.svc:80\"]", "    endpoints: [\"audit.svc:80\"]\n    outlier: {consecutive_failures: 0}", "clusters[1].outlier.consecutive_failures", "at least 1"),
        ("    endpoints: [\"audit.svc:80\"]", "    endpoints: [\"audit.svc:80\"]\n    outlier: {base_ejection: 60s, max_ejection: 30s}", "clusters[1].outlier.max_ejection", "shorter than base_ejection 60s"),
        ("    endpoints: [\"audit.svc:80\"]", "    endpoints: [\"audit.svc:80\"]\n    outlier: {max_ejection_percent: 101}", "clusters[1].outlier.max_ejection_percent", "between 0 and 100"),
        ("    endpoints: [\"audit.svc:80\"]", "    endpoints: [\"audit.svc:80\"]\n    healthy_panic_threshold: 101", "clusters[1].healthy_panic_threshold", "between 0 and 100"),
        ("    endpoints: [\"audit.svc:80\"]", "    endpoints: [\"audit.svc:80\"]\n    upstream_tls: {ca: /nonexistent/ca.pem}", "clusters[1].upstream_tls.ca", "cannot read `/nonexistent/ca.pem`"),
    ];
    for (from, to, path, reason) in table {
        let errs = errors(&edit(from, to));
        assert!(
            errs.iter().any(|(p, r)| p == path && r.contains(reason)),
            "editing {from:?} → {to:?}: expected `{path}: …{reason}…`, got {errs:#?}"
        );
        assert_eq!(errs.len(), 1, "one edit, one error: {errs:#?}");
    }
}

#[test]
fn three_errors_are_all_reported_in_file_order() {
    let text = edit("listen: 127.0.0.1:8080", "listen: nowhere")
        .replacen("        cluster: audit", "        cluster: helthcode", 1)
        .replacen("127.0.0.1:9002]", "127.0.0.1]", 1);
    let err = check(&text).unwrap_err();
    let got: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        got,
        [
            "listeners[0].listen",
            "listeners[0].routes[1].cluster",
            "clusters[0].endpoints[1]"
        ]
    );
    let shown = err.to_string();
    assert_eq!(shown.lines().count(), 3, "{shown}");
    assert!(shown.contains(
        "test.yaml: listeners[0].routes[1].cluster: unknown cluster \"helthcode\" (known: healthcode, audit)"
    ));
}

#[test]
fn syntax_and_unknown_field_errors_come_from_parsing() {
    let err = check(&edit("        timeout: 2s", "        timeot: 2s")).unwrap_err();
    assert_eq!(err.errors.len(), 1);
    let e = &err.errors[0];
    assert_eq!(e.path, "listeners[0].routes[0].timeot");
    assert!(
        e.reason.contains("unknown field `timeot`, expected one of"),
        "{e:?}"
    );
    assert_eq!((e.line, e.column), (Some(12), Some(9)));
    assert!(err
        .to_string()
        .starts_with("test.yaml:12:9: listeners[0].routes[0].timeot: unknown field"));

    let err = check("listeners: [\n").unwrap_err();
    assert!(err.errors[0].line.is_some(), "{err:?}");
}

#[test]
fn empty_lists_are_rejected() {
    let errs = errors("listeners: []\nclusters: []\n");
    assert_eq!(
        errs,
        [
            (
                "listeners".to_owned(),
                "at least one listener is required".to_owned()
            ),
            (
                "clusters".to_owned(),
                "at least one cluster is required".to_owned()
            ),
        ]
    );
    let errs = errors(&edit(
        "    routes:\n      - name: api\n        match:\n          path_prefix: /api/\n        cluster: healthcode\n        timeout: 2s\n        retry:\n          attempts: 3\n      - name: rest\n        cluster: audit\n",
        "    routes: []\n",
    ));
    assert_eq!(errs[0].0, "listeners[0].routes");
}

#[test]
fn an_explicitly_empty_endpoint_list_is_a_registry_only_cluster() {
    // `endpoints: []` is valid: the control plane's registry fills it in. A missing
    // `endpoints` stays an error (a typo must not silently make a cluster empty).
    let config = check(&edit("[127.0.0.1:9001, 127.0.0.1:9002]", "[]")).unwrap();
    assert!(config.cluster("healthcode").unwrap().endpoints.is_empty());
    let errs = errors(&edit(
        "    endpoints: [127.0.0.1:9001, 127.0.0.1:9002]\n",
        "",
    ));
    assert!(
        errs.iter()
            .any(|(_, r)| r.contains("missing field `endpoints`")),
        "{errs:?}"
    );
}

#[test]
fn duplicate_listener_names_and_addresses() {
    let text = edit(
        "clusters:",
        "  - name: web\n    listen: 0.0.0.0:8080\n    routes: [{name: a, cluster: audit}]\n  \
         - name: other\n    listen: 127.0.0.1:0\n    routes: [{name: a, cluster: audit}]\n  \
         - name: other2\n    listen: 127.0.0.1:0\n    routes: [{name: a, cluster: audit}]\nclusters:",
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!(errs[0].0, "listeners[1].name");
    assert!(errs[0]
        .1
        .contains("duplicate listener name `web` (also listeners[0])"));
    assert_eq!(errs[1].0, "listeners[1].listen");
    assert!(
        errs[1].1.contains("conflicts with listeners[0].listen"),
        "{errs:#?}"
    );
}

#[test]
fn host_patterns() {
    assert_eq!(host_pattern("*"), Ok(None));
    assert_eq!(
        host_pattern("API.Example.com."),
        Ok(Some(HostMatch::Exact("api.example.com".into())))
    );
    assert_eq!(
        host_pattern("*.Status.example.gov"),
        Ok(Some(HostMatch::Suffix(".status.example.gov".into())))
    );
    assert!(host_pattern("*.").is_err());
    assert!(host_pattern("*example.com").is_err());
    assert!(host_pattern("a.example.com:80").is_err());
    assert!(host_pattern("").is_err());

    let c = check(&edit(
        "path_prefix: /api/",
        "host: \"*.Status.Example.gov\"\n          path_prefix: /api/",
    ))
    .unwrap();
    assert_eq!(
        c.listeners[0].routes[0].matcher.host,
        Some(HostMatch::Suffix(".status.example.gov".into()))
    );
    let c = check(&edit("path_prefix: /api/", "host: \"*\"")).unwrap();
    assert_eq!(c.listeners[0].routes[0].matcher.host, None);
}

#[test]
fn match_fields_are_converted() {
    let c = check(&edit(
        "path_prefix: /api/",
        "path: /api/v1/codes\n          method: [GET, HEAD]\n          headers: {X-Canary: \"1\", x-tenant: city}",
    ))
    .unwrap();
    let m = &c.listeners[0].routes[0].matcher;
    assert_eq!(m.path, PathMatch::Exact("/api/v1/codes".into()));
    assert_eq!(m.methods, [Method::GET, Method::HEAD]);
    assert_eq!(m.headers.len(), 2);
    assert_eq!(m.headers[0].0.as_str(), "x-canary");
    assert_eq!(m.headers[0].1, "1");
    let c = check(&edit("path_prefix: /api/", "method: POST")).unwrap();
    assert_eq!(c.listeners[0].routes[0].matcher.methods, [Method::POST]);
}

#[test]
fn rewrite_prefix_needs_a_prefix_match() {
    let c = check(&edit(
        "        timeout: 2s",
        "        timeout: 2s\n        rewrite_prefix: /v1/",
    ))
    .unwrap();
    assert_eq!(
        c.listeners[0].routes[0].rewrite_prefix.as_deref(),
        Some("/v1/")
    );
    let errs = errors(&edit("path_prefix: /api/", "path: /api").replacen(
        "        timeout: 2s",
        "        timeout: 2s\n        rewrite_prefix: /v1/",
        1,
    ));
    assert_eq!(errs[0].0, "listeners[0].routes[0].rewrite_prefix");
    assert!(errs[0].1.contains("needs a `path_prefix` match"));
}

#[test]
fn weighted_backends() {
    let c = check(&edit(
        "        cluster: audit",
        "        weighted:\n          - {cluster: healthcode, weight: 90}\n          - {cluster: audit, weight: 10}",
    ))
    .unwrap();
    assert_eq!(
        c.listeners[0].routes[1].backend,
        Backend::Weighted(vec![
            WeightedCluster {
                cluster: "healthcode".into(),
                weight: 90
            },
            WeightedCluster {
                cluster: "audit".into(),
                weight: 10
            },
        ])
    );
    // A zero arm is fine while another is positive.
    check(&edit(
        "        cluster: audit",
        "        weighted: [{cluster: healthcode, weight: 0}, {cluster: audit, weight: 1}]",
    ))
    .unwrap();

    let errs = errors(&edit(
        "        cluster: audit",
        "        weighted: [{cluster: healthcode, weight: 0}, {cluster: audit, weight: 0}]",
    ));
    assert_eq!(errs[0].0, "listeners[0].routes[1].weighted");
    assert!(errs[0].1.contains("at least one weight"));

    let errs = errors(&edit(
        "        cluster: audit",
        "        weighted: [{cluster: nope, weight: 1}, {cluster: audit, weight: 1}, {cluster: audit, weight: 2}]",
    ));
    let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "listeners[0].routes[1].weighted[0].cluster",
            "listeners[0].routes[1].weighted[2].cluster"
        ]
    );
    assert!(errs[1].1.contains("listed twice"));

    let errs = errors(&edit("        cluster: audit", "        weighted: []"));
    assert!(errs[0].1.contains("at least one cluster"));

    // Negative weights are type errors from parsing, with a path.
    let err = check(&edit(
        "        cluster: audit",
        "        weighted: [{cluster: audit, weight: -1}]",
    ))
    .unwrap_err();
    assert_eq!(
        err.errors[0].path,
        "listeners[0].routes[1].weighted[0].weight"
    );
}

#[test]
fn retry_on_expansion() {
    let c = check(&edit(
        "          attempts: 3",
        "          attempts: 3\n          on: [reset, timeout, gateway_error, 503, \"429\"]\n          per_try_timeout: 500ms",
    ))
    .unwrap();
    let retry = c.listeners[0].routes[0].retry.clone().unwrap();
    assert!(!retry.on.connect_failure && retry.on.reset && retry.on.timeout);
    let codes: Vec<u16> = retry.on.statuses.iter().map(StatusCode::as_u16).collect();
    assert_eq!(codes, [429, 502, 503, 504], "sorted and deduplicated");
    assert_eq!(retry.per_try_timeout, Some(Duration::from_millis(500)));
    assert_eq!(retry.attempts, 3);

    let c = check(&edit("          attempts: 3", "          on: 5xx")).unwrap();
    let on = &c.listeners[0].routes[0].retry.as_ref().unwrap().on;
    assert_eq!(on.statuses.len(), 100);
    assert_eq!(
        on.statuses.first(),
        Some(&StatusCode::INTERNAL_SERVER_ERROR)
    );
    assert_eq!(on.statuses.last().map(StatusCode::as_u16), Some(599));
    assert!(!on.connect_failure);
}

#[test]
fn endpoints_parse() {
    assert_eq!(
        endpoint("127.0.0.1:9001"),
        Ok(EndpointAddr {
            host: "127.0.0.1".into(),
            port: 9001
        })
    );
    assert_eq!(
        endpoint("[::1]:8080"),
        Ok(EndpointAddr {
            host: "::1".into(),
            port: 8080
        })
    );
    assert_eq!(endpoint("[::1]:8080").unwrap().to_string(), "[::1]:8080");
    assert_eq!(
        endpoint("Audit.SVC:80"),
        Ok(EndpointAddr {
            host: "audit.svc".into(),
            port: 80
        })
    );
    for bad in [
        "[::1]",
        "[nope]:80",
        "host",
        "host:",
        "host:x",
        "-bad.svc:80",
        "a..b:80",
    ] {
        assert!(endpoint(bad).is_err(), "{bad}");
    }
}

#[test]
fn sizes_parse() {
    assert_eq!(parse_size("65536"), Ok(65_536));
    assert_eq!(parse_size("64KiB"), Ok(65_536));
    assert_eq!(parse_size("10 MiB"), Ok(10_485_760));
    assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
    assert!(parse_size("1.5MiB").is_err());
    assert!(parse_size("-1").is_err());
    assert!(parse_size("99999999999GiB").is_err());
    let c = check(&edit(
        "    routes:\n      - name: api",
        "    limits: {max_header_bytes: 16KiB, max_request_body_bytes: 1MB}\n    routes:\n      - name: api",
    ))
    .unwrap();
    assert_eq!(c.listeners[0].limits.max_header_bytes, 16_384);
    assert_eq!(c.listeners[0].limits.max_request_body_bytes, 1_000_000);
}

/// A config with a TLS listener and an mTLS cluster, cert paths relative to `base_dir`.
fn tls_config(code: (&str, &str), client: (&str, &str)) -> String {
    format!(
        r#"
listeners:
  - name: edge
    listen: 0.0.0.0:8443
    tls:
      certs:
        - cert: certs/default.crt
          key: certs/default.key
        - cert: {}
          key: {}
          sni: [Code.Example.Gov, "*.status.example.gov"]
    routes: [{{name: all, cluster: app}}]
clusters:
  - name: app
    endpoints: ["app.internal:8443"]
    protocol: http2
    upstream_tls:
      ca: certs/ca.pem
      sni: app.internal
      client_cert: {}
      client_key: {}
"#,
        code.0, code.1, client.0, client.1
    )
}

fn tls_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    let ca = TestCa::new();
    ca.write_to(&certs);
    write_pair(&certs, "default", &ca.issue(&["default.example.gov"]));
    write_pair(
        &certs,
        "code",
        &ca.issue(&["code.example.gov", "*.status.example.gov"]),
    );
    write_pair(&certs, "client", &ca.issue_client("floodgate"));
    dir
}

#[test]
fn tls_paths_resolve_against_base_dir() {
    let dir = tls_fixture();
    let text = tls_config(
        ("certs/code.crt", "certs/code.key"),
        ("certs/client.crt", "certs/client.key"),
    );
    let c = parse_str(&text, "edge.yaml", dir.path()).unwrap();
    let tls = c.listeners[0].tls.as_ref().unwrap();
    assert_eq!(tls.alpn, ["h2", "http/1.1"]);
    assert_eq!(tls.certs.len(), 2);
    assert_eq!(tls.certs[1].cert, dir.path().join("certs/code.crt"));
    assert_eq!(
        tls.certs[1].sni,
        ["code.example.gov", "*.status.example.gov"]
    );
    assert!(tls.certs[0].sni.is_empty());
    assert!(String::from_utf8_lossy(&tls.certs[1].cert_pem).contains("BEGIN CERTIFICATE"));
    assert!(!tls.certs[1].key_pem.is_empty());
    let up = c.clusters[0].upstream_tls.as_ref().unwrap();
    assert_eq!(up.ca, dir.path().join("certs/ca.pem"));
    assert!(
        !up.ca_pem.is_empty() && !up.client_cert_pem.is_empty() && !up.client_key_pem.is_empty()
    );
    // What validation accepted, the TLS module can build.
    crate::tls::server_config(tls).unwrap();
    crate::tls::client_config(up, true).unwrap();

    // An absolute path is used as written.
    let abs = dir.path().join("certs/code.crt");
    let text = tls_config(
        (abs.to_str().unwrap(), "certs/code.key"),
        ("certs/client.crt", "certs/client.key"),
    );
    parse_str(&text, "edge.yaml", dir.path()).unwrap();
}

#[test]
fn bad_tls_material_names_the_file() {
    let dir = tls_fixture();
    let text = tls_config(
        ("certs/code.crt", "certs/default.key"),
        ("certs/missing.crt", "certs/client.key"),
    )
    .replace("    tls:\n", "    tls:\n      alpn: [h2, spdy/3]\n");
    let err = parse_str(&text, "edge.yaml", dir.path()).unwrap_err();
    let errs: Vec<(&str, &str)> = err
        .errors
        .iter()
        .map(|e| (e.path.as_str(), e.reason.as_str()))
        .collect();
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert_eq!(errs[0].0, "listeners[0].tls.certs[1].key");
    assert!(
        errs[0]
            .1
            .contains("default.key` does not belong to certificate"),
        "{errs:#?}"
    );
    assert!(errs[0].1.contains("code.crt"));
    assert_eq!(errs[1].0, "listeners[0].tls.alpn[1]");
    assert!(errs[1].1.contains("unsupported ALPN protocol `spdy/3`"));
    assert_eq!(errs[2].0, "clusters[0].upstream_tls.client_cert");
    assert!(errs[2].1.contains("missing.crt"), "{errs:#?}");

    // Key where the certificate should be.
    let text = tls_config(
        ("certs/code.key", "certs/code.key"),
        ("certs/client.crt", "certs/client.key"),
    );
    let err = parse_str(&text, "edge.yaml", dir.path()).unwrap_err();
    assert_eq!(err.errors[0].path, "listeners[0].tls.certs[1].cert");
    assert!(err.errors[0].reason.contains("no certificate found"));

    // mTLS key that does not match, and a half-configured pair.
    let text = tls_config(
        ("certs/code.crt", "certs/code.key"),
        ("certs/client.crt", "certs/code.key"),
    );
    let err = parse_str(&text, "edge.yaml", dir.path()).unwrap_err();
    assert_eq!(err.errors[0].path, "clusters[0].upstream_tls.client_key");
    let text = tls_config(
        ("certs/code.crt", "certs/code.key"),
        ("certs/client.crt", "x"),
    )
    .replace("      client_key: x\n", "");
    let err = parse_str(&text, "edge.yaml", dir.path()).unwrap_err();
    assert_eq!(err.errors[0].path, "clusters[0].upstream_tls");
    assert!(err.errors[0].reason.contains("must be given together"));
}

#[test]
fn duplicate_sni_across_certs() {
    let dir = tls_fixture();
    let text = tls_config(
        ("certs/code.crt", "certs/code.key"),
        ("certs/client.crt", "certs/client.key"),
    )
    .replace(
        "          key: certs/default.key\n",
        "          key: certs/default.key\n          sni: [code.example.gov]\n",
    );
    let err = parse_str(&text, "edge.yaml", dir.path()).unwrap_err();
    assert_eq!(err.errors.len(), 1, "{err}");
    assert_eq!(err.errors[0].path, "listeners[0].tls.certs[1].sni[0]");
    assert!(err.errors[0].reason.contains("already served by certs[0]"));
}

#[test]
fn listener_headers_default_on_and_can_be_turned_off() {
    let config = check(BASE).unwrap();
    assert_eq!(config.listeners[0].headers, ListenerHeaders::default());
    assert!(config.listeners[0].headers.forwarded && config.listeners[0].headers.request_id);

    let off = edit(
        "    routes:\n",
        "    headers: { forwarded: false, request_id: false }\n    routes:\n",
    );
    let headers = check(&off).unwrap().listeners[0].headers;
    assert!(!headers.forwarded && !headers.request_id);

    let typo = edit(
        "    routes:\n",
        "    headers: { forwarder: false }\n    routes:\n",
    );
    let err = check(&typo).unwrap_err();
    assert_eq!(err.errors[0].path, "listeners[0].headers.forwarder");
}

#[test]
fn the_access_log_block_is_validated_field_by_field() {
    use crate::access_log::{Field, Format, Target};
    let with = |block: &str| format!("server:\n  access_log: {block}\n{BASE}");
    assert!(check(&with("false")).unwrap().server.access_log.is_none());
    assert!(check(&with("{ enabled: false }"))
        .unwrap()
        .server
        .access_log
        .is_none());
    let c = check(&with(
        "{ path: stderr, format: text, fields: [status, path] }",
    ))
    .unwrap();
    let log = c.server.access_log.unwrap();
    assert_eq!(log.path, Target::Stderr);
    assert_eq!(log.format, Format::Text);
    assert_eq!(log.fields, vec![Field::Status, Field::Path]);

    let e = errors(&with(
        "{ path: no/such/dir/a.log, format: xml, fields: [status, bogus, status] }",
    ));
    let at = |field: &str| e.iter().find(|(p, _)| p == field).map(|(_, r)| r.clone());
    assert!(
        at("server.access_log.path")
            .unwrap()
            .contains("does not exist"),
        "{e:?}"
    );
    assert!(at("server.access_log.format")
        .unwrap()
        .contains("json or text"));
    assert!(at("server.access_log.fields[1]")
        .unwrap()
        .contains("unknown field `bogus`"));
    assert!(at("server.access_log.fields[2]").unwrap().contains("twice"));
    assert!(!errors(&with("{ fields: [] }")).is_empty());
}

#[test]
fn an_admin_listener_off_loopback_needs_a_token() {
    let with = |admin: &str| {
        format!(
            "admin: {admin}\n{}",
            BASE.replacen("admin:\n  listen: 127.0.0.1:9901\n", "", 1)
        )
    };
    let e = errors(&with("{ listen: 0.0.0.0:9901 }"));
    assert!(
        e.iter()
            .any(|(p, r)| p == "admin.token" && r.contains("required when admin.listen")),
        "{e:?}"
    );
    let short = errors(&with("{ listen: 0.0.0.0:9901, token: short }"));
    assert!(short
        .iter()
        .any(|(p, r)| p == "admin.token" && r.contains("at least 16")));
    let c = check(&with(
        "{ listen: 0.0.0.0:9901, token: admin-token-0123456789 }",
    ))
    .unwrap();
    assert!(c.admin.token.unwrap().matches(b"admin-token-0123456789"));
    // On loopback it stays optional.
    assert!(check(&with("{ listen: 127.0.0.1:9901 }"))
        .unwrap()
        .admin
        .token
        .is_none());
}
