//! Routing at scale (#18): 10,000 routes are served through the index, reload under
//! load without a failed request, and a changed route leaves the others' state alone.
//! An ignored test prints the apply timings of such a config (run it in release).

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// A config of `n` routes to cluster `app` at `endpoint`: with `hosts`, route `i`
/// takes host `svc{i}.city.gov` under `/api/`; else all share host `city.gov`, route
/// `i` taking prefix `/svc{i}/`. The last route has a rate limit (state a reload keeps);
/// `changed` gives route `changed` a different prefix. Admission off: not under test.
fn many_routes(n: usize, hosts: bool, endpoint: &str, changed: Option<usize>) -> String {
    let mut y = String::with_capacity(n * 120);
    y.push_str(
        "server: { drain_timeout: 5s, access_log: false }\n\
         listeners:\n  - name: public\n    listen: 127.0.0.1:0\n    routes:\n",
    );
    for i in 0..n {
        let extra = if changed == Some(i) { "v2/" } else { "" };
        let (host, prefix) = match hosts {
            true => (format!("svc{i}.city.gov"), format!("/api/{extra}")),
            false => ("city.gov".to_owned(), format!("/svc{i}/{extra}")),
        };
        y.push_str(&format!(
            "      - name: r{i}\n        match: {{ host: \"{host}\", path_prefix: \"{prefix}\" }}\n        cluster: app\n"
        ));
        if i + 1 == n {
            y.push_str("        rate_limit: { rps: 100000, burst: 100000 }\n");
        }
    }
    y.push_str(&format!(
        "clusters:\n  - name: app\n    endpoints: [\"{endpoint}\"]\n    admission: {{ enabled: false }}\n"
    ));
    y
}

fn parse(yaml: &str) -> floodgate::config::Config {
    floodgate::config::parse_str(yaml, "scale.yaml", std::path::Path::new("."))
        .unwrap_or_else(|e| panic!("config invalid: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_host_routes_route_the_last_and_reload_under_load() {
    const N: usize = 10_000;
    let up = upstream("app").await;
    let p = start_proxy(&many_routes(N, true, &up.endpoint(), None)).await;
    let last = format!("svc{}.city.gov", N - 1);
    assert_eq!(get_host(&p.url("/api/x"), &last).await.status, 200);
    assert_eq!(
        get_host(&p.url("/api/x"), "SVC42.City.gov:80").await.status,
        200
    );
    assert_eq!(
        get_host(&p.url("/api/x"), "svc10000.city.gov").await.status,
        404
    );
    assert_eq!(get_host(&p.url("/other"), &last).await.status, 404);
    let limiter = |p: &TestProxy| {
        let snapshot = p.proxy.snapshot();
        let route = snapshot
            .listener("public")
            .and_then(|l| l.router.route(&format!("r{}", N - 1)));
        Arc::clone(
            route
                .and_then(|r| r.state.rate_limiter())
                .expect("the last route has a limiter"),
        )
    };
    let before = limiter(&p);

    // Requests to the last route, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, sent, url) = (stop.clone(), sent.clone(), p.url("/api/x"));
        tokio::spawn(async move {
            let client = client();
            let mut statuses = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let req = http::Request::get(&url)
                    .header("host", &last)
                    .body(Default::default())
                    .unwrap();
                statuses.push(send(&client, req).await.status);
                sent.fetch_add(1, Ordering::SeqCst);
            }
            statuses
        })
    };
    let at_least = |n: usize| {
        let sent = sent.clone();
        async move { sent.load(Ordering::SeqCst) >= n }
    };
    eventually(Duration::from_secs(10), "load started", || at_least(20)).await;
    // A change to one route (not the one under load), twice over.
    for (version, changed) in [(2, Some(5_000)), (3, None)] {
        let config = parse(&many_routes(N, true, &up.endpoint(), changed));
        let applied = p.proxy.apply(config).unwrap();
        assert_eq!(applied, floodgate::state::Applied::New(version));
        let target = sent.load(Ordering::SeqCst) + 20;
        eventually(Duration::from_secs(10), "load after the reload", || {
            at_least(target)
        })
        .await;
    }
    stop.store(true, Ordering::SeqCst);
    let statuses = load.await.unwrap();
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every request across the reloads succeeded: {} requests, failures {:?}",
        statuses.len(),
        statuses.iter().filter(|s| **s != 200).collect::<Vec<_>>()
    );
    assert!(
        Arc::ptr_eq(&before, &limiter(&p)),
        "the unchanged route kept its limiter"
    );
    // The changed route took its new prefix, and back again.
    assert_eq!(
        get_host(&p.url("/api/x"), "svc5000.city.gov").await.status,
        200
    );
    // Every apply is timed (the first start included).
    let page = get(&p.admin_url("/metrics")).await.body;
    assert!(
        metric(&page, "floodgate_config_apply_seconds_count") >= 3.0,
        "apply histogram: {page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_prefixes_under_one_host_route_the_last() {
    const N: usize = 10_000;
    let up = upstream("app").await;
    let p = start_proxy(&many_routes(N, false, &up.endpoint(), None)).await;
    assert_eq!(
        get_host(&p.url(&format!("/svc{}/x", N - 1)), "city.gov")
            .await
            .status,
        200
    );
    assert_eq!(
        get_host(&p.url("/svc10000/x"), "city.gov").await.status,
        404
    );
    assert_eq!(get_host(&p.url("/svc1/x"), "other.gov").await.status, 404);
}

/// Prints the time to parse and validate, build (first start) and apply (a change to
/// every route, then to one) a 10,000-route config. Not a timed assertion:
/// `cargo test --release -p floodgate --test route_scale -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn print_apply_timings() {
    const N: usize = 10_000;
    let up = upstream("app").await;
    for hosts in [true, false] {
        let yaml = many_routes(N, hosts, &up.endpoint(), None);
        let t = Instant::now();
        let config = parse(&yaml);
        let parsed = t.elapsed();
        let t = Instant::now();
        let proxy = floodgate::state::Proxy::start(config).unwrap();
        let started = t.elapsed();
        let one = parse(&many_routes(N, hosts, &up.endpoint(), Some(N / 2)));
        let t = Instant::now();
        proxy.apply(one).unwrap();
        let one_change = t.elapsed();
        let all = many_routes(N, hosts, &up.endpoint(), None).replace("app", "app2");
        let all = parse(&all);
        let t = Instant::now();
        proxy.apply(all).unwrap();
        let all_change = t.elapsed();
        println!(
            "{N} {} routes, {} KB of YAML: parse+validate {parsed:?}, first build+bind {started:?}, \
             apply one changed route {one_change:?}, apply with a new cluster for every route {all_change:?}",
            if hosts { "host" } else { "path-prefix" },
            yaml.len() / 1024,
        );
        proxy.drain().await;
    }
}
