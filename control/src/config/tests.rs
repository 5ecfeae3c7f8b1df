use super::*;

const GOOD: &str = "
listen: 127.0.0.1:0
configs_dir: .
tokens:
  proxy: proxy-token-0123456789
  app: app-token-0123456789
  operator: operator-token-0123456789
registry: { default_ttl: 2s, max_ttl: 1m }
long_poll: { timeout: 10s, jitter: 1s }
";

#[test]
fn good_file_validates_with_defaults() {
    let c = parse_str(GOOD, "control.yaml", Path::new(".")).unwrap();
    assert_eq!(c.registry.default_ttl, Duration::from_secs(2));
    assert_eq!(c.registry.sweep_interval, DEFAULT_SWEEP);
    assert_eq!(c.long_poll.timeout, Duration::from_secs(10));
    assert_eq!(c.source_watch.debounce, DEFAULT_DEBOUNCE);
    assert_eq!(c.tokens.role_of(b"app-token-0123456789"), Some(Role::App));
    assert_eq!(c.tokens.role_of(b"nope"), None);
}

#[test]
fn every_error_is_reported_with_its_field() {
    let bad = "
listen: nowhere
configs_dir: /definitely/not/here
tokens:
  proxy: short
  app: same-token-0123456789
  operator: same-token-0123456789
registry: { default_ttl: 10m, max_ttl: 1m }
long_poll: { timeout: 5 }
";
    let e = parse_str(bad, "control.yaml", Path::new(".")).unwrap_err();
    let text = e.to_string();
    for needle in [
        "control.yaml: listen:",
        "configs_dir: /definitely/not/here is not a directory",
        "tokens.proxy: the token must be at least",
        "tokens.operator: must differ from tokens.app",
        "registry.default_ttl: must not be longer",
        "long_poll.timeout:",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
    assert!(!text.contains("same-token"), "a token leaked: {text}");
}

#[test]
fn unknown_fields_and_missing_tokens_are_errors() {
    let e = parse_str("configs_dir: .\nlisten_on: x\n", "c.yaml", Path::new(".")).unwrap_err();
    assert!(e.to_string().contains("listen_on"), "{e}");
    let e = parse_str("configs_dir: .\n", "c.yaml", Path::new(".")).unwrap_err();
    assert!(e.to_string().contains("tokens.proxy: required"), "{e}");
}

#[test]
fn autoscale_defaults_and_errors() {
    let text = format!(
        "{GOOD}autoscale:\n  healthcode: {{ target_concurrency_per_replica: 8, max_replicas: 4 }}\n  api: {{ target_rps_per_replica: 200 }}\n  plain: {{}}\n"
    );
    let c = parse_str(&text, "control.yaml", Path::new(".")).unwrap();
    let hc = &c.autoscale["healthcode"];
    assert_eq!(hc.target, Target::Concurrency(8.0));
    assert_eq!((hc.min_replicas, hc.max_replicas), (1, 4));
    assert_eq!(hc.stable_window, Duration::from_secs(60));
    assert_eq!(hc.panic_window, Duration::from_secs(6));
    assert_eq!(hc.scale_down_delay, Duration::from_secs(30));
    assert_eq!(hc.tick, Duration::from_millis(250));
    assert_eq!((hc.panic_threshold, hc.target_utilization), (2.0, 0.7));
    assert_eq!(
        (hc.max_scale_up_rate, hc.max_scale_down_rate),
        (1000.0, 2.0)
    );
    assert_eq!(c.autoscale["api"].target, Target::Rps(200.0));
    assert_eq!(c.autoscale["plain"].target, Target::Concurrency(100.0));
    assert_eq!(c.autoscale["plain"].max_replicas, 100);

    let bad = format!(
        "{GOOD}autoscale:\n  a: {{ target_concurrency_per_replica: 0, target_rps_per_replica: 5, \
         target_utilization: 1.5, min_replicas: 5, max_replicas: 2, panic_window: 2m, tick: 1s, \
         panic_threshold: 1, max_scale_down_rate: 0.5, stable_window: nope }}\n"
    );
    let text = parse_str(&bad, "control.yaml", Path::new("."))
        .unwrap_err()
        .to_string();
    for needle in [
        "autoscale.a.target_concurrency_per_replica",
        "autoscale.a.target_rps_per_replica: give either",
        "autoscale.a.target_utilization",
        "autoscale.a.min_replicas",
        "autoscale.a.panic_window",
        "autoscale.a.tick",
        "autoscale.a.panic_threshold",
        "autoscale.a.max_scale_down_rate",
        "autoscale.a.stable_window",
    ] {
        assert!(text.contains(needle), "{needle} missing in:\n{text}");
    }
    let unknown = format!("{GOOD}autoscale:\n  a: {{ target: 5 }}\n");
    assert!(parse_str(&unknown, "control.yaml", Path::new(".")).is_err());
}
