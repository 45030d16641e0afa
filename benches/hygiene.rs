//! Header hygiene at the proxy's edges (`candor::proxy::hygiene`), the per-request head work
//! every forwarded exchange pays whatever the rules: `check` (what must be refused), then
//! `prepare_request` (origin-form target, hop-by-hop headers removed, `Via`, `X-Forwarded-*`, a
//! request id), and on the way back `prepare_response` plus `echo_request_id`.
//!
//! The heads are realistic: a browser's `fetch` to an API (12 header lines, `Connection:
//! keep-alive`, no request id, so candor makes one), an API client behind a load balancer (its
//! request id kept, `X-Forwarded-For` appended to), and a legacy PHP backend's 200 (10 lines,
//! `Connection` and `Keep-Alive` to strip). The functions rewrite a head in place, so each
//! iteration copies a fresh one and drops it, as a server allocates and frees one per request;
//! a baseline times that copy alone (timing it out with `iter_batched` left the allocator in an
//! unrealistic state and made the figures jump by 2× between runs). A fresh request id is a
//! random UUID: its value changes, its cost does not.
//!
//! Run with `cargo bench --bench hygiene` (`-- --quick` for a shorter run).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, HOST, VIA};
use http::{Method, Request, StatusCode, Uri, Version};

use candor::proxy::hygiene::{self, Peer, X_FORWARDED_FOR, X_REQUEST_ID};

/// A browser's `fetch()` from a single-page app to its API.
const BROWSER: &[(&str, &str)] = &[
    ("host", "api.example.com"),
    (
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    ),
    ("accept", "application/json, text/plain, */*"),
    ("accept-language", "en-US,en;q=0.5"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
    ("referer", "https://app.example.com/users"),
    ("origin", "https://app.example.com"),
    ("connection", "keep-alive"),
    (
        "cookie",
        "session=9f1c2e7a4b5d6e8f0a1b2c3d4e5f6a7b; csrftoken=Zx81Qm3nR5tV7wY9",
    ),
    ("sec-fetch-dest", "empty"),
    ("sec-fetch-mode", "cors"),
    ("sec-fetch-site", "same-site"),
];

/// A service-to-service call that already passed a load balancer.
const API_CLIENT: &[(&str, &str)] = &[
    ("host", "api.internal:8080"),
    ("user-agent", "okhttp/4.12.0"),
    ("accept", "application/json"),
    ("accept-encoding", "gzip"),
    (
        "authorization",
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI3In0.c2lnbmF0dXJl",
    ),
    ("x-request-id", "7f3e2a9c-41d2-4b8e-9f00-1c2d3e4f5a6b"),
    ("x-forwarded-for", "203.0.113.7"),
    ("x-forwarded-proto", "https"),
    (
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ),
    ("connection", "keep-alive"),
];

/// A legacy PHP backend's 200 behind Apache.
const LEGACY_RESPONSE: &[(&str, &str)] = &[
    ("date", "Thu, 26 Nov 2026 07:44:00 GMT"),
    ("server", "Apache/2.4.57 (Debian)"),
    ("x-powered-by", "PHP/7.4.33"),
    ("content-type", "application/json; charset=utf-8"),
    ("content-length", "60"),
    ("connection", "Keep-Alive"),
    ("keep-alive", "timeout=5, max=100"),
    ("cache-control", "no-cache, private"),
    (
        "set-cookie",
        "PHPSESSID=5c1f0e9d8b7a6c5d4e3f2a1b; path=/; HttpOnly",
    ),
    ("vary", "Accept-Encoding"),
];

fn headers(lines: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(lines.len());
    for (name, value) in lines {
        map.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    map
}

/// A request as hyper hands it to candor's front service: origin-form, HTTP/1.1.
fn request(uri: &Uri, headers: &HeaderMap) -> Request<()> {
    let mut req = Request::new(());
    *req.method_mut() = Method::GET;
    *req.uri_mut() = uri.clone();
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers.clone();
    req
}

fn bench(c: &mut Criterion) {
    let uri = Uri::from_static("/api/v1/users/7?fields=name,email");
    let browser = headers(BROWSER);
    let api = headers(API_CLIENT);
    let legacy = headers(LEGACY_RESPONSE);
    let upstream = HeaderValue::from_static("127.0.0.1:3000");
    let peer = Peer::new("10.1.2.3".parse().expect("a literal IP"));
    let request_id = HeaderValue::from_static("7f3e2a9c-41d2-4b8e-9f00-1c2d3e4f5a6b");

    // Check once, outside the timed loops, that each head takes the path its name promises.
    let mut req = request(&uri, &browser);
    let host = hygiene::check(&req).expect("the browser head is forwarded");
    assert_eq!(
        host.as_ref().map(|h| h.as_bytes()),
        Some(&b"api.example.com"[..])
    );
    let prepared = hygiene::prepare_request(&mut req, host, &upstream, &peer);
    assert!(!prepared.upgrade);
    assert!(!req.headers().contains_key(CONNECTION));
    assert_eq!(req.headers()[VIA], "1.1 candor");
    assert_eq!(req.headers()[&X_FORWARDED_FOR], "10.1.2.3");
    assert_eq!(req.headers()[&X_REQUEST_ID], prepared.request_id);
    let mut req = request(&uri, &api);
    let host = hygiene::check(&req).expect("the API client head is forwarded");
    let prepared = hygiene::prepare_request(&mut req, host, &upstream, &peer);
    assert_eq!(prepared.request_id, request_id, "a client's id is kept");
    assert_eq!(req.headers()[&X_FORWARDED_FOR], "203.0.113.7, 10.1.2.3");
    let mut response = legacy.clone();
    hygiene::prepare_response(&mut response, StatusCode::OK, false);
    hygiene::echo_request_id(&mut response, &request_id);
    for gone in [
        CONNECTION,
        CONTENT_LENGTH,
        HeaderName::from_static("keep-alive"),
    ] {
        assert!(!response.contains_key(&gone), "{gone} is stripped");
    }
    assert_eq!(response.len(), LEGACY_RESPONSE.len() - 3 + 1);
    assert_eq!(req.headers()[HOST], "api.internal:8080");
    println!(
        "heads: browser {} lines, API client {} lines, legacy response {} lines",
        browser.len(),
        api.len(),
        legacy.len()
    );

    c.bench_function("check/browser head, 12 lines", |b| {
        let req = request(&uri, &browser);
        b.iter(|| hygiene::check(black_box(&req)))
    });
    // Each iteration copies a fresh head, as hyper parses a fresh one per request, and drops it
    // at the end, so the allocator stays in the steady state of a server. The baselines time the
    // copy and drop alone: hygiene's own cost is the difference.
    c.bench_function("baseline/copy and drop the browser head", |b| {
        b.iter(|| request(black_box(&uri), black_box(&browser)))
    });
    c.bench_function("prepare_request/browser head, new request id", |b| {
        let host = hygiene::check(&request(&uri, &browser)).ok().flatten();
        b.iter(|| {
            let mut req = request(black_box(&uri), black_box(&browser));
            let prepared = hygiene::prepare_request(&mut req, host.clone(), &upstream, &peer);
            (req, prepared)
        })
    });
    c.bench_function("request side/check + prepare_request, browser head", |b| {
        b.iter(|| {
            let mut req = request(black_box(&uri), black_box(&browser));
            let host = hygiene::check(&req).ok().flatten();
            let prepared = hygiene::prepare_request(&mut req, host, &upstream, &peer);
            (req, prepared)
        })
    });
    // What a request without an id pays for one.
    c.bench_function("new_request_id/random v4 UUID as a header value", |b| {
        b.iter(hygiene::new_request_id)
    });
    c.bench_function("baseline/copy and drop the API client head", |b| {
        b.iter(|| request(black_box(&uri), black_box(&api)))
    });
    c.bench_function(
        "prepare_request/API client head, id kept, X-Forwarded-For appended",
        |b| {
            let host = hygiene::check(&request(&uri, &api)).ok().flatten();
            b.iter(|| {
                let mut req = request(black_box(&uri), black_box(&api));
                let prepared = hygiene::prepare_request(&mut req, host.clone(), &upstream, &peer);
                (req, prepared)
            })
        },
    );
    c.bench_function("baseline/copy and drop the legacy response head", |b| {
        b.iter(|| black_box(&legacy).clone())
    });
    c.bench_function(
        "response side/prepare_response + echo_request_id, legacy 200, 10 lines",
        |b| {
            b.iter(|| {
                let mut headers = black_box(&legacy).clone();
                hygiene::prepare_response(&mut headers, black_box(StatusCode::OK), false);
                hygiene::echo_request_id(&mut headers, &request_id);
                headers
            })
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
