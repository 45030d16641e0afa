//! The front: what candor does around the stack for each connection and request, in named
//! phases (Pingora's vocabulary):
//!
//! ```text
//! admit → refuse → maintenance → prepare_request → [ stack ] → prepare_response → record
//! ```
//!
//! `maintenance` answers a request itself while maintenance mode is on (`crate::maintenance`),
//! after `refuse`, so a request that must be refused still is; off, it is one atomic load.
//!
//! [`admit`] runs once per connection (the connection gate); the others run per request inside
//! [`Front`], the service hyper calls. A refused request and a connection over the cap are
//! answered from the failure table like every other error; the front builds no error body of
//! its own. Per-connection facts (the peer address, the framing verdict) live in `Front` rather
//! than in request extensions, which would cost an allocation per request.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::{HeaderValue, UPGRADE};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use tokio::net::TcpStream;
use tower::Service as _;

use super::framing::FramingVerdict;
use super::hygiene::{self, Peer};
use super::limits::{Gate, Ticket};
use super::stack::{Stack, StackBody};
use super::{Generation, Worker};
use crate::config::Server;
use crate::failure::{self, Failure, Refusal};
use crate::guard::{Guarded, Side};
use crate::inspect::normalize::Rewritten;
use crate::maintenance::State as MaintenanceState;
use crate::metrics::{Metrics, TimedBody};
use crate::upstream::{RequestBody, UpgradePermit};

/// The body of every response candor sends.
pub type ResponseBody = TimedBody<StackBody>;

/// admit: a place among `server.max_connections` for `stream`, or `None` when it is being
/// answered 503 (from the failure table) and closed (over TLS, closed only).
pub(super) fn admit(
    gate: &Arc<Gate>,
    server: &Server,
    metrics: &Metrics,
    stream: TcpStream,
) -> Option<(TcpStream, Ticket)> {
    match gate.admit(server.max_connections) {
        Some(ticket) => Some((stream, ticket)),
        None => {
            metrics.connection_rejected();
            // A TLS client would read the plaintext answer as a protocol error, and a handshake
            // per refused connection would spend the CPU the cap protects: it is closed.
            if server.tls.is_none() {
                tokio::spawn(turn_away(stream));
            }
            None
        }
    }
}

/// Writes the over-capacity answer and closes the connection.
async fn turn_away(mut stream: TcpStream) {
    use tokio::io::AsyncWriteExt;
    // Bounded: a client that does not read this either is simply closed.
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        stream.write_all(failure::over_capacity()),
    )
    .await;
    let _ = stream.shutdown().await;
}

/// The per-connection service hyper calls for each request.
#[derive(Debug, Clone)]
pub struct Front {
    pub(super) worker: Arc<Worker>,
    pub(super) peer: Peer,
    pub(super) verdict: Arc<FramingVerdict>,
}

impl hyper::service::Service<Request<Incoming>> for Front {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = FrontFuture;

    fn call(&self, req: Request<Incoming>) -> FrontFuture {
        let start = Instant::now();
        // The generation current now serves this request to its end, whatever reloads happen.
        let generation = self.worker.live.load_full();
        let host = match self.refuse(&req, &generation.config.server) {
            Ok(host) => host,
            Err(refusal) => {
                return FrontFuture::Local {
                    response: Some(self.answer(&req, refusal, &generation, start)),
                }
            }
        };
        if let Some(state) = self.worker.maintenance.answering(req.uri().path()) {
            return FrontFuture::Local {
                response: Some(self.maintenance(&req, &state, &generation, start)),
            };
        }
        let (req, pending) = self.prepare_request(req, host, generation, start);
        let mut stack: Stack = pending.generation.stack.clone();
        // Every layer of the stack is ready at all times (stack.rs), so the request goes
        // straight in: through `Oneshot` its future would be moved once more (464 bytes) and
        // wrapped in a state machine, about 250 instructions a request.
        let ready = stack.poll_ready(&mut Context::from_waker(std::task::Waker::noop()));
        assert!(
            ready.is_ready(),
            "every layer of the stack is always ready (no layer waits for capacity)"
        );
        FrontFuture::Proxied {
            inner: stack.call(req),
            pending: Some(pending),
        }
    }
}

impl Front {
    /// refuse: what hyper accepts but a proxy must not forward. `Ok` carries the Host to send
    /// upstream when the request has one.
    fn refuse(
        &self,
        req: &Request<Incoming>,
        server: &Server,
    ) -> Result<Option<HeaderValue>, Refusal> {
        if self.verdict.next_request_is_suspect() {
            return Err(Refusal::AmbiguousFraming);
        }
        let host = hygiene::check(req)?;
        // A declared length over the limit is refused before a byte is forwarded; a chunked
        // body is cut by its guard when it passes the limit.
        if req.body().size_hint().lower() > server.max_request_body_bytes {
            return Err(Refusal::BodyTooLarge);
        }
        Ok(host)
    }

    /// A refused request's answer, from the failure table, recorded like any response.
    fn answer(
        &self,
        req: &Request<Incoming>,
        refusal: Refusal,
        generation: &Generation,
        start: Instant,
    ) -> Response<ResponseBody> {
        let request_id = hygiene::new_request_id();
        tracing::debug!(?refusal, request_id = ?request_id, "request refused");
        let mut response = Failure::Refusal(refusal).respond(
            &generation.config.failures,
            req.uri().path(),
            Some(&request_id),
        );
        hygiene::echo_request_id(response.headers_mut(), &request_id);
        let access = generation.config.log.access_log.then(|| {
            Box::new(Access {
                method: req.method().clone(),
                uri: req.uri().clone(),
                request_id,
            })
        });
        record(response, &self.worker.metrics, start, access)
    }

    /// maintenance: the answer while maintenance mode is on, from the failure module, recorded
    /// like any response and counted in `candor_maintenance_responses_total`. Nothing is sent
    /// upstream and the request body is not read.
    fn maintenance(
        &self,
        req: &Request<Incoming>,
        state: &MaintenanceState,
        generation: &Generation,
        start: Instant,
    ) -> Response<ResponseBody> {
        let request_id = hygiene::request_id(req);
        let mut response = failure::maintenance(state, req.uri().path(), Some(&request_id));
        hygiene::echo_request_id(response.headers_mut(), &request_id);
        self.worker.metrics.maintenance_response();
        let access = generation.config.log.access_log.then(|| {
            Box::new(Access {
                method: req.method().clone(),
                uri: req.uri().clone(),
                request_id,
            })
        });
        record(response, &self.worker.metrics, start, access)
    }

    /// prepare_request: guards the body, rewrites the head for the upstream in place, and keeps
    /// what the response path needs.
    fn prepare_request(
        &self,
        mut req: Request<Incoming>,
        host: Option<HeaderValue>,
        generation: Arc<Generation>,
        start: Instant,
    ) -> (Request<RequestBody>, Pending) {
        let client_upgrade = req.extensions_mut().remove::<OnUpgrade>();
        let keep_length = req.method() == Method::HEAD;
        let server = &generation.config.server;
        let (limit, idle) = (server.max_request_body_bytes, server.body_idle_timeout);
        let mut req =
            req.map(|body| RequestBody::from(Guarded::new(body, Side::Request, limit, idle)));
        let prepared =
            hygiene::prepare_request(&mut req, host, &generation.upstream_authority, &self.peer);
        let client_upgrade = client_upgrade.filter(|_| prepared.upgrade);
        if prepared.upgrade && client_upgrade.is_none() {
            // A switch this connection could not follow: the upstream is not asked for it, so a
            // 101 would be an unasked one (a protocol failure).
            req.headers_mut().remove(UPGRADE);
        }
        let access = generation.config.log.access_log.then(|| {
            Box::new(Access {
                method: req.method().clone(),
                uri: req.uri().clone(),
                request_id: prepared.request_id.clone(),
            })
        });
        let pending = Pending {
            request_id: prepared.request_id,
            keep_length,
            client_upgrade,
            start,
            generation,
            worker: self.worker.clone(),
            access,
        };
        (req, pending)
    }
}

/// What the response path needs from the request.
#[derive(Debug)]
pub struct Pending {
    request_id: HeaderValue,
    keep_length: bool,
    client_upgrade: Option<OnUpgrade>,
    start: Instant,
    generation: Arc<Generation>,
    worker: Arc<Worker>,
    access: Option<Box<Access>>,
}

pin_project! {
    /// Response future of [`Front`].
    #[project = FrontProj]
    pub enum FrontFuture {
        /// candor answered the request itself.
        Local { response: Option<Response<ResponseBody>> },
        /// The request is on its way through the stack.
        Proxied {
            #[pin]
            inner: <Stack as tower::Service<Request<RequestBody>>>::Future,
            pending: Option<Pending>,
        },
    }
}

impl Future for FrontFuture {
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            FrontProj::Local { response } => Poll::Ready(Ok(response
                .take()
                .expect("a front future is not polled after it completed"))),
            FrontProj::Proxied { inner, pending } => {
                let response = match inner.poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(response)) => response,
                    Poll::Ready(Err(never)) => match never {},
                };
                let pending = pending
                    .take()
                    .expect("a front future is not polled after it completed");
                Poll::Ready(Ok(prepare_response(response, pending)))
            }
        }
    }
}

/// prepare_response: head hygiene, the request id, bridging an upgrade the client asked for;
/// then record.
fn prepare_response(mut response: Response<StackBody>, pending: Pending) -> Response<ResponseBody> {
    let status = response.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        // The upstream client answers an unasked 101 as a protocol failure, so a 101 here is a
        // switch the client asked for.
        // The exchange's place among `upstream.max_connections` stays taken while the
        // upgraded connection is open.
        let permit = response.extensions_mut().remove::<UpgradePermit>();
        if let Some(client) = pending.client_upgrade {
            let upstream = hyper::upgrade::on(&mut response);
            tokio::spawn(bridge(client, upstream, permit));
        }
    }
    let keep_length = pending.keep_length || status == StatusCode::NOT_MODIFIED;
    // candor speaks HTTP/1.1 (or h2) to the client whatever the upstream spoke; hyper downgrades
    // to 1.0 itself for HTTP/1.0 clients.
    *response.version_mut() = Version::HTTP_11;
    hygiene::prepare_response(response.headers_mut(), status, keep_length);
    hygiene::echo_request_id(response.headers_mut(), &pending.request_id);
    record(
        response,
        &pending.worker.metrics,
        pending.start,
        pending.access,
    )
}

/// record: counts the response and starts timing its body; with `access`, logs the request when
/// the body ends.
fn record(
    response: Response<StackBody>,
    metrics: &Metrics,
    start: Instant,
    access: Option<Box<Access>>,
) -> Response<ResponseBody> {
    let status = response.status();
    metrics.response(status);
    let mut timer = metrics.start_request(start);
    if let Some(access) = access {
        let rewritten = response.extensions().get::<Rewritten>().cloned();
        timer.on_end(Box::new(move |elapsed| {
            access.log(status, rewritten, elapsed)
        }));
    }
    response.map(|body| TimedBody::new(body, timer))
}

/// The request side of an access log line (`log.access_log`), boxed so requests without one pay
/// nothing.
#[derive(Debug)]
struct Access {
    method: Method,
    uri: http::Uri,
    request_id: HeaderValue,
}

impl Access {
    fn log(&self, status: StatusCode, rewritten: Option<Rewritten>, elapsed: Duration) {
        let (upstream_status, rule) = match &rewritten {
            Some(r) => (r.upstream_status.as_u16(), r.rules.as_str()),
            None => (status.as_u16(), ""),
        };
        tracing::info!(
            target: "candor::access",
            method = self.method.as_str(),
            path = self.uri.path(),
            upstream_status,
            status = status.as_u16(),
            rule,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            request_id = self.request_id.to_str().unwrap_or(""),
            "request"
        );
    }
}

/// Copies bytes both ways between the client and the upstream once both sides have switched,
/// holding the exchange's concurrency-limit place (if any) until both ends are closed.
async fn bridge(client: OnUpgrade, upstream: OnUpgrade, _permit: Option<UpgradePermit>) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(err) => {
            tracing::debug!(error = %err, "protocol upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(error = %err, "upgraded connection ended with an error");
    }
}
