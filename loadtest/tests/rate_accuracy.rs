//! The generator holds its rate: 2,000 rps for 5 s within ±2%.

mod common;

use std::time::Duration;

use floodgate_loadtest::profile::ProfileSpec;
use floodgate_loadtest::report::Report;
use floodgate_loadtest::runner;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_2000_rps_for_5s_within_2_percent() {
    let (addr, _) = common::fast_server(None).await;
    let cfg = common::config(
        &format!("http://{addr}/api/v1/codes/{{id}}"),
        ProfileSpec::Constant {
            rate: 2000.0,
            duration: Duration::from_secs(5),
        },
        32,
    );
    let rec = tokio::time::timeout(Duration::from_secs(30), runner::run(cfg.clone()))
        .await
        .expect("run is bounded")
        .unwrap();
    let report = Report::build(None, &cfg, &rec, 0);
    let s = &report.summary;
    assert_eq!(s.offered, 10_000);
    assert_eq!(s.sent, 10_000);
    assert_eq!(s.dropped, 0);
    assert_eq!(s.unanswered, 0, "{s:?}");
    assert_eq!(s.admitted, 10_000);
    assert!(
        (1960.0..=2040.0).contains(&s.send_rps),
        "achieved send rate {} not within 2% of 2000",
        s.send_rps
    );
    // Every whole second of the profile within ±2% too.
    for (i, sent) in report.timeline.sent.iter().take(5).enumerate() {
        assert!((1960..=2040).contains(sent), "second {i}: sent {sent}");
    }
}
