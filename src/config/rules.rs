//! Compiling `[[rules]]` specs into a [`RuleSet`]: runs once, when the config loads.
//!
//! Every regex is built within candor's limits ([`crate::pattern`]), every JSON pointer parsed,
//! every status and header checked; each problem is recorded with its field so `candor check`
//! can list them all. Whatever could fail at request time fails here instead, which is what lets
//! evaluation be infallible. [`RuleSet::new`] then precomputes what evaluation looks up.

use http::header::{HeaderName, CONNECTION, TRAILER};
use http::{HeaderValue, Method};

use super::error::{show_str, FieldPath, Problems};
use super::spec::{
    BodySpec, HeaderMatchSpec, JsonConditionSpec, ModeSpec, ProblemSpec, RuleSpec, ThenSpec,
    WhenSpec,
};
use super::values::{self, DurationKind};
use crate::headers::hop_by_hop_index;
use crate::pattern::{self, PatternError};
use crate::rules::{
    BodyAction, HeaderFill, HeaderMatch, HeaderSet, HeaderTest, JsonCondition, JsonOp, JsonPointer,
    Member, Mode, ProblemShape, RetryAfterSource, Rule, RuleSet, Template, Then, When,
};

/// Rule names become metric labels; this keeps them short and label-safe.
const MAX_NAME_LEN: usize = 64;

/// Longest `then.problem.title`, in characters: a short summary, as RFC 9457 §3.1.3 has it.
const MAX_TITLE_CHARS: usize = 200;

/// Longest `then.problem.type`, in bytes.
const MAX_TYPE_LEN: usize = 2048;

/// Longest `then.problem.members` name, and most members per rule.
const MAX_MEMBER_NAME_LEN: usize = 64;
const MAX_MEMBERS: usize = 32;

/// Member names a problem document already has (RFC 9457 §3.1, and candor's `request_id`).
const RESERVED_MEMBERS: [&str; 6] = [
    "type",
    "title",
    "status",
    "detail",
    "instance",
    "request_id",
];

/// Whether a rule may not set `name`: the hop-by-hop and framing fields (RFC 9110 §7.6.1), plus
/// `Connection` and `Trailer`, would corrupt the response rather than describe it.
fn forbidden_header(name: &HeaderName) -> bool {
    hop_by_hop_index(name).is_some() || name == CONNECTION || name == TRAILER
}

/// Compiles rule specs, recording every problem; the result holds the rules that compiled.
///
/// `line_of` finds the line of a field, to point a duplicate name at its first definition.
pub(crate) fn compile(
    specs: &[RuleSpec],
    problems: &mut Problems,
    line_of: &dyn Fn(&FieldPath) -> Option<usize>,
) -> RuleSet {
    let names: Vec<Option<&str>> = specs.iter().map(|s| s.name.as_deref()).collect();
    let mut rules = Vec::with_capacity(specs.len());
    for (index, spec) in specs.iter().enumerate() {
        let at = FieldPath::root("rules").index(index);
        let first = names[..index]
            .iter()
            .position(|n| n.is_some() && *n == spec.name.as_deref());
        problems.rule = Some(match (&spec.name, first) {
            (Some(name), None) if !name.is_empty() => format!("rule {}", show_str(name)),
            (Some(name), _) => format!("rules[{index}] {}", show_str(name)),
            (None, _) => format!("rules[{index}]"),
        });
        let name = rule_name(problems, &at, spec.name.as_deref(), first, line_of);
        let when = when(problems, &at.key("when"), &spec.when);
        let then = then(problems, &at.key("then"), spec.then.as_ref());
        if let (Some(name), Some(when), Some(then)) = (name, when, then) {
            let mode = match spec.mode {
                ModeSpec::Enforce => Mode::Enforce,
                ModeSpec::Shadow => Mode::Shadow,
            };
            // A valid rule name is letters, digits and `_.-`: always a valid header value.
            let name_value =
                HeaderValue::from_str(&name).unwrap_or_else(|_| HeaderValue::from_static("rule"));
            rules.push(Rule {
                name,
                name_value,
                mode,
                when,
                then,
            });
        }
    }
    problems.rule = None;
    RuleSet::new(rules)
}

/// Checks a rule name; `first` is the index of an earlier rule with the same name.
fn rule_name(
    problems: &mut Problems,
    at: &FieldPath,
    name: Option<&str>,
    first: Option<usize>,
    line_of: &dyn Fn(&FieldPath) -> Option<usize>,
) -> Option<String> {
    let path = at.key("name");
    let Some(name) = name else {
        problems.push(
            &path,
            None,
            "missing (every rule needs a unique name, e.g. name = \"user-not-found\")",
        );
        return None;
    };
    let shown = Some(show_str(name));
    if !is_rule_name(name) {
        problems.push(
            &path,
            shown,
            "invalid rule name (expected 1-64 letters, digits, '_', '.', '-', starting with a letter or digit; it is used as a metric label)",
        );
        return None;
    }
    if let Some(first) = first {
        let name_path = FieldPath::root("rules").index(first).key("name");
        let message = match line_of(&name_path) {
            Some(line) => format!("duplicate rule name (first defined at line {line})"),
            None => format!("duplicate rule name (first defined as rules[{first}])"),
        };
        problems.push(&path, shown, message);
        return None;
    }
    Some(name.to_owned())
}

/// Whether `name` matches `^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`.
fn is_rule_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    matches!(bytes.first(), Some(b) if b.is_ascii_alphanumeric())
        && bytes.len() <= MAX_NAME_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(b))
}

/// Builds a text regex within candor's limits.
fn regex(problems: &mut Problems, path: &FieldPath, pattern: &str) -> Option<regex::Regex> {
    pattern::text(pattern)
        .map_err(|e| problems.push(path, Some(show_str(pattern)), pattern_message(&e)))
        .ok()
}

/// Builds a bytes regex within candor's limits.
fn bytes_regex(
    problems: &mut Problems,
    path: &FieldPath,
    pattern: &str,
) -> Option<regex::bytes::Regex> {
    pattern::bytes(pattern)
        .map_err(|e| problems.push(path, Some(show_str(pattern)), pattern_message(&e)))
        .ok()
}

fn pattern_message(error: &PatternError) -> String {
    match error {
        PatternError::TooLong { .. } => "regex too long (at most 4096 bytes)".into(),
        PatternError::Invalid(_) => error.to_string(),
    }
}

/// Parses a JSON pointer, recording a problem if it is malformed.
fn pointer(problems: &mut Problems, path: &FieldPath, text: &str) -> Option<JsonPointer> {
    JsonPointer::parse(text)
        .map_err(|e| problems.push(path, Some(show_str(text)), e.to_string()))
        .ok()
}

fn when(problems: &mut Problems, at: &FieldPath, spec: &WhenSpec) -> Option<When> {
    let before = problems.list.len();
    let mut out = When::default();
    for (i, item) in spec.status.iter().flat_map(|l| l.0.iter()).enumerate() {
        if let Some(status) = values::status_item(problems, &at.key("status").index(i), item, true)
        {
            out.status.push(status);
        }
    }
    for (i, text) in spec.method.iter().flat_map(|l| l.0.iter()).enumerate() {
        // Methods are case-sensitive on the wire, but every real one is uppercase and a
        // lowercase `get` in a config is a typo for `GET`, never a custom method.
        match Method::from_bytes(text.to_ascii_uppercase().as_bytes()) {
            Ok(method) if !text.is_empty() => out.method.push(method),
            _ => problems.push(
                &at.key("method").index(i),
                Some(show_str(text)),
                "invalid HTTP method (expected a token like \"GET\")",
            ),
        }
    }
    out.path = spec
        .path
        .as_ref()
        .and_then(|p| regex(problems, &at.key("path"), p));
    out.content_type = spec
        .content_type
        .as_ref()
        .and_then(|p| regex(problems, &at.key("content_type"), p));
    out.query = spec
        .query
        .as_ref()
        .and_then(|p| regex(problems, &at.key("query"), p));
    out.request_header = header_matches(problems, &at.key("request_header"), &spec.request_header);
    out.header = header_matches(problems, &at.key("header"), &spec.header);
    for (i, c) in spec.json.iter().flatten().enumerate() {
        if let Some(condition) = json_condition(problems, &at.key("json").index(i), c) {
            out.json.push(condition);
        }
    }
    out.body = spec
        .body
        .as_ref()
        .and_then(|p| bytes_regex(problems, &at.key("body"), p));
    (problems.list.len() == before).then_some(out)
}

/// Compiles a `when.header` or `when.request_header` list.
fn header_matches(
    problems: &mut Problems,
    at: &FieldPath,
    spec: &Option<Vec<HeaderMatchSpec>>,
) -> Vec<HeaderMatch> {
    let mut out = Vec::new();
    for (i, h) in spec.iter().flatten().enumerate() {
        let item = at.index(i);
        let name = values::header_name(problems, &item.key("name"), &h.name);
        let test = match (&h.matches, h.absent) {
            (Some(p), Some(true)) => {
                problems.push(
                    &item.key("absent"),
                    Some("true".into()),
                    format!(
                        "conflicts with matches = {} (a header that must be absent has no value to match; use one of the two)",
                        show_str(p)
                    ),
                );
                None
            }
            (Some(p), _) => regex(problems, &item.key("matches"), p).map(HeaderTest::Matches),
            (None, Some(true)) => Some(HeaderTest::Absent),
            (None, _) => Some(HeaderTest::Present),
        };
        if let (Some(name), Some(test)) = (name, test) {
            out.push(HeaderMatch { name, test });
        }
    }
    out
}

/// The operator keys of a `when.json` entry, for messages.
const JSON_OPS: &str = "equals, is_null, matches, one_of, exists, gt, gte, lt, lte";

pub(super) fn json_condition(
    problems: &mut Problems,
    at: &FieldPath,
    spec: &JsonConditionSpec,
) -> Option<JsonCondition> {
    let pointer = pointer(problems, &at.key("pointer"), &spec.pointer);
    let set: Vec<&str> = [
        ("equals", spec.equals.is_some()),
        ("is_null", spec.is_null.is_some()),
        ("matches", spec.matches.is_some()),
        ("one_of", spec.one_of.is_some()),
        ("exists", spec.exists.is_some()),
        ("gt", spec.gt.is_some()),
        ("gte", spec.gte.is_some()),
        ("lt", spec.lt.is_some()),
        ("lte", spec.lte.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, present)| present.then_some(name))
    .collect();
    let op = match set.as_slice() {
        [] => {
            problems.push(
                at,
                None,
                format!("no test for the pointer (add exactly one of: {JSON_OPS})"),
            );
            None
        }
        [one] => json_op(problems, &at.key(one), spec),
        many => {
            let message = format!(
                "{} tests ({}) in one entry (use exactly one; add another entry to test more)",
                many.len(),
                many.join(", ")
            );
            problems.push(at, None, message);
            None
        }
    };
    Some(JsonCondition {
        pointer: pointer?,
        op: op?,
    })
}

/// Compiles the one operator set in `spec`; `at` is that operator's path.
fn json_op(problems: &mut Problems, at: &FieldPath, spec: &JsonConditionSpec) -> Option<JsonOp> {
    let number = |problems: &mut Problems, n: f64| {
        let finite = n.is_finite();
        if !finite {
            problems.push(at, Some(n.to_string()), "must be a finite number");
        }
        finite.then_some(n)
    };
    if let Some(v) = &spec.equals {
        return Some(JsonOp::Equals(v.0.clone()));
    }
    if let Some(b) = spec.is_null {
        return Some(JsonOp::IsNull(b));
    }
    if let Some(p) = &spec.matches {
        return regex(problems, at, p).map(JsonOp::Matches);
    }
    if let Some(values) = &spec.one_of {
        if values.is_empty() {
            problems.push(at, Some("[]".into()), "must list at least one value");
            return None;
        }
        return Some(JsonOp::OneOf(values.iter().map(|v| v.0.clone()).collect()));
    }
    if let Some(b) = spec.exists {
        return Some(JsonOp::Exists(b));
    }
    if let Some(n) = spec.gt {
        return number(problems, n).map(JsonOp::Gt);
    }
    if let Some(n) = spec.gte {
        return number(problems, n).map(JsonOp::Gte);
    }
    if let Some(n) = spec.lt {
        return number(problems, n).map(JsonOp::Lt);
    }
    spec.lte.and_then(|n| number(problems, n)).map(JsonOp::Lte)
}

fn then(problems: &mut Problems, at: &FieldPath, spec: Option<&ThenSpec>) -> Option<Then> {
    const DOES_NOTHING: &str = "rule does nothing (set then.status, then.status_from, then.retry_after, then.retry_after_from, then.headers, or then.body = \"problem\" or \"empty\")";
    let Some(spec) = spec else {
        problems.push(at, None, DOES_NOTHING);
        return None;
    };
    let before = problems.list.len();
    // 1xx codes are interim responses (RFC 9110 §15.2) and cannot replace a final one.
    let status = spec
        .status
        .and_then(|s| values::status(problems, &at.key("status"), s, 200..=599, "200..=599"));
    let status_from = spec
        .status_from
        .as_ref()
        .and_then(|p| pointer(problems, &at.key("status_from"), p));
    let retry_after = match (&spec.retry_after, &spec.retry_after_from) {
        (Some(_), Some(from)) => {
            problems.push(
                &at.key("retry_after_from"),
                Some(show_str(from)),
                "conflicts with then.retry_after (set only one)",
            );
            None
        }
        (Some(d), None) => values::duration(
            problems,
            &at.key("retry_after"),
            d,
            DurationKind::RetryAfter,
        )
        .map(RetryAfterSource::Fixed),
        (None, Some(p)) => {
            pointer(problems, &at.key("retry_after_from"), p).map(RetryAfterSource::From)
        }
        (None, None) => None,
    };
    let body = match spec.body {
        BodySpec::Keep => BodyAction::Keep,
        BodySpec::Problem => BodyAction::Problem,
        BodySpec::Empty => BodyAction::Empty,
    };
    let detail_from = match &spec.detail_from {
        Some(p) if body != BodyAction::Problem => {
            problems.push(
                &at.key("detail_from"),
                Some(show_str(p)),
                "only used with then.body = \"problem\"",
            );
            None
        }
        Some(p) => pointer(problems, &at.key("detail_from"), p),
        None => None,
    };
    let mut headers = Vec::new();
    for (i, h) in spec.headers.iter().flatten().enumerate() {
        let item = at.key("headers").index(i);
        let Some(name) = values::header_name(problems, &item.key("name"), &h.name) else {
            continue;
        };
        if forbidden_header(&name) {
            problems.push(
                &item.key("name"),
                Some(show_str(&h.name)),
                "cannot be set by a rule (it frames the message or is hop-by-hop, RFC 9110 §7.6.1)",
            );
            continue;
        }
        if let Some(value) = header_fill(problems, &item.key("value"), &h.value) {
            headers.push(HeaderSet { name, value });
        }
    }
    let problem = match &spec.problem {
        Some(_) if body != BodyAction::Problem => {
            problems.push(
                &at.key("problem"),
                None,
                "only used with then.body = \"problem\"",
            );
            None
        }
        Some(p) => Some(problem_shape(problems, &at.key("problem"), p)),
        None => Some(ProblemShape::default()),
    };
    if problems.list.len() != before {
        return None;
    }
    let does_something = status.is_some()
        || status_from.is_some()
        || retry_after.is_some()
        || !headers.is_empty()
        || body != BodyAction::Keep;
    if !does_something {
        problems.push(at, None, DOES_NOTHING);
        return None;
    }
    Some(Then {
        status,
        status_from,
        retry_after,
        body,
        detail_from,
        headers,
        problem: problem?,
    })
}

/// Compiles a `then.headers` value: a fixed header value when it has no placeholder, else a
/// template whose fixed text must itself be valid in a header.
fn header_fill(problems: &mut Problems, at: &FieldPath, text: &str) -> Option<HeaderFill> {
    let template = match Template::parse(text) {
        Ok(template) => template,
        Err(error) => {
            problems.push(at, Some(show_str(text)), error.to_string());
            return None;
        }
    };
    let invalid = |problems: &mut Problems| {
        problems.push(
            at,
            Some(show_str(text)),
            "invalid header value (visible ASCII, spaces and tabs only)",
        );
    };
    if let Some(literal) = template.as_literal() {
        return match HeaderValue::from_str(&literal) {
            Ok(value) => Some(HeaderFill::Static(value)),
            Err(_) => {
                invalid(problems);
                None
            }
        };
    }
    let literal_ok = template.parts().iter().all(|part| match part {
        crate::rules::template::Part::Literal(text) => HeaderValue::from_str(text).is_ok(),
        _ => true,
    });
    if !literal_ok {
        invalid(problems);
        return None;
    }
    Some(HeaderFill::Template(template))
}

/// Compiles `then.problem`.
fn problem_shape(problems: &mut Problems, at: &FieldPath, spec: &ProblemSpec) -> ProblemShape {
    let kind = spec.kind.as_ref().and_then(|text| {
        let ok = values::uri_reference(text) && text.len() <= MAX_TYPE_LEN;
        if !ok {
            problems.push(
                &at.key("type"),
                Some(show_str(text)),
                "not a URI reference (expected an absolute URI like \"https://errors.example.com/validation\" or a relative one like \"/errors/validation\", at most 2048 bytes)",
            );
        }
        ok.then(|| text.clone())
    });
    let title = spec.title.as_ref().and_then(|text| {
        let ok = !text.trim().is_empty()
            && text.chars().count() <= MAX_TITLE_CHARS
            && !text.chars().any(char::is_control);
        if !ok {
            problems.push(
                &at.key("title"),
                Some(show_str(text)),
                "invalid title (1 to 200 characters, no control characters)",
            );
        }
        ok.then(|| text.clone())
    });
    let mut members = Vec::new();
    let list = spec.members.iter().flatten();
    if spec.members.as_ref().is_some_and(|m| m.len() > MAX_MEMBERS) {
        problems.push(
            &at.key("members"),
            None,
            format!("too many members (at most {MAX_MEMBERS})"),
        );
    }
    for (name, text) in list {
        let path = at.key("members").key(name);
        if RESERVED_MEMBERS.contains(&name.as_str()) {
            problems.push(
                &path,
                Some(show_str(name)),
                "reserved member name (type, title, status, detail, instance and request_id are set by candor; use then.detail_from, then.problem.type or then.problem.title)",
            );
            continue;
        }
        if !is_member_name(name) {
            problems.push(
                &path,
                Some(show_str(name)),
                "invalid member name (RFC 9457 §3.2: a letter, then letters, digits or '_', at most 64 characters)",
            );
            continue;
        }
        if let Some(pointer) = pointer(problems, &path, text) {
            members.push(Member {
                name: name.clone(),
                pointer,
            });
        }
    }
    ProblemShape {
        kind,
        title,
        members,
    }
}

/// Whether `name` matches `^[A-Za-z][A-Za-z0-9_]{0,63}$`.
fn is_member_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    matches!(bytes.first(), Some(b) if b.is_ascii_alphabetic())
        && bytes.len() <= MAX_MEMBER_NAME_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

#[cfg(test)]
mod tests;
