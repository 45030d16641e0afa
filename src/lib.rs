//! candor: a sidecar reverse proxy that makes a legacy HTTP API's status codes honest.
//!
//! # Layout
//!
//! From the bottom of the module graph up (a module uses only those above it in this table,
//! and `tests/it/module_graph.rs` fails on a cycle):
//!
//! | module | owns |
//! | --- | --- |
//! | [`headers`] | shared HTTP vocabulary: header names, the head limit, hop-by-hop fields, `Retry-After` |
//! | [`guard`] | body guards: the byte limit and idle timeout around a streaming body |
//! | `pattern` | regexes compiled within candor's size limits |
//! | [`problem`] | RFC 9457 problem documents |
//! | [`tls`] | TLS material read from PEM files, both sides' rustls policy, handshake failures read into RFC 9209 types |
//! | `logging` | JSON log lines |
//! | `sd_notify` | telling systemd (`NOTIFY_SOCKET`) that candor is ready, reloading or stopping |
//! | [`rules`] | the compiled rule set and its pure evaluation |
//! | [`builtin`] | the built-in normalisations: HTML errors, scrubbing, `Retry-After` |
//! | [`audit`] | finding the responses that lie, and proposing the rules that fix them: the detectors and the table behind `/audit.json` |
//! | [`config`] | the TOML schema, loading with environment overrides, validation and compilation |
//! | [`maintenance`] | maintenance mode's live state: the switch every worker reads, the admin API and reload set |
//! | [`metrics`] | Prometheus metrics, their typed labels, and the record behind the status page |
//! | [`upstream`] | the pooled HTTP/1.1 upstream client as a tower `Service` |
//! | [`inspect`] | bounded body collection and decoding, the `NormalizeLayer`, audit's view of the traffic it passes |
//! | [`failure`] | the one table from cause to status and the rescue layer: the only place an error becomes a response |
//! | `listener` | binding sockets, following the live ones |
//! | [`status`] | what the status page, `/status.json` and `candor top` show |
//! | `reload` | the live configuration (`Loaded`) and hot reload ([`Reload`]) |
//! | [`proxy`] | workers: accept loop, the front's phases, header hygiene, the stack |
//! | `admin` | `/healthz`, `/readyz`, `/metrics`, the status page, `/status.json`, `/maintenance`, `/audit.json` and `/audit` |
//! | [`memory`] | the allocator's thresholds, and handing freed heap back to the operating system |
//! | `demo` | the embedded legacy upstream behind `candor demo` |
//! | [`cli`] | the `candor` command line |
//!
//! [`serve`] runs candor on the caller's runtime (one worker), so a test can pause time;
//! [`run`] and [`run_with`] are the thread-per-core wrapper the binary uses, one current-thread
//! runtime per `server.workers`. All take listeners the caller bound and a shutdown future;
//! tests bind port 0.
// Two foreign calls need `unsafe` (`memory`: glibc's `malloc_trim` and `mallopt`); everything
// else is safe code, and `deny` keeps it that way unless a module says why.
#![deny(unsafe_code)]
#![warn(unreachable_pub)]

pub(crate) mod admin;
pub mod audit;
pub mod builtin;
pub mod cli;
pub mod config;
pub(crate) mod demo;
pub mod failure;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod guard;
pub mod headers;
pub mod inspect;
pub(crate) mod listener;
pub(crate) mod logging;
pub mod maintenance;
pub mod memory;
pub mod metrics;
pub(crate) mod pattern;
pub mod problem;
pub mod proxy;
pub(crate) mod reload;
pub mod rules;
pub(crate) mod sd_notify;
pub mod status;
pub mod tls;
pub mod upstream;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::registry::Registry;
use tokio::sync::{oneshot, watch};

use crate::admin::Health;
use crate::audit::Audit;
use crate::config::Config;
use crate::listener::Following;
use crate::maintenance::Switch;
use crate::metrics::Metrics;
use crate::proxy::limits::Gate;
pub use crate::reload::Reload;
use crate::reload::{Loaded, Reloader};
use crate::sd_notify::Notifier;
use crate::status::Status;
use crate::upstream::Limiter;

/// Why candor could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({role})")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// `proxy` or `admin`.
        role: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A worker thread or its runtime could not be started.
    #[error("cannot start a worker")]
    Worker(#[source] io::Error),
}

/// The two sockets candor serves: proxied traffic and the admin endpoints.
#[derive(Debug)]
pub struct Listeners {
    proxy: std::net::TcpListener,
    admin: std::net::TcpListener,
}

impl Listeners {
    /// Binds `server.listen` and `server.admin_listen`.
    pub fn bind(server: &config::Server) -> Result<Self, RunError> {
        Self::bind_to(server.listen, server.admin_listen)
    }

    /// Binds the given addresses (port 0 picks a free port).
    pub fn bind_to(proxy: SocketAddr, admin: SocketAddr) -> Result<Self, RunError> {
        let bind = |addr, role| {
            listener::bind(addr).map_err(|source| RunError::Bind { addr, role, source })
        };
        Ok(Listeners {
            proxy: bind(proxy, "proxy")?,
            admin: bind(admin, "admin")?,
        })
    }

    /// Wraps sockets the caller bound itself.
    pub fn from_std(proxy: std::net::TcpListener, admin: std::net::TcpListener) -> Self {
        Listeners { proxy, admin }
    }

    /// The address proxied traffic arrives on.
    pub fn proxy_addr(&self) -> io::Result<SocketAddr> {
        self.proxy.local_addr()
    }

    /// The admin address.
    pub fn admin_addr(&self) -> io::Result<SocketAddr> {
        self.admin.local_addr()
    }
}

/// Serves `config` on `listeners` until `shutdown` completes, then stops accepting, lets
/// in-flight requests finish within `server.drain_timeout`, and returns. No hot reload: see
/// [`run_with`].
///
/// With a `server.shutdown_delay`, `/readyz` answers 503 as soon as `shutdown` completes but
/// candor keeps serving, new connections included, for that long (or until the next SIGTERM or
/// SIGINT) before it stops accepting.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    run_with(config, listeners, shutdown, None).await
}

/// [`run`], reloading the configuration as `reload` says (file changes, SIGHUP).
///
/// Each of `server.workers` proxy workers is a thread with its own current-thread runtime and
/// its own upstream connection pool, all accepting on the one listening socket: no work stealing
/// and no cross-thread wakeups on the request path (2 to 5 % less CPU per request). The admin
/// endpoints and the reload loop run on the caller's runtime.
pub async fn run_with(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
    reload: Option<Reload>,
) -> Result<(), RunError> {
    Server::start(config, listeners, reload)?
        .run(Workers::Threads, shutdown)
        .await
}

/// Serves like [`run_with`], but with one worker on the caller's runtime instead of
/// `server.workers` threads: the same proxy, admin endpoints and reload, in a form a test can
/// drive with `#[tokio::test(start_paused = true)]`.
pub async fn serve(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
    reload: Option<Reload>,
) -> Result<(), RunError> {
    Server::start(config, listeners, reload)?
        .run(Workers::Here, shutdown)
        .await
}

/// Completes on the next SIGTERM or SIGINT: during `server.shutdown_delay` a second one (an
/// operator's second Ctrl-C) ends the delay at once. Never completes where signals cannot be
/// listened for.
fn second_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
    }
}

/// Where the proxy workers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workers {
    /// `server.workers` threads, each with its own current-thread runtime.
    Threads,
    /// One worker, as a task on the caller's runtime.
    Here,
}

/// What every worker, the admin listener and the reloader share, set up before any of them
/// starts.
struct Server {
    config: Arc<Config>,
    metrics: Metrics,
    registry: Arc<Registry>,
    health: Arc<Health>,
    status: Arc<Status>,
    gate: Arc<Gate>,
    /// The upstream concurrency limit, one for every worker; reloads reconfigure it.
    limiter: Arc<Limiter>,
    maintenance: Arc<Switch>,
    /// The process's audit: its settings follow reloads, what it found stays.
    audit: Arc<Audit>,
    publish: watch::Sender<Arc<Loaded>>,
    loaded: watch::Receiver<Arc<Loaded>>,
    reload: Option<Reload>,
    /// The service manager, when `NOTIFY_SOCKET` names one.
    notifier: Notifier,
    proxy_addr: SocketAddr,
    admin_addr: SocketAddr,
}

impl Server {
    fn start(
        config: Config,
        listeners: Listeners,
        reload: Option<Reload>,
    ) -> Result<Server, RunError> {
        let config = Arc::new(config);
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        // Set from the file now and on every reload; the admin API changes it in between.
        let maintenance = Arc::new(Switch::new(&config.maintenance));
        // Every reload applies the new `[audit]` to it with `configure`.
        let audit = Arc::new(Audit::new(&config.audit));
        // The status page's view; hot reload calls `set_config` again on every swap.
        let status = Arc::new(Status::new(
            metrics.clone(),
            maintenance.clone(),
            audit.clone(),
        ));
        status.set_config(&config, SystemTime::now());
        let proxy_addr = listeners.proxy_addr().map_err(RunError::Worker)?;
        let admin_addr = listeners.admin_addr().map_err(RunError::Worker)?;
        for listener in [&listeners.proxy, &listeners.admin] {
            listener.set_nonblocking(true).map_err(RunError::Worker)?;
        }
        let (publish, loaded) = watch::channel(Arc::new(Loaded::first(
            config.clone(),
            listeners.proxy,
            listeners.admin,
        )));
        Ok(Server {
            gate: Arc::new(Gate::new(metrics.connections_open())),
            limiter: Limiter::new(&config.limit, &metrics),
            maintenance,
            audit,
            config,
            metrics,
            registry: Arc::new(registry),
            health: Arc::new(Health::default()),
            status,
            publish,
            loaded,
            reload,
            notifier: Notifier::from_env(),
            proxy_addr,
            admin_addr,
        })
    }

    /// Starts one proxy worker (`Threads`: one per `server.workers`); `started` reports whether
    /// it could listen, `finished` when it has drained.
    fn start_worker(
        &self,
        index: usize,
        workers: Workers,
        stop: &watch::Receiver<bool>,
    ) -> Result<(oneshot::Receiver<io::Result<()>>, oneshot::Receiver<()>), RunError> {
        let (up, started) = oneshot::channel::<io::Result<()>>();
        let (done, finished) = oneshot::channel::<()>();
        let source = self.loaded.borrow().listener.clone();
        let (loaded, stop) = (self.loaded.clone(), stop.clone());
        let shared = proxy::Shared {
            metrics: self.metrics.clone(),
            gate: self.gate.clone(),
            maintenance: self.maintenance.clone(),
            audit: self.audit.clone(),
            limiter: self.limiter.clone(),
        };
        let worker = async move {
            let listener = match Following::new(source) {
                Ok(listener) => listener,
                Err(err) => {
                    let _ = up.send(Err(err));
                    return;
                }
            };
            let _ = up.send(Ok(()));
            let served = proxy::serve(listener, loaded, shared, stop);
            if let Err(err) = served.await {
                tracing::error!(error = %err, "worker stopped");
            }
        };
        match workers {
            Workers::Here => {
                tokio::spawn(async move {
                    worker.await;
                    let _ = done.send(());
                });
            }
            Workers::Threads => {
                std::thread::Builder::new()
                    .name(format!("candor-worker-{index}"))
                    .spawn(move || {
                        match tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                        {
                            Ok(runtime) => runtime.block_on(worker),
                            // `worker` is dropped unstarted, and with it `up`: the start fails.
                            Err(err) => tracing::error!(error = %err, "cannot start a worker"),
                        }
                        let _ = done.send(());
                    })
                    .map_err(RunError::Worker)?;
            }
        }
        Ok((started, finished))
    }

    async fn run(
        self,
        workers: Workers,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), RunError> {
        let count = match workers {
            Workers::Threads => self.config.server.workers.max(1),
            Workers::Here => 1,
        };
        let (stop_workers, workers_stop) = watch::channel(false);
        let mut started = Vec::with_capacity(count);
        let mut finished = Vec::with_capacity(count);
        for index in 0..count {
            let (up, done) = self.start_worker(index, workers, &workers_stop)?;
            started.push(up);
            finished.push(done);
        }

        let (stop_admin, admin_stop) = watch::channel(false);
        let admin = tokio::spawn(admin::serve(
            self.loaded.clone(),
            self.registry.clone(),
            self.health.clone(),
            self.status.clone(),
            self.maintenance.clone(),
            self.audit.clone(),
            admin_stop.clone(),
        ));
        let trimmer = tokio::spawn(memory::trim_after_bursts(
            self.gate.clone(),
            admin_stop.clone(),
        ));
        // Without reload the sender still has to live until the end: workers stop when it is
        // gone.
        let (reloader, _publish) = match self.reload {
            Some(reload) => {
                let reloader = Reloader::start(reload, self.config.files(), self.notifier.clone());
                let task = tokio::spawn(reloader.run(
                    self.publish,
                    self.metrics.clone(),
                    self.status.clone(),
                    self.maintenance.clone(),
                    self.audit.clone(),
                    admin_stop,
                ));
                (Some(task), None)
            }
            None => (None, Some(self.publish)),
        };

        let mut failed = None;
        for up in started {
            match up.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => failed = Some(err),
                Err(_) => failed = Some(io::Error::other("worker exited during start")),
            }
        }
        if let Some(err) = failed {
            let _ = stop_workers.send(true);
            let _ = stop_admin.send(true);
            return Err(RunError::Worker(err));
        }
        self.health.set_ready(true);
        tracing::info!(
            listen = %self.proxy_addr,
            admin = %self.admin_addr,
            workers = count,
            "ready"
        );
        self.notifier.ready(&sd_notify::serving(
            &self.config.upstream.url,
            self.proxy_addr,
            self.admin_addr,
        ));

        shutdown.await;
        self.notifier.stopping();
        // Listening before readiness drops: whoever sees `/readyz` fail may already send the
        // second signal, and a signal with no listener would be lost.
        let delay = self.loaded.borrow().config.server.shutdown_delay;
        let cut_short = (!delay.is_zero()).then(second_signal);
        // Not ready first, so a load balancer stops sending new requests while the old ones
        // drain.
        self.health.set_ready(false);
        if let Some(cut_short) = cut_short {
            // Load balancers (and kube-proxy before Kubernetes 1.29 for a sidecar) keep routing
            // to a terminating instance for a few seconds: keep serving them, new connections
            // included, until they have seen `/readyz` fail.
            tracing::info!(shutdown_delay = ?delay, "shutdown delayed; still serving while /readyz answers 503");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = cut_short => tracing::info!("second signal; ending the shutdown delay"),
            }
        }
        tracing::info!(drain_timeout = ?self.config.server.drain_timeout, "shutting down");
        let _ = stop_workers.send(true);
        // The socket itself stops listening now (new connections are refused), although the
        // current configuration still holds a handle to it until `run` returns.
        let _ = socket2::SockRef::from(&*self.loaded.borrow().listener)
            .shutdown(std::net::Shutdown::Both);
        for done in finished {
            let _ = done.await;
        }
        let _ = stop_admin.send(true);
        let _ = admin.await;
        let _ = trimmer.await;
        if let Some(reloader) = reloader {
            let _ = reloader.await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}
