//! The admin listener: `/healthz`, `/readyz`, `/metrics`, the status page (`/`), its data
//! (`/status.json`), maintenance mode (`/maintenance`) and audit (`/audit.json`, `/audit`) on
//! their own (loopback by default) address, so probes, scrapes and people never mix with proxied
//! traffic and the upstream can never be reached through them.
//!
//! A plain `match` on the path: a handful of routes do not need a router. Every route is
//! read-only (`GET`, `HEAD`) but `PUT /maintenance` and `DELETE /audit`, which are guarded.
//!
//! | file | owns |
//! | --- | --- |
//! | `mod.rs` | the accept loop and the routes |
//! | `maintenance.rs` | `/maintenance`: the state as JSON, and changing it |
//! | `audit.rs` | `/audit.json`: the report; `/audit`: resetting it |
//! | `guard.rs` | who may write: the admin token, or loopback peers |

mod audit;
mod guard;
mod maintenance;

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::audit::Audit;
use crate::listener::{self, Following};
use crate::maintenance::Switch;
use crate::metrics;
use crate::reload::Loaded;
use crate::status::{self, Status};

/// Liveness and readiness as the admin endpoints report them.
#[derive(Debug, Default)]
pub(crate) struct Health {
    ready: AtomicBool,
}

impl Health {
    /// Marks candor ready (config loaded, proxy listener accepting) or not (starting, draining).
    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether `/readyz` answers 200.
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// What every admin connection shares.
struct Admin {
    registry: Arc<Registry>,
    health: Arc<Health>,
    status: Arc<Status>,
    maintenance: Arc<Switch>,
    audit: Arc<Audit>,
    /// The live configuration (`/maintenance` reads the token and the file's values from it).
    loaded: watch::Receiver<Arc<Loaded>>,
}

/// Serves the admin endpoints until `stop` flips, moving to a new socket when a reload brings one
/// (`server.admin_listen` changed).
pub(crate) async fn serve(
    mut loaded: watch::Receiver<Arc<Loaded>>,
    registry: Arc<Registry>,
    health: Arc<Health>,
    status: Arc<Status>,
    maintenance: Arc<Switch>,
    audit: Arc<Audit>,
    mut stop: watch::Receiver<bool>,
) {
    let admin = Arc::new(Admin {
        registry,
        health,
        status,
        maintenance,
        audit,
        loaded: loaded.clone(),
    });
    let first = loaded.borrow_and_update().admin.clone();
    let mut listener = match Following::new(first) {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(error = %err, "cannot serve the admin endpoints");
            return;
        }
    };
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    listener::back_off(err, "admin").await;
                    continue;
                }
            },
            changed = loaded.changed() => {
                if changed.is_err() {
                    return;
                }
                let next = loaded.borrow_and_update().admin.clone();
                if let Err(err) = listener.follow(&next) {
                    tracing::error!(error = %err, "cannot move the admin listener");
                }
                continue;
            }
            _ = stop.changed() => return,
        };
        let admin = admin.clone();
        // An IPv4 peer on a dual-stack socket arrives IPv4-mapped; the guard judges the IPv4.
        let peer = peer.ip().to_canonical();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.route(req, peer).await) }
            });
            let result = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(err) = result {
                tracing::debug!(error = %err, "admin connection ended with an error");
            }
        });
    }
}

impl Admin {
    async fn route(&self, req: Request<Incoming>, peer: IpAddr) -> Response<Full<Bytes>> {
        if req.uri().path() == "/maintenance" {
            // The config current now: its token guards this write, its values fill what a
            // change leaves out.
            let config = self.loaded.borrow().config.clone();
            return maintenance::handle(req, peer, &config, &self.maintenance).await;
        }
        match req.uri().path() {
            "/audit.json" => return audit::report(&req, &self.audit),
            "/audit" => {
                let config = self.loaded.borrow().config.clone();
                return audit::reset(&req, peer, &config, &self.audit);
            }
            _ => {}
        }
        route(&req, &self.registry, &self.health, &self.status)
    }
}

/// The read-only routes.
fn route(
    req: &Request<Incoming>,
    registry: &Registry,
    health: &Health,
    status: &Status,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if health.is_ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        "/metrics" => {
            let mut response = Response::new(Full::new(Bytes::from(metrics::encode(registry))));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            response
        }
        "/" => page(),
        "/status.json" => {
            let mut response = Response::new(Full::new(Bytes::from(status.to_json())));
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            response
        }
        // Browsers ask for it with the page; an empty answer keeps 404s out of their console.
        "/favicon.ico" => {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The status page, locked down: it may run its own inline script and style and fetch
/// `/status.json`, nothing else; the data it shows is inserted as text (see `status/page.html`).
fn page() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(status::PAGE.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(status::PAGE_CSP),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
