//! The whole inspect path without sockets: `NormalizeLayer` over a `tower::service_fn` that
//! answers at once, the response body collected so that every rewrite is complete.
//!
//! The issue's target is the first benchmark: "the whole inspect path (collect, decode, match,
//! rewrite) for a 4 KiB gzip JSON in under 60 µs". The rules are the example config's
//! (`config/candor.toml`), and `user-not-found` matches the body, so the path is: plan, bounded
//! collection, gzip decoding, targeted JSON extraction, rule evaluation, the problem document,
//! and the head rewrite. For scale, the same body unencoded; a 302 no rule wants (the fast path:
//! the body is never polled by the layer); a 4 KiB gzip JSON no rule matches (inspected, then the
//! original bytes forwarded); and the inner service alone, which is the harness's own cost.
//!
//! Each iteration is one `Runtime::block_on` on a current-thread runtime, as a candor worker
//! runs: nothing here waits (the inner response and its `Full` body are ready at once), so that
//! costs one poll of a ready future, and it needs no criterion `async_tokio` feature. The
//! baseline measures it together with the inner service and body collection.
//!
//! Run with `cargo bench --bench inspect` (`-- --quick` for a shorter run).

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::hint::black_box;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::header::{HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use prometheus_client::registry::Registry;
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceExt};

use candor::inspect::{NormalizeLayer, Normalizer};
use candor::metrics::Metrics;

/// A legacy upstream's 4 KiB answer: the error envelope up front, then a page of records.
fn document(status: &str) -> Vec<u8> {
    let mut body = format!(
        r#"{{"status":"{status}","code":1042,"message":"user not found","request_id":"7f3e2a9c-41d2-4b8e-9f00-1c2d3e4f5a6b","meta":{{"version":"2.3.1","server":"api-7","region":"eu-west-1","took_ms":12}},"data":{{"total":120,"next":"/users?page=2","items":["#
    );
    let mut i = 0;
    while body.len() < 4096 - 120 {
        if i > 0 {
            body.push(',');
        }
        let _ = write!(
            body,
            r#"{{"id":{i},"name":"User number {i}","email":"user{i}@example.com","tags":["a","b"],"active":true,"score":{i}.5}}"#
        );
        i += 1;
    }
    body.push_str("]}}");
    body.into_bytes()
}

fn gzip(data: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(data)
        .expect("writing into a Vec cannot fail");
    Bytes::from(encoder.finish().expect("writing into a Vec cannot fail"))
}

/// What the inner service answers with: ready at once, its body a shared `Bytes`.
#[derive(Clone)]
struct Canned {
    status: StatusCode,
    gzip: bool,
    body: Bytes,
}

impl Canned {
    fn response(&self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.body.clone()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        if self.gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        response
    }
}

/// A request as candor's proxy hands it to the stack: it always carries a request id.
fn request(uri: &Uri) -> Request<()> {
    let mut request = Request::new(());
    *request.uri_mut() = uri.clone();
    request.headers_mut().insert(
        "x-request-id",
        HeaderValue::from_static("7f3e2a9c-41d2-4b8e-9f00-1c2d3e4f5a6b"),
    );
    request
}

/// Calls `service` once (a clone, as the proxy does per request) and collects the whole body.
async fn exchange<S, B>(service: &S, uri: &Uri) -> (StatusCode, Bytes)
where
    S: Service<Request<()>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let response = service
        .clone()
        .oneshot(request(uri))
        .await
        .expect("bench upstreams do not fail");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("bench bodies are complete")
        .to_bytes();
    (status, body)
}

fn bench(c: &mut Criterion) {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/candor.toml"));
    let config = candor::config::load_with_env(path, HashMap::new())
        .unwrap_or_else(|e| panic!("the example config loads: {e}"));
    let layer = NormalizeLayer::new(
        Arc::new(Normalizer::new(Arc::new(config))),
        Metrics::register(&mut Registry::default()),
    );
    let runtime: Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime starts");
    let uri = Uri::from_static("/users/7");

    let error = document("error");
    let ok = document("ok");
    let cases = [
        (
            "inspect/4 KiB gzip JSON, user-not-found rewrites to 404",
            Canned {
                status: StatusCode::OK,
                gzip: true,
                body: gzip(&error),
            },
            StatusCode::NOT_FOUND,
        ),
        (
            "inspect/4 KiB identity JSON, user-not-found rewrites to 404",
            Canned {
                status: StatusCode::OK,
                gzip: false,
                body: Bytes::from(error.clone()),
            },
            StatusCode::NOT_FOUND,
        ),
        (
            "inspect/4 KiB gzip JSON, no rule matches, original bytes forwarded",
            Canned {
                status: StatusCode::OK,
                gzip: true,
                body: gzip(&ok),
            },
            StatusCode::OK,
        ),
        (
            "pass/302 no rule wants, 4 KiB gzip body untouched",
            Canned {
                status: StatusCode::FOUND,
                gzip: true,
                body: gzip(&error),
            },
            StatusCode::FOUND,
        ),
    ];
    println!(
        "bodies: {} bytes of JSON, {} gzip-encoded",
        error.len(),
        cases[0].1.body.len()
    );

    for (name, canned, expected) in cases {
        let inner = {
            let canned = canned.clone();
            tower::service_fn(move |_: Request<()>| {
                let response = canned.response();
                async move { Ok::<_, Infallible>(response) }
            })
        };
        let service = layer.layer(inner.clone());
        // Check once, outside the timed loop, that the path is the one the name promises.
        let (status, body) = runtime.block_on(exchange(&service, &uri));
        assert_eq!(status, expected, "{name}");
        if status == canned.status {
            assert_eq!(body, canned.body, "{name}: forwarded untouched");
        } else {
            let doc: serde_json::Value =
                serde_json::from_slice(&body).expect("a problem document is JSON");
            assert_eq!(doc["detail"], "user not found", "{name}");
        }
        c.bench_function(name, |b| {
            b.iter(|| runtime.block_on(exchange(&service, black_box(&uri))))
        });
        if name.starts_with("pass/") {
            c.bench_function("baseline/inner service alone, block_on and collect", |b| {
                b.iter(|| runtime.block_on(exchange(&inner, black_box(&uri))))
            });
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
