//! `healthcode-app`: a demo health-code service with a real capacity. See `loadtest/README.md`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use floodgate_loadtest::app::handlers::AppState;
use floodgate_loadtest::app::{register, server, AppConfig};

/// A demo upstream: `workers` requests in service at once, each for `service-time`,
/// at most `max-queue` waiting (FIFO), 503 beyond that.
#[derive(Debug, Parser)]
#[command(name = "healthcode-app", version, about)]
struct Args {
    /// Address to listen on (`127.0.0.1:0` picks a free port; printed on stdout).
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Requests in service at once.
    #[arg(long, default_value_t = 16)]
    workers: usize,
    /// Time each request holds its worker slot (e.g. 5ms).
    #[arg(long, default_value = "5ms", value_parser = dur)]
    service_time: Duration,
    /// Requests allowed to wait for a worker; beyond that, 503 at once.
    #[arg(long, default_value_t = 64)]
    max_queue: usize,
    /// Fraction of served requests answered 500 (0.0–1.0).
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Cache-Control header added to code responses (e.g. "max-age=1").
    #[arg(long)]
    cache_control: Option<String>,
    /// Register with the Floodgate control plane at this URL (`http[s]://host:port`):
    /// heartbeat every third of the TTL, deregister on SIGTERM / ctrl-c.
    #[arg(long, value_name = "URL")]
    register: Option<String>,
    /// PEM CA bundle that an `https://` control plane's certificate must chain to.
    #[arg(long, value_name = "FILE", requires = "register")]
    register_ca: Option<std::path::PathBuf>,
    /// The control plane's app token: a literal, `env:NAME` or `file:PATH`
    /// (default: the `FLOODGATE_APP_TOKEN` environment variable).
    #[arg(long, value_name = "SPEC", requires = "register")]
    token: Option<String>,
    /// The cluster to register in.
    #[arg(long, default_value = register::DEFAULT_CLUSTER, requires = "register")]
    register_cluster: String,
    /// The `host:port` proxies should connect to (default: the listening address).
    #[arg(long, value_name = "HOST:PORT", requires = "register")]
    advertise: Option<String>,
    /// How long the registration lives without a heartbeat.
    #[arg(long, default_value = "10s", value_parser = dur, requires = "register")]
    register_ttl: Duration,
    /// A metadata label `KEY=VALUE` for the registration (repeatable; `workers` is added).
    #[arg(long, value_name = "KEY=VALUE", value_parser = label, requires = "register")]
    register_meta: Vec<(String, String)>,
}

fn label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

fn dur(s: &str) -> Result<Duration, String> {
    floodgate_loadtest::duration::parse(s).map_err(|e| e.to_string())
}

/// SIGTERM or ctrl-c. The SIGTERM handler is installed when this is called (not when
/// the future is first polled), so a SIGTERM right after startup is not fatal.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        #[cfg(unix)]
        if let Some(mut term) = term {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.fail_rate),
        "--fail-rate must be between 0 and 1"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let shutdown = shutdown_signal();
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        let addr = listener.local_addr()?;
        let registration = match &args.register {
            None => None,
            Some(url) => {
                let mut metadata = serde_json::Map::new();
                metadata.insert("workers".into(), args.workers.into());
                for (k, v) in &args.register_meta {
                    metadata.insert(k.clone(), v.clone().into());
                }
                Some(register::Settings::new(
                    url,
                    args.token.as_deref(),
                    &args.register_cluster,
                    args.advertise.as_deref(),
                    addr,
                    args.register_ttl,
                    metadata,
                    args.register_ca.as_deref(),
                )?)
            }
        };
        let state = Arc::new(AppState::new(AppConfig {
            workers: args.workers,
            service_time: args.service_time,
            max_queue: args.max_queue,
            fail_rate: args.fail_rate,
            cache_control: args.cache_control,
        }));
        println!("listening on {addr}");
        eprintln!(
            "healthcode-app: {} workers x {:?} service time (max ~{:.0} rps), max queue {}",
            args.workers,
            args.service_time,
            args.workers as f64 / args.service_time.as_secs_f64().max(1e-6),
            args.max_queue
        );
        match registration {
            None => server::serve(listener, state, shutdown).await?,
            Some(settings) => {
                // Deregister first, then stop serving: proxies drop this replica
                // before it refuses connections.
                let agent = tokio::spawn(register::run(settings, shutdown));
                server::serve(listener, state, async move {
                    let _ = agent.await;
                })
                .await?;
            }
        }
        eprintln!("healthcode-app: stopped");
        anyhow::Ok(())
    })
}
