//! The `problem` fuzz target: problem documents, detail sanitising and header hygiene, the
//! pieces every response candor writes or forwards goes through.

use std::net::IpAddr;

use arbitrary::{Arbitrary, Unstructured};
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TE, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};

use super::{header_map, is_text, method, sections, Blob, Word, METHODS, PATHS};
use crate::failure::{Failure, Refusal};
use crate::problem::{sanitize_detail, Problem, CONTENT_TYPE_PROBLEM, MAX_DETAIL_CHARS};
use crate::proxy::hygiene::{self, Peer, X_FORWARDED_FOR, X_REQUEST_ID};

/// Headers that never cross a hop (RFC 9110 §7.6.1), plus framing and `Expect`.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
    "content-length",
];

/// Headers a `Connection` option may not remove.
const PROTECTED: [&str; 6] = [
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
    "forwarded",
];

/// Builds problem documents and cleans request and response heads; must never panic.
///
/// Text input (starts with `#`): a request head (`METHOD TARGET VERSION` and header lines), a
/// `%%` line, a response head (`HTTP/1.1 STATUS` and header lines), a `%%` line, and the detail
/// text. The request's path and `x-request-id` go into the problem document too.
///
/// Oracles: the document is valid JSON with `type`, `title`, `status` and exactly the members
/// set; `sanitize_detail` leaves no control character, no run of whitespace and at most 300
/// characters (+ `…`), and is idempotent; after `prepare_request` / `prepare_response` no
/// hop-by-hop header is left, nor any header a `Connection` option named, except those candor
/// itself sets (`Connection: upgrade` for a protocol switch, `TE: trailers`, and the protected
/// forwarding headers), and the forwarding headers are appended.
pub fn problem(data: &[u8]) {
    let Some(case) = (if is_text(data) {
        text(data)
    } else {
        structured(data)
    }) else {
        return;
    };
    document(&case);
    if let Some(detail) = sanitize_detail(&case.detail) {
        detail_is_sanitised(&detail);
        assert_eq!(
            sanitize_detail(&detail).as_deref(),
            Some(detail.as_str()),
            "sanitize_detail is not idempotent"
        );
    } else {
        assert!(
            case.detail
                .chars()
                .all(|c| c.is_whitespace() || c.is_control()),
            "sanitize_detail dropped printable text {:?}",
            case.detail
        );
    }
    request_hygiene(case.request, &case.peer);
    response_hygiene(case.response_headers, case.status, case.keep_length);
}

struct Case {
    request: Request<()>,
    detail: String,
    status: StatusCode,
    response_headers: HeaderMap,
    keep_length: bool,
    peer: IpAddr,
}

fn text(data: &[u8]) -> Option<Case> {
    let parts = sections(data);
    let request_head = super::strip_comments(parts.first()?);
    let (line, fields) = super::head(request_head);
    let mut words = line.split_ascii_whitespace();
    let method = method(words.next().unwrap_or("GET"));
    let target = words.next().unwrap_or("/");
    let version = version(words.next().unwrap_or("HTTP/1.1"));
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = target
        .parse()
        .unwrap_or_else(|_| http::Uri::from_static("/"));
    *request.version_mut() = version;
    for (name, value) in fields {
        request.headers_mut().append(name, value);
    }
    let (status_line, fields) = super::head(parts.get(1).copied().unwrap_or_default());
    let status = status_line
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut response_headers = HeaderMap::new();
    for (name, value) in fields {
        response_headers.append(name, value);
    }
    let keep_length = request.method() == Method::HEAD || status == StatusCode::NOT_MODIFIED;
    Some(Case {
        request,
        detail: String::from_utf8_lossy(parts.get(2).copied().unwrap_or_default()).into_owned(),
        status,
        response_headers,
        keep_length,
        peer: IpAddr::from([10, 1, 2, 3]),
    })
}

fn version(text: &str) -> Version {
    match text {
        "HTTP/1.0" => Version::HTTP_10,
        "HTTP/2" | "HTTP/2.0" => Version::HTTP_2,
        "HTTP/0.9" => Version::HTTP_09,
        _ => Version::HTTP_11,
    }
}

#[derive(Debug, Arbitrary)]
struct Structured {
    method: Word,
    target: Word,
    version: u8,
    headers: Vec<(Word, Blob)>,
    detail: String,
    status: u16,
    response_headers: Vec<(Word, Blob)>,
    keep_length: bool,
    peer: Option<[u8; 16]>,
}

fn structured(data: &[u8]) -> Option<Case> {
    let input = Structured::arbitrary_take_rest(Unstructured::new(data)).ok()?;
    let mut request = Request::new(());
    *request.method_mut() = method(&input.method.get(&METHODS));
    let target = input.target.get(&TARGETS_AND_PATHS);
    *request.uri_mut() = target
        .parse()
        .unwrap_or_else(|_| http::Uri::from_static("/"));
    *request.version_mut() =
        [Version::HTTP_10, Version::HTTP_11, Version::HTTP_2][usize::from(input.version % 3)];
    *request.headers_mut() = header_map(&input.headers);
    Some(Case {
        request,
        detail: input.detail,
        status: StatusCode::from_u16(100 + input.status % 900).unwrap_or(StatusCode::OK),
        response_headers: header_map(&input.response_headers),
        keep_length: input.keep_length,
        peer: match input.peer {
            Some(octets) => IpAddr::from(octets),
            None => IpAddr::from([127, 0, 0, 1]),
        },
    })
}

const TARGETS_AND_PATHS: [&str; 12] = [
    PATHS[0],
    PATHS[1],
    PATHS[2],
    PATHS[7],
    "*",
    "http://169.254.169.254/latest?x=1",
    "http://user@evil.example/",
    "https://a.example:8443/b",
    "http://[::1]:80/",
    "a.example:443",
    "/?q=\"<script>\"",
    "//double/slash",
];

/// The problem document for the request, with the detail and request id of the input.
fn document(case: &Case) {
    let path = case.request.uri().path();
    let id = case.request.headers().get(&X_REQUEST_ID);
    let mut doc = Problem::new(case.status).instance(path).request_id(id);
    if !case.detail.is_empty() {
        doc = doc.detail(case.detail.clone());
    }
    let bytes = doc.to_bytes();
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("problem document is not JSON ({e}): {bytes:?}"));
    let object = value.as_object().expect("a problem document is an object");
    assert_eq!(object["type"], "about:blank");
    assert!(object["title"].is_string(), "title: {value}");
    assert_eq!(object["status"], case.status.as_u16());
    assert_eq!(object["instance"], path);
    let want_detail = !case.detail.is_empty();
    assert_eq!(object.contains_key("detail"), want_detail, "{value}");
    if want_detail {
        assert_eq!(object["detail"], case.detail.as_str());
    }
    match id.and_then(|v| v.to_str().ok()) {
        Some(id) => assert_eq!(object["request_id"], id),
        None => assert!(!object.contains_key("request_id"), "{value}"),
    }
    let expected =
        3 + usize::from(want_detail) + 1 + usize::from(object.contains_key("request_id"));
    assert_eq!(object.len(), expected, "unexpected members: {value}");

    let response: Response<bytes::Bytes> = doc.into_response();
    assert_eq!(response.status(), case.status);
    assert_eq!(response.headers()["content-type"], CONTENT_TYPE_PROBLEM);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.body(), &bytes);
}

/// What `sanitize_detail` promises of its output.
pub(super) fn detail_is_sanitised(detail: &str) {
    assert!(!detail.is_empty(), "empty detail");
    assert!(
        !detail.chars().any(|c| c.is_control()),
        "control character in detail {detail:?}"
    );
    assert!(
        !detail.chars().any(|c| c.is_whitespace() && c != ' ')
            && !detail.contains("  ")
            && !detail.starts_with(' ')
            && !detail.ends_with(' '),
        "unnormalised whitespace in detail {detail:?}"
    );
    let chars = detail.chars().count();
    assert!(
        chars <= MAX_DETAIL_CHARS || (chars == MAX_DETAIL_CHARS + 1 && detail.ends_with('…')),
        "detail of {chars} characters"
    );
}

/// The header names a head's `Connection` fields nominate, as the peer meant them: every
/// comma-separated token, whatever other bytes share the field line.
fn nominated(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .filter_map(|token| HeaderName::from_bytes(token.trim_ascii()).ok())
        .collect()
}

fn request_hygiene(mut request: Request<()>, peer: &IpAddr) {
    let before = request.headers().clone();
    let checked = hygiene::check(&request);
    if request.method() == Method::CONNECT {
        assert_eq!(checked, Err(Refusal::Connect));
    }
    if checked.is_ok() {
        assert!(
            before.get_all(HOST).iter().count() <= 1,
            "two Host headers accepted"
        );
    }
    if let Err(refusal) = checked {
        let failure = Failure::Refusal(refusal);
        let _ = (failure.proxy_status_error(), failure.detail());
        return;
    }
    let host = checked.unwrap_or(None);
    let authority = HeaderValue::from_static("127.0.0.1:3000");
    let peer = Peer::new(*peer);
    let prepared = hygiene::prepare_request(&mut request, host.clone(), &authority, &peer);
    let after = request.headers();

    let trailers = before.get_all(TE).iter().any(|v| {
        v.as_bytes().split(|b| *b == b',').any(|t| {
            let name = t.split(|b| *b == b';').next().unwrap_or_default();
            name.trim_ascii().eq_ignore_ascii_case(b"trailers")
        })
    });
    for name in HOP_BY_HOP {
        let allowed = match name {
            // `TE: trailers` is passed on, so `Connection: te` names it (RFC 9110 §10.1.4).
            "connection" => prepared.upgrade || trailers,
            "upgrade" => prepared.upgrade,
            "te" => trailers,
            _ => false,
        };
        if !allowed {
            assert!(
                !after.contains_key(name),
                "{name} forwarded upstream: {after:?}"
            );
        }
    }
    assert!(!after.contains_key("expect"), "expect forwarded upstream");
    let connection: &[u8] = match (prepared.upgrade, trailers) {
        (true, true) => b"upgrade, te",
        (true, false) => b"upgrade",
        (false, true) => b"te",
        (false, false) => b"",
    };
    if !connection.is_empty() {
        assert_eq!(values(after, CONNECTION.as_str()), [connection]);
    }
    if prepared.upgrade {
        assert!(after.contains_key(UPGRADE));
    }
    if trailers {
        assert_eq!(values(after, "te"), [b"trailers"]);
    }
    for name in nominated(&before) {
        let kept = PROTECTED.contains(&name.as_str())
            || (name == UPGRADE && prepared.upgrade)
            // candor's own `Connection` names what it forwards (upgrade, te).
            || (name == CONNECTION && (prepared.upgrade || trailers))
            || (name == TE && trailers)
            || name.as_str() == "close";
        assert!(
            kept || !after.contains_key(&name),
            "{name}, named by Connection {:?}, forwarded upstream",
            before.get_all(CONNECTION).iter().collect::<Vec<_>>()
        );
    }

    // Forwarding headers: one line each, ours last.
    let host_sent = host.unwrap_or(authority);
    assert_eq!(after.get_all(HOST).iter().collect::<Vec<_>>(), [&host_sent]);
    let ip = peer.ip.to_str().unwrap_or_default().to_owned();
    for (name, last) in [
        (X_FORWARDED_FOR.as_str(), ip.as_bytes()),
        ("x-forwarded-proto", b"http".as_slice()),
        ("x-forwarded-host", host_sent.as_bytes()),
    ] {
        let lines: Vec<&HeaderValue> = after.get_all(name).iter().collect();
        assert_eq!(lines.len(), 1, "{name}: {lines:?}");
        assert!(lines[0].as_bytes().ends_with(last), "{name}: {lines:?}");
    }
    let id = after
        .get(&X_REQUEST_ID)
        .expect("x-request-id is always set");
    assert_eq!(id, &prepared.request_id);
    assert!(
        !id.is_empty() && id.len() <= 128 && id.as_bytes().iter().all(u8::is_ascii_graphic),
        "request id {id:?}"
    );
    assert_eq!(request.version(), Version::HTTP_11);
    let uri = request.uri();
    assert!(
        uri.scheme().is_none() && uri.authority().is_none(),
        "target {uri} not in origin form"
    );
    let mut response = HeaderMap::new();
    hygiene::echo_request_id(&mut response, &prepared.request_id);
    assert_eq!(response.get(&X_REQUEST_ID), Some(&prepared.request_id));
}

fn response_hygiene(mut headers: HeaderMap, status: StatusCode, keep_length: bool) {
    let before = headers.clone();
    hygiene::prepare_response(&mut headers, status, keep_length);
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    let length = before.get(CONTENT_LENGTH).filter(|_| keep_length);
    for name in HOP_BY_HOP {
        let allowed = match name {
            "connection" | "upgrade" => switching,
            "content-length" => length.is_some(),
            _ => false,
        };
        if !allowed {
            assert!(
                !headers.contains_key(name),
                "{name} forwarded to the client: {headers:?}"
            );
        }
    }
    if switching {
        assert_eq!(values(&headers, "connection"), [b"upgrade"]);
    }
    if let Some(length) = length {
        assert_eq!(
            headers.get_all(CONTENT_LENGTH).iter().collect::<Vec<_>>(),
            [length]
        );
    }
    for name in nominated(&before) {
        let kept = PROTECTED.contains(&name.as_str())
            || (switching && (name == UPGRADE || name == CONNECTION))
            || (name == CONTENT_LENGTH && length.is_some())
            || name.as_str() == "close";
        assert!(
            kept || !headers.contains_key(&name),
            "{name}, named by Connection {:?}, forwarded to the client",
            before.get_all(CONNECTION).iter().collect::<Vec<_>>()
        );
    }
}

fn values<'h>(headers: &'h HeaderMap, name: &str) -> Vec<&'h [u8]> {
    headers
        .get_all(name)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect()
}
