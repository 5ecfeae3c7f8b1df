//! Load profiles (constant, step, ramp, spike) and the scenario YAML file.
//!
//! Every profile compiles to a list of [`Segment`]s: a rate that moves linearly from
//! `from_rps` to `to_rps` over `duration` (equal rates make a flat segment). The
//! [`schedule`](crate::schedule) turns segments into intended send instants.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::{serde_human, serde_human_opt};

/// Why a profile or scenario was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The scenario file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The scenario file is not valid YAML for this format.
    #[error("invalid scenario {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The YAML error.
        source: serde_norway::Error,
    },
    /// A value is out of range.
    #[error("invalid profile: {0}")]
    Invalid(String),
}

/// One piece of a profile: the rate moves linearly from `from_rps` to `to_rps`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Requests per second at the start of the segment.
    pub from_rps: f64,
    /// Requests per second at the end of the segment.
    pub to_rps: f64,
    /// How long the segment lasts.
    #[serde(with = "serde_human")]
    pub duration: Duration,
}

impl Segment {
    /// A flat segment at `rps` for `duration`.
    pub fn flat(rps: f64, duration: Duration) -> Self {
        Self {
            from_rps: rps,
            to_rps: rps,
            duration,
        }
    }

    /// The number of requests this segment schedules (the integral of its rate).
    pub fn area(&self) -> f64 {
        (self.from_rps + self.to_rps) / 2.0 * self.duration.as_secs_f64()
    }
}

/// One stage of a step profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Requests per second during this stage.
    pub rate: f64,
    /// How long the stage lasts.
    #[serde(with = "serde_human")]
    pub duration: Duration,
}

/// A load profile as a user writes it (flags or the `profile:` block of a scenario).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProfileSpec {
    /// A constant rate.
    Constant {
        /// Requests per second.
        rate: f64,
        /// How long.
        #[serde(with = "serde_human")]
        duration: Duration,
    },
    /// A sequence of flat stages.
    Step {
        /// The stages, in order.
        steps: Vec<Step>,
    },
    /// A linear ramp from one rate to another.
    Ramp {
        /// Starting requests per second.
        from: f64,
        /// Final requests per second.
        to: f64,
        /// How long the ramp lasts.
        #[serde(with = "serde_human")]
        duration: Duration,
    },
    /// Baseline, then `multiplier` × baseline, then baseline again.
    Spike {
        /// Baseline requests per second.
        baseline: f64,
        /// The spike's rate as a multiple of the baseline (e.g. 100).
        multiplier: f64,
        /// Baseline time before the spike.
        #[serde(with = "serde_human")]
        before: Duration,
        /// Length of the spike.
        #[serde(with = "serde_human")]
        spike: Duration,
        /// Baseline time after the spike.
        #[serde(with = "serde_human")]
        after: Duration,
    },
}

/// Upper bounds that keep a profile sane (and every run bounded).
const MAX_RATE: f64 = 1_000_000.0;
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

impl ProfileSpec {
    /// Validates the spec and compiles it to segments.
    pub fn segments(&self) -> Result<Vec<Segment>, ProfileError> {
        let segs = match self {
            Self::Constant { rate, duration } => vec![Segment::flat(*rate, *duration)],
            Self::Step { steps } => steps
                .iter()
                .map(|s| Segment::flat(s.rate, s.duration))
                .collect(),
            Self::Ramp { from, to, duration } => vec![Segment {
                from_rps: *from,
                to_rps: *to,
                duration: *duration,
            }],
            Self::Spike {
                baseline,
                multiplier,
                before,
                spike,
                after,
            } => vec![
                Segment::flat(*baseline, *before),
                Segment::flat(baseline * multiplier, *spike),
                Segment::flat(*baseline, *after),
            ],
        };
        if segs.is_empty() {
            return Err(ProfileError::Invalid("profile has no stages".into()));
        }
        let mut total = Duration::ZERO;
        for s in &segs {
            for r in [s.from_rps, s.to_rps] {
                if !r.is_finite() || !(0.0..=MAX_RATE).contains(&r) {
                    return Err(ProfileError::Invalid(format!(
                        "rate {r} must be between 0 and {MAX_RATE}"
                    )));
                }
            }
            total += s.duration;
        }
        if total.is_zero() || total > MAX_DURATION {
            return Err(ProfileError::Invalid(format!(
                "total duration {total:?} must be above zero and at most 24h"
            )));
        }
        Ok(segs)
    }

    /// Total length of the profile.
    pub fn duration(&self) -> Duration {
        self.segments()
            .map(|s| s.iter().map(|s| s.duration).sum())
            .unwrap_or_default()
    }
}

/// HTTP version used to talk to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 with keep-alive, one request at a time per connection.
    #[default]
    Http1,
    /// HTTP/2 over cleartext with prior knowledge (h2c), multiplexed.
    Http2,
}

/// One request template: method, URL (with `{id}`), optional body, weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// A full `http://` URL, or a path starting with `/` joined to `base_url`.
    pub url: String,
    /// HTTP method (default GET).
    #[serde(default = "default_method")]
    pub method: String,
    /// Request body; `{id}` is substituted.
    #[serde(default)]
    pub body: Option<String>,
    /// Relative share of requests using this target (default 1).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_method() -> String {
    "GET".to_string()
}

fn default_weight() -> u32 {
    1
}

/// The ID key space filled into `{id}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// Number of distinct IDs (IDs are 0..count).
    #[serde(default = "default_key_count")]
    pub count: u64,
    /// Zipf-like skew exponent: 0 is uniform, ~1 is web-like, higher is more skewed.
    #[serde(default = "default_zipf")]
    pub zipf_exponent: f64,
    /// RNG seed, so two runs draw the same IDs.
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn default_key_count() -> u64 {
    10_000_000
}

fn default_zipf() -> f64 {
    1.0
}

fn default_seed() -> u64 {
    42
}

impl Default for KeySpec {
    fn default() -> Self {
        Self {
            count: default_key_count(),
            zipf_exponent: default_zipf(),
            seed: default_seed(),
        }
    }
}

/// A scenario file: everything a run needs, in YAML. CLI flags override its fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A name shown in reports.
    #[serde(default)]
    pub name: Option<String>,
    /// Joined with target URLs that are paths (`/api/...`); `--base-url` overrides it.
    #[serde(default)]
    pub base_url: Option<String>,
    /// The request templates.
    pub targets: Vec<TargetSpec>,
    /// The key space for `{id}`.
    #[serde(default)]
    pub keys: KeySpec,
    /// HTTP/1.1 or HTTP/2.
    #[serde(default)]
    pub protocol: Protocol,
    /// Number of connections.
    #[serde(default)]
    pub connections: Option<usize>,
    /// Cap on requests accepted but not finished (queued + on the wire).
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    /// Per-request timeout, from the moment it is written to a connection.
    #[serde(default, with = "serde_human_opt")]
    pub timeout: Option<Duration>,
    /// How long to wait for in-flight requests after the profile ends.
    #[serde(default, with = "serde_human_opt")]
    pub drain: Option<Duration>,
    /// Stop after this many requests, even if the profile has more.
    #[serde(default)]
    pub max_requests: Option<u64>,
    /// The load profile.
    pub profile: ProfileSpec,
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn from_file(path: &Path) -> Result<Self, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text).map_err(|e| match e {
            ProfileError::Parse { source, .. } => ProfileError::Parse {
                path: path.display().to_string(),
                source,
            },
            other => other,
        })
    }

    /// Parses and validates scenario YAML.
    pub fn from_yaml(text: &str) -> Result<Self, ProfileError> {
        let s: Scenario = serde_norway::from_str(text).map_err(|source| ProfileError::Parse {
            path: "<inline>".into(),
            source,
        })?;
        s.profile.segments()?;
        if s.targets.is_empty() {
            return Err(ProfileError::Invalid("scenario has no targets".into()));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spike_compiles_to_three_segments() {
        let p = ProfileSpec::Spike {
            baseline: 40.0,
            multiplier: 100.0,
            before: Duration::from_secs(10),
            spike: Duration::from_secs(30),
            after: Duration::from_secs(20),
        };
        let s = p.segments().unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[1].from_rps, 4000.0);
        assert_eq!(p.duration(), Duration::from_secs(60));
    }

    #[test]
    fn scenario_yaml_parses() {
        let y = r#"
name: t
base_url: http://127.0.0.1:9001
targets:
  - url: /api/v1/codes/{id}
    weight: 9
  - url: /api/v1/scans
    method: POST
    body: '{"id":"{id}"}'
keys: { count: 1000, zipf_exponent: 1.1 }
protocol: http2
connections: 8
timeout: 2s
profile: { kind: step, steps: [ { rate: 10, duration: 1s }, { rate: 20, duration: 500ms } ] }
"#;
        let s = Scenario::from_yaml(y).unwrap();
        assert_eq!(s.targets.len(), 2);
        assert_eq!(s.targets[0].method, "GET");
        assert_eq!(s.protocol, Protocol::Http2);
        assert_eq!(s.timeout, Some(Duration::from_secs(2)));
        assert_eq!(s.profile.duration(), Duration::from_millis(1500));
    }

    #[test]
    fn bad_profiles_are_rejected() {
        let neg = ProfileSpec::Constant {
            rate: -1.0,
            duration: Duration::from_secs(1),
        };
        assert!(neg.segments().is_err());
        let zero = ProfileSpec::Step { steps: vec![] };
        assert!(zero.segments().is_err());
        let unknown = "targets: [{url: /}]\nprofile: {kind: constant, rate: 1, duration: 1s, x: 1}";
        assert!(Scenario::from_yaml(unknown).is_err());
    }
}
