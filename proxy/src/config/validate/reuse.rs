//! Validated routes taken again (#18): a validation keeps the file form of every route
//! beside the runtime form it produced ([`Validated`]), so that validating the next text
//! takes each route whose file form is unchanged as it was, instead of validating it
//! again.
//!
//! A route's validation reads only its own file form, the names of the clusters it may
//! refer to and which of them are in burst mode. When those names and that set are the
//! same as last time, an equal file form validates to an equal runtime form without an
//! error, so it is taken as it is. Everything else is validated in full, and the checks
//! across routes (route names unique in a listener, global limit names unique in the
//! config) always run over every route, so a text is refused exactly when a validation
//! from scratch refuses it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::file::{FileConfig, FileRoute};
use crate::config::{Config, RouteConfig};

/// A validated config and the file form it was validated from, for
/// [`crate::config::parse_str_reusing`].
#[derive(Debug, Clone)]
pub struct Validated {
    /// The runtime config.
    pub config: Config,
    /// The file form.
    file: FileConfig,
    /// The cluster names the routes were validated with.
    clusters: Vec<String>,
    /// The clusters in burst mode the routes were validated with.
    bursting: Vec<String>,
}

impl Validated {
    /// Keeps `file` as validated into `config` with the cluster names `clusters` and
    /// the bursting set `bursting`.
    pub(super) fn new(
        config: Config,
        file: FileConfig,
        clusters: Vec<String>,
        bursting: Vec<String>,
    ) -> Self {
        Self {
            config,
            file,
            clusters,
            bursting,
        }
    }

    /// The runtime config, without the file form.
    pub fn into_config(self) -> Config {
        self.config
    }

    /// The file form the config was validated from.
    pub fn file(&self) -> &FileConfig {
        &self.file
    }
}

/// A route's file form and the runtime form it was validated into.
type Taken<'a> = (&'a Arc<FileRoute>, &'a Arc<RouteConfig>);

/// A previous validation's routes by listener name and route name.
pub(super) struct Reuse<'a> {
    by_listener: HashMap<&'a str, foldhash::HashMap<&'a str, Taken<'a>>>,
}

impl<'a> Reuse<'a> {
    /// `None` when the cluster names or the bursting set differ from `previous`'s:
    /// a route's validation may then come out differently.
    pub(super) fn new(
        previous: &'a Validated,
        clusters: &[&str],
        bursting: &[String],
    ) -> Option<Self> {
        let same_clusters = previous.clusters.len() == clusters.len()
            && previous.clusters.iter().zip(clusters).all(|(a, b)| a == b);
        if !same_clusters || previous.bursting != bursting {
            return None;
        }
        // A validated config has one listener per file listener and one route per file
        // route, in file order.
        let by_listener = previous
            .config
            .listeners
            .iter()
            .zip(&previous.file.listeners)
            .map(|(l, file)| {
                let routes = file
                    .routes
                    .iter()
                    .zip(&l.routes)
                    .map(|(f, r)| (f.name.as_str(), (f, r)))
                    .collect();
                (l.name.as_str(), routes)
            })
            .collect();
        Some(Self { by_listener })
    }

    /// The runtime form validated for `route` of listener `listener` last time, if its
    /// file form is unchanged.
    pub(super) fn route(
        &self,
        listener: &str,
        route: &Arc<FileRoute>,
    ) -> Option<&'a Arc<RouteConfig>> {
        let (file, config) = self.by_listener.get(listener)?.get(route.name.as_str())?;
        // The very item of the previous parse (a cached one) needs no comparison.
        (Arc::ptr_eq(file, route) || *file == route).then_some(*config)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{parse_str, parse_str_reusing};

    fn text(routes: &str, clusters: &str) -> String {
        format!("listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    routes:\n{routes}clusters:\n{clusters}")
    }

    const APP: &str = "  - name: app\n    endpoints: [\"127.0.0.1:1\"]\n";
    const ROUTES: &str = "      - { name: a, match: { host: a.example }, cluster: app }\n      - { name: b, match: { path_prefix: /b/ }, cluster: app, rate_limit: { rps: 5 } }\n";

    #[test]
    fn the_result_equals_a_validation_from_scratch() {
        let first = parse_str_reusing(&text(ROUTES, APP), "t", Path::new("."), None).unwrap();
        let changed = ROUTES.replace("/b/", "/c/") + "      - { name: d, cluster: app }\n";
        let next = text(&changed, APP);
        let reused = parse_str_reusing(&next, "t", Path::new("."), Some(&first)).unwrap();
        assert_eq!(
            reused.config,
            parse_str(&next, "t", Path::new(".")).unwrap()
        );
    }

    #[test]
    fn an_unchanged_route_is_still_checked_against_the_others() {
        let first = parse_str_reusing(&text(ROUTES, APP), "t", Path::new("."), None).unwrap();
        let twice = ROUTES.to_owned() + "      - { name: a, cluster: app }\n";
        let errors = parse_str_reusing(&text(&twice, APP), "t", Path::new("."), Some(&first))
            .unwrap_err()
            .to_string();
        assert!(errors.contains("duplicate route name `a`"), "{errors}");
    }

    #[test]
    fn a_cluster_gone_refuses_the_unchanged_routes_that_name_it() {
        let two = APP.to_owned() + "  - name: other\n    endpoints: [\"127.0.0.1:2\"]\n";
        let routes = ROUTES.replace(
            "name: b, match: { path_prefix: /b/ }, cluster: app",
            "name: b, cluster: other",
        );
        let first = parse_str_reusing(&text(&routes, &two), "t", Path::new("."), None).unwrap();
        let errors =
            parse_str_reusing(&text(&routes, APP), "t", Path::new("."), Some(&first)).unwrap_err();
        let e = &errors.errors[0];
        assert_eq!(e.path, "listeners[0].routes[1].cluster", "{errors}");
        assert!(e.reason.contains("other"), "{errors}");
    }

    #[test]
    fn burst_mode_turned_on_takes_effect_on_unchanged_routes() {
        let routes = "      - { name: a, cluster: app, rate_limit: { rps: 5 }, burst: { rate_limit: { rps: 50 } } }\n";
        let first = parse_str_reusing(&text(routes, APP), "t", Path::new("."), None).unwrap();
        let bursting = APP.to_owned() + "    burst_mode: true\n";
        let next =
            parse_str_reusing(&text(routes, &bursting), "t", Path::new("."), Some(&first)).unwrap();
        let route = &next.config.listeners[0].routes[0];
        assert!(route.burst_active);
        let rate = route.rate_limit.as_ref().and_then(|r| r.route.as_ref());
        assert_eq!(rate.map(|r| r.rps), Some(50));
    }
}
