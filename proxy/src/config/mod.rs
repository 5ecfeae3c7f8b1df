//! Configuration: file types (what the user writes) → validation → runtime types
//! (what runs), and the reload machinery that publishes them.
//!
//! The same [`load_file`] runs for `floodgate --check`, at start-up, on hot reload
//! (file watch and SIGHUP) and, later, in the control plane before it pushes a config.

mod error;
pub mod file;
mod runtime;
pub mod units;
mod validate;
pub mod watch;

use std::path::Path;

pub use error::{ConfigError, ConfigErrors};
pub use runtime::*;
pub use units::{format_duration, parse_duration, parse_size, DurationError};

/// Reads, parses and validates a config file, reporting every error found.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::one(
            &source,
            ConfigError::at("", format!("cannot read file: {e}")),
        )
    })?;
    let base_dir = path.parent().unwrap_or_else(|| Path::new("."));
    parse_str(&text, &source, base_dir)
}

/// Parses and validates config text; `base_dir` resolves relative certificate paths.
pub fn parse_str(text: &str, source: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
    let file = file::parse(text).map_err(|e| ConfigErrors::one(source, e))?;
    validate::validate(file, source, base_dir)
}
