//! Configuration errors: each names the file, the field path, the reason, and the
//! line and column where they are known.

use std::fmt;

/// One problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// 1-based column in the file, when known.
    pub column: Option<usize>,
    /// Field path such as `clusters[1].endpoints[0]`; empty for whole-document errors.
    pub path: String,
    /// What is wrong, in words a user can act on.
    pub reason: String,
}

impl ConfigError {
    /// An error at a field path with no known position.
    pub fn at(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            line: None,
            column: None,
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Every problem found in one configuration source; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    /// The file (or source name) the errors belong to.
    pub file: String,
    /// The problems, in the order found.
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// Wraps a single error.
    pub fn one(file: impl Into<String>, error: ConfigError) -> Self {
        Self {
            file: file.into(),
            errors: vec![error],
        }
    }
}

impl fmt::Display for ConfigErrors {
    /// One line per error: `file:line:column: path: reason`, like compilers and `nginx -t`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.file)?;
            if let Some(line) = e.line {
                write!(f, ":{line}")?;
                if let Some(col) = e.column {
                    write!(f, ":{col}")?;
                }
            }
            if e.path.is_empty() {
                write!(f, ": {}", e.reason)?;
            } else {
                write!(f, ": {}: {}", e.path, e.reason)?;
            }
        }
        Ok(())
    }
}
