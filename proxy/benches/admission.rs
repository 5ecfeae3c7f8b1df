//! Admission fast path: acquire and release a permit under the limit, one thread.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use futures_util::FutureExt;

use floodgate::admission::{AdmissionControl, GradientLimit};
use floodgate::config::{AdaptiveLimit, AdmissionConfig, ConcurrencyLimit, Priority};
use floodgate::time;

fn admission(limit: ConcurrencyLimit) -> Arc<AdmissionControl> {
    let config = AdmissionConfig {
        limit,
        max_queue: 1000,
        queue_timeout: Duration::from_secs(1),
        queue_target: None,
        queue_interval: Duration::from_millis(100),
        priority_header: None,
    };
    Arc::new(AdmissionControl::new(
        &config,
        &metrics::SharedString::from("bench"),
    ))
}

fn fast_path(c: &mut Criterion) {
    let fixed = admission(ConcurrencyLimit::Fixed(1000));
    c.bench_function("admission/try_acquire+drop (fixed)", |b| {
        b.iter(|| drop(black_box(fixed.try_acquire())))
    });
    c.bench_function("admission/acquire+drop (fixed)", |b| {
        b.iter(|| {
            let deadline = time::now() + Duration::from_secs(1);
            let permit = fixed.acquire(Priority::Normal, deadline).now_or_never();
            drop(black_box(permit));
        })
    });
    let adaptive = admission(ConcurrencyLimit::Adaptive(AdaptiveLimit {
        initial: 1000,
        min: 1000,
        max: 1000,
        tolerance: 1.0,
        update_interval: Duration::from_millis(100),
        min_rtt_window: Duration::from_secs(10),
    }));
    c.bench_function("admission/acquire+complete (adaptive)", |b| {
        b.iter(|| {
            let deadline = time::now() + Duration::from_secs(1);
            if let Some(Ok(permit)) = adaptive.acquire(Priority::Normal, deadline).now_or_never() {
                permit.complete(Some(Duration::from_millis(20)));
            }
        })
    });
}

/// The pure limit: one sample recorded and the window checked, as `release` does.
fn limit_update(c: &mut Criterion) {
    let params = AdaptiveLimit {
        initial: 20,
        min: 4,
        max: 1000,
        tolerance: 1.0,
        update_interval: Duration::from_millis(100),
        min_rtt_window: Duration::from_secs(10),
    };
    let start = time::now();
    let mut limit = GradientLimit::new(&params, start);
    let mut now = start;
    c.bench_function("admission/limit record+tick", |b| {
        b.iter(|| {
            now += Duration::from_micros(50);
            limit.note_in_flight(black_box(16));
            limit.record(now, Duration::from_millis(10));
            black_box(limit.tick(now, 15));
        })
    });
}

criterion_group!(benches, fast_path, limit_update);
criterion_main!(benches);
