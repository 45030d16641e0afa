//! The socket-free tier: the rescue and normalize layers over `tower::service_fn` upstreams, in
//! the order `proxy/stack.rs` composes them (Rescue → Normalize → Timeout → upstream), with
//! paused time. One row per failure class: each is answered once, from the one table, and
//! counted once.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use candor::config::Config;
use candor::failure::RescueLayer;
use candor::guard::{BodyError, Guarded, Side};
use candor::inspect::{NormalizeLayer, Normalizer};
use candor::metrics::Metrics;
use candor::upstream::UpstreamError;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use prometheus_client::registry::Registry;
use tower::timeout::TimeoutLayer;
use tower::{BoxError, Layer, Service, ServiceExt};

/// A response body: `prefix`, then `end` (an error, or a wait that never ends).
struct Failing {
    prefix: Option<Bytes>,
    end: Option<BoxError>,
}

impl Body for Failing {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        match self.end.take() {
            Some(err) => Poll::Ready(Some(Err(err))),
            None => Poll::Pending,
        }
    }
}

type UpstreamBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

fn boxed<B>(body: B) -> UpstreamBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// What the upstream does for a row.
enum Upstream {
    /// Fails before a response head.
    Fails(fn() -> BoxError),
    /// Never answers.
    Hangs,
    /// Answers a JSON 500 (a status the config's scrub wants to inspect) whose body fails.
    BodyFails(fn() -> BoxError),
    /// Answers a JSON 500 whose body stops after a prefix, guarded by an idle timeout.
    BodyStalls,
}

/// Runs one request through Rescue → Normalize → Timeout → `upstream`.
async fn exchange(upstream: Upstream, metrics: &Metrics) -> Response<Bytes> {
    let config = Config::for_upstream("http://127.0.0.1:9").unwrap();
    let failures = config.failures.clone();
    let timeout = config.upstream.timeout;
    let normalizer = Arc::new(Normalizer::new(Arc::new(config)));
    let upstream = Arc::new(upstream);
    let inner = tower::service_fn(move |_req: Request<()>| {
        let upstream = upstream.clone();
        async move {
            let body = match &*upstream {
                Upstream::Fails(error) => return Err(error()),
                Upstream::Hangs => std::future::pending().await,
                Upstream::BodyFails(error) => boxed(Failing {
                    prefix: Some(Bytes::from_static(b"{\"error\":")),
                    end: Some(error()),
                }),
                Upstream::BodyStalls => boxed(Guarded::new(
                    Failing {
                        prefix: Some(Bytes::from_static(b"{\"error\":")),
                        end: None,
                    },
                    Side::Response,
                    u64::MAX,
                    Duration::from_secs(3),
                )),
            };
            let mut response = Response::new(body);
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            Ok::<_, BoxError>(response)
        }
    });
    let stack = RescueLayer::new(failures, metrics.clone()).layer(
        NormalizeLayer::new(normalizer, metrics.clone())
            .layer(TimeoutLayer::new(timeout).layer(inner)),
    );
    let mut request = Request::new(());
    *request.uri_mut() = "/orders/7?token=secret".parse().unwrap();
    request
        .headers_mut()
        .insert("x-request-id", http::HeaderValue::from_static("req-1"));
    let Ok(response) = stack.oneshot(request).await;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Response::from_parts(parts, body)
}

fn connect(kind: io::ErrorKind) -> BoxError {
    Box::new(UpstreamError::Connect(io::Error::from(kind)))
}

#[tokio::test(start_paused = true)]
async fn every_failure_class_is_answered_once_from_the_table() {
    // (name, upstream, status, Proxy-Status error, failure kind counted)
    type Row = (
        &'static str,
        Upstream,
        u16,
        Option<&'static str>,
        Option<&'static str>,
    );
    let rows: Vec<Row> = vec![
        (
            "refused",
            Upstream::Fails(|| connect(io::ErrorKind::ConnectionRefused)),
            502,
            Some("connection_refused"),
            Some("connect"),
        ),
        (
            "unreachable",
            Upstream::Fails(|| connect(io::ErrorKind::HostUnreachable)),
            502,
            Some("destination_unavailable"),
            Some("connect"),
        ),
        (
            "dns",
            Upstream::Fails(|| Box::new(UpstreamError::NoAddress)),
            502,
            Some("dns_error"),
            Some("connect"),
        ),
        (
            "connect timeout",
            Upstream::Fails(|| Box::new(UpstreamError::ConnectTimeout)),
            504,
            Some("connection_timeout"),
            Some("connect_timeout"),
        ),
        (
            "response timeout (tower's Timeout, paused time)",
            Upstream::Hangs,
            504,
            Some("http_response_timeout"),
            Some("timeout"),
        ),
        (
            "ambiguous framing",
            Upstream::Fails(|| Box::new(UpstreamError::Framing)),
            502,
            Some("http_protocol_error"),
            Some("protocol"),
        ),
        (
            "an unasked protocol switch",
            Upstream::Fails(|| Box::new(UpstreamError::UnaskedUpgrade)),
            502,
            Some("http_protocol_error"),
            Some("protocol"),
        ),
        (
            "a body that fails while it is inspected",
            Upstream::BodyFails(|| "connection reset".into()),
            502,
            Some("http_response_incomplete"),
            Some("incomplete"),
        ),
        (
            "a body that stalls while it is inspected (paused time)",
            Upstream::BodyStalls,
            504,
            Some("http_response_timeout"),
            Some("timeout"),
        ),
        (
            "the client's body passed its limit",
            Upstream::Fails(|| Box::new(BodyError::TooLarge { limit: 10 })),
            413,
            Some("http_request_error"),
            None,
        ),
        (
            "the client's body stalled",
            Upstream::Fails(|| {
                Box::new(BodyError::Idle {
                    side: Side::Request,
                    idle: Duration::from_secs(1),
                })
            }),
            408,
            Some("http_request_error"),
            None,
        ),
        (
            "anything else",
            Upstream::Fails(|| "something new".into()),
            502,
            Some("proxy_internal_error"),
            Some("other"),
        ),
    ];
    for (name, upstream, status, error, kind) in rows {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let response = exchange(upstream, &metrics).await;
        assert_eq!(response.status(), status, "{name}");
        let headers = response.headers();
        assert_eq!(
            headers
                .get("proxy-status")
                .map(|v| v.to_str().unwrap().to_owned()),
            error.map(|e| format!("candor; error={e}")),
            "{name}"
        );
        assert_eq!(
            headers["content-type"], "application/problem+json",
            "{name}"
        );
        assert_eq!(headers["cache-control"], "no-store", "{name}");
        let doc: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(doc["status"], status, "{name}: {doc}");
        assert_eq!(
            doc["instance"], "/orders/7",
            "{name}: the query never leaks"
        );
        assert_eq!(doc["request_id"], "req-1", "{name}");
        let counted: Vec<(&str, u64)> = metrics
            .upstream_failures_by_kind()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect();
        assert_eq!(
            counted,
            kind.map(|k| vec![(k, 1)]).unwrap_or_default(),
            "{name}: counted once, under its kind"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_configured_503_carries_retry_after_rounded_up() {
    let mut config = Config::for_upstream("http://127.0.0.1:9").unwrap();
    config.failures.connect = StatusCode::SERVICE_UNAVAILABLE;
    config.failures.retry_after = Duration::from_millis(2500);
    let metrics = Metrics::register(&mut Registry::default());
    let inner = tower::service_fn(|_req: Request<()>| async {
        Err::<Response<Full<Bytes>>, BoxError>(connect(io::ErrorKind::ConnectionRefused))
    });
    let stack = RescueLayer::new(config.failures.clone(), metrics).layer(inner);
    let Ok(response) = stack.oneshot(Request::new(())).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "3");
}

/// A service that cannot take a request: its readiness error is answered like any other error,
/// not dropped, and the service is never called.
#[tokio::test(start_paused = true)]
async fn a_readiness_error_is_answered_not_swallowed() {
    #[derive(Clone)]
    struct Broken;
    impl Service<Request<()>> for Broken {
        type Response = Response<Full<Bytes>>;
        type Error = BoxError;
        type Future = std::future::Ready<Result<Self::Response, BoxError>>;
        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Err(Box::new(UpstreamError::ConnectTimeout)))
        }
        fn call(&mut self, _req: Request<()>) -> Self::Future {
            unreachable!("a service that is not ready is not called")
        }
    }
    let config = Config::for_upstream("http://127.0.0.1:9").unwrap();
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let mut stack = RescueLayer::new(config.failures.clone(), metrics.clone()).layer(Broken);
    let ready = stack.ready().await;
    assert!(ready.is_ok(), "rescue itself never fails");
    let Ok(response) = stack.call(Request::new(())).await;
    assert_eq!(response.status(), 504);
    assert_eq!(
        response.headers()["proxy-status"],
        "candor; error=connection_timeout"
    );
    assert!(metrics
        .upstream_failures_by_kind()
        .contains(&("connect_timeout", 1)));
}

/// What no rule wants passes through both layers untouched: same status, headers and bytes.
#[tokio::test(start_paused = true)]
async fn an_unwanted_response_passes_untouched() {
    let config = Config::for_upstream("http://127.0.0.1:9").unwrap();
    let metrics = Metrics::register(&mut Registry::default());
    let normalizer = Arc::new(Normalizer::new(Arc::new(config.clone())));
    let inner = tower::service_fn(|_req: Request<()>| async {
        let mut response = Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")));
        response
            .headers_mut()
            .insert("etag", http::HeaderValue::from_static("\"v1\""));
        Ok::<_, Infallible>(response)
    });
    let stack = RescueLayer::new(config.failures.clone(), metrics.clone())
        .layer(NormalizeLayer::new(normalizer, metrics).layer(inner));
    let Ok(response) = stack.oneshot(Request::new(())).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"v1\"");
    assert_eq!(response.headers().len(), 1);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"{\"ok\":true}");
}
