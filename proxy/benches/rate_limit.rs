//! Rate-limit decision cost, single thread: the keyed decision over 10,000 keys
//! round-robin (pre-hashed, and hashing a client IP each time), and the
//! route-wide decision. Run with `cargo bench -p floodgate --bench rate_limit`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, Criterion};
use floodgate::config::{KeyedRateConfig, Rate, RateKey, RateLimitConfig};
use floodgate::headers::ClientIp;
use floodgate::stack::rate_limit::RateLimiter;

const KEYS: u32 = 10_000;

fn keyed_config() -> RateLimitConfig {
    RateLimitConfig {
        route: None,
        per_key: Some(KeyedRateConfig {
            key: RateKey::ClientIp,
            rate: Rate { rps: 20, burst: 40 },
            max_keys: 100_000,
        }),
        shadow: false,
    }
}

fn bench(c: &mut Criterion) {
    let keyed = RateLimiter::new("bench", &keyed_config());
    let keys: Vec<u64> = (0..KEYS)
        .map(|i| keyed.hash_key(&i.to_be_bytes()))
        .collect();
    let mut i = 0usize;
    c.bench_function("keyed decision (10k keys, pre-hashed)", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(keyed.check(Some(black_box(keys[i]))))
        })
    });

    let requests: Vec<http::Request<()>> = (0..KEYS)
        .map(|n| {
            let mut req = http::Request::new(());
            let ip = IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + n));
            req.extensions_mut().insert(ClientIp(ip));
            req
        })
        .collect();
    let mut j = 0usize;
    c.bench_function("keyed decision (10k client IPs, key from request)", |b| {
        b.iter(|| {
            j = (j + 1) % requests.len();
            let req = &requests[j];
            black_box(keyed.check(keyed.key_of(black_box(req))))
        })
    });

    let route = RateLimiter::new(
        "bench",
        &RateLimitConfig {
            route: Some(Rate {
                rps: 5_000,
                burst: 10_000,
            }),
            per_key: None,
            shadow: false,
        },
    );
    c.bench_function("route decision", |b| {
        b.iter(|| black_box(route.check(None)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
