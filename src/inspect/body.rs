//! The body a normalised response carries: the inner service's body untouched (or watched by
//! audit as it streams), the bytes (and trailers) that were read for inspection handed back, or
//! a body candor wrote.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;
use tower::BoxError;

use super::collect::Replay;
use super::observe::Observer;

pin_project! {
    /// Response body of [`super::Normalize`].
    #[project = NormalizedBodyProj]
    pub enum NormalizedBody<B> {
        /// The inner body, never polled by the normaliser: the fast path.
        Original { #[pin] body: B },
        /// The inner body, forwarded frame by frame as it comes while audit keeps clones of
        /// its first bytes (boxed with its observer: only observed responses pay for it, one
        /// allocation, and the enum stays the size it was).
        Observed { body: Pin<Box<Observed<B>>> },
        /// A complete body candor wrote.
        Full { #[pin] body: Full<Bytes> },
        /// An inspected body handed back as it was read: its bytes, then its trailers.
        Inspected { data: Option<Bytes>, trailers: Option<HeaderMap> },
        /// A body that passed the inspection limit: what was read, then the rest.
        Replay { #[pin] body: Replay<B> },
        /// No body.
        Empty,
    }
}

pin_project! {
    /// A body audit watches, with its observer.
    pub struct Observed<B> {
        #[pin]
        body: B,
        observer: Observer,
    }
}

impl<B> std::fmt::Debug for Observed<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed").finish_non_exhaustive()
    }
}

impl<B> NormalizedBody<B> {
    /// `body`, watched by `observer` as it streams.
    pub(crate) fn observed(body: B, observer: Observer) -> Self {
        NormalizedBody::Observed {
            body: Box::pin(Observed { body, observer }),
        }
    }

    /// A complete body of `bytes`.
    pub fn full(bytes: Bytes) -> Self {
        NormalizedBody::Full {
            body: Full::new(bytes),
        }
    }
}

impl<B> NormalizedBody<B> {
    /// The bytes and trailers of a body read for inspection, to be sent on as they came.
    pub fn inspected(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        NormalizedBody::Inspected {
            data: (!data.is_empty()).then_some(data),
            trailers,
        }
    }
}

impl<B> From<Bytes> for NormalizedBody<B> {
    fn from(bytes: Bytes) -> Self {
        NormalizedBody::full(bytes)
    }
}

impl<B> Body for NormalizedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            NormalizedBodyProj::Original { body } => body.poll_frame(cx).map_err(Into::into),
            NormalizedBodyProj::Observed { body } => {
                let observed = body.as_mut().project();
                let (mut body, observer) = (observed.body, observed.observer);
                let frame = ready!(body.as_mut().poll_frame(cx));
                match &frame {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            observer.data(data);
                        }
                        // hyper stops polling a body that says it has ended.
                        if body.is_end_stream() {
                            observer.end();
                        }
                    }
                    None => observer.end(),
                    // A failed body is recorded as the prefix it was, when it is dropped.
                    Some(Err(_)) => {}
                }
                Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
            }
            NormalizedBodyProj::Full { body } => {
                body.poll_frame(cx).map_err(|never| match never {})
            }
            NormalizedBodyProj::Replay { body } => body.poll_frame(cx),
            NormalizedBodyProj::Inspected { data, trailers } => Poll::Ready(
                data.take()
                    .map(Frame::data)
                    .or_else(|| trailers.take().map(Frame::trailers))
                    .map(Ok),
            ),
            NormalizedBodyProj::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            NormalizedBody::Original { body } => body.is_end_stream(),
            NormalizedBody::Observed { body } => body.body.is_end_stream(),
            NormalizedBody::Full { body } => body.is_end_stream(),
            NormalizedBody::Replay { body } => body.is_end_stream(),
            NormalizedBody::Inspected { data, trailers } => data.is_none() && trailers.is_none(),
            NormalizedBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            NormalizedBody::Original { body } => body.size_hint(),
            NormalizedBody::Observed { body } => body.body.size_hint(),
            NormalizedBody::Full { body } => body.size_hint(),
            NormalizedBody::Replay { body } => body.size_hint(),
            NormalizedBody::Inspected { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            NormalizedBody::Empty => SizeHint::with_exact(0),
        }
    }
}
