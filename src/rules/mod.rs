//! The compiled rule set and its evaluation: the `rules` stage of the normalize flow.
//!
//! `[[rules]]` entries compile once, when the config loads (`config/rules.rs`): every regex is built,
//! every JSON pointer split into tokens, every status and header parsed, and anything that could
//! fail is rejected there. Evaluating the rules against a response is then pure and infallible:
//! no I/O, not async, no error path. The normalize layer asks [`RuleSet::wants_status`] and
//! [`RuleSet::needs_body`] before reading a body, then calls [`RuleSet::evaluate`] and applies
//! the [`Decision`].
//!
//! Semantics: rules run in order and the first matching *enforce* rule wins; matching *shadow*
//! rules before it are recorded (for metrics and logs) and evaluation goes on past them.
//!
//! # Layout
//!
//! | file | role |
//! | --- | --- |
//! | `mod.rs` | the compiled types |
//! | `pointer.rs` | RFC 6901 [`JsonPointer`] |
//! | `plan.rs` | what compilation precomputes for evaluation: status table, pointer slots |
//! | `extract.rs`, `extract/walk.rs` | targeted JSON extraction: one parse, only the values rules point at |
//! | `eval.rs` | [`ResponseView`] → [`Evaluation`]; the condition checks |
//! | `explain.rs` | [`RuleTrace`]: why each rule did or did not match (`candor explain`) |
//! | `analysis.rs` | [`Unreachable`] rules, for `candor check` warnings |
//!
//! Tests sit beside each part (`*/tests.rs` where they are long); rules in them are compiled
//! from TOML through [`crate::config::from_toml`], so they exercise the real schema.

mod analysis;
mod eval;
mod explain;
mod extract;
mod plan;
mod pointer;
pub mod template;

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, StatusCode};

pub use analysis::Unreachable;
pub use eval::{
    no_headers, Decision, Evaluation, ResponseView, Target, Unfilled, MAX_MEMBERS_BYTES,
};
pub use explain::{Outcome, RuleTrace};
pub use pointer::{JsonPointer, PointerError};
pub use template::{FillError, Template, TemplateError};

use plan::Plan;

/// All rules, in config order (the order they are evaluated in).
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// What evaluation looks up, derived from `rules` when they compile.
    plan: Plan,
}

impl RuleSet {
    /// The set of `rules`, in evaluation order, with what evaluation looks up precomputed.
    pub fn new(rules: Vec<Rule>) -> RuleSet {
        let plan = Plan::build(&rules);
        RuleSet { rules, plan }
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules in evaluation order.
    pub fn iter(&self) -> std::slice::Iter<'_, Rule> {
        self.rules.iter()
    }

    /// Number of rules in [`Mode::Shadow`].
    pub fn shadow_count(&self) -> usize {
        self.rules.iter().filter(|r| r.mode == Mode::Shadow).count()
    }

    /// Every request header some rule tests (`when.request_header`), once each: what the
    /// normaliser keeps of a request for the response's evaluation.
    pub fn request_headers(&self) -> &[HeaderName] {
        &self.plan.request_headers
    }

    /// The rule called `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }
}

impl<'a> IntoIterator for &'a RuleSet {
    type Item = &'a Rule;
    type IntoIter = std::slice::Iter<'a, Rule>;
    fn into_iter(self) -> Self::IntoIter {
        self.rules.iter()
    }
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique name, safe as a metric label.
    pub name: String,
    /// The name as an `X-Candor-Rule` value, made once so a rewrite copies a reference count.
    pub name_value: http::HeaderValue,
    /// Whether the rule acts or only reports.
    pub mode: Mode,
    /// Conditions, all of which must hold.
    pub when: When,
    /// What the rule does when it matches.
    pub then: Then,
}

/// Whether a matching rule changes the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Apply the rule.
    Enforce,
    /// Record what the rule would do (metrics, logs) but forward the response unchanged.
    Shadow,
}

impl Mode {
    /// The mode as written in the config: `enforce` or `shadow`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Shadow => "shadow",
        }
    }
}

/// A rule's conditions. An empty list or `None` means "no condition on this"; a rule with no
/// conditions at all matches every response.
#[derive(Debug, Clone, Default)]
pub struct When {
    /// The upstream status is one of these.
    pub status: Vec<StatusMatch>,
    /// The request method is one of these.
    pub method: Vec<Method>,
    /// The request path matches.
    pub path: Option<regex::Regex>,
    /// The raw query string matches (an absent query is the empty string).
    pub query: Option<regex::Regex>,
    /// Every request header condition holds.
    pub request_header: Vec<HeaderMatch>,
    /// The response `content-type` value matches.
    pub content_type: Option<regex::Regex>,
    /// Every header condition holds.
    pub header: Vec<HeaderMatch>,
    /// Every JSON condition holds (the body parsed as JSON).
    pub json: Vec<JsonCondition>,
    /// The decoded body matches; bytes, because legacy bodies are not always UTF-8.
    pub body: Option<regex::bytes::Regex>,
}

impl When {
    /// Whether testing these conditions needs the response body.
    pub fn needs_body(&self) -> bool {
        !self.json.is_empty() || self.body.is_some()
    }
}

impl Rule {
    /// Whether evaluating this rule needs the response body: for a condition, or because
    /// `then` reads a value out of it (`status_from`, `retry_after_from`, `detail_from`).
    pub fn needs_body(&self) -> bool {
        self.when.needs_body() || self.then.reads_body()
    }
}

impl Then {
    /// Whether this action reads a value out of the body.
    pub fn reads_body(&self) -> bool {
        self.status_from.is_some()
            || self.detail_from.is_some()
            || matches!(self.retry_after, Some(RetryAfterSource::From(_)))
            || !self.problem.members.is_empty()
            || self.headers.iter().any(|h| match &h.value {
                HeaderFill::Static(_) => false,
                HeaderFill::Template(t) => t.pointers().next().is_some(),
            })
    }
}

/// One entry of `when.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    /// Exactly this status.
    Code(StatusCode),
    /// Any status of this class: `4` means 400..=499.
    Class(u8),
}

impl std::fmt::Display for StatusMatch {
    /// As written in the config: `404` or `4xx`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatusMatch::Code(code) => write!(f, "{}", code.as_u16()),
            StatusMatch::Class(class) => write!(f, "{class}xx"),
        }
    }
}

impl StatusMatch {
    /// Whether `status` is matched.
    pub fn matches(&self, status: StatusCode) -> bool {
        match self {
            StatusMatch::Code(code) => *code == status,
            StatusMatch::Class(class) => status.as_u16() / 100 == u16::from(*class),
        }
    }
}

/// One entry of `when.header` or `when.request_header`.
#[derive(Debug, Clone)]
pub struct HeaderMatch {
    /// The header (lowercase).
    pub name: HeaderName,
    /// What must hold of it.
    pub test: HeaderTest,
}

/// The test of a [`HeaderMatch`].
#[derive(Debug, Clone)]
pub enum HeaderTest {
    /// The header is there (an empty value counts).
    Present,
    /// No field line of that name.
    Absent,
    /// Some value of it matches the regex.
    Matches(regex::Regex),
}

impl HeaderTest {
    /// Whether two tests are written identically.
    pub fn same(&self, other: &HeaderTest) -> bool {
        match (self, other) {
            (HeaderTest::Present, HeaderTest::Present)
            | (HeaderTest::Absent, HeaderTest::Absent) => true,
            (HeaderTest::Matches(a), HeaderTest::Matches(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

/// One entry of `when.json`: a pointer into the body and a test on what it points at.
#[derive(Debug, Clone)]
pub struct JsonCondition {
    /// Where to look.
    pub pointer: JsonPointer,
    /// What must hold there.
    pub op: JsonOp,
}

/// The test of a [`JsonCondition`].
#[derive(Debug, Clone)]
pub enum JsonOp {
    /// The value equals this one as JSON. Numbers came from TOML as integers or floats, so an
    /// evaluator should compare numbers numerically (`1042` vs `1042.0`).
    Equals(serde_json::Value),
    /// `true`: the value is `null`; `false`: it exists and is not `null`.
    IsNull(bool),
    /// The value is a string matching this regex.
    Matches(regex::Regex),
    /// The value equals one of these (never empty).
    OneOf(Vec<serde_json::Value>),
    /// `true`: the pointer resolves; `false`: it does not.
    Exists(bool),
    /// The value is a number greater than this (finite).
    Gt(f64),
    /// The value is a number greater than or equal to this (finite).
    Gte(f64),
    /// The value is a number less than this (finite).
    Lt(f64),
    /// The value is a number less than or equal to this (finite).
    Lte(f64),
}

/// What a matching rule does.
#[derive(Debug, Clone)]
pub struct Then {
    /// The new status; with `status_from`, the fallback when the body has no usable status.
    pub status: Option<StatusCode>,
    /// Where the body holds the new status.
    pub status_from: Option<JsonPointer>,
    /// Where the `Retry-After` value comes from.
    pub retry_after: Option<RetryAfterSource>,
    /// What happens to the body.
    pub body: BodyAction,
    /// Where the body holds the problem document's `detail` (only with [`BodyAction::Problem`]).
    pub detail_from: Option<JsonPointer>,
    /// Headers set on the response, replacing any of the same name.
    pub headers: Vec<HeaderSet>,
    /// What the problem document says beyond its status (only with [`BodyAction::Problem`]).
    pub problem: ProblemShape,
}

/// One entry of `then.headers`.
#[derive(Debug, Clone)]
pub struct HeaderSet {
    /// The header (never a hop-by-hop or framing one).
    pub name: HeaderName,
    /// Its value.
    pub value: HeaderFill,
}

/// A `then.headers` value.
#[derive(Debug, Clone)]
pub enum HeaderFill {
    /// Fixed text, made a header value once (a rewrite copies a reference count).
    Static(HeaderValue),
    /// Filled per response; see [`template`].
    Template(Template),
}

/// `then.problem`: the RFC 9457 members a rule sets beyond `status` and `detail`.
#[derive(Debug, Clone, Default)]
pub struct ProblemShape {
    /// `type`: a URI reference; `None` is `about:blank`.
    pub kind: Option<String>,
    /// `title`; `None` is the status's reason phrase.
    pub title: Option<String>,
    /// Extension members copied from the body, by name (sorted, unique, never a standard name).
    pub members: Vec<Member>,
}

/// One `then.problem.members` entry.
#[derive(Debug, Clone)]
pub struct Member {
    /// The member's name in the problem document.
    pub name: String,
    /// Where its value is in the upstream body.
    pub pointer: JsonPointer,
}

/// The source of a rule's `Retry-After`.
///
/// `Retry-After` carries whole seconds (RFC 9110 §10.2.3), so whoever writes the header
/// rounds a fixed duration *up* (`1500ms` → `2`): a client told to wait less than intended
/// would come back too early.
#[derive(Debug, Clone)]
pub enum RetryAfterSource {
    /// A fixed delay (may be zero: "retry now").
    Fixed(Duration),
    /// A number of seconds read from the body.
    From(JsonPointer),
}

/// What a matching rule does with the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyAction {
    /// Forward the upstream body unchanged.
    Keep,
    /// Replace it with an RFC 9457 problem document.
    Problem,
    /// Send no body.
    Empty,
}
