//! The audit table: routes, their status histograms and findings, bounded by
//! `audit.max_routes`, shared by every worker of the process (one mutex, taken once per
//! recorded exchange, after the detectors ran outside it).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use super::detect::{self, Detected, Kind, Kinds};
use super::report::{self, Example, FindingReport, Honest, Report, RouteReport};
use super::route::Template;
use super::shallow::Shallow;
use super::Exchange;
use crate::builtin::scrub::Scrubber;

/// Most findings kept per route; past it new kinds or evidence on the route are counted only in
/// the metric.
pub(super) const MAX_FINDINGS_PER_ROUTE: usize = 16;

/// Most distinct statuses kept per route histogram; others count under `"other"`.
pub(super) const MAX_STATUSES: usize = 32;

/// Most honest members kept per route.
pub(super) const MAX_HONEST: usize = 8;

/// `[audit]`: whether the proxy observes its traffic, which share of it, and how many routes it
/// keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Observe at all (off by default).
    pub enabled: bool,
    /// The share of exchanges observed, 0.0 to 1.0.
    pub sample: f64,
    /// Routes (template and method) kept; new ones past it fold into `{other}`.
    pub max_routes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: false,
            sample: 1.0,
            max_routes: 1000,
        }
    }
}

/// The process's audit: one per process, kept across reloads (a reload changes its settings,
/// not what it found).
#[derive(Debug)]
pub struct Audit {
    enabled: AtomicBool,
    /// `sample` in millionths.
    sample: AtomicU64,
    max_routes: AtomicUsize,
    /// Exchanges offered to [`Audit::sample`], for even spacing without a random number.
    offered: AtomicU64,
    skipped: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    since: SystemTime,
    exchanges: u64,
    folded: bool,
    /// Keyed by method and template (ids of any class alike).
    routes: HashMap<(http::Method, Template), Route>,
}

impl State {
    fn new() -> State {
        State {
            since: SystemTime::now(),
            exchanges: 0,
            folded: false,
            routes: HashMap::new(),
        }
    }
}

#[derive(Debug)]
struct Route {
    /// The template with the id classes seen so far.
    template: Template,
    upstream: BTreeMap<u16, u64>,
    sent: BTreeMap<u16, u64>,
    honest: Vec<Honest>,
    findings: Vec<Finding>,
}

#[derive(Debug)]
struct Finding {
    detected: Detected,
    example: Example,
    count: u64,
    fixed: u64,
    first: SystemTime,
    last: SystemTime,
}

impl Audit {
    /// An audit with these settings and nothing found.
    pub fn new(settings: &Settings) -> Audit {
        let audit = Audit {
            enabled: AtomicBool::new(false),
            sample: AtomicU64::new(1_000_000),
            max_routes: AtomicUsize::new(1000),
            offered: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            state: Mutex::new(State::new()),
        };
        audit.configure(settings);
        audit
    }

    /// Applies new settings (a reload); what was found stays.
    pub fn configure(&self, settings: &Settings) {
        let millionths = (settings.sample.clamp(0.0, 1.0) * 1_000_000.0).round() as u64;
        self.sample.store(millionths, Ordering::Relaxed);
        self.max_routes
            .store(settings.max_routes.max(1), Ordering::Relaxed);
        self.enabled.store(settings.enabled, Ordering::Relaxed);
    }

    /// Whether the proxy observes its traffic.
    #[inline]
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Whether to observe the next exchange: exactly `sample` of them, evenly spaced.
    pub fn sample(&self) -> bool {
        let rate = self.sample.load(Ordering::Relaxed);
        if rate >= 1_000_000 {
            return true;
        }
        let n = self.offered.fetch_add(1, Ordering::Relaxed);
        // The n-th exchange is taken when it crosses a whole multiple of 1/sample.
        (n + 1) * rate / 1_000_000 > n * rate / 1_000_000
    }

    /// A sampled exchange was skipped: no inspection memory was free.
    pub fn skip(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs the detectors over `exchange` and records what they found; returns the kinds found
    /// (for the metric).
    pub fn record(&self, exchange: &Exchange<'_>, scrubber: &Scrubber) -> Kinds {
        let upstream = detect::detect(exchange, &exchange.upstream, scrubber);
        // What candor sent shows a finding no longer: a live rule or built-in fixed it.
        let sent = exchange
            .sent
            .map(|sent| detect::detect(exchange, &sent, scrubber).kinds());
        let template = Template::of(exchange.path);
        let classes = template.id_classes();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.exchanges += 1;
        let mut key = (exchange.method.clone(), template);
        let max_routes = self.max_routes.load(Ordering::Relaxed);
        if !state.routes.contains_key(&key) && state.routes.len() >= max_routes {
            state.folded = true;
            key = (exchange.method.clone(), Template::other());
        }
        let route = state.routes.entry(key).or_insert_with_key(|key| Route {
            template: key.1.clone(),
            upstream: BTreeMap::new(),
            sent: BTreeMap::new(),
            honest: Vec::new(),
            findings: Vec::new(),
        });
        if !route.template.is_other() {
            route.template.widen_to(&classes);
        }
        let upstream_status = exchange.upstream.status.as_u16();
        let sent_status = exchange.sent.map_or(upstream_status, |s| s.status.as_u16());
        count(&mut route.upstream, upstream_status);
        count(&mut route.sent, sent_status);
        for (pointer, value) in upstream.honest() {
            note_honest(&mut route.honest, pointer, value);
        }
        // Made at most once per exchange, and only when a finding keeps it.
        let mut example: Option<Example> = None;
        for detected in &upstream.found {
            let fixed = sent.is_some_and(|kinds| !kinds.contains(detected.kind));
            let full = route.findings.len() >= MAX_FINDINGS_PER_ROUTE;
            match route.findings.iter_mut().find(|f| {
                f.detected.kind == detected.kind && f.detected.evidence == detected.evidence
            }) {
                Some(finding) => {
                    finding.count += 1;
                    finding.fixed += u64::from(fixed);
                    finding.last = exchange.at;
                    // A whole example replaces a cut one (a test can replay it).
                    if !finding.example.complete {
                        let example = example.get_or_insert_with(|| {
                            detect::example(exchange, &exchange.upstream, scrubber)
                        });
                        if example.complete {
                            finding.example = example.clone();
                        }
                    }
                }
                None if !full => route.findings.push(Finding {
                    detected: detected.clone(),
                    example: example
                        .get_or_insert_with(|| {
                            detect::example(exchange, &exchange.upstream, scrubber)
                        })
                        .clone(),
                    count: 1,
                    fixed: u64::from(fixed),
                    first: exchange.at,
                    last: exchange.at,
                }),
                None => {}
            }
        }
        upstream.kinds()
    }

    /// Forgets everything found (`DELETE /audit`); observation goes on.
    pub fn reset(&self) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = State::new();
        self.skipped.store(0, Ordering::Relaxed);
    }

    /// What was found so far, with proposals (`mode = "shadow"`).
    pub fn report(&self) -> Report {
        let mut report = self.counts();
        super::propose::annotate(&mut report, false);
        report
    }

    /// What was found so far, without proposals: what the status page counts, every second.
    pub fn counts(&self) -> Report {
        let mut report = {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            snapshot(&state)
        };
        report.skipped = self.skipped.load(Ordering::Relaxed);
        report
    }
}

fn count(histogram: &mut BTreeMap<u16, u64>, status: u16) {
    if histogram.len() < MAX_STATUSES || histogram.contains_key(&status) {
        *histogram.entry(status).or_default() += 1;
    } else {
        // 0 stands for "other" in the report.
        *histogram.entry(0).or_default() += 1;
    }
}

/// Remembers `value` at `pointer` of an honest response; allocates only for a new one.
fn note_honest(honest: &mut Vec<Honest>, pointer: &str, value: &Shallow<'_>) {
    let entry = match honest.iter_mut().position(|h| h.pointer == pointer) {
        Some(i) => &mut honest[i],
        None if honest.len() < MAX_HONEST => {
            honest.push(Honest {
                pointer: pointer.to_owned(),
                values: Vec::new(),
            });
            honest.last_mut().expect("just pushed")
        }
        None => return,
    };
    if entry.values.len() < report::MAX_HONEST_VALUES
        && !entry.values.iter().any(|v| value.is_honest(v))
    {
        entry.values.extend(value.honest_value());
    }
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

fn histogram(h: &BTreeMap<u16, u64>) -> BTreeMap<String, u64> {
    h.iter()
        .map(|(status, n)| {
            let key = if *status == 0 {
                "other".to_owned()
            } else {
                status.to_string()
            };
            (key, *n)
        })
        .collect()
}

fn snapshot(state: &State) -> Report {
    let mut routes: Vec<RouteReport> = state
        .routes
        .iter()
        .map(|((method, _), route)| RouteReport {
            method: method.as_str().to_owned(),
            route: route.template.to_string(),
            path_regex: route.template.regex(),
            sample_path: route.template.sample_path(),
            upstream_statuses: histogram(&route.upstream),
            sent_statuses: histogram(&route.sent),
            honest: route.honest.clone(),
            findings: route
                .findings
                .iter()
                .map(|f| FindingReport {
                    kind: f.detected.kind,
                    count: f.count,
                    fixed: f.fixed,
                    first_seen: rfc3339(f.first),
                    last_seen: rfc3339(f.last),
                    evidence: f.detected.evidence.clone(),
                    example: f.example.clone(),
                    proposal: None,
                })
                .collect(),
        })
        .collect();
    routes.sort_by(|a, b| (&a.route, &a.method).cmp(&(&b.route, &b.method)));
    Report {
        since: rfc3339(state.since),
        exchanges: state.exchanges,
        skipped: 0,
        folded: state.folded,
        routes,
        unreachable: Vec::new(),
    }
}

impl Kind {
    /// Every kind, in the order the report and the metric list them.
    pub const ALL: [Kind; 14] = [
        Kind::ErrorInSuccess,
        Kind::NullEntity,
        Kind::StatusInBody,
        Kind::CreatedAs200,
        Kind::EmptyDelete200,
        Kind::Empty200,
        Kind::HtmlToApiClient,
        Kind::SoftErrorPage,
        Kind::LeakedInternals,
        Kind::ValidationAs500,
        Kind::DependencyAs500,
        Kind::MissingRetryAfter,
        Kind::ForbiddenWithoutCredentials,
        Kind::MethodNotAllowedWithoutAllow,
    ];
}
