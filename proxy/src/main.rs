//! `floodgate`: the data-plane binary. Loads and validates the config, serves,
//! reloads on file change or SIGHUP — or, when the config has a `control_plane:`
//! block, polls the control plane for its config — and drains on SIGTERM/SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use floodgate::admin::Admin;
use floodgate::config::{self, Config};
use floodgate::control_client::Managed;
use floodgate::state::Proxy;
use floodgate::workers::Workers;
use floodgate::{observe, reload};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing_subscriber::EnvFilter;

/// mimalloc: per-request allocations (boxed futures, header maps, bodies) come
/// from thread-local pages instead of glibc's shared arenas. Built without
/// transparent huge pages, which would take 2 MB of memory per thread at idle.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "floodgate",
    version,
    about = "Floodgate: a burst-tolerant reverse proxy and service-mesh sidecar"
)]
struct Cli {
    /// Path of the YAML config file.
    #[arg(long, short = 'c')]
    config: PathBuf,
    /// Validate the config, print every error, and exit (0 valid, 1 invalid).
    #[arg(long)]
    check: bool,
    /// Log output format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Worker threads serving traffic, each with its own runtime (default: one per CPU core).
    #[arg(long)]
    workers: Option<usize>,
    /// Log filter of the process's own log (tracing EnvFilter syntax). The access
    /// log is `server.access_log` in the config.
    #[arg(long, env = "FLOODGATE_LOG", default_value = "info")]
    log: String,
    /// Colour in the process's text log: `auto` (only on a terminal, and never with
    /// `NO_COLOR` set), `always` or `never`.
    #[arg(long, value_enum, default_value_t = LogColor::Auto)]
    log_color: LogColor,
}

/// When the text log is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogColor {
    /// On a terminal, unless `NO_COLOR` is set (non-empty).
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

impl LogColor {
    /// Whether to write ANSI colour escapes to stdout.
    fn enabled(self) -> bool {
        use std::io::IsTerminal;
        match self {
            LogColor::Always => true,
            LogColor::Never => false,
            LogColor::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::io::stdout().is_terminal()
            }
        }
    }
}

/// Log output formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match config::load_file(&cli.config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "{}: configuration check failed ({} error{})",
                cli.config.display(),
                errors.errors.len(),
                if errors.errors.len() == 1 { "" } else { "s" }
            );
            return ExitCode::FAILURE;
        }
    };
    if cli.check {
        let routes: usize = config.listeners.iter().map(|l| l.routes.len()).sum();
        println!(
            "{}: configuration is valid ({} listeners, {} routes, {} clusters)",
            cli.config.display(),
            config.listeners.len(),
            routes,
            config.clusters.len()
        );
        if let Some(cp) = &config.control_plane {
            println!(
                "{}: takes its config from the control plane {} (group {}, node {}); snapshots persist to {}",
                cli.config.display(),
                cp.url,
                cp.group,
                cp.node_id,
                cp.snapshot_file.display()
            );
        }
        return ExitCode::SUCCESS;
    }
    let (writer, _log_guard) = tracing_appender::non_blocking(std::io::stdout());
    let filter = EnvFilter::try_new(&cli.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(cli.log_color.enabled())
        .with_writer(writer);
    match cli.log_format {
        LogFormat::Text => subscriber.init(),
        LogFormat::Json => subscriber.json().flatten_event(true).init(),
    }
    // The control runtime (admin, health checks, reload, drain) runs on this thread;
    // traffic is served by the workers, one current-thread runtime per core.
    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let count = cli.workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let (control, workers) = match (control, Workers::start(count)) {
        (Ok(c), Ok(w)) => (c, Arc::new(w)),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("cannot start the runtimes: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = control.block_on(run(cli.config, config, Arc::clone(&workers)));
    workers.stop();
    // The lines of the last requests, still in the workers' buffers.
    floodgate::access_log::sink::flush(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("floodgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(path: PathBuf, config: Config, workers: Arc<Workers>) -> anyhow::Result<()> {
    // Signal handlers first: a signal that arrives once the process looks started
    // must be handled, not meet the default action (which ends the process).
    let shutdown = Shutdown::install()?;
    let hangup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP");
            None
        }
    };
    // SIGUSR1 reopens the access-log file (after logrotate renamed it), as nginx does.
    match signal(SignalKind::user_defined1()) {
        Ok(mut usr1) => {
            tokio::spawn(async move {
                while usr1.recv().await.is_some() {
                    tracing::info!("SIGUSR1: reopening the access log");
                    floodgate::access_log::sink::reopen();
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot listen for SIGUSR1"),
    }
    observe::prometheus();
    let admin_addr = config.admin.listen;
    tracing::info!(workers = workers.handles().len(), "starting");
    let admin_token = config.admin.token.clone();
    let mut admin = Admin::bind(admin_addr)
        .await
        .with_context(|| format!("binding admin listener {admin_addr}"))?
        .with_token(admin_token);
    tracing::info!(addr = %admin.local_addr()?, "admin listening");
    let (proxy, background, managed) = if config.control_plane.is_some() {
        // The bootstrap is read once: the config comes from the control plane, so
        // neither a file change nor SIGHUP reloads it (a restart does).
        let base_dir = path
            .parent()
            .map_or_else(|| PathBuf::from("."), PathBuf::from);
        let managed = Managed::start_on(config, &base_dir, workers)
            .context("starting with the control plane")?;
        admin = admin.with_control(Arc::clone(managed.status()));
        let background = tokio::spawn(ignore_hangups(hangup));
        (Arc::clone(managed.proxy()), background, Some(managed))
    } else {
        let proxy = Proxy::start_on(config, workers).context("starting listeners")?;
        let reload_task = reload::spawn(Arc::clone(&proxy), path, hangup);
        (proxy, reload_task, None)
    };
    let admin_task = tokio::spawn(admin.serve(Arc::clone(&proxy)));

    shutdown.wait().await;
    tracing::info!("shutdown signal received; draining");
    background.abort();
    if let Some(m) = &managed {
        m.stop_polling();
    }
    proxy.drain().await;
    admin_task.abort();
    tracing::info!("drained; exiting");
    Ok(())
}

/// With a control plane, SIGHUP does not reload the bootstrap; it is logged.
async fn ignore_hangups(hangup: Option<Signal>) {
    let Some(mut hangup) = hangup else { return };
    while hangup.recv().await.is_some() {
        tracing::info!("SIGHUP ignored: the config comes from the control plane (restart to re-read the bootstrap)");
    }
}

/// The SIGTERM and SIGINT handlers.
struct Shutdown {
    term: Signal,
    int: Signal,
}

impl Shutdown {
    fn install() -> anyhow::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing SIGINT handler")?,
        })
    }

    /// Waits for either signal.
    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
