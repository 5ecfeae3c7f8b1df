//! A server that stalls for a while must show in the generator's p99, because latency is
//! measured from the intended send time; the closed-loop view (from the actual send)
//! hides it.

mod common;

use std::time::Duration;

use common::Stall;
use floodgate_loadtest::profile::ProfileSpec;
use floodgate_loadtest::report::Report;
use floodgate_loadtest::runner;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_shows_in_p99() {
    // Every request arriving between 1.0 s and 2.5 s after the server starts sleeps 1 s.
    let (addr, _) = common::fast_server(Some(Stall {
        from: Duration::from_millis(1000),
        until: Duration::from_millis(2500),
        stall: Duration::from_secs(1),
    }))
    .await;
    // One connection, 200 rps for 4 s = 800 requests.
    let cfg = common::config(
        &format!("http://{addr}/x/{{id}}"),
        ProfileSpec::Constant {
            rate: 200.0,
            duration: Duration::from_secs(4),
        },
        1,
    );
    let rec = tokio::time::timeout(Duration::from_secs(30), runner::run(cfg.clone()))
        .await
        .expect("run is bounded")
        .unwrap();
    let report = Report::build(None, &cfg, &rec, 0);
    let s = &report.summary;
    assert_eq!(s.responses, 800, "{s:?}");
    let p99 = s.latency_ms.all.p99.unwrap();
    assert!(
        p99 >= 1000.0,
        "open-loop p99 {p99} ms must show the 1 s stall"
    );
    // A closed-loop tool on this connection sees only the two or so stalled requests
    // among 800, so its p99 stays low: exactly the omission this generator avoids.
    let closed = s.service_latency_ms.all.p99.unwrap();
    assert!(closed < 500.0, "closed-loop p99 {closed} ms");
    assert!(s.service_latency_ms.all.max.unwrap() >= 1000.0);
}
