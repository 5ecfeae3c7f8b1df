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
