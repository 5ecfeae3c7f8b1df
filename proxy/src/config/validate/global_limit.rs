//! Validation of `routes[].global_rate_limit`: the cluster-wide limit that the
//! control plane splits among the proxies (`docs/config.md`, "Cluster-wide rate limit").

use std::collections::HashMap;

use super::Validator;
use crate::config::file::{FileGlobalRateLimit, FileListener};
use crate::config::GlobalRateLimitConfig;

impl Validator<'_> {
    /// `global_rate_limit`: `rps` > 0, `burst` ≥ 1 (default `rps`), `fallback_rps`
    /// required, at most `rps` (one proxy alone never gets more than all of them).
    pub(super) fn global_rate_limit(
        &mut self,
        path: &str,
        g: &FileGlobalRateLimit,
    ) -> Option<GlobalRateLimitConfig> {
        let mut ok = true;
        if g.rps == 0 {
            self.err(format!("{path}.rps"), "must be greater than 0");
            ok = false;
        }
        let burst = g.burst.unwrap_or(g.rps);
        if burst == 0 {
            self.err(format!("{path}.burst"), "must be at least 1");
            ok = false;
        }
        if g.fallback_rps > g.rps {
            self.err(
                format!("{path}.fallback_rps"),
                format!(
                    "must be at most `rps` ({}): it is what ONE proxy allows without a lease",
                    g.rps
                ),
            );
            ok = false;
        }
        ok.then_some(GlobalRateLimitConfig {
            rps: g.rps,
            burst,
            fallback_rps: g.fallback_rps,
        })
    }

    /// The control plane keys a global limit by route name, so two routes with one
    /// in the same config (in different listeners) must not share a name.
    pub(super) fn global_limit_names(&mut self, listeners: &[FileListener]) {
        let mut seen: HashMap<&str, String> = HashMap::new();
        for (i, l) in listeners.iter().enumerate() {
            for (j, r) in l.routes.iter().enumerate() {
                if r.global_rate_limit.is_none() {
                    continue;
                }
                let path = format!("listeners[{i}].routes[{j}]");
                if let Some(first) = seen.get(r.name.as_str()) {
                    self.err(
                        format!("{path}.name"),
                        format!(
                            "`{}` also names {first}, which has a global_rate_limit too: \
                             the control plane shares a limit by route name",
                            r.name
                        ),
                    );
                } else {
                    seen.insert(&r.name, path);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse_str;

    fn parse(routes: &str) -> Result<crate::config::Config, String> {
        let text = format!(
            "listeners:\n{routes}clusters:\n  - name: app\n    endpoints: [\"127.0.0.1:1\"]\n"
        );
        parse_str(&text, "t.yaml", std::path::Path::new(".")).map_err(|e| e.to_string())
    }

    fn listener(name: &str, port: u16, limit: &str) -> String {
        format!(
            "  - name: {name}\n    listen: 127.0.0.1:{port}\n    routes:\n      - name: codes\n        cluster: app\n        global_rate_limit: {limit}\n"
        )
    }

    #[test]
    fn defaults_and_values() {
        let c = parse(&listener("web", 0, "{ rps: 300, fallback_rps: 50 }")).unwrap();
        let g = c.listeners[0].routes[0].global_rate_limit.unwrap();
        assert_eq!((g.rps, g.burst, g.fallback_rps), (300, 300, 50));
        let c = parse(&listener(
            "web",
            0,
            "{ rps: 300, burst: 30, fallback_rps: 0 }",
        ))
        .unwrap();
        let g = c.listeners[0].routes[0].global_rate_limit.unwrap();
        assert_eq!((g.burst, g.fallback_rps), (30, 0));
    }

    #[test]
    fn bad_values_are_reported_together() {
        let e = parse(&listener("web", 0, "{ rps: 0, burst: 0, fallback_rps: 5 }")).unwrap_err();
        assert!(
            e.contains("global_rate_limit.rps: must be greater than 0"),
            "{e}"
        );
        assert!(
            e.contains("global_rate_limit.burst: must be at least 1"),
            "{e}"
        );
        assert!(
            e.contains("global_rate_limit.fallback_rps: must be at most"),
            "{e}"
        );
        let e = parse(&listener("web", 0, "{ rps: 10 }")).unwrap_err();
        assert!(e.contains("fallback_rps"), "{e}");
    }

    #[test]
    fn names_are_unique_across_listeners() {
        let two = format!(
            "{}{}",
            listener("a", 0, "{ rps: 10, fallback_rps: 1 }"),
            listener("b", 0, "{ rps: 10, fallback_rps: 1 }")
        );
        let e = parse(&two).unwrap_err();
        assert!(e.contains("listeners[1].routes[0].name"), "{e}");
    }
}
