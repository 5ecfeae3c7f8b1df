//! The config directory: one proxy config per node group (`<group>.yaml` or
//! `.yml`; hidden files skipped, symlinks followed, so a Kubernetes ConfigMap
//! mount works). The plane (`crate::plane`) reads it with [`scan`] and watches it
//! with the proxy's own `ConfigWatcher`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One group file as read.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Its path.
    pub path: PathBuf,
    /// Its text, or why it could not be read.
    pub text: Result<Arc<str>, String>,
}

/// Reads every group file of `dir`, keyed by group name (the file stem).
pub fn scan(dir: &Path) -> std::io::Result<BTreeMap<String, SourceFile>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().as_encoded_bytes().starts_with(b"."))
        .map(|e| e.path())
        .filter(|p| {
            matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
                && std::fs::metadata(p).is_ok_and(|m| m.is_file())
        })
        .collect();
    entries.sort();
    let mut groups = BTreeMap::new();
    for path in entries {
        let Some(group) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
            continue;
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => Ok(Arc::from(t)),
            Err(e) => Err(format!("{}: cannot read file: {e}", path.display())),
        };
        if let Some(first) = groups.get(&group).map(|f: &SourceFile| f.path.clone()) {
            // `a.yaml` and `a.yml`: refuse both rather than pick one silently.
            let reason = format!(
                "{}: group `{group}` is defined twice ({} and {})",
                path.display(),
                first.display(),
                path.display()
            );
            groups.insert(
                group,
                SourceFile {
                    path,
                    text: Err(reason),
                },
            );
            continue;
        }
        groups.insert(group, SourceFile { path, text });
    }
    Ok(groups)
}
