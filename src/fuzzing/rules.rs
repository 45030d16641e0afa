//! The `rules` fuzz target: a small rule set, compiled through the real config schema, against
//! one response.

use std::collections::HashMap;

use arbitrary::{Arbitrary, Unstructured};
use http::{HeaderMap, Method, StatusCode};
use toml::{Table, Value};

use super::{header_map, is_text, method, sections, Blob, Word, METHODS, PATHS};
use crate::config::from_toml;
use crate::rules::{Decision, Mode, Outcome, ResponseView, RuleSet};

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
/// Text input (starts with `#`): `[[rules]]` TOML, a `%%` line, `METHOD PATH STATUS` and
/// response `name: value` lines, then optionally a `%%` line and the body (without it the body
/// was not inspected). Structured input: rules built from typed conditions and actions.
///
/// Oracles: `evaluate` decides exactly what `explain` traces (the first matching enforce rule
/// and the shadow rules matched before it); when `needs_body` says no, the body changes nothing;
/// a rule `check` calls unreachable never matches; `Retry-After` ≤ 9,999,999,999 and renders
/// as its digits; set headers are valid and never framing or hop-by-hop; `detail` is sanitised.
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
    let (line, fields) = super::head(head);
    let mut words = line.split_ascii_whitespace();
    let method = method(words.next().unwrap_or("GET"));
    let path = words.next().unwrap_or("/").to_owned();
    let status = words
        .next()
        .and_then(|s| s.parse().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut headers = HeaderMap::new();
    for (name, value) in fields {
        headers.append(name, value);
    }
    Some(Case {
        toml: format!("{UPSTREAM}{}", String::from_utf8_lossy(rules)),
        method,
        path,
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
    content_type: Option<Word>,
    header: Vec<(Word, Option<Word>)>,
    json: Vec<(Word, OpIn)>,
    body: Option<Word>,
    then: ThenIn,
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
    headers: Vec<(Word, Word)>,
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
const POINTERS: [&str; 14] = [
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

/// Object keys matching the pointers, and string values the example rules test for.
const WORDS: [&str; 16] = [
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
    Some(Case {
        toml,
        method: method(&input.method.get(&METHODS)),
        path: input.path.get(&PATHS),
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
    if let Some(p) = &spec.content_type {
        when.insert("content_type".into(), string(p.get(&PATTERNS)));
    }
    if !spec.header.is_empty() {
        let list = spec.header.iter().take(3).map(|(name, matches)| {
            let mut t = Table::new();
            t.insert("name".into(), string(name.get(&super::HEADER_NAMES)));
            if let Some(m) = matches {
                t.insert("matches".into(), string(m.get(&PATTERNS)));
            }
            Value::Table(t)
        });
        when.insert("header".into(), Value::Array(list.collect()));
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
        let list = then.headers.iter().take(3).map(|(name, value)| {
            let mut t = Table::new();
            t.insert("name".into(), string(name.get(&super::HEADER_NAMES)));
            t.insert("value".into(), string(value.get(&super::HEADER_VALUES)));
            Value::Table(t)
        });
        action.insert("headers".into(), Value::Array(list.collect()));
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

/// The oracles, on one compiled rule set and response.
fn check(set: &RuleSet, case: &Case) {
    let view = ResponseView {
        method: &case.method,
        path: &case.path,
        query: "",
        request_headers: crate::rules::no_headers(),
        request_id: None,
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
