//! The upstream client: hyper's connection-level HTTP/1.1 client behind a small per-worker pool,
//! exposed as a tower `Service`.
//!
//! Why not hyper-util's legacy `Client`: it cost 12 % more CPU per request in our measurements. One upstream, one worker thread per pool, LIFO reuse: a connection
//! goes back to the pool the moment its response body reaches end of stream (hyper's dispatcher
//! is idle by then), so no task is spawned per request and the mutex is never contended.
//!
//! Each exchange first takes a place from the process's [`Limiter`] (`upstream.max_connections`,
//! waiting in its queue or shed), then gets `upstream.timeout` for its response head, connect
//! included: the time queued is bounded by `upstream.queue_timeout` alone. Both happen inside
//! the one boxed future a request already has, so the fast path adds no layer and no move of a
//! future (a separate limit layer cost 2.2 % more instructions per request). The response body
//! holds the place until it ends, fails or is dropped; a 101 hands it to the upgraded connection.
//!
//! An `https://` upstream gets a TLS connection (`crate::tls`) under the same pool: a TLS
//! connection is reused exactly like a plaintext one, so the handshake is paid once per
//! connection, not per request.
//!
//! Failures are returned as [`UpstreamError`] (or [`Shed`], or tower's `Elapsed` for the
//! timeout); `failure::classify` turns them into statuses.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpStream;
use tower::{BoxError, Service};

use crate::config;
use crate::guard::{Guarded, Side};
use crate::headers::MAX_HEAD_BYTES;
use crate::tls::UpstreamTls;

use super::limit::{Limiter, Permit, UpgradePermit};

pin_project! {
    /// The request body candor sends upstream: the client's, with its limit and idle timeout; or
    /// none, when a bodiless request is sent again after a stale pooled connection failed.
    #[project = RequestBodyProj]
    #[derive(Debug)]
    pub enum RequestBody {
        /// The client's body.
        Client { #[pin] body: Guarded<Incoming> },
        /// No body.
        Empty,
    }
}

impl From<Guarded<Incoming>> for RequestBody {
    fn from(body: Guarded<Incoming>) -> Self {
        RequestBody::Client { body }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            RequestBodyProj::Client { body } => body.poll_frame(cx),
            RequestBodyProj::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Client { body } => body.is_end_stream(),
            RequestBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Client { body } => body.size_hint(),
            RequestBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// A pooled connection idle at least this long may have been closed by the upstream just as a
/// request goes out (the keep-alive race, hyper#2136): for a bodiless idempotent request on such
/// a connection candor keeps a copy of the head, to send it again once if the connection fails.
/// Connections reused sooner (any busy service) never pay for the copy.
const RACE_IDLE: Duration = Duration::from_millis(50);

/// Why an upstream exchange failed before a response head arrived.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The TCP connection could not be established.
    #[error("connecting to the upstream failed")]
    Connect(#[source] io::Error),
    /// The TCP connection was not established within `upstream.connect_timeout`.
    #[error("connecting to the upstream timed out")]
    ConnectTimeout,
    /// The upstream host name could not be resolved.
    #[error("resolving the upstream host failed")]
    Resolve(#[source] io::Error),
    /// The upstream host name resolved to no address.
    #[error("the upstream host resolved to no address")]
    NoAddress,
    /// The TLS handshake with an `https://` upstream failed (`crate::tls::handshake_failure`
    /// reads why).
    #[error("the TLS handshake with the upstream failed")]
    Tls(#[source] io::Error),
    /// The HTTP exchange failed (reset, closed early, invalid response).
    #[error("the upstream exchange failed")]
    Http(#[source] hyper::Error),
    /// The response's framing is ambiguous (`Transfer-Encoding` with `Content-Length`, or other
    /// than plain `chunked`).
    #[error("the upstream response's framing is ambiguous")]
    Framing,
    /// A 101 to a request that did not ask to switch protocols: the upstream wants to take over
    /// a connection that is still HTTP to the client. Never switched on.
    #[error("the upstream switched protocols unasked")]
    UnaskedUpgrade,
}

/// Where the upstream lives: an address known at load time, or a name resolved per connection
/// (so a compose or Kubernetes service name follows DNS changes).
#[derive(Debug, Clone)]
enum Target {
    Addr(SocketAddr),
    Name(String, u16),
}

/// The pooled upstream client of one worker. Cheap to clone; clones share the pool.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    target: Target,
    connect_timeout: Duration,
    /// `upstream.timeout`: from the place taken to the response head.
    timeout: Duration,
    /// The process's concurrency limit, shared by every worker's client.
    limiter: Arc<Limiter>,
    body_idle_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    /// For an `https://` upstream: the connector's configuration and the name to verify.
    tls: Option<UpstreamTls>,
    builder: http1::Builder,
    /// `candor_upstream_close_delimited_total`.
    close_delimited: Counter,
    idle: Mutex<Vec<Idle>>,
}

#[derive(Debug)]
struct Idle {
    sender: SendRequest<RequestBody>,
    since: Instant,
}

/// The upstream read buffer's ceiling: a 64 KiB body plus its head. It must stay above
/// [`MAX_HEAD_BYTES`], or heads the limit allows would not fit.
const UPSTREAM_READ_MAX: usize = MAX_HEAD_BYTES + 4096;

impl Client {
    /// A client for `cfg` taking its places from `limiter`. Must be called inside the worker's
    /// tokio runtime: it spawns the task that closes idle connections.
    pub fn new(cfg: &config::Upstream, close_delimited: Counter, limiter: Arc<Limiter>) -> Self {
        let target = match cfg.host.trim_matches(['[', ']']).parse() {
            Ok(ip) => Target::Addr(SocketAddr::new(ip, cfg.port)),
            Err(_) => Target::Name(cfg.host.clone(), cfg.port),
        };
        let mut builder = http1::Builder::new();
        // An upstream response head larger than this is a protocol error (502), not a reason to
        // buffer hundreds of kilobytes.
        builder.max_header_size(MAX_HEAD_BYTES);
        // One flattened write per message beats hyper's queued writev for the small
        // request heads a proxy forwards (1.5 % less CPU on the upstream side).
        builder.writev(false);
        // hyper's read buffer adapts up to ~400 KiB; on 64 KiB responses it settled near 256 KiB
        // per connection, the largest part of candor's heap under load. 68 KiB still takes a
        // 64 KiB body and its head in one read.
        builder.max_buf_size(UPSTREAM_READ_MAX);
        let inner = Arc::new(Inner {
            target,
            connect_timeout: cfg.connect_timeout,
            timeout: cfg.timeout,
            limiter,
            body_idle_timeout: cfg.body_idle_timeout,
            idle_timeout: cfg.pool_idle_timeout,
            max_idle: cfg.pool_max_idle,
            tls: cfg.tls.clone(),
            builder,
            close_delimited,
            idle: Mutex::new(Vec::new()),
        });
        tokio::spawn(reap(Arc::downgrade(&inner)));
        Client { inner }
    }
}

/// Closes pooled connections that sat idle past `pool_idle_timeout`, so a burst's connections do
/// not linger at the bottom of the LIFO stack until the upstream times them out.
async fn reap(pool: Weak<Inner>) {
    let period = match pool.upgrade() {
        Some(inner) => inner.idle_timeout.max(Duration::from_millis(100)),
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = pool.upgrade() else { return };
        let now = Instant::now();
        let timeout = inner.idle_timeout;
        if let Ok(mut idle) = inner.idle.lock() {
            idle.retain(|e| !e.sender.is_closed() && now - e.since < timeout);
        };
    }
}

impl Inner {
    /// The most recently used idle connection that is still open and fresh, and how long it
    /// sat idle.
    fn checkout(&self) -> Option<(SendRequest<RequestBody>, Duration)> {
        let mut idle = self.idle.lock().ok()?;
        let now = Instant::now();
        while let Some(entry) = idle.pop() {
            let idle_for = now - entry.since;
            if entry.sender.is_ready() && idle_for < self.idle_timeout {
                return Some((entry.sender, idle_for));
            }
        }
        None
    }

    fn checkin(&self, sender: SendRequest<RequestBody>) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.max_idle {
                idle.push(Idle {
                    sender,
                    since: Instant::now(),
                });
            }
        }
    }

    async fn open(&self) -> Result<TcpStream, UpstreamError> {
        match &self.target {
            Target::Addr(addr) => TcpStream::connect(addr)
                .await
                .map_err(UpstreamError::Connect),
            Target::Name(host, port) => {
                let addrs = tokio::net::lookup_host((host.as_str(), *port))
                    .await
                    .map_err(UpstreamError::Resolve)?;
                let mut last = None;
                for addr in addrs {
                    match TcpStream::connect(addr).await {
                        Ok(stream) => return Ok(stream),
                        Err(err) => last = Some(err),
                    }
                }
                Err(last.map_or(UpstreamError::NoAddress, UpstreamError::Connect))
            }
        }
    }

    async fn connect(&self) -> Result<SendRequest<RequestBody>, UpstreamError> {
        let stream = tokio::time::timeout(self.connect_timeout, self.open())
            .await
            .map_err(|_| UpstreamError::ConnectTimeout)??;
        // Heads and small bodies go out as single writes; Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        match &self.tls {
            None => self.handshake(stream).await,
            Some(tls) => {
                // The handshake gets its own `connect_timeout`: an upstream that accepts TCP but
                // never answers a ClientHello is as unreachable as one that never accepts.
                let stream = tokio::time::timeout(self.connect_timeout, tls.connect(stream))
                    .await
                    .map_err(|_| UpstreamError::ConnectTimeout)?
                    .map_err(UpstreamError::Tls)?;
                self.handshake(stream).await
            }
        }
    }

    /// Starts HTTP/1.1 on a connected stream (plain or TLS); the connection task is spawned.
    async fn handshake<T>(&self, stream: T) -> Result<SendRequest<RequestBody>, UpstreamError>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let (sender, conn) = self
            .builder
            .handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Http)?;
        tokio::spawn(async move {
            // Errors here are already reported to the request that saw them.
            if let Err(err) = conn.with_upgrades().await {
                tracing::debug!(error = %err, "upstream connection closed with an error");
            }
        });
        Ok(sender)
    }

    /// Refuses a 101 nobody asked for, and a response whose framing hyper accepted but other
    /// parsers may read differently:
    /// `Transfer-Encoding` with `Content-Length`, or any `Transfer-Encoding` but a plain
    /// `chunked` (nginx `proxy_duplicate_headers.t`, HAProxy `http_transfer_encoding.vtc`). The
    /// connection is dropped with the response, never pooled.
    fn check_framing(response: &Response<Incoming>, upgrade: bool) -> Result<(), UpstreamError> {
        if response.status() == StatusCode::SWITCHING_PROTOCOLS && !upgrade {
            return Err(UpstreamError::UnaskedUpgrade);
        }
        let headers = response.headers();
        let mut codings = headers.get_all(http::header::TRANSFER_ENCODING).iter();
        let Some(coding) = codings.next() else {
            return Ok(());
        };
        let plain_chunked = codings.next().is_none()
            && coding
                .as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(b"chunked");
        if plain_chunked && !headers.contains_key(http::header::CONTENT_LENGTH) {
            Ok(())
        } else {
            Err(UpstreamError::Framing)
        }
    }

    /// One exchange that had to queue for its place: the wait, then the request within
    /// `upstream.timeout`. Boxed whole; only requests past the limit take this path.
    async fn queued(
        self: Arc<Self>,
        req: Request<RequestBody>,
    ) -> Result<Response<UpstreamBody>, BoxError> {
        let permit = self.limiter.clone().queue().await?;
        let started = self.limiter.clock();
        let mut result = match tokio::time::timeout(self.timeout, self.clone().send(req)).await {
            Ok(result) => result,
            Err(_) => Err(tower::timeout::error::Elapsed::new().into()),
        };
        finish(&mut result, permit, started);
        result
    }

    async fn send(
        self: Arc<Self>,
        mut req: Request<RequestBody>,
    ) -> Result<Response<UpstreamBody>, BoxError> {
        // The proxy front forwards `Upgrade` only for a protocol switch the client asked for.
        let upgrade = req.headers().contains_key(http::header::UPGRADE);
        if let Some((mut sender, idle_for)) = self.checkout() {
            let idempotent = is_idempotent(req.method());
            let replay = (idempotent && idle_for >= RACE_IDLE && req.body().is_end_stream())
                .then(|| head_copy(&req));
            match sender.try_send_request(req).await {
                Ok(response) => {
                    Self::check_framing(&response, upgrade)?;
                    return Ok(self.attach(response, sender));
                }
                Err(mut err) => match (err.take_message(), replay) {
                    // The pooled connection died before a byte of this request was written:
                    // sent again once on a fresh connection, but only if repeating it could do
                    // no harm (RFC 9110 §9.2.2), in case the upstream saw more than hyper knows.
                    (Some(unsent), _) if idempotent => req = unsent,
                    // It died after the request went out and before any response: the upstream
                    // closed an idle connection as the request arrived. A bodiless idempotent
                    // request is sent again once.
                    (None, Some(copy)) if is_closed_early(err.error()) => req = copy,
                    _ => return Err(UpstreamError::Http(err.into_error()).into()),
                },
            }
        }
        let mut sender = self.connect().await?;
        let response = sender
            .send_request(req)
            .await
            .map_err(UpstreamError::Http)?;
        Self::check_framing(&response, upgrade)?;
        Ok(self.attach(response, sender))
    }

    /// Ties the connection to the response body, which returns it to the pool at end of stream.
    fn attach(
        self: Arc<Self>,
        response: Response<Incoming>,
        sender: SendRequest<RequestBody>,
    ) -> Response<UpstreamBody> {
        let idle = self.body_idle_timeout;
        let guard = move |body| Guarded::new(body, Side::Response, u64::MAX, idle);
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            // The connection now belongs to the tunnel.
            return response.map(|body| UpstreamBody {
                body: guard(body),
                slot: None,
                permit: None,
            });
        }
        let headers = response.headers();
        if !response.body().is_end_stream()
            && !headers.contains_key(http::header::CONTENT_LENGTH)
            && !headers.contains_key(http::header::TRANSFER_ENCODING)
        {
            // A body that ends when the connection does: cut short by a FIN, it looks whole
            // (RFC 9112 §6.3). Counted, so that an upstream that does this is seen.
            self.close_delimited.inc();
        }
        response.map(|body| {
            let slot = Some(PoolSlot { sender, pool: self });
            let mut body = UpstreamBody {
                body: guard(body),
                slot,
                permit: None,
            };
            if body.body.is_end_stream() {
                body.release();
            }
            body
        })
    }
}

/// Reports the exchange's latency to the adaptive limit when it can steer by it (a response
/// head, or the upstream timeout: the clearest sign of overload; a failed connect says nothing
/// about how busy the upstream is), then hands the permit to what lives as long as the
/// exchange: the response body, or for a protocol switch the upgraded connection (through the
/// response's extensions, to the proxy front). In place: the response is not moved.
fn finish(
    result: &mut Result<Response<UpstreamBody>, BoxError>,
    permit: Permit,
    started: Option<Instant>,
) {
    match result {
        Ok(response) => {
            permit.sample(started);
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                response.extensions_mut().insert(UpgradePermit::new(permit));
            } else if !response.body().body.is_end_stream() {
                response.body_mut().permit = Some(permit);
            }
        }
        Err(err) if err.is::<tower::timeout::error::Elapsed>() => permit.sample(started),
        Err(_) => {}
    }
}

/// A bodiless copy of `req`'s head, to send again.
fn head_copy(req: &Request<RequestBody>) -> Request<RequestBody> {
    let mut copy = Request::new(RequestBody::Empty);
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
}

/// Whether the connection ended before a response began: the signature of the keep-alive race
/// (not a timeout, not a malformed response).
fn is_closed_early(err: &hyper::Error) -> bool {
    err.is_incomplete_message()
        || err.is_canceled()
        || std::error::Error::source(err)
            .and_then(|source| source.downcast_ref::<io::Error>())
            .is_some_and(|io| {
                matches!(
                    io.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::ConnectionAborted
                )
            })
}

/// RFC 9110 §9.2.2: methods whose repetition has the same effect as one request.
fn is_idempotent(method: &http::Method) -> bool {
    use http::Method;
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<UpstreamBody>, BoxError>> + Send>>;

impl Service<Request<RequestBody>> for Client {
    type Response = Response<UpstreamBody>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Connections are made per request, and a request waits for a place inside its own
        // future (where a client that goes away leaves the queue): always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<RequestBody>) -> ResponseFuture {
        match self.inner.limiter.try_acquire() {
            // The exchange and its deadline side by side, as tower's timeout keeps them: the
            // boxed exchange is never moved (nesting it in a timeout future copied it twice,
            // 2.5 % more instructions per request).
            Some(permit) => ResponseFuture::Sent {
                started: self.inner.limiter.clock(),
                sleep: tokio::time::sleep(self.inner.timeout),
                exchange: Box::pin(self.inner.clone().send(req)),
                permit: Some(permit),
            },
            None => ResponseFuture::Queued {
                exchange: Box::pin(self.inner.clone().queued(req)),
            },
        }
    }
}

pin_project! {
    /// Response future of [`Client`].
    #[project = ResponseFutureProj]
    pub enum ResponseFuture {
        /// The exchange had a place at once and runs against `upstream.timeout`.
        Sent {
            exchange: BoxFuture,
            #[pin]
            sleep: tokio::time::Sleep,
            permit: Option<Permit>,
            started: Option<Instant>,
        },
        /// The exchange waits for a place first.
        Queued { exchange: BoxFuture },
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<UpstreamBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseFutureProj::Sent {
                exchange,
                sleep,
                permit,
                started,
            } => {
                let mut result = match exchange.as_mut().poll(cx) {
                    Poll::Ready(result) => result,
                    Poll::Pending => match sleep.poll(cx) {
                        Poll::Ready(()) => Err(tower::timeout::error::Elapsed::new().into()),
                        Poll::Pending => return Poll::Pending,
                    },
                };
                let permit = permit
                    .take()
                    .expect("an upstream future is not polled after it completed");
                finish(&mut result, permit, *started);
                Poll::Ready(result)
            }
            ResponseFutureProj::Queued { exchange } => exchange.as_mut().poll(cx),
        }
    }
}

#[derive(Debug)]
struct PoolSlot {
    sender: SendRequest<RequestBody>,
    pool: Arc<Inner>,
}

pin_project! {
    /// An upstream response body. It hands its connection back to the pool when it ends; if it is
    /// dropped early or fails, the connection is dropped with it and hyper closes it. Its
    /// concurrency-limit permit, if it holds one, goes at the same moment.
    #[derive(Debug)]
    pub struct UpstreamBody {
        #[pin]
        body: Guarded<Incoming>,
        slot: Option<PoolSlot>,
        permit: Option<Permit>,
    }
}

impl UpstreamBody {
    fn release(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.pool.checkin(slot.sender);
        }
        self.permit = None;
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let frame = match this.body.as_mut().poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(frame) => frame,
        };
        match &frame {
            Some(Ok(_)) if !this.body.is_end_stream() => {}
            Some(Err(_)) => {
                drop(this.slot.take());
                drop(this.permit.take());
            }
            _ => {
                if let Some(slot) = this.slot.take() {
                    slot.pool.checkin(slot.sender);
                }
                drop(this.permit.take());
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
