//! The request path as a tower stack: the only place candor composes layers.

use std::sync::Arc;

use tower::timeout::{Timeout, TimeoutLayer};
use tower::ServiceBuilder;

use crate::audit::Audit;
use crate::config::Config;
use crate::failure::{Rescue, RescueLayer};
use crate::inspect::{Normalize, NormalizeLayer, NormalizedBody, Normalizer};
use crate::metrics::Metrics;
use crate::upstream::{Client, Limit, LimitLayer, Limiter, UpstreamBody};

/// The tower stack every forwarded request goes through, outer to inner. Every layer is ready at
/// all times (the upstream pool connects per request, and the concurrency limit waits inside its
/// response future, where a client that goes away leaves the queue), which the front relies on.
pub type Stack = Rescue<Normalize<Limit<Timeout<Client>>>>;

/// The body of every forwarded response: the upstream's, or what the normaliser or the rescue
/// layer wrote in its place.
pub type StackBody = NormalizedBody<UpstreamBody>;

/// Composes the request path, outer to inner. The normaliser shows `audit` its traffic only
/// while `[audit]` is enabled, so with audit off the layer is exactly what it was.
pub(crate) fn build(
    config: &Config,
    normalizer: Arc<Normalizer>,
    metrics: Metrics,
    client: Client,
    limiter: Arc<Limiter>,
    audit: &Arc<Audit>,
) -> Stack {
    let normalize = NormalizeLayer::new(normalizer, metrics.clone());
    let normalize = if config.audit.enabled {
        normalize.observing(audit.clone())
    } else {
        normalize
    };
    ServiceBuilder::new()
        // Rescue: outermost, so every error below (connect, timeout, an inspection whose body
        // failed, an unasked protocol switch) is classified once and answered once, and the
        // front always gets a response.
        .layer(RescueLayer::new(config.failures.clone(), metrics.clone()))
        // Normalize: sees only real upstream responses (candor's own answers are made above it)
        // and makes their status honest; a body it fails to read is an error for rescue. Audit
        // watches here too: it sees the upstream's response and what candor made of it.
        .layer(normalize)
        // Limit: a place among `upstream.max_connections` (shared by every worker) before
        // anything is sent, or a FIFO wait, or a shed (503 via rescue). Above the timeout, so
        // the time queued is bounded by `upstream.queue_timeout`, not taken from the upstream's
        // `upstream.timeout`.
        .layer(LimitLayer::new(limiter, &config.limit))
        // Timeout: `upstream.timeout` bounds the wait for response headers, connect included;
        // the body streams without a deadline (a download may legitimately take minutes).
        .layer(TimeoutLayer::new(config.upstream.timeout))
        .service(client)
}
