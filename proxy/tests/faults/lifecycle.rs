//! Cases on the process's life: config reloads and SIGTERM under load.

use std::time::Duration;

use super::check::{reconcile, Expect};
use super::load::{self, Outcome, Stream};
use super::setup::{Cfg, Proxy};
use crate::common::{eventually, get, metric, upstream, Behavior, Upstream};

/// The `i`-th config: `/normal/` rewritten to `/v{i}/`, so the serving one shows.
fn versioned(app: &Upstream, i: usize) -> String {
    Cfg {
        normal: vec![app.endpoint()],
        normal_route: format!("        rewrite_prefix: \"/v{i}/\""),
        ..Cfg::default()
    }
    .text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_reloads_during_load_every_fifth_invalid() {
    let app = upstream("normal").await;
    let p = Proxy::start(&versioned(&app, 0)).await;
    let tmp = p.dir.path().join("floodgate.yaml.tmp");
    let fault = async {
        for i in 1..=100 {
            let mut text = versioned(&app, i);
            if i % 5 == 0 {
                // A route to a cluster that does not exist: refused, the old config serves.
                text = text.replace("cluster: normal", "cluster: missing");
            }
            std::fs::write(&tmp, text).expect("write");
            std::fs::rename(&tmp, &p.path).expect("rename");
            p.bin.signal("HUP");
            // Paces the rewrites over the load; nothing waits for state here.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let streams = vec![Stream::normal(p.url("/normal/x"), 600, 150)];
    p.case(
        "100 config reloads, every 5th invalid",
        streams,
        fault,
        Expect::default(),
    )
    .await;
    let url = p.url("/normal/x");
    eventually(
        Duration::from_secs(10),
        "the last valid config serves",
        || async { get(&url).await.json()["path"] == "/v99/x" },
    )
    .await;
    let page = get(&p.bin.admin_url("/metrics")).await.body;
    let rejected = metric(&page, "floodgate_config_reloads_total{result=\"rejected\"}");
    let applied = metric(&page, "floodgate_config_reloads_total{result=\"applied\"}");
    assert!(rejected >= 1.0, "invalid rewrites rejected: {rejected}");
    assert!(applied >= 20.0, "reloads applied: {applied}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_load_drains_and_exits_zero() {
    let app = upstream("normal").await;
    app.set(Behavior {
        delay: Duration::from_millis(300),
        ..Behavior::default()
    });
    let mut p = Proxy::start(
        &Cfg {
            normal: vec![app.endpoint()],
            ..Cfg::default()
        }
        .text(),
    )
    .await;
    let mut rss = 0;
    let mut reached_at_term = 0;
    let fault = async {
        eventually(Duration::from_secs(10), "load under way", || async {
            app.hits() >= 50 && app.in_flight() >= 5
        })
        .await;
        rss = p.peak_rss_kib();
        reached_at_term = app.hits();
        p.bin.signal("TERM");
    };
    // 50/s of 300 ms requests: ~15 in flight, under admission's initial limit (20).
    let streams = vec![Stream::normal(p.url("/normal/x"), 200, 50)];
    let _alone = load::exclusive().await;
    let (report, ()) = tokio::join!(load::run(streams, Duration::from_secs(10)), fault);
    // A request a pooled client writes on a keep-alive connection just as the drain
    // closes it (idle) is closed unanswered: HTTP/1.1's keep-alive race (RFC 9112
    // §9.3.1: the client retries it). Seen once in many runs of the whole suite;
    // allowed here, and bounded below.
    let expect = Expect {
        refused_allowed: true,
        resets_allowed: true,
        min_normal_success: 0.0,
        reconcile_counters: false,
        ..Expect::default()
    };
    reconcile(
        "SIGTERM during load (drain 5s; new connections refused after it)",
        &report,
        expect,
        None,
        rss,
    )
    .await;
    let status = tokio::time::timeout(Duration::from_secs(15), p.bin.child.wait())
        .await
        .expect("exits well before the drain deadline plus slack")
        .expect("wait");
    assert!(status.success(), "exit status {status}");
    // Every request is a 200 (it reached the proxy before the listener closed) or
    // refused (after): none cut, none failed in between.
    let (_, _, outcomes) = &report.streams[0];
    let ok = outcomes.iter().filter(|o| load::is_success(o)).count();
    let refused = outcomes.iter().filter(|o| **o == Outcome::Refused).count();
    let raced = report.resets().len();
    assert!(raced <= 2, "closed unanswered: {:?}", report.resets());
    assert_eq!(
        ok + refused + raced,
        outcomes.len(),
        "{:?}",
        report.errors()
    );
    assert!(
        ok >= reached_at_term,
        "the in-flight requests finished: {ok} answered, {reached_at_term} had reached the app at SIGTERM"
    );
    assert!(refused > 0, "new connections were refused after SIGTERM");
}
