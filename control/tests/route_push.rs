//! A one-route change of a many-route group pushed through the control plane (#18):
//! the proxy serves the change, the unchanged routes keep their running state (the
//! very `Route`, its limiter), and an ignored test prints how long the push takes
//! from "config received at the control plane" to "serving on the proxy".
//!
//! The push starts where the control plane takes in a read of its config directory
//! ([`Plane::load_sources`], what its directory watcher calls after its debounce), so
//! the file watcher's debounce is not part of the figure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use floodgate_control::plane::Plane;
use floodgate_control::source::SourceFile;
use support::{eventually, managed_proxy, upstream, ControlPlane};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A group of `n` routes on listener `web`, route `i` taking host `svc{i}.city.gov`
/// under `/api/`; the last one has a rate limit (state a push must keep). `changed`
/// gives that route the prefix `/api/v2/` instead.
fn many_routes(n: usize, endpoint: &str, changed: Option<usize>) -> String {
    let mut y = String::with_capacity(n * 110);
    y.push_str("listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    routes:\n");
    for i in 0..n {
        let v2 = if changed == Some(i) { "v2/" } else { "" };
        y.push_str(&format!(
            "      - {{ name: r{i}, match: {{ host: \"svc{i}.city.gov\", path_prefix: \"/api/{v2}\" }}, cluster: app"
        ));
        y.push_str(match i + 1 == n {
            true => ", rate_limit: { rps: 100000, burst: 100000 } }\n",
            false => " }\n",
        });
    }
    y.push_str(&format!(
        "clusters:\n  - name: app\n    endpoints: [\"{endpoint}\"]\n    admission: {{ enabled: false }}\n"
    ));
    y
}

/// The status of `GET path` with `Host: host` through the proxy's listener `web`.
async fn status(m: &floodgate::control_client::Managed, host: &str, path: &str) -> Option<u16> {
    let addr = m.proxy().listener_addr("web")?;
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.ok()?;
    let text = String::from_utf8_lossy(&answer);
    text.split(' ').nth(1)?.parse().ok()
}

/// Hands the control plane group `edge`'s new text, as its directory watcher would.
fn receive(plane: &Plane, cp: &ControlPlane, text: &str) {
    let file = SourceFile {
        path: cp.group_file("edge"),
        text: Ok(Arc::from(text)),
    };
    plane
        .load_sources(BTreeMap::from([("edge".to_owned(), file)]))
        .unwrap();
}

/// The running route `name` of listener `web`.
fn route(m: &floodgate::control_client::Managed, name: &str) -> Arc<floodgate::router::Route> {
    let snapshot = m.proxy().snapshot();
    let router = &snapshot.listener("web").expect("listener web").router;
    let found = router.routes().iter().find(|r| r.config.name == name);
    Arc::clone(found.expect("the route exists"))
}

/// A control plane with an `n`-route group `edge` and a proxy serving it: the
/// upstream's address, the plane, the proxy's directory and the proxy.
async fn serving(
    n: usize,
) -> (
    String,
    ControlPlane,
    tempfile::TempDir,
    floodgate::control_client::Managed,
) {
    let app = upstream("app").await.to_string();
    let cp = ControlPlane::start("edge", &many_routes(n, &app, None)).await;
    let dir = tempfile::tempdir().unwrap();
    let m = managed_proxy(&cp, "edge", "p1", dir.path());
    let last = format!("svc{}.city.gov", n - 1);
    eventually("the proxy serves the last route", || async {
        (status(&m, &last, "/api/x").await == Some(200)).then_some(())
    })
    .await;
    (app, cp, dir, m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_one_route_change_applies_and_the_other_routes_keep_their_state() {
    const N: usize = 300;
    let (app, cp, _dir, m) = serving(N).await;
    let last = format!("svc{}.city.gov", N - 1);
    let kept = route(&m, "r0");
    let limited = route(&m, &format!("r{}", N - 1));
    let changed = route(&m, "r7");

    receive(&cp.plane(), &cp, &many_routes(N, &app, Some(7)));
    // The old prefix `/api/` also takes `/api/v2/x`: the change shows in `/api/x`.
    eventually("the change is served", || async {
        (status(&m, "svc7.city.gov", "/api/x").await == Some(404)).then_some(())
    })
    .await;
    assert_eq!(status(&m, "svc7.city.gov", "/api/v2/x").await, Some(200));
    assert_eq!(status(&m, &last, "/api/x").await, Some(200));
    assert!(
        Arc::ptr_eq(&kept, &route(&m, "r0")),
        "an unchanged route is the running one, not a rebuilt copy"
    );
    assert!(
        Arc::ptr_eq(
            limited.state.rate_limiter().unwrap(),
            route(&m, &format!("r{}", N - 1))
                .state
                .rate_limiter()
                .unwrap()
        ),
        "an unchanged route keeps its limiter"
    );
    assert!(
        !Arc::ptr_eq(&changed, &route(&m, "r7")),
        "the changed route is rebuilt"
    );

    // A bad change to one route is refused with its field and reason, with the
    // unchanged routes taken from the previous validation, and nothing is published.
    let edge = |plane: &Plane| plane.groups().into_iter().find(|g| g.group == "edge");
    let version = edge(&cp.plane()).unwrap().version;
    let bad = many_routes(N, &app, Some(7)).replace(
        "{ name: r9, match: { host: \"svc9.city.gov\", path_prefix: \"/api/\" }, cluster: app",
        "{ name: r9, match: { host: \"svc9.city.gov\", path_prefix: \"/api/\" }, cluster: gone",
    );
    receive(&cp.plane(), &cp, &bad);
    let group = edge(&cp.plane()).unwrap();
    assert_eq!(group.version, version, "nothing was published");
    let error = group.last_error.unwrap_or_default();
    assert!(
        error.contains("listeners[0].routes[9].cluster")
            && error.contains("unknown cluster \"gone\""),
        "{error}"
    );
    assert_eq!(status(&m, "svc9.city.gov", "/api/x").await, Some(200));
    m.proxy().drain().await;
}

/// Prints, for one-route changes of a 10,000-route group, the time from the control
/// plane taking in the config to the proxy's published snapshot running it, and to
/// the first request answered by the new route table. Not a timed assertion: run it in
/// release, `cargo test --release -p floodgate-control --test route_push -- --ignored
/// --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn print_push_timings() {
    const N: usize = 10_000;
    const PUSHES: usize = 5;
    let (app, cp, _dir, m) = serving(N).await;
    let plane = cp.plane();
    for push in 0..PUSHES {
        let target = 1000 + push;
        let text = many_routes(N, &app, Some(target));
        let before = m.proxy().snapshot().version;
        let host = format!("svc{target}.city.gov");
        let t = Instant::now();
        receive(&plane, &cp, &text);
        let published = t.elapsed();
        let deadline = t + Duration::from_secs(10);
        while m.proxy().snapshot().version == before {
            assert!(Instant::now() < deadline, "push {push} not applied");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let swapped = t.elapsed();
        // The old prefix `/api/` also takes `/api/v2/x`: the change shows in `/api/x`.
        while status(&m, &host, "/api/x").await != Some(404) {
            assert!(Instant::now() < deadline, "push {push} not served");
        }
        let served = t.elapsed();
        assert_eq!(status(&m, &host, "/api/v2/x").await, Some(200));
        println!(
            "{N} routes, one changed (push {push}): control plane validated and published {published:?}, \
             proxy snapshot swapped {swapped:?}, first answer of the changed route {served:?}"
        );
    }
    stages(&app, &m);
    m.proxy().drain().await;
}

/// Runs each stage of a push alone on a 10,000-route group's text with one route
/// changed and prints its time (the median of 5): what the end-to-end figure is made of.
fn stages(app: &str, m: &floodgate::control_client::Managed) {
    use floodgate::config::{
        file, parse_str, parse_str_cached, parse_str_reusing, validate_file_reusing,
    };
    use floodgate::snapshot::Snapshot;
    const N: usize = 10_000;
    let dir = std::path::Path::new(".");
    let base = many_routes(N, app, None);
    let text = many_routes(N, app, Some(N / 2));
    let time = |f: &mut dyn FnMut()| {
        let mut runs: Vec<Duration> = (0..5)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect();
        runs.sort();
        runs[2]
    };
    let parse = time(&mut || drop(file::parse(&text).unwrap()));
    let plain = time(&mut || drop(serde_norway::from_str::<file::FileConfig>(&text).unwrap()));
    let untyped = time(&mut || drop(serde_norway::from_str::<serde_norway::Value>(&text).unwrap()));
    let full = time(&mut || drop(parse_str(&text, "g", dir).unwrap()));
    let previous = parse_str_reusing(&base, "g", dir, None).unwrap();
    let reusing = time(&mut || drop(parse_str_reusing(&text, "g", dir, Some(&previous)).unwrap()));
    let next = parse_str_reusing(&text, "g", dir, Some(&previous)).unwrap();
    // What the control plane does now: the text parsed through the group's cache of
    // route items (one changed each time: the text and its base alternate), then
    // validated reusing the previous validation's routes.
    let mut cache = floodgate::config::ParseCache::new();
    cache.parse(&base).unwrap();
    let mut flip = false;
    let cached_parse = time(&mut || {
        flip = !flip;
        drop(cache.parse(if flip { &text } else { &base }).unwrap())
    });
    let cached = time(&mut || {
        flip = !flip;
        let (t, p) = match flip {
            true => (&text, &previous),
            false => (&base, &next),
        };
        drop(parse_str_cached(t, "g", dir, Some(p), &mut cache).unwrap())
    });
    let render = time(&mut || drop(serde_json::to_string(next.file()).unwrap()));
    let form = serde_json::to_string(next.file()).unwrap();
    let from_form = time(&mut || {
        let file: file::FileConfig = serde_json::from_str(&form).unwrap();
        drop(validate_file_reusing(file, "g", dir, Some(&previous)).unwrap())
    });
    let body = serde_json::json!({"group": "edge", "version": 7, "config": &text});
    let encode = time(&mut || drop(serde_json::to_vec(&body).unwrap()));
    let bytes = serde_json::to_vec(&body).unwrap();
    let decode = time(&mut || {
        drop(
            serde_json::from_slice::<floodgate::control_client::http::SnapshotBody>(&bytes)
                .unwrap(),
        )
    });
    let running = m.proxy().snapshot();
    let mut next = (*running.config).clone();
    std::sync::Arc::make_mut(&mut next.listeners[0].routes[N / 2])
        .name
        .push('x');
    let clone = time(&mut || drop((*running.config).clone()));
    let compare = time(&mut || assert!(*running.config != next));
    let build = time(&mut || drop(Snapshot::build(next.clone(), 0, Some(&running)).unwrap()));
    println!(
        "stages, {N} routes, {} KB of YAML, each run alone (median of 5): typed YAML parse {parse:?} \
         (without field paths {plain:?}, untyped {untyped:?}); \
         parse + validate {full:?}, reusing the previous validation's routes {reusing:?}; \
         parse through the cache of route items {cached_parse:?}, and validate reusing {cached:?}; \
         file form: render as JSON {render:?} ({} KB), read and validate reusing {from_form:?}; \
         snapshot text JSON encode {encode:?}, decode {decode:?}; Config clone {clone:?}, compare {compare:?}; \
         Snapshot::build (diff against the running one, index) {build:?} (includes a Config clone)",
        text.len() / 1024,
        form.len() / 1024
    );
}
