//! Configuration: file types (what the user writes) → validation → runtime types
//! (what runs), and the reload machinery that publishes them.
//!
//! The same [`load_file`] runs for `floodgate --check`, at start-up, on hot reload
//! (file watch and SIGHUP) and, later, in the control plane before it pushes a config.

mod error;
pub mod file;
mod parse_cache;
mod runtime;
pub mod secret;
mod shapes;
mod split;
pub mod units;
mod validate;
pub mod watch;

use std::path::Path;

pub use error::{ConfigError, ConfigErrors};
pub use parse_cache::ParseCache;
pub use runtime::*;
pub use units::{format_duration, parse_duration, parse_size, DurationError};
pub use validate::Validated;

/// Reads, parses and validates a config file, reporting every error found.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let source = read_source(path)?;
    parse_str(&source.text, &source.name, source.base_dir)
}

/// A config file's text, the name errors give it, and the directory its relative
/// paths resolve against; a file that cannot be read is a one-error list.
pub struct Source<'a> {
    /// The file's path as text, for error messages.
    pub name: String,
    /// The file's contents.
    pub text: String,
    /// The file's directory.
    pub base_dir: &'a Path,
}

/// Reads a config file for parsing (shared by the proxy's and the control plane's
/// loaders).
pub fn read_source(path: &Path) -> Result<Source<'_>, ConfigErrors> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::one(&name, ConfigError::at("", format!("cannot read file: {e}")))
    })?;
    Ok(Source {
        name,
        text,
        base_dir: path.parent().unwrap_or_else(|| Path::new(".")),
    })
}

/// Parses and validates config text; `base_dir` resolves relative certificate paths.
pub fn parse_str(text: &str, source: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
    let file = file::parse(text).map_err(|e| ConfigErrors::one(source, e))?;
    validate::validate(file, source, base_dir)
}

/// [`parse_str`], taking every route of `previous` whose file form is unchanged as it was
/// validated instead of validating it again (the result and the errors are those of
/// [`parse_str`]); the result keeps the file forms for the next call.
pub fn parse_str_reusing(
    text: &str,
    source: &str,
    base_dir: &Path,
    previous: Option<&Validated>,
) -> Result<Validated, ConfigErrors> {
    let file = file::parse(text).map_err(|e| ConfigErrors::one(source, e))?;
    validate::validate_reusing(file, source, base_dir, previous)
}

/// [`parse_str_reusing`] with the YAML parsed through `cache`, which re-parses only the
/// route items whose text changed since its last parse ([`ParseCache`]; the result and
/// the errors are those of [`parse_str`]).
pub fn parse_str_cached(
    text: &str,
    source: &str,
    base_dir: &Path,
    previous: Option<&Validated>,
    cache: &mut ParseCache,
) -> Result<Validated, ConfigErrors> {
    let file = cache
        .parse(text)
        .map_err(|e| ConfigErrors::one(source, e))?;
    validate::validate_reusing(file, source, base_dir, previous)
}

/// [`parse_str_reusing`] of a config already in file form (as a control plane sends the
/// file form it validated, so that the proxy need not parse the YAML text again).
pub fn validate_file_reusing(
    file: file::FileConfig,
    source: &str,
    base_dir: &Path,
    previous: Option<&Validated>,
) -> Result<Validated, ConfigErrors> {
    validate::validate_reusing(file, source, base_dir, previous)
}
