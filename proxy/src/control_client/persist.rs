//! The last applied snapshot on disk, so that a proxy restarted while the control
//! plane is away still serves it (static stability).
//!
//! The file is the snapshot's config text under one header line,
//! `# floodgate snapshot: group=<group> version=<version>`, so it is itself a valid
//! proxy config (`floodgate --check` reads it). It is written atomically: a
//! temporary file in the same directory, written and fsynced, then renamed over
//! the old one (and the directory fsynced), so a crash leaves the old file or the
//! new one, never half of one.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The header line's prefix.
const HEADER: &str = "# floodgate snapshot: ";

/// A snapshot read back from disk (not yet validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persisted {
    /// The control plane's version of it.
    pub version: u64,
    /// The config text as the control plane served it.
    pub text: String,
}

/// Why a persisted snapshot could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not one this module wrote, or belongs to another group.
    #[error("{path}: not a snapshot of group `{group}`: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The group expected.
        group: String,
        /// What is wrong.
        reason: String,
    },
}

/// Reads the snapshot persisted at `path` for `group`; `Ok(None)` when there is none.
pub fn read(path: &Path, group: &str) -> Result<Option<Persisted>, PersistError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PersistError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    let corrupt = |reason: &str| PersistError::Corrupt {
        path: path.to_owned(),
        group: group.to_owned(),
        reason: reason.to_owned(),
    };
    let (header, body) = text
        .split_once('\n')
        .ok_or_else(|| corrupt("no header line"))?;
    let fields = header
        .strip_prefix(HEADER)
        .ok_or_else(|| corrupt("the first line is not a floodgate snapshot header"))?;
    let mut found_group = None;
    let mut version = None;
    for field in fields.split_whitespace() {
        match field.split_once('=') {
            Some(("group", g)) => found_group = Some(g),
            Some(("version", v)) => version = v.parse::<u64>().ok(),
            _ => {}
        }
    }
    match (found_group, version) {
        (Some(g), Some(version)) if g == group => Ok(Some(Persisted {
            version,
            text: body.to_owned(),
        })),
        (Some(g), Some(_)) => Err(corrupt(&format!("it was written for group `{g}`"))),
        _ => Err(corrupt("the header lacks group= or version=")),
    }
}

/// Writes the snapshot atomically (temporary file, fsync, rename, directory fsync).
pub fn write(path: &Path, group: &str, version: u64, text: &str) -> Result<(), PersistError> {
    let io = |source| PersistError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "snapshot".to_owned());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        // The directory may not exist yet (e.g. a run folder): make it, as a
        // package manager would have.
        std::fs::create_dir_all(dir)?;
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{HEADER}group={group} version={version}")?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // The rename is durable once the directory is; some filesystems refuse to
        // open a directory for syncing, which is not worth failing over.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const CONFIG: &str = "# from the control plane\nlisteners: []\nclusters: []\n";

    #[test]
    fn write_then_read_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap.yaml");
        assert_eq!(read(&path, "edge").unwrap(), None);
        write(&path, "edge", 42, CONFIG).unwrap();
        let back = read(&path, "edge").unwrap().unwrap();
        assert_eq!(back.version, 42);
        assert_eq!(back.text, CONFIG);
        // A newer write replaces it, and leaves no temporary file behind.
        write(&path, "edge", 43, "listeners: []\n").unwrap();
        assert_eq!(read(&path, "edge").unwrap().unwrap().version, 43);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn the_file_starts_with_a_comment_so_it_is_a_config_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap.yaml");
        write(&path, "edge", 7, CONFIG).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# floodgate snapshot: group=edge version=7\n# from"));
    }

    #[test]
    fn corrupt_or_foreign_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap.yaml");
        std::fs::write(&path, "listeners: []\n").unwrap();
        assert!(matches!(
            read(&path, "edge"),
            Err(PersistError::Corrupt { .. })
        ));
        std::fs::write(&path, "# floodgate snapshot: group=edge version=x\n").unwrap();
        assert!(read(&path, "edge").is_err());
        write(&path, "other", 1, CONFIG).unwrap();
        let e = read(&path, "edge").unwrap_err().to_string();
        assert!(e.contains("`other`"), "{e}");
        std::fs::write(&path, "").unwrap();
        assert!(read(&path, "edge").is_err());
    }

    #[test]
    fn a_missing_directory_is_made_and_an_unwritable_one_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/snap.yaml");
        write(&path, "edge", 1, CONFIG).unwrap();
        assert!(read(&path, "edge").is_ok());
        // A file where the directory should be: nothing can be written.
        let blocked = dir.path().join("file");
        std::fs::write(&blocked, "").unwrap();
        assert!(matches!(
            write(&blocked.join("snap.yaml"), "edge", 1, CONFIG),
            Err(PersistError::Io { .. })
        ));
    }
}
