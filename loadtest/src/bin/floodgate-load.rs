//! `floodgate-load`: open-loop load generator. See `loadtest/README.md`.

use std::process::ExitCode;

use clap::Parser;
use floodgate_loadtest::load::{execute, LoadArgs};
use floodgate_loadtest::report::summary;

/// Exit code when a `--check` gate is violated.
const CHECK_FAILED: u8 = 2;

fn main() -> anyhow::Result<ExitCode> {
    let args = LoadArgs::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (report, passed) = rt.block_on(execute(&args))?;
    if !args.quiet {
        print!("{}", summary::render(&report));
    }
    for c in &report.checks {
        let actual = c
            .actual
            .map_or_else(|| "n/a".to_string(), |v| format!("{v:.2}"));
        println!(
            "check {}: {} (actual {actual})",
            c.gate,
            if c.passed { "PASS" } else { "FAIL" }
        );
    }
    println!("report written to {}", args.out.display());
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(CHECK_FAILED)
    })
}
