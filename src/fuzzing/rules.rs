//! The `rules` fuzz target: a small rule set, compiled through the real config schema, against
//! one response.

use std::collections::HashMap;

use arbitrary::{Arbitrary, Unstructured};
use http::header::{CONTENT_LOCATION, LOCATION};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use toml::{Table, Value};

use super::{header_map, is_text, method, sections, Blob, Word, METHODS, PATHS};
use crate::config::from_toml;
use crate::rules::template::{Part, MAX_FILLED_LEN};
use crate::rules::{
    BodyAction, Decision, FillError, HeaderFill, Mode, Outcome, ResponseView, RuleSet, Target,
    Template,
};

/// `retry_after_from` values above this are dropped (`rules::eval::MAX_RETRY_AFTER_SECS`).
const MAX_RETRY_AFTER: u64 = 9_999_999_999;

/// Headers a rule may never set (they frame the message or are hop-by-hop).
const FORBIDDEN: [&str; 8] = [
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Evaluates a rule set against a response; must never panic.
///
/// Text input (starts with `#`): `[[rules]]` TOML, a `%%` line, `METHOD PATH[?QUERY] STATUS`,
/// then `name: value` lines for the response's headers and `> name: value` lines for the
/// request's, then optionally a `%%` line and the body (without it the body was not inspected).
/// The request id is the `> x-request-id` value, else `fuzz-1`. Structured input: rules built
/// from typed conditions and actions, with a request (query, headers, id) of its own.
///
/// Oracles: `evaluate` decides exactly what `explain` traces (the first matching enforce rule
/// and the shadow rules matched before it); when `needs_body` says no, the body changes nothing;
/// a rule `check` calls unreachable never matches; `Retry-After` ≤ 9,999,999,999 and renders
/// as its digits; set headers are valid and never framing or hop-by-hop; `detail` is sanitised;
/// a decision's headers are the rule's, in order, each either set or `unfilled` (never both, a
/// fixed one always set); a filled template value is visible ASCII, spaces and tabs, at most
/// 2048 bytes, and is the template's literal text and request parts verbatim with body values
/// between them, which in `Location`/`Content-Location` are each one percent-encoded path
/// segment (no `/`, `?`, `#`, never a dot segment); members are the rule's, in order, within
/// `MAX_MEMBERS_BYTES`, only in a problem document, and never both copied and `unfilled`.
pub fn rules(data: &[u8]) {
    let Some(case) = (if is_text(data) {
        text(data)
    } else {
        structured(data)
    }) else {
        return;
    };
    let Ok(config) = from_toml(&case.toml, "fuzz.toml", HashMap::new()) else {
        return;
    };
    check(&config.rules, &case);
}

/// One decoded input.
struct Case {
    toml: String,
    method: Method,
    path: String,
    query: String,
    request_headers: HeaderMap,
    request_id: String,
    status: StatusCode,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
}

/// Prepended to the rules; the built-ins are off (compiling the scrubber's patterns would cost
/// more than the rest of the input, and they are the `inspect` target's business).
const UPSTREAM: &str = "[upstream]\nurl = \"http://127.0.0.1:9\"\n[scrub]\nenabled = false\n\n";

fn text(data: &[u8]) -> Option<Case> {
    let parts = sections(data);
    let [rules, head, rest @ ..] = parts.as_slice() else {
        return None;
    };
    // `> name: value` lines are the request's headers, the others the response's.
    let mut lines = head
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let line = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let mut headers = HeaderMap::new();
    let mut request_headers = HeaderMap::new();
    for l in lines {
        let (map, l) = match l.strip_prefix(b">") {
            Some(rest) => (&mut request_headers, rest),
            None => (&mut headers, l),
        };
        if let Some((name, value)) = super::field(l) {
            map.append(name, value);
        }
    }
    let mut words = line.split_ascii_whitespace();
    let method = method(words.next().unwrap_or("GET"));
    let target = words.next().unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let status = words
        .next()
        .and_then(|s| s.parse().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let request_id = request_headers
        .get("x-request-id")
        .map_or("fuzz-1".into(), |v| {
            String::from_utf8_lossy(v.as_bytes()).into_owned()
        });
    Some(Case {
        toml: format!("{UPSTREAM}{}", String::from_utf8_lossy(rules)),
        method,
        path: path.to_owned(),
        query: query.to_owned(),
        request_headers,
        request_id,
        status,
        headers,
        body: rest.first().map(|b| b.to_vec()),
    })
}

#[derive(Debug, Arbitrary)]
struct Structured {
    rules: Vec<RuleIn>,
    method: Word,
    path: Word,
    query: Option<Word>,
    request_headers: Vec<(Word, Blob)>,
    request_id: Word,
    status: u16,
    headers: Vec<(Word, Blob)>,
    body: Option<BodyIn>,
}

#[derive(Debug, Arbitrary)]
struct RuleIn {
    shadow: bool,
    status: Vec<StatusIn>,
    method: Vec<Word>,
    path: Option<Word>,
    query: Option<Word>,
    request_header: Vec<(Word, HeaderTestIn)>,
    content_type: Option<Word>,
    header: Vec<(Word, HeaderTestIn)>,
    json: Vec<(Word, OpIn)>,
    body: Option<Word>,
    then: ThenIn,
}

/// A `when.header` / `when.request_header` test, as written.
#[derive(Debug, Arbitrary)]
enum HeaderTestIn {
    /// `{ name }`.
    Present,
    /// `{ name, matches }`.
    Matches(Word),
    /// `{ name, absent = true }`.
    Absent,
    /// `{ name, absent = false }`: the same as present.
    NotAbsent,
    /// `{ name, matches, absent = true }`: a check error.
    Both(Word),
}

#[derive(Debug, Arbitrary)]
enum StatusIn {
    Code(u16),
    Class(u8),
}

#[derive(Debug, Arbitrary)]
enum OpIn {
    Equals(JsonIn),
    IsNull(bool),
    Matches(Word),
    OneOf(Vec<JsonIn>),
    Exists(bool),
    Gt(NumberIn),
    Gte(NumberIn),
    Lt(NumberIn),
    Lte(NumberIn),
}

#[derive(Debug, Arbitrary)]
enum NumberIn {
    Small(i8),
    Any(f64),
}

impl NumberIn {
    fn get(&self) -> f64 {
        match self {
            NumberIn::Small(n) => f64::from(*n),
            NumberIn::Any(f) => *f,
        }
    }
}

#[derive(Debug, Arbitrary)]
struct ThenIn {
    status: Option<u16>,
    status_from: Option<Word>,
    retry_after: Option<RetryIn>,
    body: u8,
    detail_from: Option<Word>,
    headers: Vec<(Word, ValueIn)>,
    problem: Option<ProblemIn>,
}

/// A `then.headers` value: a template (most of them have placeholders) or a fixed value.
#[derive(Debug, Arbitrary)]
enum ValueIn {
    Template(Word),
    Fixed(Word),
}

/// `then.problem`.
#[derive(Debug, Arbitrary)]
struct ProblemIn {
    /// Written even when `then.body` is not `"problem"` (a check error).
    stray: bool,
    kind: Option<Word>,
    title: Option<Word>,
    members: Vec<(Word, Word)>,
}

#[derive(Debug, Arbitrary)]
enum RetryIn {
    Fixed(u32),
    From(Word),
}

/// A JSON value, for bodies and for `equals` / `one_of`.
#[derive(Debug, Arbitrary)]
pub(super) enum JsonIn {
    Null,
    Bool(bool),
    Small(i16),
    Int(i64),
    Float(f64),
    Str(Word),
    Array(Vec<JsonIn>),
    Object(Vec<(Word, JsonIn)>),
}

#[derive(Debug, Arbitrary)]
enum BodyIn {
    Json(JsonIn),
    Raw(Vec<u8>),
}

/// Pointers the example rules use, and edge cases of RFC 6901.
const POINTERS: [&str; 17] = [
    "/id",
    "/a/0",
    "/data/id",
    "/status",
    "/code",
    "/message",
    "/errors",
    "/errors/0/field",
    "/error",
    "/retry_in",
    "/data",
    "/http_status",
    "",
    "/",
    "/a~1b",
    "/m~0n",
    "/errors/-",
];

/// Object keys matching the pointers, and string values the example rules test for (and the
/// values a `Location` template must encode or refuse).
const WORDS: [&str; 27] = [
    "id",
    "a",
    "0",
    "42",
    ".",
    "..",
    "a b/c",
    "../x",
    "%2e%2E",
    "x\r\nset-cookie: y",
    "é",
    "status",
    "code",
    "message",
    "errors",
    "error",
    "retry_in",
    "data",
    "http_status",
    "a/b",
    "m~n",
    "field",
    "error",
    "rate_limited",
    "user not found",
    "503",
    "30",
];

const PATTERNS: [&str; 12] = [
    "json",
    "^/users/",
    r"^/users/\d+$",
    "(?i)not found",
    r"^\s*\{\s*\}\s*$",
    "yes",
    "",
    ".*",
    "^$",
    "(a|b)*c",
    r"[\x00-\xff]",
    "(?-u:\\xff)",
];

/// `when.query` patterns.
const QUERY_PATTERNS: [&str; 6] = ["^$", "(^|&)debug=1(&|$)", "id=", "^page=\\d+", ".", "%"];

/// Raw query strings of the request.
const QUERIES: [&str; 8] = [
    "",
    "a=1",
    "debug=1&x=2",
    "page=2&sort=-id",
    "id=../..",
    "q=%0d%0a",
    "{}",
    "x=a b",
];

/// Request ids (what `{request_id}` fills).
const REQUEST_IDS: [&str; 6] = ["", "r-1", "abc-123", "01HZX3K8", "a/../b", "x\r\ny"];

/// Request header names the `when.request_header` conditions test.
const REQUEST_HEADER_NAMES: [&str; 8] = [
    "accept",
    "authorization",
    "prefer",
    "x-api-version",
    "x-request-id",
    "if-none-match",
    "content-type",
    "host",
];

/// Request header values.
const REQUEST_HEADER_VALUES: [&str; 8] = [
    "application/json",
    "text/html",
    "Bearer abc",
    "2",
    "return=minimal",
    "\"v1\"",
    "",
    "*/*",
];

/// Names `then.headers` sets: the ones a template is encoded for, others, and a forbidden one.
const SET_HEADER_NAMES: [&str; 10] = [
    "location",
    "content-location",
    "www-authenticate",
    "allow",
    "etag",
    "link",
    "x-request-id",
    "cache-control",
    "retry-after",
    "connection",
];

/// `then.headers` templates, the last ones malformed (a check error).
const TEMPLATES: [&str; 28] = [
    "/x/{/id}",
    "{path}/{/a/0}",
    "{method} {request_id}",
    "{{{query}}}",
    "/users/{/data/id}",
    "{path}?{query}",
    "/orders/{/code}/items/{/message}",
    "{/status}",
    "{/id}{/code}",
    "{/id}.{/code}",
    "../{/id}",
    "/{/id}/../x",
    "/x?next={/id}#{/code}",
    "W/\"{/code}\"",
    "Bearer realm=\"{path}\", error=\"{/error}\"",
    "GET, {method}",
    "<{path}>; rel=\"self\"",
    "{request_id}",
    "{/retry_in}",
    "{{}}",
    "{/",
    "{nope}",
    "}",
    "{}",
    "{/a~2}",
    "{/a{/b}}",
    "é{/id}",
    "x\u{1}{path}",
];

/// Fixed `then.headers` values.
const FIXED_VALUES: [&str; 6] = ["/x/1", "no-store", "GET, HEAD", "Bearer", "", "é"];

/// `then.problem.type` values, valid and not.
const PROBLEM_TYPES: [&str; 6] = [
    "https://errors.example.com/validation",
    "/errors/validation",
    "about:blank",
    "not a uri",
    "",
    "http://[::1",
];

/// `then.problem.title` values, valid and not.
const TITLES: [&str; 5] = ["Validation failed", "Not found", "", "  ", "a\u{1}b"];

/// `then.problem.members` names: good ones, the reserved ones and invalid ones.
const MEMBER_NAMES: [&str; 14] = [
    "errors",
    "field",
    "code",
    "retry_in",
    "Errors_2",
    "type",
    "title",
    "status",
    "detail",
    "instance",
    "request_id",
    "1bad",
    "bad-name",
    "",
];

impl JsonIn {
    /// As JSON (a non-finite float becomes `null`, as serde_json does).
    pub(super) fn json(&self, depth: usize) -> serde_json::Value {
        use serde_json::Value as J;
        if depth > 16 {
            return J::Null;
        }
        match self {
            JsonIn::Null => J::Null,
            JsonIn::Bool(b) => J::Bool(*b),
            JsonIn::Small(n) => J::from(*n),
            JsonIn::Int(n) => J::from(*n),
            JsonIn::Float(f) => J::from(*f),
            JsonIn::Str(w) => J::String(w.get(&WORDS)),
            JsonIn::Array(items) => {
                J::Array(items.iter().take(8).map(|i| i.json(depth + 1)).collect())
            }
            JsonIn::Object(members) => J::Object(
                members
                    .iter()
                    .take(8)
                    .map(|(k, v)| (k.get(&WORDS), v.json(depth + 1)))
                    .collect(),
            ),
        }
    }

    /// As TOML, which has no `null`: it becomes the string `"null"`.
    fn toml(&self, depth: usize) -> Value {
        if depth > 16 {
            return Value::Boolean(false);
        }
        match self {
            JsonIn::Null => Value::String("null".into()),
            JsonIn::Bool(b) => Value::Boolean(*b),
            JsonIn::Small(n) => Value::Integer(i64::from(*n)),
            JsonIn::Int(n) => Value::Integer(*n),
            JsonIn::Float(f) => Value::Float(*f),
            JsonIn::Str(w) => Value::String(w.get(&WORDS)),
            JsonIn::Array(items) => {
                Value::Array(items.iter().take(8).map(|i| i.toml(depth + 1)).collect())
            }
            JsonIn::Object(members) => Value::Table(
                members
                    .iter()
                    .take(8)
                    .map(|(k, v)| (k.get(&WORDS), v.toml(depth + 1)))
                    .collect(),
            ),
        }
    }
}

fn structured(data: &[u8]) -> Option<Case> {
    let input = Structured::arbitrary_take_rest(Unstructured::new(data)).ok()?;
    let rules: Vec<Value> = input
        .rules
        .iter()
        .take(5)
        .enumerate()
        .map(|(i, r)| Value::Table(rule(i, r)))
        .collect();
    let mut root = Table::new();
    let mut upstream = Table::new();
    upstream.insert("url".into(), Value::String("http://127.0.0.1:9".into()));
    root.insert("upstream".into(), Value::Table(upstream));
    let mut scrub = Table::new();
    scrub.insert("enabled".into(), Value::Boolean(false));
    root.insert("scrub".into(), Value::Table(scrub));
    root.insert("rules".into(), Value::Array(rules));
    let toml = toml::to_string(&root).ok()?;
    let body = input.body.as_ref().map(|b| match b {
        BodyIn::Json(v) => serde_json::to_vec(&v.json(0)).unwrap_or_default(),
        BodyIn::Raw(bytes) => bytes.clone(),
    });
    let mut request_headers = HeaderMap::new();
    for (name, value) in input.request_headers.iter().take(8) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.get(&REQUEST_HEADER_NAMES).as_bytes()),
            HeaderValue::from_bytes(&value.get(&REQUEST_HEADER_VALUES)),
        ) {
            request_headers.append(name, value);
        }
    }
    Some(Case {
        toml,
        method: method(&input.method.get(&METHODS)),
        path: input.path.get(&PATHS),
        query: input
            .query
            .as_ref()
            .map_or(String::new(), |q| q.get(&QUERIES)),
        request_headers,
        request_id: input.request_id.get(&REQUEST_IDS),
        status: StatusCode::from_u16(100 + input.status % 500).unwrap_or(StatusCode::OK),
        headers: header_map(&input.headers),
        body,
    })
}

fn rule(index: usize, spec: &RuleIn) -> Table {
    let string = |s: String| Value::String(s);
    let mut when = Table::new();
    if !spec.status.is_empty() {
        let list = spec.status.iter().take(4).map(|s| match s {
            StatusIn::Code(c) => Value::Integer(i64::from(100 + c % 500)),
            StatusIn::Class(c) => string(format!("{}xx", 1 + c % 5)),
        });
        when.insert("status".into(), Value::Array(list.collect()));
    }
    if !spec.method.is_empty() {
        let list = spec.method.iter().take(3).map(|m| string(m.get(&METHODS)));
        when.insert("method".into(), Value::Array(list.collect()));
    }
    if let Some(p) = &spec.path {
        when.insert("path".into(), string(p.get(&PATTERNS)));
    }
    if let Some(q) = &spec.query {
        when.insert("query".into(), string(q.get(&QUERY_PATTERNS)));
    }
    if !spec.request_header.is_empty() {
        let list = header_tests(&spec.request_header, &REQUEST_HEADER_NAMES);
        when.insert("request_header".into(), list);
    }
    if let Some(p) = &spec.content_type {
        when.insert("content_type".into(), string(p.get(&PATTERNS)));
    }
    if !spec.header.is_empty() {
        when.insert(
            "header".into(),
            header_tests(&spec.header, &super::HEADER_NAMES),
        );
    }
    if !spec.json.is_empty() {
        let list = spec.json.iter().take(4).map(|(pointer, op)| {
            let mut t = Table::new();
            t.insert("pointer".into(), string(pointer.get(&POINTERS)));
            let (key, value) = match op {
                OpIn::Equals(v) => ("equals", v.toml(0)),
                OpIn::IsNull(b) => ("is_null", Value::Boolean(*b)),
                OpIn::Matches(p) => ("matches", string(p.get(&PATTERNS))),
                OpIn::OneOf(list) => (
                    "one_of",
                    Value::Array(list.iter().take(4).map(|v| v.toml(0)).collect()),
                ),
                OpIn::Exists(b) => ("exists", Value::Boolean(*b)),
                OpIn::Gt(n) => ("gt", Value::Float(n.get())),
                OpIn::Gte(n) => ("gte", Value::Float(n.get())),
                OpIn::Lt(n) => ("lt", Value::Float(n.get())),
                OpIn::Lte(n) => ("lte", Value::Float(n.get())),
            };
            t.insert(key.into(), value);
            Value::Table(t)
        });
        when.insert("json".into(), Value::Array(list.collect()));
    }
    if let Some(p) = &spec.body {
        when.insert("body".into(), string(p.get(&PATTERNS)));
    }
    let then = &spec.then;
    let mut action = Table::new();
    if let Some(s) = then.status {
        action.insert("status".into(), Value::Integer(i64::from(200 + s % 400)));
    }
    if let Some(p) = &then.status_from {
        action.insert("status_from".into(), string(p.get(&POINTERS)));
    }
    match &then.retry_after {
        Some(RetryIn::Fixed(ms)) => {
            action.insert(
                "retry_after".into(),
                string(format!("{}ms", ms % 90_000_000)),
            );
        }
        Some(RetryIn::From(p)) => {
            action.insert("retry_after_from".into(), string(p.get(&POINTERS)));
        }
        None => {}
    }
    let body = ["keep", "problem", "empty"][usize::from(then.body % 3)];
    action.insert("body".into(), string(body.into()));
    if let (Some(p), "problem") = (&then.detail_from, body) {
        action.insert("detail_from".into(), string(p.get(&POINTERS)));
    }
    if !then.headers.is_empty() {
        let list = then.headers.iter().take(4).map(|(name, value)| {
            let mut t = Table::new();
            t.insert("name".into(), string(name.get(&SET_HEADER_NAMES)));
            let value = match value {
                ValueIn::Template(w) => w.get(&TEMPLATES),
                ValueIn::Fixed(w) => w.get(&FIXED_VALUES),
            };
            t.insert("value".into(), string(value));
            Value::Table(t)
        });
        action.insert("headers".into(), Value::Array(list.collect()));
    }
    if let Some(p) = then
        .problem
        .as_ref()
        .filter(|p| p.stray || body == "problem")
    {
        let mut t = Table::new();
        if let Some(kind) = &p.kind {
            t.insert("type".into(), string(kind.get(&PROBLEM_TYPES)));
        }
        if let Some(title) = &p.title {
            t.insert("title".into(), string(title.get(&TITLES)));
        }
        if !p.members.is_empty() {
            let members =
                p.members.iter().take(6).map(|(name, pointer)| {
                    (name.get(&MEMBER_NAMES), string(pointer.get(&POINTERS)))
                });
            t.insert("members".into(), Value::Table(members.collect()));
        }
        action.insert("problem".into(), Value::Table(t));
    }
    let mut rule = Table::new();
    rule.insert("name".into(), string(format!("r{index}")));
    if spec.shadow {
        rule.insert("mode".into(), string("shadow".into()));
    }
    rule.insert("when".into(), Value::Table(when));
    rule.insert("then".into(), Value::Table(action));
    rule
}

/// A `when.header` or `when.request_header` list.
fn header_tests(tests: &[(Word, HeaderTestIn)], names: &[&str]) -> Value {
    let list = tests.iter().take(3).map(|(name, test)| {
        let mut t = Table::new();
        t.insert("name".into(), Value::String(name.get(names)));
        let (matches, absent) = match test {
            HeaderTestIn::Present => (None, None),
            HeaderTestIn::Matches(m) => (Some(m), None),
            HeaderTestIn::Absent => (None, Some(true)),
            HeaderTestIn::NotAbsent => (None, Some(false)),
            HeaderTestIn::Both(m) => (Some(m), Some(true)),
        };
        if let Some(m) = matches {
            t.insert("matches".into(), Value::String(m.get(&PATTERNS)));
        }
        if let Some(absent) = absent {
            t.insert("absent".into(), Value::Boolean(absent));
        }
        Value::Table(t)
    });
    Value::Array(list.collect())
}

/// The oracles, on one compiled rule set and response.
fn check(set: &RuleSet, case: &Case) {
    // The view carries the id as candor holds it, a header value (never CR/LF or NUL).
    let request_id = http::HeaderValue::from_str(&case.request_id).ok();
    let view = ResponseView {
        method: &case.method,
        path: &case.path,
        query: &case.query,
        request_headers: &case.request_headers,
        request_id: request_id.as_ref(),
        status: case.status,
        headers: &case.headers,
        body: case.body.as_deref(),
    };
    let evaluation = set.evaluate(&view);
    let traces = set.explain(&view);
    for trace in &traces {
        let _ = trace.to_string();
    }

    // evaluate and explain agree.
    let mut shadows = Vec::new();
    let mut winner = None;
    for trace in &traces {
        if let Outcome::Matched { decision, .. } = &trace.outcome {
            match trace.rule.mode {
                Mode::Shadow => shadows.push(decision),
                Mode::Enforce => {
                    winner = Some(decision);
                    break;
                }
            }
        }
    }
    match (&evaluation.decision, winner) {
        (None, None) => {}
        (Some(a), Some(b)) if same(a, b) => {}
        (a, b) => panic!(
            "evaluate decided {:?} but explain traced {:?}",
            a.as_ref().map(ToString::to_string),
            b.map(ToString::to_string)
        ),
    }
    assert!(
        evaluation.shadows.len() == shadows.len()
            && evaluation
                .shadows
                .iter()
                .zip(&shadows)
                .all(|(a, b)| same(a, b)),
        "evaluate's shadow rules {:?} differ from explain's {:?}",
        names(evaluation.shadows.iter()),
        names(shadows.iter().copied())
    );

    // Every decision, enforced or shadow, is safe to write into a response.
    for decision in evaluation.decision.iter().chain(&evaluation.shadows) {
        decision_is_safe(decision);
        headers_are_the_rules(decision, &view);
        members_are_the_rules(decision);
    }

    // Deterministic, and the body matters only when `needs_body` says so.
    let again = set.evaluate(&view);
    assert!(
        same_evaluation(&evaluation, &again),
        "evaluate is not deterministic"
    );
    let head_only = ResponseView { body: None, ..view };
    if !set.needs_body(&head_only) && view.body.is_some() {
        let without = set.evaluate(&head_only);
        assert!(
            same_evaluation(&evaluation, &without),
            "needs_body said no, yet the body changed the decision ({:?} vs {:?})",
            evaluation.decision.as_ref().map(ToString::to_string),
            without.decision.as_ref().map(ToString::to_string)
        );
    }

    // A rule `candor check` calls unreachable never matches.
    for unreachable in set.unreachable() {
        for trace in &traces {
            if trace.rule.name == unreachable.rule {
                assert!(
                    !matches!(trace.outcome, Outcome::Matched { .. }),
                    "rule {} matched although check says {} always wins over it",
                    unreachable.rule,
                    unreachable.because
                );
            }
        }
    }
}

fn decision_is_safe(decision: &Decision<'_>) {
    if let Some(seconds) = decision.retry_after {
        assert!(
            seconds <= MAX_RETRY_AFTER,
            "Retry-After {seconds} from rule {}",
            decision.rule.name
        );
        let value = crate::headers::retry_after(seconds);
        assert_eq!(
            value.as_bytes(),
            seconds.to_string().as_bytes(),
            "Retry-After header for {seconds}"
        );
    }
    for (name, value) in &decision.headers {
        assert!(
            !FORBIDDEN.contains(&name.as_str()),
            "rule {} sets {name}",
            decision.rule.name
        );
        assert!(
            value
                .as_bytes()
                .iter()
                .all(|b| *b == b'\t' || (*b >= 0x20 && *b != 0x7f)),
            "rule {} sets {name} to an invalid value {value:?}",
            decision.rule.name
        );
    }
    if let Some(detail) = &decision.detail {
        super::problem::detail_is_sanitised(detail);
    }
    let copied: usize = decision
        .members
        .iter()
        .map(|(name, value)| name.len() + 4 + value.to_string().len())
        .sum();
    assert!(
        copied <= crate::rules::MAX_MEMBERS_BYTES,
        "rule {} copied {copied} bytes of members",
        decision.rule.name
    );
    if let Some(status) = decision.status {
        assert!(
            (200..=599).contains(&status.as_u16()),
            "rule {} rewrites to {status}",
            decision.rule.name
        );
    }
}

fn same(a: &Decision<'_>, b: &Decision<'_>) -> bool {
    std::ptr::eq(a.rule, b.rule)
        && a.status == b.status
        && a.retry_after == b.retry_after
        && a.body == b.body
        && a.detail == b.detail
        && a.headers == b.headers
        && a.members == b.members
        && a.unfilled == b.unfilled
}

fn same_evaluation(a: &crate::rules::Evaluation<'_>, b: &crate::rules::Evaluation<'_>) -> bool {
    let decisions = match (&a.decision, &b.decision) {
        (None, None) => true,
        (Some(x), Some(y)) => same(x, y),
        _ => false,
    };
    decisions
        && a.shadows.len() == b.shadows.len()
        && a.shadows.iter().zip(&b.shadows).all(|(x, y)| same(x, y))
}

fn names<'a, 'r: 'a>(decisions: impl Iterator<Item = &'a Decision<'r>>) -> Vec<&'a str> {
    decisions.map(|d| d.rule.name.as_str()).collect()
}

/// The decision's headers are the rule's `then.headers`, in order: each one set, or `unfilled`
/// (only a template can be), never both; a template's value is [`filled_is_safe`].
fn headers_are_the_rules(decision: &Decision<'_>, view: &ResponseView<'_>) {
    let rule = decision.rule;
    let mut set = decision.headers.iter();
    for entry in &rule.then.headers {
        let skipped: Vec<FillError> = decision
            .unfilled
            .iter()
            .filter(|u| matches!(u.target, Target::Header(name) if std::ptr::eq(name, &entry.name)))
            .map(|u| u.error)
            .collect();
        match (&entry.value, skipped.as_slice()) {
            (HeaderFill::Template(_), [error]) => {
                assert!(
                    *error != FillError::MembersTooLarge,
                    "rule {}: header {} unfilled for a member's reason",
                    rule.name,
                    entry.name
                );
                continue;
            }
            (_, []) => {}
            (value, errors) => panic!(
                "rule {}: header {} ({value:?}) unfilled as {errors:?}",
                rule.name, entry.name
            ),
        }
        let Some((name, value)) = set.next() else {
            panic!(
                "rule {}: header {} neither set nor unfilled",
                rule.name, entry.name
            );
        };
        assert_eq!(
            name, &entry.name,
            "rule {}: headers out of order",
            rule.name
        );
        match &entry.value {
            HeaderFill::Static(fixed) => assert_eq!(
                value, fixed,
                "rule {}: fixed header {name} changed",
                rule.name
            ),
            HeaderFill::Template(template) => {
                filled_is_safe(&rule.name, template, name, value, view);
            }
        }
    }
    assert!(
        set.next().is_none(),
        "rule {} sets headers it does not have: {:?}",
        rule.name,
        decision.headers
    );
    for unfilled in &decision.unfilled {
        let known = match unfilled.target {
            Target::Header(name) => rule
                .then
                .headers
                .iter()
                .any(|h| std::ptr::eq(&h.name, name)),
            Target::Member(name) => rule.then.problem.members.iter().any(|m| m.name == name),
        };
        assert!(
            known,
            "rule {}: unfilled {} is not one of its own",
            rule.name, unfilled.target
        );
    }
}

/// A filled template value: visible ASCII, spaces and tabs, at most [`MAX_FILLED_LEN`]; the
/// template's literals and request parts verbatim, in order, with body text between them; in
/// `Location` and `Content-Location`, that body text is percent-encoded unreserved characters
/// (so no `/`, `?` or `#` of the body's) and no path segment holding any of it is `.` or `..`.
fn filled_is_safe(
    rule: &str,
    template: &Template,
    name: &HeaderName,
    value: &HeaderValue,
    view: &ResponseView<'_>,
) {
    let bytes = value.as_bytes();
    assert!(
        bytes
            .iter()
            .all(|b| *b == b' ' || *b == b'\t' || b.is_ascii_graphic()),
        "rule {rule}: {name} filled with {value:?}, not visible ASCII"
    );
    assert!(
        bytes.len() <= MAX_FILLED_LEN,
        "rule {rule}: {name} filled with {} bytes",
        bytes.len()
    );
    let location = name == LOCATION || name == CONTENT_LOCATION;
    // Body text: in a location, one encoded segment (at least one byte); elsewhere any visible
    // ASCII or space (a tab is a control character, refused). Adjacent placeholders are one run.
    let body = if location {
        "((?:[A-Za-z0-9._~-]|%[0-9A-F]{2})+)"
    } else {
        "([ -~]*)"
    };
    let mut pattern = String::from("^");
    let mut in_body = false;
    for part in template.parts() {
        let known = match part {
            Part::Literal(text) => text.as_str(),
            Part::Path => view.path,
            Part::Query => view.query,
            Part::Method => view.method.as_str(),
            Part::RequestId => view
                .request_id
                .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
                .unwrap_or(""),
            Part::Pointer(_) => {
                if !in_body {
                    pattern.push_str(body);
                }
                in_body = true;
                continue;
            }
        };
        in_body = false;
        pattern.push_str(&regex::escape(known));
    }
    pattern.push('$');
    let Ok(re) = regex::RegexBuilder::new(&pattern)
        .unicode(false)
        .size_limit(1 << 24)
        .build()
    else {
        return; // a request part too large to make a pattern of: nothing to say
    };
    let text = value.to_str().unwrap_or_default();
    let Some(captures) = re.captures(text) else {
        panic!(
            "rule {rule}: {name} filled with {text:?}, which is not the template {template:?} \
             with the request's parts and body text{}",
            if location { " encoded as segments" } else { "" }
        );
    };
    if !location {
        return;
    }
    // Dot segments only matter in the path: up to the first `?` or `#`.
    let path_end = text.find(['?', '#']).unwrap_or(text.len());
    for run in captures.iter().skip(1).flatten() {
        if run.start() >= path_end {
            continue;
        }
        let start = text[..run.start()].rfind('/').map_or(0, |i| i + 1);
        let end = text[run.end()..path_end]
            .find('/')
            .map_or(path_end, |i| run.end() + i);
        let segment = text[start..end].replace("%2E", ".").replace("%2e", ".");
        assert!(
            segment != "." && segment != "..",
            "rule {rule}: {name} filled with {text:?}: body text makes the dot segment {:?}",
            &text[start..end]
        );
    }
}

/// The decision's members are the rule's `then.problem.members`, in order, each copied or
/// `unfilled` (for its size only) or left out, never both; only in a problem document.
fn members_are_the_rules(decision: &Decision<'_>) {
    let rule = decision.rule;
    let unfilled: Vec<&str> = decision
        .unfilled
        .iter()
        .filter_map(|u| match u.target {
            Target::Member(name) => {
                assert_eq!(
                    u.error,
                    FillError::MembersTooLarge,
                    "rule {}: member {name} unfilled",
                    rule.name
                );
                Some(name)
            }
            Target::Header(_) => None,
        })
        .collect();
    if rule.then.body != BodyAction::Problem {
        assert!(
            decision.members.is_empty() && unfilled.is_empty(),
            "rule {} copies members without a problem document",
            rule.name
        );
        return;
    }
    let mut members = rule.then.problem.members.iter();
    for (name, _) in &decision.members {
        assert!(
            members.any(|m| m.name == *name),
            "rule {}: member {name} is not the rule's, or out of order",
            rule.name
        );
        assert!(
            !unfilled.contains(name),
            "rule {}: member {name} both copied and unfilled",
            rule.name
        );
    }
}
