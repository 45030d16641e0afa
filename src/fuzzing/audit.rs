//! The `audit` fuzz target: the detectors, the table and the proposals over hostile exchanges.

use std::sync::Arc;
use std::time::SystemTime;

use arbitrary::{Arbitrary, Unstructured};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::{is_text, method, sections, strip_comments, unescape, METHODS};
use crate::audit::{self, propose, redact, Audit, Body, Exchange, Heads, RequestSigns, Response};
use crate::builtin::scrub::Scrubber;
use crate::inspect::{simulate, Normalizer};

/// Planted under a secret-like member name: no example may ever hold it.
const SECRET: &str = "PLANTED-SECRET-4f1c";

/// What proposals are appended to for the `check` oracle: built-ins off, so each proposed test
/// sees only its own rule.
const BASE: &str = "[upstream]\nurl = \"http://127.0.0.1:9\"\n[html_errors]\nenabled = false\n[scrub]\nenabled = false\n[retry_after]\nstatuses = []\n";

/// Observes a run of exchanges (or reads a HAR capture: an input starting with `{`) and proposes
/// rules for them; must never panic.
///
/// Text input (starts with `#`): after the comment lines, exchanges separated by `%%` lines;
/// each is a line `METHOD PATH STATUS`, then `> name: value` request header lines and
/// `< name: value` response header lines, an empty line, and the body (escapes as in the other
/// targets: `\n`, `\xHH`).
///
/// Oracles: the report round-trips through JSON; routes stay within `max_routes` (plus one
/// `{other}` per method); examples hold at most 200 bytes of body and never the planted secret;
/// evidence values are short; the proposals, shadow and enforced, pass `check` when appended
/// to a config, and each proposed test passes.
pub fn audit(data: &[u8]) {
    if data.first() == Some(&b'{') {
        return har(data);
    }
    let Some(case) = (if is_text(data) {
        text(data)
    } else {
        structured(data)
    }) else {
        return;
    };
    let audit = Audit::new(&audit::Settings {
        enabled: true,
        sample: 1.0,
        max_routes: case.max_routes,
    });
    let scrubber = scrubber();
    let now = SystemTime::now();
    let mut methods = std::collections::BTreeSet::new();
    for ex in &case.exchanges {
        methods.insert(ex.method.clone());
        let signs = RequestSigns::of(&ex.request);
        audit.record(
            &Exchange {
                method: &ex.method,
                path: &ex.path,
                request: &signs,
                upstream: Response {
                    status: ex.status,
                    headers: &Heads::of(&ex.headers),
                    body: if ex.prefix {
                        Body::Prefix(&ex.body)
                    } else {
                        Body::Complete(&ex.body)
                    },
                },
                sent: None,
                at: now,
            },
            scrubber,
        );
    }
    let report = audit.report();
    oracles(
        &report,
        case.max_routes + methods.len(),
        planted_only_as_secrets(data),
    );
}

/// Whether every copy of the planted secret in the input sits under a secret-like name (the
/// structured inputs put it only there; a mutated text input may have moved it anywhere, and
/// a secret under an ordinary name is not one the scrubber can know).
fn planted_only_as_secrets(data: &[u8]) -> bool {
    let count = |needle: &[u8]| data.windows(needle.len()).filter(|w| *w == needle).count();
    let all = count(SECRET.as_bytes());
    let named: usize = ["password", "token"]
        .iter()
        .map(|name| count(format!("\"{name}\":\"{SECRET}").as_bytes()))
        .sum();
    !is_text(data) || all == named
}

/// A HAR capture (an input starting with `{`): read without a panic, then the same oracles.
fn har(data: &[u8]) {
    let Ok(read) = audit::har::read(data, None, 64 * 1024) else {
        return;
    };
    assert!(
        read.skipped.total() <= read.entries,
        "{} of {} entries skipped",
        read.skipped.total(),
        read.entries
    );
    let methods = read
        .report
        .routes
        .iter()
        .map(|r| &r.method)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    oracles(&read.report, 1000 + methods, false);
}

/// The default scrub patterns, compiled once: compiling them is most of an input's cost.
fn scrubber() -> &'static Scrubber {
    static SCRUBBER: std::sync::OnceLock<Scrubber> = std::sync::OnceLock::new();
    SCRUBBER.get_or_init(|| match Scrubber::new(&[]) {
        Ok(scrubber) => scrubber,
        Err(e) => panic!("the default scrub patterns compile: {e}"),
    })
}

/// What must hold of any report: it round-trips, its routes are bounded, its examples are
/// short and secret-free, and its proposals pass `check` and their own tests.
fn oracles(report: &audit::Report, max_routes: usize, check_secret: bool) {
    let json = serde_json::to_string(report).unwrap_or_else(|e| panic!("report: {e}"));
    let back: audit::Report =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("report does not read back: {e}"));
    assert_eq!(&back, report, "the report does not round-trip through JSON");
    assert!(
        report.routes.len() <= max_routes,
        "{} routes kept, at most {max_routes}",
        report.routes.len(),
    );
    for route in &report.routes {
        for finding in &route.findings {
            let example = &finding.example;
            assert!(
                example.body.len() <= redact::MAX_EXAMPLE + 3,
                "example of {} bytes",
                example.body.len()
            );
            assert!(
                !check_secret
                    || !json_has(&serde_json::to_string(finding).unwrap_or_default(), SECRET),
                "a planted secret reached a finding: {finding:?}"
            );
            if let Some(value) = &finding.evidence.value {
                assert!(value.len() <= 80, "evidence value of {} bytes", value.len());
            }
        }
    }
    for enforce in [false, true] {
        let mut report = report.clone();
        propose::annotate(&mut report, enforce);
        let proposals = propose::rules(&report);
        let text = format!("{BASE}\n{proposals}");
        let config = match crate::config::from_toml(&text, "proposed.toml", Default::default()) {
            Ok(config) => config,
            Err(e) => panic!("check refused a proposal:\n{e}\n{text}"),
        };
        let normalizer = Arc::new(Normalizer::new(Arc::new(config.clone())));
        for test in &config.tests {
            if let Err(e) = simulate::run_test(&normalizer, test) {
                panic!("a proposed test fails: {}: {e}\n{text}", test.name);
            }
        }
    }
}

fn json_has(json: &str, needle: &str) -> bool {
    json.contains(needle)
}

struct Case {
    max_routes: usize,
    exchanges: Vec<Canned>,
}

struct Canned {
    method: Method,
    path: String,
    request: HeaderMap,
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
    prefix: bool,
}

fn text(data: &[u8]) -> Option<Case> {
    let data = strip_comments(data);
    let mut exchanges = Vec::new();
    for section in sections(data) {
        let mut lines = section.split(|b| *b == b'\n');
        let first = String::from_utf8_lossy(lines.next()?).into_owned();
        let mut words = first.split_whitespace();
        let method = method(words.next()?);
        let path = words.next()?.to_owned();
        let status = StatusCode::from_u16(words.next()?.parse().ok()?).ok()?;
        let mut request = HeaderMap::new();
        let mut headers = HeaderMap::new();
        let mut body = Vec::new();
        let mut in_body = false;
        for line in lines {
            if in_body {
                if !body.is_empty() {
                    body.push(b'\n');
                }
                body.extend(unescape(line));
                continue;
            }
            match line.first() {
                Some(b'>') => add(&mut request, &line[1..]),
                Some(b'<') => add(&mut headers, &line[1..]),
                _ => in_body = true,
            }
        }
        exchanges.push(Canned {
            method,
            path,
            request,
            status,
            headers,
            body,
            prefix: false,
        });
    }
    Some(Case {
        max_routes: 1000,
        exchanges,
    })
}

fn add(map: &mut HeaderMap, line: &[u8]) {
    if let Some((name, value)) = super::field(line) {
        map.append(name, value);
    }
}

#[derive(Arbitrary, Debug)]
struct Arb {
    max_routes: u8,
    exchanges: Vec<ArbExchange>,
}

#[derive(Arbitrary, Debug)]
struct ArbExchange {
    method: u8,
    path: Vec<ArbSegment>,
    accept: u8,
    authorization: bool,
    cookie: bool,
    request_body: bool,
    status: u16,
    content_type: u8,
    retry_after: bool,
    allow: bool,
    body: ArbBody,
    prefix: bool,
}

#[derive(Arbitrary, Debug)]
enum ArbSegment {
    Word(u8),
    Number(u32),
    Hex(u64),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum ArbBody {
    Json(Vec<(u8, ArbValue)>),
    Html(u8, String),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum ArbValue {
    Null,
    Bool(bool),
    Int(i64),
    Status(u16),
    Float(f64),
    Word(u8),
    Text(String),
    List(Vec<ArbValue>),
    Object(Vec<(u8, ArbValue)>),
}

const WORDS: [&str; 16] = [
    "users", "orders", "v1", "api", "items", "me", "jobs", "search", "a.b", "x+y", "%20", "",
    "{id}", "..", "ünï", "admin",
];

const KEYS: [&str; 24] = [
    "status",
    "result",
    "state",
    "success",
    "ok",
    "errors",
    "error",
    "code",
    "message",
    "msg",
    "detail",
    "id",
    "_id",
    "uuid",
    "data",
    "statusCode",
    "http_status",
    "field",
    "password",
    "token",
    "items",
    "description",
    "error_description",
    "name",
];

const VALUES: [&str; 16] = [
    "error",
    "fail",
    "ok",
    "not found",
    "invalid",
    "must be positive",
    "token expired",
    "permission denied",
    "version conflict",
    "rate limit",
    "database unavailable",
    "connection refused",
    "Traceback (most recent call last):",
    "10.0.0.7",
    "/var/www/app.php",
    "ORA-00942",
];

const CONTENT_TYPES: [&str; 6] = [
    "application/json",
    "application/problem+json",
    "text/html; charset=utf-8",
    "text/plain",
    "application/vnd.api+json",
    "",
];

const ACCEPTS: [&str; 5] = [
    "application/json",
    "text/html,application/xhtml+xml,*/*;q=0.8",
    "*/*",
    "",
    "text/html",
];

const HTML_TITLES: [&str; 5] = [
    "Page Not Found",
    "Fatal error",
    "Exception",
    "Welcome",
    "500 Internal Server Error",
];

fn pick<'a>(list: &[&'a str], i: u8) -> &'a str {
    list[usize::from(i) % list.len()]
}

fn structured(data: &[u8]) -> Option<Case> {
    let arb = Arb::arbitrary(&mut Unstructured::new(data)).ok()?;
    let exchanges = arb
        .exchanges
        .into_iter()
        .take(24)
        .map(|ex| {
            let mut path = String::new();
            for segment in ex.path.iter().take(20) {
                path.push('/');
                match segment {
                    ArbSegment::Word(i) => path.push_str(pick(&WORDS, *i)),
                    ArbSegment::Number(n) => path.push_str(&n.to_string()),
                    ArbSegment::Hex(n) => path.push_str(&format!("{n:016x}")),
                    ArbSegment::Raw(s) => path.push_str(s),
                }
            }
            if path.is_empty() {
                path.push('/');
            }
            let mut request = HeaderMap::new();
            let accept = pick(&ACCEPTS, ex.accept);
            if !accept.is_empty() {
                request.insert("accept", HeaderValue::from_static(accept));
            }
            if ex.authorization {
                request.insert("authorization", HeaderValue::from_static("Bearer x"));
            }
            if ex.cookie {
                request.insert("cookie", HeaderValue::from_static("sid=1"));
            }
            if ex.request_body {
                request.insert("content-type", HeaderValue::from_static("application/json"));
            }
            let mut headers = HeaderMap::new();
            let ct = pick(&CONTENT_TYPES, ex.content_type);
            if !ct.is_empty() {
                headers.insert("content-type", HeaderValue::from_static(ct));
            }
            if ex.retry_after {
                headers.insert("retry-after", HeaderValue::from_static("5"));
            }
            if ex.allow {
                headers.insert("allow", HeaderValue::from_static("GET"));
            }
            let body = match ex.body {
                ArbBody::Json(members) => {
                    let object = object(&members, 0);
                    serde_json::to_vec(&object).unwrap_or_default()
                }
                ArbBody::Html(title, rest) => format!(
                    "<html><head><title>{}</title></head><body><h1>{rest}</h1></body></html>",
                    pick(&HTML_TITLES, title)
                )
                .into_bytes(),
                ArbBody::Raw(bytes) => bytes,
            };
            Canned {
                method: method(pick(&METHODS, ex.method)),
                path,
                request,
                status: StatusCode::from_u16(100 + ex.status % 500).unwrap_or(StatusCode::OK),
                headers,
                body,
                prefix: ex.prefix,
            }
        })
        .collect();
    Some(Case {
        max_routes: usize::from(arb.max_routes % 16) + 1,
        exchanges,
    })
}

fn object(members: &[(u8, ArbValue)], depth: usize) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (key, value) in members.iter().take(16) {
        let key = pick(&KEYS, *key);
        let value = if key == "password" || key == "token" {
            serde_json::Value::String(SECRET.to_owned())
        } else {
            json(value, depth + 1)
        };
        map.insert(key.to_owned(), value);
    }
    serde_json::Value::Object(map)
}

fn json(value: &ArbValue, depth: usize) -> serde_json::Value {
    use serde_json::Value;
    if depth > 6 {
        return Value::Null;
    }
    match value {
        ArbValue::Null => Value::Null,
        ArbValue::Bool(b) => Value::Bool(*b),
        ArbValue::Int(n) => Value::from(*n),
        ArbValue::Status(n) => Value::from(100 + n % 500),
        ArbValue::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        ArbValue::Word(i) => Value::String(pick(&VALUES, *i).to_owned()),
        ArbValue::Text(s) => Value::String(s.clone()),
        ArbValue::List(items) => {
            Value::Array(items.iter().take(8).map(|v| json(v, depth + 1)).collect())
        }
        ArbValue::Object(members) => object(members, depth),
    }
}
