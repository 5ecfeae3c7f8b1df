//! `healthcode-app`: a demo health-code service with a real capacity. See `loadtest/README.md`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use floodgate_loadtest::app::handlers::AppState;
use floodgate_loadtest::app::{server, AppConfig};

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
}

fn dur(s: &str) -> Result<Duration, String> {
    floodgate_loadtest::duration::parse(s).map_err(|e| e.to_string())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
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
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        let addr = listener.local_addr()?;
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
        server::serve(listener, state, shutdown_signal()).await?;
        eprintln!("healthcode-app: stopped");
        anyhow::Ok(())
    })
}
