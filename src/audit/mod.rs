//! Audit: find the responses of a legacy API that lie about their status, and propose the
//! rules (with tests) that fix them.
//!
//! The proxy hands each sampled exchange to [`Audit::record`] once its response has gone by (a
//! bounded, decoded prefix of the body, seen as it streamed: audit never buffers or changes a
//! response). `candor audit --har` hands it the entries of a HAR capture instead. Either way
//! the same detectors run and the same [`Report`] comes out, and [`propose`] turns a report into
//! `[[rules]]` and `[[tests]]` that `candor check` accepts.
//!
//! | file | owns |
//! | --- | --- |
//! | `kind.rs` | the names of the ways a response lies |
//! | `route.rs` | path templates: `/users/42` → `/users/{id}` |
//! | `shallow.rs` | a JSON body read two levels deep, bounded |
//! | `detect.rs` | the detectors, one [`Kind`] each, over one [`Exchange`] |
//! | `redact.rs` | examples scrubbed of secrets, tokens and internals, at most 200 bytes |
//! | `store.rs` | the bounded table of routes and findings behind `/audit.json` |
//! | `har.rs` | HAR 1.2 captures read into exchanges, for `candor audit --har` |
//! | `openapi.rs` | an OpenAPI 3.1 document of the observed routes and the statuses sent |
//! | `report.rs` | the report's JSON shape, and merging reports of several pods |
//! | `propose.rs` | proposed rules and tests, as TOML |

pub mod detect;
pub mod har;
mod kind;
pub mod openapi;
pub mod propose;
pub mod redact;
pub mod report;
pub mod route;
pub mod shallow;
mod store;

use http::{HeaderMap, HeaderValue, Method, StatusCode};

pub use detect::Kind;
pub use report::Report;
pub use store::{Audit, Settings};

/// What audit notes of a request: only whether these headers were there (and `Accept`, to
/// tell an API client from a browser). Never their values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestSigns {
    /// The `Accept` header, if any.
    pub accept: Option<HeaderValue>,
    /// An `Authorization` header was sent.
    pub authorization: bool,
    /// A `Cookie` header was sent.
    pub cookie: bool,
    /// A `Content-Type` header was sent (the request carried a body).
    pub content_type: bool,
}

impl RequestSigns {
    /// The signs of a request with these headers.
    pub fn of(headers: &HeaderMap) -> RequestSigns {
        // One walk over the few headers a request has, not four hashed lookups.
        let mut signs = RequestSigns::default();
        for (name, value) in headers {
            if name == http::header::ACCEPT {
                signs.accept.get_or_insert_with(|| value.clone());
            } else if name == http::header::AUTHORIZATION {
                signs.authorization = true;
            } else if name == http::header::COOKIE {
                signs.cookie = true;
            } else if name == http::header::CONTENT_TYPE {
                signs.content_type = true;
            }
        }
        signs
    }
}

/// How much of a response body audit saw, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body<'a> {
    /// None of it: the body was not read (a `HEAD`, a body replaced before it was read, or
    /// no inspection memory free).
    Unseen,
    /// The whole body.
    Complete(&'a [u8]),
    /// Its first bytes only: it was longer than `inspect.max_body_bytes`, or its encoding could
    /// not be decoded from a prefix.
    Prefix(&'a [u8]),
}

impl<'a> Body<'a> {
    /// The bytes seen, empty when unseen.
    pub fn bytes(&self) -> &'a [u8] {
        match *self {
            Body::Unseen => &[],
            Body::Complete(b) | Body::Prefix(b) => b,
        }
    }
}

/// The response headers the detectors read, picked out of a header map in one walk: what an
/// observed exchange keeps instead of a copy of every header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heads {
    /// `Content-Type`.
    pub content_type: Option<HeaderValue>,
    /// `Content-Length`.
    pub content_length: Option<HeaderValue>,
    /// `Content-Encoding`.
    pub content_encoding: Option<HeaderValue>,
    /// A `Retry-After` was sent.
    pub retry_after: bool,
    /// An `Allow` was sent.
    pub allow: bool,
}

impl Heads {
    /// The heads of a response with these headers (the first value of each).
    pub fn of(headers: &HeaderMap) -> Heads {
        use http::header::{ALLOW, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
        let mut heads = Heads::default();
        for (name, value) in headers {
            if name == CONTENT_TYPE {
                heads.content_type.get_or_insert_with(|| value.clone());
            } else if name == CONTENT_LENGTH {
                heads.content_length.get_or_insert_with(|| value.clone());
            } else if name == CONTENT_ENCODING {
                heads.content_encoding.get_or_insert_with(|| value.clone());
            } else if name == RETRY_AFTER {
                heads.retry_after = true;
            } else if name == ALLOW {
                heads.allow = true;
            }
        }
        heads
    }
}

/// One side of an exchange's response: what the upstream sent, or what candor sent on.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// The status.
    pub status: StatusCode,
    /// The headers the detectors read.
    pub headers: &'a Heads,
    /// The body, decoded.
    pub body: Body<'a>,
}

/// One exchange, as the detectors see it.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request path, without the query.
    pub path: &'a str,
    /// What the request carried.
    pub request: &'a RequestSigns,
    /// The upstream's response.
    pub upstream: Response<'a>,
    /// What candor sent when it changed the response; `None` when it sent the upstream's
    /// unchanged (and for HAR entries, which saw one side only).
    pub sent: Option<Response<'a>>,
    /// When the exchange happened.
    pub at: std::time::SystemTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_and_signs_keep_the_first_value_and_only_the_presence_of_the_rest() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("content-type", "application/json"),
            ("content-type", "text/html"),
            ("content-encoding", "gzip"),
            ("allow", "GET"),
            ("server", "legacy"),
        ] {
            headers.append(name, HeaderValue::from_static(value));
        }
        let heads = Heads::of(&headers);
        assert_eq!(
            heads,
            Heads {
                content_type: Some(HeaderValue::from_static("application/json")),
                content_length: None,
                content_encoding: Some(HeaderValue::from_static("gzip")),
                retry_after: false,
                allow: true,
            }
        );
        headers.append("accept", HeaderValue::from_static("application/json"));
        headers.append("accept", HeaderValue::from_static("text/html"));
        headers.append("cookie", HeaderValue::from_static("a=b"));
        let signs = RequestSigns::of(&headers);
        assert_eq!(
            signs.accept,
            Some(HeaderValue::from_static("application/json"))
        );
        assert!(signs.cookie && signs.content_type && !signs.authorization);
    }
}
