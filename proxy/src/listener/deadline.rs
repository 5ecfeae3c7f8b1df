//! A downstream connection's deadlines (request head, keep-alive idle), kept by
//! one periodic watchdog per connection instead of a timer per request.
//!
//! hyper's own header-read timeout arms a fresh timer for every request head it
//! waits for; on a busy worker that is a timer-wheel insert and removal per
//! request and, often, a wake-up write to the runtime's event descriptor. Here
//! the connection's reads mark when a request head starts to arrive, requests
//! mark when they start and finish, and the watchdog ([`Watchdog::check`]),
//! ticking a few times per timeout on a ticker its worker's connections share
//! ([`crate::time::ticker`]), decides. A slow head is cut off between
//! `header_read_timeout` and 1.5 × `header_read_timeout` after its first byte.
//! A client that takes nothing of what is written to it (a write that stays
//! blocked) is cut off after `send_timeout`: otherwise a client that never reads
//! a large response holds the exchange and its upstream connection forever.
//! An HTTP/1 connection quiet for [`Watchdog::rest_period`] (at most
//! [`REST_AFTER`]: nothing in flight, no response body being written, no head
//! arriving, no write blocked, no request answered since) is reported
//! [`Verdict::Rest`]: it can be parked ([`super::park`]). While hyper serves an
//! HTTP/1 connection the watchdog ticks at that shorter period, so an idle
//! keep-alive connection gives back hyper's buffers within about a second.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::time::Instant;

/// The HTTP/2 connection preface begins with these bytes; an HTTP/1 request never does.
const H2_PREFACE_START: &[u8] = b"PRI ";

/// Protocol of the connection, as far as its first bytes tell.
const PROTO_UNKNOWN: u8 = 0;
const PROTO_HTTP1: u8 = 1;
const PROTO_HTTP2: u8 = 2;

/// What a connection's requests and reads record for its watchdog. Touched only by
/// the worker serving the connection (atomics only because hyper wants `Send`).
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    /// Requests handed to the proxy and not yet answered.
    in_flight: AtomicUsize,
    /// Requests started so far: tells one awaited head from the next.
    started: AtomicU64,
    /// When the last request was answered, in nanoseconds since `opened`.
    last_done_ns: AtomicU64,
    /// Bytes arrived while no request was in flight: a request head is on its way.
    head_pending: AtomicBool,
    /// `PROTO_*`; how many preface bytes matched so far while unknown, in `matched`.
    proto: AtomicU8,
    matched: AtomicU8,
    /// Since when a write has been blocked (ns since `opened`, plus 1; 0: not).
    write_blocked: AtomicU64,
    /// Response bodies handed to hyper and not finished (dropped) yet.
    responding: AtomicUsize,
}

impl Activity {
    /// The activity of a connection opened now.
    pub fn new() -> Self {
        Self {
            opened: crate::time::now(),
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            last_done_ns: AtomicU64::new(0),
            head_pending: AtomicBool::new(false),
            proto: AtomicU8::new(PROTO_UNKNOWN),
            matched: AtomicU8::new(0),
            write_blocked: AtomicU64::new(0),
            responding: AtomicUsize::new(0),
        }
    }

    /// A request's head was parsed and the request handed to the proxy.
    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.started.fetch_add(1, Ordering::Relaxed);
        self.head_pending.store(false, Ordering::Relaxed);
    }

    /// A request was answered (its response head is on the way out).
    pub fn request_done(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let ns = u64::try_from(
            crate::time::now()
                .saturating_duration_since(self.opened)
                .as_nanos(),
        )
        .unwrap_or(u64::MAX);
        self.last_done_ns.store(ns, Ordering::Relaxed);
    }

    /// A response (its body) was handed to hyper to write.
    pub fn response_sent(&self) {
        self.responding.fetch_add(1, Ordering::Relaxed);
    }

    /// hyper finished with a response body (written to its end, or dropped).
    pub fn response_ended(&self) {
        self.responding.fetch_sub(1, Ordering::Relaxed);
    }

    /// True once the connection's first bytes showed the HTTP/2 preface.
    pub fn is_http2(&self) -> bool {
        self.proto.load(Ordering::Relaxed) == PROTO_HTTP2
    }

    /// True once the connection's first bytes told HTTP/1 from HTTP/2.
    pub fn protocol_known(&self) -> bool {
        self.proto.load(Ordering::Relaxed) != PROTO_UNKNOWN
    }

    /// `bytes` arrived from the client.
    pub(super) fn received(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.proto.load(Ordering::Relaxed) == PROTO_UNKNOWN {
            self.sniff(bytes);
        }
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            self.head_pending.store(true, Ordering::Relaxed);
        }
    }

    /// Tells HTTP/2 (its preface) from HTTP/1 by the connection's first bytes.
    fn sniff(&self, bytes: &[u8]) {
        let done = usize::from(self.matched.load(Ordering::Relaxed));
        let want = H2_PREFACE_START.get(done..).unwrap_or_default();
        let n = want.len().min(bytes.len());
        let proto = if want.get(..n) != bytes.get(..n) {
            PROTO_HTTP1
        } else if n == want.len() {
            PROTO_HTTP2
        } else {
            // A prefix of the preface so far; the next bytes decide.
            self.matched
                .store(u8::try_from(done + n).unwrap_or(u8::MAX), Ordering::Relaxed);
            return;
        };
        self.proto.store(proto, Ordering::Relaxed);
    }

    /// A write made progress (`true`) or could not (`false`).
    fn wrote(&self, progressed: bool) {
        let blocked = self.write_blocked.load(Ordering::Relaxed);
        match (progressed, blocked) {
            (true, 0) | (false, 1..) => {}
            (true, _) => self.write_blocked.store(0, Ordering::Relaxed),
            (false, 0) => {
                let ns = u64::try_from(self.opened.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
                self.write_blocked.store(ns + 1, Ordering::Relaxed);
            }
        }
    }

    /// How long the current write has been blocked, if one is.
    fn write_blocked_for(&self) -> Option<Duration> {
        let since = self.write_blocked.load(Ordering::Relaxed).checked_sub(1)?;
        Some(
            self.opened
                .elapsed()
                .saturating_sub(Duration::from_nanos(since)),
        )
    }

    /// How long no request has been answered, at `now`.
    fn idle_for(&self, now: Instant) -> Duration {
        let last = Duration::from_nanos(self.last_done_ns.load(Ordering::Relaxed));
        now.saturating_duration_since(self.opened)
            .saturating_sub(last)
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// What the watchdog decided about a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing overdue.
    Keep,
    /// No request for `idle_timeout`: close gracefully.
    Idle,
    /// A request head took longer than `header_read_timeout`: close now.
    SlowHead,
    /// The client took nothing written to it for `send_timeout`: close now.
    SlowReader,
    /// An HTTP/1 connection quiet for the rest period: it may be parked.
    Rest,
}

/// How long an HTTP/1 connection is quiet before it rests (is parked), at most.
pub const REST_AFTER: Duration = Duration::from_millis(500);

/// Checks one connection's deadlines at each tick: every [`Watchdog::period`]
/// while the connection is parked or HTTP/2, every [`Watchdog::rest_period`]
/// while hyper serves it over HTTP/1 (so it is parked soon after it goes quiet).
/// Each check reads the time, so the two tick rates may alternate.
#[derive(Debug)]
pub struct Watchdog {
    header_read_timeout: Duration,
    idle_timeout: Duration,
    send_timeout: Duration,
    period: Duration,
    rest_after: Duration,
    /// The head being waited for (`Activity::started` when first seen) and the
    /// time of the first check that saw it pending.
    head: Option<(u64, Instant)>,
}

impl Watchdog {
    /// A watchdog for the given limits.
    pub fn new(
        header_read_timeout: Duration,
        idle_timeout: Duration,
        send_timeout: Duration,
    ) -> Self {
        let shortest = header_read_timeout.min(idle_timeout).min(send_timeout);
        let period = (shortest / 2).max(Duration::from_millis(5));
        Self {
            header_read_timeout,
            idle_timeout,
            send_timeout,
            period,
            rest_after: period.min(REST_AFTER),
            head: None,
        }
    }

    /// How often [`Watchdog::check`] should run while the connection is parked or HTTP/2.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// How often [`Watchdog::check`] should run while hyper serves the connection
    /// over HTTP/1, and how long it is quiet before it rests.
    pub fn rest_period(&self) -> Duration {
        self.rest_after
    }

    /// One tick at `now`: is anything overdue?
    pub fn check(&mut self, activity: &Activity, now: Instant) -> Verdict {
        let blocked = activity.write_blocked_for();
        if blocked.is_some_and(|d| d >= self.send_timeout) {
            return Verdict::SlowReader;
        }
        if activity.in_flight.load(Ordering::Relaxed) != 0 {
            self.head = None;
            return Verdict::Keep;
        }
        let http2 = activity.proto.load(Ordering::Relaxed) == PROTO_HTTP2;
        if !http2 && activity.head_pending.load(Ordering::Relaxed) {
            let started = activity.started.load(Ordering::Relaxed);
            let since = match self.head {
                Some((seen, since)) if seen == started => since,
                _ => now,
            };
            self.head = Some((started, since));
            // The head began before the first check that saw it, so it has been
            // arriving for at least `now - since`: cut off between
            // `header_read_timeout` and a tick more after its first byte.
            if now.saturating_duration_since(since) >= self.header_read_timeout {
                return Verdict::SlowHead;
            }
            // A head on its way is not idleness: the head deadline governs now.
            return Verdict::Keep;
        }
        self.head = None;
        let idle = activity.idle_for(now);
        if idle >= self.idle_timeout {
            return Verdict::Idle;
        }
        if http2 || blocked.is_some() || activity.responding.load(Ordering::Relaxed) != 0 {
            return Verdict::Keep;
        }
        if idle >= self.rest_after {
            return Verdict::Rest;
        }
        Verdict::Keep
    }
}

/// The client stream, reporting what it reads to the connection's [`Activity`].
/// `A` is whatever owns the activity (the connection's shared state).
pub struct Watched<S, A> {
    inner: S,
    activity: Arc<A>,
}

impl<S, A> Watched<S, A> {
    /// Wraps `inner`; reads are reported to `activity`.
    pub fn new(inner: S, activity: Arc<A>) -> Self {
        Self { inner, activity }
    }
}

impl<S: AsyncRead + Unpin, A: AsRef<Activity>> AsyncRead for Watched<S, A> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let new = buf.filled().get(before..).unwrap_or_default();
            AsRef::<Activity>::as_ref(&*this.activity).received(new);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin, A: AsRef<Activity>> AsyncWrite for Watched<S, A> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        AsRef::<Activity>::as_ref(&*this.activity).wrote(polled.is_ready());
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        AsRef::<Activity>::as_ref(&*this.activity).wrote(polled.is_ready());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(10);
    const LONG: Duration = Duration::from_secs(600);

    /// A watchdog's checks at chosen instants after its connection opened.
    struct Clock<'a> {
        activity: &'a Activity,
        dog: Watchdog,
    }

    impl Clock<'_> {
        fn check_at(&mut self, ms: u64) -> Verdict {
            let now = self.activity.opened + Duration::from_millis(ms);
            self.dog.check(self.activity, now)
        }
    }

    fn clock(activity: &Activity, header: Duration, idle: Duration, send: Duration) -> Clock<'_> {
        Clock {
            activity,
            dog: Watchdog::new(header, idle, send),
        }
    }

    #[test]
    fn a_pending_head_is_cut_off_after_the_header_timeout() {
        let activity = Activity::new();
        let mut c = clock(&activity, T, LONG, LONG);
        assert_eq!(c.dog.period(), T / 2);
        assert_eq!(c.dog.rest_period(), REST_AFTER);
        activity.received(b"GET / HT");
        // First seen pending at 1 s: cut off once 10 s have passed since then.
        assert_eq!(c.check_at(1_000), Verdict::Keep);
        assert_eq!(c.check_at(6_000), Verdict::Keep);
        assert_eq!(c.check_at(10_999), Verdict::Keep);
        assert_eq!(c.check_at(11_000), Verdict::SlowHead);
    }

    #[test]
    fn each_request_restarts_the_head_clock() {
        let activity = Activity::new();
        let mut c = clock(&activity, T, LONG, LONG);
        for i in 0..10 {
            let t = i * 9_000;
            activity.received(b"GET / HTTP/1.1\r\n");
            assert_eq!(c.check_at(t), Verdict::Keep);
            assert_eq!(c.check_at(t + 8_000), Verdict::Keep);
            activity.request_started();
            assert_eq!(c.check_at(t + 8_500), Verdict::Keep, "in flight");
            activity.request_done();
        }
    }

    #[test]
    fn bytes_while_a_request_is_in_flight_start_no_head() {
        let activity = Activity::new();
        let mut c = clock(&activity, T, LONG, LONG);
        activity.received(b"GET / HTTP/1.1\r\n\r\n");
        activity.request_started();
        activity.received(b"request body");
        activity.request_done();
        for i in 0..5 {
            // Quiet: it may rest, but no head deadline runs.
            assert_ne!(c.check_at(i * 20_000), Verdict::SlowHead);
        }
    }

    #[test]
    fn http2_connections_have_no_head_deadline() {
        let activity = Activity::new();
        let mut c = clock(&activity, T, LONG, LONG);
        // The preface split over two reads still counts.
        activity.received(b"PR");
        activity.received(b"I * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        for i in 0..5 {
            assert_eq!(c.check_at(i * 20_000), Verdict::Keep);
        }
        let h1 = Activity::new();
        h1.received(b"P");
        h1.received(b"OST / HTTP/1.1\r\n");
        assert_eq!(h1.proto.load(Ordering::Relaxed), PROTO_HTTP1);
    }

    #[test]
    fn a_head_on_its_way_is_not_idle() {
        let activity = Activity::new();
        let mut c = clock(&activity, T, Duration::ZERO, LONG);
        activity.received(b"GET / HTTP/1.1\r\n");
        assert_eq!(c.check_at(1_000), Verdict::Keep);
    }

    #[test]
    fn idle_connections_are_reported_idle() {
        let activity = Activity::new();
        let mut c = clock(&activity, T, Duration::from_secs(60), LONG);
        assert_eq!(c.check_at(59_000), Verdict::Rest, "quiet, not idle yet");
        assert_eq!(c.check_at(60_000), Verdict::Idle);
        activity.request_started();
        assert_eq!(c.check_at(61_000), Verdict::Keep, "a request is in flight");
    }

    #[test]
    fn a_connection_quiet_for_the_rest_period_may_rest() {
        let activity = Activity::new();
        let mut c = clock(&activity, T, LONG, LONG);
        let rest = u64::try_from(REST_AFTER.as_millis()).unwrap();
        activity.received(b"GET / HTTP/1.1\r\n\r\n");
        activity.request_started();
        activity.response_sent();
        activity.request_done();
        // `request_done` read the clock just after the connection opened.
        assert_eq!(
            c.check_at(rest + 100),
            Verdict::Keep,
            "the body is being written"
        );
        activity.response_ended();
        assert_eq!(
            c.check_at(rest / 2),
            Verdict::Keep,
            "quiet for less than the rest period"
        );
        assert_eq!(c.check_at(rest + 100), Verdict::Rest);
        // Bytes of a head on their way, or a blocked write, are not quiet.
        activity.received(b"GET");
        assert_eq!(c.check_at(rest + 200), Verdict::Keep);
        activity.request_started();
        activity.request_done();
        activity.wrote(false);
        assert_eq!(c.check_at(rest + 300), Verdict::Keep, "blocked");
        activity.wrote(true);
        // Idleness past the timeout closes rather than rests.
        let mut short = clock(&activity, T, Duration::from_millis(100), LONG);
        assert_eq!(short.check_at(rest * 10), Verdict::Idle);
    }

    #[test]
    fn a_short_header_timeout_shortens_the_rest_period() {
        let dog = Watchdog::new(Duration::from_millis(200), LONG, LONG);
        assert_eq!(dog.period(), Duration::from_millis(100));
        assert_eq!(dog.rest_period(), Duration::from_millis(100));
    }

    #[test]
    fn http2_connections_never_rest() {
        let activity = Activity::new();
        let mut c = clock(&activity, T, LONG, LONG);
        activity.received(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        assert!(activity.is_http2() && activity.protocol_known());
        for i in 1..4 {
            assert_eq!(c.check_at(i * 10_000), Verdict::Keep);
        }
    }

    #[test]
    fn a_write_blocked_past_the_send_timeout_cuts_the_connection() {
        let activity = Activity::new();
        let mut c = clock(&activity, T, LONG, Duration::ZERO);
        activity.request_started();
        assert_eq!(c.check_at(0), Verdict::Keep, "nothing blocked");
        activity.wrote(false);
        assert_eq!(c.check_at(0), Verdict::SlowReader);
        // Progress clears it.
        activity.wrote(true);
        assert_eq!(c.check_at(0), Verdict::Keep);
        let mut patient = clock(&activity, T, LONG, T);
        activity.wrote(false);
        assert_eq!(
            patient.check_at(0),
            Verdict::Keep,
            "blocked for less than 10 s"
        );
    }
}
