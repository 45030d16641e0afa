//! The request path as a tower stack: the only place candor composes layers.

use std::sync::Arc;

use tower::timeout::{Timeout, TimeoutLayer};
use tower::ServiceBuilder;

use crate::audit::Audit;
use crate::config::Config;
use crate::failure::{Rescue, RescueLayer};
use crate::inspect::{Normalize, NormalizeLayer, NormalizedBody, Normalizer};
use crate::metrics::Metrics;
use crate::upstream::{Client, UpstreamBody};

/// The tower stack every forwarded request goes through, outer to inner. Every layer is ready at
/// all times (the upstream pool connects per request), which the front relies on: a layer that
/// can be busy, such as a concurrency limit, needs the front to wait for readiness first.
pub type Stack = Rescue<Normalize<Timeout<Client>>>;

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
        // Timeout: `upstream.timeout` bounds the wait for response headers, connect included;
        // the body streams without a deadline (a download may legitimately take minutes).
        .layer(TimeoutLayer::new(config.upstream.timeout))
        .service(client)
}
