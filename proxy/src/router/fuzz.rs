//! Property test of the route table (stable-toolchain fuzzing, bounded cases):
//! for generated route tables (written as config and validated, as a user's would
//! be) and generated requests, [`Router::find`] agrees with the plain reference
//! below, which is the documented rule and nothing more: the first route in file
//! order whose host, path, method and header conditions all hold. Keep the
//! reference simple: it guards a later rewrite of the router into an index.

use std::path::Path;

use http::Request;
use proptest::prelude::*;

use super::{Route, Router};
use crate::stack::RouteState;

/// One route as generated: the conditions in the words of the config file.
#[derive(Debug, Clone)]
struct Spec {
    host: Option<&'static str>,
    exact: bool,
    path: &'static str,
    methods: Vec<&'static str>,
    env: Option<&'static str>,
}

/// One request as generated.
#[derive(Debug, Clone)]
struct Req {
    host: Option<&'static str>,
    absolute: bool,
    path: &'static str,
    method: &'static str,
    env: Vec<&'static str>,
}

const ROUTE_HOSTS: &[&str] = &["a.test", "b.test", "x.a.test", "*.a.test", "*.test"];
const ROUTE_PATHS: &[&str] = &["/", "/api", "/api/", "/api/v1", "/b"];
const REQ_HOSTS: &[&str] = &[
    "a.test",
    "A.TEST",
    "b.test",
    "x.a.test",
    "y.x.a.test",
    "a.test.",
    "a.test:8080",
    "test",
    "ba.test",
];
const REQ_PATHS: &[&str] = &[
    "/",
    "/api",
    "/api/",
    "/api/v1",
    "/api/v1/x",
    "/apix",
    "/b",
    "/b/c",
    "/API",
];

fn spec() -> impl Strategy<Value = Spec> {
    (
        proptest::option::weighted(0.5, proptest::sample::select(ROUTE_HOSTS)),
        any::<bool>(),
        proptest::sample::select(ROUTE_PATHS),
        proptest::sample::subsequence(vec!["GET", "POST"], 0..=2),
        proptest::option::weighted(0.3, proptest::sample::select(vec!["prod", "dev"])),
    )
        .prop_map(|(host, exact, path, methods, env)| Spec {
            host,
            exact,
            path,
            methods,
            env,
        })
}

fn req() -> impl Strategy<Value = Req> {
    (
        proptest::option::weighted(0.9, proptest::sample::select(REQ_HOSTS)),
        any::<bool>(),
        proptest::sample::select(REQ_PATHS),
        proptest::sample::select(vec!["GET", "POST", "PUT", "HEAD"]),
        proptest::sample::subsequence(vec!["prod", "dev"], 0..=2),
    )
        .prop_map(|(host, absolute, path, method, env)| Req {
            host,
            absolute: absolute && host.is_some(),
            path,
            method,
            env,
        })
}

/// The table as a config file, validated by the real validator.
fn router(specs: &[Spec]) -> Router {
    let mut yaml = String::from("listeners:\n  - name: l\n    listen: 127.0.0.1:0\n    routes:\n");
    for (i, s) in specs.iter().enumerate() {
        let mut m = vec![format!(
            "{}: \"{}\"",
            if s.exact { "path" } else { "path_prefix" },
            s.path
        )];
        if let Some(h) = s.host {
            m.push(format!("host: \"{h}\""));
        }
        if !s.methods.is_empty() {
            m.push(format!("method: [{}]", s.methods.join(", ")));
        }
        if let Some(e) = s.env {
            m.push(format!("headers: {{ x-env: {e} }}"));
        }
        yaml.push_str(&format!(
            "      - name: r{i}\n        match: {{ {} }}\n        cluster: app\n",
            m.join(", ")
        ));
    }
    yaml.push_str("clusters:\n  - name: app\n    endpoints: [\"127.0.0.1:1\"]\n");
    let config = crate::config::parse_str(&yaml, "fuzz.yaml", Path::new("."))
        .unwrap_or_else(|e| panic!("generated table is invalid: {e}\n{yaml}"));
    let routes = config.listeners[0]
        .routes
        .iter()
        .map(|rc| Route::new(rc.clone(), Vec::new(), RouteState::new(rc, None)))
        .collect();
    Router::new(routes)
}

/// The reference: the documented rule, written as plainly as possible.
fn reference(specs: &[Spec], r: &Req) -> Option<String> {
    let host_ok = |pattern: Option<&str>| {
        let Some(pattern) = pattern else {
            return true;
        };
        let Some(host) = r.host else {
            return false;
        };
        let mut host = host.to_ascii_lowercase();
        if let Some((name, port)) = host.rsplit_once(':') {
            if port.chars().all(|c| c.is_ascii_digit()) {
                host = name.to_owned();
            }
        }
        let host = host.strip_suffix('.').unwrap_or(&host);
        match pattern.strip_prefix('*') {
            Some(suffix) => host.ends_with(suffix) && host.len() > suffix.len(),
            None => host == pattern,
        }
    };
    specs
        .iter()
        .position(|s| {
            host_ok(s.host)
                && (if s.exact {
                    r.path == s.path
                } else {
                    r.path.starts_with(s.path)
                })
                && (s.methods.is_empty() || s.methods.contains(&r.method))
                && s.env.is_none_or(|e| r.env.contains(&e))
        })
        .map(|i| format!("r{i}"))
}

fn head(r: &Req) -> http::request::Parts {
    let uri = match (r.absolute, r.host) {
        (true, Some(h)) => format!("http://{h}{}", r.path),
        _ => r.path.to_owned(),
    };
    let mut b = Request::builder().method(r.method).uri(uri);
    if let Some(h) = r.host {
        b = b.header("host", h);
    }
    for e in &r.env {
        b = b.header("x-env", *e);
    }
    b.body(())
        .map(|req| req.into_parts().0)
        .unwrap_or_else(|e| panic!("generated request is invalid: {e}: {r:?}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn the_router_agrees_with_first_match_in_file_order(
        specs in proptest::collection::vec(spec(), 1..8),
        reqs in proptest::collection::vec(req(), 1..16),
    ) {
        let router = router(&specs);
        for r in &reqs {
            let found = router.find(&head(r)).map(|route| route.config.name.clone());
            prop_assert_eq!(found, reference(&specs, r), "request {:?}", r);
        }
    }
}
