//! RFC 9457 problem documents: the one way candor writes an error body.
//!
//! Every response candor makes itself (an upstream failure, a refused request, a rule's
//! `body = "problem"`) goes through [`Problem`], so the shape is the same everywhere and no code
//! path can leak upstream text or internal error messages into a body by accident: the only
//! free-text member, `detail`, is set by the caller from fixed strings or bounded, validated
//! input.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Response, StatusCode};
use serde::ser::{Serialize, SerializeMap, Serializer};

/// The media type of a problem document (RFC 9457 §3).
pub const CONTENT_TYPE_PROBLEM: &str = "application/problem+json";

/// Longest `detail` candor copies out of an upstream body, in characters.
pub const MAX_DETAIL_CHARS: usize = 300;

/// Makes upstream-supplied text fit for a problem document's `detail`: control characters become
/// spaces, runs of whitespace collapse, and the result is cut to `MAX_DETAIL_CHARS` characters
/// (with an ellipsis). Returns `None` when nothing printable is left.
pub fn sanitize_detail(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len().min(MAX_DETAIL_CHARS + 3));
    let mut chars = 0;
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_whitespace() || c.is_control() {
            pending_space = !out.is_empty();
            continue;
        }
        if chars == MAX_DETAIL_CHARS {
            out.push('…');
            break;
        }
        if pending_space {
            out.push(' ');
            chars += 1;
            pending_space = false;
            if chars == MAX_DETAIL_CHARS {
                out.push('…');
                break;
            }
        }
        out.push(c);
        chars += 1;
    }
    (!out.is_empty()).then_some(out)
}

/// An RFC 9457 problem details document.
///
/// `type` is `about:blank` unless a rule names one: the status code and `title` then carry the
/// meaning, as RFC 9457 §4.2.1 prescribes for documents that add no semantics of their own.
#[derive(Debug, Clone)]
pub struct Problem<'a> {
    kind: &'a str,
    title: &'a str,
    status: u16,
    detail: Option<Cow<'a, str>>,
    instance: Option<&'a str>,
    /// Extension member (RFC 9457 §3.2): correlates the response with candor's logs.
    request_id: Option<&'a str>,
    /// Extension members a rule copied from the upstream body (`then.problem.members`); their
    /// names never collide with the members above (`check` refuses them).
    members: &'a [(&'a str, serde_json::Value)],
}

impl Serialize for Problem<'_> {
    /// The standard members first, then the extensions, absent ones left out.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", self.kind)?;
        map.serialize_entry("title", self.title)?;
        map.serialize_entry("status", &self.status)?;
        if let Some(detail) = &self.detail {
            map.serialize_entry("detail", detail)?;
        }
        if let Some(instance) = self.instance {
            map.serialize_entry("instance", instance)?;
        }
        if let Some(id) = self.request_id {
            map.serialize_entry("request_id", id)?;
        }
        for (name, value) in self.members {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<'a> Problem<'a> {
    /// A document for `status`, titled with the status's canonical reason phrase.
    pub fn new(status: StatusCode) -> Self {
        Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: None,
            instance: None,
            request_id: None,
            members: &[],
        }
    }

    /// Sets `type` (a URI reference, checked when the config loaded).
    pub fn kind(mut self, kind: &'a str) -> Self {
        self.kind = kind;
        self
    }

    /// Sets `title`.
    pub fn title(mut self, title: &'a str) -> Self {
        self.title = title;
        self
    }

    /// Sets the extension members copied from the upstream body.
    pub fn members(mut self, members: &'a [(&'a str, serde_json::Value)]) -> Self {
        self.members = members;
        self
    }

    /// Sets the human-readable explanation.
    pub fn detail(mut self, detail: impl Into<Cow<'a, str>>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Sets `instance`: the request path (never the query, which may carry credentials).
    pub fn instance(mut self, path: &'a str) -> Self {
        self.instance = Some(path);
        self
    }

    /// Sets the `request_id` extension member.
    pub fn request_id(mut self, id: Option<&'a HeaderValue>) -> Self {
        self.request_id = id.and_then(|v| v.to_str().ok());
        self
    }

    /// The status this document describes.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// Serialises the document as compact JSON.
    pub fn to_bytes(&self) -> Bytes {
        // Serialising a struct of strings and integers cannot fail; an empty object is still a
        // valid (if unhelpful) problem document should it ever happen.
        // Sized for the common document (about 150 bytes with a detail) so it is written without
        // growing.
        let mut out = Vec::with_capacity(256);
        serde_json::to_writer(&mut out, self)
            .map(|()| Bytes::from(out))
            .unwrap_or_else(|_| Bytes::from_static(b"{}"))
    }

    /// Builds the full response: status, `application/problem+json`, `Cache-Control: no-store`
    /// (an error must never be cached as if it were the resource) and the body. hyper derives
    /// `Content-Length` from the body.
    pub fn into_response<B: From<Bytes>>(self) -> Response<B> {
        let status = self.status();
        let mut response = Response::new(B::from(self.to_bytes()));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_PROBLEM));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_has_the_rfc_9457_members() {
        let id = HeaderValue::from_static("abc");
        let doc = Problem::new(StatusCode::BAD_GATEWAY)
            .detail("The upstream refused the connection.")
            .instance("/users/7")
            .request_id(Some(&id));
        let v: serde_json::Value = serde_json::from_slice(&doc.to_bytes()).unwrap();
        assert_eq!(v["type"], "about:blank");
        assert_eq!(v["title"], "Bad Gateway");
        assert_eq!(v["status"], 502);
        assert_eq!(v["detail"], "The upstream refused the connection.");
        assert_eq!(v["instance"], "/users/7");
        assert_eq!(v["request_id"], "abc");
    }

    #[test]
    fn details_are_sanitized_and_bounded() {
        assert_eq!(sanitize_detail("  a\r\nb\t\u{0}c  "), Some("a b c".into()));
        assert_eq!(sanitize_detail(" \n\t"), None);
        let long = "x".repeat(MAX_DETAIL_CHARS + 50);
        let cut = sanitize_detail(&long).unwrap();
        assert_eq!(cut.chars().count(), MAX_DETAIL_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn a_rule_sets_type_title_and_extension_members() {
        let members = [
            ("errors", serde_json::json!([{"field": "email"}])),
            ("currentVersion", serde_json::json!(5)),
        ];
        let doc = Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
            .kind("https://errors.example.com/validation")
            .title("Your request is not valid")
            .members(&members);
        let v: serde_json::Value = serde_json::from_slice(&doc.to_bytes()).unwrap();
        assert_eq!(v["type"], "https://errors.example.com/validation");
        assert_eq!(v["title"], "Your request is not valid");
        assert_eq!(v["status"], 422);
        assert_eq!(v["errors"][0]["field"], "email");
        assert_eq!(v["currentVersion"], 5);
    }

    #[test]
    fn absent_members_are_omitted() {
        let v: serde_json::Value =
            serde_json::from_slice(&Problem::new(StatusCode::NOT_FOUND).to_bytes()).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 3, "{v}");
    }

    #[test]
    fn response_is_problem_json_and_not_cacheable() {
        let r: Response<Bytes> = Problem::new(StatusCode::GATEWAY_TIMEOUT).into_response();
        assert_eq!(r.status(), 504);
        assert_eq!(r.headers()[CONTENT_TYPE], CONTENT_TYPE_PROBLEM);
        assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
    }
}
