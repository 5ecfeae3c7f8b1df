//! `report.json`: the report serialized with the `floodgate-load/v1` schema.
//!
//! Compatibility rule for `v1`: fields are only ever added, never renamed or removed;
//! a breaking change bumps the tag to `floodgate-load/v2`.

use std::path::Path;

use super::{Report, SCHEMA};

/// Why a report could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// Serialization failed.
    #[error("report JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The file could not be written or read.
    #[error("report file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file has another schema.
    #[error("unsupported report schema {0:?} (expected {SCHEMA})")]
    Schema(String),
}

/// Pretty JSON text of a report.
pub fn to_string(report: &Report) -> Result<String, JsonError> {
    Ok(serde_json::to_string_pretty(report)?)
}

/// Parses a report, checking its schema tag.
pub fn from_str(text: &str) -> Result<Report, JsonError> {
    let r: Report = serde_json::from_str(text)?;
    if r.schema != SCHEMA {
        return Err(JsonError::Schema(r.schema));
    }
    Ok(r)
}

/// Writes `report.json` into `path`.
pub fn write(report: &Report, path: &Path) -> Result<(), JsonError> {
    let text = to_string(report)?;
    std::fs::write(path, text).map_err(|source| JsonError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Reads a report file.
pub fn read(path: &Path) -> Result<Report, JsonError> {
    let text = std::fs::read_to_string(path).map_err(|source| JsonError::Io {
        path: path.display().to_string(),
        source,
    })?;
    from_str(&text)
}
