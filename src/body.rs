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
            ProxyBodyProj::Upstream { body } => body.poll_frame(cx).map_err(Into::into),
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
