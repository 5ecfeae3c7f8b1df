//! The `floodgate-load` command: flags (and an optional scenario file) → a run → the
//! report folder (`report.json`, `report.html`, `summary.txt`) → `--check` verdicts.
//!
//! Precedence: a flag given on the command line overrides the scenario file, which
//! overrides the defaults shown in `--help`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};

use crate::check::{Check, CheckError};
use crate::profile::{KeySpec, ProfileError, ProfileSpec, Protocol, Scenario, Step, TargetSpec};
use crate::report::{chart, extra, json, summary, CheckVerdict, Report};
use crate::runner::{self, RunConfig, RunError};
use crate::target::{Target, TargetError};

/// Why the command failed (before or instead of a report).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Bad flags.
    #[error("{0}")]
    Usage(String),
    /// Bad scenario or profile.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// Bad or non-loopback target.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// Bad gate.
    #[error(transparent)]
    Check(#[from] CheckError),
    /// The run could not start.
    #[error(transparent)]
    Run(#[from] RunError),
    /// Reading a file failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A bad `--extra-series` file.
    #[error("{path}: {source}")]
    Extra {
        /// The file.
        path: String,
        /// What is wrong.
        source: crate::report::extra::ExtraError,
    },
    /// Writing the report failed.
    #[error(transparent)]
    Json(#[from] json::JsonError),
    /// Writing a file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Profile shape chosen by flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProfileKind {
    /// `--rate` for `--duration`.
    Constant,
    /// `--steps 100:5s,400:10s,100:5s`.
    Step,
    /// From `--rate` to `--ramp-to` over `--duration`.
    Ramp,
    /// `--rate` for `--spike-before`, ×`--spike-multiplier` for `--spike-duration`,
    /// `--rate` for `--spike-after`.
    Spike,
}

/// Parses a duration flag.
fn dur(s: &str) -> Result<Duration, String> {
    crate::duration::parse(s).map_err(|e| e.to_string())
}

/// `floodgate-load`: an open-loop HTTP load generator (loopback targets only).
#[derive(Debug, Clone, Parser)]
#[command(name = "floodgate-load", version, about, long_about = None)]
pub struct LoadArgs {
    /// Target URL, `{id}` is replaced by a key (repeatable; overrides the scenario's targets).
    #[arg(long)]
    pub url: Vec<String>,
    /// HTTP method for --url targets [default: GET].
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Request body for --url targets (`{id}` is replaced).
    #[arg(long)]
    pub body: Option<String>,
    /// Base URL joined with path targets (`/api/...`) of the scenario.
    #[arg(long)]
    pub base_url: Option<String>,
    /// Scenario YAML file (profile, targets, keys, protocol …).
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Profile shape when no scenario is given [default: constant].
    #[arg(long, value_enum)]
    pub profile: Option<ProfileKind>,
    /// Requests per second (constant rate, ramp start, spike baseline).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Profile length for constant and ramp [default: 10s].
    #[arg(long, value_parser = dur)]
    pub duration: Option<Duration>,
    /// Step stages `RATE:DURATION,…`, e.g. `100:5s,400:10s,100:5s`.
    #[arg(long)]
    pub steps: Option<String>,
    /// Ramp end rate.
    #[arg(long)]
    pub ramp_to: Option<f64>,
    /// Spike rate as a multiple of --rate [default: 10].
    #[arg(long)]
    pub spike_multiplier: Option<f64>,
    /// Baseline time before the spike [default: 5s].
    #[arg(long, value_parser = dur)]
    pub spike_before: Option<Duration>,
    /// Spike length [default: 10s].
    #[arg(long, value_parser = dur)]
    pub spike_duration: Option<Duration>,
    /// Baseline time after the spike [default: 5s].
    #[arg(long, value_parser = dur)]
    pub spike_after: Option<Duration>,
    /// Use HTTP/2 (h2c, prior knowledge) instead of HTTP/1.1 keep-alive.
    #[arg(long)]
    pub http2: bool,
    /// Connections per target address [default: 64].
    #[arg(long)]
    pub connections: Option<usize>,
    /// Cap on requests queued or on the wire; beyond it requests are counted `dropped`
    /// [default: 100000].
    #[arg(long)]
    pub max_in_flight: Option<usize>,
    /// Per-request timeout from the actual send [default: 5s].
    #[arg(long, value_parser = dur)]
    pub timeout: Option<Duration>,
    /// Grace for in-flight requests after the profile ends; then a hard stop [default: 5s].
    #[arg(long, value_parser = dur)]
    pub drain: Option<Duration>,
    /// Stop after this many requests.
    #[arg(long)]
    pub max_requests: Option<u64>,
    /// Number of distinct IDs for `{id}` [default: 10000000].
    #[arg(long)]
    pub keys: Option<u64>,
    /// Zipf-like skew exponent of IDs, 0 = uniform [default: 1.0].
    #[arg(long)]
    pub zipf: Option<f64>,
    /// Seed for IDs and target choice [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Report folder (created if missing).
    #[arg(long, default_value = "report")]
    pub out: PathBuf,
    /// Name shown in the report [default: the scenario's name].
    #[arg(long)]
    pub name: Option<String>,
    /// Gate, repeatable, e.g. `unanswered=0`, `p99_admitted<50ms`, `goodput>=900`;
    /// any violation makes the exit code 2.
    #[arg(long = "check")]
    pub checks: Vec<String>,
    /// Do not print the summary table.
    #[arg(long)]
    pub quiet: bool,
    /// JSON-lines samples from another producer (`{"unix_ms": N, "ready": 2, …}`, e.g.
    /// the control plane's replicas), read after the run into `extra_series`.
    #[arg(long)]
    pub extra_series: Option<PathBuf>,
}

/// Parses `100:5s,400:10s`.
fn parse_steps(s: &str) -> Result<Vec<Step>, LoadError> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (r, d) = p
                .split_once(':')
                .ok_or_else(|| LoadError::Usage(format!("step {p:?} is not RATE:DURATION")))?;
            Ok(Step {
                rate: r
                    .trim()
                    .parse()
                    .map_err(|_| LoadError::Usage(format!("bad rate in step {p:?}")))?,
                duration: crate::duration::parse(d.trim())
                    .map_err(|e| LoadError::Usage(e.to_string()))?,
            })
        })
        .collect()
}

impl LoadArgs {
    /// The profile the flags describe, if they describe one.
    fn flag_profile(&self) -> Result<Option<ProfileSpec>, LoadError> {
        let kind = match (self.profile, self.steps.is_some(), self.rate.is_some()) {
            (Some(k), _, _) => k,
            (None, true, _) => ProfileKind::Step,
            (None, false, true) => ProfileKind::Constant,
            (None, false, false) => return Ok(None),
        };
        let need_rate = || {
            self.rate
                .ok_or_else(|| LoadError::Usage("--rate is required for this profile".into()))
        };
        let duration = self.duration.unwrap_or(Duration::from_secs(10));
        Ok(Some(match kind {
            ProfileKind::Constant => ProfileSpec::Constant {
                rate: need_rate()?,
                duration,
            },
            ProfileKind::Step => ProfileSpec::Step {
                steps: parse_steps(self.steps.as_deref().ok_or_else(|| {
                    LoadError::Usage("--profile step needs --steps RATE:DURATION,…".into())
                })?)?,
            },
            ProfileKind::Ramp => ProfileSpec::Ramp {
                from: need_rate()?,
                to: self
                    .ramp_to
                    .ok_or_else(|| LoadError::Usage("--profile ramp needs --ramp-to".into()))?,
                duration,
            },
            ProfileKind::Spike => ProfileSpec::Spike {
                baseline: need_rate()?,
                multiplier: self.spike_multiplier.unwrap_or(10.0),
                before: self.spike_before.unwrap_or(Duration::from_secs(5)),
                spike: self.spike_duration.unwrap_or(Duration::from_secs(10)),
                after: self.spike_after.unwrap_or(Duration::from_secs(5)),
            },
        }))
    }

    /// Merges flags and the scenario into a validated run configuration.
    pub fn to_run(&self) -> Result<(RunConfig, Option<String>), LoadError> {
        let scenario = self
            .scenario
            .as_deref()
            .map(Scenario::from_file)
            .transpose()?;
        let profile = match (self.flag_profile()?, &scenario) {
            (Some(p), _) => p,
            (None, Some(s)) => s.profile.clone(),
            (None, None) => {
                return Err(LoadError::Usage(
                    "give a profile: --rate N [--duration D], --steps …, or --scenario FILE".into(),
                ))
            }
        };
        let segments = profile.segments()?;
        let specs: Vec<TargetSpec> = if !self.url.is_empty() {
            self.url
                .iter()
                .map(|u| TargetSpec {
                    url: u.clone(),
                    method: self.method.clone(),
                    body: self.body.clone(),
                    weight: 1,
                })
                .collect()
        } else if let Some(s) = &scenario {
            s.targets.clone()
        } else {
            return Err(LoadError::Usage("give --url URL or --scenario FILE".into()));
        };
        let base = self
            .base_url
            .clone()
            .or_else(|| scenario.as_ref().and_then(|s| s.base_url.clone()));
        let targets = specs
            .iter()
            .map(|t| Target::from_spec(t, base.as_deref()))
            .collect::<Result<Vec<_>, _>>()?;
        let sc = scenario.as_ref();
        let skeys = sc.map(|s| s.keys).unwrap_or_default();
        let keys = KeySpec {
            count: self.keys.unwrap_or(skeys.count),
            zipf_exponent: self.zipf.unwrap_or(skeys.zipf_exponent),
            seed: self.seed.unwrap_or(skeys.seed),
        };
        let protocol = if self.http2 {
            Protocol::Http2
        } else {
            sc.map(|s| s.protocol).unwrap_or_default()
        };
        let cfg = RunConfig {
            targets,
            keys,
            protocol,
            connections: self
                .connections
                .or(sc.and_then(|s| s.connections))
                .unwrap_or(64),
            max_in_flight: self
                .max_in_flight
                .or(sc.and_then(|s| s.max_in_flight))
                .unwrap_or(100_000),
            timeout: self
                .timeout
                .or(sc.and_then(|s| s.timeout))
                .unwrap_or(Duration::from_secs(5)),
            drain: self
                .drain
                .or(sc.and_then(|s| s.drain))
                .unwrap_or(Duration::from_secs(5)),
            segments,
            max_requests: self.max_requests.or(sc.and_then(|s| s.max_requests)),
        };
        let name = self
            .name
            .clone()
            .or_else(|| sc.and_then(|s| s.name.clone()));
        Ok((cfg, name))
    }

    /// Parses the `--check` gates.
    pub fn parsed_checks(&self) -> Result<Vec<Check>, LoadError> {
        Ok(self
            .checks
            .iter()
            .map(|c| c.parse())
            .collect::<Result<Vec<Check>, _>>()?)
    }
}

/// Evaluates gates into the report; returns whether all passed.
pub fn apply_checks(report: &mut Report, checks: &[Check]) -> bool {
    report.checks = checks
        .iter()
        .map(|c| {
            let (actual, passed) = c.evaluate(report);
            CheckVerdict {
                gate: c.text.clone(),
                actual,
                passed,
            }
        })
        .collect();
    report.checks.iter().all(|c| c.passed)
}

/// Writes `report.json`, `report.html` and `summary.txt` into `dir`.
pub fn write_outputs(report: &Report, dir: &Path) -> Result<(), LoadError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| LoadError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    json::write(report, &dir.join("report.json"))?;
    let html = dir.join("report.html");
    std::fs::write(&html, chart::html(report)).map_err(io(&html))?;
    let txt = dir.join("summary.txt");
    std::fs::write(&txt, summary::render(report)).map_err(io(&txt))?;
    Ok(())
}

/// Runs the whole command: validate, run, report, check. Returns the report and whether
/// every gate passed.
pub async fn execute(args: &LoadArgs) -> Result<(Report, bool), LoadError> {
    let checks = args.parsed_checks()?;
    let (cfg, name) = args.to_run()?;
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let recorded = runner::run(cfg.clone()).await?;
    let mut report = Report::build(name, &cfg, &recorded, started);
    // A bad samples file is reported after the report is written without them: the run
    // itself is not lost.
    let extra = args
        .extra_series
        .as_ref()
        .map(|path| read_extra(path, started, report.timeline.t.len()));
    if let Some(Ok(series)) = &extra {
        report.extra_series = series.clone();
    }
    let passed = apply_checks(&mut report, &checks);
    write_outputs(&report, &args.out)?;
    if let Some(Err(e)) = extra {
        return Err(e);
    }
    Ok((report, passed))
}

/// Reads `--extra-series` and buckets it into the run's seconds.
fn read_extra(
    path: &Path,
    started: u64,
    seconds: usize,
) -> Result<std::collections::BTreeMap<String, Vec<Option<f64>>>, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.display().to_string(),
        source,
    })?;
    extra::bucket(&text, started, seconds).map_err(|source| LoadError::Extra {
        path: path.display().to_string(),
        source,
    })
}
