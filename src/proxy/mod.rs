//! The proxy: accept loop, the per-connection front service, and `build_stack`, the only place
//! layers are composed.
//!
//! Flow of one request: hyper-util's auto server (HTTP/1.1 and h2c) parses it over a
//! [`framing::FramingWatch`]ed socket and calls [`Front`]. `Front` refuses what must not be
//! forwarded ([`hygiene::check`]), rewrites the head for the upstream in place
//! ([`hygiene::prepare_request`]) and calls the tower stack. On the way back it cleans the
//! response head, echoes the request id, bridges protocol upgrades, counts the response and times
//! its body. Per-connection facts (the peer address, the framing verdict) live in `Front` rather
//! than in request extensions, which would cost an allocation per request.

pub mod framing;
pub mod hygiene;
pub mod limits;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::header::{HeaderValue, CONNECTION};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use pin_project_lite::pin_project;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::timeout::{Timeout, TimeoutLayer};
use tower::{Service as _, ServiceBuilder};

use crate::body::{Guarded, ProxyBody, Side};
use crate::config::Config;
use crate::failure::{Failure, Rescue, RescueLayer};
use crate::inspect::normalize::Rewritten;
use crate::inspect::{Normalize, NormalizeLayer, NormalizedBody, Normalizer};
use crate::metrics::{Metrics, TimedBody};
use crate::problem::Problem;
use crate::upstream::{Client, RequestBody};

use self::framing::{FramingVerdict, FramingWatch};
use self::hygiene::{Peer, Refusal};
use self::limits::{Gate, WriteTimeout};

/// Largest request or response head candor reads (shared/reliability.md §5: 64 KiB).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The tower stack every forwarded request goes through. Every layer is ready at all times, and
/// `Front` relies on it (checked in debug builds): a layer that can be busy, such as a
/// concurrency limit, needs `Front` to wait for readiness first.
pub type Stack = Normalize<Rescue<Timeout<Client>>>;

/// The body of every response candor sends.
pub type ResponseBody = TimedBody<NormalizedBody<ProxyBody>>;

/// Composes the request path, outer to inner.
pub fn build_stack(
    config: &Config,
    normalizer: Arc<Normalizer>,
    metrics: Metrics,
    client: Client,
) -> Stack {
    ServiceBuilder::new()
        // Normalize: sees every response, including the problem documents rescue makes, so
        // built-ins such as `retry-after` apply to candor's own 503s too; it never sees an
        // error, because rescue below has turned them all into responses.
        .layer(NormalizeLayer::new(normalizer, metrics.clone()))
        // Rescue: every error below becomes a problem response here and only here, so the layers
        // above always see a response and nothing leaks error text to clients.
        .layer(RescueLayer::new(config.failures.clone(), metrics))
        // Timeout: `upstream.timeout` bounds the wait for response headers, connect included; the
        // body streams without a deadline (a download may legitimately take minutes).
        .layer(TimeoutLayer::new(config.upstream.timeout))
        .service(client)
}

/// Everything a request needs from one configuration, built by each worker for each loaded
/// config. A request takes the generation current when it arrives and keeps it to the end, so a
/// reload never changes a request in flight.
#[derive(Debug)]
pub struct Generation {
    /// The configuration.
    pub config: Arc<Config>,
    /// The request path for this configuration.
    stack: Stack,
    /// The pooled upstream client, kept across reloads that leave `[upstream]` alone.
    client: Client,
    /// `Host` for requests that carry none (HTTP/1.0).
    upstream_authority: HeaderValue,
}

impl Generation {
    /// Builds the generation for `loaded`, reusing `previous`'s upstream pool when the upstream
    /// settings did not change. Must run on the worker's runtime (the client spawns its reaper).
    fn new(loaded: &Loaded, metrics: &Metrics, previous: Option<&Generation>) -> Self {
        let config = loaded.config.clone();
        let client = match previous {
            Some(previous) if previous.config.upstream == config.upstream => {
                previous.client.clone()
            }
            _ => Client::new(&config.upstream, metrics.upstream_close_delimited()),
        };
        let stack = build_stack(
            &config,
            loaded.normalizer.clone(),
            metrics.clone(),
            client.clone(),
        );
        let upstream_authority = HeaderValue::from_str(config.upstream.authority.as_str())
            .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        Generation {
            config,
            stack,
            client,
            upstream_authority,
        }
    }
}

/// A validated configuration as every worker receives it.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration.
    pub config: Arc<Config>,
    /// Its rules and built-ins, compiled once for all workers.
    pub normalizer: Arc<Normalizer>,
    /// The proxy listening socket for this configuration (a new one when `server.listen`
    /// changed).
    pub listener: Arc<std::net::TcpListener>,
    /// The admin listening socket, likewise.
    pub admin: Arc<std::net::TcpListener>,
}

/// What the connections of one worker share.
#[derive(Debug)]
struct Worker {
    metrics: Metrics,
    live: ArcSwap<Generation>,
}

fn http_builder(config: &Config) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // Without a timer hyper's header read timeout silently does nothing
        // (shared/reliability.md §0.4): this is the slowloris defence.
        .timer(TokioTimer::new())
        .header_read_timeout(config.server.header_read_timeout)
        // Bounds a request head (and hyper's read buffer): larger heads get 431. hyper's default
        // (~400 KB) is checked only after a read, so one read could carry a head well past it.
        .max_buf_size(MAX_HEAD_BYTES)
        // Queued (vectored) writes, not flattened ones: flattening copies each body frame into a
        // per-connection buffer that keeps its largest size for the life of the connection
        // (about 1 MiB after one large download to a slow reader; tests/memory.rs). shared/perf.md
        // measured flattening 3 % cheaper on small responses; bounded memory per idle
        // connection comes first.
        .writev(true);
    builder.http2().timer(TokioTimer::new());
    builder
}

/// Serves one worker: accepts until `shutdown` flips, follows reloads announced on `loaded`,
/// then drains in-flight requests for at most `server.drain_timeout`.
pub async fn serve(
    mut listener: TcpListener,
    mut loaded: watch::Receiver<Arc<Loaded>>,
    metrics: Metrics,
    gate: Arc<Gate>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let current = loaded.borrow_and_update().clone();
    let mut listener_source = current.listener.clone();
    let worker = Arc::new(Worker {
        live: ArcSwap::from_pointee(Generation::new(&current, &metrics, None)),
        metrics,
    });
    let mut builder = http_builder(&current.config);
    // Holding on to it would keep its listening socket open after a reload moves the listener.
    drop(current);
    let graceful = GracefulShutdown::new();

    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let server = &worker.live.load().config.server;
                    let Some(ticket) = gate.admit(server.max_connections) else {
                        worker.metrics.connection_rejected();
                        tokio::spawn(turn_away(stream));
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let io = WriteTimeout::new(stream, server.write_timeout);
                    let (io, verdict) = FramingWatch::new(io);
                    let front = Front {
                        worker: worker.clone(),
                        peer: Peer::new(peer.ip().to_canonical()),
                        verdict,
                    };
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(io), front)
                        .into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(err) = conn.await {
                            tracing::debug!(error = %err, "client connection ended with an error");
                        }
                        drop(ticket);
                    });
                }
                Err(err) => {
                    // Shutdown closes the listening socket under the accept (EINVAL): not a
                    // failure worth a warning.
                    if *shutdown.borrow() {
                        break;
                    }
                    // EMFILE and friends: back off instead of spinning on a listener that stays
                    // readable.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            changed = loaded.changed() => {
                if changed.is_err() {
                    break;
                }
                let next = loaded.borrow_and_update().clone();
                let generation = Generation::new(&next, &worker.metrics, Some(&worker.live.load()));
                worker.live.store(Arc::new(generation));
                builder = http_builder(&next.config);
                if !Arc::ptr_eq(&listener_source, &next.listener) {
                    // Connections accepted on the old socket carry on; new ones arrive here.
                    listener = TcpListener::from_std(next.listener.try_clone()?)?;
                    listener_source = next.listener.clone();
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    // Closing the listener makes new connections fail fast while in-flight ones finish.
    drop(listener);
    drop(listener_source);
    let open = graceful.count();
    let drain = worker.live.load().config.server.drain_timeout;
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(drain) => {
            tracing::warn!(connections = open, ?drain, "drain timeout passed; closing connections");
        }
    }
    Ok(())
}

/// Answers a connection over `server.max_connections` with a fixed 503 and closes it.
async fn turn_away(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    // Bounded: a client that does not read this either is simply closed.
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        stream.write_all(limits::OVER_CAPACITY),
    )
    .await;
    let _ = stream.shutdown().await;
}

/// The per-connection service hyper calls for each request.
#[derive(Debug, Clone)]
pub struct Front {
    worker: Arc<Worker>,
    peer: Peer,
    verdict: Arc<FramingVerdict>,
}

impl hyper::service::Service<Request<Incoming>> for Front {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = FrontFuture;

    fn call(&self, mut req: Request<Incoming>) -> FrontFuture {
        let start = Instant::now();
        let checked = if self.verdict.next_request_is_suspect() {
            Err(Refusal::AmbiguousFraming)
        } else {
            hygiene::check(&req)
        };
        // The generation current now serves this request to its end, whatever reloads happen.
        let generation = self.worker.live.load_full();
        let server = &generation.config.server;
        let checked = checked.and_then(|host| {
            // A declared length over the limit is refused before a byte is forwarded; a chunked
            // body is cut by its guard when it passes the limit.
            if req.body().size_hint().lower() > server.max_request_body_bytes {
                Err(Refusal::BodyTooLarge)
            } else {
                Ok(host)
            }
        });
        let host = match checked {
            Ok(host) => host,
            Err(refusal) => {
                return FrontFuture::Local {
                    response: Some(self.refuse(&req, refusal, start)),
                }
            }
        };
        let client_upgrade = req.extensions_mut().remove::<OnUpgrade>();
        let keep_length = req.method() == Method::HEAD;
        let (limit, idle) = (server.max_request_body_bytes, server.body_idle_timeout);
        let mut req =
            req.map(|body| RequestBody::from(Guarded::new(body, Side::Request, limit, idle)));
        let prepared =
            hygiene::prepare_request(&mut req, host, &generation.upstream_authority, &self.peer);
        let access = generation.config.log.access_log.then(|| {
            Box::new(Access {
                method: req.method().clone(),
                uri: req.uri().clone(),
                request_id: prepared.request_id.clone(),
            })
        });
        let mut stack = generation.stack.clone();
        // Every layer of the stack is ready at all times (the upstream pool connects per
        // request), so the request goes straight in: through `Oneshot` its future was moved
        // once more (464 bytes) and wrapped in a state machine, about 250 instructions a request.
        debug_assert!(stack
            .poll_ready(&mut Context::from_waker(std::task::Waker::noop()))
            .is_ready());
        FrontFuture::Proxied {
            inner: stack.call(req),
            state: Some(Pending {
                request_id: prepared.request_id,
                keep_length,
                client_upgrade: client_upgrade.filter(|_| prepared.upgrade),
                start,
                generation,
                worker: self.worker.clone(),
                access,
            }),
        }
    }
}

impl Front {
    fn refuse(
        &self,
        req: &Request<Incoming>,
        refusal: Refusal,
        start: Instant,
    ) -> Response<ResponseBody> {
        let request_id = hygiene::new_request_id();
        tracing::debug!(?refusal, request_id = ?request_id, "request refused");
        let mut response = Problem::new(refusal.status())
            .detail(refusal.detail())
            .instance(req.uri().path())
            .request_id(Some(&request_id))
            .into_response();
        let headers = response.headers_mut();
        if let Some(allow) = refusal.allow() {
            headers.insert(http::header::ALLOW, allow);
        }
        // A refused request's body is not read, and its framing may be in doubt: the rest of the
        // connection cannot be trusted to be framed as the client meant (shared/reliability.md
        // §2, early responses; nginx closes after a 400 too).
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
        hygiene::echo_request_id(headers, &request_id);
        let access = self.worker.live.load().config.log.access_log.then(|| {
            Box::new(Access {
                method: req.method().clone(),
                uri: req.uri().clone(),
                request_id,
            })
        });
        finish(response, &self.worker.metrics, start, access)
    }
}

/// Counts the response and starts timing its body; with `access`, logs the request when the body
/// ends.
fn finish(
    response: Response<NormalizedBody<ProxyBody>>,
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
            state: Option<Pending>,
        },
    }
}

impl Future for FrontFuture {
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            FrontProj::Local { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Ready(Ok(Response::new(TimedBody::untimed(NormalizedBody::Empty)))),
            },
            FrontProj::Proxied { inner, state } => {
                let response = match inner.poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(response)) => response,
                    Poll::Ready(Err(never)) => match never {},
                };
                let Some(pending) = state.take() else {
                    return Poll::Ready(Ok(Response::new(TimedBody::untimed(
                        NormalizedBody::Empty,
                    ))));
                };
                Poll::Ready(Ok(respond(response, pending)))
            }
        }
    }
}

/// The response path: head hygiene, request id, upgrade bridging, metrics.
fn respond(
    mut response: Response<NormalizedBody<ProxyBody>>,
    pending: Pending,
) -> Response<ResponseBody> {
    let status = response.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        match pending.client_upgrade {
            Some(client) => {
                let upstream = hyper::upgrade::on(&mut response);
                tokio::spawn(bridge(client, upstream));
            }
            None => {
                // A 101 nobody asked for: the upstream wants to take over a connection that is
                // still HTTP to the client. Never switch on it (shared/reliability.md §0.8).
                pending.worker.metrics.upstream_failure("protocol");
                tracing::warn!(request_id = ?pending.request_id, "upstream switched protocols unasked");
                response = Failure::Protocol.respond(
                    &pending.generation.config.failures,
                    "",
                    Some(&pending.request_id),
                );
            }
        }
    }
    let keep_length = pending.keep_length || status == StatusCode::NOT_MODIFIED;
    let status = response.status();
    // candor speaks HTTP/1.1 (or h2) to the client whatever the upstream spoke; hyper downgrades
    // to 1.0 itself for HTTP/1.0 clients.
    *response.version_mut() = Version::HTTP_11;
    hygiene::prepare_response(response.headers_mut(), status, keep_length);
    hygiene::echo_request_id(response.headers_mut(), &pending.request_id);
    finish(
        response,
        &pending.worker.metrics,
        pending.start,
        pending.access,
    )
}

/// Copies bytes both ways between the client and the upstream once both sides have switched.
async fn bridge(client: OnUpgrade, upstream: OnUpgrade) {
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

/// Binds a listening socket the way every candor listener is bound.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    // A restarted candor must not wait for TIME_WAIT sockets of its predecessor.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}
