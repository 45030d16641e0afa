//! Body guards: a byte limit and an idle timeout around a streaming body, and the idle deadline
//! they (and the client write timeout) share.
//!
//! hyper bounds neither a body's size nor its pauses; without them a client trickling a request
//! body, or an upstream that stalls mid-body, holds a connection and its buffers forever. A leaf
//! module: the upstream client, the proxy front and the failure ladder all use these types.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::BoxError;

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
        idle: Duration,
    },
}

pin_project! {
    /// A body with a byte limit and an idle timeout (see the module docs).
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
    pub fn new(inner: B, side: Side, limit: u64, idle: Duration) -> Self {
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

/// A deadline that restarts whenever the stream it guards makes progress: `idle` after the
/// last progress, a stall ends. The `Sleep` is allocated the first time the stream waits and
/// re-armed rather than reallocated after each piece of progress. Used by [`Guarded`] and the
/// client write timeout.
#[derive(Debug)]
pub struct IdleTimer {
    idle: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Waiting since the last progress: the deadline already runs.
    stalled: bool,
}

impl IdleTimer {
    /// A timer for stalls longer than `idle`.
    pub fn new(idle: Duration) -> Self {
        IdleTimer {
            idle,
            timer: None,
            stalled: false,
        }
    }

    /// The longest stall allowed.
    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// The stream made progress: its next wait starts a fresh deadline.
    pub fn progress(&mut self) {
        self.stalled = false;
    }

    /// The stream is waiting: ready once it has waited `idle` since its last progress.
    pub fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = tokio::time::Instant::now() + self.idle;
        let timer = match &mut self.timer {
            Some(timer) => {
                if !self.stalled {
                    timer.as_mut().reset(deadline);
                }
                timer
            }
            None => self
                .timer
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        self.stalled = true;
        timer.as_mut().poll(cx)
    }
}
