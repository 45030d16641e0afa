//! The response body type that leaves candor.
//!
//! One enum instead of a boxed body: the pass-through variant is the upstream's body itself, so a
//! response no rule wants streams through with no copy, no buffering and no dynamic dispatch.
//! Responses candor makes or rewrites carry their bytes in a `Full`.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;

use crate::proxy::limits::IdleTimer;
use crate::upstream::UpstreamBody;

/// Errors a body can yield mid-stream; `tower::BoxError` like the rest of the request path.
pub type BoxError = tower::BoxError;

pin_project! {
    /// A response body: the upstream's, streamed untouched, or bytes candor wrote.
    #[project = ProxyBodyProj]
    pub enum ProxyBody {
        /// The upstream's body, streamed as it arrives.
        Upstream { #[pin] body: UpstreamBody },
        /// A complete body candor produced (problem documents, rewritten bodies).
        Full { #[pin] body: Full<Bytes> },
        /// No body at all (204, 304, HEAD, `then.body = "empty"`).
        Empty,
    }
}

impl ProxyBody {
    /// A complete body of `bytes`.
    pub fn full(bytes: Bytes) -> Self {
        ProxyBody::Full {
            body: Full::new(bytes),
        }
    }

    /// The empty body.
    pub fn empty() -> Self {
        ProxyBody::Empty
    }
}

impl From<Bytes> for ProxyBody {
    fn from(bytes: Bytes) -> Self {
        ProxyBody::full(bytes)
    }
}

impl From<UpstreamBody> for ProxyBody {
    fn from(body: UpstreamBody) -> Self {
        ProxyBody::Upstream { body }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            ProxyBodyProj::Upstream { body } => body.poll_frame(cx),
            ProxyBodyProj::Full { body } => body.poll_frame(cx).map_err(|never| match never {}),
            ProxyBodyProj::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream { body } => body.is_end_stream(),
            ProxyBody::Full { body } => body.is_end_stream(),
            ProxyBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream { body } => body.size_hint(),
            ProxyBody::Full { body } => body.size_hint(),
            ProxyBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// Which side of the proxy a guarded body comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client's request body.
    Request,
    /// The upstream's response body.
    Response,
}

/// Why a guarded body stopped.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The request body passed `server.max_request_body_bytes`.
    #[error("the request body is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// No data arrived for longer than the body idle timeout.
    #[error("the {side:?} body sent nothing for {idle:?}")]
    Idle {
        /// Which body.
        side: Side,
        /// The timeout.
        idle: std::time::Duration,
    },
}

pin_project! {
    /// A body with a byte limit and an idle timeout: hyper has neither (shared/reliability.md
    /// §1.2), and without them a client trickling a body, or an upstream that stalls mid-body,
    /// holds a connection and its buffers forever.
    ///
    /// The idle deadline ([`IdleTimer`]) runs only while the body is waiting.
    #[derive(Debug)]
    pub struct Guarded<B> {
        #[pin]
        inner: B,
        side: Side,
        limit: u64,
        seen: u64,
        idle: IdleTimer,
    }
}

impl<B> Guarded<B> {
    /// Guards `inner`: at most `limit` data bytes (`u64::MAX`: no limit), and no pause longer
    /// than `idle`.
    pub fn new(inner: B, side: Side, limit: u64, idle: std::time::Duration) -> Self {
        Guarded {
            inner,
            side,
            limit,
            seen: 0,
            idle: IdleTimer::new(idle),
        }
    }
}

impl<B> Body for Guarded<B>
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
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.idle.progress();
                if let Some(data) = frame.data_ref() {
                    *this.seen += data.len() as u64;
                    if *this.seen > *this.limit {
                        return Poll::Ready(Some(Err(Box::new(BodyError::TooLarge {
                            limit: *this.limit,
                        }))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.idle.poll_stalled(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyError::Idle {
                    side: *this.side,
                    idle: this.idle.idle(),
                })))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
