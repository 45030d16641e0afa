//! `NormalizeLayer`: the tower layer that looks at responses and makes their status honest.
//!
//! For each response it asks the [`Normalizer`] for a [`Plan`]: most responses (a status no rule
//! or built-in wants, a body nobody needs) leave at once with their body untouched and unpolled.
//! Otherwise the body is read up to `inspect.max_body_bytes`, decoded if compressed, and the
//! rules and built-ins decide; the outcome is applied to the head and the body is the bytes read,
//! a problem document, or nothing. A body that passes the limit is sent on with what was read
//! first; a body that fails mid-read becomes an [`InspectError`] for the rescue layer above to
//! answer (502, or 504 when it stalled), never a truncated success.
//!
//! Made [`observing`](NormalizeLayer::observing), it also shows audit the exchanges it samples
//! (`observe.rs`): a response the normaliser passes is watched as it streams, an inspected one is
//! recorded with the body that was read and, when candor changed it, what candor sent. Audit
//! shares the inspection places (`inspect.max_concurrent`); a sampled exchange that finds none
//! free is skipped and counted, its response untouched. Without audit the fast path is what it
//! was: one branch on an `Option` that is `None`.
//!
//! The layer is generic over the inner service, so it works in front of any hyper/tower service
//! (see `examples/normalize.rs`), not only candor's upstream client.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use tower::{BoxError, Layer, Service};

use super::body::NormalizedBody;
use super::collect::{collect_bounded, Collected};
use super::decode;
use super::normalize::{
    apply_head, BodyPlan, Normalizer, Outcome, Plan, Report, RequestInfo, Rewritten,
};
use super::observe::{Auditing, Observer, Pending, Seen, Sent};
use crate::audit::{Audit, Heads, RequestSigns};
use crate::builtin::scrub::{self, Scrubber};
use crate::metrics::{Metrics, Rewrite, SkipReason};

/// Longest excerpt of a scrubbed body written to the log.
const SCRUB_LOG_EXCERPT: usize = 1024;

/// The body of a response failed while it was read for inspection, before any byte of the
/// response was sent: the rescue layer answers it (the failure ladder reads the cause).
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// Reading the body failed (reset, short `Content-Length`, a stall).
    #[error("the upstream body failed while it was read for inspection")]
    Body(#[source] BoxError),
}

/// Applies candor's rules and built-ins to the responses of the inner service.
#[derive(Debug, Clone)]
pub struct NormalizeLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    normalizer: Arc<Normalizer>,
    metrics: Metrics,
    /// Leave a [`Report`] of every decision in the response's extensions (`explain`, `test`).
    report: bool,
    /// Show audit the exchanges it samples; `None` while audit is off.
    auditing: Option<Arc<Auditing>>,
}

impl NormalizeLayer {
    /// A layer applying `normalizer`, counting rewrites and skipped inspections in `metrics`.
    pub fn new(normalizer: Arc<Normalizer>, metrics: Metrics) -> Self {
        NormalizeLayer {
            shared: Arc::new(Shared {
                normalizer,
                metrics,
                report: false,
                auditing: None,
            }),
        }
    }

    /// The same layer, also leaving a [`Report`] of what it decided in each response's
    /// extensions: what `candor explain` and `candor test` read.
    pub fn reporting(self) -> Self {
        let shared = &self.shared;
        NormalizeLayer {
            shared: Arc::new(Shared {
                normalizer: shared.normalizer.clone(),
                metrics: shared.metrics.clone(),
                report: true,
                auditing: shared.auditing.clone(),
            }),
        }
    }

    /// The same layer, also showing `audit` the exchanges it samples (when it is enabled), with
    /// findings and skips counted in the layer's metrics. Examples are redacted with the
    /// config's scrub patterns, or the built-in ones when scrubbing is off.
    pub fn observing(self, audit: Arc<Audit>) -> Self {
        let shared = &self.shared;
        let config = shared.normalizer.config();
        let Some(scrubber) = config.scrub.scrubber.clone().or_else(default_scrubber) else {
            tracing::warn!("audit's scrub patterns do not compile; audit stays off");
            return self;
        };
        let auditing = Auditing {
            audit,
            scrubber,
            metrics: shared.metrics.clone(),
            limit: config.inspect.max_body_bytes,
        };
        NormalizeLayer {
            shared: Arc::new(Shared {
                normalizer: shared.normalizer.clone(),
                metrics: shared.metrics.clone(),
                report: shared.report,
                auditing: Some(Arc::new(auditing)),
            }),
        }
    }
}

/// The built-in scrub patterns, compiled once per process: audit redacts with them when the
/// config's scrubbing is off.
fn default_scrubber() -> Option<Arc<Scrubber>> {
    static DEFAULT: std::sync::OnceLock<Option<Arc<Scrubber>>> = std::sync::OnceLock::new();
    DEFAULT
        .get_or_init(|| Scrubber::new(&[]).ok().map(Arc::new))
        .clone()
}

impl<S> Layer<S> for NormalizeLayer {
    type Service = Normalize<S>;

    fn layer(&self, inner: S) -> Normalize<S> {
        Normalize {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service made by [`NormalizeLayer`].
#[derive(Debug, Clone)]
pub struct Normalize<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Normalize<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    ResB: Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<NormalizedBody<ResB>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        // Cheap clones of shared bytes; the request itself moves on.
        let info = RequestInfo::of(&req, &self.shared.normalizer);
        // Off: one branch on `None`. On: the request's signs, before it moves on.
        let signs = match &self.shared.auditing {
            Some(auditing) if auditing.audit.enabled() && auditing.audit.sample() => {
                Some(Box::new(RequestSigns::of(req.headers())))
            }
            _ => None,
        };
        ResponseFuture::Waiting {
            inner: self.inner.call(req),
            info: Some(info),
            signs,
            shared: self.shared.clone(),
        }
    }
}

type Inspection<B> =
    Pin<Box<dyn Future<Output = Result<Response<NormalizedBody<B>>, BoxError>> + Send>>;

pin_project! {
    /// Response future of [`Normalize`].
    #[project = ResponseFutureProj]
    pub enum ResponseFuture<F, B> {
        /// Waiting for the inner service's response head.
        Waiting {
            #[pin]
            inner: F,
            info: Option<RequestInfo>,
            // The request's signs when audit sampled the exchange.
            signs: Option<Box<RequestSigns>>,
            shared: Arc<Shared>,
        },
        /// Reading the body for inspection (boxed: only inspected responses pay for it).
        Inspecting { inspection: Inspection<B> },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<NormalizedBody<B>>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                ResponseFutureProj::Waiting {
                    inner,
                    info,
                    signs,
                    shared,
                } => {
                    let response = ready!(inner.poll(cx)).map_err(Into::into)?;
                    let info = info
                        .take()
                        .expect("a normalize future is not polled after it completed");
                    match start(shared, info, signs.take(), response) {
                        Step::Done(response) => return Poll::Ready(Ok(response)),
                        Step::Inspect(inspection) => {
                            self.set(ResponseFuture::Inspecting { inspection })
                        }
                    }
                }
                ResponseFutureProj::Inspecting { inspection } => {
                    return inspection.as_mut().poll(cx);
                }
            }
        }
    }
}

// A `Step` lives only as a return value; boxing its common variant would cost every response
// an allocation to save a move.
#[allow(clippy::large_enum_variant)]
enum Step<B> {
    Done(Response<NormalizedBody<B>>),
    Inspect(Inspection<B>),
}

fn start<B>(
    shared: &Arc<Shared>,
    info: RequestInfo,
    signs: Option<Box<RequestSigns>>,
    response: Response<B>,
) -> Step<B>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, body) = response.into_parts();
    let head = info.method == Method::HEAD;
    // RFC 9110 §9.3.2, §15.3.5, §15.4.5: these responses carry no content, whatever they say.
    let no_content = head
        || matches!(
            parts.status,
            StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
        );
    let body_may_exist = !no_content && !body.is_end_stream();
    let plan = shared.normalizer.plan(
        &info,
        parts.status,
        &parts.headers,
        body_may_exist,
        body.size_hint().lower(),
    );
    // Audit's copy of the exchange, made before the normaliser changes the head.
    let pending = match (signs, &shared.auditing) {
        // Boxed: it moves through the body, the observer and the recording task.
        (Some(signs), Some(auditing)) => Some(Box::new(Pending {
            auditing: auditing.clone(),
            method: info.method.clone(),
            uri: info.uri.clone(),
            signs,
            status: parts.status,
            headers: Heads::of(&parts.headers),
            sent: None,
            permit: None,
        })),
        _ => None,
    };
    match plan {
        Plan::Pass => {
            let body = match pending {
                None => NormalizedBody::Original { body },
                Some(pending) => observe(shared, pending, body, body_may_exist, head),
            };
            Step::Done(Response::from_parts(parts, body))
        }
        Plan::Head(skipped) => {
            // A body that has ended before a byte was read is known: it is empty, and
            // `when.body = '^\s*$'` matches it (an empty 200 to a DELETE is a 204).
            let known_empty = !no_content && body.is_end_stream();
            let seen: Option<&[u8]> = known_empty.then_some(&[]);
            let outcome =
                shared
                    .normalizer
                    .decide(&info, parts.status, &parts.headers, seen, skipped);
            let mut parts = parts;
            let (plan, changed) = apply(shared, &info, &mut parts, outcome);
            let body = match (pending, plan) {
                (None, plan) => with_body(plan, NormalizedBody::Original { body }),
                (Some(mut pending), BodyPlan::Keep) => {
                    pending.sent = changed.then(|| sent(&parts, &BodyPlan::Keep));
                    observe(shared, pending, body, body_may_exist, head)
                }
                (Some(mut pending), plan) => {
                    pending.sent = Some(sent(&parts, &plan));
                    // The upstream's body is dropped unread.
                    pending.submit(if known_empty {
                        Seen::Complete(Bytes::new())
                    } else {
                        Seen::Unseen
                    });
                    with_body(plan, NormalizedBody::Original { body })
                }
            };
            Step::Done(Response::from_parts(parts, body))
        }
        Plan::Inspect => match shared.normalizer.inspection_permit() {
            Some(permit) => Step::Inspect(Box::pin(inspect(
                shared.clone(),
                info,
                parts,
                body,
                permit,
                pending,
            ))),
            None => {
                if let Some(pending) = pending {
                    pending.auditing.skip();
                }
                let outcome = shared.normalizer.decide(
                    &info,
                    parts.status,
                    &parts.headers,
                    None,
                    Some(SkipReason::Busy),
                );
                let body = NormalizedBody::Original { body };
                Step::Done(finish(shared, &info, parts, outcome, body))
            }
        },
    }
}

/// Hands `body` on with audit watching it as it streams, holding an inspection place until it
/// is recorded; records at once when there is no body to watch, and skips (counted) when no
/// place is free.
fn observe<B>(
    shared: &Shared,
    mut pending: Box<Pending>,
    body: B,
    body_may_exist: bool,
    head: bool,
) -> NormalizedBody<B> {
    if !body_may_exist {
        pending.submit(if head {
            Seen::Unseen
        } else {
            Seen::Complete(Bytes::new())
        });
        return NormalizedBody::Original { body };
    }
    match shared.normalizer.inspection_permit() {
        Some(permit) => {
            pending.permit = Some(permit);
            let limit = pending.auditing.limit;
            NormalizedBody::observed(body, Observer::new(pending, limit))
        }
        None => {
            pending.auditing.skip();
            NormalizedBody::Original { body }
        }
    }
}

/// What candor sends, once `plan` is applied to `parts`.
fn sent(parts: &http::response::Parts, plan: &BodyPlan) -> Sent {
    Sent {
        status: parts.status,
        headers: Heads::of(&parts.headers),
        body: match plan {
            BodyPlan::Keep => None,
            BodyPlan::Problem(bytes) => Some(bytes.clone()),
            BodyPlan::Empty => Some(Bytes::new()),
        },
    }
}

async fn inspect<B>(
    shared: Arc<Shared>,
    info: RequestInfo,
    parts: http::response::Parts,
    body: B,
    // Held until the body has been read and decided on (and, when audit observes the
    // exchange, recorded).
    permit: tokio::sync::OwnedSemaphorePermit,
    pending: Option<Box<Pending>>,
) -> Result<Response<NormalizedBody<B>>, BoxError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let config = shared.normalizer.config();
    let limit = config.inspect.max_body_bytes;
    let mut parts = parts;
    match collect_bounded(body, limit).await {
        Collected::Complete { data, trailers } => {
            let (decoded, skipped) = decode::for_inspection(&parts.headers, &data, limit);
            let outcome = shared.normalizer.decide(
                &info,
                parts.status,
                &parts.headers,
                decoded.as_deref(),
                skipped,
            );
            if let (Some(leak), Some(decoded)) = (outcome.leak, &decoded) {
                tracing::warn!(
                    request_id = request_id(&info),
                    path = info.uri.path(),
                    status = parts.status.as_u16(),
                    leak,
                    body = %scrub::excerpt(decoded, SCRUB_LOG_EXCERPT),
                    "upstream error body leaked internals; replaced it"
                );
            }
            let (plan, changed) = apply(&shared, &info, &mut parts, outcome);
            if let Some(mut pending) = pending {
                pending.sent = changed.then(|| sent(&parts, &plan));
                pending.permit = Some(permit);
                let seen = match decoded {
                    Some(decoded) => Seen::Complete(decoded),
                    None => Seen::prefix(&pending.headers, data.clone()),
                };
                pending.submit(seen);
            }
            let body = with_body(plan, NormalizedBody::inspected(data, trailers));
            Ok(Response::from_parts(parts, body))
        }
        Collected::Overflow(replay) => {
            let outcome = shared.normalizer.decide(
                &info,
                parts.status,
                &parts.headers,
                None,
                Some(SkipReason::TooLarge),
            );
            let (plan, changed) = apply(&shared, &info, &mut parts, outcome);
            if let Some(mut pending) = pending {
                pending.sent = changed.then(|| sent(&parts, &plan));
                pending.permit = Some(permit);
                pending.submit_frames(replay.prefix_data().cloned().collect(), false);
            }
            let body = with_body(plan, NormalizedBody::Replay { body: replay });
            Ok(Response::from_parts(parts, body))
        }
        // No byte of the response has been sent: the truncation becomes a visible error
        // instead of a short body presented as complete.
        Collected::Failed(err) => Err(Box::new(InspectError::Body(err))),
    }
}

fn request_id(info: &RequestInfo) -> &str {
    info.request_id()
}

/// Records what happened and applies the outcome to the response.
fn finish<B>(
    shared: &Shared,
    info: &RequestInfo,
    mut parts: http::response::Parts,
    outcome: Outcome<'_>,
    body: NormalizedBody<B>,
) -> Response<NormalizedBody<B>> {
    let (plan, _) = apply(shared, info, &mut parts, outcome);
    Response::from_parts(parts, with_body(plan, body))
}

/// The body `plan` says to send: `body` when it is kept.
fn with_body<B>(plan: BodyPlan, body: NormalizedBody<B>) -> NormalizedBody<B> {
    match plan {
        BodyPlan::Keep => body,
        BodyPlan::Problem(bytes) => NormalizedBody::full(bytes),
        BodyPlan::Empty => NormalizedBody::Empty,
    }
}

/// Records what happened and applies the outcome to the head; returns what the body becomes and
/// whether the response changed at all.
fn apply(
    shared: &Shared,
    info: &RequestInfo,
    parts: &mut http::response::Parts,
    mut outcome: Outcome<'_>,
) -> (BodyPlan, bool) {
    let metrics = &shared.metrics;
    if let Some(reason) = outcome.skipped {
        metrics.inspect_skipped(reason);
    }
    for change in outcome.shadows.iter().chain(&outcome.applied) {
        let rewrite = Rewrite {
            rule: change.rule,
            from: change.from,
            to: change.to,
            mode: change.mode,
            method: &info.method,
            path: info.uri.path(),
            request_id: request_id(info),
        };
        // The one place a rewrite is counted: the metric and the status page's record together.
        metrics.rewrite(&rewrite);
        tracing::info!(
            rule = change.rule,
            from = change.from.as_u16(),
            to = change.to.as_u16(),
            mode = change.mode.as_str(),
            method = info.method.as_str(),
            path = rewrite.path,
            request_id = rewrite.request_id,
            "response rewritten"
        );
    }
    for unfilled in &outcome.unfilled {
        let rule = outcome.unfilled_rule;
        metrics.template_failure(rule);
        // The reason only: the value is body text, which is not logged unchecked.
        tracing::warn!(
            rule,
            field = %unfilled.target,
            reason = unfilled.error.as_str(),
            request_id = request_id(info),
            "rule could not fill a header or member; left it out"
        );
    }
    let config = shared.normalizer.config();
    if config.log.access_log && outcome.changes_response() {
        let rules: Vec<&str> = outcome.applied.iter().map(|a| a.rule).collect();
        parts.extensions.insert(Rewritten {
            upstream_status: outcome.upstream_status,
            rules: rules.join(", "),
        });
    }
    let debug_headers = config.server.debug_headers;
    let changed = outcome.changes_response();
    let plan = apply_head(
        &mut outcome,
        &mut parts.status,
        &mut parts.headers,
        &mut parts.extensions,
        debug_headers,
    );
    if shared.report {
        parts.extensions.insert(Report::of(&outcome, plan.kind()));
    }
    (plan, changed)
}
