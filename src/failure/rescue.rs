//! [`RescueLayer`]: the outermost layer of the stack, where every error below it is classified,
//! counted, logged and answered once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{BoxError, Layer, Service};

use super::{classify, error_chain};
use crate::config::Failures;
use crate::headers::X_REQUEST_ID;
use crate::inspect::InspectError;
use crate::metrics::Metrics;

/// Turns errors from the inner service into problem responses. See the module docs.
#[derive(Debug, Clone)]
pub struct RescueLayer {
    shared: Arc<RescueShared>,
}

#[derive(Debug)]
struct RescueShared {
    failures: Failures,
    metrics: Metrics,
}

impl RescueLayer {
    /// A rescue layer answering with `failures` and counting into `metrics`.
    pub fn new(failures: Failures, metrics: Metrics) -> Self {
        RescueLayer {
            shared: Arc::new(RescueShared { failures, metrics }),
        }
    }
}

impl<S> Layer<S> for RescueLayer {
    type Service = Rescue<S>;

    fn layer(&self, inner: S) -> Rescue<S> {
        Rescue {
            inner,
            shared: self.shared.clone(),
            unready: None,
        }
    }
}

/// The service made by [`RescueLayer`]: never fails, never waits longer than its inner service.
#[derive(Debug)]
pub struct Rescue<S> {
    inner: S,
    shared: Arc<RescueShared>,
    /// The error the inner service's `poll_ready` returned: the next request is answered with
    /// it instead of being called on a service that said it cannot take one.
    unready: Option<BoxError>,
}

impl<S: Clone> Clone for Rescue<S> {
    fn clone(&self) -> Self {
        Rescue {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            unready: None,
        }
    }
}

impl<S, B, RB> Service<Request<B>> for Rescue<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    RB: From<Bytes>,
{
    type Response = Response<RB>;
    type Error = std::convert::Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.unready.is_some() {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(err)) => {
                self.unready = Some(err.into());
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // What the problem document needs is taken now, as cheap clones of shared bytes: the
        // request moves on below.
        let context = FailureContext {
            uri: req.uri().clone(),
            request_id: req.headers().get(&X_REQUEST_ID).cloned(),
            shared: self.shared.clone(),
        };
        match self.unready.take() {
            Some(err) => ResponseFuture::Unready {
                failed: Some((err, context)),
            },
            None => ResponseFuture::Called {
                inner: self.inner.call(req),
                context: Some(context),
            },
        }
    }
}

#[derive(Debug)]
struct FailureContext {
    uri: http::Uri,
    request_id: Option<HeaderValue>,
    shared: Arc<RescueShared>,
}

impl FailureContext {
    /// Classifies `err`, counts and logs it once, and answers it.
    fn answer<RB: From<Bytes>>(self, err: BoxError) -> Response<RB> {
        let failure = classify(&err);
        let request_id = self
            .request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match failure.kind() {
            Some(kind) => {
                self.shared.metrics.upstream_failure(kind);
                let message = if err.is::<InspectError>() {
                    "upstream body failed while it was inspected"
                } else {
                    "upstream request failed"
                };
                tracing::warn!(
                    kind = kind.as_str(),
                    request_id,
                    path = self.uri.path(),
                    error = %error_chain(&*err),
                    "{message}"
                );
            }
            None => tracing::debug!(
                request_id,
                error = %error_chain(&*err),
                "request body failed while forwarding"
            ),
        }
        failure.respond(
            &self.shared.failures,
            self.uri.path(),
            self.request_id.as_ref(),
        )
    }
}

pin_project! {
    /// Response future of [`Rescue`].
    #[project = ResponseFutureProj]
    pub enum ResponseFuture<F> {
        /// The inner service has the request.
        Called {
            #[pin]
            inner: F,
            context: Option<FailureContext>,
        },
        /// The inner service was not ready: answered with its readiness error.
        Unready { failed: Option<(BoxError, FailureContext)> },
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
    RB: From<Bytes>,
{
    type Output = Result<Response<RB>, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseFutureProj::Called { inner, context } => {
                let result = match inner.poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(result) => result,
                };
                Poll::Ready(Ok(match result {
                    Ok(response) => response,
                    Err(err) => context
                        .take()
                        .expect("a rescue future is not polled after it completed")
                        .answer(err.into()),
                }))
            }
            ResponseFutureProj::Unready { failed } => {
                let (err, context) = failed
                    .take()
                    .expect("a rescue future is not polled after it completed");
                Poll::Ready(Ok(context.answer(err)))
            }
        }
    }
}
