//! Prometheus metrics: one typed handle, registered into a registry the caller owns (no globals),
//! recorded without locks on the hot path where it matters and encoded by prometheus-client in
//! the classic text format that `promtool check metrics` accepts.
//!
//! Labels are bounded by construction: status codes, failure kinds and skip reasons from the
//! enums below, audit's finding kinds, and rule names from the config. Never a path, host or
//! error text. The record behind the status page (`recorder.rs`) is fed by the same call that
//! counts a rewrite.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::audit::Kind;

mod histogram;
mod recorder;

use histogram::DurationHistogram;
pub use recorder::{Entry, Recorder, Rewrite, MAX_PATH, RECENT};

/// Buckets of `candor_request_duration_seconds`: OpenTelemetry's advice for HTTP durations,
/// extended down to 1 ms (a sidecar's own answers are sub-millisecond) and up to 60 s (slow
/// legacy APIs).
const DURATION_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Buckets of `candor_upstream_queue_seconds`: from 1 ms (a place freed by the next response)
/// to 10 s (past the default `upstream.queue_timeout` of 5 s).
const QUEUE_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The upstream concurrency limit now: `candor_upstream_in_flight`, `candor_upstream_limit`,
/// `candor_upstream_queue_depth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpstreamLoad {
    /// Exchanges holding a place.
    pub in_flight: u64,
    /// The limit.
    pub limit: u64,
    /// Requests waiting for a place.
    pub queue_depth: u64,
}

/// The `kind` label of `candor_upstream_failures_total`: what went wrong with an upstream
/// exchange. Every kind exists from the start, so dashboards show 0 rather than "no data".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// Refused, unreachable, or the host name did not resolve.
    Connect,
    /// The TCP connection was not made within `upstream.connect_timeout`.
    ConnectTimeout,
    /// No response head within `upstream.timeout`, or a body that stalled.
    Timeout,
    /// The connection ended before a response head.
    Reset,
    /// Not a valid HTTP/1.1 response (or a protocol switch nobody asked for).
    Protocol,
    /// The body ended early while candor was reading it for inspection.
    Incomplete,
    /// The TLS handshake with an `https://` upstream failed (certificate, alert, protocol).
    Tls,
    /// Anything else.
    Other,
    /// Not sent: shed at `upstream.max_connections` (queue full, or `upstream.queue_timeout`
    /// passed). Counted with the failures because it is the upstream's capacity that ran out.
    Shed,
}

impl FailureKind {
    /// Every kind, in the order the status page lists them.
    pub const ALL: [FailureKind; 9] = [
        FailureKind::Connect,
        FailureKind::ConnectTimeout,
        FailureKind::Timeout,
        FailureKind::Reset,
        FailureKind::Protocol,
        FailureKind::Incomplete,
        FailureKind::Tls,
        FailureKind::Other,
        FailureKind::Shed,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Connect => "connect",
            FailureKind::ConnectTimeout => "connect_timeout",
            FailureKind::Timeout => "timeout",
            FailureKind::Reset => "reset",
            FailureKind::Protocol => "protocol",
            FailureKind::Incomplete => "incomplete",
            FailureKind::Tls => "tls",
            FailureKind::Other => "other",
            FailureKind::Shed => "shed",
        }
    }
}

/// The `reason` label of `candor_inspect_skipped_total`: why a body a rule wanted was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// Larger than `inspect.max_body_bytes`.
    TooLarge,
    /// Not one of `inspect.content_types`.
    ContentType,
    /// A `Content-Encoding` candor does not decode, or a corrupt encoded body.
    Encoding,
    /// `inspect.max_concurrent` bodies were already being read.
    Busy,
}

impl SkipReason {
    /// Every reason, pre-registered like the failure kinds.
    pub const ALL: [SkipReason; 4] = [
        SkipReason::TooLarge,
        SkipReason::ContentType,
        SkipReason::Encoding,
        SkipReason::Busy,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::TooLarge => "too_large",
            SkipReason::ContentType => "content_type",
            SkipReason::Encoding => "encoding",
            SkipReason::Busy => "busy",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RewriteLabels {
    rule: String,
    from: u16,
    to: u16,
    mode: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// candor's metrics. Cheap to clone; clones record into the same series.
#[derive(Debug, Clone)]
pub struct Metrics {
    requests: Family<StatusLabels, Counter>,
    /// One slot per status 100..=999 (every status `http::StatusCode` can hold) holding that
    /// status's counter once seen, so counting a request is one atomic add instead of a locked
    /// map lookup, and the status page can read every count back.
    requests_by_status: Arc<[OnceLock<Counter>]>,
    /// The counter of each [`FailureKind`], by its position in [`FailureKind::ALL`].
    failure_counters: Arc<[Counter; 9]>,
    duration: DurationHistogram,
    rewrites: Family<RewriteLabels, Counter>,
    template_failures: Family<RuleLabels, Counter>,
    /// The counter of each [`SkipReason`], by its position in [`SkipReason::ALL`].
    skip_counters: Arc<[Counter; 4]>,
    reloads: Family<ResultLabels, Counter>,
    connections_open: Gauge,
    connections_rejected: Counter,
    upstream_in_flight: Gauge,
    upstream_queue_depth: Gauge,
    upstream_limit: Gauge,
    upstream_queue_seconds: DurationHistogram,
    upstream_close_delimited: Counter,
    maintenance_responses: Counter,
    /// The counter of each audit finding kind, by its position in `Kind::ALL`.
    audit_findings: Arc<[Counter; 14]>,
    audit_skipped: Counter,
    last_reload_successful: Gauge,
    last_reload_success_time: Gauge,
    /// The status page's record of recent rewrites, fed by [`Metrics::rewrite`] only.
    recorder: Arc<Recorder>,
    /// Tells this registry's entries in the per-thread rewrite counter cache from another's.
    id: u64,
}

/// Rewrite counters a thread has used, so counting a rewrite is an atomic add: looking one up in
/// the `Family` takes its lock and an owned copy of the rule name for the key.
#[derive(Debug)]
struct CachedRewrite {
    metrics: u64,
    rule: Box<str>,
    from: u16,
    to: u16,
    mode: &'static str,
    counter: Counter,
}

/// Rule × from × to × mode combinations a thread caches; rarer ones take the locked path.
const REWRITE_CACHE: usize = 64;

thread_local! {
    static REWRITE_COUNTERS: std::cell::RefCell<Vec<CachedRewrite>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

impl Metrics {
    /// Registers candor's metrics (prefixed `candor_`) into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let registry = registry.sub_registry_with_prefix("candor");
        let requests = Family::<StatusLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by the final status sent to the client",
            requests.clone(),
        );
        let upstream_failures = Family::<KindLabels, Counter>::default();
        registry.register(
            "upstream_failures",
            "Upstream exchanges that failed before a response head arrived, by kind",
            upstream_failures.clone(),
        );
        let failure_counters = Arc::new(FailureKind::ALL.map(|kind| {
            upstream_failures
                .get_or_create(&KindLabels {
                    kind: kind.as_str(),
                })
                .clone()
        }));
        let duration = DurationHistogram::new(&DURATION_BUCKETS);
        registry.register(
            "request_duration_seconds",
            "Time from receiving a request to the end of its response body",
            duration.clone(),
        );
        let rewrites = Family::<RewriteLabels, Counter>::default();
        registry.register(
            "rewrites",
            "Responses a rule or built-in rewrote (mode enforce) or would have (mode shadow), by rule and status from -> to",
            rewrites.clone(),
        );
        let template_failures = Family::<RuleLabels, Counter>::default();
        registry.register(
            "template_failures",
            "Headers and problem members a rule could not fill for a response (left out, the rest of the rewrite applied), by rule",
            template_failures.clone(),
        );
        let inspect_skipped = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "inspect_skipped",
            "Responses whose body a rule wanted but candor could not inspect, by reason",
            inspect_skipped.clone(),
        );
        let skip_counters = Arc::new(SkipReason::ALL.map(|reason| {
            inspect_skipped
                .get_or_create(&ReasonLabels {
                    reason: reason.as_str(),
                })
                .clone()
        }));
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Client connections open now",
            connections_open.clone(),
        );
        let connections_rejected = Counter::default();
        registry.register(
            "connections_rejected",
            "Client connections answered 503 and closed because server.max_connections were open",
            connections_rejected.clone(),
        );
        let upstream_in_flight = Gauge::default();
        registry.register(
            "upstream_in_flight",
            "Upstream exchanges holding a place among upstream.max_connections now (until their \
             response body ends), across workers",
            upstream_in_flight.clone(),
        );
        let upstream_queue_depth = Gauge::default();
        registry.register(
            "upstream_queue_depth",
            "Requests waiting for a place among upstream.max_connections now",
            upstream_queue_depth.clone(),
        );
        let upstream_limit = Gauge::default();
        registry.register(
            "upstream_limit",
            "The upstream concurrency limit now: upstream.max_connections, or the adaptive \
             limit's current value",
            upstream_limit.clone(),
        );
        let upstream_queue_seconds = DurationHistogram::new(&QUEUE_BUCKETS);
        registry.register(
            "upstream_queue_seconds",
            "Time requests that found no free place waited in the upstream queue (got a place \
             or were shed)",
            upstream_queue_seconds.clone(),
        );
        let upstream_close_delimited = Counter::default();
        registry.register(
            "upstream_close_delimited",
            "Upstream responses whose body ends only when the connection closes (no Content-Length, \
             not chunked): a truncation of those is indistinguishable from their end",
            upstream_close_delimited.clone(),
        );
        let maintenance_responses = Counter::default();
        registry.register(
            "maintenance_responses",
            "Requests candor answered 503 itself because maintenance mode was on (also counted \
             in candor_requests_total)",
            maintenance_responses.clone(),
        );
        let audit_findings = Family::<KindLabels, Counter>::default();
        registry.register(
            "audit_findings",
            "Observed exchanges whose response lied about its status (or leaked), by finding kind",
            audit_findings.clone(),
        );
        let audit_findings = Arc::new(Kind::ALL.map(|kind| {
            audit_findings
                .get_or_create(&KindLabels {
                    kind: kind.as_str(),
                })
                .clone()
        }));
        let audit_skipped = Counter::default();
        registry.register(
            "audit_skipped",
            "Exchanges sampled for audit but not observed because inspect.max_concurrent bodies \
             were already being read",
            audit_skipped.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reload attempts (SIGHUP, file change), by result",
            reloads.clone(),
        );
        for result in ["success", "error"] {
            let _ = reloads.get_or_create(&ResultLabels { result });
        }
        let last_reload_successful = Gauge::default();
        last_reload_successful.set(1);
        registry.register(
            "config_last_reload_successful",
            "1 if the last configuration reload succeeded (or none was tried), 0 if it failed",
            last_reload_successful.clone(),
        );
        let last_reload_success_time = Gauge::default();
        last_reload_success_time.set(unix_seconds(std::time::SystemTime::now()));
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load",
            last_reload_success_time.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "candor's version; always 1", build);
        Metrics {
            requests,
            requests_by_status: (100..1000).map(|_| OnceLock::new()).collect(),
            failure_counters,
            duration,
            rewrites,
            template_failures,
            skip_counters,
            recorder: Arc::default(),
            reloads,
            connections_open,
            connections_rejected,
            upstream_in_flight,
            upstream_queue_depth,
            upstream_limit,
            upstream_queue_seconds,
            upstream_close_delimited,
            maintenance_responses,
            audit_findings,
            audit_skipped,
            last_reload_successful,
            last_reload_success_time,
            id: {
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
        }
    }

    /// The gauge of open client connections (kept by `proxy::limits::Gate`).
    pub fn connections_open(&self) -> Gauge {
        self.connections_open.clone()
    }

    /// The gauges `upstream::Limiter` keeps: in flight, queue depth, limit.
    pub fn upstream_limit_gauges(&self) -> (Gauge, Gauge, Gauge) {
        (
            self.upstream_in_flight.clone(),
            self.upstream_queue_depth.clone(),
            self.upstream_limit.clone(),
        )
    }

    /// Records how long a request waited in the upstream queue.
    pub fn upstream_queue_wait(&self, waited: std::time::Duration) {
        self.upstream_queue_seconds.observe(waited);
    }

    /// The upstream limit's gauges read back, for the status page.
    pub fn upstream_load(&self) -> UpstreamLoad {
        let read = |gauge: &Gauge| u64::try_from(gauge.get()).unwrap_or(0);
        UpstreamLoad {
            in_flight: read(&self.upstream_in_flight),
            limit: read(&self.upstream_limit),
            queue_depth: read(&self.upstream_queue_depth),
        }
    }

    /// Counts a connection refused by `server.max_connections`.
    pub fn connection_rejected(&self) {
        self.connections_rejected.inc();
    }

    /// The counter of close-delimited upstream responses (kept by `upstream::Client`).
    pub fn upstream_close_delimited(&self) -> Counter {
        self.upstream_close_delimited.clone()
    }

    /// Counts a request answered by maintenance mode.
    pub fn maintenance_response(&self) {
        self.maintenance_responses.inc();
    }

    /// `candor_maintenance_responses_total` read back.
    pub fn maintenance_responses(&self) -> u64 {
        self.maintenance_responses.get()
    }

    /// Counts an observed exchange that showed `kind`.
    pub fn audit_finding(&self, kind: Kind) {
        self.audit_findings[kind as usize].inc();
    }

    /// Counts an exchange audit sampled but could not observe.
    pub fn audit_skipped(&self) {
        self.audit_skipped.inc();
    }

    /// `candor_audit_findings_total` read back, every kind (zeros included).
    pub fn audit_findings_by_kind(&self) -> Vec<(&'static str, u64)> {
        Kind::ALL
            .iter()
            .zip(self.audit_findings.iter())
            .map(|(kind, counter)| (kind.as_str(), counter.get()))
            .collect()
    }

    /// `candor_audit_skipped_total` read back.
    pub fn audit_skipped_count(&self) -> u64 {
        self.audit_skipped.get()
    }

    /// Records a configuration reload attempt made at `at`.
    pub fn reload(&self, success: bool, at: std::time::SystemTime) {
        let result = if success { "success" } else { "error" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
        self.last_reload_successful.set(i64::from(success));
        if success {
            self.last_reload_success_time.set(unix_seconds(at));
        }
    }

    /// Counts a rewrite in `candor_rewrites_total` and records it for the status page, in one
    /// call so the two can never disagree. Only rewritten responses come here.
    pub fn rewrite(&self, rewrite: &Rewrite<'_>) {
        let (from, to, mode) = (
            rewrite.from.as_u16(),
            rewrite.to.as_u16(),
            rewrite.mode.as_str(),
        );
        let cached = REWRITE_COUNTERS.with(|cache| {
            let mut cache = cache.try_borrow_mut().ok()?;
            let hit = cache.iter().find(|c| {
                c.metrics == self.id
                    && c.from == from
                    && c.to == to
                    && c.mode == mode
                    && *c.rule == *rewrite.rule
            });
            if let Some(hit) = hit {
                hit.counter.inc();
                return Some(());
            }
            if cache.len() >= REWRITE_CACHE {
                return None;
            }
            let counter = self.rewrite_counter(rewrite.rule, from, to, mode);
            counter.inc();
            cache.push(CachedRewrite {
                metrics: self.id,
                rule: rewrite.rule.into(),
                from,
                to,
                mode,
                counter,
            });
            Some(())
        });
        if cached.is_none() {
            self.rewrite_counter(rewrite.rule, from, to, mode).inc();
        }
        self.recorder.record(rewrite);
    }

    fn rewrite_counter(&self, rule: &str, from: u16, to: u16, mode: &'static str) -> Counter {
        self.rewrites
            .get_or_create(&RewriteLabels {
                rule: rule.to_owned(),
                from,
                to,
                mode,
            })
            .clone()
    }

    /// Counts a header or member `rule` could not fill. Rare (a body that does not have what the
    /// rule expects), so the locked family lookup is fine here.
    pub fn template_failure(&self, rule: &str) {
        self.template_failures
            .get_or_create(&RuleLabels {
                rule: rule.to_owned(),
            })
            .inc();
    }

    /// Counts a response whose wanted body was not inspected.
    pub fn inspect_skipped(&self, reason: SkipReason) {
        self.skip_counters[reason as usize].inc();
    }

    /// Counts a response by the status sent to the client.
    pub fn response(&self, status: http::StatusCode) {
        let code = status.as_u16();
        let slot = usize::from(code)
            .checked_sub(100)
            .and_then(|i| self.requests_by_status.get(i));
        match slot {
            Some(slot) => slot
                .get_or_init(|| {
                    self.requests
                        .get_or_create(&StatusLabels { status: code })
                        .clone()
                })
                .inc(),
            None => self
                .requests
                .get_or_create(&StatusLabels { status: code })
                .inc(),
        };
    }

    /// Counts an upstream failure of `kind`.
    pub fn upstream_failure(&self, kind: FailureKind) {
        self.failure_counters[kind as usize].inc();
    }

    /// `candor_requests_total` read back: `(status, count)` for every status sent so far,
    /// ascending.
    pub fn requests_by_status(&self) -> Vec<(u16, u64)> {
        (100u16..)
            .zip(self.requests_by_status.iter())
            .filter_map(|(status, slot)| slot.get().map(|counter| (status, counter.get())))
            .collect()
    }

    /// `candor_upstream_failures_total` read back, every kind (zeros included).
    pub fn upstream_failures_by_kind(&self) -> Vec<(&'static str, u64)> {
        FailureKind::ALL
            .iter()
            .zip(self.failure_counters.iter())
            .map(|(kind, counter)| (kind.as_str(), counter.get()))
            .collect()
    }

    /// `candor_inspect_skipped_total` read back, every reason (zeros included).
    pub fn inspect_skipped_by_reason(&self) -> Vec<(&'static str, u64)> {
        SkipReason::ALL
            .iter()
            .zip(self.skip_counters.iter())
            .map(|(reason, counter)| (reason.as_str(), counter.get()))
            .collect()
    }

    /// The record of recent rewrites behind the status page.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Starts timing a request; the returned timer records when dropped.
    pub fn start_request(&self, start: Instant) -> RequestTimer {
        RequestTimer {
            start,
            histogram: self.duration.clone(),
            on_end: None,
        }
    }
}

/// Records a request's duration into the histogram when dropped: at the end of the response
/// body, or when the client goes away mid-body.
pub struct RequestTimer {
    start: Instant,
    histogram: DurationHistogram,
    on_end: Option<Box<dyn FnOnce(std::time::Duration) + Send>>,
}

impl RequestTimer {
    /// Also calls `f` with the duration when the request ends (the access log line).
    pub fn on_end(&mut self, f: Box<dyn FnOnce(std::time::Duration) + Send>) {
        self.on_end = Some(f);
    }
}

impl std::fmt::Debug for RequestTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestTimer")
            .field("start", &self.start)
            .finish_non_exhaustive()
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        let elapsed = self.start.elapsed();
        self.histogram.observe(elapsed);
        if let Some(on_end) = self.on_end.take() {
            on_end(elapsed);
        }
    }
}

pin_project! {
    /// A response body that stops its request's timer when it ends.
    #[derive(Debug)]
    pub struct TimedBody<B> {
        #[pin]
        inner: B,
        timer: Option<RequestTimer>,
    }
}

impl<B: Body> TimedBody<B> {
    /// Wraps `inner`; the timer stops at end of stream (immediately for an empty body).
    pub fn new(inner: B, timer: RequestTimer) -> Self {
        let timer = (!inner.is_end_stream()).then_some(timer);
        TimedBody { inner, timer }
    }

    /// Wraps `inner` without timing it.
    pub fn untimed(inner: B) -> Self {
        TimedBody { inner, timer: None }
    }
}

impl<B: Body> Body for TimedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = match this.inner.poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(frame) => frame,
        };
        if !matches!(frame, Some(Ok(_))) {
            this.timer.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn unix_seconds(at: std::time::SystemTime) -> i64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Renders `registry` in the Prometheus text exposition format 0.0.4.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::with_capacity(4096);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, registry);
    text
}

/// The `Content-Type` of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_enums_index_their_counters() {
        for (i, kind) in FailureKind::ALL.iter().enumerate() {
            assert_eq!(*kind as usize, i, "{kind:?}");
        }
        for (i, reason) in SkipReason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i, "{reason:?}");
        }
        for (i, kind) in Kind::ALL.iter().enumerate() {
            assert_eq!(*kind as usize, i, "{kind:?}");
        }
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.upstream_failure(FailureKind::Protocol);
        m.inspect_skipped(SkipReason::Busy);
        m.audit_finding(Kind::MissingRetryAfter);
        m.audit_skipped();
        let text = encode(&registry);
        assert!(
            text.contains("candor_audit_findings_total{kind=\"missing_retry_after\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("candor_audit_findings_total{kind=\"null_entity\"} 0"),
            "{text}"
        );
        assert!(text.contains("candor_audit_skipped_total 1"), "{text}");
        assert!(
            text.contains("candor_upstream_failures_total{kind=\"protocol\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("candor_inspect_skipped_total{reason=\"busy\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn counts_statuses_and_failures_in_text_format() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.response(http::StatusCode::OK);
        m.response(http::StatusCode::OK);
        m.response(http::StatusCode::BAD_GATEWAY);
        m.upstream_failure(FailureKind::Connect);
        drop(m.start_request(Instant::now()));
        let text = encode(&registry);
        assert!(
            text.contains("candor_requests_total{status=\"200\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("candor_requests_total{status=\"502\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("candor_upstream_failures_total{kind=\"connect\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("candor_upstream_failures_total{kind=\"timeout\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("candor_request_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE candor_requests_total counter"),
            "{text}"
        );
    }

    /// The per-thread counter cache keeps registries apart, and combinations past its size
    /// are still counted.
    #[test]
    fn rewrites_count_per_registry_and_past_the_cache() {
        let (mut one, mut two) = (Registry::default(), Registry::default());
        let (m1, m2) = (Metrics::register(&mut one), Metrics::register(&mut two));
        let method = http::Method::GET;
        let rewrite = |rule: &'static str, to: u16| Rewrite {
            rule,
            from: http::StatusCode::OK,
            to: http::StatusCode::from_u16(to).unwrap(),
            mode: crate::rules::Mode::Enforce,
            method: &method,
            path: "/",
            request_id: "",
        };
        m1.rewrite(&rewrite("a", 404));
        m1.rewrite(&rewrite("a", 404));
        m2.rewrite(&rewrite("a", 404));
        m1.rewrite(&rewrite("b", 404));
        for to in 400..(400 + REWRITE_CACHE as u16 + 10) {
            m2.rewrite(&rewrite("many", to));
        }
        m2.rewrite(&rewrite("many", 400 + REWRITE_CACHE as u16 + 5));
        let (t1, t2) = (encode(&one), encode(&two));
        let line = |rule: &str, to: u16, n: u64| {
            format!(
                "candor_rewrites_total{{rule=\"{rule}\",from=\"200\",to=\"{to}\",mode=\"enforce\"}} {n}"
            )
        };
        assert!(t1.contains(&line("a", 404, 2)), "{t1}");
        assert!(t1.contains(&line("b", 404, 1)), "{t1}");
        assert!(t2.contains(&line("a", 404, 1)), "{t2}");
        assert!(t2.contains(&line("many", 400, 1)), "{t2}");
        let past = 400 + REWRITE_CACHE as u16 + 5;
        assert!(t2.contains(&line("many", past, 2)), "{t2}");
    }
}
