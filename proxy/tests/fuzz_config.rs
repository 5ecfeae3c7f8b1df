//! Fuzzing the config parser and validator on the stable toolchain (proptest,
//! bounded cases): mutated copies of the shipped `configs/*.yaml` and YAML-ish
//! documents built from the config's own vocabulary never panic, and every error
//! says where it is: a field path, or for a document that is not YAML at all, a line.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use floodgate::config::{parse_str, ConfigErrors};
use proptest::prelude::*;

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

/// The shipped configs' text (the control plane's and the bootstrap too: parsing
/// them as proxy configs must fail cleanly).
fn shipped() -> &'static [(String, String)] {
    static FILES: OnceLock<Vec<(String, String)>> = OnceLock::new();
    FILES.get_or_init(|| {
        let mut files: Vec<(String, String)> = std::fs::read_dir(configs_dir())
            .unwrap()
            .filter_map(|e| {
                let path = e.ok()?.path();
                (path.extension()? == "yaml").then_some(path)
            })
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&p).unwrap())
            })
            .collect();
        files.sort();
        assert!(files.len() >= 3, "configs/*.yaml not found");
        files
    })
}

/// Every error names a field path or, for a whole-document error, a line (or is
/// the one "the config is empty" message, which has neither and needs neither).
fn check_errors(errors: &ConfigErrors, text: &str) -> Result<(), TestCaseError> {
    prop_assert!(!errors.errors.is_empty());
    for e in &errors.errors {
        prop_assert!(
            !e.reason.trim().is_empty(),
            "an error without a reason: {e:?}"
        );
        let placed =
            !e.path.is_empty() || e.line.is_some() || e.reason.contains("the config is empty");
        prop_assert!(
            placed,
            "error with neither field path nor line: {e:?}\n--- config ---\n{text}"
        );
    }
    Ok(())
}

fn parse(text: &str) -> Result<(), TestCaseError> {
    match parse_str(text, "fuzz.yaml", &configs_dir()) {
        Ok(_) => Ok(()),
        Err(errors) => check_errors(&errors, text),
    }
}

/// Values that break types, units, ranges and YAML itself.
const VALUES: &[&str] = &[
    "0",
    "-1",
    "1",
    "",
    "~",
    "null",
    "[]",
    "{}",
    "1e400",
    "99999999999999999999",
    "\"\"",
    "x",
    "0s",
    "1 furlong",
    "-5s",
    "1.5",
    "128KiB",
    "10EiB",
    "true",
    "!!binary AAAA",
    "&a",
    "*a",
    "'",
    "\"",
    "[",
    "{",
    "\t",
    "é",
    "127.0.0.1:0",
    "0.0.0.0:8080",
    "[::1]:0",
    "localhost:1",
    "/",
    "*",
    "*.",
    "GET",
    "get",
    "h2",
    "http/1.1",
    "https://x",
    "4294967296",
    "18446744073709551616",
];

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    SetValue(usize, &'static str),
    Indent(usize, bool),
    Truncate(usize),
    InsertLine(usize, &'static str),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let i = any::<prop::sample::Index>();
    prop_oneof![
        i.clone()
            .prop_map(|i| Mutation::Delete(i.index(usize::MAX))),
        i.clone()
            .prop_map(|i| Mutation::Duplicate(i.index(usize::MAX))),
        (i.clone(), any::<prop::sample::Index>())
            .prop_map(|(a, b)| Mutation::Swap(a.index(usize::MAX), b.index(usize::MAX))),
        (i.clone(), prop::sample::select(VALUES))
            .prop_map(|(i, v)| Mutation::SetValue(i.index(usize::MAX), v)),
        (i.clone(), any::<bool>()).prop_map(|(i, d)| Mutation::Indent(i.index(usize::MAX), d)),
        i.clone()
            .prop_map(|i| Mutation::Truncate(i.index(usize::MAX))),
        (
            i,
            prop::sample::select(&["    bogus: 1", "  - name: x", "limits: {}", "- 1", "? x"][..])
        )
            .prop_map(|(i, l)| Mutation::InsertLine(i.index(usize::MAX), l)),
    ]
}

fn apply(text: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for m in mutations {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match *m {
            Mutation::Delete(i) => {
                lines.remove(i % n);
            }
            Mutation::Duplicate(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Mutation::Swap(a, b) => lines.swap(a % n, b % n),
            Mutation::SetValue(i, v) => {
                let l = &mut lines[i % n];
                if let Some(colon) = l.find(": ") {
                    l.truncate(colon + 2);
                    l.push_str(v);
                } else if let Some(dash) = l.find("- ") {
                    l.truncate(dash + 2);
                    l.push_str(v);
                }
            }
            Mutation::Indent(i, deeper) => {
                let l = &mut lines[i % n];
                if deeper {
                    l.insert_str(0, "  ");
                } else if l.starts_with("  ") {
                    l.replace_range(..2, "");
                }
            }
            Mutation::Truncate(i) => lines.truncate(i % n),
            Mutation::InsertLine(i, l) => lines.insert(i % n, l.to_owned()),
        }
    }
    lines.join("\n")
}

/// Keys of the config (so that generated documents reach the validator, not only serde).
const KEYS: &[&str] = &[
    "listeners",
    "clusters",
    "admin",
    "server",
    "name",
    "listen",
    "routes",
    "match",
    "path_prefix",
    "path",
    "host",
    "method",
    "headers",
    "cluster",
    "endpoints",
    "limits",
    "max_connections",
    "max_concurrent_streams",
    "premature_reset_total_stream_count",
    "premature_reset_min_stream_lifetime",
    "timeout",
    "retry",
    "attempts",
    "on",
    "circuit_breaker",
    "max_pending_requests",
    "admission",
    "enabled",
    "rate_limit",
    "cache",
    "ttl",
    "tls",
    "certs",
    "weighted",
    "weight",
    "health_check",
    "outlier",
    "connect_timeout",
    "protocol",
    "priority",
    "burst",
    "drain_timeout",
    "access_log",
    "idle_timeout",
];

/// A YAML-ish value in flow style, nested a few levels.
fn value() -> impl Strategy<Value = String> {
    let leaf = prop::sample::select(VALUES).prop_map(str::to_owned);
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..4).prop_map(|kv| {
                let body: Vec<String> = kv.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{{{}}}", body.join(", "))
            }),
        ]
    })
}

fn document() -> impl Strategy<Value = String> {
    prop::collection::vec((prop::sample::select(KEYS), value()), 0..5).prop_map(|kv| {
        kv.iter()
            .map(|(k, v)| format!("{k}: {v}\n"))
            .collect::<String>()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn mutated_shipped_configs_never_panic_and_errors_are_placed(
        file in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let (_, text) = &shipped()[file.index(shipped().len())];
        parse(&apply(text, &mutations))?;
    }

    #[test]
    fn yaml_ish_documents_never_panic_and_errors_are_placed(doc in document()) {
        parse(&doc)?;
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,200}") {
        parse(&text)?;
    }
}

#[test]
fn the_shipped_proxy_configs_are_valid_unmutated() {
    // The baseline the mutations start from (control-plane configs are not proxy configs).
    for (name, text) in shipped() {
        if name.starts_with("control") || name.starts_with("bootstrap") {
            continue;
        }
        if let Err(e) = parse_str(text, name, &configs_dir()) {
            panic!("{name}: {e}");
        }
    }
}
