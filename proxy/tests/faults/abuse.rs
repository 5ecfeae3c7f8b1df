//! Abusive clients beside normal traffic: a slowloris crowd, slow readers, a
//! flood of unique rate-limit keys, an HTTP/2 rapid-reset client. Normal traffic
//! keeps its success rate.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::check::Expect;
use super::load::Stream;
use super::raw::{raw_upstream, Script, BIG_BODY};
use super::setup::{Cfg, Proxy};
use crate::common::{eventually, get, metric, paced_rapid_reset, upstream, Behavior};

/// Opens `n` connections that send a request head one header line every 200 ms;
/// returns how long each lasted before the proxy closed it (`None`: still open
/// after 15 s).
async fn slowloris(addr: SocketAddr, n: usize) -> Vec<Option<Duration>> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        set.spawn(async move {
            let start = Instant::now();
            let mut s = TcpStream::connect(addr).await.ok()?;
            s.write_all(b"GET /normal/slow HTTP/1.1\r\nHost: x\r\n")
                .await
                .ok()?;
            let mut buf = [0u8; 1024];
            while start.elapsed() < Duration::from_secs(15) {
                tokio::select! {
                    r = s.read(&mut buf) => match r {
                        Ok(0) | Err(_) => return Some(start.elapsed()),
                        Ok(_) => {}
                    },
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {
                        if s.write_all(b"x-slow: 1\r\n").await.is_err() {
                            return Some(start.elapsed());
                        }
                    }
                }
            }
            None
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.expect("slowloris task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_crowd_beside_normal_traffic() {
    let app = upstream("normal").await;
    let cfg = Cfg {
        normal: vec![app.endpoint()],
        limits: "{ header_read_timeout: 1s }".into(),
        ..Cfg::default()
    };
    let p = Proxy::start(&cfg.text()).await;
    let addr = p.bin.listeners["public"];
    let (_, lasted) = p
        .case(
            "slowloris crowd (200 connections, header_read_timeout 1s)",
            vec![Stream::normal(p.url("/normal/x"), 300, 150)],
            slowloris(addr, 200),
            Expect::default(),
        )
        .await;
    assert_eq!(lasted.len(), 200);
    assert!(
        lasted
            .iter()
            .all(|l| l.is_some_and(|d| d < Duration::from_secs(10))),
        "every slow head is cut off well before 10 s: {lasted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_beside_normal_traffic() {
    let app = upstream("normal").await;
    let big = raw_upstream(Script::Big).await;
    let cfg = Cfg {
        normal: vec![app.endpoint()],
        fault: vec![big.to_string()],
        fault_timeout: Some("60s"),
        limits: "{ send_timeout: 1s }".into(),
        ..Cfg::default()
    };
    let p = Proxy::start(&cfg.text()).await;
    let addr = p.bin.listeners["public"];
    // Ten clients ask for 16 MiB each and never read.
    let readers = async {
        let mut held = Vec::new();
        for _ in 0..10 {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .expect("write");
            held.push(s);
        }
        held
    };
    let (_, mut held) = p
        .case(
            "10 slow readers of 16 MiB (send_timeout 1s)",
            vec![Stream::normal(p.url("/normal/x"), 300, 150)],
            readers,
            Expect {
                side_requests: 10,
                ..Expect::default()
            },
        )
        .await;
    // The proxy closes them (its connection gauge drops to zero while this side
    // still holds them) instead of buffering 160 MiB.
    let metrics = p.bin.admin_url("/metrics");
    eventually(
        Duration::from_secs(15),
        "slow readers closed by the proxy",
        || async {
            metric(
                &get(&metrics).await.body,
                "floodgate_downstream_connections",
            ) == 0.0
        },
    )
    .await;
    for s in &mut held {
        let mut got = 0;
        let mut buf = vec![0u8; 64 << 10];
        let read_all = async {
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                got += n;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read_all)
            .await
            .expect("the closed connection reads to its end");
        assert!(got < BIG_BODY, "cut off before the whole body: {got} bytes");
    }
}

/// The flood overflows a 500-key table: new keys share the overflow bucket, the
/// table stays bounded, the regular key keeps its own bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_key_flood_beside_normal_traffic() {
    let app = upstream("normal").await;
    let cfg = Cfg {
        normal: vec![app.endpoint()],
        normal_route: "        rate_limit: { per_key: { key: \"header:x-user\", rps: 1000, burst: 1000, max_keys: 500 } }"
            .into(),
        ..Cfg::default()
    };
    let p = Proxy::start(&cfg.text()).await;
    let mut normal = Stream::normal(p.url("/normal/x"), 300, 150);
    normal.header = Some(("x-user", "regular".to_owned()));
    let mut flood = Stream::fault(p.url("/normal/x"), 2400, 800);
    flood.name = "unique keys";
    flood.header = Some(("x-user", "flood-{i}".to_owned()));
    p.case(
        "unique-key flood (2,400 keys at 800/s, per-key limit, max_keys 500)",
        vec![normal, flood],
        async {},
        Expect::default(),
    )
    .await;
    let page = get(&p.bin.admin_url("/metrics")).await.body;
    let keys = metric(&page, "floodgate_rate_limit_keys");
    let overflow = metric(&page, "floodgate_rate_limit_overflow_total");
    assert!(
        keys <= 500.0 + 16.0,
        "the key table stays bounded: {keys} keys"
    );
    assert!(overflow > 0.0, "the flood overflowed the table: {page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_client_beside_normal_traffic() {
    let app = upstream("normal").await;
    // The abuser's streams go to an app that never answers in time: each one it
    // resets is a premature reset of a request already forwarded.
    let slow = upstream("fault").await;
    slow.set(Behavior {
        delay: Duration::from_secs(30),
        ..Behavior::default()
    });
    let cfg = Cfg {
        normal: vec![app.endpoint()],
        fault: vec![slow.endpoint()],
        fault_cluster: "    admission: { enabled: false }".into(),
        ..Cfg::default()
    };
    let p = Proxy::start(&cfg.text()).await;
    let addr = p.bin.listeners["public"];
    let (_, opened) = p
        .case(
            "HTTP/2 rapid reset on one connection",
            vec![Stream::normal(p.url("/normal/x"), 300, 150)],
            async { paced_rapid_reset(addr, "/fault/x", &slow, 5_000).await.0 },
            Expect::default(),
        )
        .await;
    assert!(
        opened < 1_000,
        "the abusive connection took {opened} streams without GOAWAY"
    );
    let page = get(&p.bin.admin_url("/metrics")).await.body;
    let closed = metric(
        &page,
        "floodgate_listener_connections_closed_total{listener=\"public\",reason=\"rapid_reset\"}",
    );
    assert_eq!(closed, 1.0, "one connection closed for rapid reset");
}
