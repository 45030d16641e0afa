//! The request path as a tower stack: the only place candor composes layers.

use std::sync::Arc;

use tower::ServiceBuilder;

use crate::audit::Audit;
use crate::config::Config;
use crate::failure::{Rescue, RescueLayer};
use crate::inspect::{Normalize, NormalizeLayer, NormalizedBody, Normalizer};
use crate::metrics::Metrics;
use crate::upstream::{Client, UpstreamBody};

/// The tower stack every forwarded request goes through, outer to inner. Every layer is ready at
/// all times (the upstream pool connects per request, and the concurrency limit waits inside the
/// client's response future, where a client that goes away leaves the queue), which the front
/// relies on.
pub type Stack = Rescue<Normalize<Client>>;

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
        // Client: takes a place among `upstream.max_connections` (one limit for every worker)
        // or waits for one in the FIFO queue, or is shed (503 via rescue); then
        // `upstream.timeout` bounds the wait for response headers, connect included, but not
        // the time queued (`upstream.queue_timeout` does). The body streams without a deadline
        // (a download may legitimately take minutes).
        .service(client)
}
