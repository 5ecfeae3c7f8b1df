//! Building a group's snapshot: the group's proxy config with the registry's
//! endpoints merged into the clusters of the same name, re-validated with the
//! proxy's own validator before anything is published.
//!
//! Merging edits the parsed YAML value tree, not the proxy's file types, so the
//! proxy's `floodgate::config::parse_str` stays the one judge of what is valid:
//! whatever we render is parsed and validated exactly as a proxy will.
//!
//! Registered endpoints are **appended** to a cluster's file endpoints (an address
//! already listed in the file is not repeated): the file's endpoints are the
//! static floor that is always there, the registry adds the elastic part.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use floodgate::config::{Config, ConfigErrors};
use serde_norway::Value;

/// Registered addresses per cluster name, each list sorted.
pub type Additions = BTreeMap<String, Vec<String>>;

/// The cluster names a validated config defines.
pub fn cluster_names(config: &Config) -> Vec<String> {
    config.clusters.iter().map(|c| c.name.clone()).collect()
}

/// Merges `additions` into the config text of `group`; the text is returned
/// unchanged (comments and all) when no cluster of it has registered endpoints.
pub fn merge<'a>(
    text: &'a str,
    group: &str,
    additions: &Additions,
) -> Result<Cow<'a, str>, String> {
    if additions.values().all(Vec::is_empty) {
        return Ok(Cow::Borrowed(text));
    }
    let mut doc: Value = serde_norway::from_str(text).map_err(|e| format!("cannot parse: {e}"))?;
    let mut changed = false;
    if let Some(Value::Sequence(clusters)) = doc.get_mut("clusters") {
        for cluster in clusters.iter_mut() {
            let Some(name) = cluster
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_owned)
            else {
                continue;
            };
            let Some(extra) = additions.get(&name) else {
                continue;
            };
            let Some(Value::Sequence(endpoints)) = cluster.get_mut("endpoints") else {
                continue;
            };
            for address in extra {
                let listed = endpoints
                    .iter()
                    .any(|e| e.as_str() == Some(address.as_str()));
                if !listed {
                    endpoints.push(Value::String(address.clone()));
                    changed = true;
                }
            }
        }
    }
    if !changed {
        return Ok(Cow::Borrowed(text));
    }
    let body = serde_norway::to_string(&doc).map_err(|e| format!("cannot render: {e}"))?;
    Ok(Cow::Owned(format!(
        "# floodgate-control: group `{group}`, registered endpoints merged in\n{body}"
    )))
}

/// Validates snapshot text exactly as a proxy will.
pub fn validate(text: &str, source: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
    floodgate::config::parse_str(text, source, base_dir)
}

/// Whether `address` is an endpoint the proxy accepts, asked of the proxy's validator
/// (a one-cluster config around it), so one bad registration cannot make a group's
/// merged config invalid.
pub fn check_address(address: &str) -> Result<(), String> {
    let quoted = serde_json::to_string(address).map_err(|e| e.to_string())?;
    let probe = format!(
        "listeners: [{{name: l, listen: \"127.0.0.1:0\", routes: [{{name: r, cluster: c}}]}}]\n\
         clusters: [{{name: c, endpoints: [{quoted}]}}]\n"
    );
    match floodgate::config::parse_str(&probe, "address", Path::new(".")) {
        Ok(_) => Ok(()),
        Err(errors) => Err(errors
            .errors
            .iter()
            .map(|e| e.reason.clone())
            .collect::<Vec<_>>()
            .join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "# a comment
listeners:
  - name: web
    listen: 127.0.0.1:0
    routes: [ { name: all, cluster: app } ]
clusters:
  - name: app
    endpoints: [127.0.0.1:9001]
  - name: other
    endpoints: [127.0.0.1:9100]
";

    #[test]
    fn no_additions_keep_the_text() {
        let out = merge(BASE, "g", &Additions::new()).unwrap();
        assert!(matches!(out, Cow::Borrowed(_)));
    }

    #[test]
    fn additions_are_appended_once_and_validate() {
        let mut add = Additions::new();
        add.insert(
            "app".into(),
            vec!["127.0.0.1:9001".into(), "127.0.0.1:9002".into()],
        );
        add.insert("unknown".into(), vec!["127.0.0.1:1".into()]);
        let out = merge(BASE, "g", &add).unwrap();
        let config = validate(&out, "g", Path::new(".")).unwrap();
        let app = config.cluster("app").unwrap();
        assert_eq!(app.endpoints.len(), 2);
        assert_eq!(config.cluster("other").unwrap().endpoints.len(), 1);
    }

    #[test]
    fn addresses_are_checked_by_the_proxy_validator() {
        assert!(check_address("127.0.0.1:9001").is_ok());
        assert!(check_address("app.svc:80").is_ok());
        assert!(check_address("no-port").is_err());
        assert!(check_address("1.2.3.4:99999").is_err());
        assert!(check_address("\"]: evil").is_err());
    }
}
