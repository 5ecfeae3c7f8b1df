use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use tower::{Layer, Service, ServiceExt};

use super::coalesce::{follow, Outcome};
use super::store::Key;
use super::*;
use crate::body::{self, Body, BoxError};
use crate::error::{ErrorKind, ProxyError};

fn config() -> CacheConfig {
    CacheConfig {
        ttl: Duration::from_secs(1),
        max_bytes: 1 << 20,
        max_object_bytes: 1 << 16,
        stale_if_error: Duration::from_secs(30),
        key_headers: vec![HeaderName::from_static("accept-language")],
        cache_authorized: false,
        cache_set_cookie: false,
        lock_timeout: Duration::from_secs(5),
    }
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header("host", "Example.COM")
        .body(body::empty())
        .unwrap()
}

async fn read(response: Response<Body>) -> (StatusCode, HeaderMap, Bytes) {
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, bytes)
}

fn how(response: &Response<Body>) -> &str {
    response
        .headers()
        .get(CACHE_HEADER)
        .map_or("", |v| v.to_str().unwrap())
}

/// What the mock upstream answers.
#[derive(Clone, Default)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    delay: Duration,
    fail: bool,
    body_size: usize,
    /// Sends the body one byte at a time, this far apart.
    trickle: Option<Duration>,
}

/// A mock upstream counting calls; bodies say which call answered ("call N").
fn upstream(
    answer: Arc<Mutex<Answer>>,
) -> (
    Arc<AtomicUsize>,
    impl Service<
            Request<Body>,
            Response = Response<Body>,
            Error = ProxyError,
            Future = impl Send + 'static,
        > + Clone
        + Send
        + 'static,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let svc = tower::service_fn(move |_req: Request<Body>| {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        let a = answer.lock().unwrap().clone();
        async move {
            tokio::time::sleep(a.delay).await;
            if a.fail {
                return Err(ProxyError::new(ErrorKind::ConnectFailed));
            }
            let text = if a.body_size > 0 {
                "x".repeat(a.body_size)
            } else {
                format!("call {n}")
            };
            let body = match a.trickle {
                Some(every) => trickled(text.into_bytes(), every),
                None => body::full(text),
            };
            let mut response = Response::new(body);
            *response.status_mut() = StatusCode::from_u16(a.status.max(200)).unwrap();
            for (name, value) in a.headers {
                response
                    .headers_mut()
                    .append(name, HeaderValue::from_static(value));
            }
            Ok(response)
        }
    });
    (calls, svc)
}

type Svc = tower::util::BoxCloneService<Request<Body>, Response<Body>, ProxyError>;

fn stack(config: &CacheConfig, answer: &Arc<Mutex<Answer>>) -> (Arc<Cache>, Arc<AtomicUsize>, Svc) {
    let cache = Arc::new(Cache::new(config, "test"));
    let (calls, svc) = upstream(Arc::clone(answer));
    let svc = CacheLayer::new(Arc::clone(&cache)).layer(svc);
    (cache, calls, Svc::new(svc))
}

#[test]
fn keys_cover_method_host_target_and_key_headers() {
    let names = [HeaderName::from_static("accept-language")];
    let a = Key::of(&get("/a?x=1"), &names);
    let mut lower = get("/a?x=1");
    lower
        .headers_mut()
        .insert("host", HeaderValue::from_static("example.com"));
    assert_eq!(a, Key::of(&lower, &names), "host is case-insensitive");
    assert_ne!(a, Key::of(&get("/a?x=2"), &names), "query counts");
    assert_ne!(a, Key::of(&get("/b?x=1"), &names), "path counts");
    let mut other_host = get("/a?x=1");
    other_host
        .headers_mut()
        .insert("host", HeaderValue::from_static("other.example"));
    assert_ne!(a, Key::of(&other_host, &names), "host counts");
    let mut head = get("/a?x=1");
    *head.method_mut() = Method::HEAD;
    let head_key = Key::of(&head, &names);
    assert_ne!(a, head_key, "method counts");
    assert_eq!(a, head_key.with_method(Method::GET));
    let mut fr = get("/a?x=1");
    fr.headers_mut()
        .insert("accept-language", HeaderValue::from_static("fr"));
    let fr_key = Key::of(&fr, &names);
    assert_ne!(a, fr_key, "key headers count");
    fr.headers_mut()
        .insert("user-agent", HeaderValue::from_static("curl"));
    assert_eq!(fr_key, Key::of(&fr, &names), "other headers do not");
}

#[tokio::test(start_paused = true)]
async fn hits_within_ttl_and_misses_after() {
    let answer = Arc::new(Mutex::new(Answer::default()));
    let (_cache, calls, svc) = stack(&config(), &answer);
    let first = svc.clone().oneshot(get("/a")).await.unwrap();
    assert_eq!(how(&first), "MISS");
    let (_, _, body1) = read(first).await;
    tokio::time::advance(Duration::from_millis(500)).await;
    let second = svc.clone().oneshot(get("/a")).await.unwrap();
    assert_eq!(how(&second), "HIT");
    assert_eq!(second.headers()[header::AGE], "0");
    let (status, _, body2) = read(second).await;
    assert_eq!((status, &body1), (StatusCode::OK, &body2));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    tokio::time::advance(Duration::from_millis(600)).await;
    let third = svc.clone().oneshot(get("/a")).await.unwrap();
    assert_eq!(how(&third), "MISS");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(read(third).await.2, "call 2");
}

#[tokio::test(start_paused = true)]
async fn head_is_answered_from_a_get_entry() {
    let answer = Arc::new(Mutex::new(Answer::default()));
    let (_cache, calls, svc) = stack(&config(), &answer);
    read(svc.clone().oneshot(get("/a")).await.unwrap()).await;
    let mut head = get("/a");
    *head.method_mut() = Method::HEAD;
    let response = svc.clone().oneshot(head).await.unwrap();
    assert_eq!(how(&response), "HIT");
    assert!(read(response).await.2.is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn concurrent_identical_misses_are_coalesced() {
    let answer = Arc::new(Mutex::new(Answer {
        delay: Duration::from_millis(200),
        ..Answer::default()
    }));
    let (_cache, calls, svc) = stack(&config(), &answer);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let svc = svc.clone();
        set.spawn(async move {
            let response = svc.oneshot(get("/same")).await.unwrap();
            let how = how(&response).to_owned();
            (how, read(response).await)
        });
    }
    let mut hits = 0;
    while let Some(done) = set.join_next().await {
        let (how, (status, _, body)) = done.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "call 1");
        hits += usize::from(how == "HIT");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(hits, 99);
}

#[tokio::test(start_paused = true)]
async fn uncacheable_leader_responses_are_not_shared() {
    for header in [("cache-control", "private"), ("set-cookie", "id=1")] {
        let answer = Arc::new(Mutex::new(Answer {
            delay: Duration::from_millis(200),
            headers: vec![header],
            ..Answer::default()
        }));
        let (_cache, calls, svc) = stack(&config(), &answer);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let svc = svc.clone();
            set.spawn(async move { read(svc.oneshot(get("/me")).await.unwrap()).await.2 });
        }
        let mut bodies = std::collections::HashSet::new();
        while let Some(body) = set.join_next().await {
            assert!(bodies.insert(body.unwrap()), "a response was shared");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 10, "{header:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_leader_does_not_strand_followers() {
    let answer = Arc::new(Mutex::new(Answer {
        delay: Duration::from_millis(200),
        ..Answer::default()
    }));
    let (_cache, calls, svc) = stack(&config(), &answer);
    let leader = tokio::spawn(svc.clone().oneshot(get("/c")));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let follower = tokio::spawn(svc.clone().oneshot(get("/c")));
    tokio::time::sleep(Duration::from_millis(10)).await;
    leader.abort();
    let response = follower.await.unwrap().unwrap();
    assert_eq!(how(&response), "MISS", "the follower led the second flight");
    assert_eq!(read(response).await.2, "call 2");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn stale_entries_stand_in_for_errors_within_the_horizon() {
    let answer = Arc::new(Mutex::new(Answer::default()));
    let (_cache, calls, svc) = stack(&config(), &answer);
    read(svc.clone().oneshot(get("/s")).await.unwrap()).await;

    // A 503 after ttl: the stale entry answers.
    tokio::time::advance(Duration::from_secs(2)).await;
    answer.lock().unwrap().status = 503;
    let response = svc.clone().oneshot(get("/s")).await.unwrap();
    assert_eq!(how(&response), "STALE");
    assert_eq!(response.headers()[header::AGE], "2");
    let (status, _, body) = read(response).await;
    assert_eq!((status, body), (StatusCode::OK, Bytes::from("call 1")));

    // A connect failure: the stale entry answers too.
    *answer.lock().unwrap() = Answer {
        fail: true,
        ..Answer::default()
    };
    let response = svc.clone().oneshot(get("/s")).await.unwrap();
    assert_eq!(how(&response), "STALE");

    // Past ttl + stale_if_error: the error goes through.
    tokio::time::advance(Duration::from_secs(30)).await;
    let err = svc.clone().oneshot(get("/s")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectFailed);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn errors_without_a_stale_entry_pass_through() {
    let answer = Arc::new(Mutex::new(Answer {
        status: 503,
        ..Answer::default()
    }));
    let (_cache, calls, svc) = stack(&config(), &answer);
    let response = svc.clone().oneshot(get("/e")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let response = svc.clone().oneshot(get("/e")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "a 503 is not stored");
}

#[tokio::test(start_paused = true)]
async fn oversized_bodies_stream_through_whole_and_uncached() {
    let answer = Arc::new(Mutex::new(Answer {
        body_size: 100_000,
        ..Answer::default()
    }));
    let (_cache, calls, svc) = stack(&config(), &answer);
    for _ in 0..2 {
        let response = svc.clone().oneshot(get("/big")).await.unwrap();
        assert_eq!(read(response).await.2.len(), 100_000);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// A body of `bytes`, one byte every `every`.
fn trickled(bytes: Vec<u8>, every: Duration) -> Body {
    let frames = futures_util::stream::unfold(bytes.into_iter(), move |mut rest| async move {
        let byte = rest.next()?;
        tokio::time::sleep(every).await;
        Some((
            Ok::<_, BoxError>(Frame::data(Bytes::from(vec![byte]))),
            rest,
        ))
    });
    Body::new(http_body_util::StreamBody::new(frames))
}

#[tokio::test(start_paused = true)]
async fn a_follower_waits_for_its_leader_until_its_deadline_only() {
    let (tx, rx) = tokio::sync::watch::channel(Outcome::Pending);
    let start = tokio::time::Instant::now();
    let outcome = follow(rx.clone(), start + Duration::from_secs(5)).await;
    assert!(
        matches!(outcome, Outcome::Pending),
        "no outcome by the deadline"
    );
    assert_eq!(start.elapsed(), Duration::from_secs(5));

    let waiting = tokio::spawn(follow(rx, start + Duration::from_secs(10)));
    tokio::time::advance(Duration::from_secs(1)).await;
    tx.send_replace(Outcome::Unshareable);
    assert!(matches!(waiting.await.unwrap(), Outcome::Unshareable));
    assert_eq!(start.elapsed(), Duration::from_secs(6), "woken at once");
    drop(tx);
}

#[tokio::test(start_paused = true)]
async fn a_trickling_leader_streams_to_its_client_and_releases_its_followers() {
    // "call 1" trickles for 6 s; lock_timeout is 2.5 s.
    let answer = Arc::new(Mutex::new(Answer {
        trickle: Some(Duration::from_secs(1)),
        ..Answer::default()
    }));
    let config = CacheConfig {
        lock_timeout: Duration::from_millis(2500),
        ..config()
    };
    let (cache, calls, svc) = stack(&config, &answer);
    let start = tokio::time::Instant::now();
    let leader = svc.clone().oneshot(get("/slow")).await.unwrap();
    assert_eq!(how(&leader), "MISS");
    let mut leader_body = leader.into_body();
    let first = leader_body
        .frame()
        .await
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(
        (&first[..], start.elapsed()),
        (&b"c"[..], Duration::from_secs(1)),
        "the leader's client gets the first byte when it comes"
    );

    // Followers that join now answer from their own upstream call when the
    // leader's fill passes its deadline (2.5 s), not when its body ends (6 s).
    answer.lock().unwrap().trickle = None;
    let mut followers = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let svc = svc.clone();
        followers.spawn(async move {
            let response = svc.oneshot(get("/slow")).await.unwrap();
            let how = how(&response).to_owned();
            (how, read(response).await.2, tokio::time::Instant::now())
        });
    }
    let leader_rest = tokio::spawn(async move { leader_body.collect().await.unwrap().to_bytes() });
    while let Some(done) = followers.join_next().await {
        let (how, body, at) = done.unwrap();
        assert_eq!(how, "MISS");
        assert_ne!(body, "call 1", "not the leader's answer");
        assert!(
            at - start == Duration::from_millis(2500),
            "released at the fill deadline: {:?}",
            at - start
        );
    }
    assert_eq!(leader_rest.await.unwrap(), "all 1", "the rest, as it came");
    assert_eq!(start.elapsed(), Duration::from_secs(6));
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    cache.run_pending_tasks();
    assert_eq!(cache.entry_count(), 0, "nothing of the slow body is stored");

    // The next miss leads a new flight, whose fast answer is stored.
    let response = svc.clone().oneshot(get("/slow")).await.unwrap();
    assert_eq!(how(&response), "MISS");
    assert_eq!(read(response).await.2, "call 5");
    let response = svc.clone().oneshot(get("/slow")).await.unwrap();
    assert_eq!(how(&response), "HIT");
}

#[tokio::test(start_paused = true)]
async fn memory_stays_within_max_bytes() {
    let config = CacheConfig {
        max_bytes: 64 << 10,
        ..config()
    };
    let answer = Arc::new(Mutex::new(Answer {
        body_size: 1024,
        ..Answer::default()
    }));
    let (cache, calls, svc) = stack(&config, &answer);
    for i in 0..500 {
        let response = svc.clone().oneshot(get(&format!("/k/{i}"))).await.unwrap();
        read(response).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 500);
    cache.run_pending_tasks();
    assert!(cache.entry_count() > 0);
    assert!(
        cache.weighted_size() <= config.max_bytes,
        "{} > {}",
        cache.weighted_size(),
        config.max_bytes
    );
}
