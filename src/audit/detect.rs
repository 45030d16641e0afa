//! The detectors: each recognises one way a response lies about its status, and names it with
//! a [`Kind`] (the names are a contract with users' tooling).
//!
//! They read a response's status, headers and the decoded body audit saw. JSON bodies are read
//! shallowly (`shallow.rs`): top-level members, and the scalar members one level down, never a
//! whole tree, so a hostile 256 KiB body costs one pass and a few small strings.

use std::sync::OnceLock;

use http::{Method, StatusCode};
use regex::bytes::Regex as BytesRegex;
use regex::Regex;

pub use super::kind::Kind;
use super::redact;
use super::report::{Evidence, Example};
use super::shallow::{self, Leaf, Shallow, Top};
use super::{Body, Exchange, Heads, Response};
use crate::builtin::scrub::Scrubber;
use crate::builtin::{accept, html};

/// A set of kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kinds(u16);

impl Kinds {
    /// Whether `kind` is in the set.
    pub fn contains(self, kind: Kind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// The kinds in the set, in [`Kind::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Kind> {
        Kind::ALL.into_iter().filter(move |k| self.contains(*k))
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// One finding in one exchange. Its example is made only when the table keeps one
/// ([`example`]): a route's thousandth lie of a kind costs no redaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Detected {
    /// What was found.
    pub kind: Kind,
    /// What gave it away; findings of a route are grouped by kind and evidence.
    pub evidence: Evidence,
}

/// The example of `response` (one side of `exchange`), scrubbed: what a finding keeps.
pub fn example(exchange: &Exchange<'_>, response: &Response<'_>, scrubber: &Scrubber) -> Example {
    let content_type = response.headers.content_type.as_ref();
    let bytes = response.body.bytes();
    let json = is_json(content_type.map(|v| v.as_bytes()), bytes);
    let mut example = redact::example(exchange, response, json, scrubber);
    // The body's top-level member names, for a proposal to carry into its problem document.
    if let (true, Body::Complete(bytes)) = (json, response.body) {
        if let Some(Top::Object(members)) = shallow::parse(bytes) {
            example.members = members
                .iter()
                .map(|(name, _)| name)
                .filter(|name| name.len() <= 64)
                .take(16)
                .map(str::to_owned)
                .collect();
        }
    }
    example
}

/// What the detectors made of one response.
#[derive(Debug, Default)]
pub struct Observation<'a> {
    /// The findings.
    pub found: Vec<Detected>,
    /// The members of an honest 2xx JSON object, kept for [`Observation::honest`].
    honest: Option<shallow::Members<'a>>,
}

impl<'a> Observation<'a> {
    /// The kinds found.
    pub fn kinds(&self) -> Kinds {
        Kinds(self.found.iter().fold(0, |bits, d| bits | d.kind.bit()))
    }

    /// For an honest 2xx JSON response: the members a detector reads as markers elsewhere, by
    /// pointer, with their values (what a proposed condition must not match). Only values worth
    /// remembering ([`Shallow::honest_value`]).
    pub fn honest(&self) -> impl Iterator<Item = (&'static str, &Shallow<'a>)> + '_ {
        let members = self.honest.as_ref();
        MARKERS.iter().filter_map(move |(name, pointer)| {
            let value = members?.get(name)?;
            value.is_honest_value().then_some((*pointer, value))
        })
    }
}

/// Members holding a status code (`status_in_body`).
const STATUS_MEMBERS: [&str; 9] = [
    "status",
    "statusCode",
    "status_code",
    "code",
    "http_status",
    "httpStatus",
    "http_code",
    "httpCode",
    "statusCodeValue",
];

/// Members holding a status word (`error_in_success`).
const STATE_MEMBERS: [&str; 3] = ["status", "result", "state"];

/// Status words that mean failure.
const FAILURE_WORDS: [&str; 7] = ["error", "fail", "failed", "failure", "ko", "nok", "err"];

/// Members holding the message, in order of preference.
const MESSAGE_MEMBERS: [&str; 6] = [
    "message",
    "error_description",
    "detail",
    "msg",
    "description",
    "error",
];

/// Members holding the new entity's id (`created_as_200`).
const ID_MEMBERS: [&str; 3] = ["id", "_id", "uuid"];

/// Runs every detector over `response` (one side of `exchange`).
pub fn detect<'a>(
    exchange: &Exchange<'_>,
    response: &Response<'a>,
    scrubber: &Scrubber,
) -> Observation<'a> {
    let mut out = Observation::default();
    let status = response.status;
    let headers = response.headers;
    let content_type = headers.content_type.as_ref();
    let body = response.body;
    let bytes = body.bytes();
    let json = is_json(content_type.map(|v| v.as_bytes()), bytes);
    let html_page =
        html::is_html(content_type) || (content_type.is_none() && looks_like_html(bytes));
    // A body audit saw whole, parsed shallowly when it is JSON.
    let top = match body {
        Body::Complete(bytes) if json => shallow::parse(bytes),
        _ => None,
    };
    let mut push = |kind: Kind, evidence: Evidence| out.found.push(Detected { kind, evidence });
    let no_body = body_is_empty(exchange.method, headers, body);
    let mut honest = false;

    if status.is_success() {
        if let Some(top) = &top {
            let lie = status_lie(top, exchange);
            let lied = lie.is_some();
            match lie {
                Some((kind, evidence)) => push(kind, evidence),
                None => honest = true,
            }
            if !lied && status == StatusCode::OK && exchange.method == Method::POST {
                if let Some(evidence) = created(top) {
                    push(Kind::CreatedAs200, evidence);
                }
            }
        }
    }

    if status == StatusCode::OK && exchange.method != Method::HEAD {
        let empty_object = matches!(&top, Some(Top::Object(m)) if m.is_empty());
        if exchange.method == Method::DELETE && (no_body == Some(true) || empty_object) {
            push(
                Kind::EmptyDelete200,
                Evidence {
                    pattern: Some(if empty_object { "{}" } else { "empty body" }.to_owned()),
                    status: Some(204),
                    basis: Some("a DELETE with nothing to say".to_owned()),
                    ..Evidence::default()
                },
            );
        } else if no_body == Some(true) {
            push(
                Kind::Empty200,
                Evidence {
                    pattern: Some("empty body".to_owned()),
                    status: Some(204),
                    basis: Some("a success with no content".to_owned()),
                    ..Evidence::default()
                },
            );
        }
    }

    if html_page && (status.is_client_error() || status.is_server_error()) {
        let accept_header = exchange.request.accept.as_ref();
        if !accept::prefers_html(accept_header) {
            push(
                Kind::HtmlToApiClient,
                Evidence {
                    header: Some("content-type: text/html".to_owned()),
                    ..Evidence::default()
                },
            );
        }
    }

    if html_page && status == StatusCode::OK {
        if let Some((words, code)) = soft_error(bytes) {
            push(
                Kind::SoftErrorPage,
                Evidence {
                    pattern: Some(words.to_owned()),
                    status: Some(code),
                    basis: Some(format!("the page's title or heading says \"{words}\"")),
                    ..Evidence::default()
                },
            );
        }
    }

    if !bytes.is_empty() {
        if let Some(leak) = scrubber.find(bytes) {
            push(
                Kind::LeakedInternals,
                Evidence {
                    pattern: Some(leak.kind.to_owned()),
                    ..Evidence::default()
                },
            );
        }
    }

    if status == StatusCode::INTERNAL_SERVER_ERROR && !bytes.is_empty() {
        let message = top.as_ref().and_then(message_of);
        if let Some(word) = validation_words(bytes, top.as_ref()) {
            push(
                Kind::ValidationAs500,
                Evidence {
                    pattern: Some(word),
                    message: message.map(|(p, _)| p),
                    status: Some(422),
                    basis: Some("the body reads as a validation failure".to_owned()),
                    ..Evidence::default()
                },
            );
        } else if let Some(word) = dependency_words(bytes) {
            push(
                Kind::DependencyAs500,
                Evidence {
                    pattern: Some(word),
                    message: message.map(|(p, _)| p),
                    status: Some(503),
                    basis: Some("the body says a dependency is down".to_owned()),
                    ..Evidence::default()
                },
            );
        }
    }

    if matches!(status.as_u16(), 429 | 503) && !headers.retry_after {
        push(
            Kind::MissingRetryAfter,
            Evidence {
                header: Some("retry-after: absent".to_owned()),
                ..Evidence::default()
            },
        );
    }

    if status == StatusCode::FORBIDDEN
        && !exchange.request.authorization
        && !exchange.request.cookie
    {
        push(
            Kind::ForbiddenWithoutCredentials,
            Evidence {
                header: Some("authorization: absent, cookie: absent".to_owned()),
                status: Some(401),
                basis: Some("the request carried no credentials".to_owned()),
                ..Evidence::default()
            },
        );
    }

    if status == StatusCode::METHOD_NOT_ALLOWED && !headers.allow {
        push(
            Kind::MethodNotAllowedWithoutAllow,
            Evidence {
                header: Some("allow: absent".to_owned()),
                ..Evidence::default()
            },
        );
    }
    if honest {
        if let Some(Top::Object(members)) = top {
            out.honest = Some(members);
        }
    }
    out
}

/// Whether the body is empty: `Some(true)` when seen empty or framed with `Content-Length: 0`,
/// `None` when audit cannot tell.
fn body_is_empty(method: &Method, headers: &Heads, body: Body<'_>) -> Option<bool> {
    if *method == Method::HEAD {
        return None;
    }
    match body {
        Body::Complete(bytes) => Some(bytes.iter().all(u8::is_ascii_whitespace)),
        Body::Prefix(bytes) => (!bytes.is_empty()).then_some(false),
        Body::Unseen => headers
            .content_length
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|n| n == 0),
    }
}

/// A JSON media type (`application/json`, `application/*+json`, `text/json`), or no type and
/// a body that starts like JSON.
fn is_json(content_type: Option<&[u8]>, body: &[u8]) -> bool {
    match content_type {
        Some(ct) => {
            let media = ct.split(|&b| b == b';').next().unwrap_or(ct).trim_ascii();
            let tail = &media[media.len().saturating_sub(5)..];
            tail.eq_ignore_ascii_case(b"/json") || tail.eq_ignore_ascii_case(b"+json")
        }
        None => matches!(body.trim_ascii_start().first(), Some(b'{' | b'[')),
    }
}

fn looks_like_html(body: &[u8]) -> bool {
    let start = body.trim_ascii_start();
    let head = &start[..start.len().min(15)];
    head.to_ascii_lowercase().starts_with(b"<!doctype html")
        || head.to_ascii_lowercase().starts_with(b"<html")
}

/// The status-lie detectors of a 2xx JSON body, in precedence: a status in the body says the
/// most, then error markers, then a null entity. One response gets at most one of them, so the
/// proposals for it do not compete.
fn status_lie(top: &Top<'_>, exchange: &Exchange<'_>) -> Option<(Kind, Evidence)> {
    let members = match top {
        Top::Null => {
            return Some((
                Kind::NullEntity,
                Evidence {
                    pointer: Some(String::new()),
                    value: Some("null".to_owned()),
                    status: Some(404),
                    basis: Some("the entity is null".to_owned()),
                    ..Evidence::default()
                },
            ))
        }
        Top::Object(members) => members,
        Top::Other => return None,
    };
    for name in STATUS_MEMBERS {
        if let Some(code) = members.get(name).and_then(Shallow::as_status) {
            return Some((
                Kind::StatusInBody,
                Evidence {
                    pointer: Some(pointer(name)),
                    value: Some(
                        members
                            .get(name)
                            .map(Shallow::json_text)
                            .unwrap_or_default(),
                    ),
                    message: message_of(top).map(|(p, _)| p),
                    status: Some(code),
                    basis: Some("from the body".to_owned()),
                    ..Evidence::default()
                },
            ));
        }
    }
    if let Some((name, value)) = error_marker(members) {
        let (status, basis, words_at) = status_for(top, exchange);
        let message = words_at.or_else(|| message_of(top).map(|(p, _)| p));
        return Some((
            Kind::ErrorInSuccess,
            Evidence {
                pointer: Some(pointer(name)),
                value: Some(value),
                message,
                pattern: status_words(status),
                status: Some(status),
                basis: Some(basis),
                ..Evidence::default()
            },
        ));
    }
    if members.len() == 1 {
        if let Some((name, Shallow::Null)) = members.iter().next() {
            return Some((
                Kind::NullEntity,
                Evidence {
                    pointer: Some(pointer(name)),
                    value: Some("null".to_owned()),
                    status: Some(404),
                    basis: Some("the entity is null".to_owned()),
                    ..Evidence::default()
                },
            ));
        }
    }
    None
}

/// The first error marker of a 2xx body: its member and its value as JSON text.
fn error_marker(members: &shallow::Members<'_>) -> Option<(&'static str, String)> {
    for name in STATE_MEMBERS {
        if let Some(Shallow::String(s)) = members.get(name) {
            if FAILURE_WORDS.iter().any(|w| s.eq_ignore_ascii_case(w)) {
                return Some((name, members.get(name)?.json_text()));
            }
        }
    }
    for name in ["success", "ok"] {
        if let Some(Shallow::Bool(false)) = members.get(name) {
            return Some((name, "false".to_owned()));
        }
    }
    match members.get("errors") {
        Some(Shallow::Array { len, .. }) if *len > 0 => return Some(("errors", "[…]".to_owned())),
        Some(Shallow::Object(m)) if !m.is_empty() => return Some(("errors", "{…}".to_owned())),
        _ => {}
    }
    match members.get("error") {
        Some(Shallow::String(s)) if !s.trim().is_empty() => {
            return Some(("error", members.get("error")?.json_text()))
        }
        Some(Shallow::Object(m)) if !m.is_empty() => return Some(("error", "{…}".to_owned())),
        _ => {}
    }
    if members.get("message").is_some() {
        match members.get("code") {
            Some(Shallow::Number(n))
                if n.as_f64()
                    .is_some_and(|n| n != 0.0 && !(200.0..300.0).contains(&n)) =>
            {
                return Some(("code", n.to_string()))
            }
            Some(Shallow::String(s))
                if !s.is_empty()
                    && !["ok", "success", "0", "200", "none"]
                        .iter()
                        .any(|w| s.eq_ignore_ascii_case(w)) =>
            {
                return Some(("code", members.get("code")?.json_text()))
            }
            _ => {}
        }
    }
    None
}

/// The members of an honest 2xx body that a detector reads as markers elsewhere.
/// Members a detector reads as markers, and their pointers.
const MARKERS: [(&str, &str); 8] = [
    ("status", "/status"),
    ("result", "/result"),
    ("state", "/state"),
    ("success", "/success"),
    ("ok", "/ok"),
    ("errors", "/errors"),
    ("error", "/error"),
    ("code", "/code"),
];

/// `created_as_200`: the new entity's id member.
fn created(top: &Top<'_>) -> Option<Evidence> {
    let Top::Object(members) = top else {
        return None;
    };
    let found = ID_MEMBERS
        .iter()
        .find_map(|name| {
            members
                .get(name)
                .filter(|v| v.is_id())
                .map(|v| (pointer(name), v.json_text()))
        })
        .or_else(|| {
            let Some(Shallow::Object(data)) = members.get("data") else {
                return None;
            };
            ID_MEMBERS.iter().find_map(|name| {
                data.get(name)
                    .filter(|l| l.is_id())
                    .map(|l| (format!("/data{}", pointer(name)), l.json_text()))
            })
        })?;
    Some(Evidence {
        pointer: Some(found.0),
        value: Some(found.1),
        status: Some(201),
        basis: Some("a POST that returned the new entity's id".to_owned()),
        ..Evidence::default()
    })
}

/// The member holding the message and its text (at most 256 bytes).
pub(crate) fn message_of(top: &Top<'_>) -> Option<(String, String)> {
    let Top::Object(members) = top else {
        return None;
    };
    for name in MESSAGE_MEMBERS {
        match members.get(name) {
            Some(Shallow::String(s)) if !s.trim().is_empty() => {
                return Some((pointer(name), s.to_string()))
            }
            Some(Shallow::Object(inner)) => {
                if let Some(Leaf::String(s)) = inner.get("message") {
                    return Some((format!("{}/message", pointer(name)), s.to_string()));
                }
            }
            _ => {}
        }
    }
    if let Some(Shallow::Array {
        first: Some(first), ..
    }) = members.get("errors")
    {
        for name in ["message", "msg", "detail"] {
            if let Some(Leaf::String(s)) = first.get(name) {
                return Some((format!("/errors/0/{name}"), s.to_string()));
            }
        }
    }
    None
}

/// Word classes and the status each means, in precedence.
fn word_classes() -> &'static [(u16, &'static str, Regex)] {
    static CLASSES: OnceLock<Vec<(u16, &'static str, Regex)>> = OnceLock::new();
    CLASSES.get_or_init(|| {
        [
            (401, "unauthorized", "unauthori[sz]ed|unauthenticated|not authenticated|token|login|log in|not logged in|credentials?"),
            (403, "forbidden", "forbidden|permission|permissions|not allowed|access denied"),
            (404, "not found", "not found|unknown|no such|does not exist|doesn't exist"),
            (409, "conflict", "conflict|conflicts|stale|locked|version|versions"),
            (429, "rate", "rate|rate[- ]limit(ed)?|quota|too many"),
            (503, "unavailable", "unavailable|down|maintenance|timeout|timed out"),
            (422, "invalid", "invalid|not valid|required|must be|must not|validation"),
        ]
        .into_iter()
        .map(|(status, name, words)| {
            // Words end at anything but a letter or digit: `version_conflict` and
            // `user-not-found` are words too (a `\b` would not part them at `_`).
            let re = format!("(?i)(?:^|[^a-z0-9])(?:{words})(?:[^a-z0-9]|$)");
            (status, name, Regex::new(&re).expect("a valid literal regex"))
        })
        .collect()
    })
}

/// The place of a status among the word classes (which class wins when a message has words of
/// several): for ordering proposed rules.
pub fn word_precedence(status: u16) -> usize {
    word_classes()
        .iter()
        .position(|(s, _, _)| *s == status)
        .unwrap_or(usize::MAX / 2)
}

/// Soft error page words, most specific first, and the status each means.
const SOFT_ERRORS: [(&str, u16); 5] = [
    ("page not found", 404),
    ("not found", 404),
    ("fatal error", 500),
    ("exception", 500),
    ("error", 500),
];

/// The place of soft error page words among the soft error words (most specific first): for
/// ordering proposed rules.
pub fn soft_error_precedence(words: &str) -> usize {
    SOFT_ERRORS
        .iter()
        .position(|(w, _)| *w == words)
        .unwrap_or(SOFT_ERRORS.len())
}

/// The regex of the words that decided a status (for a proposed `when.json` `matches`).
pub fn words_regex(status: u16) -> Option<&'static str> {
    word_classes()
        .iter()
        .find(|(s, _, _)| *s == status)
        .map(|(_, _, re)| re.as_str())
}

fn status_words(status: u16) -> Option<String> {
    word_classes()
        .iter()
        .find(|(s, _, _)| *s == status)
        .map(|(_, name, _)| (*name).to_owned())
}

/// The status a body's words say, why, and the member whose words said it: the message, else
/// the first field error's message; field errors without such words mean 422. With none of
/// that, 400 for a request that carried a body (a client-looking error) and 500 otherwise,
/// said to be a guess.
fn status_for(top: &Top<'_>, exchange: &Exchange<'_>) -> (u16, String, Option<String>) {
    let first_error = match top {
        Top::Object(members) => match members.get("errors") {
            Some(Shallow::Array {
                first: Some(first), ..
            }) => Some(first),
            _ => None,
        },
        _ => None,
    };
    // The message first, then every other member that can hold one (an `error` of
    // `"version_conflict"` beside a message that names no status).
    let mut candidates: Vec<(String, String)> = message_of(top).into_iter().collect();
    if let Top::Object(members) = top {
        for name in MESSAGE_MEMBERS {
            if let Some(Shallow::String(text)) = members.get(name) {
                let at = pointer(name);
                if !candidates.iter().any(|(p, _)| *p == at) {
                    candidates.push((at, text.to_string()));
                }
            }
        }
    }
    if let Some(Leaf::String(text)) = first_error.and_then(|f| f.get("message")) {
        candidates.push(("/errors/0/message".to_owned(), text.to_string()));
    }
    for (at, text) in &candidates {
        for (status, name, re) in word_classes() {
            if re.is_match(text) {
                return (
                    *status,
                    format!("the message says \"{name}\""),
                    Some(at.clone()),
                );
            }
        }
    }
    if first_error.is_some_and(|f| f.get("field").is_some()) {
        return (422, "the body lists field errors".to_owned(), None);
    }
    if exchange.request.content_type {
        (400, "a guess: the request carried a body and no word in the message names a status; review it".to_owned(), None)
    } else {
        (
            500,
            "a guess: no word in the message names a status; review it".to_owned(),
            None,
        )
    }
}

fn validation_words(body: &[u8], top: Option<&Top<'_>>) -> Option<String> {
    static RE: OnceLock<BytesRegex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        BytesRegex::new(r"(?i)\b(invalid|required|must be|must not be|is missing|validation failed|validation error)\b")
            .expect("a valid literal regex")
    });
    if let Some(found) = re.find(&body[..body.len().min(64 * 1024)]) {
        return Some(String::from_utf8_lossy(found.as_bytes()).to_ascii_lowercase());
    }
    // Field errors: `errors: [{ "field": … }]`.
    if let Some(Top::Object(members)) = top {
        if let Some(Shallow::Array {
            first: Some(first), ..
        }) = members.get("errors")
        {
            if first.get("field").is_some() {
                return Some("field errors".to_owned());
            }
        }
    }
    None
}

fn dependency_words(body: &[u8]) -> Option<String> {
    static RE: OnceLock<BytesRegex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        BytesRegex::new(r"(?i)\b(connection refused|econnrefused|could not connect|can't connect|cannot connect|timed out|timeout|database|upstream|unavailable|service down)\b")
            .expect("a valid literal regex")
    });
    re.find(&body[..body.len().min(64 * 1024)])
        .map(|found| String::from_utf8_lossy(found.as_bytes()).to_ascii_lowercase())
}

/// The words of a soft error page's `<title>` or first `<h1>`, and the status they mean.
fn soft_error(page: &[u8]) -> Option<(&'static str, u16)> {
    static RE: OnceLock<BytesRegex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        BytesRegex::new(r"(?is)<(?:title|h1)(?:\s[^>]{0,200})?>([^<]{0,300})<")
            .expect("a valid literal regex")
    });
    let scan = &page[..page.len().min(16 * 1024)];
    for caps in re.captures_iter(scan).take(4) {
        let text = String::from_utf8_lossy(caps.get(1).map_or(&[][..], |m| m.as_bytes()))
            .to_ascii_lowercase();
        for (words, status) in SOFT_ERRORS {
            if text.contains(words) {
                return Some((words, status));
            }
        }
    }
    None
}

/// The JSON pointer of a top-level member.
pub(crate) fn pointer(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    out.push('/');
    for c in name.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
    out
}
