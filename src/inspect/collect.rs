//! Bounded collection of an upstream response body, with a way to give every byte back.
//!
//! The normalize layer needs to look at a response body before it can decide whether a rule
//! applies, but it must never hold an unbounded body in memory nor lose, reorder or truncate a
//! byte of one it decides not to rewrite (catalogue row B1, tests/README.md).
//! [`collect_bounded`] reads at most `limit` bytes and ends in one of three ways:
//!
//! - [`Collected::Complete`]: the body ended within the limit; the rules see all of it.
//! - [`Collected::Overflow`]: the body is larger than the limit; the caller gets a [`Replay`]
//!   that yields the frames already read and then the rest of the original body, so the
//!   response can be streamed on unmodified (the documented oversize fallback, never a
//!   truncation at the limit).
//! - [`Collected::Failed`]: the body failed before it ended; the caller answers 502 because no
//!   header has been sent yet, so the truncation stays visible.
//!
//! It sits in the flow between the upstream client's response and `rules::evaluate`.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tower::BoxError;

/// Data frames shorter than this are copied into one shared buffer instead of being kept as
/// frames of their own.
///
/// A kept frame costs about a hundred bytes of bookkeeping whatever its length, so a body sent
/// as 1-byte chunks (catalogue row B1) would otherwise cost a hundred times its size.
/// Merging only frames below this size bounds the bookkeeping to a few percent of `limit`,
/// while larger frames are kept as they came, without a copy.
const COALESCE_BELOW: usize = 4096;

/// Most bytes of trailer frames held while collecting; past it the body is an overflow.
///
/// hyper sends at most one trailer frame of at most 16 KiB, but a body of another kind could
/// send any number, and they do not count towards `limit`. Each frame costs its field bytes
/// plus a fixed 64 for its bookkeeping, so endless empty frames are bounded too.
const MAX_TRAILER_BYTES: usize = 64 * 1024;

/// Outcome of reading at most `limit` body bytes.
pub enum Collected<B> {
    /// The whole body, at most `limit` bytes, plus trailers if any.
    Complete {
        /// Every data byte of the body, in order.
        data: Bytes,
        /// The trailers, merged if the body sent more than one trailer frame.
        trailers: Option<HeaderMap>,
    },
    /// The body passed `limit` (or its size hint says it will): the frames read so far, in
    /// order, and the rest.
    Overflow(Replay<B>),
    /// The body failed before it ended (upstream reset, short Content-Length): the error.
    Failed(BoxError),
}

impl<B> fmt::Debug for Collected<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Complete { data, trailers } => f
                .debug_struct("Complete")
                .field("data_len", &data.len())
                .field("trailers", trailers)
                .finish(),
            Self::Overflow(replay) => f.debug_tuple("Overflow").field(replay).finish(),
            Self::Failed(error) => f.debug_tuple("Failed").field(error).finish(),
        }
    }
}

/// Starts reading `body` until it ends, fails, or yields more than `limit` data bytes.
///
/// The decision is made as early as possible: a body whose size hint already promises more
/// than `limit` bytes is an [`Collected::Overflow`] before a single byte is read, and a body
/// that reports its end is [`Collected::Complete`] without being polled.
pub fn collect_bounded<B>(body: B, limit: usize) -> CollectBounded<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    CollectBounded {
        state: Some(State {
            // Boxed so that the body can move into a `Replay` after it has been polled, whether
            // or not it is `Unpin`; one small allocation per inspected response.
            body: Box::pin(body),
            limit,
            started: false,
            read: 0,
            trailer_bytes: 0,
            parts: Vec::new(),
            lone: None,
            small: Vec::new(),
        }),
    }
}

/// The future returned by [`collect_bounded`].
#[must_use = "futures do nothing unless polled"]
pub struct CollectBounded<B> {
    /// `None` once the future has returned its output.
    state: Option<State<B>>,
}

/// What has been read so far, in order: `parts`, then `lone` or `small` (never both).
struct State<B> {
    body: Pin<Box<B>>,
    limit: usize,
    /// The first poll has happened.
    started: bool,
    /// Data bytes read so far.
    read: usize,
    /// What the trailer frames read so far cost (see `MAX_TRAILER_BYTES`).
    trailer_bytes: usize,
    /// Frames read so far, in order; runs of small data frames are merged (see `COALESCE_BELOW`).
    parts: Vec<Frame<Bytes>>,
    /// A small data frame kept as it came, until a second one follows it; so that a body of
    /// one small frame is handed back without a copy.
    lone: Option<Bytes>,
    /// The current run of small data frames, merged, which comes after everything in `parts`.
    small: Vec<u8>,
}

impl<B> fmt::Debug for CollectBounded<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("CollectBounded");
        if let Some(state) = &self.state {
            s.field("limit", &state.limit).field("read", &state.read);
        }
        s.finish_non_exhaustive()
    }
}

impl<B> Future for CollectBounded<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Output = Collected<B>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Every field is `Unpin` (the body is boxed), so no structural pinning is needed.
        let this = self.get_mut();
        let state = this
            .state
            .as_mut()
            .expect("CollectBounded polled after it returned Ready");

        let early = if state.started {
            None
        } else {
            // Decisions that need no byte read, made on the first poll rather than in
            // `collect_bounded` so that creating the future has no effect of its own.
            state.started = true;
            state.decide_unread()
        };
        let outcome = match early {
            Some(outcome) => outcome,
            None => ready!(state.poll_until_decided(cx)),
        };
        let state = this
            .state
            .take()
            .expect("the state is present until the future returns Ready");
        Poll::Ready(state.finish(outcome))
    }
}

/// How collection ended, before the state is turned into a [`Collected`].
enum Outcome {
    Complete,
    Overflow,
    Failed(BoxError),
}

impl<B> State<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    /// Decides from the size hint and `is_end_stream` alone, if they are enough.
    fn decide_unread(&self) -> Option<Outcome> {
        if self.body.is_end_stream() {
            return Some(Outcome::Complete);
        }
        if self.body.size_hint().lower() > self.limit as u64 {
            return Some(Outcome::Overflow);
        }
        None
    }

    fn poll_until_decided(&mut self, cx: &mut Context<'_>) -> Poll<Outcome> {
        loop {
            let frame = match ready!(self.body.as_mut().poll_frame(cx)) {
                None => return Poll::Ready(Outcome::Complete),
                Some(Err(error)) => return Poll::Ready(Outcome::Failed(error.into())),
                Some(Ok(frame)) => frame,
            };
            match frame.into_data() {
                Ok(data) => self.push_data(data),
                Err(other) => {
                    self.trailer_bytes = self.trailer_bytes.saturating_add(frame_cost(&other));
                    self.flush_small();
                    self.parts.push(other);
                }
            }
            if self.read > self.limit || self.trailer_bytes > MAX_TRAILER_BYTES {
                // The frame that crossed a bound stays in the prefix: nothing is lost.
                return Poll::Ready(Outcome::Overflow);
            }
            if self.body.is_end_stream() {
                return Poll::Ready(Outcome::Complete);
            }
            let still_to_come = self.body.size_hint().lower();
            if (self.read as u64).saturating_add(still_to_come) > self.limit as u64 {
                // A Content-Length body that is already known to be too long: stop reading.
                return Poll::Ready(Outcome::Overflow);
            }
        }
    }

    fn push_data(&mut self, data: Bytes) {
        self.read = self.read.saturating_add(data.len());
        if data.len() >= COALESCE_BELOW {
            self.flush_small();
            self.parts.push(Frame::data(data));
            return;
        }
        if self.small.is_empty() {
            match self.lone.take() {
                None => {
                    self.lone = Some(data);
                    return;
                }
                Some(first) => {
                    self.reserve_small(first.len() + data.len());
                    self.small.extend_from_slice(&first);
                }
            }
        } else {
            self.reserve_small(data.len());
        }
        self.small.extend_from_slice(&data);
    }

    /// Makes room for `more` bytes in `small`.
    ///
    /// Grows by doubling, but never past what the rest of the collection can use: the bytes
    /// still allowed under the limit plus one more small frame that crosses it, and never past
    /// what the size hint says is left. `Vec::reserve` alone could double past `limit`.
    fn reserve_small(&mut self, more: usize) {
        let needed = self.small.len() + more;
        if needed <= self.small.capacity() {
            return;
        }
        let most_to_come = if self.read > self.limit {
            // This frame crossed the limit: nothing more will be read.
            0
        } else {
            let allowed = (self.limit - self.read).saturating_add(COALESCE_BELOW - 1);
            match self.body.size_hint().upper() {
                Some(upper) => allowed.min(usize::try_from(upper).unwrap_or(usize::MAX)),
                None => allowed,
            }
        };
        let target = (self.small.capacity().saturating_mul(2))
            .max(256)
            .min(needed.saturating_add(most_to_come))
            .max(needed);
        self.small.reserve_exact(target - self.small.len());
    }

    fn flush_small(&mut self) {
        if let Some(lone) = self.lone.take() {
            self.parts.push(Frame::data(lone));
        } else if !self.small.is_empty() {
            let run = std::mem::take(&mut self.small);
            self.parts.push(Frame::data(Bytes::from(run)));
        }
    }

    fn finish(mut self, outcome: Outcome) -> Collected<B> {
        match outcome {
            Outcome::Failed(error) => Collected::Failed(error),
            Outcome::Overflow => {
                self.flush_small();
                Collected::Overflow(Replay::new(self.parts, self.read, self.body))
            }
            Outcome::Complete => {
                // The common small body: one frame, handed back as it came, with no list built.
                if self.parts.is_empty() && self.small.is_empty() {
                    let data = self.lone.take().unwrap_or_default();
                    return Collected::Complete {
                        data,
                        trailers: None,
                    };
                }
                self.flush_small();
                let (data, trailers) = concat(self.parts, self.read);
                Collected::Complete { data, trailers }
            }
        }
    }
}

/// What holding a non-data frame costs, for `MAX_TRAILER_BYTES`.
fn frame_cost(frame: &Frame<Bytes>) -> usize {
    let fields = frame.trailers_ref().map_or(0, |trailers| {
        trailers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum()
    });
    64 + fields
}

/// Joins the data frames into one buffer and merges the trailer frames.
fn concat(parts: Vec<Frame<Bytes>>, len: usize) -> (Bytes, Option<HeaderMap>) {
    let mut chunks: Vec<Bytes> = Vec::with_capacity(parts.len());
    let mut trailers: Option<HeaderMap> = None;
    for frame in parts {
        match frame.into_data() {
            Ok(data) => chunks.push(data),
            Err(frame) => {
                if let Ok(more) = frame.into_trailers() {
                    merge_trailers(&mut trailers, more);
                }
            }
        }
    }
    let data = match chunks.len() {
        0 => Bytes::new(),
        // One frame (or one run of small frames) is handed over without a copy.
        1 => chunks.pop().unwrap_or_default(),
        _ => {
            let mut joined = BytesMut::with_capacity(len);
            for chunk in &chunks {
                joined.extend_from_slice(chunk);
            }
            joined.freeze()
        }
    };
    (data, trailers)
}

/// Appends every value of `more` to `into`, keeping repeated field names (unlike
/// `HeaderMap::extend`, which would replace them).
fn merge_trailers(into: &mut Option<HeaderMap>, more: HeaderMap) {
    match into {
        None => *into = Some(more),
        Some(current) => {
            let mut name = None;
            for (key, value) in more {
                if key.is_some() {
                    name = key;
                }
                if let Some(name) = &name {
                    current.append(name.clone(), value);
                }
            }
        }
    }
}

/// A body that yields the already-read frames first, then the rest of the original body.
///
/// Errors of the original body are passed on, so a failure after the prefix still reaches the
/// server and aborts the downstream response instead of ending it cleanly.
pub struct Replay<B> {
    prefix: VecDeque<Frame<Bytes>>,
    /// Data bytes in the prefix as it was built.
    prefix_len: usize,
    /// Data bytes of the prefix not yet yielded.
    pending: usize,
    body: Pin<Box<B>>,
    /// The original body has returned `None`; it is not polled again.
    body_done: bool,
}

impl<B> Replay<B> {
    fn new(prefix: Vec<Frame<Bytes>>, prefix_len: usize, body: Pin<Box<B>>) -> Self {
        Self {
            prefix: prefix.into(),
            prefix_len,
            pending: prefix_len,
            body,
            body_done: false,
        }
    }

    /// Number of data bytes that were read before the limit was passed (0 when the size hint
    /// alone decided).
    pub fn prefix_len(&self) -> usize {
        self.prefix_len
    }

    /// The data frames read before the limit was passed and not yet yielded, in order (clones of
    /// their `Bytes`, not copies).
    pub fn prefix_data(&self) -> impl Iterator<Item = &Bytes> {
        self.prefix.iter().filter_map(Frame::data_ref)
    }
}

impl<B> fmt::Debug for Replay<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replay")
            .field("prefix_len", &self.prefix_len)
            .field("pending", &self.pending)
            .field("body_done", &self.body_done)
            .finish_non_exhaustive()
    }
}

impl<B> Body for Replay<B>
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
        let this = self.get_mut();
        if let Some(frame) = this.prefix.pop_front() {
            if let Some(data) = frame.data_ref() {
                this.pending -= data.len();
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        if this.body_done {
            return Poll::Ready(None);
        }
        match ready!(this.body.as_mut().poll_frame(cx)) {
            None => {
                this.body_done = true;
                Poll::Ready(None)
            }
            Some(result) => Poll::Ready(Some(result.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_empty() && (self.body_done || self.body.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let pending = self.pending as u64;
        if self.body_done {
            return SizeHint::with_exact(pending);
        }
        let rest = self.body.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(pending));
        if let Some(upper) = rest.upper().and_then(|upper| upper.checked_add(pending)) {
            hint.set_upper(upper);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::convert::Infallible;
    use std::task::Waker;

    use futures_util::stream;
    use http::HeaderValue;
    use http_body_util::{BodyExt, StreamBody};
    use proptest::prelude::*;

    type Frames = Vec<Result<Frame<Bytes>, BoxError>>;

    /// How a [`TestBody`] reports its size.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Hint {
        /// No idea (a chunked body).
        Unknown,
        /// Exact from the start (a Content-Length body).
        Exact,
        /// Unknown until the first frame, exact after it (a body whose length is learnt late).
        ExactAfterFirst,
    }

    /// A body made of frames that are always ready.
    struct TestBody {
        frames: VecDeque<Result<Frame<Bytes>, BoxError>>,
        hint: Hint,
        total: u64,
        /// Data bytes yielded so far, to keep an exact hint exact.
        yielded: u64,
        polled: bool,
    }

    impl TestBody {
        fn new(frames: Frames) -> Self {
            Self::with_hint(frames, Hint::Unknown)
        }

        fn with_hint(frames: Frames, hint: Hint) -> Self {
            let total = frames
                .iter()
                .filter_map(|f| f.as_ref().ok().and_then(Frame::data_ref))
                .map(|d| d.len() as u64)
                .sum();
            Self {
                frames: frames.into(),
                hint,
                total,
                yielded: 0,
                polled: false,
            }
        }
    }

    impl Body for TestBody {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.polled = true;
            let next = self.frames.pop_front();
            if let Some(Ok(frame)) = &next {
                if let Some(data) = frame.data_ref() {
                    self.yielded += data.len() as u64;
                }
            }
            Poll::Ready(next)
        }

        fn is_end_stream(&self) -> bool {
            self.frames.is_empty()
        }

        fn size_hint(&self) -> SizeHint {
            match self.hint {
                Hint::Exact => SizeHint::with_exact(self.total - self.yielded),
                Hint::ExactAfterFirst if self.polled => {
                    SizeHint::with_exact(self.total - self.yielded)
                }
                _ => SizeHint::default(),
            }
        }
    }

    /// A body that must never be polled.
    struct PanicsIfPolled {
        hint: SizeHint,
        end: bool,
    }

    impl Body for PanicsIfPolled {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            panic!("the body was polled");
        }

        fn is_end_stream(&self) -> bool {
            self.end
        }

        fn size_hint(&self) -> SizeHint {
            self.hint
        }
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn split(bytes: &[u8], frame_len: usize) -> Frames {
        bytes
            .chunks(frame_len.max(1))
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect()
    }

    fn trailers() -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert("grpc-status", HeaderValue::from_static("0"));
        map
    }

    /// Polls a future once with a no-op waker; the test bodies are always ready.
    fn now<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => output,
            Poll::Pending => panic!("test bodies never pend"),
        }
    }

    /// Reads a replay to its end; with `exact_total`, checks before every frame that the size
    /// hint is exactly what is left.
    fn drain<B>(mut replay: Replay<B>, exact_total: Option<u64>) -> (Vec<u8>, Vec<HeaderMap>)
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let mut data = Vec::new();
        let mut trailers = Vec::new();
        loop {
            let hint = replay.size_hint();
            let left = exact_total.map(|total| total - data.len() as u64);
            if left.is_some() {
                assert_eq!(hint.exact(), left, "size hint after {} bytes", data.len());
            }
            assert!(
                hint.lower() >= replay.pending as u64,
                "lower bound below the prefix"
            );
            match now(replay.frame()) {
                None => break,
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(d) => data.extend_from_slice(&d),
                    Err(f) => trailers.extend(f.into_trailers().ok()),
                },
                Some(Err(e)) => panic!("replay failed: {e}"),
            }
        }
        assert!(replay.is_end_stream());
        assert_eq!(replay.size_hint().exact(), Some(0));
        (data, trailers)
    }

    const LIMIT: usize = 64;

    #[test]
    fn sizes_around_the_limit_complete_or_replay_exactly() {
        let sizes = [0, 1, LIMIT - 1, LIMIT, LIMIT + 1, 8 * LIMIT];
        for &len in &sizes {
            for frame_len in [1, len.max(1)] {
                for hint in [Hint::Unknown, Hint::Exact, Hint::ExactAfterFirst] {
                    for with_trailers in [false, true] {
                        let bytes = pattern(len);
                        let mut frames = split(&bytes, frame_len);
                        if with_trailers {
                            frames.push(Ok(Frame::trailers(trailers())));
                        }
                        let body = TestBody::with_hint(frames, hint);
                        let case = format!(
                            "len {len}, frame {frame_len}, {hint:?}, trailers {with_trailers}"
                        );
                        match now(collect_bounded(body, LIMIT)) {
                            Collected::Complete { data, trailers: t } => {
                                assert!(len <= LIMIT, "{case}: complete above the limit");
                                assert_eq!(data, bytes, "{case}");
                                assert_eq!(t, with_trailers.then(trailers), "{case}");
                            }
                            Collected::Overflow(replay) => {
                                assert!(len > LIMIT, "{case}: overflow within the limit");
                                let prefix = match hint {
                                    // Decided from the size hint, before any byte was read.
                                    Hint::Exact => 0,
                                    // Decided after the first frame, once the hint is known.
                                    Hint::ExactAfterFirst => frame_len,
                                    // The frame that crossed the limit is kept.
                                    Hint::Unknown => (LIMIT / frame_len + 1) * frame_len,
                                };
                                assert_eq!(replay.prefix_len(), prefix, "{case}");
                                let total = (hint != Hint::Unknown).then_some(len as u64);
                                let (data, t) = drain(replay, total);
                                assert_eq!(data, bytes, "{case}");
                                let expected: Vec<HeaderMap> =
                                    with_trailers.then(trailers).into_iter().collect();
                                assert_eq!(t, expected, "{case}");
                            }
                            Collected::Failed(e) => panic!("{case}: failed: {e}"),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn exact_hint_above_limit_overflows_without_polling() {
        let body = PanicsIfPolled {
            hint: SizeHint::with_exact(LIMIT as u64 + 1),
            end: false,
        };
        match now(collect_bounded(body, LIMIT)) {
            Collected::Overflow(replay) => {
                assert_eq!(replay.prefix_len(), 0);
                assert_eq!(replay.size_hint().exact(), Some(LIMIT as u64 + 1));
                assert!(!replay.is_end_stream());
            }
            other => panic!("expected overflow, got {other:?}"),
        }
    }

    #[test]
    fn ended_body_completes_empty_without_polling() {
        let body = PanicsIfPolled {
            hint: SizeHint::with_exact(0),
            end: true,
        };
        match now(collect_bounded(body, LIMIT)) {
            Collected::Complete { data, trailers } => {
                assert!(data.is_empty());
                assert!(trailers.is_none());
            }
            other => panic!("expected complete, got {other:?}"),
        }
    }

    #[test]
    fn limit_zero_overflows_on_the_first_byte() {
        let body = TestBody::new(split(b"ab", 1));
        match now(collect_bounded(body, 0)) {
            Collected::Overflow(replay) => {
                assert_eq!(replay.prefix_len(), 1);
                assert_eq!(drain(replay, None).0, b"ab");
            }
            other => panic!("expected overflow, got {other:?}"),
        }
    }

    #[test]
    fn error_mid_body_fails() {
        let mut frames = split(&pattern(10), 3);
        frames.push(Err("connection reset".into()));
        frames.extend(split(b"never", 5));
        match now(collect_bounded(TestBody::new(frames), LIMIT)) {
            Collected::Failed(e) => assert_eq!(e.to_string(), "connection reset"),
            other => panic!("expected failure, got {other:?}"),
        }
    }

    #[test]
    fn error_after_overflow_reaches_the_replay_reader() {
        let bytes = pattern(2 * LIMIT);
        let mut frames = split(&bytes, 16);
        frames.push(Err("connection reset".into()));
        let Collected::Overflow(mut replay) = now(collect_bounded(TestBody::new(frames), LIMIT))
        else {
            panic!("expected overflow");
        };
        let mut seen = Vec::new();
        let error = loop {
            match now(replay.frame()) {
                Some(Ok(frame)) => seen.extend_from_slice(&frame.into_data().unwrap_or_default()),
                Some(Err(e)) => break e,
                None => panic!("the error was swallowed"),
            }
        };
        assert_eq!(seen, bytes);
        assert_eq!(error.to_string(), "connection reset");
    }

    #[test]
    fn trailers_read_before_overflow_keep_their_place() {
        // A pathological body: trailers in the middle. Order must still be kept.
        let frames: Frames = vec![
            Ok(Frame::data(Bytes::from(pattern(LIMIT)))),
            Ok(Frame::trailers(trailers())),
            Ok(Frame::data(Bytes::from_static(b"x"))),
            Ok(Frame::data(Bytes::from(pattern(LIMIT)))),
        ];
        let Collected::Overflow(mut replay) = now(collect_bounded(TestBody::new(frames), LIMIT))
        else {
            panic!("expected overflow");
        };
        assert_eq!(replay.prefix_len(), LIMIT + 1);
        let mut kinds = Vec::new();
        while let Some(frame) = now(replay.frame()) {
            let frame = frame.unwrap_or_else(|e| panic!("replay failed: {e}"));
            kinds.push(match frame.data_ref() {
                Some(d) => d.len(),
                None => usize::MAX,
            });
        }
        assert_eq!(kinds, [LIMIT, usize::MAX, 1, LIMIT]);
    }

    #[test]
    fn endless_trailer_frames_overflow_instead_of_piling_up() {
        let frames: Frames = std::iter::once(Ok(Frame::data(Bytes::from_static(b"x"))))
            .chain((0..100_000).map(|_| Ok(Frame::trailers(HeaderMap::new()))))
            .collect();
        let Collected::Overflow(replay) = now(collect_bounded(TestBody::new(frames), LIMIT)) else {
            panic!("expected overflow");
        };
        assert_eq!(replay.prefix_len(), 1);
        let (data, trailers) = drain(replay, None);
        assert_eq!(data, b"x");
        assert_eq!(trailers.len(), 100_000);
    }

    #[test]
    fn repeated_trailer_frames_are_merged_keeping_every_value() {
        let mut second = HeaderMap::new();
        second.append("grpc-status", HeaderValue::from_static("1"));
        second.append("x-more", HeaderValue::from_static("a"));
        let frames: Frames = vec![
            Ok(Frame::data(Bytes::from_static(b"hi"))),
            Ok(Frame::trailers(trailers())),
            Ok(Frame::trailers(second)),
        ];
        let Collected::Complete { data, trailers } =
            now(collect_bounded(TestBody::new(frames), LIMIT))
        else {
            panic!("expected complete");
        };
        assert_eq!(data, "hi");
        let trailers = trailers.unwrap_or_default();
        let status: Vec<_> = trailers.get_all("grpc-status").iter().collect();
        assert_eq!(status, ["0", "1"]);
        assert_eq!(
            trailers.get("x-more").map(HeaderValue::as_bytes),
            Some(&b"a"[..])
        );
    }

    #[test]
    fn single_frame_is_returned_without_copying() {
        for len in [1, LIMIT, COALESCE_BELOW, 2 * COALESCE_BELOW] {
            let frame = Bytes::from(pattern(len));
            let address = frame.as_ptr();
            let body = TestBody::new(vec![Ok(Frame::data(frame))]);
            let Collected::Complete { data, .. } = now(collect_bounded(body, len)) else {
                panic!("expected complete for {len}");
            };
            assert_eq!(data.as_ptr(), address, "{len}");
        }
    }

    #[test]
    fn large_frames_are_replayed_untouched() {
        let frames: Vec<Bytes> = (0..3)
            .map(|i| Bytes::from(vec![i as u8; COALESCE_BELOW]))
            .collect();
        let addresses: Vec<_> = frames.iter().map(|f| f.as_ptr()).collect();
        let body = TestBody::new(frames.into_iter().map(|f| Ok(Frame::data(f))).collect());
        let Collected::Overflow(mut replay) = now(collect_bounded(body, COALESCE_BELOW)) else {
            panic!("expected overflow");
        };
        let mut seen = Vec::new();
        while let Some(Ok(frame)) = now(replay.frame()) {
            seen.push(frame.into_data().map(|d| d.as_ptr()).ok());
        }
        let expected: Vec<_> = addresses.into_iter().map(Some).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn many_tiny_frames_cost_little_more_than_their_bytes() {
        let limit = 64 * 1024;
        let body = TestBody::new(split(&pattern(limit), 1));
        let mut future = collect_bounded(body, limit);
        // Run the collection by hand to look at the state just before it finishes.
        let state = future.state.as_mut().expect("a fresh future has its state");
        let mut cx = Context::from_waker(Waker::noop());
        // The body ends right after the last byte, so the loop stops there.
        assert!(matches!(
            state.poll_until_decided(&mut cx),
            Poll::Ready(Outcome::Complete)
        ));
        assert!(state.parts.is_empty());
        assert!(state.small.capacity() <= limit + COALESCE_BELOW);
    }

    #[test]
    fn future_and_replay_of_a_hyper_body_can_cross_threads() {
        fn assert_send_unpin<T: Send + Unpin>() {}
        assert_send_unpin::<CollectBounded<hyper::body::Incoming>>();
        assert_send_unpin::<Replay<hyper::body::Incoming>>();
        assert_send_unpin::<Collected<hyper::body::Incoming>>();
    }

    #[tokio::test]
    async fn stream_body_split_across_polls() {
        let bytes = pattern(3 * LIMIT);
        let chunks: Vec<Result<Frame<Bytes>, Infallible>> = bytes
            .chunks(5)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let body = StreamBody::new(stream::iter(chunks));
        let Collected::Overflow(replay) = collect_bounded(body, LIMIT).await else {
            panic!("expected overflow");
        };
        let collected = replay.collect().await.map(|c| c.to_bytes());
        assert_eq!(collected.ok().as_deref(), Some(&bytes[..]));
    }

    proptest! {
        #[test]
        fn any_split_and_limit_keeps_every_byte(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
            cuts in proptest::collection::vec(0usize..2048, 0..40),
            limit in 0usize..2100,
            exact in any::<bool>(),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.push(0);
            cuts.push(bytes.len());
            cuts.sort_unstable();
            let frames: Frames = cuts
                .windows(2)
                .map(|w| Ok(Frame::data(Bytes::copy_from_slice(&bytes[w[0]..w[1]]))))
                .collect();
            let hint = if exact { Hint::ExactAfterFirst } else { Hint::Unknown };
            let body = TestBody::with_hint(frames, hint);
            match now(collect_bounded(body, limit)) {
                Collected::Complete { data, trailers } => {
                    prop_assert!(data.len() <= limit);
                    prop_assert_eq!(&data[..], &bytes[..]);
                    prop_assert!(trailers.is_none());
                }
                Collected::Overflow(replay) => {
                    prop_assert!(bytes.len() > limit);
                    let total = exact.then_some(bytes.len() as u64);
                    let (data, _) = drain(replay, total);
                    prop_assert_eq!(data, bytes);
                }
                Collected::Failed(e) => prop_assert!(false, "failed: {}", e),
            }
        }
    }
}
