//! End-to-end: micro-cache and request coalescing through the real proxy, against a
//! small upstream that sets caching headers and counts what reaches it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use common::*;

/// How the caching upstream answers.
#[derive(Clone, Default)]
struct Answer {
    status: u16,
    delay: Duration,
    headers: Vec<(&'static str, &'static str)>,
    /// Sends the body one byte at a time, this far apart.
    trickle: Option<Duration>,
}

/// An upstream whose bodies say which call answered: `call N PATH lang=...`.
struct CachingUpstream {
    addr: std::net::SocketAddr,
    hits: Arc<AtomicUsize>,
    answer: Arc<Mutex<Answer>>,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl CachingUpstream {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = Self {
            addr: listener.local_addr().unwrap(),
            hits: Arc::default(),
            answer: Arc::default(),
            tasks: Arc::new(Mutex::new(JoinSet::new())),
        };
        let (hits, answer, tasks) = (up.hits.clone(), up.answer.clone(), up.tasks.clone());
        up.tasks.lock().unwrap().spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (hits, answer) = (hits.clone(), answer.clone());
                tasks.lock().unwrap().spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (hits, answer) = (hits.clone(), answer.clone());
                        async move {
                            let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
                            let a = answer.lock().unwrap().clone();
                            tokio::time::sleep(a.delay).await;
                            let lang = req
                                .headers()
                                .get("accept-language")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-");
                            let text = format!("call {n} {} lang={lang}", req.uri());
                            let mut builder = Response::builder().status(if a.status == 0 {
                                200
                            } else {
                                a.status
                            });
                            for (name, value) in &a.headers {
                                builder = builder.header(*name, *value);
                            }
                            let body = match a.trickle {
                                None => Full::new(Bytes::from(text))
                                    .map_err(|never| match never {})
                                    .boxed(),
                                Some(every) => trickled(text.into_bytes(), every),
                            };
                            Ok::<_, std::io::Error>(builder.body(body).unwrap())
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        up
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn stop(&self) {
        self.tasks.lock().unwrap().abort_all();
    }
}

impl Drop for CachingUpstream {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A body of `bytes`, one byte every `every`.
fn trickled(
    bytes: Vec<u8>,
    every: Duration,
) -> http_body_util::combinators::BoxBody<Bytes, std::io::Error> {
    let frames = futures_util::stream::unfold(bytes.into_iter(), move |mut rest| async move {
        let byte = rest.next()?;
        tokio::time::sleep(every).await;
        Some((
            Ok::<_, std::io::Error>(hyper::body::Frame::data(Bytes::from(vec![byte]))),
            rest,
        ))
    });
    StreamBody::new(frames).boxed()
}

/// One listener, one route named `route` with `cache`, one cluster at `up`.
fn config(up: &CachingUpstream, route: &str, cache: &str) -> String {
    format!(
        r#"
server: {{ drain_timeout: 5s, access_log: false }}
listeners:
  - name: public
    listen: 127.0.0.1:0
    routes:
      - name: {route}
        match: {{ path_prefix: "/" }}
        cluster: app
        cache: {cache}
clusters:
  - name: app
    endpoints: ["{addr}"]
    connect_timeout: 500ms
"#,
        addr = up.addr
    )
}

const CACHE: &str = "{ ttl: 1s, stale_if_error: 3s, key_headers: [accept-language] }";

async fn get_with(url: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = Request::get(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    send(&client(), req.body(Full::default()).unwrap()).await
}

async fn metrics_page(proxy: &TestProxy) -> String {
    get(&proxy.admin_url("/metrics")).await.body
}

fn cache_metric(page: &str, route: &str, result: &str) -> f64 {
    metric(
        page,
        &format!("floodgate_cache_requests_total{{route=\"{route}\",result=\"{result}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_identical_gets_reach_the_upstream_once() {
    let up = CachingUpstream::start().await;
    up.set(Answer {
        delay: Duration::from_millis(200),
        ..Answer::default()
    });
    let proxy = start_proxy(&config(&up, "coalesce", CACHE)).await;
    let url = proxy.url("/status/42");
    let client = client();
    let mut set = JoinSet::new();
    for _ in 0..100 {
        let (client, url) = (client.clone(), url.clone());
        set.spawn(
            async move { send(&client, Request::get(url).body(Full::default()).unwrap()).await },
        );
    }
    let mut bodies = Vec::new();
    while let Some(r) = set.join_next().await {
        let r = r.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        bodies.push(r.body);
    }
    assert_eq!(bodies.len(), 100);
    assert!(
        bodies.iter().all(|b| b == "call 1 /status/42 lang=-"),
        "{bodies:?}"
    );
    assert_eq!(up.hits(), 1);
    let page = metrics_page(&proxy).await;
    assert_eq!(cache_metric(&page, "coalesce", "miss"), 1.0);
    assert_eq!(
        cache_metric(&page, "coalesce", "coalesced") + cache_metric(&page, "coalesce", "hit"),
        99.0
    );
    assert!(cache_metric(&page, "coalesce", "coalesced") >= 1.0);
}

#[tokio::test]
async fn fresh_entries_hit_and_expired_ones_miss() {
    let up = CachingUpstream::start().await;
    let proxy = start_proxy(&config(&up, "fresh", CACHE)).await;
    let url = proxy.url("/a?x=1");
    let first = get(&url).await;
    let primed = Instant::now();
    assert_eq!(first.header("x-floodgate-cache"), "MISS");
    let second = get(&url).await;
    // On a badly loaded machine the second request may already be past ttl.
    let second_hit = primed.elapsed() < Duration::from_millis(900);
    if second_hit {
        assert_eq!(second.header("x-floodgate-cache"), "HIT");
        assert_eq!(second.body, first.body);
        assert!(second.header("age").parse::<u64>().is_ok());
        assert_eq!(up.hits(), 1);
    }
    // Another query string is another entry.
    assert_eq!(
        get(&proxy.url("/a?x=2")).await.header("x-floodgate-cache"),
        "MISS"
    );

    eventually(
        Duration::from_secs(10),
        "entry expires after ttl",
        || async { get(&url).await.header("x-floodgate-cache") == "MISS" },
    )
    .await;
    assert!(primed.elapsed() >= Duration::from_millis(900));
    assert_eq!(up.hits(), if second_hit { 3 } else { 4 });
}

#[tokio::test]
async fn key_headers_keep_separate_entries() {
    let up = CachingUpstream::start().await;
    up.set(Answer {
        headers: vec![("cache-control", "max-age=60"), ("vary", "Accept-Language")],
        ..Answer::default()
    });
    let proxy = start_proxy(&config(&up, "langs", CACHE)).await;
    let url = proxy.url("/page");
    let fr = get_with(&url, &[("accept-language", "fr")]).await;
    let en = get_with(&url, &[("accept-language", "en")]).await;
    assert!(fr.body.ends_with("lang=fr") && en.body.ends_with("lang=en"));
    let fr_again = get_with(&url, &[("accept-language", "fr")]).await;
    assert_eq!(fr_again.header("x-floodgate-cache"), "HIT");
    assert_eq!(fr_again.body, fr.body);
    let en_again = get_with(&url, &[("accept-language", "en")]).await;
    assert_eq!(en_again.body, en.body);
    assert_eq!(up.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_and_set_cookie_responses_are_never_served_to_another_client() {
    let up = CachingUpstream::start().await;
    let proxy = start_proxy(&config(&up, "private", CACHE)).await;
    let mut expected_hits = 0;
    for header in [
        ("cache-control", "private, max-age=60"),
        ("set-cookie", "session=alice"),
    ] {
        up.set(Answer {
            headers: vec![header],
            delay: Duration::from_millis(100),
            ..Answer::default()
        });
        // One after another: the second client's request reaches the upstream.
        let url = proxy.url(&format!("/me/{}", header.0));
        let alice = get(&url).await;
        let bob = get(&url).await;
        assert_ne!(alice.body, bob.body, "{header:?}");
        assert_eq!(bob.header("x-floodgate-cache"), "MISS");
        expected_hits += 2;
        // At once: a follower never gets the leader's private answer.
        let mut set = JoinSet::new();
        for _ in 0..10 {
            let url = url.clone();
            set.spawn(async move { get(&url).await.body });
        }
        let mut bodies = std::collections::HashSet::new();
        while let Some(body) = set.join_next().await {
            assert!(bodies.insert(body.unwrap()), "shared: {header:?}");
        }
        expected_hits += 10;
        assert_eq!(up.hits(), expected_hits);
    }
}

#[tokio::test]
async fn requests_with_authorization_bypass_the_cache() {
    let up = CachingUpstream::start().await;
    let proxy = start_proxy(&config(&up, "auth", CACHE)).await;
    let url = proxy.url("/account");
    let a = get_with(&url, &[("authorization", "Bearer alice")]).await;
    let b = get_with(&url, &[("authorization", "Bearer alice")]).await;
    assert_eq!(a.header("x-floodgate-cache"), "");
    assert_ne!(a.body, b.body);
    let anonymous = get(&url).await;
    assert_eq!(anonymous.header("x-floodgate-cache"), "MISS");
    assert_ne!(anonymous.body, a.body);
    assert_eq!(up.hits(), 3);
    let page = metrics_page(&proxy).await;
    assert_eq!(cache_metric(&page, "auth", "bypass"), 2.0);
}

#[tokio::test]
async fn stale_entries_answer_for_a_failing_upstream_until_the_horizon() {
    let up = CachingUpstream::start().await;
    let proxy = start_proxy(&config(&up, "stale", CACHE)).await;
    let url = proxy.url("/s");
    let primed = get(&url).await;
    assert_eq!(primed.status, StatusCode::OK);
    up.set(Answer {
        status: 503,
        ..Answer::default()
    });
    eventually(
        Duration::from_secs(10),
        "stale answer after ttl",
        || async {
            let r = get(&url).await;
            if r.header("x-floodgate-cache") == "STALE" {
                assert_eq!((r.status, &r.body), (StatusCode::OK, &primed.body));
                return true;
            }
            assert_eq!(r.header("x-floodgate-cache"), "HIT");
            false
        },
    )
    .await;
    eventually(
        Duration::from_secs(15),
        "the error after the horizon",
        || async {
            let r = get(&url).await;
            if r.status == StatusCode::SERVICE_UNAVAILABLE {
                return true;
            }
            assert_eq!(r.header("x-floodgate-cache"), "STALE");
            false
        },
    )
    .await;
    let page = metrics_page(&proxy).await;
    assert!(cache_metric(&page, "stale", "stale") >= 1.0);
}

#[tokio::test]
async fn stale_entries_answer_when_the_upstream_is_gone() {
    let up = CachingUpstream::start().await;
    let proxy = start_proxy(&config(&up, "gone", CACHE)).await;
    let url = proxy.url("/g");
    let primed = get(&url).await;
    assert_eq!(primed.status, StatusCode::OK);
    up.stop();
    eventually(
        Duration::from_secs(10),
        "stale answer after ttl",
        || async {
            let r = get(&url).await;
            r.header("x-floodgate-cache") == "STALE" && r.body == primed.body
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_leader_holds_no_follower_past_lock_timeout_and_stores_nothing() {
    // The first answer trickles a byte every 150 ms (never silent long enough for
    // a read timeout); the ones after it come at once.
    let up = CachingUpstream::start().await;
    up.set(Answer {
        trickle: Some(Duration::from_millis(150)),
        ..Answer::default()
    });
    let cache = "{ ttl: 30s, lock_timeout: 500ms }";
    let proxy = start_proxy(&config(&up, "trickle", cache)).await;
    let url = proxy.url("/slow");
    let client = client();
    let started = Instant::now();
    let leader = client
        .request(Request::get(&url).body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(leader.headers()["x-floodgate-cache"], "MISS");
    let mut leader_body = leader.into_body();
    let first = leader_body.frame().await.unwrap().unwrap();
    assert_eq!(first.data_ref().map(|d| &d[..]), Some(&b"c"[..]));
    let first_byte = started.elapsed();
    up.set(Answer::default());

    let mut followers = JoinSet::new();
    for _ in 0..4 {
        let (client, url) = (client.clone(), url.clone());
        followers.spawn(async move {
            let r = send(&client, Request::get(url).body(Full::default()).unwrap()).await;
            (r, Instant::now())
        });
    }
    let mut followers_done = Vec::new();
    while let Some(done) = followers.join_next().await {
        let (r, at) = done.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.header("x-floodgate-cache"),
            "MISS",
            "answered upstream: {}",
            r.body
        );
        assert!(!r.body.starts_with("call 1 "), "not the leader's answer");
        followers_done.push(at);
    }
    let rest = leader_body.collect().await.unwrap().to_bytes();
    let leader_done = Instant::now();
    let whole = format!("c{}", String::from_utf8_lossy(&rest));
    assert_eq!(
        whole, "call 1 /slow lang=-",
        "the leader's client gets every byte"
    );
    assert!(
        first_byte < leader_done - started - Duration::from_millis(500),
        "the leader's client got its first byte as it came ({first_byte:?}), not at the end"
    );
    for at in followers_done {
        assert!(
            at < leader_done,
            "every follower was answered before the trickle ended"
        );
    }
    assert_eq!(up.hits(), 5, "each follower went upstream on its own");

    // Nothing of the trickled body was stored: the next request leads a new flight.
    let next = get(&url).await;
    assert_eq!(next.header("x-floodgate-cache"), "MISS");
    assert_eq!(next.body, "call 6 /slow lang=-");
    assert_eq!(get(&url).await.header("x-floodgate-cache"), "HIT");
}
