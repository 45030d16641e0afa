//! Examples fit to keep: at most [`MAX_EXAMPLE`] bytes of body, with secrets, tokens, cookies
//! and leaked internals taken out before anything is stored.
//!
//! A JSON body of at most [`MAX_PARSED`] bytes is parsed, and every string under a secret-like
//! name (`password`, `token`, `api_key`, …), every token-like string (a JWT, `Bearer …`, 32 or
//! more base64 characters) and every string showing internals (the scrub patterns) is replaced
//! by a marker; the example is then its compact serialisation, whole when that fits. Any other
//! body is text: withheld entirely when it shows internals, otherwise its start with tokens
//! and `key=value` secrets replaced.

use std::sync::OnceLock;

use regex::Regex;

use super::report::Example;
use super::{Body, Exchange, Response};
use crate::builtin::scrub::{self, Scrubber};

/// Most bytes of body an example keeps.
pub const MAX_EXAMPLE: usize = 200;

/// Largest JSON body parsed to redact it member by member.
pub const MAX_PARSED: usize = 8 * 1024;

/// Longest path, `Accept` or `Content-Type` kept.
const MAX_FIELD: usize = 256;

/// The marker a redacted value is replaced by.
pub const REDACTED: &str = "<redacted>";

pub(crate) fn secret_name() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(?i)pass(word|wd)?$|secret|token|api[_-]?key|^auth|authori[sz]ation|cookie|session|credential|private[_-]?key|^pwd$|^ssn$|card[_-]?number|^cvv$")
            .expect("a valid literal regex")
    })
}

fn token_text() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        // `keep` is the word before a secret, kept so the example still reads (and still
        // matches a rule's condition on its words); only the secret itself is replaced.
        Regex::new(concat!(
            r"eyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*){0,2}",
            r"|(?P<keep>(?i:\b(?:bearer|basic|token)\s+))[A-Za-z0-9._~+/=-]{8,}",
            // `password=x`, `token: x`, and in JSON text `"password":"x"`.
            r#"|(?P<keep2>(?i:\b(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|session(?:id)?|sid|cookie|auth)\b"?\s*[=:]\s*"?))[^\s&,;"]+"#,
            r"|[A-Za-z0-9+/_-]{32,}={0,2}",
        ))
        .expect("a valid literal regex")
    })
}

/// Text with tokens and `key=value` secrets replaced by [`REDACTED`].
pub fn text(input: &str) -> String {
    token_text()
        .replace_all(input, |caps: &regex::Captures<'_>| {
            let keep = caps
                .name("keep")
                .or_else(|| caps.name("keep2"))
                .map_or("", |m| m.as_str());
            format!("{keep}{REDACTED}")
        })
        .into_owned()
}

/// The example of `response` for a finding with `evidence`.
pub fn example(
    exchange: &Exchange<'_>,
    response: &Response<'_>,
    json: bool,
    scrubber: &Scrubber,
) -> Example {
    let (body, complete) = body(response.body, json, scrubber);
    Example {
        path: text(&cut(exchange.path, MAX_FIELD)),
        accept: exchange
            .request
            .accept
            .as_ref()
            .and_then(|v| visible(v.as_bytes())),
        authorization: exchange.request.authorization,
        cookie: exchange.request.cookie,
        status: response.status.as_u16(),
        content_type: response
            .headers
            .content_type
            .as_ref()
            .and_then(|v| visible(v.as_bytes())),
        body,
        complete,
        members: Vec::new(),
    }
}

/// A header value kept for an example: visible ASCII, at most 64 bytes, tokens redacted.
fn visible(value: &[u8]) -> Option<String> {
    if value.len() > 64 || !value.iter().all(|b| (0x20..0x7f).contains(b)) {
        return None;
    }
    std::str::from_utf8(value).ok().map(text)
}

fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// The body of an example, and whether it is the whole body (replayable in a test).
fn body(body: Body<'_>, json: bool, scrubber: &Scrubber) -> (String, bool) {
    let bytes = body.bytes();
    let whole = matches!(body, Body::Complete(_));
    if json && whole && bytes.len() <= MAX_PARSED {
        if let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(bytes) {
            let original = value.clone();
            redact_value(&mut value, false, scrubber, 0);
            let out = value.to_string();
            // A redacted example no longer says what the response said: a test must not
            // replay it (its words may be gone), so it is not `complete`.
            if out.len() <= MAX_EXAMPLE {
                return (out, value == original);
            }
            return (scrub::excerpt(out.as_bytes(), MAX_EXAMPLE), false);
        }
    }
    if let Some(leak) = scrubber.find(bytes) {
        return (format!("<withheld: the body shows {}>", leak.kind), false);
    }
    let start = &bytes[..bytes.len().min(4 * MAX_EXAMPLE)];
    let redacted = text(&String::from_utf8_lossy(start));
    let excerpt = scrub::excerpt(redacted.as_bytes(), MAX_EXAMPLE);
    let complete = whole
        && start.len() == bytes.len()
        && std::str::from_utf8(bytes).is_ok()
        && excerpt == redacted;
    (excerpt, complete)
}

fn redact_value(value: &mut serde_json::Value, secret: bool, scrubber: &Scrubber, depth: usize) {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            if secret {
                *s = REDACTED.to_owned();
            } else if let Some(leak) = scrubber.find(s.as_bytes()) {
                *s = format!("<redacted: {}>", leak.kind);
            } else {
                let redacted = text(s);
                if redacted != *s {
                    *s = redacted;
                }
            }
        }
        Value::Number(_) | Value::Bool(_) if secret => *value = Value::String(REDACTED.to_owned()),
        Value::Array(items) if depth < 32 => {
            for item in items {
                redact_value(item, secret, scrubber, depth + 1);
            }
        }
        Value::Object(members) if depth < 32 => {
            for (name, item) in members.iter_mut() {
                let secret = secret || secret_name().is_match(name);
                redact_value(item, secret, scrubber, depth + 1);
            }
        }
        Value::Array(_) | Value::Object(_) => *value = Value::String(REDACTED.to_owned()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrubber() -> Scrubber {
        Scrubber::new(&[]).unwrap()
    }

    #[test]
    fn secrets_and_tokens_never_reach_an_example() {
        let body = br#"{"user":"ann","password":"hunter2","session":{"id":"s1"},"note":"Bearer abcdefgh12345678","jwt":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig"}"#;
        let (out, complete) = super::body(Body::Complete(body), true, &scrubber());
        assert!(!complete, "a redacted example is not replayed: {out}");
        for secret in ["hunter2", "s1", "abcdefgh12345678", "eyJhbGci"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains("\"user\":\"ann\""));
        let text_body = b"error: token=abc123secret&x=1 cookie: sid=zzz";
        let (out, _) = super::body(Body::Complete(text_body), false, &scrubber());
        assert!(
            !out.contains("abc123secret") && !out.contains("zzz"),
            "{out}"
        );
    }

    #[test]
    fn internals_are_withheld_and_examples_are_short() {
        let trace = b"Traceback (most recent call last):\n  File \"/app/x.py\", line 3, in f\n";
        let (out, complete) = super::body(Body::Complete(trace), false, &scrubber());
        assert_eq!(out, "<withheld: the body shows python-traceback>");
        assert!(!complete);
        let json = br#"{"error":"Traceback (most recent call last):\n  File \"/app/x.py\", line 3, in f"}"#;
        let (out, complete) = super::body(Body::Complete(json), true, &scrubber());
        assert_eq!(out, r#"{"error":"<redacted: python-traceback>"}"#);
        assert!(!complete);
        let long = format!("{{\"message\":\"{}\"}}", "x ".repeat(1000));
        let (out, complete) = super::body(Body::Complete(long.as_bytes()), true, &scrubber());
        assert!(out.len() <= MAX_EXAMPLE + 3 && !complete);
        let (out, _) = super::body(Body::Prefix(&[0xff; 5000]), false, &scrubber());
        assert!(out.len() <= MAX_EXAMPLE + 3);
    }
}
