//! Upstream failures: what went wrong, which status answers it, and the rescue layer that turns
//! a request-path error into a problem response.
//!
//! This is the only place in candor where an error becomes an HTTP response. Everything below the
//! rescue layer returns `tower::BoxError`; [`classify`] reads the cause, the one status table in
//! [`Failure::status`] picks the code, and [`Failure::respond`] writes an RFC 9457 document plus
//! an RFC 9209 `Proxy-Status` header. Internal error text goes to the log, never to the client
//! (CWE-209).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower::{BoxError, Layer, Service};

use crate::body::{BodyError, ProxyBody, Side};
use crate::config::Failures;
use crate::metrics::Metrics;
use crate::problem::Problem;
use crate::proxy::hygiene::X_REQUEST_ID;
use crate::upstream::UpstreamError;

/// The RFC 9209 response header naming the proxy's error.
pub static PROXY_STATUS: HeaderName = HeaderName::from_static("proxy-status");

/// Why the upstream exchange failed, in the terms candor answers and counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The upstream actively refused the TCP connection.
    Refused,
    /// No route to the upstream host or network.
    Unreachable,
    /// The upstream host name did not resolve.
    Dns,
    /// The TCP connection was not established within `upstream.connect_timeout`.
    ConnectTimeout,
    /// No response headers within `upstream.timeout`.
    ResponseTimeout,
    /// The upstream closed or reset the connection before sending response headers.
    Reset,
    /// The upstream sent something that is not a valid HTTP/1.1 response.
    Protocol,
    /// The upstream's body failed (reset, short `Content-Length`) while candor was reading it for
    /// inspection, before any byte of the response was sent.
    Incomplete,
    /// The client's request body failed (the client went away or sent bad framing) while it was
    /// being forwarded: not the upstream's fault, so not counted as an upstream failure.
    ClientBody,
    /// The client's request body passed `server.max_request_body_bytes` while being forwarded.
    RequestTooLarge,
    /// The client paused its request body longer than `server.body_idle_timeout`.
    ClientTimeout,
    /// Anything else: answered 502 and logged, so new causes are seen and classified.
    Other,
}

impl Failure {
    /// The `kind` label of `candor_upstream_failures_total`, or `None` when the upstream is not
    /// to blame.
    pub fn kind(self) -> Option<&'static str> {
        Some(match self {
            Failure::Refused | Failure::Unreachable | Failure::Dns => "connect",
            Failure::ConnectTimeout => "connect_timeout",
            Failure::ResponseTimeout => "timeout",
            Failure::Reset => "reset",
            Failure::Protocol => "protocol",
            Failure::Incomplete => "incomplete",
            Failure::Other => "other",
            Failure::ClientBody | Failure::RequestTooLarge | Failure::ClientTimeout => return None,
        })
    }

    /// The RFC 9209 §2.3 error type for `Proxy-Status`.
    pub fn proxy_status_error(self) -> &'static str {
        match self {
            Failure::Refused => "connection_refused",
            Failure::Unreachable => "destination_unavailable",
            Failure::Dns => "dns_error",
            Failure::ConnectTimeout => "connection_timeout",
            Failure::ResponseTimeout => "http_response_timeout",
            Failure::Reset => "connection_terminated",
            Failure::Protocol => "http_protocol_error",
            Failure::Incomplete => "http_response_incomplete",
            Failure::ClientBody | Failure::RequestTooLarge | Failure::ClientTimeout => {
                "http_request_error"
            }
            Failure::Other => "proxy_internal_error",
        }
    }

    /// The one status table for failures. Connect failures and timeouts are configurable
    /// (`failures.connect`, `failures.timeout`); a connect timeout counts as a timeout, as in
    /// nginx, because the upstream may be alive but overloaded.
    pub fn status(self, cfg: &Failures) -> StatusCode {
        match self {
            Failure::Refused | Failure::Unreachable | Failure::Dns => cfg.connect,
            Failure::ConnectTimeout | Failure::ResponseTimeout => cfg.timeout,
            Failure::ClientBody => StatusCode::BAD_REQUEST,
            Failure::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Failure::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            Failure::Reset | Failure::Protocol | Failure::Incomplete | Failure::Other => {
                StatusCode::BAD_GATEWAY
            }
        }
    }

    /// A fixed, client-safe explanation.
    pub fn detail(self) -> &'static str {
        match self {
            Failure::Refused => "The upstream service refused the connection.",
            Failure::Unreachable => "The upstream service is unreachable.",
            Failure::Dns => "The upstream service's host name could not be resolved.",
            Failure::ConnectTimeout => "Connecting to the upstream service timed out.",
            Failure::ResponseTimeout => "The upstream service did not respond in time.",
            Failure::Reset => "The upstream service closed the connection before responding.",
            Failure::Protocol => "The upstream service sent an invalid response.",
            Failure::Incomplete => "The upstream service's response ended before it was complete.",
            Failure::ClientBody => "The request body could not be read.",
            Failure::RequestTooLarge => "The request body is larger than this server accepts.",
            Failure::ClientTimeout => "The request body stopped arriving.",
            Failure::Other => "The upstream request failed.",
        }
    }

    /// The problem response for this failure: status from the table, `Proxy-Status`, and
    /// `Retry-After` on every 503 (clients and CDNs need it to back off rather than hammer).
    pub fn respond<B: From<bytes::Bytes>>(
        self,
        cfg: &Failures,
        path: &str,
        request_id: Option<&HeaderValue>,
    ) -> Response<B> {
        let status = self.status(cfg);
        let mut response: Response<B> = Problem::new(status)
            .detail(self.detail())
            .instance(path)
            .request_id(request_id)
            .into_response();
        let headers = response.headers_mut();
        headers.insert(
            PROXY_STATUS.clone(),
            HeaderValue::from_static(match self {
                Failure::Refused => "candor; error=connection_refused",
                Failure::Unreachable => "candor; error=destination_unavailable",
                Failure::Dns => "candor; error=dns_error",
                Failure::ConnectTimeout => "candor; error=connection_timeout",
                Failure::ResponseTimeout => "candor; error=http_response_timeout",
                Failure::Reset => "candor; error=connection_terminated",
                Failure::Protocol => "candor; error=http_protocol_error",
                Failure::Incomplete => "candor; error=http_response_incomplete",
                Failure::ClientBody | Failure::RequestTooLarge | Failure::ClientTimeout => {
                    "candor; error=http_request_error"
                }
                Failure::Other => "candor; error=proxy_internal_error",
            }),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(RETRY_AFTER, retry_after_value(cfg.retry_after));
        }
        response
    }
}

/// `Retry-After` as delay-seconds (RFC 9110 §10.2.3), rounded up so a client never retries early.
pub fn retry_after_value(delay: Duration) -> HeaderValue {
    let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    HeaderValue::from(secs)
}

/// Reads the cause of a request-path error.
pub fn classify(err: &BoxError) -> Failure {
    if err.is::<tower::timeout::error::Elapsed>() {
        return Failure::ResponseTimeout;
    }
    // A body guard's verdict decides, wherever hyper wrapped it in the chain.
    if let Some(body) = find::<BodyError>(&**err) {
        return match body {
            BodyError::TooLarge { .. } => Failure::RequestTooLarge,
            BodyError::Idle {
                side: Side::Request,
                ..
            } => Failure::ClientTimeout,
            BodyError::Idle {
                side: Side::Response,
                ..
            } => Failure::ResponseTimeout,
        };
    }
    if let Some(err) = err.downcast_ref::<UpstreamError>() {
        return match err {
            UpstreamError::Connect(io) => classify_connect(io),
            UpstreamError::ConnectTimeout => Failure::ConnectTimeout,
            UpstreamError::Resolve(_) | UpstreamError::NoAddress => Failure::Dns,
            UpstreamError::Http(http) => classify_hyper(http),
            UpstreamError::Framing => Failure::Protocol,
        };
    }
    if let Some(http) = err.downcast_ref::<hyper::Error>() {
        return classify_hyper(http);
    }
    Failure::Other
}

/// The first error of type `E` in `err`'s source chain.
fn find<'a, E: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

fn classify_connect(err: &io::Error) -> Failure {
    match err.kind() {
        // A reset while connecting is a refusal by whatever answered (a full accept queue, a
        // listener closing): the host is reachable.
        io::ErrorKind::ConnectionRefused
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted => Failure::Refused,
        io::ErrorKind::TimedOut => Failure::ConnectTimeout,
        _ => Failure::Unreachable,
    }
}

fn classify_hyper(err: &hyper::Error) -> Failure {
    if err.is_user() {
        // hyper reports a failing request body (the client's stream) as a user error.
        return Failure::ClientBody;
    }
    if err.is_parse() || err.is_parse_status() || err.is_parse_too_large() {
        return Failure::Protocol;
    }
    if err.is_timeout() {
        return Failure::ResponseTimeout;
    }
    // Closed, canceled, incomplete, or an I/O error such as ECONNRESET: the connection ended
    // before a response head arrived.
    Failure::Reset
}

/// Turns errors from the inner service into problem responses. See the module docs.
#[derive(Debug, Clone)]
pub struct RescueLayer {
    shared: Arc<RescueShared>,
}

#[derive(Debug)]
struct RescueShared {
    failures: Failures,
    metrics: Metrics,
}

impl RescueLayer {
    /// A rescue layer answering with `failures` and counting into `metrics`.
    pub fn new(failures: Failures, metrics: Metrics) -> Self {
        RescueLayer {
            shared: Arc::new(RescueShared { failures, metrics }),
        }
    }
}

impl<S> Layer<S> for RescueLayer {
    type Service = Rescue<S>;

    fn layer(&self, inner: S) -> Rescue<S> {
        Rescue {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service made by [`RescueLayer`].
#[derive(Debug, Clone)]
pub struct Rescue<S> {
    inner: S,
    shared: Arc<RescueShared>,
}

impl<S, B, RB> Service<Request<B>> for Rescue<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    RB: Into<ProxyBody>,
{
    type Response = Response<ProxyBody>;
    type Error = std::convert::Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The inner stack is always ready (the upstream pool connects per request); an error
        // here would have nowhere to go but a dropped connection.
        match self.inner.poll_ready(cx) {
            Poll::Ready(_) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // What the problem document needs is taken now, as cheap clones of shared bytes: the
        // request moves on below.
        let context = FailureContext {
            uri: req.uri().clone(),
            request_id: req.headers().get(&X_REQUEST_ID).cloned(),
            shared: self.shared.clone(),
        };
        ResponseFuture {
            inner: self.inner.call(req),
            context: Some(context),
        }
    }
}

#[derive(Debug)]
struct FailureContext {
    uri: http::Uri,
    request_id: Option<HeaderValue>,
    shared: Arc<RescueShared>,
}

pin_project! {
    /// Response future of [`Rescue`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        context: Option<FailureContext>,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
    RB: Into<ProxyBody>,
{
    type Output = Result<Response<ProxyBody>, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(result) => result,
        };
        match result {
            Ok(response) => Poll::Ready(Ok(response.map(Into::into))),
            Err(err) => {
                let err: BoxError = err.into();
                let failure = classify(&err);
                let Some(ctx) = this.context.take() else {
                    // Polled after completion: a caller bug, answered generically.
                    return Poll::Ready(Ok(
                        Problem::new(StatusCode::BAD_GATEWAY).into_response::<ProxyBody>()
                    ));
                };
                let request_id = ctx
                    .request_id
                    .as_ref()
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                match failure.kind() {
                    Some(kind) => {
                        ctx.shared.metrics.upstream_failure(kind);
                        tracing::warn!(
                            kind,
                            request_id,
                            path = ctx.uri.path(),
                            error = %error_chain(&*err),
                            "upstream request failed"
                        );
                    }
                    None => tracing::debug!(
                        request_id,
                        error = %error_chain(&*err),
                        "request body failed while forwarding"
                    ),
                }
                Poll::Ready(Ok(failure.respond(
                    &ctx.shared.failures,
                    ctx.uri.path(),
                    ctx.request_id.as_ref(),
                )))
            }
        }
    }
}

/// `err: cause: cause` for logs.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failures() -> Failures {
        Failures {
            connect: StatusCode::BAD_GATEWAY,
            timeout: StatusCode::GATEWAY_TIMEOUT,
            retry_after: Duration::from_millis(4500),
        }
    }

    #[test]
    fn status_table() {
        let cfg = failures();
        let cases = [
            (Failure::Refused, 502, Some("connect")),
            (Failure::Unreachable, 502, Some("connect")),
            (Failure::Dns, 502, Some("connect")),
            (Failure::ConnectTimeout, 504, Some("connect_timeout")),
            (Failure::ResponseTimeout, 504, Some("timeout")),
            (Failure::Reset, 502, Some("reset")),
            (Failure::Protocol, 502, Some("protocol")),
            (Failure::Incomplete, 502, Some("incomplete")),
            (Failure::ClientBody, 400, None),
            (Failure::RequestTooLarge, 413, None),
            (Failure::ClientTimeout, 408, None),
            (Failure::Other, 502, Some("other")),
        ];
        for (failure, status, kind) in cases {
            assert_eq!(failure.status(&cfg), status, "{failure:?}");
            assert_eq!(failure.kind(), kind, "{failure:?}");
            let r: Response<ProxyBody> = failure.respond(&cfg, "/x", None);
            let ps = r.headers()[&PROXY_STATUS].to_str().unwrap();
            assert_eq!(
                ps,
                format!("candor; error={}", failure.proxy_status_error())
            );
        }
    }

    #[test]
    fn every_503_carries_retry_after_rounded_up() {
        let mut cfg = failures();
        cfg.connect = StatusCode::SERVICE_UNAVAILABLE;
        let r: Response<ProxyBody> = Failure::Refused.respond(&cfg, "/", None);
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[RETRY_AFTER], "5");
        let r: Response<ProxyBody> = Failure::ResponseTimeout.respond(&cfg, "/", None);
        assert!(r.headers().get(RETRY_AFTER).is_none());
    }

    #[test]
    fn classify_reads_typed_causes() {
        let refused: BoxError = Box::new(UpstreamError::Connect(io::Error::from(
            io::ErrorKind::ConnectionRefused,
        )));
        assert_eq!(classify(&refused), Failure::Refused);
        let unreachable: BoxError = Box::new(UpstreamError::Connect(io::Error::from(
            io::ErrorKind::HostUnreachable,
        )));
        assert_eq!(classify(&unreachable), Failure::Unreachable);
        let timeout: BoxError = Box::new(UpstreamError::ConnectTimeout);
        assert_eq!(classify(&timeout), Failure::ConnectTimeout);
        let elapsed: BoxError = Box::new(tower::timeout::error::Elapsed::new());
        assert_eq!(classify(&elapsed), Failure::ResponseTimeout);
        let other: BoxError = "something new".into();
        assert_eq!(classify(&other), Failure::Other);
        let stalled: BoxError = Box::new(BodyError::Idle {
            side: Side::Response,
            idle: Duration::from_secs(1),
        });
        assert_eq!(classify(&stalled), Failure::ResponseTimeout);
        let too_large: BoxError = Box::new(BodyError::TooLarge { limit: 1 });
        assert_eq!(classify(&too_large), Failure::RequestTooLarge);
    }
}
