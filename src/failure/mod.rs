//! Failures: why a request was not forwarded or its exchange failed, the one table from cause to
//! status, `Proxy-Status` and detail, and the rescue layer.
//!
//! This is the only place in candor where an error becomes an HTTP response. Everything below
//! the rescue layer returns `tower::BoxError`; [`classify`] reads the cause into a [`Failure`],
//! whose methods are the one table (status, RFC 9209 `Proxy-Status` error type, detail,
//! `Retry-After`), and [`Failure::respond`] writes the RFC 9457 document. Requests the proxy front
//! refuses and connections over the cap are answered from the same table. Internal error text
//! goes to the log, never to the client (CWE-209).
//!
//! | file | owns |
//! | --- | --- |
//! | `mod.rs` | [`Failure`], [`Refusal`], the table, [`maintenance()`], [`classify`] |
//! | `rescue.rs` | [`RescueLayer`]: the outermost layer of the stack |

mod rescue;
#[cfg(test)]
mod tests;

use std::io;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONNECTION, RETRY_AFTER};
use http::{Response, StatusCode};
use tower::BoxError;

use crate::config::Failures;
use crate::guard::{BodyError, Side};
use crate::headers::{self, PROXY_STATUS};
use crate::inspect::InspectError;
use crate::maintenance;
use crate::metrics::FailureKind;
use crate::problem::Problem;
use crate::tls::{self, HandshakeFailure};
use crate::upstream::{Shed, UpstreamError};

pub use rescue::{Rescue, RescueLayer, ResponseFuture};

/// Why a request was answered by candor instead of the upstream.
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
    /// The upstream sent something that is not a valid HTTP/1.1 response, or switched protocols
    /// when nobody asked it to.
    Protocol,
    /// The upstream's body failed (reset, short `Content-Length`) while candor was reading it for
    /// inspection, before any byte of the response was sent.
    Incomplete,
    /// The upstream's TLS certificate was refused: expired, for another name, or from an
    /// untrusted issuer.
    TlsCertificate,
    /// The upstream ended the TLS handshake with a fatal alert (it refused candor's client
    /// certificate, or every offer).
    TlsAlert,
    /// The upstream's side of the TLS handshake was not TLS as rustls speaks it (a plaintext
    /// server on the port, a malformed message).
    TlsProtocol,
    /// The client's request body failed (the client went away or sent bad framing) while it was
    /// being forwarded: not the upstream's fault, so not counted as an upstream failure.
    ClientBody,
    /// The client's request body passed `server.max_request_body_bytes` while being forwarded.
    RequestTooLarge,
    /// The client paused its request body longer than `server.body_idle_timeout`.
    ClientTimeout,
    /// The request was refused before it reached the upstream.
    Refusal(Refusal),
    /// The connection arrived while `server.max_connections` were open.
    OverCapacity,
    /// Shed at the upstream concurrency limit (`upstream.max_connections`): the queue was full
    /// or `upstream.queue_timeout` passed. Never sent upstream.
    Shed,
    /// Anything else: answered 502 and logged, so new causes are seen and classified.
    Other,
}

/// Why a request is refused instead of being forwarded: the proxy front's hygiene verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Both `Content-Length` and `Transfer-Encoding`: the classic request-smuggling shape
    /// (RFC 9112 §6.1 lets a server reject it; upstreams may frame it differently than hyper).
    AmbiguousFraming,
    /// `CONNECT`: candor is a reverse proxy, not a tunnel to arbitrary hosts.
    Connect,
    /// An HTTP/1.1 request without `Host` (RFC 9112 §3.2).
    MissingHost,
    /// More than one `Host` field line (RFC 9112 §3.2).
    DuplicateHost,
    /// A `Host` (or absolute-form authority) that is not a valid `host[:port]`.
    InvalidHost,
    /// An absolute-form target naming another host than `Host`: a forward-proxy request, which a
    /// reverse proxy does not serve.
    ForeignTarget,
    /// A declared body larger than `server.max_request_body_bytes`.
    BodyTooLarge,
    /// A `Transfer-Encoding` other than exactly `chunked` on one line: lists such as
    /// `chunked, chunked` or `gzip, chunked` are framed differently by different servers, and
    /// candor decodes no transfer coding but chunked.
    TransferEncoding,
}

impl Refusal {
    fn detail(self) -> &'static str {
        match self {
            Refusal::AmbiguousFraming => {
                "The request has both Content-Length and Transfer-Encoding."
            }
            Refusal::Connect => "CONNECT is not supported by this server.",
            Refusal::MissingHost => "The request has no Host header.",
            Refusal::DuplicateHost => "The request has more than one Host header.",
            Refusal::InvalidHost => "The request's Host is not a valid host name.",
            Refusal::ForeignTarget => "The request target names another host than Host.",
            Refusal::BodyTooLarge => "The request body is larger than this server accepts.",
            Refusal::TransferEncoding => "The request's Transfer-Encoding is not plain chunked.",
        }
    }
}

/// How long a client over the connection cap is asked to wait: a place frees as soon as any
/// client disconnects.
const OVER_CAPACITY_RETRY: Duration = Duration::from_secs(1);

impl Failure {
    /// The `kind` label of `candor_upstream_failures_total`, or `None` when the upstream is not
    /// to blame.
    pub fn kind(self) -> Option<FailureKind> {
        Some(match self {
            Failure::Refused | Failure::Unreachable | Failure::Dns => FailureKind::Connect,
            Failure::ConnectTimeout => FailureKind::ConnectTimeout,
            Failure::ResponseTimeout => FailureKind::Timeout,
            Failure::Reset => FailureKind::Reset,
            Failure::Protocol => FailureKind::Protocol,
            Failure::Incomplete => FailureKind::Incomplete,
            Failure::TlsCertificate | Failure::TlsAlert | Failure::TlsProtocol => FailureKind::Tls,
            Failure::Other => FailureKind::Other,
            Failure::Shed => FailureKind::Shed,
            Failure::ClientBody
            | Failure::RequestTooLarge
            | Failure::ClientTimeout
            | Failure::Refusal(_)
            | Failure::OverCapacity => return None,
        })
    }

    /// The RFC 9209 §2.3 error type for `Proxy-Status`, or `None` for a refusal, which is the
    /// client's request judged, not a proxy error.
    pub fn proxy_status_error(self) -> Option<&'static str> {
        self.proxy_status_names().map(|(error, _)| error)
    }

    /// The `Proxy-Status` value, made from a static string (no formatting per response).
    fn proxy_status(self) -> Option<HeaderValue> {
        self.proxy_status_names()
            .map(|(_, value)| HeaderValue::from_static(value))
    }

    /// The error type and the whole `Proxy-Status` value, each written once.
    fn proxy_status_names(self) -> Option<(&'static str, &'static str)> {
        macro_rules! error {
            ($type:literal) => {
                ($type, concat!("candor; error=", $type))
            };
        }
        Some(match self {
            Failure::Refused => error!("connection_refused"),
            Failure::Unreachable => error!("destination_unavailable"),
            Failure::Dns => error!("dns_error"),
            Failure::ConnectTimeout => error!("connection_timeout"),
            Failure::ResponseTimeout => error!("http_response_timeout"),
            Failure::Reset => error!("connection_terminated"),
            Failure::Protocol => error!("http_protocol_error"),
            Failure::Incomplete => error!("http_response_incomplete"),
            Failure::TlsCertificate => error!("tls_certificate_error"),
            Failure::TlsAlert => error!("tls_alert_received"),
            Failure::TlsProtocol => error!("tls_protocol_error"),
            Failure::ClientBody | Failure::RequestTooLarge | Failure::ClientTimeout => {
                error!("http_request_error")
            }
            // RFC 9209 §2.3.12: the proxy's own limit on upstream connections was reached.
            Failure::OverCapacity | Failure::Shed => error!("connection_limit_reached"),
            Failure::Other => error!("proxy_internal_error"),
            Failure::Refusal(_) => return None,
        })
    }

    /// The one status table. Connect failures and timeouts are configurable
    /// (`failures.connect`, `failures.timeout`); a connect timeout counts as a timeout, as in
    /// nginx, because the upstream may be alive but overloaded.
    pub fn status(self, cfg: &Failures) -> StatusCode {
        match self {
            Failure::Refused | Failure::Unreachable | Failure::Dns => cfg.connect,
            Failure::ConnectTimeout | Failure::ResponseTimeout => cfg.timeout,
            Failure::ClientBody => StatusCode::BAD_REQUEST,
            Failure::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Failure::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            Failure::Refusal(Refusal::Connect) => StatusCode::METHOD_NOT_ALLOWED,
            Failure::Refusal(Refusal::BodyTooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
            Failure::Refusal(_) => StatusCode::BAD_REQUEST,
            // A 504 would say the upstream was too slow; it was never asked. 503 + Retry-After
            // is load shedding (RFC 9110 §15.6.4).
            Failure::OverCapacity | Failure::Shed => StatusCode::SERVICE_UNAVAILABLE,
            Failure::Reset
            | Failure::Protocol
            | Failure::Incomplete
            | Failure::TlsCertificate
            | Failure::TlsAlert
            | Failure::TlsProtocol
            | Failure::Other => StatusCode::BAD_GATEWAY,
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
            Failure::TlsCertificate => "The upstream service's TLS certificate was not accepted.",
            Failure::TlsAlert => "The upstream service refused the TLS handshake.",
            Failure::TlsProtocol => "The upstream service's TLS handshake failed.",
            Failure::ClientBody => "The request body could not be read.",
            Failure::RequestTooLarge => "The request body is larger than this server accepts.",
            Failure::ClientTimeout => "The request body stopped arriving.",
            Failure::Refusal(refusal) => refusal.detail(),
            Failure::OverCapacity => "Too many connections; retry shortly.",
            Failure::Shed => "The upstream service is at its concurrency limit; retry later.",
            Failure::Other => "The upstream request failed.",
        }
    }

    /// `Retry-After` for this answer: on every 503 (clients and CDNs need it to back off rather
    /// than hammer), `failures.retry_after` unless the table fixes another delay.
    fn retry_after(self, status: StatusCode, cfg: &Failures) -> Option<Duration> {
        match self {
            Failure::OverCapacity => Some(OVER_CAPACITY_RETRY),
            _ if status == StatusCode::SERVICE_UNAVAILABLE => Some(cfg.retry_after),
            _ => None,
        }
    }

    /// The problem response for this failure: status from the table, `Proxy-Status`,
    /// `Retry-After` on every 503; for a refusal the `Allow` a 405 must carry and
    /// `Connection: close`.
    pub fn respond<B: From<Bytes>>(
        self,
        cfg: &Failures,
        path: &str,
        request_id: Option<&HeaderValue>,
    ) -> Response<B> {
        let status = self.status(cfg);
        let retry_after = self.retry_after(status, cfg);
        let mut doc = Problem::new(status).detail(self.detail());
        if !path.is_empty() {
            doc = doc.instance(path);
        }
        let mut response: Response<B> = doc.request_id(request_id).into_response();
        let headers = response.headers_mut();
        if let Some(value) = self.proxy_status() {
            headers.insert(PROXY_STATUS.clone(), value);
        }
        if let Some(delay) = retry_after {
            headers.insert(
                RETRY_AFTER,
                headers::retry_after(headers::whole_seconds(delay)),
            );
        }
        if let Failure::Refusal(refusal) = self {
            if refusal == Refusal::Connect {
                // RFC 9110 §15.5.6: a 405 lists the allowed methods; every one but CONNECT is
                // forwarded.
                headers.insert(
                    ALLOW,
                    HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE"),
                );
            }
            // A refused request's body is not read, and its framing may be in doubt: the rest of
            // the connection cannot be trusted to be framed as the client meant (nginx closes
            // after a 400 too).
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// The answer to a request while maintenance mode is on (`crate::maintenance`): 503 with the
/// state's `Retry-After` (whole seconds, rounded up) and a problem document with its `detail`,
/// `instance` (the path) and `request_id`, not cacheable.
///
/// Not a [`Failure`]: nothing failed, the operator asked for it, so it carries no `Proxy-Status`
/// error type (RFC 9209 §2.3 types describe errors, and none fits a planned window). Its body
/// is not read and the connection stays open: a client's next request may come after the
/// window.
pub fn maintenance<B: From<Bytes>>(
    state: &maintenance::State,
    path: &str,
    request_id: Option<&HeaderValue>,
) -> Response<B> {
    let mut doc = Problem::new(StatusCode::SERVICE_UNAVAILABLE).detail(state.detail.as_str());
    if !path.is_empty() {
        doc = doc.instance(path);
    }
    let mut response: Response<B> = doc.request_id(request_id).into_response();
    response.headers_mut().insert(
        RETRY_AFTER,
        headers::retry_after(headers::whole_seconds(state.retry_after)),
    );
    response
}

/// The complete HTTP/1.1 answer to a connection over `server.max_connections`, written without
/// reading the request (so without parsing anything) and followed by a close: the same table and
/// problem writer as every other answer, serialised once.
pub fn over_capacity() -> &'static [u8] {
    static WIRE: OnceLock<Vec<u8>> = OnceLock::new();
    WIRE.get_or_init(|| {
        let cfg = Failures {
            connect: StatusCode::BAD_GATEWAY,
            timeout: StatusCode::GATEWAY_TIMEOUT,
            retry_after: OVER_CAPACITY_RETRY,
        };
        let response: Response<Bytes> = Failure::OverCapacity.respond(&cfg, "", None);
        let status = response.status();
        let mut wire = format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_str(),
            status.canonical_reason().unwrap_or("")
        )
        .into_bytes();
        for (name, value) in response.headers() {
            wire.extend_from_slice(name.as_str().as_bytes());
            wire.extend_from_slice(b": ");
            wire.extend_from_slice(value.as_bytes());
            wire.extend_from_slice(b"\r\n");
        }
        let body = response.body();
        wire.extend_from_slice(
            format!(
                "connection: close\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        wire.extend_from_slice(body);
        wire
    })
}

/// Reads the cause of a request-path error: the one ladder every error below the rescue layer
/// goes down.
pub fn classify(err: &BoxError) -> Failure {
    if err.is::<tower::timeout::error::Elapsed>() {
        return Failure::ResponseTimeout;
    }
    // A body that failed while it was read for inspection: its cause, seen from the response.
    if let Some(InspectError::Body(source)) = err.downcast_ref::<InspectError>() {
        return match classify(source) {
            Failure::ResponseTimeout => Failure::ResponseTimeout,
            _ => Failure::Incomplete,
        };
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
            // Closed or reset mid-handshake: the connection ended, TLS said nothing.
            UpstreamError::Tls(io) => tls_failure(io).unwrap_or(Failure::Reset),
            // A TLS 1.3 server judges a client certificate after the handshake, so its refusal
            // (an alert) arrives with the response; so may a record that fails to decrypt.
            UpstreamError::Http(http) => find::<io::Error>(http)
                .and_then(tls_failure)
                .unwrap_or_else(|| classify_hyper(http)),
            UpstreamError::Framing | UpstreamError::UnaskedUpgrade => Failure::Protocol,
        };
    }
    if err.is::<Shed>() {
        return Failure::Shed;
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

/// The RFC 9209 TLS failure an upstream I/O error carries, if it carries one.
fn tls_failure(err: &io::Error) -> Option<Failure> {
    Some(match tls::handshake_failure(err) {
        HandshakeFailure::Certificate => Failure::TlsCertificate,
        HandshakeFailure::AlertReceived => Failure::TlsAlert,
        HandshakeFailure::Protocol => Failure::TlsProtocol,
        HandshakeFailure::Closed => return None,
    })
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
