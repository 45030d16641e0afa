//! Evaluating the rules against one response: pure, infallible, and lazy about the body.
//!
//! The normalize layer calls [`RuleSet::wants_status`] and [`RuleSet::needs_body`] with the
//! response head, reads the body only when asked to, then calls [`RuleSet::evaluate`] and
//! applies the [`Decision`]. Each rule's conditions are tested in a fixed order (status, method,
//! path, content type, headers, then the body: JSON, regex), cheapest first; the body's JSON is
//! parsed at most once, and only when a rule whose head conditions hold needs it.
//! [`super::explain`] walks the same checks, so what it reports is what evaluation did.

use std::cell::OnceCell;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::{Number, Value};

use super::extract::{Extracted, Found};
use super::plan::RulePlan;
use super::template::{FillError, RequestParts, MAX_MEMBERS_BYTES};
use super::{
    BodyAction, HeaderFill, HeaderMatch, HeaderTest, JsonCondition, JsonOp, Mode, RetryAfterSource,
    Rule, RuleSet,
};
use crate::headers::whole_seconds;
use crate::problem::sanitize_detail;

/// Largest `retry_after_from` value accepted, in seconds: what fits in ten digits. Anything
/// longer is more likely a timestamp or garbage than a delay worth telling a client.
pub(super) const MAX_RETRY_AFTER_SECS: u64 = 9_999_999_999;

/// A header map with nothing in it, for views of exchanges whose request headers no rule reads.
pub fn no_headers() -> &'static HeaderMap {
    static EMPTY: std::sync::OnceLock<HeaderMap> = std::sync::OnceLock::new();
    EMPTY.get_or_init(HeaderMap::new)
}

/// The parts of a response (and its request) rules look at.
#[derive(Debug, Clone, Copy)]
pub struct ResponseView<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request path, without the query.
    pub path: &'a str,
    /// The raw query string, empty when there is none.
    pub query: &'a str,
    /// The request headers rules test ([`RuleSet::request_headers`]); others may be missing.
    pub request_headers: &'a HeaderMap,
    /// The request id candor sent upstream (`{request_id}`); read as text only when a template
    /// needs it.
    pub request_id: Option<&'a HeaderValue>,
    /// The upstream's status.
    pub status: StatusCode,
    /// The upstream's response headers.
    pub headers: &'a HeaderMap,
    /// The decoded body if it was inspected, else `None`.
    pub body: Option<&'a [u8]>,
}

/// What the rules decided for one response.
#[derive(Debug, Clone, Default)]
pub struct Evaluation<'r> {
    /// The first matching enforce rule's decision: the one to apply.
    pub decision: Option<Decision<'r>>,
    /// Matching shadow rules before it, in order: to count and log, never to apply. An empty
    /// `Vec` does not allocate.
    pub shadows: Vec<Decision<'r>>,
}

/// What one matching rule does (or, in shadow mode, would do) to the response.
#[derive(Debug, Clone)]
pub struct Decision<'r> {
    /// The rule that matched.
    pub rule: &'r Rule,
    /// The new status; `None` keeps the upstream's.
    pub status: Option<StatusCode>,
    /// `Retry-After` in whole seconds, validated (never text copied from the body).
    pub retry_after: Option<u64>,
    /// What to do with the body.
    pub body: BodyAction,
    /// The problem document's `detail`, sanitised (only with [`BodyAction::Problem`]).
    pub detail: Option<String>,
    /// Headers to set, replacing any of the same name: the fixed ones and the templates that
    /// filled.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The extension members copied into the problem document, by name (only with
    /// [`BodyAction::Problem`]); at most [`MAX_MEMBERS_BYTES`] of JSON.
    pub members: Vec<(&'r str, Value)>,
    /// Headers and members the rule wanted but could not fill for this response: each was left
    /// out, the rest of the rewrite applies.
    pub unfilled: Vec<Unfilled<'r>>,
}

/// A header or member a rule could not fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unfilled<'r> {
    /// Which one.
    pub target: Target<'r>,
    /// Why.
    pub error: FillError,
}

/// What an [`Unfilled`] was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'r> {
    /// A `then.headers` entry.
    Header(&'r HeaderName),
    /// A `then.problem.members` entry.
    Member(&'r str),
}

impl std::fmt::Display for Target<'_> {
    /// `header location` or `member errors`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Header(name) => write!(f, "header {name}"),
            Target::Member(name) => write!(f, "member {name}"),
        }
    }
}

impl Decision<'_> {
    /// Whether it changes anything at all.
    ///
    /// A rule whose `status_from` resolved to nothing, with no fallback status, no
    /// `Retry-After`, no headers and the body kept, matched but rewrites nothing.
    pub fn is_effective(&self) -> bool {
        self.status.is_some()
            || self.retry_after.is_some()
            || self.body != BodyAction::Keep
            || !self.headers.is_empty()
    }
}

impl RuleSet {
    /// A table lookup: could any rule (enforce or shadow) match a response with this status?
    ///
    /// When not, the response can take the fast path, body untouched and unbuffered.
    pub fn wants_status(&self, status: StatusCode) -> bool {
        self.plan.wants.contains(status)
    }

    /// Head phase, before any body byte is read: does evaluating this response need its body?
    ///
    /// Walks the rules in order testing only status, method, path, content type and headers.
    /// True when some rule whose head conditions hold needs the body (JSON or body conditions,
    /// or `status_from`, `retry_after_from`, `detail_from`) before the first enforce rule that
    /// matches on its head alone and needs nothing from the body. `view.body` is ignored.
    pub fn needs_body(&self, view: &ResponseView<'_>) -> bool {
        for (rule, plan) in self.planned() {
            if check_head(rule, view).is_err() {
                continue;
            }
            if plan.needs_body {
                return true;
            }
            if rule.mode == Mode::Enforce {
                return false;
            }
        }
        false
    }

    /// Pure, infallible evaluation: the first matching enforce rule's decision, and the
    /// matching shadow rules before it.
    ///
    /// With `view.body == None` (not inspected), rules that need the body do not match. A body
    /// that is not JSON satisfies no `when.json` condition.
    #[inline]
    pub fn evaluate<'r>(&'r self, view: &ResponseView<'_>) -> Evaluation<'r> {
        if !self.wants_status(view.status) {
            return Evaluation::default();
        }
        self.evaluate_wanted(view)
    }

    /// [`RuleSet::evaluate`] past the status table: kept out of line, so a response no rule
    /// wants does not pay for this frame's set-up (the templates and members made it large).
    #[inline(never)]
    fn evaluate_wanted<'r>(&'r self, view: &ResponseView<'_>) -> Evaluation<'r> {
        let mut out = Evaluation::default();
        let context = Context::new(self, view);
        for (rule, plan) in self.planned() {
            if check(rule, plan, &context).is_err() {
                continue;
            }
            let decision = decide(rule, plan, &context);
            match rule.mode {
                Mode::Enforce => {
                    out.decision = Some(decision);
                    break;
                }
                Mode::Shadow => out.shadows.push(decision),
            }
        }
        out
    }

    /// Each rule with its precomputed plan, in order.
    pub(super) fn planned(&self) -> impl Iterator<Item = (&Rule, &RulePlan)> {
        self.rules.iter().zip(&self.plan.rules)
    }
}

/// One evaluation's state: the view, and the body's JSON once something needed it.
pub(super) struct Context<'r, 'v> {
    set: &'r RuleSet,
    pub(super) view: &'v ResponseView<'v>,
    json: OnceCell<Option<Result<Extracted, serde_json::Error>>>,
}

/// What a pointer slot resolves to in this response.
#[derive(Debug, Clone, Copy)]
pub(super) enum Lookup<'c> {
    /// What is there.
    Found(Found<'c>),
    /// The body is JSON but has nothing there.
    Missing,
    /// The body is not JSON (the parse error, for `explain`).
    NotJson(&'c serde_json::Error),
    /// The body was not inspected.
    NoBody,
}

impl<'c> Lookup<'c> {
    /// The value, if there is one and it was kept (see [`Found`]).
    pub(super) fn value(self) -> Option<&'c Value> {
        match self {
            Lookup::Found(found) => found.value(),
            _ => None,
        }
    }
}

impl<'r, 'v> Context<'r, 'v> {
    pub(super) fn new(set: &'r RuleSet, view: &'v ResponseView<'v>) -> Self {
        Context {
            set,
            view,
            json: OnceCell::new(),
        }
    }

    /// Resolves a pointer slot, parsing the body on first use.
    pub(super) fn lookup(&self, slot: usize) -> Lookup<'_> {
        let parsed = self.json.get_or_init(|| {
            self.view
                .body
                .map(|body| self.set.plan.extractor.extract(body))
        });
        match parsed {
            None => Lookup::NoBody,
            Some(Err(error)) => Lookup::NotJson(error),
            Some(Ok(extracted)) => self
                .set
                .plan
                .extractor
                .get(extracted, slot)
                .map_or(Lookup::Missing, Lookup::Found),
        }
    }
}

/// The first condition of a rule that does not hold.
#[derive(Debug, Clone, Copy)]
pub(super) enum Failure<'c> {
    /// `when.status`.
    Status,
    /// `when.method`.
    Method,
    /// `when.path`.
    Path,
    /// `when.query`.
    Query,
    /// `when.request_header[i]`.
    RequestHeader(usize, HeaderFailure),
    /// `when.content_type`, and the response has no `content-type`.
    ContentTypeAbsent,
    /// `when.content_type`, and the value does not match.
    ContentType,
    /// `when.header[i]`.
    Header(usize, HeaderFailure),
    /// The rule needs the body and it was not inspected.
    NotInspected,
    /// `when.json[i]`, with what its pointer found.
    Json(usize, Lookup<'c>),
    /// `when.body`.
    Body,
}

/// How a header condition failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HeaderFailure {
    /// It must be there and is not.
    Absent,
    /// It must not be there and is.
    Present,
    /// No value of it matches.
    Mismatch,
}

/// The first of `tests` that does not hold in `headers`.
fn check_headers(tests: &[HeaderMatch], headers: &HeaderMap) -> Result<(), (usize, HeaderFailure)> {
    for (i, header) in tests.iter().enumerate() {
        let mut values = headers.get_all(&header.name).iter().peekable();
        let present = values.peek().is_some();
        match &header.test {
            HeaderTest::Present if !present => return Err((i, HeaderFailure::Absent)),
            HeaderTest::Absent if present => return Err((i, HeaderFailure::Present)),
            HeaderTest::Present | HeaderTest::Absent => {}
            HeaderTest::Matches(_) if !present => return Err((i, HeaderFailure::Absent)),
            // A repeated header holds when any of its values matches.
            HeaderTest::Matches(re) => {
                if !values.any(|v| text(v).is_some_and(|v| re.is_match(v))) {
                    return Err((i, HeaderFailure::Mismatch));
                }
            }
        }
    }
    Ok(())
}

/// Tests the conditions that need only the response head.
pub(super) fn check_head(rule: &Rule, view: &ResponseView<'_>) -> Result<(), Failure<'static>> {
    let when = &rule.when;
    if !when.status.is_empty() && !when.status.iter().any(|s| s.matches(view.status)) {
        return Err(Failure::Status);
    }
    if !when.method.is_empty() && !when.method.contains(view.method) {
        return Err(Failure::Method);
    }
    if when.path.as_ref().is_some_and(|re| !re.is_match(view.path)) {
        return Err(Failure::Path);
    }
    if when
        .query
        .as_ref()
        .is_some_and(|re| !re.is_match(view.query))
    {
        return Err(Failure::Query);
    }
    check_headers(&when.request_header, view.request_headers)
        .map_err(|(i, why)| Failure::RequestHeader(i, why))?;
    if let Some(re) = &when.content_type {
        // The value as sent, parameters and all (`application/json; charset=utf-8`).
        let value = view
            .headers
            .get(CONTENT_TYPE)
            .ok_or(Failure::ContentTypeAbsent)?;
        if !text(value).is_some_and(|v| re.is_match(v)) {
            return Err(Failure::ContentType);
        }
    }
    check_headers(&when.header, view.headers).map_err(|(i, why)| Failure::Header(i, why))
}

/// A header value as text; obs-text that is not UTF-8 matches no text regex.
pub(super) fn text(value: &HeaderValue) -> Option<&str> {
    std::str::from_utf8(value.as_bytes()).ok()
}

/// Tests every condition of `rule`, in order, stopping at the first that fails.
pub(super) fn check<'c>(
    rule: &Rule,
    plan: &RulePlan,
    context: &'c Context<'_, '_>,
) -> Result<(), Failure<'c>> {
    check_head(rule, context.view)?;
    let Some(body) = context.view.body else {
        return if plan.needs_body {
            Err(Failure::NotInspected)
        } else {
            Ok(())
        };
    };
    for (i, (condition, slot)) in rule.when.json.iter().zip(&plan.json).enumerate() {
        let found = context.lookup(*slot);
        if !holds(&condition.op, found) {
            return Err(Failure::Json(i, found));
        }
    }
    if rule.when.body.as_ref().is_some_and(|re| !re.is_match(body)) {
        return Err(Failure::Body);
    }
    Ok(())
}

impl JsonCondition {
    /// Whether this condition holds in a whole parsed document (`[[tests]]` `expect.json`, over
    /// the body candor sends), with the same semantics as in a rule.
    pub fn holds_in(&self, doc: &Value) -> bool {
        match self.pointer.resolve(doc) {
            Some(value) => op_holds(&self.op, value),
            None => matches!(self.op, JsonOp::Exists(false)),
        }
    }
}

/// Whether a JSON condition holds for what its pointer found. Without JSON, none does.
fn holds(op: &JsonOp, found: Lookup<'_>) -> bool {
    match found {
        Lookup::Found(Found::Value(value)) => op_holds(op, value),
        // Only the kind of container was kept, which is all these tests need: compilation
        // keeps whole values for `equals`/`one_of` against arrays and tables.
        // A value too large to keep whole is only ever a member's: a condition on the same
        // pointer or under it makes it unbounded (`extract`), so no condition sees this.
        Lookup::Found(Found::Array | Found::Object | Found::TooLarge) => match op {
            JsonOp::Exists(exists) => *exists,
            JsonOp::IsNull(null) => !*null,
            _ => false,
        },
        // A missing field is never null; it only satisfies `exists = false`.
        Lookup::Missing => matches!(op, JsonOp::Exists(false)),
        Lookup::NotJson(_) | Lookup::NoBody => false,
    }
}

fn op_holds(op: &JsonOp, value: &Value) -> bool {
    let number = |test: &dyn Fn(f64) -> bool| value.as_f64().is_some_and(test);
    match op {
        JsonOp::Equals(expected) => json_eq(value, expected),
        JsonOp::IsNull(null) => value.is_null() == *null,
        JsonOp::Matches(re) => value.as_str().is_some_and(|s| re.is_match(s)),
        JsonOp::OneOf(list) => list.iter().any(|expected| json_eq(value, expected)),
        JsonOp::Exists(exists) => *exists,
        JsonOp::Gt(n) => number(&|x| x > *n),
        JsonOp::Gte(n) => number(&|x| x >= *n),
        JsonOp::Lt(n) => number(&|x| x < *n),
        JsonOp::Lte(n) => number(&|x| x <= *n),
    }
}

/// JSON equality with numbers compared by value, at every depth: `1042 == 1042.0`.
pub(super) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => number_eq(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Exact numeric equality across serde_json's integer and float forms (no rounding through
/// `f64` for integers beyond 2^53).
fn number_eq(x: &Number, y: &Number) -> bool {
    let integer = |n: &Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    // A float equals an integer only when it is that integer exactly; the cast saturates, and
    // no integer serde_json holds is near i128's bounds.
    let float_is = |f: Option<f64>, i: i128| f.is_some_and(|f| f.fract() == 0.0 && f as i128 == i);
    match (integer(x), integer(y)) {
        (Some(a), Some(b)) => a == b,
        (Some(a), None) => float_is(y.as_f64(), a),
        (None, Some(b)) => float_is(x.as_f64(), b),
        (None, None) => x.as_f64() == y.as_f64(),
    }
}

/// The decision of a rule whose conditions hold.
pub(super) fn decide<'r>(
    rule: &'r Rule,
    plan: &RulePlan,
    context: &Context<'_, '_>,
) -> Decision<'r> {
    let read = |slot: Option<usize>| slot.and_then(|s| context.lookup(s).value());
    let status = read(plan.status_from)
        .and_then(status_of)
        .or(rule.then.status);
    let retry_after = match &rule.then.retry_after {
        Some(RetryAfterSource::Fixed(delay)) => Some(whole_seconds(*delay)),
        Some(RetryAfterSource::From(_)) => read(plan.retry_after_from).and_then(seconds_of),
        None => None,
    };
    let request = RequestParts {
        path: context.view.path,
        query: context.view.query,
        method: context.view.method.as_str(),
        // Not UTF-8 (never, for an id candor checked or made) fills as empty; what a template
        // makes of it is checked as a header value anyway.
        request_id: context
            .view
            .request_id
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
            .unwrap_or(""),
    };
    let mut unfilled = Vec::new();
    let mut headers = Vec::with_capacity(rule.then.headers.len());
    for (set, slots) in rule.then.headers.iter().zip(&plan.headers) {
        let filled = match &set.value {
            HeaderFill::Static(value) => Ok(value.clone()),
            HeaderFill::Template(template) => template.fill(&set.name, &request, |i| {
                slots.get(i).and_then(|slot| context.lookup(*slot).value())
            }),
        };
        match filled {
            Ok(value) => headers.push((set.name.clone(), value)),
            Err(error) => unfilled.push(Unfilled {
                target: Target::Header(&set.name),
                error,
            }),
        }
    }
    let mut members = Vec::new();
    if rule.then.body == BodyAction::Problem {
        let mut budget = MAX_MEMBERS_BYTES;
        for (member, slot) in rule.then.problem.members.iter().zip(&plan.members) {
            // A missing pointer leaves the member out: the document says what the body said.
            let value = match context.lookup(*slot) {
                Lookup::Found(Found::Value(value)) => value,
                Lookup::Found(Found::TooLarge) => {
                    unfilled.push(Unfilled {
                        target: Target::Member(&member.name),
                        error: FillError::MembersTooLarge,
                    });
                    continue;
                }
                _ => continue,
            };
            // `"name":value,`: the name is letters, digits and `_`, so needs no escaping.
            let size = member.name.len() + 4 + json_len(value);
            if size > budget {
                unfilled.push(Unfilled {
                    target: Target::Member(&member.name),
                    error: FillError::MembersTooLarge,
                });
                continue;
            }
            budget -= size;
            members.push((member.name.as_str(), value.clone()));
        }
    }
    Decision {
        rule,
        status,
        retry_after,
        body: rule.then.body,
        detail: read(plan.detail_from).and_then(detail_of),
        headers,
        members,
        unfilled,
    }
}

/// The length of `value` as compact JSON, counted without writing it anywhere.
fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` to a sink that never fails cannot fail; an error would count as huge.
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// A `status_from` value: a JSON integer or a three-digit string, used only when it is a
/// client or server error (400..=599); a body claiming 200 is no reason to rewrite.
pub(super) fn status_of(value: &Value) -> Option<StatusCode> {
    let code = match value {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) if s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()?
        }
        _ => return None,
    };
    if !(400..=599).contains(&code) {
        return None;
    }
    StatusCode::from_u16(u16::try_from(code).ok()?).ok()
}

/// A `retry_after_from` value: a non-negative JSON integer or a string of 1 to 10 ASCII digits,
/// at most [`MAX_RETRY_AFTER_SECS`]. Anything else (negative, fractional, exponent, text, CR/LF)
/// is dropped rather than copied into a header (catalogue row B8, tests/README.md).
pub(super) fn seconds_of(value: &Value) -> Option<u64> {
    let seconds = match value {
        // `as_u64` is `None` for negatives and for anything serde_json parsed as a float,
        // which includes `30.0` and `3e1`.
        Value::Number(n) => n.as_u64()?,
        Value::String(s)
            if (1..=10).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            s.parse().ok()?
        }
        _ => return None,
    };
    (seconds <= MAX_RETRY_AFTER_SECS).then_some(seconds)
}

/// A `detail_from` value: a string, or a number or boolean as its JSON text, sanitised.
pub(super) fn detail_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => sanitize_detail(s),
        Value::Number(_) | Value::Bool(_) => sanitize_detail(&value.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
