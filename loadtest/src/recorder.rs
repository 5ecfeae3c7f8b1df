//! The per-second timeline and the latency histograms of one run.
//!
//! Where each event lands on the timeline:
//! - `offered` and `dropped`: the second of the request's *intended* send time;
//! - `sent`: the second it was actually handed to a connection;
//! - responses, errors and latencies: the second the response (or error) arrived.
//!
//! Latency is always measured from the intended send time (so waiting for a free
//! connection behind a stalled server counts); `service` latency, from the actual send,
//! is kept too, to show what a closed-loop tool would have reported.
//! All histograms hold microseconds.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::client::{Answer, ErrorKind};

/// Highest latency a histogram can hold (1 hour, in µs); larger values saturate.
const MAX_US: u64 = 3_600_000_000;
/// Latency class of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 2xx.
    Admitted,
    /// 429 or 503 (whether or not it carries `x-floodgate-reason`).
    Rejected,
    /// Any other status.
    Failed,
}

impl Class {
    /// Classifies an HTTP status.
    pub fn of(status: u16) -> Self {
        match status {
            200..=299 => Self::Admitted,
            429 | 503 => Self::Rejected,
            _ => Self::Failed,
        }
    }
}

/// A histogram in µs with `sigfig` significant figures (2 per second, 3 overall).
pub fn new_histogram(sigfig: u8) -> Result<Histogram<u64>, hdrhistogram::CreationError> {
    Histogram::new_with_bounds(1, MAX_US, sigfig)
}

/// Empty histograms to clone from: per-second (2 significant figures) and overall (3).
#[derive(Debug, Clone)]
struct Templates {
    second: Histogram<u64>,
    overall: Histogram<u64>,
}

/// Latencies of one class.
#[derive(Debug, Clone)]
pub struct Latencies {
    /// All responses.
    pub all: Histogram<u64>,
    /// 2xx responses.
    pub admitted: Histogram<u64>,
    /// 429/503 responses.
    pub rejected: Histogram<u64>,
}

impl Latencies {
    fn new(template: &Histogram<u64>) -> Self {
        Self {
            all: template.clone(),
            admitted: template.clone(),
            rejected: template.clone(),
        }
    }

    fn record(&mut self, class: Class, us: u64) {
        let us = us.clamp(1, MAX_US);
        self.all.saturating_record(us);
        match class {
            Class::Admitted => self.admitted.saturating_record(us),
            Class::Rejected => self.rejected.saturating_record(us),
            Class::Failed => {}
        }
    }
}

/// Counters and histograms of one second (or of the whole run).
#[derive(Debug, Clone)]
pub struct Bucket {
    /// Requests whose intended send time fell here.
    pub offered: u64,
    /// Offered requests not sent because `max_in_flight` was reached.
    pub dropped: u64,
    /// Requests handed to a connection.
    pub sent: u64,
    /// HTTP responses received.
    pub responses: u64,
    /// 2xx responses.
    pub admitted: u64,
    /// 429/503 responses.
    pub rejected: u64,
    /// Of those, responses without `Retry-After`.
    pub rejected_without_retry_after: u64,
    /// Other responses.
    pub failed: u64,
    /// Responses per status code.
    pub by_status: BTreeMap<u16, u64>,
    /// Responses per `x-floodgate-reason` value.
    pub by_reason: BTreeMap<String, u64>,
    /// Errors per kind, ordered like [`ErrorKind::ALL`].
    pub errors: [u64; 4],
    /// Highest number of requests in flight (queued + on the wire) seen.
    pub max_in_flight: u64,
    /// Latency from the intended send time.
    pub latency: Latencies,
}

impl Bucket {
    fn new(template: &Histogram<u64>) -> Self {
        Self {
            offered: 0,
            dropped: 0,
            sent: 0,
            responses: 0,
            admitted: 0,
            rejected: 0,
            rejected_without_retry_after: 0,
            failed: 0,
            by_status: BTreeMap::new(),
            by_reason: BTreeMap::new(),
            errors: [0; 4],
            max_in_flight: 0,
            latency: Latencies::new(template),
        }
    }

    /// Total errors of all kinds.
    pub fn error_total(&self) -> u64 {
        self.errors.iter().sum()
    }
}

/// Everything recorded in a run, handed to the report.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// One bucket per second since the start.
    pub seconds: Vec<Bucket>,
    /// The whole run.
    pub total: Bucket,
    /// Latency from the actual send time (what a closed-loop tool measures).
    pub service: Latencies,
    /// How late requests were handed to a connection vs their intended time.
    pub send_lag: Histogram<u64>,
    /// Offset of the first actual send.
    pub first_send: Option<Duration>,
    /// Offset of the last actual send.
    pub last_send: Option<Duration>,
    /// Requests accepted (offered − dropped).
    pub accepted: u64,
    /// Accepted requests with neither a response nor an error at the end.
    pub in_flight_at_end: u64,
    /// Wall time from start to the end of the run.
    pub elapsed: Duration,
}

/// Collects events from the scheduler and the connections.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    max_seconds: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    templates: Templates,
    seconds: Vec<Bucket>,
    total: Bucket,
    service: Latencies,
    send_lag: Histogram<u64>,
    first_send: Option<Duration>,
    last_send: Option<Duration>,
    accepted: u64,
    in_flight: u64,
}

impl Inner {
    fn second(&mut self, at: Duration, max: usize) -> &mut Bucket {
        let i = (at.as_secs() as usize).min(max.saturating_sub(1));
        if self.seconds.len() <= i {
            let t = &self.templates.second;
            self.seconds.resize_with(i + 1, || Bucket::new(t));
        }
        &mut self.seconds[i]
    }
}

impl Recorder {
    /// A recorder whose second 0 starts at `start`; the timeline holds at most
    /// `max_seconds` buckets (later events land in the last one).
    pub fn new(start: Instant, max_seconds: usize) -> Result<Self, hdrhistogram::CreationError> {
        let templates = Templates {
            second: new_histogram(2)?,
            overall: new_histogram(3)?,
        };
        Ok(Self {
            start,
            max_seconds: max_seconds.max(1),
            inner: Mutex::new(Inner {
                seconds: Vec::new(),
                total: Bucket::new(&templates.overall),
                service: Latencies::new(&templates.overall),
                send_lag: templates.overall.clone(),
                first_send: None,
                last_send: None,
                accepted: 0,
                in_flight: 0,
                templates,
            }),
        })
    }

    /// The instant second 0 starts at.
    pub fn start(&self) -> Instant {
        self.start
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.start)
    }

    /// A request came due at `intended`: accept it unless `cap` are already in flight.
    pub fn offer(&self, intended: Duration, cap: usize) -> bool {
        let max = self.max_seconds;
        let mut g = self.lock();
        let accept = g.in_flight < cap as u64;
        g.total.offered += 1;
        let in_flight = g.in_flight + u64::from(accept);
        let s = g.second(intended, max);
        s.offered += 1;
        if accept {
            s.max_in_flight = s.max_in_flight.max(in_flight);
        } else {
            s.dropped += 1;
        }
        if accept {
            g.in_flight = in_flight;
            g.accepted += 1;
        } else {
            g.total.dropped += 1;
        }
        accept
    }

    /// An accepted request is being handed to a connection now; returns the send offset.
    pub fn sent(&self, intended: Duration) -> Duration {
        let now = self.now();
        let max = self.max_seconds;
        let mut g = self.lock();
        g.total.sent += 1;
        g.second(now, max).sent += 1;
        let lag = now.saturating_sub(intended).as_micros() as u64;
        g.send_lag.saturating_record(lag.clamp(1, MAX_US));
        if g.first_send.is_none() {
            g.first_send = Some(now);
        }
        g.last_send = Some(now);
        now
    }

    /// A request finished: `intended` and `sent` are offsets from the start.
    pub fn finished(&self, intended: Duration, sent: Duration, outcome: Result<Answer, ErrorKind>) {
        let now = self.now();
        let max = self.max_seconds;
        let latency = now.saturating_sub(intended).as_micros() as u64;
        let service = now.saturating_sub(sent).as_micros() as u64;
        let mut g = self.lock();
        g.in_flight = g.in_flight.saturating_sub(1);
        let in_flight = g.in_flight;
        let buckets_apply = |b: &mut Bucket| match &outcome {
            Ok(a) => {
                let class = Class::of(a.status);
                b.responses += 1;
                match class {
                    Class::Admitted => b.admitted += 1,
                    Class::Rejected => {
                        b.rejected += 1;
                        b.rejected_without_retry_after += u64::from(!a.retry_after);
                    }
                    Class::Failed => b.failed += 1,
                }
                *b.by_status.entry(a.status).or_default() += 1;
                if let Some(r) = &a.reason {
                    *b.by_reason.entry(r.clone()).or_default() += 1;
                }
                b.latency.record(class, latency);
            }
            Err(k) => b.errors[k.index()] += 1,
        };
        buckets_apply(&mut g.total);
        let s = g.second(now, max);
        buckets_apply(s);
        s.max_in_flight = s.max_in_flight.max(in_flight);
        if let Ok(a) = &outcome {
            g.service.record(Class::of(a.status), service);
        }
    }

    /// Ends the run and hands over what was recorded.
    pub fn finish(&self) -> Recorded {
        let elapsed = self.now();
        let g = self.lock();
        Recorded {
            seconds: g.seconds.clone(),
            total: g.total.clone(),
            service: g.service.clone(),
            send_lag: g.send_lag.clone(),
            first_send: g.first_send,
            last_send: g.last_send,
            accepted: g.accepted,
            in_flight_at_end: g.in_flight,
            elapsed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_the_right_places() {
        let r = Recorder::new(Instant::now(), 10).unwrap();
        assert!(r.offer(Duration::ZERO, 1));
        assert!(!r.offer(Duration::ZERO, 1), "cap of 1 drops the second");
        let sent = r.sent(Duration::ZERO);
        r.finished(
            Duration::ZERO,
            sent,
            Ok(Answer {
                status: 503,
                reason: Some("shed".into()),
                retry_after: false,
            }),
        );
        assert!(r.offer(Duration::from_millis(10), 1));
        let sent = r.sent(Duration::from_millis(10));
        r.finished(Duration::from_millis(10), sent, Err(ErrorKind::Reset));
        let rec = r.finish();
        assert_eq!(rec.total.offered, 3);
        assert_eq!(rec.total.dropped, 1);
        assert_eq!(rec.total.sent, 2);
        assert_eq!(rec.total.rejected, 1);
        assert_eq!(rec.total.by_reason.get("shed"), Some(&1));
        assert_eq!(rec.total.rejected_without_retry_after, 1);
        assert_eq!(rec.total.errors[ErrorKind::Reset.index()], 1);
        assert_eq!(rec.accepted, 2);
        assert_eq!(rec.in_flight_at_end, 0);
        assert_eq!(rec.seconds[0].offered, 3);
    }

    #[test]
    fn classes() {
        assert_eq!(Class::of(200), Class::Admitted);
        assert_eq!(Class::of(201), Class::Admitted);
        assert_eq!(Class::of(429), Class::Rejected);
        assert_eq!(Class::of(503), Class::Rejected);
        assert_eq!(Class::of(500), Class::Failed);
    }
}
