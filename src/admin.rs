//! The admin listener: `/healthz`, `/readyz` and `/metrics` on their own (loopback by default)
//! address, so probes and scrapes never mix with proxied traffic and the upstream can never be
//! reached through them.
//!
//! A plain `match` on the path: three routes do not need a router.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics;
use crate::proxy::Loaded;

/// Liveness and readiness as the admin endpoints report them.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    /// Marks candor ready (config loaded, proxy listener accepting) or not (starting, draining).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// Serves the admin endpoints until `stop` flips, moving to a new socket when a reload brings one
/// (`server.admin_listen` changed).
pub async fn serve(
    mut loaded: watch::Receiver<Arc<Loaded>>,
    registry: Arc<Registry>,
    health: Arc<Health>,
    mut stop: watch::Receiver<bool>,
) {
    let mut source = loaded.borrow_and_update().admin.clone();
    let mut listener = match source.try_clone().and_then(TcpListener::from_std) {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(error = %err, "cannot serve the admin endpoints");
            return;
        }
    };
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            changed = loaded.changed() => {
                if changed.is_err() {
                    return;
                }
                let next = loaded.borrow_and_update().admin.clone();
                if !Arc::ptr_eq(&next, &source) {
                    match next.try_clone().and_then(TcpListener::from_std) {
                        Ok(new) => {
                            listener = new;
                            source = next;
                        }
                        Err(err) => tracing::error!(error = %err, "cannot move the admin listener"),
                    }
                }
                continue;
            }
            _ = stop.changed() => return,
        };
        let registry = registry.clone();
        let health = health.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let response = route(&req, &registry, &health);
                async move { Ok::<_, Infallible>(response) }
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

fn route(req: &Request<Incoming>, registry: &Registry, health: &Health) -> Response<Full<Bytes>> {
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
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(metrics::CONTENT_TYPE));
            response
        }
        "/" => text(
            StatusCode::OK,
            "candor admin\n  /healthz  liveness\n  /readyz   readiness\n  /metrics  Prometheus metrics\n",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
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
