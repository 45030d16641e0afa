//! Running a canned exchange through the real [`NormalizeLayer`], without sockets: what
//! `candor explain` prints and `candor test` checks. The upstream is a `service_fn` that answers
//! with the exchange's response, so what is reported is what the proxy does, by construction.

use std::convert::Infallible;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http::header::HeaderMap;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use prometheus_client::registry::Registry;
use tower::{Layer, Service, ServiceExt};

use super::decode;
use super::normalize::{Normalizer, Report};
use super::NormalizeLayer;
use crate::config::cases::{BodyKind, Exchange, RuleTest};
use crate::metrics::Metrics;
use crate::rules::ResponseView;

/// What candor would send for an [`Exchange`].
#[derive(Debug)]
pub struct Simulation {
    /// What the normaliser decided.
    pub report: Report,
    /// The status sent.
    pub status: StatusCode,
    /// The headers sent (before hop-by-hop cleaning and the request id).
    pub headers: HeaderMap,
    /// The body sent.
    pub body: Bytes,
    /// What became of the body.
    pub body_kind: BodyKind,
}

/// Runs `exchange` through a [`NormalizeLayer`] applying `normalizer`.
pub fn simulate(normalizer: &Arc<Normalizer>, exchange: &Exchange) -> Simulation {
    let upstream = tower::service_fn(|_request: Request<()>| {
        let mut response = Response::new(Full::new(exchange.body.clone()));
        *response.status_mut() = exchange.status;
        *response.headers_mut() = exchange.response_headers.clone();
        std::future::ready(Ok::<_, Infallible>(response))
    });
    // The metrics of a simulation are thrown away: `explain` must not count what it explains.
    let metrics = Metrics::register(&mut Registry::default());
    let mut service = NormalizeLayer::new(normalizer.clone(), metrics)
        .reporting()
        .layer(upstream);
    let mut request = Request::new(());
    *request.method_mut() = exchange.method.clone();
    *request.uri_mut() = exchange.uri.clone();
    *request.headers_mut() = exchange.request_headers.clone();
    let response = complete(async {
        service.ready().await?;
        let response = service.call(request).await?;
        let (parts, mut body) = response.into_parts();
        let mut bytes = BytesMut::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            if let Ok(data) = frame?.into_data() {
                bytes.extend_from_slice(&data);
            }
        }
        Ok::<_, tower::BoxError>(Response::from_parts(parts, bytes.freeze()))
    });
    // The only error the layer makes is a body that fails while it is read, and a `Full` body
    // cannot fail.
    let mut response = response.expect("a complete canned body is inspected without error");
    let report = response
        .extensions_mut()
        .remove::<Report>()
        .unwrap_or_default();
    let body_kind = report.body;
    let (parts, body) = response.into_parts();
    Simulation {
        report,
        status: parts.status,
        headers: parts.headers,
        body,
        body_kind,
    }
}

/// Drives `future` to completion on this thread. Everything a canned exchange touches (a ready
/// upstream, a complete body, a free inspection permit) is ready when first polled, so this
/// polls once; anything that waits would be a bug in the layer's fast paths.
fn complete<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => {
            unreachable!("a canned exchange never waits: its upstream and body are ready")
        }
    }
}

/// Runs one `[[tests]]` entry; `Err` says what did not hold.
pub fn run_test(normalizer: &Arc<Normalizer>, test: &RuleTest) -> Result<(), String> {
    let sim = simulate(normalizer, &test.exchange);
    let applied: Vec<&str> = sim.report.applied.iter().map(String::as_str).collect();
    let mut failures = Vec::new();
    if let Some(want) = &test.expect.rule {
        let ok = match want {
            None => applied.is_empty(),
            Some(rule) => applied.contains(&rule.as_str()),
        };
        if !ok {
            let want = want.as_deref().unwrap_or("none");
            let got = if applied.is_empty() {
                "none".to_owned()
            } else {
                applied.join(", ")
            };
            failures.push(format!("expected rule {want}, got {got}"));
        }
    }
    if let Some(want) = &test.expect.shadow {
        if !sim.report.shadows.iter().any(|s| s == want) {
            let got = if sim.report.shadows.is_empty() {
                "none".to_owned()
            } else {
                sim.report.shadows.join(", ")
            };
            failures.push(format!("expected shadow rule {want} to match, got {got}"));
        }
    }
    if let Some(want) = test.expect.status {
        if sim.status != want {
            failures.push(format!(
                "expected status {}, got {}",
                want.as_u16(),
                sim.status.as_u16()
            ));
        }
    }
    if let Some(want) = test.expect.body {
        if sim.body_kind != want {
            failures.push(format!(
                "expected body {}, got {}",
                want.as_str(),
                sim.body_kind.as_str()
            ));
        }
    }
    for (name, want) in &test.expect.headers {
        let got = sim.headers.get(name);
        let shown = |v: Option<&http::HeaderValue>| match v {
            Some(v) => format!("{:?}", String::from_utf8_lossy(v.as_bytes())),
            None => "<absent>".to_owned(),
        };
        if got != want.as_ref() {
            failures.push(format!(
                "expected header {name} {}, got {}",
                shown(want.as_ref()),
                shown(got)
            ));
        }
    }
    if !test.expect.json.is_empty() {
        match serde_json::from_slice::<serde_json::Value>(&sim.body) {
            Ok(doc) => {
                for (condition, written) in &test.expect.json {
                    if !condition.holds_in(&doc) {
                        failures.push(format!("expected json {written}: does not hold"));
                    }
                }
            }
            Err(_) => failures.push("expected a JSON body, got one that is not JSON".to_owned()),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// The per-rule traces of `exchange` (for `explain --verbose`), decoding the body like the layer.
pub fn traces(normalizer: &Normalizer, exchange: &Exchange) -> Vec<String> {
    let limit = normalizer.config().inspect.max_body_bytes;
    let (decoded, _) = decode::for_inspection(&exchange.response_headers, &exchange.body, limit);
    let body = decoded.filter(|b| b.len() <= limit);
    let request_id = exchange.request_headers.get(&crate::headers::X_REQUEST_ID);
    let view = ResponseView {
        method: &exchange.method,
        path: exchange.uri.path(),
        query: exchange.uri.query().unwrap_or(""),
        request_headers: &exchange.request_headers,
        request_id,
        status: exchange.status,
        headers: &exchange.response_headers,
        body: body.as_deref(),
    };
    normalizer
        .config()
        .rules
        .explain(&view)
        .iter()
        .map(ToString::to_string)
        .collect()
}
