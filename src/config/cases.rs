//! `[[tests]]`: canned upstream exchanges carried in the config, with what candor must make of
//! them. `candor test` runs them (like `promtool test rules`); `check` only validates them.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Method, StatusCode, Uri};

use super::error::{show_str, FieldPath, Problems};
use super::spec::TestSpec;
use super::values::{header_name, status};
use crate::builtin::Builtin;
use crate::rules::{JsonCondition, RuleSet};

/// One compiled `[[tests]]` entry.
#[derive(Debug, Clone)]
pub struct RuleTest {
    /// What the test is called in `candor test` output.
    pub name: String,
    /// The canned request and upstream response.
    pub exchange: Exchange,
    /// What must hold of candor's answer.
    pub expect: Expect,
}

/// A request and the upstream's response to it, as `[[tests]]` and `candor explain` give them.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// Request method.
    pub method: Method,
    /// Request target.
    pub uri: Uri,
    /// Request headers.
    pub request_headers: HeaderMap,
    /// Upstream status.
    pub status: StatusCode,
    /// Upstream headers.
    pub response_headers: HeaderMap,
    /// Upstream body, as sent (possibly content-encoded).
    pub body: Bytes,
}

/// The expectations of a [`RuleTest`]; `None` means "not checked".
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// The rule that must apply; `Some(None)` means no rule may apply.
    pub rule: Option<Option<String>>,
    /// A shadow rule that must match.
    pub shadow: Option<String>,
    /// The status candor must send.
    pub status: Option<StatusCode>,
    /// What the body must become.
    pub body: Option<BodyKind>,
    /// Headers that must have exactly this value, or (`None`) must be absent.
    pub headers: Vec<(HeaderName, Option<HeaderValue>)>,
    /// Conditions on the JSON body sent, each with how it was written (for messages).
    pub json: Vec<(JsonCondition, String)>,
}

/// The `expect.headers` value meaning "this header must not be sent".
pub const ABSENT: &str = "<absent>";

/// The kind of body candor sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BodyKind {
    /// The upstream's bytes.
    #[default]
    Keep,
    /// A problem document.
    Problem,
    /// None.
    Empty,
}

impl BodyKind {
    /// The name used in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            BodyKind::Keep => "keep",
            BodyKind::Problem => "problem",
            BodyKind::Empty => "empty",
        }
    }
}

/// Compiles the `[[tests]]` entries against the compiled rules.
pub(crate) fn compile(
    specs: &[TestSpec],
    rules: &RuleSet,
    problems: &mut Problems,
) -> Vec<RuleTest> {
    let mut tests = Vec::with_capacity(specs.len());
    for (index, spec) in specs.iter().enumerate() {
        let at = FieldPath::root("tests").index(index);
        problems.rule = Some(match &spec.name {
            Some(name) => format!("test {}", show_str(name)),
            None => format!("tests[{index}]"),
        });
        if let Some(test) = one(spec, &at, rules, problems) {
            tests.push(test);
        }
    }
    problems.rule = None;
    tests
}

fn one(
    spec: &TestSpec,
    at: &FieldPath,
    rules: &RuleSet,
    problems: &mut Problems,
) -> Option<RuleTest> {
    let before = problems.list.len();
    let name = match spec.name.as_deref() {
        Some(name) if !name.trim().is_empty() => name.to_owned(),
        _ => {
            problems.push(&at.key("name"), None, "a test needs a name");
            String::new()
        }
    };
    let method_at = at.key("request").key("method");
    let method = Method::from_bytes(spec.request.method.to_ascii_uppercase().as_bytes()).ok();
    if method.is_none() {
        problems.push(
            &method_at,
            Some(show_str(&spec.request.method)),
            "invalid method",
        );
    }
    let path_at = at.key("request").key("path");
    let uri = spec
        .request
        .path
        .parse::<Uri>()
        .ok()
        .filter(|u| u.scheme().is_none() && u.path().starts_with('/'));
    if uri.is_none() {
        problems.push(
            &path_at,
            Some(show_str(&spec.request.path)),
            "invalid path (expected e.g. \"/users/7?x=1\")",
        );
    }
    let request_headers = headers(
        problems,
        &at.key("request").key("headers"),
        &spec.request.headers,
    );
    let code = status(
        problems,
        &at.key("response").key("status"),
        spec.response.status,
        100..=599,
        "a code 100..=599",
    );
    let mut response_headers = headers(
        problems,
        &at.key("response").key("headers"),
        &spec.response.headers,
    );
    if !response_headers.contains_key(CONTENT_TYPE) {
        response_headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }

    let mut expect = Expect::default();
    if let Some(rule) = &spec.expect.rule {
        let known = rule == "none" || Builtin::named(rule).is_some() || rules.get(rule).is_some();
        if !known {
            problems.push(
                &at.key("expect").key("rule"),
                Some(show_str(rule)),
                "no such rule (expected a rule name, \"html-errors\", \"retry-after\", \"scrub\" or \"none\")",
            );
        }
        expect.rule = Some((rule != "none").then(|| rule.clone()));
    }
    if let Some(shadow) = &spec.expect.shadow {
        let shadowing = rules
            .get(shadow)
            .is_some_and(|rule| rule.mode == crate::rules::Mode::Shadow);
        if !shadowing {
            problems.push(
                &at.key("expect").key("shadow"),
                Some(show_str(shadow)),
                "no such shadow rule (expected the name of a rule with mode = \"shadow\")",
            );
        }
        expect.shadow = Some(shadow.clone());
    }
    if let Some(code) = spec.expect.status {
        expect.status = status(
            problems,
            &at.key("expect").key("status"),
            code,
            100..=599,
            "a code 100..=599",
        );
    }
    if let Some(body) = &spec.expect.body {
        expect.body = match body.as_str() {
            "keep" => Some(BodyKind::Keep),
            "problem" => Some(BodyKind::Problem),
            "empty" => Some(BodyKind::Empty),
            _ => {
                problems.push(
                    &at.key("expect").key("body"),
                    Some(show_str(body)),
                    "expected \"keep\", \"problem\" or \"empty\"",
                );
                None
            }
        };
    }
    for (name, value) in spec.expect.headers.iter().flatten() {
        let path = at.key("expect").key("headers").key(name);
        let Some(name) = header_name(problems, &path, name) else {
            continue;
        };
        if value == ABSENT {
            expect.headers.push((name, None));
            continue;
        }
        match HeaderValue::from_str(value) {
            Ok(value) => expect.headers.push((name, Some(value))),
            Err(_) => problems.push(&path, Some(show_str(value)), "invalid header value"),
        }
    }
    for (i, c) in spec.expect.json.iter().flatten().enumerate() {
        let path = at.key("expect").key("json").index(i);
        if let Some(condition) = super::rules::json_condition(problems, &path, c) {
            let written = written(c);
            expect.json.push((condition, written));
        }
    }
    if problems.list.len() != before {
        return None;
    }
    Some(RuleTest {
        name,
        exchange: Exchange {
            method: method?,
            uri: uri?,
            request_headers,
            status: code?,
            response_headers,
            body: Bytes::from(spec.response.body.clone()),
        },
        expect,
    })
}

fn headers(
    problems: &mut Problems,
    at: &FieldPath,
    spec: &std::collections::BTreeMap<String, String>,
) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in spec {
        let path = at.key(name);
        let Some(name) = header_name(problems, &path, name) else {
            continue;
        };
        match HeaderValue::from_str(value) {
            Ok(value) => {
                map.append(name, value);
            }
            Err(_) => problems.push(&path, Some(show_str(value)), "invalid header value"),
        }
    }
    map
}

/// An `expect.json` entry as a short text: `/errors/0/field equals "email"`.
fn written(spec: &super::spec::JsonConditionSpec) -> String {
    let op = [
        ("equals", spec.equals.as_ref().map(|v| v.0.to_string())),
        ("is_null", spec.is_null.map(|b| b.to_string())),
        ("matches", spec.matches.as_ref().map(|p| show_str(p))),
        (
            "one_of",
            spec.one_of.as_ref().map(|l| {
                let list: Vec<String> = l.iter().map(|v| v.0.to_string()).collect();
                format!("[{}]", list.join(", "))
            }),
        ),
        ("exists", spec.exists.map(|b| b.to_string())),
        ("gt", spec.gt.map(|n| n.to_string())),
        ("gte", spec.gte.map(|n| n.to_string())),
        ("lt", spec.lt.map(|n| n.to_string())),
        ("lte", spec.lte.map(|n| n.to_string())),
    ]
    .into_iter()
    .find_map(|(name, value)| value.map(|v| format!("{name} {v}")))
    .unwrap_or_default();
    format!("{} {op}", spec.pointer)
}
