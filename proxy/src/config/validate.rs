//! Validation: file types → runtime types, reporting every error with its field path.

use std::path::Path;

use super::file::FileConfig;
use super::{Config, ConfigErrors};

/// Converts file types into a runtime [`Config`], or reports every problem found.
pub(super) fn validate(
    _file: FileConfig,
    source: &str,
    _base_dir: &Path,
) -> Result<Config, ConfigErrors> {
    Err(ConfigErrors::one(
        source,
        super::ConfigError::at("", "validation is not built yet"),
    ))
}
