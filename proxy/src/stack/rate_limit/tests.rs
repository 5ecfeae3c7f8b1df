use std::net::IpAddr;

use futures_util::future::BoxFuture;
use governor::clock::FakeRelativeClock;
use http::{HeaderName, Response};
use tower::{Layer, Service, ServiceExt};

use super::*;
use crate::body::Body;
use crate::config::{KeyedRateConfig, RateKey};
use crate::headers::ClientIp;

/// Advances the paused tokio clock, which [`ProxyClock`] reads.
async fn advance(by: Duration) {
    tokio::time::advance(by).await;
}

fn config(
    route: Option<(u32, u32)>,
    per_key: Option<(RateKey, u32, u32, usize)>,
) -> RateLimitConfig {
    RateLimitConfig {
        route: route.map(|(rps, burst)| Rate { rps, burst }),
        per_key: per_key.map(|(key, rps, burst, max_keys)| KeyedRateConfig {
            key,
            rate: Rate { rps, burst },
            max_keys,
        }),
        shadow: false,
    }
}

/// A limiter on a fake clock of its own, for the key-table tests: they run without
/// a runtime so that a sweep runs inline and its effect is seen at once.
fn limiter(cfg: &RateLimitConfig) -> (RateLimiter<FakeRelativeClock>, FakeRelativeClock) {
    let clock = FakeRelativeClock::default();
    (RateLimiter::with_clock("codes", cfg, clock.clone()), clock)
}

fn user() -> RateKey {
    RateKey::Header(HeaderName::from_static("x-user"))
}

#[tokio::test(start_paused = true)]
async fn gcra_admits_the_burst_then_one_per_interval() {
    let l = RateLimiter::new("codes", &config(Some((10, 5)), None));
    for i in 0..5 {
        let d = l.check(None);
        assert!(d.is_allowed(), "request {i} of the burst");
        assert_eq!(d.route.map(|s| s.remaining), Some(4 - i));
    }
    let d = l.check(None);
    assert_eq!(d.denied_by, Some(Scope::Route));
    assert_eq!(d.wait(), Duration::from_millis(100));
    advance(Duration::from_millis(99)).await;
    assert!(!l.check(None).is_allowed());
    advance(Duration::from_millis(1)).await;
    assert!(l.check(None).is_allowed());
    assert!(!l.check(None).is_allowed());
    // A long idle period refills no more than the burst.
    advance(Duration::from_secs(60)).await;
    let admitted = (0..20).filter(|_| l.check(None).is_allowed()).count();
    assert_eq!(admitted, 5);
}

#[tokio::test(start_paused = true)]
async fn gcra_long_run_rate_matches_rps_plus_burst() {
    let l = RateLimiter::new("codes", &config(Some((100, 10)), None));
    let mut admitted = 0;
    // Ten seconds, one attempt every millisecond (1000/s against 100/s).
    for _ in 0..10_000 {
        if l.check(None).is_allowed() {
            admitted += 1;
        }
        advance(Duration::from_millis(1)).await;
    }
    assert!((1_008..=1_011).contains(&admitted), "admitted {admitted}");
}

#[test]
fn one_noisy_key_does_not_limit_another() {
    let (l, _clock) = limiter(&config(None, Some((user(), 5, 5, 100))));
    let noisy = l.hash_key(b"noisy");
    let quiet = l.hash_key(b"quiet");
    let noisy_ok = (0..50)
        .filter(|_| l.check(Some(noisy)).is_allowed())
        .count();
    assert_eq!(noisy_ok, 5);
    let d = l.check(Some(noisy));
    assert_eq!(d.denied_by, Some(Scope::Key));
    assert_eq!(d.wait(), Duration::from_millis(200));
    let quiet_ok = (0..5).filter(|_| l.check(Some(quiet)).is_allowed()).count();
    assert_eq!(quiet_ok, 5);
}

#[test]
fn refused_keys_do_not_spend_the_route_quota() {
    let (l, _clock) = limiter(&config(Some((10, 10)), Some((user(), 1, 2, 100))));
    let noisy = l.hash_key(b"noisy");
    let noisy_ok = (0..20)
        .filter(|_| l.check(Some(noisy)).is_allowed())
        .count();
    assert_eq!(noisy_ok, 2);
    // The route kept 10 - 2; eight distinct users get one each, the ninth is refused.
    for i in 0..8u8 {
        assert!(l.check(Some(l.hash_key(&[i]))).is_allowed(), "user {i}");
    }
    let d = l.check(Some(l.hash_key(b"ninth")));
    assert_eq!(d.denied_by, Some(Scope::Route));
    assert_eq!(d.key.map(|s| s.remaining), Some(1));
}

#[test]
fn a_unique_key_flood_keeps_the_table_bounded() {
    let max_keys = 10_000;
    let (l, clock) = limiter(&config(None, Some((user(), 20, 40, max_keys))));
    let mut admitted = 0usize;
    for key in 0..1_000_000u64 {
        if l.check(Some(key)).is_allowed() {
            admitted += 1;
        }
        if key % 100_000 == 0 {
            clock.advance(Duration::from_millis(1));
        }
    }
    assert!(l.tracked_keys() <= max_keys, "{} keys", l.tracked_keys());
    // Every tracked key got its own first request; the rest shared one
    // overflow bucket (40 at once, plus 20/s over the 10 fake milliseconds).
    assert!(admitted <= max_keys + 41, "admitted {admitted}");
    assert!(admitted >= max_keys, "admitted {admitted}");
    // Slots: hashbrown keeps at most twice the entries (plus a shard's rounding).
    assert!(
        l.key_table_bytes() <= 17 * (2 * max_keys + 4096),
        "{} bytes",
        l.key_table_bytes()
    );
}

#[test]
fn idle_keys_are_swept_to_make_room() {
    let (l, clock) = limiter(&config(None, Some((user(), 10, 10, 100))));
    for key in 0..100u64 {
        assert!(l.check(Some(key)).is_allowed());
    }
    assert_eq!(l.tracked_keys(), 100);
    // Once every bucket has refilled, their state is the same as a fresh one's.
    clock.advance(Duration::from_secs(5));
    assert!(l.check(Some(1_000)).is_allowed());
    assert!(l.tracked_keys() < 100, "{} keys", l.tracked_keys());
    assert!(l.check(Some(1_000)).is_allowed());
    assert_eq!(l.tracked_keys(), 1, "the new key has its own bucket now");
}

#[test]
fn keys_beyond_the_bound_share_one_overflow_bucket() {
    let (l, _clock) = limiter(&config(None, Some((user(), 1, 1, 2))));
    assert!(l.check(Some(1)).is_allowed());
    assert!(l.check(Some(2)).is_allowed());
    // Full of recent keys: newcomers share the overflow bucket (burst 1).
    assert!(l.check(Some(3)).is_allowed());
    assert_eq!(l.check(Some(4)).denied_by, Some(Scope::Key));
    assert_eq!(l.check(Some(5)).denied_by, Some(Scope::Key));
    assert_eq!(l.tracked_keys(), 2);
    // Known keys keep their own buckets.
    assert_eq!(l.check(Some(1)).denied_by, Some(Scope::Key));
}

/// Splits a Structured Field list of `"name";k=v;k=v` members (RFC 9651, the
/// subset the draft uses: String items with Integer parameters).
fn parse_sf_list(text: &str) -> Vec<(String, Vec<(String, u64)>)> {
    text.split(',')
        .map(|member| {
            let mut parts = member.trim().split(';');
            let name = parts.next().unwrap();
            assert!(name.starts_with('"') && name.ends_with('"') && name.len() >= 2);
            let params = parts
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap();
                    assert!(k.chars().all(|c| c.is_ascii_lowercase()), "key {k}");
                    (k.to_owned(), v.parse::<u64>().unwrap())
                })
                .collect();
            (name[1..name.len() - 1].to_owned(), params)
        })
        .collect()
}

#[test]
fn refusal_headers_follow_the_draft() {
    let (l, _clock) = limiter(&config(Some((5000, 10000)), Some((user(), 2, 2, 10))));
    let k = l.hash_key(b"u");
    assert!(l.check(Some(k)).is_allowed());
    assert!(l.check(Some(k)).is_allowed());
    let d = l.check(Some(k));
    assert_eq!(d.denied_by, Some(Scope::Key));
    let h = l.headers(&d);
    assert_eq!(
        h[RATELIMIT_POLICY],
        "\"codes\";q=5000;w=1, \"codes-key\";q=2;w=1"
    );
    assert_eq!(h[RATELIMIT], "\"codes-key\";r=0;t=1");
    let policy = parse_sf_list(h[RATELIMIT_POLICY].to_str().unwrap());
    assert_eq!(policy[0].0, "codes");
    assert_eq!(policy[0].1, vec![("q".into(), 5000), ("w".into(), 1)]);
    let response = l.refusal(&d).to_response(None);
    assert_eq!(response.status(), http::StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()[http::header::RETRY_AFTER], "1");
    assert_eq!(
        response.headers()[crate::error::REASON_HEADER],
        "rate_limited"
    );
    assert_eq!(response.headers()[RATELIMIT], "\"codes-key\";r=0;t=1");

    let (l, _clock) = limiter(&config(Some((1, 3)), None));
    for _ in 0..3 {
        assert!(l.check(None).is_allowed());
    }
    let d = l.check(None);
    assert_eq!(l.headers(&d)[RATELIMIT], "\"codes\";r=0;t=1");
    assert_eq!(d.wait(), Duration::from_secs(1));
}

fn request(path: &str, user: Option<&str>, ip: Option<&str>) -> Request<Body> {
    let mut req = Request::get(path).body(crate::body::empty()).unwrap();
    if let Some(u) = user {
        req.headers_mut()
            .insert("x-user", HeaderValue::from_str(u).unwrap());
    }
    if let Some(ip) = ip {
        req.extensions_mut()
            .insert(ClientIp(ip.parse::<IpAddr>().unwrap()));
    }
    req
}

#[test]
fn keys_come_from_header_path_segment_or_client_ip() {
    let (l, _) = limiter(&config(None, Some((user(), 1, 1, 10))));
    let a = l.key_of(&request("/", Some("a"), None));
    assert_eq!(a, l.key_of(&request("/x", Some("a"), None)));
    assert_ne!(a, l.key_of(&request("/", Some("b"), None)));
    // Requests without the header share one key.
    let none = l.key_of(&request("/", None, None));
    assert!(none.is_some());
    assert_eq!(none, l.key_of(&request("/y", None, Some("10.0.0.1"))));

    let (l, _) = limiter(&config(None, Some((RateKey::PathSegment(4), 1, 1, 10))));
    let code = l.key_of(&request("/api/v1/codes/42", None, None));
    assert_eq!(
        code,
        l.key_of(&request("/api/v2/status/42?x=1", None, None))
    );
    assert_ne!(code, l.key_of(&request("/api/v1/codes/43", None, None)));
    assert_eq!(
        l.key_of(&request("/api", None, None)),
        l.key_of(&request("/api/v1", None, None))
    );

    let (l, _) = limiter(&config(None, Some((RateKey::ClientIp, 1, 1, 10))));
    let ip = l.key_of(&request("/", None, Some("10.0.0.1")));
    assert_eq!(ip, l.key_of(&request("/z", Some("u"), Some("10.0.0.1"))));
    assert_ne!(ip, l.key_of(&request("/", None, Some("10.0.0.2"))));

    let (l, _) = limiter(&config(Some((1, 1)), None));
    assert_eq!(l.key_of(&request("/", Some("a"), None)), None);
}

fn ok_service() -> impl Service<
    Request<Body>,
    Response = Response<Body>,
    Error = ProxyError,
    Future = BoxFuture<'static, Result<Response<Body>, ProxyError>>,
> + Clone {
    tower::service_fn(|_req: Request<Body>| {
        let fut: BoxFuture<'static, _> =
            Box::pin(async { Ok(Response::new(crate::body::empty())) });
        fut
    })
}

#[tokio::test(start_paused = true)]
async fn the_layer_refuses_with_429_and_passes_in_shadow_mode() {
    let cfg = config(None, Some((user(), 1, 2, 10)));
    let l = Arc::new(RateLimiter::new("codes", &cfg));
    let svc = RateLimitLayer::new(l).layer(ok_service());
    for _ in 0..2 {
        assert!(svc
            .clone()
            .oneshot(request("/", Some("a"), None))
            .await
            .is_ok());
    }
    let err = svc
        .clone()
        .oneshot(request("/", Some("a"), None))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    let response = err.to_response(None);
    assert_eq!(response.headers()[RATELIMIT], "\"codes-key\";r=0;t=1");
    assert!(svc
        .clone()
        .oneshot(request("/", Some("b"), None))
        .await
        .is_ok());

    let mut shadow = cfg.clone();
    shadow.shadow = true;
    let l = Arc::new(RateLimiter::new("codes", &shadow));
    let svc = RateLimitLayer::new(l.clone()).layer(ok_service());
    for _ in 0..10 {
        assert!(svc
            .clone()
            .oneshot(request("/", Some("a"), None))
            .await
            .is_ok());
    }
    assert!(!l
        .check(l.key_of(&request("/", Some("a"), None)))
        .is_allowed());
}
