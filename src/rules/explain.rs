//! Why each rule did or did not match one response: what `candor explain --verbose` prints.
//!
//! [`RuleSet::explain`] runs the same checks as [`RuleSet::evaluate`] (in the same order, on
//! the same lazily parsed body), but keeps the first failing condition of each rule and renders
//! it as a short line such as `when.json[1] /code: 7 does not equal 1042`. It allocates freely;
//! it is for people, not for the request path.

use std::fmt;

use serde_json::Value;

use super::eval::{
    check, decide, detail_of, seconds_of, status_of, text, Context, Failure, HeaderFailure, Lookup,
    MAX_RETRY_AFTER_SECS,
};
use super::extract::Found;
use super::plan::RulePlan;
use super::{BodyAction, HeaderFill, HeaderMatch, HeaderTest, JsonOp, Mode, RetryAfterSource};
use super::{Decision, JsonPointer, ResponseView};
use super::{Rule, RuleSet};

/// Longest rendering of a value taken from a response, in characters.
const MAX_SHOWN: usize = 60;

/// How one rule fared against a response.
#[derive(Debug, Clone)]
pub struct RuleTrace<'r> {
    /// The rule (its name and mode are printed).
    pub rule: &'r Rule,
    /// What happened.
    pub outcome: Outcome<'r>,
}

/// The outcome part of a [`RuleTrace`].
#[derive(Debug, Clone)]
pub enum Outcome<'r> {
    /// Every condition held: the decision (for a shadow rule, what it would do), and notes on
    /// values the rule tried to read from the body but could not use.
    Matched {
        /// What the rule decides.
        decision: Decision<'r>,
        /// E.g. `status_from /http_status: "abc" is not a 4xx/5xx status; no fallback status`.
        notes: Vec<String>,
    },
    /// The first condition that did not hold, e.g. `when.status: 500 is not one of [200]`.
    Failed(String),
    /// Not evaluated, because this earlier enforce rule matched and won.
    NotReached(&'r str),
}

impl RuleSet {
    /// Traces every rule, in order, against `view`, as evaluation would see it.
    pub fn explain<'r>(&'r self, view: &ResponseView<'_>) -> Vec<RuleTrace<'r>> {
        let context = Context::new(self, view);
        let mut winner: Option<&'r str> = None;
        let mut traces = Vec::with_capacity(self.len());
        for (rule, plan) in self.planned() {
            let outcome = match (winner, check(rule, plan, &context)) {
                (Some(name), _) => Outcome::NotReached(name),
                (None, Err(failure)) => Outcome::Failed(describe(&failure, rule, view)),
                (None, Ok(())) => {
                    if rule.mode == Mode::Enforce {
                        winner = Some(&rule.name);
                    }
                    let decision = decide(rule, plan, &context);
                    let notes = notes(rule, plan, &context, &decision);
                    Outcome::Matched { decision, notes }
                }
            };
            traces.push(RuleTrace { rule, outcome });
        }
        traces
    }
}

impl fmt::Display for RuleTrace<'_> {
    /// `name (mode): outcome`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.rule.name,
            self.rule.mode.as_str(),
            self.outcome
        )
    }
}

impl fmt::Display for Outcome<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Matched { decision, notes } => {
                write!(f, "matched: {decision}")?;
                notes.iter().try_for_each(|note| write!(f, "; {note}"))
            }
            Outcome::Failed(why) => f.write_str(why),
            Outcome::NotReached(winner) => write!(f, "not evaluated ({winner} matched first)"),
        }
    }
}

impl fmt::Display for Decision<'_> {
    /// E.g. `status 404, retry-after 30, body problem, detail "no such user"`, or `no rewrite`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.is_effective() {
            return f.write_str("no rewrite");
        }
        match self.status {
            Some(status) => write!(f, "status {}", status.as_u16())?,
            None => f.write_str("status kept")?,
        }
        if let Some(seconds) = self.retry_after {
            write!(f, ", retry-after {seconds}")?;
        }
        match self.body {
            BodyAction::Keep => {}
            BodyAction::Problem => f.write_str(", body problem")?,
            BodyAction::Empty => f.write_str(", body empty")?,
        }
        if let Some(detail) = &self.detail {
            write!(f, ", detail {}", quote(detail))?;
        }
        if !self.headers.is_empty() {
            let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
            write!(f, ", headers {}", names.join(", "))?;
        }
        if !self.members.is_empty() {
            let names: Vec<&str> = self.members.iter().map(|(n, _)| *n).collect();
            write!(f, ", members {}", names.join(", "))?;
        }
        Ok(())
    }
}

/// The line for a failed condition.
fn describe(failure: &Failure<'_>, rule: &Rule, view: &ResponseView<'_>) -> String {
    let when = &rule.when;
    match *failure {
        Failure::Status => {
            let list: Vec<String> = when.status.iter().map(ToString::to_string).collect();
            format!(
                "when.status: {} is not one of [{}]",
                view.status.as_u16(),
                list.join(", ")
            )
        }
        Failure::Method => {
            let list: Vec<&str> = when.method.iter().map(|m| m.as_str()).collect();
            format!(
                "when.method: {} is not one of [{}]",
                view.method,
                list.join(", ")
            )
        }
        Failure::Path => format!(
            "when.path: {} does not match {}",
            quote(view.path),
            pattern(when.path.as_ref().map(regex::Regex::as_str))
        ),
        Failure::Query => format!(
            "when.query: {} does not match {}",
            quote(view.query),
            pattern(when.query.as_ref().map(regex::Regex::as_str))
        ),
        Failure::RequestHeader(i, why) => header_failure(
            "request_header",
            i,
            why,
            when.request_header.get(i),
            view.request_headers,
        ),
        Failure::Header(i, why) => {
            header_failure("header", i, why, when.header.get(i), view.headers)
        }
        Failure::ContentTypeAbsent => "when.content_type: no content-type header".into(),
        Failure::ContentType => format!(
            "when.content_type: {} does not match {}",
            header_shown(view.headers.get(http::header::CONTENT_TYPE)),
            pattern(when.content_type.as_ref().map(regex::Regex::as_str))
        ),
        Failure::NotInspected => "body not inspected".into(),
        Failure::Json(i, found) => match when.json.get(i) {
            Some(c) => format!(
                "when.json[{i}] {}: {}",
                pointer(&c.pointer),
                json_failure(&c.op, found)
            ),
            None => format!("when.json[{i}]: does not hold"),
        },
        Failure::Body => "when.body: no match".into(),
    }
}

/// The line for a failed `when.header` or `when.request_header` entry.
fn header_failure(
    field: &str,
    i: usize,
    why: HeaderFailure,
    test: Option<&HeaderMatch>,
    headers: &http::HeaderMap,
) -> String {
    let Some(h) = test else {
        return format!("when.{field}[{i}]: does not hold");
    };
    match (why, &h.test) {
        (HeaderFailure::Absent, _) => format!("when.{field}[{i}] {}: absent", h.name),
        (HeaderFailure::Present, _) => format!(
            "when.{field}[{i}] {}: present ({}), expected absent",
            h.name,
            header_shown(headers.get(&h.name))
        ),
        (HeaderFailure::Mismatch, HeaderTest::Matches(re)) => format!(
            "when.{field}[{i}] {}: {} does not match {}",
            h.name,
            header_shown(headers.get(&h.name)),
            pattern(Some(re.as_str()))
        ),
        (HeaderFailure::Mismatch, _) => format!("when.{field}[{i}] {}: no match", h.name),
    }
}

/// Why a JSON condition does not hold for what its pointer found.
fn json_failure(op: &JsonOp, found: Lookup<'_>) -> String {
    let found = match found {
        Lookup::Found(found) => found,
        Lookup::Missing => return "no such field".into(),
        Lookup::NotJson(error) => return format!("body is not JSON ({error})"),
        Lookup::NoBody => return "body not inspected".into(),
    };
    let shown = shown(found);
    let value = found.value();
    let is_number = value.is_some_and(Value::is_number);
    let not_number = || format!("{shown} is not a number");
    match op {
        JsonOp::Equals(expected) => format!("{shown} does not equal {}", show(expected)),
        JsonOp::IsNull(true) => format!("{shown} is not null"),
        JsonOp::IsNull(false) => "is null".into(),
        JsonOp::Matches(re) if value.is_some_and(Value::is_string) => {
            format!("{shown} does not match {}", pattern(Some(re.as_str())))
        }
        JsonOp::Matches(_) => format!("{shown} is not a string"),
        JsonOp::OneOf(list) => {
            let list: Vec<String> = list.iter().map(show).collect();
            format!("{shown} is not one of [{}]", list.join(", "))
        }
        JsonOp::Exists(_) => format!("exists ({shown}), expected no such field"),
        JsonOp::Gt(n) if is_number => format!("{shown} is not greater than {n}"),
        JsonOp::Gte(n) if is_number => format!("{shown} is less than {n}"),
        JsonOp::Lt(n) if is_number => format!("{shown} is not less than {n}"),
        JsonOp::Lte(n) if is_number => format!("{shown} is greater than {n}"),
        JsonOp::Gt(_) | JsonOp::Gte(_) | JsonOp::Lt(_) | JsonOp::Lte(_) => not_number(),
    }
}

/// Notes on a matched rule: its `*_from` pointers whose values could not be used, and what each
/// header template and copied member became.
fn notes(
    rule: &Rule,
    plan: &RulePlan,
    context: &Context<'_, '_>,
    decision: &Decision<'_>,
) -> Vec<String> {
    let mut notes = Vec::new();
    for set in &rule.then.headers {
        if let HeaderFill::Template(_) = set.value {
            let filled = decision.headers.iter().find(|(name, _)| *name == set.name);
            if let Some((name, value)) = filled {
                notes.push(format!("header {name}: {}", header_shown(Some(value))));
            }
        }
    }
    for (name, value) in &decision.members {
        notes.push(format!("member {name}: {}", show(value)));
    }
    for unfilled in &decision.unfilled {
        notes.push(format!(
            "{}: left out, {}",
            unfilled.target,
            unfilled.error.as_str()
        ));
    }
    let unusable = |slot: usize, usable: &dyn Fn(&Value) -> bool, what: &str| {
        let found = context.lookup(slot);
        match found {
            Lookup::Found(found) if found.value().is_some_and(usable) => None,
            Lookup::Found(found) => Some(format!("{} {what}", shown(found))),
            Lookup::Missing => Some("no such field".to_owned()),
            Lookup::NotJson(_) => Some("body is not JSON".to_owned()),
            Lookup::NoBody => Some("body not inspected".to_owned()),
        }
    };
    if let (Some(slot), Some(from)) = (plan.status_from, &rule.then.status_from) {
        let why = unusable(slot, &|v| status_of(v).is_some(), "is not a 4xx/5xx status");
        if let Some(why) = why {
            let fallback = match rule.then.status {
                Some(status) => format!("using then.status {}", status.as_u16()),
                None => "no fallback status".to_owned(),
            };
            notes.push(format!("status_from {}: {why}; {fallback}", pointer(from)));
        }
    }
    if let (Some(slot), Some(RetryAfterSource::From(from))) =
        (plan.retry_after_from, &rule.then.retry_after)
    {
        let what = format!("is not a whole number of seconds (0..={MAX_RETRY_AFTER_SECS})");
        if let Some(why) = unusable(slot, &|v| seconds_of(v).is_some(), &what) {
            notes.push(format!(
                "retry_after_from {}: {why}; no Retry-After",
                pointer(from)
            ));
        }
    }
    if let (Some(slot), Some(from)) = (plan.detail_from, &rule.then.detail_from) {
        let why = unusable(slot, &|v| detail_of(v).is_some(), "is not printable text");
        if let Some(why) = why {
            notes.push(format!("detail_from {}: {why}; no detail", pointer(from)));
        }
    }
    notes
}

/// A pointer as written, or `""` for the whole document.
fn pointer(p: &JsonPointer) -> &str {
    match p.as_str() {
        "" => "\"\"",
        text => text,
    }
}

/// A regex source, in single quotes as in the config's TOML.
fn pattern(source: Option<&str>) -> String {
    format!("'{}'", source.unwrap_or_default())
}

/// A header value as shown: quoted, or a note when it is not text.
fn header_shown(value: Option<&http::HeaderValue>) -> String {
    match value.map(text) {
        Some(Some(v)) => quote(v),
        Some(None) => "(not UTF-8)".into(),
        None => "(absent)".into(),
    }
}

/// Text as a JSON string (control characters escaped, so a CR/LF from a response cannot break
/// the line), cut to [`MAX_SHOWN`] characters.
fn quote(text: &str) -> String {
    cut(Value::from(text).to_string())
}

/// What a pointer found: its value, or `[…]`/`{…}` when only the kind of container was kept.
fn shown(found: Found<'_>) -> String {
    match found {
        Found::Value(value) => show(value),
        Found::Array => "[…]".into(),
        Found::Object => "{…}".into(),
        Found::TooLarge => "(over 16 KiB)".into(),
    }
}

/// A JSON value in compact form, cut to [`MAX_SHOWN`] characters.
fn show(value: &Value) -> String {
    cut(value.to_string())
}

fn cut(mut text: String) -> String {
    if let Some((at, _)) = text.char_indices().nth(MAX_SHOWN) {
        text.truncate(at);
        text.push('…');
    }
    text
}
