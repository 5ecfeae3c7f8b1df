//! The indexed router against the linear first-match rule it replaced, over random
//! route tables (exact and wildcard hosts, prefixes and exact paths, methods, headers)
//! and random requests (host case, trailing dot, port, absolute form, no host).

use http::{HeaderName, HeaderValue, Method, Request};
use proptest::prelude::*;

use super::{matches, request_host, Route, Router};
use crate::config::{Backend, HostMatch, PathMatch, Priority, RouteConfig, RouteMatch};
use crate::stack::RouteState;

/// The router before the index: every route in file order, the first match wins.
fn linear<'r>(
    routes: &'r [std::sync::Arc<Route>],
    head: &http::request::Parts,
) -> Option<&'r std::sync::Arc<Route>> {
    let mut host: Option<Option<&str>> = None;
    routes.iter().find(|r| {
        let m = &r.config.matcher;
        let host = match m.host {
            Some(_) => *host.get_or_insert_with(|| request_host(&head.uri, &head.headers)),
            None => None,
        };
        matches(m, host, head.uri.path(), &head.method, &head.headers)
    })
}

const HOSTS: [&str; 5] = ["a.gov", "b.a.gov", "x.b.a.gov", "c.org", "a.gov.cn"];
const SUFFIXES: [&str; 4] = [".a.gov", ".b.a.gov", ".gov", ".org"];
const PATHS: [&str; 9] = [
    "",
    "/",
    "/api",
    "/api/",
    "/api/v1",
    "/api/v1/x",
    "/apx",
    "/b",
    "/b/c",
];
const METHODS: [Method; 3] = [Method::GET, Method::POST, Method::PUT];
const HEADERS: [(&str, &str); 3] = [("x-env", "prod"), ("x-env", "dev"), ("x-tier", "a")];

fn pick<T: Clone>(items: &[T], i: usize) -> T {
    items[i % items.len()].clone()
}

/// One route: (host kind, host, path kind, path, methods bitmask, headers bitmask).
type RouteSpec = (u8, usize, bool, usize, u8, u8);

fn route(i: usize, spec: RouteSpec) -> Route {
    let (host_kind, host, exact_path, path, methods, headers) = spec;
    let host = match host_kind % 3 {
        0 => None,
        1 => Some(HostMatch::Exact(pick(&HOSTS, host).to_owned())),
        _ => Some(HostMatch::Suffix(pick(&SUFFIXES, host).to_owned())),
    };
    let path = pick(&PATHS, path).to_owned();
    let matcher = RouteMatch {
        host,
        path: match exact_path {
            true => PathMatch::Exact(path),
            false => PathMatch::Prefix(path),
        },
        // Methods only on some routes, so that many have none.
        methods: match methods & 8 {
            0 => vec![],
            _ => (0..3)
                .filter(|b| methods & (1 << b) != 0)
                .map(|b| pick(&METHODS, b))
                .collect(),
        },
        headers: (0..3)
            .filter(|b| headers & (1 << b) != 0 && headers & 8 != 0)
            .map(|b| {
                let (n, v) = pick(&HEADERS, b);
                (HeaderName::from_static(n), HeaderValue::from_static(v))
            })
            .collect(),
    };
    let config = RouteConfig {
        name: format!("r{i}"),
        matcher,
        backend: Backend::Cluster("c".into()),
        rewrite_prefix: None,
        timeout: None,
        retry: None,
        preserve_host: true,
        rate_limit: None,
        cache: None,
        priority: Priority::Normal,
        burst: None,
        burst_active: false,
        global_rate_limit: None,
    };
    Route::new(config, vec![], RouteState::default())
}

/// One request: (host form, host, host case mask, path, method, headers mask).
type RequestSpec = (u8, usize, u8, usize, usize, u8);

fn request(spec: RequestSpec, extra_path: bool) -> http::request::Parts {
    let (form, host, case, path, method, headers) = spec;
    let mut host: String = pick(&HOSTS, host)
        .chars()
        .enumerate()
        .map(|(i, c)| match case & (1 << (i % 8)) {
            0 => c,
            _ => c.to_ascii_uppercase(),
        })
        .collect();
    if case & 0x80 != 0 && form != 4 {
        host.push('.');
    }
    let mut path = pick(&PATHS, path).to_owned();
    if path.is_empty() {
        path.push('/');
    }
    if extra_path {
        path.push_str("/more");
    }
    let mut b = Request::builder().method(pick(&METHODS, method));
    b = match form % 5 {
        // Host header, with and without a port.
        0 => b.uri(&path).header("host", &host),
        1 => b.uri(&path).header("host", format!("{host}:8080")),
        // Absolute form (and HTTP/2's :authority): the URI's host.
        2 => b.uri(format!("http://{host}:81{path}")),
        3 => b.uri(format!("http://{host}{path}")),
        // No host at all.
        _ => b.uri(&path),
    };
    for bit in 0..3 {
        if headers & (1 << bit) != 0 {
            let (n, v) = pick(&HEADERS, bit);
            b = b.header(n, v);
        }
    }
    // A second value for a name: any value of the field may satisfy a condition.
    if headers & 8 != 0 {
        b = b.header("x-env", "other");
    }
    match b.body(()) {
        Ok(req) => req.into_parts().0,
        Err(e) => panic!("request {spec:?}: {e}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_index_picks_the_route_a_scan_picks(
        specs in prop::collection::vec(
            (0u8..3, 0usize..5, any::<bool>(), 0usize..9, 0u8..16, 0u8..16),
            0..48,
        ),
        requests in prop::collection::vec(
            ((0u8..5, 0usize..5, any::<u8>(), 0usize..9, 0usize..3, 0u8..16), any::<bool>()),
            1..32,
        ),
    ) {
        let router = Router::new(specs.into_iter().enumerate().map(|(i, s)| route(i, s)).collect());
        for (spec, extra) in requests {
            let head = request(spec, extra);
            let want = linear(router.routes(), &head).map(|r| r.config.name.as_str());
            let got = router.find(&head).map(|r| r.config.name.as_str());
            prop_assert_eq!(got, want, "request {:?} {} {:?}", head.uri, head.method, head.headers);
        }
    }
}

#[test]
fn many_routes_per_host_still_agree_with_the_scan() {
    // Enough routes per host that every bucket is a path trie, in a fixed table.
    let specs: Vec<RouteSpec> = (0..600)
        .map(|i| {
            (
                (i % 3) as u8,
                i / 3,
                i % 7 == 0,
                i / 5,
                (i % 16) as u8,
                (i / 16 % 16) as u8,
            )
        })
        .collect();
    let router = Router::new(
        specs
            .into_iter()
            .enumerate()
            .map(|(i, s)| route(i, s))
            .collect(),
    );
    for i in 0..2000usize {
        let spec = (
            (i % 5) as u8,
            i / 5,
            (i * 37) as u8,
            i / 3,
            i / 7,
            (i / 11 % 16) as u8,
        );
        let head = request(spec, i % 2 == 0);
        let want = linear(router.routes(), &head).map(|r| r.config.name.as_str());
        let got = router.find(&head).map(|r| r.config.name.as_str());
        assert_eq!(got, want, "request {:?} {:?}", head.uri, head.headers);
    }
}
