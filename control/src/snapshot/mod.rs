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
use std::collections::{BTreeMap, BTreeSet};
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
    merge_with_burst(text, group, additions, &BTreeSet::new())
}

/// [`merge`], and `burst_mode: true` set on every cluster of `bursting` (the
/// clusters whose autoscaler is in panic), so the routes' `burst:` overrides reach
/// the proxies through the same validated push. A cluster not in `bursting` keeps
/// what its file says (an operator may set `burst_mode` by hand).
pub fn merge_with_burst<'a>(
    text: &'a str,
    group: &str,
    additions: &Additions,
    bursting: &BTreeSet<String>,
) -> Result<Cow<'a, str>, String> {
    if additions.values().all(Vec::is_empty) && bursting.is_empty() {
        return Ok(Cow::Borrowed(text));
    }
    let mut doc: Value = serde_norway::from_str(text).map_err(|e| format!("cannot parse: {e}"))?;
    let mut changed = false;
    let mut burst = false;
    if let Some(Value::Sequence(clusters)) = doc.get_mut("clusters") {
        for cluster in clusters.iter_mut() {
            let Some(name) = cluster
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_owned)
            else {
                continue;
            };
            if bursting.contains(&name) {
                if let Value::Mapping(m) = cluster {
                    let key = Value::String("burst_mode".to_owned());
                    if m.get(&key) != Some(&Value::Bool(true)) {
                        m.insert(key, Value::Bool(true));
                        changed = true;
                        burst = true;
                    }
                }
            }
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
    let what = if burst {
        "registered endpoints and burst mode merged in"
    } else {
        "registered endpoints merged in"
    };
    Ok(Cow::Owned(format!(
        "# floodgate-control: group `{group}`, {what}\n{body}"
    )))
}

/// Validates snapshot text exactly as a proxy will.
pub fn validate(text: &str, source: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
    floodgate::config::parse_str(text, source, base_dir)
}

/// [`validate`], taking the routes of `previous` whose file form is unchanged as they
/// were validated: the proxy's own function (the same result and errors as a validation
/// from scratch).
pub use floodgate::config::parse_str_reusing as validate_reusing;

/// [`validate_reusing`] with the text parsed through a [`floodgate::config::ParseCache`]
/// (only the route items whose text changed since the cache's last parse are parsed
/// again): the proxy's own function.
pub use floodgate::config::parse_str_cached as validate_cached;

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

    #[test]
    fn burst_mode_is_set_on_the_bursting_clusters_only() {
        let text =
            "listeners: [{name: l, listen: \"127.0.0.1:0\", routes: [{name: r, cluster: app}]}]\n\
                    clusters:\n  - name: app\n    endpoints: [\"127.0.0.1:1\"]\n\
                    \x20 - name: other\n    endpoints: [\"127.0.0.1:2\"]\n";
        let none = merge_with_burst(text, "g", &Additions::new(), &BTreeSet::new()).unwrap();
        assert!(matches!(none, Cow::Borrowed(_)));
        let set = BTreeSet::from(["app".to_owned()]);
        let out = merge_with_burst(text, "g", &Additions::new(), &set).unwrap();
        assert!(
            out.starts_with("# floodgate-control: group `g`, registered endpoints and burst mode")
        );
        let config = validate(&out, "merged", Path::new(".")).unwrap();
        assert_eq!(config.clusters.len(), 2);
        let doc: Value = serde_norway::from_str(&out).unwrap();
        assert_eq!(doc["clusters"][0]["burst_mode"], Value::Bool(true));
        assert!(doc["clusters"][1].get("burst_mode").is_none());
    }
}
