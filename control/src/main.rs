//! `floodgate-control`: run the control plane, or `--check` its config.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Floodgate's control plane: versioned config push and the endpoint registry.
#[derive(Debug, Parser)]
#[command(name = "floodgate-control", version)]
struct Args {
    /// The control-plane config file.
    #[arg(long, short, default_value = "configs/control.yaml")]
    config: PathBuf,
    /// Validate the config and every proxy config in its `configs_dir`, then exit (0 valid, 1 not).
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.check {
        return match floodgate_control::check(&args.config) {
            Ok(groups) => {
                println!("{}: ok ({groups} node groups)", args.config.display());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for e in errors {
                    eprintln!("{e}");
                }
                ExitCode::FAILURE
            }
        };
    }
    // Colour only on a terminal, and never with NO_COLOR set (log files and
    // `kubectl logs` get plain text).
    let color = {
        use std::io::IsTerminal;
        std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(color)
        .init();
    let config = match floodgate_control::config::load_file(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let running = match floodgate_control::start(config).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e:#}");
                return ExitCode::FAILURE;
            }
        };
        // SIGTERM as well as ctrl-c: the process scaler's replicas are stopped
        // (deregistered, SIGTERMed, reaped) before the control plane exits.
        #[cfg(unix)]
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("cannot handle SIGTERM: {e}");
                    return ExitCode::FAILURE;
                }
            };
        #[cfg(unix)]
        let terminated = term.recv();
        #[cfg(not(unix))]
        let terminated = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; stopping"),
            _ = terminated => tracing::info!("SIGTERM; stopping"),
        }
        running.shutdown().await;
        ExitCode::SUCCESS
    })
}
