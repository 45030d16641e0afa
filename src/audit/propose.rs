//! Proposals: each finding a rule can fix becomes a `[[rules]]` entry scoped to its route and
//! method, and a `[[tests]]` entry built from its example, with the evidence as a comment.
//!
//! Rules are `mode = "shadow"` unless asked otherwise, so users watch
//! `candor_rewrites_total{mode="shadow"}` before they enforce. A rule's conditions are the
//! narrowest the evidence allows: the member and value that gave the response away, a
//! condition on the message's words when they chose the status, and never a condition the
//! route's honest responses also meet. Findings a built-in fixes (`html_errors`, `scrub`) get
//! a comment naming the setting instead, since a second `[html_errors]` table would not parse.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::Value;

use super::detect::{self, Kind};
use super::report::{FindingReport, Report, RouteReport};
use super::route::OTHER;

/// The `Retry-After` proposed for 429 and 503 answers.
const RETRY_AFTER: &str = "30s";

/// Sets each open finding's `proposal` (and clears fixed ones').
pub fn annotate(report: &mut Report, enforce: bool) {
    let mut names = BTreeSet::new();
    let allows: Vec<Option<String>> = report
        .routes
        .iter()
        .map(|route| allow_for(report, route))
        .collect();
    for (route, allow) in report.routes.iter_mut().zip(allows) {
        let snapshot = route.clone();
        for finding in &mut route.findings {
            finding.proposal = if finding.is_fixed() {
                None
            } else {
                propose(&snapshot, finding, allow.as_deref(), enforce, &mut names)
                    .map(|text| printable_comments(&text))
            };
        }
    }
}

/// The text with every control character in its comments replaced by `?`: a comment may
/// quote a route, and TOML comments take only printable characters.
fn printable_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if line.starts_with('#') {
            let (body, end) = match line.strip_suffix('\n') {
                Some(body) => (body, "\n"),
                None => (line, ""),
            };
            out.extend(
                body.chars()
                    .map(|c| if c.is_control() && c != '\t' { '?' } else { c }),
            );
            out.push_str(end);
        } else {
            out.push_str(line);
        }
    }
    out
}

/// Every proposal of `report` (already [`annotate`]d), as one TOML text to append to a config:
/// the more specific rules first, so a broad one never hides them.
pub fn rules(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Proposed by `candor audit` from {} exchanges observed since {}.",
        report.exchanges, report.since
    );
    out.push_str(
        "# Review each rule, append them to your config, and run `candor check` and `candor test`.\n",
    );
    let mut proposals: Vec<(Rank, &str)> = report
        .routes
        .iter()
        .flat_map(|r| r.findings.iter().map(move |f| (r, f)))
        .filter_map(|(r, f)| f.proposal.as_deref().map(|p| (rank(r, f), p)))
        .collect();
    // Stable: within a rank, route order.
    proposals.sort_by_key(|(rank, _)| *rank);
    for (_, proposal) in proposals {
        out.push('\n');
        out.push_str(proposal);
    }
    out
}

/// Where a proposed rule goes: kind, words, wildcard segments, `{rest}`.
type Rank = (usize, usize, usize, usize);

/// The order proposed rules go in, so that no rule takes another's responses (the first rule
/// that matches wins): by kind in the detectors' precedence (a status in the body before error
/// markers before a null entity before an id); within a kind, a condition on the message's words
/// before none, in the words' precedence; and routes with fewer wildcard segments first.
fn rank(route: &RouteReport, finding: &FindingReport) -> Rank {
    const KINDS: [Kind; 14] = [
        Kind::StatusInBody,
        Kind::ErrorInSuccess,
        Kind::NullEntity,
        Kind::CreatedAs200,
        Kind::ValidationAs500,
        Kind::DependencyAs500,
        Kind::SoftErrorPage,
        Kind::EmptyDelete200,
        Kind::Empty200,
        Kind::MissingRetryAfter,
        Kind::ForbiddenWithoutCredentials,
        Kind::MethodNotAllowedWithoutAllow,
        Kind::HtmlToApiClient,
        Kind::LeakedInternals,
    ];
    let e = &finding.evidence;
    let kind = KINDS
        .iter()
        .position(|k| *k == finding.kind)
        .unwrap_or(KINDS.len());
    let words = e.pattern.is_some() && e.message.is_some();
    let sub = match finding.kind {
        Kind::ErrorInSuccess if words => detect::word_precedence(e.status.unwrap_or(0)),
        Kind::ErrorInSuccess => 100,
        Kind::SoftErrorPage => detect::soft_error_precedence(e.pattern.as_deref().unwrap_or("")),
        _ => 0,
    };
    let wildcards = route.path_regex.matches("[^/]+").count();
    (
        kind,
        sub,
        wildcards,
        usize::from(route.route.contains("{rest}")),
    )
}

/// The methods a route answers, for a proposed `Allow`: those seen on the same template with
/// any status but 405 (and `HEAD` with `GET`).
fn allow_for(report: &Report, route: &RouteReport) -> Option<String> {
    let mut methods: BTreeSet<&str> = report
        .routes
        .iter()
        .filter(|r| r.route == route.route)
        .filter(|r| r.upstream_statuses.keys().any(|s| s != "405"))
        .map(|r| r.method.as_str())
        .collect();
    if methods.contains("GET") {
        methods.insert("HEAD");
    }
    (!methods.is_empty()).then(|| methods.into_iter().collect::<Vec<_>>().join(", "))
}

/// A TOML string: literal (`'…'`) when it holds a backslash and can be, which keeps regexes
/// readable; basic (`"…"`) otherwise.
fn toml_str(s: &str) -> String {
    if s.contains('\\') && !s.contains('\'') && !s.chars().any(char::is_control) {
        format!("'{s}'")
    } else {
        toml::Value::String(s.to_owned()).to_string()
    }
}

fn toml_json(value: &Value) -> String {
    match value {
        Value::String(s) => toml::Value::String(s.clone()).to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => toml::Value::String(other.to_string()).to_string(),
    }
}

/// A rule name from the kind, method and route: letters, digits and `-`, at most 64 bytes,
/// unique within `names`.
fn rule_name(kind: Kind, method: &str, route: &str, names: &mut BTreeSet<String>) -> String {
    let mut slug = String::new();
    for c in route.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_matches('-');
    let kind = kind.as_str().replace('_', "-");
    let mut base = format!("audit-{kind}-{}-{slug}", method.to_ascii_lowercase());
    base.truncate(58);
    let base = base.trim_end_matches('-').to_owned();
    let mut name = base.clone();
    let mut n = 2;
    while !names.insert(name.clone()) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

/// One rule's lines.
#[derive(Default)]
struct Rule {
    when: Vec<String>,
    then: Vec<String>,
}

/// What the test built from the example expects.
struct Expected {
    status: u16,
    /// Headers the rule sets, with the exact value the test's response gets.
    headers: Vec<(&'static str, String)>,
}

fn propose(
    route: &RouteReport,
    finding: &FindingReport,
    allow: Option<&str>,
    enforce: bool,
    names: &mut BTreeSet<String>,
) -> Option<String> {
    if route.route == OTHER {
        return None;
    }
    let Some(path) = test_path(route, finding) else {
        return Some(format!(
            "# {} on {} {}: {} responses\n# evidence: {}\n# note: the route's path is not a valid request target, so no test can be written for a rule\n",
            finding.kind,
            route.method,
            route.route,
            finding.count,
            describe(finding)
        ));
    };
    if let Some(note) = uninspectable(finding) {
        return Some(format!(
            "# {} on {} {}: {} responses\n# evidence: {}\n# fix: {note}\n",
            finding.kind,
            route.method,
            route.route,
            finding.count,
            describe(finding)
        ));
    }
    let e = &finding.evidence;
    let upstream = finding.example.status;
    let mut rule = Rule::default();
    rule.when
        .push(format!("when.method = [{}]", toml_str(&route.method)));
    rule.when
        .push(format!("when.path = {}", toml_str(&route.path_regex)));
    rule.when.push(format!("when.status = [{upstream}]"));
    let status = e.status;
    let mut body: Option<(Value, bool)> = None;
    let mut location = None;
    let problem = |rule: &mut Rule, status: u16, detail: Option<&str>| {
        rule.then.push(format!("then.status = {status}"));
        rule.then.push("then.body = \"problem\"".to_owned());
        if let Some(detail) = detail {
            rule.then
                .push(format!("then.detail_from = {}", toml_str(detail)));
        }
        if matches!(status, 429 | 503) {
            match retry_member(finding) {
                Some(name) => rule.then.push(format!(
                    "then.retry_after_from = {}",
                    toml_str(&detect::pointer(name))
                )),
                None => rule
                    .then
                    .push(format!("then.retry_after = \"{RETRY_AFTER}\"")),
            }
        }
    };
    match finding.kind {
        Kind::ErrorInSuccess => {
            let pointer = e.pointer.as_deref()?;
            let status = status?;
            rule.when.push("when.content_type = \"json\"".to_owned());
            let mut tests = Vec::new();
            match marker_condition(route, pointer, e.value.as_deref()?)? {
                Cond::Json(test) => tests.push(test),
                Cond::Body(re) => rule.when.push(format!("when.body = {}", toml_str(&re))),
            }
            let words = e
                .message
                .as_deref()
                .filter(|_| e.pattern.is_some())
                .zip(detect::words_regex(status));
            if let Some((message, words)) = words {
                tests.push(format!(
                    "{{ pointer = {}, matches = {} }}",
                    toml_str(message),
                    toml_str(words)
                ));
            }
            if !tests.is_empty() {
                rule.when
                    .push(format!("when.json = [{}]", tests.join(", ")));
            }
            problem(&mut rule, status, e.message.as_deref());
            if let Some(members) = carried(finding) {
                rule.then.push(members);
            }
            body = Some((synthesize(finding), true));
        }
        Kind::StatusInBody => {
            let pointer = e.pointer.as_deref()?;
            rule.when.push("when.content_type = \"json\"".to_owned());
            // Only a 4xx/5xx in the member: an honest `"code": 0` beside it is left alone.
            let p = toml_str(pointer);
            if e.value.as_deref().is_some_and(|v| v.starts_with('"')) {
                rule.when.push(format!(
                    "when.json = [{{ pointer = {p}, matches = '^[45][0-9][0-9]$' }}]"
                ));
            } else {
                rule.when.push(format!(
                    "when.json = [{{ pointer = {p}, gte = 400 }}, {{ pointer = {p}, lte = 599 }}]"
                ));
            }
            rule.then.push(format!("then.status_from = {p}"));
            rule.then.push("then.body = \"problem\"".to_owned());
            if let Some(message) = &e.message {
                rule.then
                    .push(format!("then.detail_from = {}", toml_str(message)));
            }
            body = Some((synthesize(finding), true));
        }
        Kind::NullEntity => {
            let pointer = e.pointer.as_deref()?;
            rule.when.push("when.content_type = \"json\"".to_owned());
            if pointer.is_empty() {
                rule.when.push("when.body = '^\\s*null\\s*$'".to_owned());
            } else {
                rule.when.push(format!(
                    "when.json = [{{ pointer = {}, is_null = true }}]",
                    toml_str(pointer)
                ));
            }
            problem(&mut rule, 404, None);
            body = Some((synthesize(finding), true));
        }
        Kind::CreatedAs200 => {
            let pointer = e.pointer.as_deref()?;
            rule.when.push("when.content_type = \"json\"".to_owned());
            rule.when.push(format!(
                "when.json = [{{ pointer = {}, exists = true }}]",
                toml_str(pointer)
            ));
            rule.then.push("then.status = 201".to_owned());
            let sep = if route.route.ends_with('/') { "" } else { "/" };
            rule.then.push(format!(
                "then.headers = [{{ name = \"location\", value = {} }}]",
                toml_str(&format!("{{path}}{sep}{{{pointer}}}"))
            ));
            let body_value = synthesize(finding);
            let id = lookup(&body_value, pointer).and_then(|v| match v {
                Value::Number(n) => Some(n.to_string()),
                Value::String(s)
                    if !s.is_empty()
                        && s.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
                {
                    Some(s.clone())
                }
                _ => None,
            });
            body = Some((body_value, true));
            location = id.map(|id| (sep, id));
        }
        Kind::EmptyDelete200 | Kind::Empty200 => {
            let pattern = if finding.kind == Kind::EmptyDelete200 {
                "^\\s*(\\{\\s*\\})?\\s*$"
            } else {
                "^\\s*$"
            };
            rule.when.push(format!("when.body = '{pattern}'"));
            rule.then.push("then.status = 204".to_owned());
            rule.then.push("then.body = \"empty\"".to_owned());
            let text = if e.pattern.as_deref() == Some("{}") {
                "{}"
            } else {
                ""
            };
            body = Some((Value::String(text.to_owned()), false));
        }
        Kind::SoftErrorPage => {
            let words = e.pattern.as_deref()?;
            rule.when
                .push("when.content_type = '(?i)text/html'".to_owned());
            rule.when.push(format!(
                "when.body = {}",
                toml_str(&format!(
                    "(?is)<(title|h1)[^>]*>[^<]*{}",
                    regex::escape(words)
                ))
            ));
            problem(&mut rule, status.unwrap_or(500), None);
            body = Some((
                Value::String(format!("<html><head><title>{words}</title></head></html>")),
                false,
            ));
        }
        Kind::ValidationAs500 | Kind::DependencyAs500 => {
            let status = status?;
            let words = if finding.kind == Kind::ValidationAs500 {
                r"(?i)\b(invalid|required|must be|must not be|is missing|validation failed|validation error)\b"
            } else {
                r"(?i)\b(connection refused|econnrefused|could not connect|can't connect|cannot connect|timed out|timeout|database|upstream|unavailable|service down)\b"
            };
            if e.pattern.as_deref() == Some("field errors") {
                rule.when.push(
                    "when.json = [{ pointer = \"/errors/0/field\", exists = true }]".to_owned(),
                );
            } else {
                rule.when.push(format!("when.body = {}", toml_str(words)));
            }
            // A dependency's message names hosts and drivers: it is not copied to the client.
            let detail = (finding.kind == Kind::ValidationAs500)
                .then_some(e.message.as_deref())
                .flatten();
            problem(&mut rule, status, detail);
            if finding.kind == Kind::ValidationAs500 {
                if let Some(members) = carried(finding) {
                    rule.then.push(members);
                }
            }
            body = Some((synthesize(finding), true));
        }
        Kind::MissingRetryAfter => {
            rule.when
                .push("when.header = [{ name = \"retry-after\", absent = true }]".to_owned());
            rule.then
                .push(format!("then.retry_after = \"{RETRY_AFTER}\""));
            body = Some((Value::String(String::new()), false));
        }
        Kind::ForbiddenWithoutCredentials => {
            rule.when.push(
                "when.request_header = [{ name = \"authorization\", absent = true }, { name = \"cookie\", absent = true }]"
                    .to_owned(),
            );
            rule.then.push("then.status = 401".to_owned());
            rule.then.push(
                "then.headers = [{ name = \"www-authenticate\", value = 'Bearer realm=\"api\"' }]"
                    .to_owned(),
            );
            body = Some((Value::String(String::new()), false));
        }
        Kind::MethodNotAllowedWithoutAllow => {
            let allow = allow?;
            rule.when
                .push("when.header = [{ name = \"allow\", absent = true }]".to_owned());
            rule.then.push(format!(
                "then.headers = [{{ name = \"allow\", value = {} }}]",
                toml_str(allow)
            ));
            body = Some((Value::String(String::new()), false));
        }
        Kind::HtmlToApiClient | Kind::LeakedInternals => {}
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {} on {} {}: {} of {} responses ({} already fixed)",
        finding.kind,
        route.method,
        route.route,
        finding.count,
        route.upstream_statuses.values().sum::<u64>(),
        finding.fixed
    );
    let _ = writeln!(out, "# evidence: {}", describe(finding));
    match finding.kind {
        Kind::HtmlToApiClient => {
            out.push_str("# fix: turn on the html_errors built-in ([html_errors] enabled = true): it answers API clients\n#      with a problem document and browsers with the page\n");
            return Some(out);
        }
        Kind::LeakedInternals => {
            out.push_str("# fix: turn on the scrub built-in ([scrub] enabled = true) for error responses; a success that\n#      leaks needs the upstream fixed\n");
            return Some(out);
        }
        _ => {}
    }
    if let Some(basis) = &e.basis {
        if basis.starts_with("a guess") {
            let _ = writeln!(out, "# status: {basis}");
        }
    }
    let name = rule_name(finding.kind, &route.method, &route.route, names);
    let mode = if enforce { "enforce" } else { "shadow" };
    let _ = writeln!(out, "[[rules]]\nname = \"{name}\"\nmode = \"{mode}\"");
    for line in rule.when.iter().chain(&rule.then) {
        out.push_str(line);
        out.push('\n');
    }
    let (body, json) = body?;
    let mut headers = Vec::new();
    if let Some((sep, id)) = location {
        headers.push(("location", format!("{path}{sep}{id}")));
    }
    match finding.kind {
        Kind::MissingRetryAfter | Kind::DependencyAs500 => {
            headers.push(("retry-after", "30".to_owned()))
        }
        Kind::ForbiddenWithoutCredentials => {
            headers.push(("www-authenticate", "Bearer realm=\"api\"".to_owned()))
        }
        Kind::MethodNotAllowedWithoutAllow => {
            headers.push(("allow", allow.unwrap_or_default().to_owned()))
        }
        _ => {}
    }
    let expected = Expected {
        status: rule_status(&rule, &body, e, upstream),
        headers,
    };
    write_test(
        &mut out, route, finding, &path, &name, enforce, &body, json, &expected,
    );
    Some(out)
}

/// Members that say the status or the message: the problem document says those itself.
const SAID: [&str; 22] = [
    "status",
    "result",
    "state",
    "success",
    "ok",
    "code",
    "statusCode",
    "status_code",
    "http_status",
    "httpStatus",
    "http_code",
    "httpCode",
    "statusCodeValue",
    "message",
    "msg",
    "detail",
    "description",
    "error_description",
    "error",
    "type",
    "title",
    "instance",
];

/// Members naming when to retry, read by `then.retry_after_from`.
const RETRY_MEMBERS: [&str; 5] = [
    "retry_after",
    "retryAfter",
    "retry_in",
    "retryIn",
    "retry_after_seconds",
];

fn retry_member(finding: &FindingReport) -> Option<&str> {
    finding
        .example
        .members
        .iter()
        .map(String::as_str)
        .find(|m| RETRY_MEMBERS.contains(m))
}

/// `then.problem.members` carrying what the lying body told the client beside its error
/// markers (the field errors of a 422, the versions of a 409): every other top-level member,
/// named in camelCase as problem documents' extension members are, secrets left out.
fn carried(finding: &FindingReport) -> Option<String> {
    let mut names = BTreeSet::new();
    let mut members = Vec::new();
    for source in &finding.example.members {
        if SAID.contains(&source.as_str())
            || RETRY_MEMBERS.contains(&source.as_str())
            || source == "request_id"
            || super::redact::secret_name().is_match(source)
            || !source
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            continue;
        }
        let name = camel(source);
        let valid = name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && !["type", "title", "status", "detail", "instance", "requestId"]
                .contains(&name.as_str());
        if valid && names.insert(name.clone()) {
            members.push(format!("{name} = {}", toml_str(&detect::pointer(source))));
        }
        if members.len() == 8 {
            break;
        }
    }
    (!members.is_empty()).then(|| format!("then.problem.members = {{ {} }}", members.join(", ")))
}

/// `current_version` → `currentVersion`.
fn camel(name: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in name.chars() {
        if c == '_' || c == '-' {
            upper = !out.is_empty();
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The media types candor inspects by default (`inspect.content_types`).
const INSPECTED: [&str; 4] = [
    "application/json",
    "application/problem+json",
    "text/html",
    "text/plain",
];

/// Why no rule can see the body a finding needs: its response has no `Content-Type`, or one
/// candor does not inspect by default.
fn uninspectable(finding: &FindingReport) -> Option<String> {
    let needs_body = matches!(
        finding.kind,
        Kind::ErrorInSuccess
            | Kind::StatusInBody
            | Kind::NullEntity
            | Kind::CreatedAs200
            | Kind::SoftErrorPage
            | Kind::ValidationAs500
            | Kind::DependencyAs500
    );
    let needs_body = needs_body
        || (finding.kind == Kind::EmptyDelete200
            && finding.evidence.pattern.as_deref() == Some("{}"));
    if !needs_body {
        return None;
    }
    let Some(content_type) = &finding.example.content_type else {
        return Some(
            "the response has no Content-Type, so candor does not read its body; have the upstream send one"
                .to_owned(),
        );
    };
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    (!INSPECTED.contains(&media.as_str())).then(|| {
        format!("candor reads only the bodies of inspect.content_types; add \"{media}\" there, then audit again")
    })
}

/// The status the rule gives the test's body.
fn rule_status(rule: &Rule, body: &Value, e: &super::report::Evidence, upstream: u16) -> u16 {
    for line in &rule.then {
        if let Some(n) = line.strip_prefix("then.status = ") {
            if let Ok(n) = n.parse() {
                return n;
            }
        }
        if line.starts_with("then.status_from") {
            return e.status.unwrap_or_else(|| {
                e.pointer
                    .as_deref()
                    .and_then(|p| lookup(body, p))
                    .and_then(|v| v.as_u64())
                    .and_then(|n| u16::try_from(n).ok())
                    .unwrap_or(500)
            });
        }
    }
    upstream
}

/// The path of a proposed test: the example's when the route's regex matches it, else a sample
/// of the route; `None` when neither is a valid request target.
fn test_path(route: &RouteReport, finding: &FindingReport) -> Option<String> {
    let valid = |p: &str| {
        p.starts_with('/') && !p.contains('?') && p.parse::<http::uri::PathAndQuery>().is_ok()
    };
    let path = &finding.example.path;
    match regex::Regex::new(&route.path_regex) {
        Ok(re) if re.is_match(path) && valid(path) => Some(path.clone()),
        _ => valid(&route.sample_path).then(|| route.sample_path.clone()),
    }
}

#[allow(clippy::too_many_arguments)]
fn write_test(
    out: &mut String,
    route: &RouteReport,
    finding: &FindingReport,
    path: &str,
    name: &str,
    enforce: bool,
    body: &Value,
    json: bool,
    expected: &Expected,
) {
    let path = path.to_owned();
    let text = match body {
        Value::String(s) if !json => s.clone(),
        other => other.to_string(),
    };
    let _ = writeln!(out, "\n[[tests]]");
    let _ = writeln!(
        out,
        "name = {}",
        toml_str(&format!(
            "audit: {} {} ({})",
            route.method, path, finding.kind
        ))
    );
    let headers = finding
        .example
        .accept
        .as_ref()
        .map(|accept| {
            format!(
                ", headers = {{ accept = {} }}",
                toml::Value::String(accept.clone())
            )
        })
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "request = {{ method = {}, path = {}{headers} }}",
        toml_str(&route.method),
        toml::Value::String(path.clone())
    );
    let _ = writeln!(out, "response.status = {}", finding.example.status);
    let content_type = if json {
        finding
            .example
            .content_type
            .clone()
            .or_else(|| Some("application/json".to_owned()))
    } else {
        finding
            .example
            .content_type
            .clone()
            .filter(|_| !text.is_empty())
    };
    if let Some(ct) = content_type {
        let _ = writeln!(
            out,
            "response.headers = {{ content-type = {} }}",
            toml::Value::String(ct)
        );
    }
    let _ = writeln!(out, "response.body = {}", toml::Value::String(text));
    if enforce {
        let mut expect = format!("rule = \"{name}\", status = {}", expected.status);
        if !expected.headers.is_empty() {
            let headers: Vec<String> = expected
                .headers
                .iter()
                .map(|(name, value)| format!("{name} = {}", toml::Value::String(value.clone())))
                .collect();
            let _ = write!(expect, ", headers = {{ {} }}", headers.join(", "));
        }
        let _ = writeln!(out, "expect = {{ {expect} }}");
    } else {
        let _ = writeln!(
            out,
            "expect = {{ shadow = \"{name}\", status = {} }}",
            finding.example.status
        );
    }
}

/// A condition on an error marker.
enum Cond {
    /// A `when.json` test.
    Json(String),
    /// A `when.body` regex.
    Body(String),
}

/// A condition on an error marker that the route's honest responses do not meet.
fn marker_condition(route: &RouteReport, pointer: &str, value: &str) -> Option<Cond> {
    let honest: Vec<&Value> = route
        .honest
        .iter()
        .filter(|h| h.pointer == pointer)
        .flat_map(|h| &h.values)
        .collect();
    let p = toml_str(pointer);
    match value {
        "[…]" | "{…}" => {
            if honest.is_empty() {
                Some(Cond::Json(format!("{{ pointer = {p}, exists = true }}")))
            } else if honest.iter().all(|v| v.is_null()) {
                Some(Cond::Json(format!("{{ pointer = {p}, is_null = false }}")))
            } else {
                // Honest responses carry an empty one: a non-empty one is told by its text.
                let name = pointer.trim_start_matches('/');
                Some(Cond::Body(format!(
                    r#""{}"\s*:\s*[\[{{]\s*[^\]}}\s]"#,
                    regex::escape(name)
                )))
            }
        }
        text => {
            let value: Value = serde_json::from_str(text).ok()?;
            if honest.contains(&&value) {
                return None;
            }
            // Evidence keeps 64 bytes of a string: a longer one cannot be matched exactly.
            if value.as_str().is_some_and(|v| v.len() >= 64) {
                return None;
            }
            if pointer == "/code" || pointer == "/error" {
                if honest.is_empty() {
                    return Some(Cond::Json(format!("{{ pointer = {p}, exists = true }}")));
                }
                if honest.iter().all(|v| v.is_null()) {
                    return Some(Cond::Json(format!("{{ pointer = {p}, is_null = false }}")));
                }
            }
            Some(Cond::Json(format!(
                "{{ pointer = {p}, equals = {} }}",
                toml_json(&value)
            )))
        }
    }
}

/// The example's body when it is whole; otherwise the smallest body of the same shape: the
/// member that gave it away and a message with the words that chose the status.
fn synthesize(finding: &FindingReport) -> Value {
    if finding.example.complete {
        if let Ok(value) = serde_json::from_str::<Value>(&finding.example.body) {
            return value;
        }
    }
    let e = &finding.evidence;
    let mut body = Value::Object(serde_json::Map::new());
    if finding.kind == Kind::NullEntity && e.pointer.as_deref() == Some("") {
        return Value::Null;
    }
    if let (Some(pointer), Some(value)) = (&e.pointer, &e.value) {
        let value = match value.as_str() {
            "[…]" => serde_json::json!([{ "field": "name", "message": "is required" }]),
            "{…}" => serde_json::json!({ "message": "failed" }),
            text => serde_json::from_str(text).unwrap_or(Value::Null),
        };
        set(&mut body, pointer, value);
    }
    if let Some(message) = &e.message {
        let words = match e.status {
            Some(401) => "unauthorized",
            Some(403) => "forbidden",
            Some(404) => "not found",
            Some(409) => "version conflict",
            Some(422) => "invalid",
            Some(429) => "too many requests",
            Some(503) => "database unavailable",
            _ => "failed",
        };
        set(&mut body, message, Value::String(words.to_owned()));
    } else if let Some(pattern) = &e.pattern {
        if matches!(finding.kind, Kind::ValidationAs500 | Kind::DependencyAs500) {
            if pattern == "field errors" {
                set(
                    &mut body,
                    "/errors",
                    serde_json::json!([{ "field": "name", "message": "is required" }]),
                );
            } else {
                set(&mut body, "/error", Value::String(pattern.clone()));
            }
        }
    }
    body
}

/// Sets the member at `pointer`, making objects (and arrays for numeric segments) on the way.
fn set(root: &mut Value, pointer: &str, value: Value) {
    let segments: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    let mut at = root;
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let next_is_index = segments
            .get(i + 1)
            .is_some_and(|s| s.parse::<usize>().is_ok());
        let fresh = if next_is_index {
            Value::Array(Vec::new())
        } else {
            Value::Object(serde_json::Map::new())
        };
        at = match at {
            Value::Object(map) => {
                let slot = map.entry(segment.clone()).or_insert(fresh);
                if last {
                    *slot = value;
                    return;
                }
                slot
            }
            Value::Array(items) => {
                if items.is_empty() {
                    items.push(fresh);
                }
                let slot = &mut items[0];
                if last {
                    *slot = value;
                    return;
                }
                slot
            }
            _ => return,
        };
    }
}

fn lookup<'v>(value: &'v Value, pointer: &str) -> Option<&'v Value> {
    value.pointer(pointer)
}

/// The evidence in words, for the comment above a proposal and `candor audit`'s table.
pub fn describe(finding: &FindingReport) -> String {
    let e = &finding.evidence;
    let mut parts = Vec::new();
    if let Some(pointer) = &e.pointer {
        let pointer = if pointer.is_empty() {
            "(the body)"
        } else {
            pointer
        };
        match &e.value {
            Some(value) => parts.push(format!("{pointer} = {value}")),
            None => parts.push(pointer.to_owned()),
        }
    }
    if let Some(header) = &e.header {
        parts.push(header.clone());
    }
    if let Some(pattern) = &e.pattern {
        parts.push(format!("matched \"{pattern}\""));
    }
    if let (Some(status), Some(basis)) = (e.status, &e.basis) {
        parts.push(format!("→ {status} ({basis})"));
    }
    let text = parts.join("; ");
    // Comments are one line each.
    text.replace(['\n', '\r'], " ")
}
