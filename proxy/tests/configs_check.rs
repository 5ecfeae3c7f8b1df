//! The shipped example configs (`configs/*.yaml`) pass validation, as `floodgate --check`
//! would run it, and certificate helpers produce material validation accepts.

#[path = "common/certs.rs"]
mod certs;

use std::path::{Path, PathBuf};

use floodgate::config::{load_file, Backend, HostMatch};

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

fn load(name: &str) -> floodgate::config::Config {
    let path = configs_dir().join(name);
    load_file(&path).unwrap_or_else(|e| panic!("{name} must validate:\n{e}"))
}

#[test]
fn gateway_config_is_valid() {
    let c = load("gateway.yaml");
    let https = &c.listeners[0];
    let tls = https.tls.as_ref().expect("TLS listener");
    assert_eq!(tls.certs.len(), 2);
    assert_eq!(
        tls.certs[1].sni,
        ["*.status.example.gov", "status.example.gov"]
    );
    // The certificates load into a real rustls server config.
    floodgate::tls::server_config(tls).expect("server config from shipped certs");
    assert!(https.routes.iter().any(|r| matches!(
        &r.backend,
        Backend::Weighted(arms) if arms.len() == 2 && arms[0].weight == 90 && arms[1].weight == 10
    )));
    assert!(https.routes.iter().any(|r| r.rewrite_prefix.is_some()));
    assert!(https
        .routes
        .iter()
        .any(|r| r.matcher.host == Some(HostMatch::Suffix(".status.example.gov".into()))));
    assert_eq!(c.listeners[1].listen.port(), 8080);
    assert!(c
        .clusters
        .iter()
        .all(|cl| cl.health_check.is_some() && cl.outlier.is_some()));
}

#[test]
fn sidecar_config_is_valid() {
    let c = load("sidecar.yaml");
    let names: Vec<&str> = c.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["inbound", "outbound"]);
    assert_eq!(c.listeners[0].listen.port(), 15006);
    assert_eq!(c.listeners[1].listen, "127.0.0.1:15001".parse().unwrap());
    assert_eq!(
        c.listeners[1].routes[0].matcher.host,
        Some(HostMatch::Exact("audit.svc".into()))
    );
}

#[test]
fn demo_config_is_valid() {
    let c = load("demo.yaml");
    assert_eq!(c.admin.listen, "127.0.0.1:9901".parse().unwrap());
    let cluster = c.cluster("healthcode").expect("healthcode cluster");
    let eps: Vec<String> = cluster.endpoints.iter().map(|e| e.to_string()).collect();
    assert_eq!(eps, ["127.0.0.1:9001", "127.0.0.1:9002"]);
    let hc = cluster.health_check.as_ref().expect("health check");
    assert_eq!(hc.path, "/healthz");
    assert_eq!(hc.interval, std::time::Duration::from_secs(1));
    let route = &c.listeners[0].routes[0];
    assert_eq!(route.timeout, Some(std::time::Duration::from_secs(2)));
    assert!(route.retry.as_ref().expect("retry").on.connect_failure);
}

#[test]
fn every_shipped_yaml_validates() {
    let mut checked = 0;
    for entry in std::fs::read_dir(configs_dir()).expect("configs/") {
        let path = entry.expect("entry").path();
        // control*.yaml belong to the control plane (control/tests/contract.rs);
        // bootstrap-*.yaml read their token from the environment (next test).
        let is_proxy_yaml = path.extension().is_some_and(|e| e == "yaml")
            && path.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                !n.starts_with("control") && !n.starts_with("bootstrap-")
            });
        if is_proxy_yaml {
            if let Err(e) = load_file(&path) {
                panic!("{} must validate:\n{e}", path.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 3);
}

/// Every `bootstrap-*.yaml` validates (its `env:` token given as a literal), names a
/// group the shipped control plane serves, and combines with that group's config.
#[test]
fn bootstrap_configs_are_valid_and_name_a_shipped_group() {
    let mut checked = 0;
    for entry in std::fs::read_dir(configs_dir()).expect("configs/") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if !(name.starts_with("bootstrap-") && name.ends_with(".yaml")) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let text = text.replace("env:FLOODGATE_PROXY_TOKEN", "demo-proxy-token-change-me");
        let c = floodgate::config::parse_str(&text, &name, &configs_dir())
            .unwrap_or_else(|e| panic!("{name} must validate:\n{e}"));
        let cp = c.control_plane.clone().expect("a control_plane block");
        assert_eq!(
            cp.url, "http://127.0.0.1:7070",
            "{name}: the demo control plane"
        );
        assert!(
            c.listeners.is_empty(),
            "{name}: listeners come from the control plane"
        );
        let group = configs_dir().join(format!("control/{}.yaml", cp.group));
        let group_text = std::fs::read_to_string(&group)
            .unwrap_or_else(|e| panic!("{name}: group file {}: {e}", group.display()));
        let boot = floodgate::control_client::Bootstrap::new(c.clone(), &configs_dir())
            .expect("bootstrap");
        let combined = boot
            .combine(&group_text, "control-plane")
            .unwrap_or_else(|e| panic!("{name} + {}: {e}", group.display()));
        assert_eq!(combined.admin, c.admin);
        assert_eq!(combined.control_plane, c.control_plane);
        assert!(!combined.listeners.is_empty());
        checked += 1;
    }
    assert!(checked >= 1);
}

#[test]
fn test_ca_material_validates_as_mtls_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = certs::TestCa::new();
    ca.write_to(dir.path());
    certs::write_pair(dir.path(), "server", &ca.issue(&["localhost", "127.0.0.1"]));
    certs::write_pair(dir.path(), "client", &ca.issue_client("floodgate"));
    let config = "
listeners:
  - name: tls
    listen: 127.0.0.1:0
    tls: {certs: [{cert: server.crt, key: server.key, sni: [localhost]}]}
    routes: [{name: all, cluster: app}]
clusters:
  - name: app
    endpoints: [127.0.0.1:1]
    upstream_tls: {ca: ca.pem, sni: localhost, client_cert: client.crt, client_key: client.key}
";
    let path = dir.path().join("floodgate.yaml");
    std::fs::write(&path, config).expect("write config");
    let c = load_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let up = c.clusters[0].upstream_tls.as_ref().expect("upstream tls");
    floodgate::tls::client_config(up, false).expect("client config");
}

/// The load-test kit's Floodgate templates validate once their placeholders are filled
/// the way `loadtest/scripts/stack.sh` fills them.
#[test]
fn loadtest_templates_are_valid() {
    let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("../loadtest/peers");
    for name in ["floodgate-burst.yaml", "floodgate-protected.yaml"] {
        let text = std::fs::read_to_string(peers.join(name)).unwrap();
        let rendered = text
            .replace("${ADMIN_PORT}", "19901")
            .replace("${PROXY_PORT}", "18080")
            .replace(
                "${APP_ENDPOINTS}",
                "\"127.0.0.1:19001\", \"127.0.0.1:19002\"",
            );
        floodgate::config::parse_str(&rendered, name, &peers)
            .unwrap_or_else(|e| panic!("{name} must validate:\n{e}"));
    }
}
