//! The proxy: each worker's accept loop, the per-connection front, header hygiene, and
//! `stack.rs`, the only place layers are composed.
//!
//! Flow of one request: hyper-util's auto server (HTTP/1.1 and h2c; with `[server.tls]`, h2 and
//! HTTP/1.1 over TLS after a handshake in the connection's task) parses it over a
//! `FramingWatch`ed socket and calls [`Front`], which runs the phases of
//! `front.rs` around the tower [`Stack`].
//!
//! | file | owns |
//! | --- | --- |
//! | `mod.rs` | a worker: accept loop, reloads, drain |
//! | `front.rs` | the phases: admit, refuse, maintenance, prepare_request, prepare_response, record |
//! | `stack.rs` | the tower stack, composed once per configuration |
//! | `hygiene.rs` | what is refused, and which headers cross a hop |
//! | `framing/` | spotting requests whose framing hyper and an upstream could read differently |
//! | `limits.rs` | the connection gate and the client write timeout |

pub(crate) mod framing;
mod front;
pub mod hygiene;
pub(crate) mod limits;
mod stack;

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::header::HeaderValue;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::watch;

use crate::audit::Audit;
use crate::config::Config;
use crate::headers::MAX_HEAD_BYTES;
use crate::listener::{self, Following};
use crate::maintenance::Switch;
use crate::metrics::Metrics;
use crate::reload::Loaded;
use crate::upstream::{Client, Limiter};

pub use self::front::{Front, FrontFuture, ResponseBody};
pub use self::stack::{Stack, StackBody};

use self::framing::FramingWatch;
use self::hygiene::Peer;
use self::limits::{Gate, WriteTimeout};

/// Everything a request needs from one configuration, built by each worker for each loaded
/// config. A request takes the generation current when it arrives and keeps it to the end, so a
/// reload never changes a request in flight.
#[derive(Debug)]
pub struct Generation {
    /// The configuration.
    config: Arc<Config>,
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
    fn new(
        loaded: &Loaded,
        metrics: &Metrics,
        limiter: &Arc<Limiter>,
        audit: &Arc<Audit>,
        previous: Option<&Generation>,
    ) -> Self {
        let config = loaded.config.clone();
        let client = match previous {
            Some(previous) if previous.config.upstream == config.upstream => {
                previous.client.clone()
            }
            _ => Client::new(
                &config.upstream,
                metrics.upstream_close_delimited(),
                limiter.clone(),
            ),
        };
        // Every worker applies the settings; after the first the same ones change nothing.
        limiter.configure(&config.limit);
        let stack = stack::build(
            &config,
            loaded.normalizer.clone(),
            metrics.clone(),
            client.clone(),
            audit,
        );
        // A validated upstream authority is always a valid header value.
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

/// What the connections of one worker share.
#[derive(Debug)]
struct Worker {
    metrics: Metrics,
    live: ArcSwap<Generation>,
    /// The process's maintenance switch, shared by every worker.
    maintenance: Arc<Switch>,
    /// The process's audit, shared by every worker and kept across reloads.
    audit: Arc<Audit>,
    /// The process's upstream concurrency limit, shared by every worker.
    limiter: Arc<Limiter>,
}

fn http_builder(config: &Config) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // Without a timer hyper's header read timeout silently does nothing: this is the
        // slowloris defence.
        .timer(TokioTimer::new())
        .header_read_timeout(config.server.header_read_timeout)
        // Bounds a request head (and hyper's read buffer): larger heads get 431. hyper's default
        // (~400 KB) is checked only after a read, so one read could carry a head well past it.
        .max_buf_size(MAX_HEAD_BYTES)
        // Queued (vectored) writes, not flattened ones: flattening copies each body frame into a
        // per-connection buffer that keeps its largest size for the life of the connection
        // (about 1 MiB after one large download to a slow reader). Flattening is 3 % cheaper on
        // small responses; bounded memory per idle connection comes first.
        .writev(true);
    builder.http2().timer(TokioTimer::new());
    builder
}

/// What every worker of the process shares, handed to [`serve`].
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    /// The process's metrics.
    pub(crate) metrics: Metrics,
    /// The connection gate (`server.max_connections`).
    pub(crate) gate: Arc<Gate>,
    /// The maintenance switch.
    pub(crate) maintenance: Arc<Switch>,
    /// The audit, kept across reloads.
    pub(crate) audit: Arc<Audit>,
    /// The upstream concurrency limit (`upstream.max_connections`).
    pub(crate) limiter: Arc<Limiter>,
}

/// Serves one client connection over TLS: the handshake (ALPN `h2` or `http/1.1`), bounded by
/// `server.header_read_timeout` as a slow request head is, then HTTP as on plaintext. The
/// acceptor is the generation's when the connection arrived: a reloaded certificate serves the
/// connections accepted after it, and those already open keep theirs.
#[allow(clippy::too_many_arguments)]
async fn serve_tls(
    acceptor: tokio_rustls::TlsAcceptor,
    handshake_timeout: std::time::Duration,
    io: WriteTimeout<tokio::net::TcpStream>,
    builder: auto::Builder<TokioExecutor>,
    worker: Arc<Worker>,
    peer: Peer,
    watcher: hyper_util::server::graceful::Watcher,
    ticket: limits::Ticket,
) {
    let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(io)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "client TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(timeout = ?handshake_timeout, "client TLS handshake timed out");
            return;
        }
    };
    let (io, verdict) = FramingWatch::new(stream);
    let front = Front {
        worker,
        peer: peer.over_tls(),
        verdict,
    };
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(io), front)
        .into_owned();
    if let Err(err) = watcher.watch(conn).await {
        tracing::debug!(error = %err, "client connection ended with an error");
    }
    drop(ticket);
}

/// Serves one worker on the caller's runtime: accepts on `listener` until `shutdown` flips,
/// follows reloads announced on `loaded`, then drains in-flight requests for at most
/// `server.drain_timeout`.
pub(crate) async fn serve(
    mut listener: Following,
    mut loaded: watch::Receiver<Arc<Loaded>>,
    shared: Shared,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let Shared {
        metrics,
        gate,
        maintenance,
        audit,
        limiter,
    } = shared;
    let current = loaded.borrow_and_update().clone();
    let worker = Arc::new(Worker {
        live: ArcSwap::from_pointee(Generation::new(&current, &metrics, &limiter, &audit, None)),
        metrics,
        maintenance,
        audit,
        limiter,
    });
    let mut builder = http_builder(&current.config);
    // Holding on to it would keep its listening socket open after a reload moves the listener.
    drop(current);
    let graceful = GracefulShutdown::new();

    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let generation = worker.live.load();
                    let server = &generation.config.server;
                    let Some((stream, ticket)) =
                        front::admit(&gate, server, &worker.metrics, stream)
                    else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let io = WriteTimeout::new(stream, server.write_timeout);
                    let peer = Peer::new(peer.ip().to_canonical());
                    if let Some(tls) = &server.tls {
                        // The handshake runs in the connection's task, so a slow client never
                        // holds up the accept loop.
                        tokio::spawn(serve_tls(
                            tls.acceptor(),
                            server.header_read_timeout,
                            io,
                            builder.clone(),
                            worker.clone(),
                            peer,
                            graceful.watcher(),
                            ticket,
                        ));
                        continue;
                    }
                    let (io, verdict) = FramingWatch::new(io);
                    let front = Front {
                        worker: worker.clone(),
                        peer,
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
                    listener::back_off(err, "proxy").await;
                }
            },
            changed = loaded.changed() => {
                if changed.is_err() {
                    break;
                }
                let next = loaded.borrow_and_update().clone();
                let generation = Generation::new(
                    &next,
                    &worker.metrics,
                    &worker.limiter,
                    &worker.audit,
                    Some(&worker.live.load()),
                );
                worker.live.store(Arc::new(generation));
                builder = http_builder(&next.config);
                listener.follow(&next.listener)?;
            }
            _ = shutdown.changed() => break,
        }
    }
    // Closing the listener makes new connections fail fast while in-flight ones finish.
    drop(listener);
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
