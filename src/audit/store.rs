//! The audit table: routes, their status histograms and findings, bounded by
//! `audit.max_routes`, shared by every worker of the process (one mutex, taken once per
//! recorded exchange, after the detectors ran outside it).

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use super::detect::{self, Detected, Kind, Kinds};
use super::report::{self, Example, FindingReport, Honest, Report, RouteReport};
use super::route::{Shape, Template};
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
    routes: Vec<Route>,
    /// Indexes of `routes` by [`Template::key`]: a path is looked up by its [`Shape`] (one
    /// hash, no allocation) and its template built only for a new route.
    index: HashMap<u64, Vec<usize>, BuildHasherDefault<Prehashed>>,
    hasher: RandomState,
}

impl State {
    fn new() -> State {
        State {
            since: SystemTime::now(),
            exchanges: 0,
            folded: false,
            routes: Vec::new(),
            index: HashMap::default(),
            hasher: RandomState::new(),
        }
    }

    /// The route of `method` whose template `shape` matches.
    fn find(&self, method: &http::Method, shape: &Shape<'_>) -> Option<usize> {
        let key = shape.key(method, &self.hasher);
        let candidates = self.index.get(&key)?;
        candidates.iter().copied().find(|&i| {
            let route = &self.routes[i];
            route.method == *method && route.template.matches(shape)
        })
    }

    fn insert(&mut self, method: &http::Method, template: Template) -> usize {
        let key = template.key(method, &self.hasher);
        let i = self.routes.len();
        self.routes.push(Route {
            method: method.clone(),
            template,
            upstream: BTreeMap::new(),
            sent: BTreeMap::new(),
            honest: Vec::new(),
            findings: Vec::new(),
        });
        self.index.entry(key).or_default().push(i);
        i
    }
}

/// The hasher of keys that are hashes already ([`Template::key`]).
#[derive(Debug, Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed with it; any other input still hashes, less evenly.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Debug)]
struct Route {
    method: http::Method,
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
        let shape = Shape::of(exchange.path);
        let method = exchange.method;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.exchanges += 1;
        let max_routes = self.max_routes.load(Ordering::Relaxed);
        let i = match state.find(method, &shape) {
            Some(i) => i,
            None if state.routes.len() >= max_routes => {
                state.folded = true;
                match state.find(method, &Shape::other()) {
                    Some(i) => i,
                    None => state.insert(method, Template::other()),
                }
            }
            None => state.insert(method, Template::of_shape(&shape)),
        };
        let route = &mut state.routes[i];
        if !route.template.is_other() {
            route.template.widen_to_path(&shape);
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
        .map(|route| RouteReport {
            method: route.method.as_str().to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Body, Heads, RequestSigns, Response};
    use http::{Method, StatusCode};

    fn record(audit: &Audit, method: &Method, path: &str) {
        let headers = Heads::default();
        let signs = RequestSigns::default();
        let exchange = Exchange {
            method,
            path,
            request: &signs,
            upstream: Response {
                status: StatusCode::OK,
                headers: &headers,
                body: Body::Unseen,
            },
            sent: None,
            at: SystemTime::now(),
        };
        audit.record(&exchange, &Scrubber::new(&[]).expect("no patterns"));
    }

    fn routes(audit: &Audit) -> Vec<(String, String, u64)> {
        let report = audit.counts();
        let mut out: Vec<_> = report
            .routes
            .iter()
            .map(|r| {
                (
                    r.method.clone(),
                    r.route.clone(),
                    r.upstream_statuses["200"],
                )
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn paths_group_by_template_and_method_and_new_ones_fold_past_max_routes() {
        let audit = Audit::new(&Settings {
            enabled: true,
            max_routes: 3,
            ..Settings::default()
        });
        for path in ["/users/1", "/users/2", "/users/abcdef0123456789"] {
            record(&audit, &Method::GET, path);
        }
        record(&audit, &Method::DELETE, "/users/3");
        record(&audit, &Method::GET, "/");
        // Full: new routes fold, known ones are still found.
        record(&audit, &Method::GET, "/orders/9");
        record(&audit, &Method::GET, "/items");
        record(&audit, &Method::POST, "/items");
        record(&audit, &Method::GET, "/users/4");
        let g = |m: &str, r: &str, n| (m.to_owned(), r.to_owned(), n);
        assert_eq!(
            routes(&audit),
            vec![
                g("DELETE", "/users/{id}", 1),
                g("GET", "/", 1),
                g("GET", "/users/{id}", 4),
                g("GET", "{other}", 2),
                g("POST", "{other}", 1),
            ]
        );
        let report = audit.counts();
        assert!(report.folded);
        let users = report
            .routes
            .iter()
            .find(|r| r.route == "/users/{id}" && r.method == "GET");
        // Widened by the hex id.
        assert_eq!(
            users.map(|r| r.path_regex.as_str()),
            Some("^/users/[0-9A-Fa-f]+$")
        );
        audit.reset();
        assert!(routes(&audit).is_empty());
    }
}
