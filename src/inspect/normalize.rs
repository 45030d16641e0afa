//! The normaliser's decisions: which responses are worth a look, what the rules and built-ins
//! make of a response, and how that outcome is applied to the response head and body.
//!
//! Pure and synchronous: the tower layer (`layer.rs`) does the waiting, `candor explain` and
//! `candor test` call [`Normalizer::decide`] directly on a canned response, so what they print is
//! exactly what the proxy does.

use std::time::SystemTime;

use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH,
    CONTENT_RANGE, CONTENT_TYPE, ETAG, LAST_MODIFIED, RETRY_AFTER,
};
use http::{Method, StatusCode, Uri};

use crate::builtin::{accept, html, ratelimit, Builtin};
use crate::config::cases::BodyKind;
use crate::config::Config;
use crate::headers::{self, remove_listed, X_CANDOR_ORIGINAL_STATUS, X_CANDOR_RULE};
use crate::metrics::SkipReason;
use crate::problem::{Problem, CONTENT_TYPE_PROBLEM};
use crate::rules::{BodyAction, Mode, ResponseView, Unfilled};

/// A status code as a header value (`X-Candor-Original-Status`), from a table made once: a
/// rewrite copies a reference count instead of formatting and allocating.
fn status_value(status: StatusCode) -> HeaderValue {
    static VALUES: std::sync::OnceLock<Box<[HeaderValue]>> = std::sync::OnceLock::new();
    let values = VALUES.get_or_init(|| (100u16..600).map(HeaderValue::from).collect());
    usize::from(status.as_u16())
        .checked_sub(100)
        .and_then(|i| values.get(i))
        .cloned()
        .unwrap_or_else(|| HeaderValue::from(status.as_u16()))
}

/// Left in a rewritten response's extensions when access logging is on: what the upstream sent and
/// which rules changed it.
#[derive(Debug, Clone)]
pub struct Rewritten {
    /// The upstream's status.
    pub upstream_status: StatusCode,
    /// The rules and built-ins that applied, comma-separated.
    pub rules: String,
}

/// What the normaliser needs from the request once the response arrives.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The request method.
    pub method: Method,
    /// The request target (only the path is used: `instance`, `when.path`).
    pub uri: Uri,
    /// The client's `Accept`, for the HTML-or-JSON choice.
    pub accept: Option<HeaderValue>,
    /// The request id candor sent upstream.
    pub request_id: Option<HeaderValue>,
    /// The request headers rules test (`when.request_header`), and only those: empty, without
    /// allocating, when no rule tests any.
    pub headers: HeaderMap,
}

impl RequestInfo {
    /// What the normaliser keeps of a request: cheap clones of shared bytes.
    pub fn of<B>(req: &http::Request<B>, normalizer: &Normalizer) -> RequestInfo {
        let mut headers = HeaderMap::new();
        for name in normalizer.config.rules.request_headers() {
            for value in req.headers().get_all(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        RequestInfo {
            method: req.method().clone(),
            uri: req.uri().clone(),
            accept: req.headers().get(http::header::ACCEPT).cloned(),
            request_id: req.headers().get(&headers::X_REQUEST_ID).cloned(),
            headers,
        }
    }

    /// The request id as text, empty when there is none.
    pub fn request_id(&self) -> &str {
        self.request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The view rules evaluate, with the response's `status`, `headers` and `body`.
    fn view<'v>(
        &'v self,
        status: StatusCode,
        headers: &'v HeaderMap,
        body: Option<&'v [u8]>,
    ) -> ResponseView<'v> {
        ResponseView {
            method: &self.method,
            path: self.uri.path(),
            query: self.uri.query().unwrap_or(""),
            request_headers: &self.headers,
            request_id: self.request_id(),
            status,
            headers,
            body,
        }
    }
}

/// What the normaliser decided for one response, as `candor explain` and `candor test` report
/// it: left in the response's extensions by a [`NormalizeLayer`](super::NormalizeLayer) made
/// `reporting`. A response without one had nothing decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Enforced rules and built-ins, in order.
    pub applied: Vec<String>,
    /// Shadow rules that matched.
    pub shadows: Vec<String>,
    /// Why a wanted body was not inspected.
    pub skipped: Option<SkipReason>,
    /// What became of the body.
    pub body: BodyKind,
}

impl Report {
    /// The report of `outcome`, once applied: `body` is what the application made of the body.
    pub fn of(outcome: &Outcome<'_>, body: BodyKind) -> Report {
        let names = |list: &[Applied<'_>]| list.iter().map(|a| a.rule.to_owned()).collect();
        Report {
            applied: names(&outcome.applied),
            shadows: names(&outcome.shadows),
            skipped: outcome.skipped,
            body,
        }
    }
}

/// What to do with a response before any body byte is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing could want it: forward untouched.
    Pass,
    /// Decide on the head alone; `Some(reason)` when the body was wanted but cannot be
    /// inspected.
    Head(Option<SkipReason>),
    /// Read the body (up to `inspect.max_body_bytes`) and decide on it.
    Inspect,
}

/// One change a rule or built-in made (or, in shadow mode, would have made).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied<'a> {
    /// Rule name, or a built-in's name.
    pub rule: &'a str,
    /// The same name as a header value.
    pub rule_value: &'a HeaderValue,
    /// Status before.
    pub from: StatusCode,
    /// Status after.
    pub to: StatusCode,
    /// `Enforce` or `Shadow`.
    pub mode: Mode,
}

/// The new body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyPlan {
    /// The upstream's bytes, exactly as sent (same `Content-Encoding`).
    Keep,
    /// A problem document (already serialised).
    Problem(Bytes),
    /// No body.
    Empty,
}

impl BodyPlan {
    /// The kind of body this plan sends.
    pub fn kind(&self) -> BodyKind {
        match self {
            BodyPlan::Keep => BodyKind::Keep,
            BodyPlan::Problem(_) => BodyKind::Problem,
            BodyPlan::Empty => BodyKind::Empty,
        }
    }
}

/// Everything the normaliser decided for one response.
#[derive(Debug, Clone)]
pub struct Outcome<'a> {
    /// The upstream's status.
    pub upstream_status: StatusCode,
    /// The status to send.
    pub status: StatusCode,
    /// Enforced changes, in order (a rule first, then built-ins).
    pub applied: Vec<Applied<'a>>,
    /// Shadow rules that matched.
    pub shadows: Vec<Applied<'a>>,
    /// The body to send.
    pub body: BodyPlan,
    /// Headers to set (rule headers, `Retry-After`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Why a wanted body was not inspected.
    pub skipped: Option<SkipReason>,
    /// Set when the body was scrubbed: what kind of internals it leaked (for the log).
    pub leak: Option<&'static str>,
    /// The matching enforce rule's headers and members that could not be filled (logged and
    /// counted), also when leaving them out left the rule nothing to change.
    pub unfilled: Vec<Unfilled<'a>>,
    /// The rule `unfilled` belongs to.
    pub unfilled_rule: Option<&'a str>,
}

impl Outcome<'_> {
    /// Whether the response changes at all.
    pub fn changes_response(&self) -> bool {
        !self.applied.is_empty()
    }
}

/// The compiled normaliser: config-derived lookups computed once.
#[derive(Debug)]
pub struct Normalizer {
    config: std::sync::Arc<Config>,
    /// Per status 100..=599: could any rule or built-in want this response?
    wanted: Box<[bool]>,
    /// Bodies being read for inspection, across workers: bounds the memory inspection may hold
    /// at `inspect.max_concurrent` × `inspect.max_body_bytes` (plus decoding).
    inspections: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Normalizer {
    /// Precomputes which statuses are worth a look.
    pub fn new(config: std::sync::Arc<Config>) -> Self {
        let wanted = (100u16..600)
            .map(|code| {
                let Ok(status) = StatusCode::from_u16(code) else {
                    return false;
                };
                config.rules.wants_status(status)
                    || (config.html_errors.enabled && code >= 400)
                    || (config.scrub.enabled && code >= 500)
                    || config.retry_after.statuses.contains(&status)
            })
            .collect();
        let inspections =
            std::sync::Arc::new(tokio::sync::Semaphore::new(config.inspect.max_concurrent));
        Normalizer {
            config,
            wanted,
            inspections,
        }
    }

    /// A place among the bodies being inspected, or `None` when `inspect.max_concurrent` are
    /// already being read: the response then streams through uninspected (reason `busy`).
    pub fn inspection_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.inspections.clone().try_acquire_owned().ok()
    }

    /// The configuration this normaliser applies.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn wants(&self, status: StatusCode) -> bool {
        usize::from(status.as_u16())
            .checked_sub(100)
            .and_then(|i| self.wanted.get(i))
            .copied()
            .unwrap_or(false)
    }

    /// Decides, from the head alone, whether the response is worth a look and whether its body
    /// must be read. `body_may_exist` is false for HEAD requests and empty bodies;
    /// `body_len_hint` is the body's known minimum length.
    pub fn plan(
        &self,
        req: &RequestInfo,
        status: StatusCode,
        headers: &HeaderMap,
        body_may_exist: bool,
        body_len_hint: u64,
    ) -> Plan {
        if status.is_informational() || !self.wants(status) {
            return Plan::Pass;
        }
        let view = req.view(status, headers, None);
        let config = &self.config;
        let rules_need_body = config.rules.wants_status(status) && config.rules.needs_body(&view);
        let scrub_needs_body = config.scrub.enabled && status.is_server_error();
        let html_needs_body = config.html_errors.enabled
            && status.is_client_error()
            && html::is_html(headers.get(CONTENT_TYPE))
            && !accept::prefers_html(req.accept.as_ref());
        if !(rules_need_body || scrub_needs_body || html_needs_body) || !body_may_exist {
            return Plan::Head(None);
        }
        if !self.inspectable_type(headers.get(CONTENT_TYPE)) {
            // Only count a skip when a rule (not just a possible scrub) wanted the body.
            return Plan::Head(rules_need_body.then_some(SkipReason::ContentType));
        }
        if body_len_hint > self.config.inspect.max_body_bytes as u64 {
            return Plan::Head(Some(SkipReason::TooLarge));
        }
        let mut encodings = headers.get_all(CONTENT_ENCODING).iter();
        if let Some(encoding) = encodings.next() {
            // Codings split over several header lines are rare enough to be refused rather than
            // joined: decoding them in the wrong order would only yield "corrupt".
            if encodings.next().is_some()
                || crate::inspect::decode::parse_codings(encoding.as_bytes()).is_err()
            {
                return Plan::Head(Some(SkipReason::Encoding));
            }
        }
        Plan::Inspect
    }

    fn inspectable_type(&self, content_type: Option<&HeaderValue>) -> bool {
        let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let media = value.split(';').next().unwrap_or("").trim();
        self.config
            .inspect
            .content_types
            .iter()
            .any(|t| t.eq_ignore_ascii_case(media))
    }

    /// Runs the rules and built-ins. `body` is the decoded body when it was inspected.
    pub fn decide<'a>(
        &'a self,
        req: &RequestInfo,
        status: StatusCode,
        headers: &HeaderMap,
        body: Option<&[u8]>,
        skipped: Option<SkipReason>,
    ) -> Outcome<'a> {
        let config = &*self.config;
        let mut outcome = Outcome {
            upstream_status: status,
            status,
            applied: Vec::new(),
            shadows: Vec::new(),
            body: BodyPlan::Keep,
            headers: Vec::new(),
            skipped,
            leak: None,
            unfilled: Vec::new(),
            unfilled_rule: None,
        };
        if status.is_informational() || !self.wants(status) {
            return outcome;
        }
        let path = req.uri.path();
        let problem = |status: StatusCode, detail: Option<String>| {
            let mut doc = Problem::new(status)
                .instance(path)
                .request_id(req.request_id.as_ref());
            if let Some(detail) = detail {
                doc = doc.detail(detail);
            }
            BodyPlan::Problem(doc.to_bytes())
        };

        let mut retry_after_set = headers.contains_key(RETRY_AFTER);
        if config.rules.wants_status(status) {
            let view = req.view(status, headers, body);
            let evaluation = config.rules.evaluate(&view);
            for shadow in &evaluation.shadows {
                outcome.shadows.push(Applied {
                    rule: &shadow.rule.name,
                    rule_value: &shadow.rule.name_value,
                    from: status,
                    to: shadow.status.unwrap_or(status),
                    mode: Mode::Shadow,
                });
            }
            let mut decision = evaluation.decision;
            // A rule whose only change was a header it could not fill matched and changes
            // nothing, but what it left out is still logged and counted.
            if let Some(d) = decision.as_mut().filter(|d| !d.is_effective()) {
                let rule = d.rule;
                outcome.unfilled = std::mem::take(&mut d.unfilled);
                outcome.unfilled_rule = Some(&rule.name);
            }
            if let Some(decision) = decision.filter(|d| d.is_effective()) {
                let to = decision.status.unwrap_or(status);
                outcome.status = to;
                outcome.applied.push(Applied {
                    rule: &decision.rule.name,
                    rule_value: &decision.rule.name_value,
                    from: status,
                    to,
                    mode: Mode::Enforce,
                });
                outcome.body = match decision.body {
                    BodyAction::Keep => BodyPlan::Keep,
                    BodyAction::Empty => BodyPlan::Empty,
                    BodyAction::Problem => {
                        let shape = &decision.rule.then.problem;
                        let mut doc = Problem::new(to)
                            .instance(path)
                            .request_id(req.request_id.as_ref())
                            .members(&decision.members);
                        if let Some(kind) = &shape.kind {
                            doc = doc.kind(kind);
                        }
                        if let Some(title) = &shape.title {
                            doc = doc.title(title);
                        }
                        if let Some(detail) = &decision.detail {
                            doc = doc.detail(detail.as_str());
                        }
                        BodyPlan::Problem(doc.to_bytes())
                    }
                };
                retry_after_set |= decision.headers.iter().any(|(n, _)| n == RETRY_AFTER);
                outcome.headers.extend(decision.headers);
                if let Some(seconds) = decision.retry_after {
                    outcome
                        .headers
                        .push((RETRY_AFTER, headers::retry_after(seconds)));
                    retry_after_set = true;
                }
                outcome.unfilled = decision.unfilled;
                outcome.unfilled_rule = Some(&decision.rule.name);
            }
        }

        let to = outcome.status;
        if outcome.body == BodyPlan::Keep {
            let leak = match (&config.scrub.scrubber, body) {
                (Some(scrubber), Some(body)) if config.scrub.enabled && to.is_server_error() => {
                    scrubber.find(body)
                }
                _ => None,
            };
            if let Some(leak) = leak {
                outcome.leak = Some(leak.kind);
                outcome.body = problem(to, None);
                outcome.applied.push(Applied {
                    rule: Builtin::Scrub.name(),
                    rule_value: Builtin::Scrub.header_value(),
                    from: to,
                    to,
                    mode: Mode::Enforce,
                });
            } else if config.html_errors.enabled
                && (to.is_client_error() || to.is_server_error())
                && html::is_html(headers.get(CONTENT_TYPE))
                && !accept::prefers_html(req.accept.as_ref())
            {
                // A 4xx page's heading may explain the error to the client; a 5xx page's text
                // is exactly what must not leak.
                let detail = body.filter(|_| to.is_client_error()).and_then(html::detail);
                outcome.body = problem(to, detail);
                outcome.applied.push(Applied {
                    rule: Builtin::HtmlErrors.name(),
                    rule_value: Builtin::HtmlErrors.header_value(),
                    from: to,
                    to,
                    mode: Mode::Enforce,
                });
            }
        }

        if !retry_after_set && config.retry_after.statuses.contains(&to) {
            let seconds = ratelimit::retry_after_from_reset(headers, SystemTime::now())
                .unwrap_or_else(|| headers::whole_seconds(config.retry_after.default));
            outcome
                .headers
                .push((RETRY_AFTER, headers::retry_after(seconds)));
            outcome.applied.push(Applied {
                rule: Builtin::RetryAfter.name(),
                rule_value: Builtin::RetryAfter.header_value(),
                from: to,
                to,
                mode: Mode::Enforce,
            });
        }
        outcome
    }
}

/// Headers that describe the upstream's representation and become false when its body is
/// replaced (RFC 9110 §8).
static REPRESENTATION: [HeaderName; 10] = [
    CONTENT_TYPE,
    CONTENT_ENCODING,
    CONTENT_LENGTH,
    CONTENT_RANGE,
    ETAG,
    LAST_MODIFIED,
    HeaderName::from_static("content-md5"),
    HeaderName::from_static("digest"),
    // RFC 9530.
    HeaderName::from_static("content-digest"),
    HeaderName::from_static("repr-digest"),
];

/// The position of `name` in [`REPRESENTATION`], by one match on its (lower-case) text.
fn representation_index(name: &HeaderName) -> Option<usize> {
    match name.as_str() {
        "content-type" => Some(0),
        "content-encoding" => Some(1),
        "content-length" => Some(2),
        "content-range" => Some(3),
        "etag" => Some(4),
        "last-modified" => Some(5),
        "content-md5" => Some(6),
        "digest" => Some(7),
        "content-digest" => Some(8),
        "repr-digest" => Some(9),
        _ => None,
    }
}

/// Applies `outcome` to a response head. Returns what the body becomes (taken out of `outcome`,
/// so a problem document is moved rather than shared); `Keep` leaves the caller's body as it is.
pub fn apply_head(
    outcome: &mut Outcome<'_>,
    status: &mut StatusCode,
    headers: &mut HeaderMap,
    extensions: &mut http::Extensions,
    debug_headers: bool,
) -> BodyPlan {
    if !outcome.changes_response() {
        return BodyPlan::Keep;
    }
    if outcome.status != *status {
        *status = outcome.status;
        // The upstream's reason phrase described the old status.
        extensions.remove::<hyper::ext::ReasonPhrase>();
    }
    let mut body = std::mem::replace(&mut outcome.body, BodyPlan::Keep);
    // RFC 9110 §15.3.5, §15.4.5: 204 and 304 have no content.
    if matches!(*status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED) {
        body = BodyPlan::Empty;
    }
    if body != BodyPlan::Keep {
        remove_listed(headers, &REPRESENTATION, representation_index);
    }
    if let BodyPlan::Problem(_) = body {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_PROBLEM));
    }
    if body != BodyPlan::Keep
        || (outcome.status != outcome.upstream_status
            && (status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS))
    {
        // An error candor wrote, or a success turned into a transient error: caches must not
        // keep it as the resource.
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    for (name, value) in &outcome.headers {
        headers.insert(name.clone(), value.clone());
    }
    if debug_headers {
        let value = match outcome.applied.as_slice() {
            [one] => Some(one.rule_value.clone()),
            many => {
                let names: Vec<&str> = many.iter().map(|a| a.rule).collect();
                HeaderValue::from_str(&names.join(", ")).ok()
            }
        };
        if let Some(value) = value {
            headers.insert(X_CANDOR_RULE.clone(), value);
        }
        headers.insert(
            X_CANDOR_ORIGINAL_STATUS.clone(),
            status_value(outcome.upstream_status),
        );
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn representation_index_matches_the_list() {
        for (i, name) in REPRESENTATION.iter().enumerate() {
            assert_eq!(representation_index(name), Some(i), "{name}");
        }
        assert_eq!(representation_index(&CACHE_CONTROL), None);
    }
}
