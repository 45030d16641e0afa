//! candor: a sidecar reverse proxy that makes a legacy HTTP API's status codes honest.
//!
//! # Layout
//!
//! | module | owns |
//! | --- | --- |
//! | [`cli`] | the `candor` command line: `run`, `check`, `demo`; logging setup; exit codes |
//! | [`config`] | the TOML schema, loading with environment overrides, validation into compiled types |
//! | [`rules`] | the compiled rule set and its pure evaluation |
//! | [`inspect`] | bounded body collection and decoding, the `NormalizeLayer` |
//! | [`builtin`] | the built-in normalisations: HTML errors, scrubbing, `Retry-After` |
//! | [`proxy`] | accept loop, header hygiene, the per-connection front service, `build_stack` |
//! | [`upstream`] | the pooled HTTP/1.1 upstream client as a tower `Service` |
//! | [`failure`] | classifying upstream errors and the rescue layer that answers them |
//! | [`problem`] | RFC 9457 problem documents |
//! | [`body`] | the response body type |
//! | [`metrics`] | Prometheus metrics |
//! | [`memory`] | the allocator's thresholds, and handing freed heap back to the operating system |
//! | [`admin`] | `/healthz`, `/readyz`, `/metrics`, the status page and `/status.json` |
//! | [`reload`] | hot reload: SIGHUP and the config file's directory, swapped in atomically |
//! | [`status`] | what the status page, `/status.json` and `candor top` show |
//! | [`demo`] | the embedded legacy upstream behind `candor demo` |
//!
//! [`run`] serves a validated [`config::Config`] on listeners the caller bound, until a shutdown
//! future completes; tests bind port 0 and call it directly. [`run_with`] adds hot reload.
// Two foreign calls need `unsafe` (`memory`: glibc's `malloc_trim` and `mallopt`); everything
// else is safe code, and `deny` keeps it that way unless a module says why.
#![deny(unsafe_code)]

pub mod admin;
pub mod body;
pub mod builtin;
pub mod cli;
pub mod config;
pub mod demo;
pub mod failure;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod inspect;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod problem;
pub mod proxy;
pub mod reload;
pub mod rules;
pub mod status;
pub mod upstream;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::admin::Health;
use crate::config::Config;
use crate::inspect::Normalizer;
use crate::metrics::Metrics;
use crate::proxy::Loaded;
pub use crate::reload::Reload;
use crate::status::Status;

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
        let bind =
            |addr, role| proxy::bind(addr).map_err(|source| RunError::Bind { addr, role, source });
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
/// and no cross-thread wakeups on the request path (`shared/perf.md`: -2 to -5 % CPU per request).
/// The admin endpoints and the reload loop run on the caller's runtime. The process's allocator
/// is tuned for this use ([`memory::tune`], glibc only) unless `GLIBC_TUNABLES` sets it.
pub async fn run_with(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
    reload: Option<Reload>,
) -> Result<(), RunError> {
    memory::tune();
    let config = Arc::new(config);
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let registry = Arc::new(registry);
    let health = Arc::new(Health::default());
    // The status page's view; hot reload calls `set_config` again on every swap.
    let status = Arc::new(Status::new(metrics.clone()));
    status.set_config(&config, SystemTime::now());

    let proxy_addr = listeners.proxy_addr().map_err(RunError::Worker)?;
    let admin_addr = listeners.admin_addr().map_err(RunError::Worker)?;
    for listener in [&listeners.proxy, &listeners.admin] {
        listener.set_nonblocking(true).map_err(RunError::Worker)?;
    }
    let (publish, loaded) = watch::channel(Arc::new(Loaded {
        normalizer: Arc::new(Normalizer::new(config.clone())),
        config: config.clone(),
        listener: Arc::new(listeners.proxy),
        admin: Arc::new(listeners.admin),
    }));

    let gate = Arc::new(proxy::limits::Gate::new(metrics.connections_open()));
    let (stop_workers, workers_stop) = watch::channel(false);
    let mut started = Vec::with_capacity(config.server.workers);
    let mut finished = Vec::with_capacity(config.server.workers);
    for index in 0..config.server.workers.max(1) {
        let listener = loaded
            .borrow()
            .listener
            .try_clone()
            .map_err(RunError::Worker)?;
        let (up, up_rx) = oneshot::channel::<io::Result<()>>();
        let (done, done_rx) = oneshot::channel::<()>();
        let loaded = loaded.clone();
        let metrics = metrics.clone();
        let gate = gate.clone();
        let stop = workers_stop.clone();
        std::thread::Builder::new()
            .name(format!("candor-worker-{index}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = up.send(Err(err));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(err) => {
                            let _ = up.send(Err(err));
                            return;
                        }
                    };
                    let _ = up.send(Ok(()));
                    if let Err(err) = proxy::serve(listener, loaded, metrics, gate, stop).await {
                        tracing::error!(error = %err, "worker stopped");
                    }
                });
                let _ = done.send(());
            })
            .map_err(RunError::Worker)?;
        started.push(up_rx);
        finished.push(done_rx);
    }

    let (stop_admin, admin_stop) = watch::channel(false);
    let admin = tokio::spawn(admin::serve(
        loaded.clone(),
        registry,
        health.clone(),
        status.clone(),
        admin_stop.clone(),
    ));
    let trimmer = tokio::spawn(memory::trim_after_bursts(gate.clone(), admin_stop.clone()));
    // Without reload the sender still has to live until the end: workers stop when it is gone.
    let (reloader, _publish) = match reload {
        Some(reload) => {
            let reloader = reload::Reloader::start(reload);
            let task = tokio::spawn(reloader.run(publish, metrics.clone(), status, admin_stop));
            (Some(task), None)
        }
        None => (None, Some(publish)),
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
    health.set_ready(true);
    tracing::info!(
        listen = %proxy_addr,
        admin = %admin_addr,
        workers = config.server.workers,
        "ready"
    );

    shutdown.await;
    // Not ready first, so a load balancer stops sending new requests while the old ones drain.
    health.set_ready(false);
    tracing::info!(drain_timeout = ?config.server.drain_timeout, "shutting down");
    let _ = stop_workers.send(true);
    // The socket itself stops listening now (new connections are refused), although the current
    // configuration still holds a handle to it until `run` returns.
    let _ = socket2::SockRef::from(&*loaded.borrow().listener).shutdown(std::net::Shutdown::Both);
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
