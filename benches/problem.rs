//! Rendering RFC 9457 problem documents, the one way candor writes an error body: what a rule's
//! `then.body = "problem"` (the load comparison's `/err`), the `[html_errors]` built-in (`/html404`)
//! and candor's own failures cost on top of the rest of the request.
//!
//! Cases: the smallest document (`type`, `title`, `status`); the document a rule renders
//! (`detail` from the upstream body, `instance`, `request_id`); the whole response a failure
//! answers with; `sanitize_detail` on a typical upstream message and on a long one it must clean
//! and cut; and the `/html404` path: the detail read from the load comparison's 477-byte HTML 404
//! page (all boilerplate, so none), then the document.
//!
//! Run with `cargo bench --bench problem` (`-- --quick` for a shorter run).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};

use candor::builtin::html;
use candor::problem::{sanitize_detail, Problem, CONTENT_TYPE_PROBLEM, MAX_DETAIL_CHARS};
use candor::proxy::StackBody;

/// The origin's HTML 404 page from the load comparison (`benches/compare/`).
const HTML_404: &[u8] = include_bytes!("compare/www/html404.html");

/// What a legacy upstream's error message may look like at its worst: long, with line breaks,
/// tabs and runs of spaces (a message that embeds a multi-line SQL error, say).
fn long_message() -> String {
    let mut text = String::new();
    let mut i = 0;
    while text.len() < 2048 {
        text.push_str(&format!(
            "line {i}:\tcould not resolve user\r\n    reference   #{i} in   table users\n"
        ));
        i += 1;
    }
    text
}

fn bench(c: &mut Criterion) {
    let request_id = HeaderValue::from_static("7f3e2a9c-41d2-4b8e-9f00-1c2d3e4f5a6b");
    let long = long_message();

    // Check once, outside the timed loops, that each case renders what its name says.
    let doc: serde_json::Value =
        serde_json::from_slice(&Problem::new(StatusCode::NOT_FOUND).to_bytes())
            .expect("a problem document is JSON");
    assert_eq!(doc.as_object().map(|o| o.len()), Some(3), "{doc}");
    let full = Problem::new(StatusCode::NOT_FOUND)
        .detail("user not found")
        .instance("/users/7")
        .request_id(Some(&request_id))
        .to_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&full).expect("a problem document is JSON");
    assert_eq!(doc["detail"], "user not found");
    assert_eq!(doc["request_id"], "7f3e2a9c-41d2-4b8e-9f00-1c2d3e4f5a6b");
    let cut = sanitize_detail(&long).expect("the long message has text");
    assert_eq!(
        cut.chars().count(),
        MAX_DETAIL_CHARS + 1,
        "cut with an ellipsis"
    );
    assert!(!cut.contains(['\r', '\n', '\t']));
    assert_eq!(HTML_404.len(), 477);
    assert_eq!(
        html::detail(HTML_404),
        None,
        "the page only restates its status"
    );
    println!(
        "documents: minimal {} bytes, full {} bytes; long message {} bytes",
        Problem::new(StatusCode::NOT_FOUND).to_bytes().len(),
        full.len(),
        long.len()
    );

    c.bench_function("to_bytes/404, type title status only", |b| {
        b.iter(|| Problem::new(black_box(StatusCode::NOT_FOUND)).to_bytes())
    });
    c.bench_function(
        "to_bytes/404 as a rule renders it: detail, instance, request_id",
        |b| {
            b.iter(|| {
                Problem::new(black_box(StatusCode::NOT_FOUND))
                    .detail(black_box("user not found"))
                    .instance(black_box("/users/7"))
                    .request_id(Some(black_box(&request_id)))
                    .to_bytes()
            })
        },
    );
    c.bench_function(
        "into_response/502 failure: detail, instance, request_id",
        |b| {
            b.iter(|| {
                let response: Response<StackBody> =
                    Problem::new(black_box(StatusCode::BAD_GATEWAY))
                        .detail(black_box("The upstream refused the connection."))
                        .instance(black_box("/users/7"))
                        .request_id(Some(black_box(&request_id)))
                        .into_response();
                debug_assert_eq!(response.headers()[CONTENT_TYPE], CONTENT_TYPE_PROBLEM);
                response
            })
        },
    );
    c.bench_function("sanitize_detail/14-byte message", |b| {
        b.iter(|| sanitize_detail(black_box("user not found")))
    });
    c.bench_function(
        "sanitize_detail/2 KiB multi-line message, cut to 300 chars",
        |b| b.iter(|| sanitize_detail(black_box(&long))),
    );
    c.bench_function(
        "html404/detail from the 477-byte page, then the document",
        |b| {
            b.iter(|| {
                let mut doc = Problem::new(StatusCode::NOT_FOUND)
                    .instance(black_box("/html404"))
                    .request_id(Some(black_box(&request_id)));
                if let Some(detail) = html::detail(black_box(HTML_404)) {
                    doc = doc.detail(detail);
                }
                doc.to_bytes()
            })
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
