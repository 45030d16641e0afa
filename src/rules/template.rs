//! `then.headers` value templates: literal text with placeholders filled from the exchange.
//!
//! `{/pointer}` is the JSON value at that RFC 6901 pointer in the (decoded) upstream body;
//! `{path}`, `{query}`, `{method}` and `{request_id}` are the request's; `{{` and `}}` are
//! literal braces. A template parses once, when the config loads, so a syntax error is a located
//! `check` error and filling one at request time cannot fail in any way but the ones
//! [`FillError`] names, each of which skips that one header.
//!
//! Filling is where body text meets a header, so it is strict: only strings, numbers and
//! booleans substitute; a value with a control character is refused (never escaped, since a
//! CR/LF in an id is an attack or a bug, not an id); in `Location` and `Content-Location` a body
//! value is percent-encoded as one path segment (`a b/c` → `a%20b%2Fc`), and `.`, `..` and the
//! empty string are refused there because no encoding stops a client resolving them as dot
//! segments; the result must be a valid header value of at most [`MAX_FILLED_LEN`] bytes.

use http::header::{HeaderName, HeaderValue, CONTENT_LOCATION, LOCATION};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

use super::pointer::{JsonPointer, PointerError};

/// Longest filled header value, in bytes. Proxies and clients cap response heads (nginx's
/// default `proxy_buffer_size` holds 4 KiB of them), so a longer value would break the response
/// downstream rather than inform anyone.
pub const MAX_FILLED_LEN: usize = 2048;

/// What a path segment keeps unencoded: RFC 3986 unreserved characters. Everything else,
/// sub-delimiters included, is encoded, which is always a valid (if cautious) segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// One piece of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Text copied as written (braces already unescaped).
    Literal(String),
    /// `{/pointer}`: a value from the body.
    Pointer(JsonPointer),
    /// `{path}`: the request path, as the client sent it (already percent-encoded).
    Path,
    /// `{query}`: the raw query string, empty when there is none.
    Query,
    /// `{method}`: the request method.
    Method,
    /// `{request_id}`: the request id candor sent upstream.
    RequestId,
}

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `{` without its `}`.
    #[error("unbalanced '{{' at byte {0} (write '{{{{' for a literal brace)")]
    Unclosed(usize),
    /// A `}` that closes nothing.
    #[error("unbalanced '}}' at byte {0} (write '}}}}' for a literal brace)")]
    Unopened(usize),
    /// `{}`.
    #[error("empty placeholder '{{}}' (expected {{/pointer}}, {{path}}, {{query}}, {{method}} or {{request_id}})")]
    Empty,
    /// `{nope}`.
    #[error("unknown placeholder '{{{0}}}' (expected {{/pointer}}, {{path}}, {{query}}, {{method}} or {{request_id}})")]
    Unknown(String),
    /// `{/a~2}`.
    #[error("placeholder '{{{text}}}': {error}")]
    Pointer {
        /// The placeholder's text.
        text: String,
        /// What is wrong with the pointer.
        error: PointerError,
    },
}

/// Why a template could not be filled for one response: that header is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillError {
    /// The pointer found nothing (or the body is not JSON).
    Missing,
    /// The pointer found an object, an array or `null`.
    NotScalar,
    /// A substituted value holds a control character (CR, LF, NUL, tab, …).
    Control,
    /// In `Location`/`Content-Location`: a value that would be a dot segment or empty.
    DotSegment,
    /// The result is not a valid header value (text outside visible ASCII).
    Invalid,
    /// The result is longer than [`MAX_FILLED_LEN`].
    TooLong,
    /// `then.problem.members`: the copied members passed their bound.
    MembersTooLarge,
}

impl FillError {
    /// A short reason, for logs and `explain`.
    pub fn as_str(self) -> &'static str {
        match self {
            FillError::Missing => "the pointer found no value",
            FillError::NotScalar => "the value is not a string, number or boolean",
            FillError::Control => "the value holds a control character",
            FillError::DotSegment => "the value is empty, '.' or '..'",
            FillError::Invalid => "the result is not a valid header value",
            FillError::TooLong => "the result is longer than 2048 bytes",
            FillError::MembersTooLarge => "the copied members would pass 16 KiB",
        }
    }
}

/// The request's side of a fill: what the non-pointer placeholders read.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The path, without the query.
    pub path: &'a str,
    /// The raw query, empty when there is none.
    pub query: &'a str,
    /// The method.
    pub method: &'a str,
    /// The request id, empty when there is none.
    pub request_id: &'a str,
}

impl Template {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let bytes = text.as_bytes();
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            match b {
                b'{' if bytes.get(i + 1) == Some(&b'{') => {
                    literal.push('{');
                    i += 2;
                }
                b'}' if bytes.get(i + 1) == Some(&b'}') => {
                    literal.push('}');
                    i += 2;
                }
                b'}' => return Err(TemplateError::Unopened(i)),
                b'{' => {
                    let rest = text.get(i + 1..).unwrap_or("");
                    let end = rest
                        .find(['{', '}'])
                        .filter(|&e| rest.as_bytes().get(e) == Some(&b'}'))
                        .ok_or(TemplateError::Unclosed(i))?;
                    let inner = rest.get(..end).unwrap_or("");
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(placeholder(inner)?);
                    i += end + 2;
                }
                _ => {
                    // Copy the whole UTF-8 character; `i` is always on a boundary.
                    let c = text
                        .get(i..)
                        .and_then(|s| s.chars().next())
                        .unwrap_or('\u{fffd}');
                    literal.push(c);
                    i += c.len_utf8();
                }
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { parts })
    }

    /// The pieces, in order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The text when the template has no placeholder (`{{`/`}}` already unescaped).
    pub fn as_literal(&self) -> Option<String> {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Literal(text) => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The body pointers it reads, in order.
    pub fn pointers(&self) -> impl Iterator<Item = &JsonPointer> {
        self.parts.iter().filter_map(|p| match p {
            Part::Pointer(pointer) => Some(pointer),
            _ => None,
        })
    }

    /// Fills the template for the header `name`. `value(i)` is what the template's `i`-th
    /// pointer found (`None`: nothing, or the body is not JSON).
    pub fn fill<'v>(
        &self,
        name: &HeaderName,
        request: &RequestParts<'_>,
        value: impl Fn(usize) -> Option<&'v Value>,
    ) -> Result<HeaderValue, FillError> {
        let location = name == LOCATION || name == CONTENT_LOCATION;
        let mut out = String::new();
        let mut pointer = 0;
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Path => out.push_str(request.path),
                Part::Query => out.push_str(request.query),
                Part::Method => out.push_str(request.method),
                Part::RequestId => out.push_str(request.request_id),
                Part::Pointer(_) => {
                    let found = value(pointer).ok_or(FillError::Missing)?;
                    pointer += 1;
                    let text = scalar(found)?;
                    if text.chars().any(char::is_control) {
                        return Err(FillError::Control);
                    }
                    if location {
                        if matches!(text.as_ref(), "" | "." | "..") {
                            return Err(FillError::DotSegment);
                        }
                        out.extend(utf8_percent_encode(&text, SEGMENT));
                    } else {
                        out.push_str(&text);
                    }
                }
            }
            if out.len() > MAX_FILLED_LEN {
                return Err(FillError::TooLong);
            }
        }
        // Visible ASCII, spaces and tabs only: `HeaderValue` would also take obs-text (bytes
        // over 0x7f), which clients decode as they please.
        if !out
            .bytes()
            .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
        {
            return Err(FillError::Invalid);
        }
        HeaderValue::from_str(&out).map_err(|_| FillError::Invalid)
    }
}

/// A substituted JSON value's text: strings as they are, numbers and booleans as JSON writes them.
fn scalar(value: &Value) -> Result<std::borrow::Cow<'_, str>, FillError> {
    match value {
        Value::String(text) => Ok(text.as_str().into()),
        Value::Number(n) => Ok(n.to_string().into()),
        Value::Bool(b) => Ok(if *b { "true" } else { "false" }.into()),
        Value::Null | Value::Array(_) | Value::Object(_) => Err(FillError::NotScalar),
    }
}

fn placeholder(inner: &str) -> Result<Part, TemplateError> {
    Ok(match inner {
        "" => return Err(TemplateError::Empty),
        "path" => Part::Path,
        "query" => Part::Query,
        "method" => Part::Method,
        "request_id" => Part::RequestId,
        pointer if pointer.starts_with('/') => Part::Pointer(JsonPointer::parse(pointer).map_err(
            |error| TemplateError::Pointer {
                text: pointer.to_owned(),
                error,
            },
        )?),
        other => return Err(TemplateError::Unknown(other.to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const REQUEST: RequestParts<'static> = RequestParts {
        path: "/accounts",
        query: "a=1",
        method: "POST",
        request_id: "r-1",
    };

    fn fill(template: &str, name: &HeaderName, value: &Value) -> Result<String, FillError> {
        let template = Template::parse(template).unwrap_or_else(|e| panic!("{template}: {e}"));
        template
            .fill(name, &REQUEST, |_| Some(value))
            .map(|v| v.to_str().unwrap_or_default().to_owned())
    }

    #[test]
    fn placeholders_and_escapes_parse() {
        let t = Template::parse("/a/{/id}?{query}&m={method}&r={request_id}{{x}}{path}")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.pointers().count(), 1);
        assert_eq!(t.parts().len(), 10, "{t:?}");
        assert_eq!(
            Template::parse("a {{b}} c")
                .ok()
                .and_then(|t| t.as_literal()),
            Some("a {b} c".to_owned())
        );
        assert_eq!(
            Template::parse("").ok().and_then(|t| t.as_literal()),
            Some(String::new())
        );
    }

    #[test]
    fn syntax_errors_are_named() {
        let cases: [(&str, TemplateError); 6] = [
            ("{/a", TemplateError::Unclosed(0)),
            ("x}", TemplateError::Unopened(1)),
            ("{}", TemplateError::Empty),
            ("{nope}", TemplateError::Unknown("nope".into())),
            ("{/a{/b}}", TemplateError::Unclosed(0)),
            (
                "{/a~2}",
                TemplateError::Pointer {
                    text: "/a~2".into(),
                    error: PointerError::BadEscape,
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(Template::parse(text), Err(want), "{text}");
        }
    }

    #[test]
    fn request_parts_fill_as_they_are() {
        let got = fill("{path}/{method}?{query}#{request_id}", &LOCATION, &json!(1));
        assert_eq!(got.as_deref(), Ok("/accounts/POST?a=1#r-1"));
    }

    #[test]
    fn location_values_are_one_encoded_segment() {
        let cases = [
            (json!(42), Ok("/accounts/42")),
            (json!("a b/c"), Ok("/accounts/a%20b%2Fc")),
            (json!("../x"), Ok("/accounts/..%2Fx")),
            (json!("é"), Ok("/accounts/%C3%A9")),
            (json!(true), Ok("/accounts/true")),
            (json!(".."), Err(FillError::DotSegment)),
            (json!(""), Err(FillError::DotSegment)),
            (json!("42\r\nSet-Cookie: x"), Err(FillError::Control)),
            (json!(null), Err(FillError::NotScalar)),
            (json!({"a": 1}), Err(FillError::NotScalar)),
            (json!("x".repeat(10 * 1024)), Err(FillError::TooLong)),
        ];
        for (value, want) in cases {
            let got = fill("/accounts/{/id}", &LOCATION, &value);
            assert_eq!(got.as_deref().map_err(|e| *e), want, "{value}");
        }
    }

    #[test]
    fn other_headers_take_text_unencoded_but_valid() {
        let etag = HeaderName::from_static("etag");
        assert_eq!(fill("\"{/v}\"", &etag, &json!(5)).as_deref(), Ok("\"5\""));
        assert_eq!(fill("{/v}", &etag, &json!("a b/c")).as_deref(), Ok("a b/c"));
        assert_eq!(fill("{/v}", &etag, &json!("é")), Err(FillError::Invalid));
        assert_eq!(fill("{/v}", &etag, &json!("a\tb")), Err(FillError::Control));
        assert_eq!(
            fill("{/v}", &etag, &json!("\u{7f}")),
            Err(FillError::Control)
        );
    }

    #[test]
    fn a_missing_value_skips_the_header() {
        let t = Template::parse("/x/{/id}").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            t.fill(&LOCATION, &REQUEST, |_| None),
            Err(FillError::Missing)
        );
    }
}
