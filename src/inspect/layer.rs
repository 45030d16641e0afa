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
use crate::builtin::scrub;
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
}

impl NormalizeLayer {
    /// A layer applying `normalizer`, counting rewrites and skipped inspections in `metrics`.
    pub fn new(normalizer: Arc<Normalizer>, metrics: Metrics) -> Self {
        NormalizeLayer {
            shared: Arc::new(Shared {
                normalizer,
                metrics,
                report: false,
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
            }),
        }
    }
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
        ResponseFuture::Waiting {
            inner: self.inner.call(req),
            info: Some(info),
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
                    shared,
                } => {
                    let response = ready!(inner.poll(cx)).map_err(Into::into)?;
                    let info = info
                        .take()
                        .expect("a normalize future is not polled after it completed");
                    match start(shared, info, response) {
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

fn start<B>(shared: &Arc<Shared>, info: RequestInfo, response: Response<B>) -> Step<B>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, body) = response.into_parts();
    // RFC 9110 §9.3.2, §15.3.5, §15.4.5: these responses carry no content, whatever they say.
    let body_may_exist = info.method != Method::HEAD
        && !matches!(
            parts.status,
            StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
        )
        && !body.is_end_stream();
    let plan = shared.normalizer.plan(
        &info,
        parts.status,
        &parts.headers,
        body_may_exist,
        body.size_hint().lower(),
    );
    match plan {
        Plan::Pass => Step::Done(Response::from_parts(
            parts,
            NormalizedBody::Original { body },
        )),
        Plan::Head(skipped) => {
            // A body that has ended before a byte was read is known: it is empty, and
            // `when.body = '^\s*$'` matches it (an empty 200 to a DELETE is a 204).
            let known_empty = info.method != Method::HEAD
                && !matches!(
                    parts.status,
                    StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
                )
                && body.is_end_stream();
            let seen: Option<&[u8]> = known_empty.then_some(&[]);
            let outcome =
                shared
                    .normalizer
                    .decide(&info, parts.status, &parts.headers, seen, skipped);
            let response = finish(
                shared,
                &info,
                parts,
                outcome,
                NormalizedBody::Original { body },
            );
            Step::Done(response)
        }
        Plan::Inspect => match shared.normalizer.inspection_permit() {
            Some(permit) => {
                Step::Inspect(Box::pin(inspect(shared.clone(), info, parts, body, permit)))
            }
            None => {
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

async fn inspect<B>(
    shared: Arc<Shared>,
    info: RequestInfo,
    parts: http::response::Parts,
    body: B,
    // Held until the body has been read and decided on.
    _permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<Response<NormalizedBody<B>>, BoxError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let config = shared.normalizer.config();
    let limit = config.inspect.max_body_bytes;
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
            let body = NormalizedBody::inspected(data, trailers);
            Ok(finish(&shared, &info, parts, outcome, body))
        }
        Collected::Overflow(replay) => {
            let outcome = shared.normalizer.decide(
                &info,
                parts.status,
                &parts.headers,
                None,
                Some(SkipReason::TooLarge),
            );
            Ok(finish(
                &shared,
                &info,
                parts,
                outcome,
                NormalizedBody::Replay { body: replay },
            ))
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
    mut outcome: Outcome<'_>,
    body: NormalizedBody<B>,
) -> Response<NormalizedBody<B>> {
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
    let body = match plan {
        BodyPlan::Keep => body,
        BodyPlan::Problem(bytes) => NormalizedBody::full(bytes),
        BodyPlan::Empty => NormalizedBody::Empty,
    };
    Response::from_parts(parts, body)
}
