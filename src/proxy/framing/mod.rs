//! Request-framing watch: spots HTTP/1 requests that carry both `Content-Length` and
//! `Transfer-Encoding`, which hyper accepts but candor must refuse.
//!
//! hyper's HTTP/1 server, given a request with both fields, drops `Content-Length` from the
//! header map, reads the body as chunked and closes the connection afterwards (RFC 9112 §6.1
//! allows that). Candor's contract is stricter: such a request is answered 400 and never
//! forwarded, because ambiguous framing is how requests get smuggled past a proxy. The service
//! cannot see the dropped field, so [`FramingWatch`] wraps the accepted socket, below
//! `hyper_util::rt::TokioIo`, and follows the request framing in the raw bytes hyper reads. When
//! a request head carries both fields it records that head's index (0-based, per connection) in
//! the shared [`FramingVerdict`]; the service asks the verdict once per request.
//!
//! Place in the flow: accept loop → `FramingWatch::new(stream)` → `TokioIo` → hyper, with the
//! verdict handed to that connection's service.
//!
//! # Why a flag can only land on a request hyper also saw with both fields
//!
//! On any byte stream hyper accepts, the tracker either stops or splits it into heads and
//! bodies exactly as httparse and hyper's decoders do: lines end at LF; empty lines before a
//! request line are skipped; a head ends at an empty line; a line is a `Content-Length` or
//! `Transfer-Encoding` field only when it starts with that name directly followed by `:`
//! (httparse allows no blank before the colon in requests, and no line folding), and not when
//! its value holds a byte httparse refuses (hyper then rejects the head, or skips the line if
//! told to ignore invalid headers); a body is chunked when the last `Transfer-Encoding` line
//! ends in `chunked`, else `Content-Length` bytes long, else empty; chunk framing follows hyper's
//! `ChunkedState` decoder byte for byte. Where hyper rejects the input instead, it answers 400
//! itself and closes the connection, so no later request reaches the service and whatever the
//! tracker made of those bytes is never consulted. Stopping can only miss a flag. So for every
//! head that reaches the service the tracker's index is hyper's, and the tracker flags it only if
//! hyper saw both fields in it too. `tracker_agrees_with_hyper_on_random_pipelines` checks this
//! against a real hyper server.
//!
//! Heads are not capped in size: the tracker buffers nothing, hyper bounds a head by its
//! `max_buf_size` and closes beyond it, and a smaller cap here would let one large but legal
//! request switch the watch off for the rest of the connection.
//!
//! After an `Upgrade` or `CONNECT` request the tracker keeps going: if hyper declines the upgrade
//! the connection stays HTTP/1 and still needs watching; if it switches, hyper calls the service
//! no more on this connection, so whatever the tracker makes of tunnel bytes is never consulted
//! (and they rarely get far: a WebSocket or TLS first byte is not a method character).
//!
//! Cost: a byte check and a name compare of at most 18 bytes per header line, one `memchr` per
//! line, a byte loop only over `Content-Length` / `Transfer-Encoding` values and chunk-size
//! lines, and O(1) per read of body data. No allocation; 32 bytes of state per connection.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use memchr::{memchr, memchr2};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Shared per-connection record of which request head, if any, carried both framing fields.
///
/// The [`FramingWatch`] writes it while hyper reads; the connection's service reads it through
/// [`FramingVerdict::next_request_is_suspect`].
#[derive(Debug)]
pub(crate) struct FramingVerdict {
    /// Index of the first head seen with both `Content-Length` and `Transfer-Encoding`;
    /// [`NO_SUSPECT`] when none.
    suspect: AtomicU64,
    /// How many requests the service has asked about so far.
    asked: AtomicU64,
}

/// Sentinel for "no suspect head": the tracker would need 2^64 heads to reach it.
const NO_SUSPECT: u64 = u64::MAX;

impl FramingVerdict {
    fn new() -> Self {
        Self {
            suspect: AtomicU64::new(NO_SUSPECT),
            asked: AtomicU64::new(0),
        }
    }

    /// Counts one request and says whether it carried both `Content-Length` and
    /// `Transfer-Encoding` and so must be refused.
    ///
    /// Call it exactly once per HTTP/1 request of this connection, in the order hyper hands
    /// them over (hyper's HTTP/1 server calls the service once per parsed head, one at a time),
    /// so the count lines up with the tracker's head index.
    pub(crate) fn next_request_is_suspect(&self) -> bool {
        // Requests on one connection are served one after another; the counter needs no
        // ordering with anything else.
        let index = self.asked.fetch_add(1, Ordering::Relaxed);
        index == self.suspect.load(Ordering::Acquire)
    }

    /// The index of the first request head seen with both framing fields, if any.
    #[cfg(test)]
    pub(crate) fn suspect_index(&self) -> Option<u64> {
        match self.suspect.load(Ordering::Acquire) {
            NO_SUSPECT => None,
            index => Some(index),
        }
    }

    fn flag(&self, index: u64) {
        // The flag is stored before hyper can parse that head (the head ends in the bytes of
        // this very read), so Release here pairs with the Acquire in the service's check.
        self.suspect.fetch_min(index, Ordering::Release);
    }
}

/// IO wrapper around an accepted client socket that watches HTTP/1 request framing.
///
/// Reads pass through unchanged while a small tracker follows them; writes are delegated
/// verbatim.
#[derive(Debug)]
pub(crate) struct FramingWatch<IO> {
    io: IO,
    tracker: Tracker,
    verdict: Arc<FramingVerdict>,
}

impl<IO> FramingWatch<IO> {
    /// Wraps `io` and returns the verdict its connection's service should consult.
    pub(crate) fn new(io: IO) -> (Self, Arc<FramingVerdict>) {
        let verdict = Arc::new(FramingVerdict::new());
        let watch = Self {
            io,
            tracker: Tracker::new(),
            verdict: Arc::clone(&verdict),
        };
        (watch, verdict)
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for FramingWatch<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            if !this.tracker.is_stopped() {
                if let Some(index) = this.tracker.feed(&buf.filled()[before..]) {
                    this.verdict.flag(index);
                }
            }
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for FramingWatch<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Where the tracker is in the request stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between messages, skipping empty lines before a request line (as httparse does).
    Idle,
    /// Saw CR between messages; httparse requires LF next.
    IdleCr,
    /// Comparing the start of a line with `field`'s name; `matched` bytes agree so far.
    Name,
    /// Rest of a line that decides nothing (request line, other fields).
    SkipLine,
    /// At the first byte of a header line, or of the empty line ending the head.
    LineStart,
    /// A header-section line began with CR: only LF (end of head) may follow.
    LineCr,
    /// Value of a `Content-Length` field.
    ClValue,
    /// Value of a `Transfer-Encoding` field.
    TeValue,
    /// `Content-Length` body; `num` bytes left.
    Body,
    /// First hex digit of a chunk size.
    ChunkStart,
    /// Further hex digits of a chunk size (in `num`).
    ChunkSize,
    /// Blanks after a chunk size.
    ChunkLws,
    /// Chunk extension, up to CR.
    ChunkExt,
    /// LF ending a chunk-size line.
    ChunkSizeLf,
    /// Chunk data; `num` bytes left.
    ChunkData,
    /// CR after chunk data.
    ChunkDataCr,
    /// LF after chunk data.
    ChunkDataLf,
    /// After the last chunk or a trailer line: CR of the final CRLF, or a trailer.
    EndCr,
    /// LF of the final CRLF.
    EndLf,
    /// A trailer line, up to CR.
    Trailer,
    /// LF ending a trailer line.
    TrailerLf,
    /// Nothing more to learn on this connection.
    Stopped,
}

/// Which name a [`State::Name`] comparison is testing for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    /// The HTTP/2 prior-knowledge preface, as a request line.
    Preface,
    ContentLength,
    TransferEncoding,
}

impl Field {
    /// The bytes to match, lowercase (compared ASCII case-insensitively).
    fn pattern(self) -> &'static [u8] {
        match self {
            // RFC 9113 §3.4; as HTTP/1, httparse rejects its version, so stopping loses nothing.
            Field::Preface => b"pri * http/2.0",
            Field::ContentLength => b"content-length:",
            Field::TransferEncoding => b"transfer-encoding:",
        }
    }
}

// Head flags: what the current head has said so far.
/// A valid `Content-Length` line was seen (whatever its value).
const CL_SEEN: u8 = 1 << 0;
/// A `Content-Length` value was unusable or disagreed with an earlier one.
const CL_BAD: u8 = 1 << 1;
/// A valid `Transfer-Encoding` line was seen.
const TE_SEEN: u8 = 1 << 2;
/// The last `Transfer-Encoding` line ends in `chunked`.
const TE_CHUNKED: u8 = 1 << 3;
// Line flags: what the current `Content-Length` / `Transfer-Encoding` line holds.
/// A byte httparse refuses in a value: hyper rejects the head, or skips the line when told to
/// ignore invalid headers. Either way the line does not count.
const LINE_INVALID: u8 = 1 << 4;
/// obs-text (0x80..=0xFF): valid for httparse, but the value is not visible ASCII, so hyper's
/// `chunked` test fails on it.
const LINE_OBS: u8 = 1 << 5;
/// The previous byte was CR, which is only allowed right before LF.
const LINE_CR: u8 = 1 << 6;
const LINE_FLAGS: u8 = LINE_INVALID | LINE_OBS | LINE_CR;

// `Content-Length` value scanner states (in `value`).
const CL_LEAD: u8 = 0;
const CL_DIGITS: u8 = 1;
const CL_TRAIL: u8 = 2;
const CL_WRONG: u8 = 3;

// `Transfer-Encoding` value scanner states: 0..=7 is how much of `chunked` the current list
// element has matched after optional leading blanks; then these.
const TE_LEAD: u8 = 0;
const TE_FULL: u8 = CHUNKED.len() as u8;
const TE_TRAIL: u8 = TE_FULL + 1;
const TE_OTHER: u8 = TE_FULL + 2;
const CHUNKED: &[u8] = b"chunked";

/// Incremental follower of HTTP/1.1 request framing; see the module docs for its rules.
#[derive(Debug)]
struct Tracker {
    /// Index of the head being read (equivalently, heads completed so far).
    heads: u64,
    /// The current head's `Content-Length`.
    cl: u64,
    /// Scratch number: `Content-Length` digits, bytes of body or chunk left, or chunk size.
    num: u64,
    state: State,
    /// `CL_*`, `TE_*` and `LINE_*` bits.
    flags: u8,
    /// Value scanner state for the current field line.
    value: u8,
    field: Field,
    /// Bytes of `field`'s pattern matched so far (at most 18).
    matched: u8,
}

impl Tracker {
    fn new() -> Self {
        Self {
            heads: 0,
            cl: 0,
            num: 0,
            state: State::Idle,
            flags: 0,
            value: 0,
            field: Field::Preface,
            matched: 0,
        }
    }

    fn is_stopped(&self) -> bool {
        self.state == State::Stopped
    }

    /// Follows `buf`, the next bytes of the connection; returns the index of a head that
    /// carried both framing fields, after which the tracker is stopped.
    fn feed(&mut self, buf: &[u8]) -> Option<u64> {
        let mut pos = 0;
        while pos < buf.len() {
            let byte = buf[pos];
            match self.state {
                State::Stopped => return None,
                State::Idle => match byte {
                    b'\n' => pos += 1,
                    b'\r' => {
                        pos += 1;
                        self.state = State::IdleCr;
                    }
                    // A request line starts with a method token; anything else is an error for
                    // httparse (and the usual first byte of TLS or a WebSocket frame).
                    _ if is_tchar(byte) => {
                        self.flags = 0;
                        self.cl = 0;
                        self.state = if byte.eq_ignore_ascii_case(&b'p') {
                            self.begin_name(Field::Preface)
                        } else {
                            State::SkipLine
                        };
                    }
                    _ => self.state = State::Stopped,
                },
                State::IdleCr => self.expect(byte, b'\n', State::Idle, &mut pos),
                State::Name => {
                    let want = &self.field.pattern()[usize::from(self.matched)..];
                    let avail = &buf[pos..];
                    let n = want.len().min(avail.len());
                    if !avail[..n].eq_ignore_ascii_case(&want[..n]) {
                        // Not the line we look for: its end is all that matters now.
                        self.state = State::SkipLine;
                    } else if n < want.len() {
                        // The read ended inside the name; keep only the count.
                        pos = buf.len();
                        // n < want.len() <= 18, so this fits.
                        self.matched += n as u8;
                    } else {
                        pos += n;
                        self.state = match self.field {
                            Field::Preface => State::Stopped,
                            Field::ContentLength => {
                                self.value = CL_LEAD;
                                self.num = 0;
                                State::ClValue
                            }
                            Field::TransferEncoding => {
                                self.value = TE_LEAD;
                                State::TeValue
                            }
                        };
                    }
                }
                State::SkipLine => match memchr(b'\n', &buf[pos..]) {
                    Some(i) => {
                        pos += i + 1;
                        self.state = State::LineStart;
                    }
                    None => pos = buf.len(),
                },
                State::LineStart => match byte {
                    b'\n' => {
                        pos += 1;
                        if let Some(index) = self.end_head() {
                            return Some(index);
                        }
                    }
                    b'\r' => {
                        pos += 1;
                        self.state = State::LineCr;
                    }
                    b'c' | b'C' => self.state = self.begin_name(Field::ContentLength),
                    b't' | b'T' => self.state = self.begin_name(Field::TransferEncoding),
                    // Other fields, and lines httparse rejects (leading blanks: no obs-fold in
                    // requests), decide nothing.
                    _ => self.state = State::SkipLine,
                },
                State::LineCr => {
                    if byte != b'\n' {
                        // httparse: a header line may not start with CR.
                        self.state = State::Stopped;
                        return None;
                    }
                    pos += 1;
                    if let Some(index) = self.end_head() {
                        return Some(index);
                    }
                }
                State::ClValue | State::TeValue => {
                    let rest = &buf[pos..];
                    let newline = memchr(b'\n', rest);
                    let value = &rest[..newline.unwrap_or(rest.len())];
                    if self.state == State::ClValue {
                        self.scan_cl(value);
                    } else {
                        self.scan_te(value);
                    }
                    match newline {
                        Some(i) => {
                            pos += i + 1;
                            self.end_field_line();
                            self.state = State::LineStart;
                        }
                        None => pos = buf.len(),
                    }
                }
                State::Body => {
                    pos += self.skip(buf.len() - pos);
                    if self.num == 0 {
                        self.state = State::Idle;
                    }
                }
                // From here on, chunk framing exactly as hyper's `ChunkedState` decoder reads it.
                State::ChunkStart => {
                    pos += 1;
                    match hex(byte) {
                        Some(digit) => {
                            self.num = digit;
                            self.state = State::ChunkSize;
                        }
                        None => self.state = State::Stopped,
                    }
                }
                State::ChunkSize => {
                    pos += 1;
                    self.state = match hex(byte) {
                        // Overflow is an error for hyper as well.
                        Some(digit) => {
                            match self.num.checked_mul(16).and_then(|n| n.checked_add(digit)) {
                                Some(n) => {
                                    self.num = n;
                                    State::ChunkSize
                                }
                                None => State::Stopped,
                            }
                        }
                        None => after_chunk_size(byte),
                    };
                }
                State::ChunkLws => {
                    // No more digits may follow the blanks; `after_chunk_size` stops on them.
                    pos += 1;
                    self.state = after_chunk_size(byte);
                }
                State::ChunkExt => match memchr2(b'\r', b'\n', &buf[pos..]) {
                    Some(i) => {
                        pos += i + 1;
                        // hyper refuses a bare LF in an extension.
                        self.state = if buf[pos - 1] == b'\r' {
                            State::ChunkSizeLf
                        } else {
                            State::Stopped
                        };
                    }
                    None => pos = buf.len(),
                },
                State::ChunkSizeLf => {
                    let next = if self.num == 0 {
                        State::EndCr
                    } else {
                        State::ChunkData
                    };
                    self.expect(byte, b'\n', next, &mut pos);
                }
                State::ChunkData => {
                    pos += self.skip(buf.len() - pos);
                    if self.num == 0 {
                        self.state = State::ChunkDataCr;
                    }
                }
                State::ChunkDataCr => self.expect(byte, b'\r', State::ChunkDataLf, &mut pos),
                State::ChunkDataLf => self.expect(byte, b'\n', State::ChunkStart, &mut pos),
                State::EndCr => {
                    pos += 1;
                    // Any byte but CR starts a trailer line and is part of it.
                    self.state = if byte == b'\r' {
                        State::EndLf
                    } else {
                        State::Trailer
                    };
                }
                State::Trailer => match memchr(b'\r', &buf[pos..]) {
                    Some(i) => {
                        pos += i + 1;
                        self.state = State::TrailerLf;
                    }
                    None => pos = buf.len(),
                },
                State::TrailerLf => self.expect(byte, b'\n', State::EndCr, &mut pos),
                State::EndLf => self.expect(byte, b'\n', State::Idle, &mut pos),
            }
        }
        None
    }

    fn begin_name(&mut self, field: Field) -> State {
        self.field = field;
        self.matched = 0;
        State::Name
    }

    /// Consumes `byte` and moves to `next` if it is `want`; otherwise stops (hyper rejects).
    fn expect(&mut self, byte: u8, want: u8, next: State, pos: &mut usize) {
        *pos += 1;
        self.state = if byte == want { next } else { State::Stopped };
    }

    /// Skips up to `avail` bytes of a body or chunk; returns how many.
    fn skip(&mut self, avail: usize) -> usize {
        // `num` may not fit a usize on 32-bit targets; then the whole read is body.
        let take = usize::try_from(self.num).map_or(avail, |n| n.min(avail));
        // take <= num, and usize is at most 64 bits on every target tokio supports.
        self.num -= take as u64;
        take
    }

    /// Notes what one field-value byte means for the line (`LINE_*` bits); returns true for
    /// blanks and visible ASCII, which the caller interprets.
    fn value_byte(&mut self, byte: u8) -> bool {
        if self.flags & LINE_CR != 0 {
            // CR is only allowed as part of the line's CRLF.
            self.flags |= LINE_INVALID;
        }
        match byte {
            b'\r' => self.flags |= LINE_CR,
            0x80..=0xFF => self.flags |= LINE_OBS,
            b' ' | b'\t' | 0x21..=0x7E => return true,
            _ => self.flags |= LINE_INVALID,
        }
        false
    }

    /// Follows a `Content-Length` value: blanks, decimal digits, blanks (httparse trims the
    /// blanks; hyper wants nothing but digits, without sign or list).
    fn scan_cl(&mut self, value: &[u8]) {
        for &byte in value {
            if !self.value_byte(byte) {
                // A CR is judged by what follows it (see `value_byte`); anything else
                // here is not a digit.
                if byte != b'\r' {
                    self.value = CL_WRONG;
                }
                continue;
            }
            self.value = match (self.value, byte) {
                (CL_LEAD | CL_DIGITS, b'0'..=b'9') => {
                    // Overflow makes hyper reject the head too.
                    match self
                        .num
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(u64::from(byte - b'0')))
                    {
                        Some(n) => {
                            self.num = n;
                            CL_DIGITS
                        }
                        None => CL_WRONG,
                    }
                }
                (CL_LEAD, b' ' | b'\t') => CL_LEAD,
                (CL_DIGITS | CL_TRAIL, b' ' | b'\t') => CL_TRAIL,
                _ => CL_WRONG,
            };
        }
    }

    /// Follows a `Transfer-Encoding` value, tracking whether the last list element, trimmed,
    /// is `chunked` (hyper's `is_chunked_`).
    fn scan_te(&mut self, value: &[u8]) {
        for &byte in value {
            if !self.value_byte(byte) {
                // CR or invalid/obs bytes: recorded in the line flags, which override.
                continue;
            }
            self.value = match (self.value, byte) {
                (_, b',') => TE_LEAD,
                (TE_LEAD, b' ' | b'\t') => TE_LEAD,
                (TE_FULL | TE_TRAIL, b' ' | b'\t') => TE_TRAIL,
                (matched @ TE_LEAD..TE_FULL, _)
                    if byte.to_ascii_lowercase() == CHUNKED[usize::from(matched)] =>
                {
                    matched + 1
                }
                _ => TE_OTHER,
            };
        }
    }

    /// Records a finished `Content-Length` or `Transfer-Encoding` line in the head flags.
    fn end_field_line(&mut self) {
        let line = self.flags & LINE_FLAGS;
        self.flags &= !LINE_FLAGS;
        if line & LINE_INVALID != 0 {
            return;
        }
        match self.field {
            Field::TransferEncoding => {
                // hyper judges each line afresh; the last one decides.
                let chunked =
                    line & LINE_OBS == 0 && (self.value == TE_FULL || self.value == TE_TRAIL);
                self.flags |= TE_SEEN;
                if chunked {
                    self.flags |= TE_CHUNKED;
                } else {
                    self.flags &= !TE_CHUNKED;
                }
            }
            Field::ContentLength => {
                let valid = self.value == CL_DIGITS || self.value == CL_TRAIL;
                let repeated = self.flags & CL_SEEN != 0;
                if !valid || (repeated && self.num != self.cl) {
                    self.flags |= CL_BAD;
                } else if !repeated {
                    self.cl = self.num;
                }
                self.flags |= CL_SEEN;
            }
            Field::Preface => {}
        }
    }

    /// Ends a head: flags it if it had both fields, else sets up its body.
    fn end_head(&mut self) -> Option<u64> {
        let index = self.heads;
        self.heads = self.heads.saturating_add(1);
        let flags = self.flags;
        if flags & CL_SEEN != 0 && flags & TE_SEEN != 0 {
            // hyper serves this as chunked and closes the connection afterwards (or rejects it
            // outright if TE is not chunked): nothing later on this connection matters.
            self.state = State::Stopped;
            return Some(index);
        }
        self.state = if flags & TE_SEEN != 0 {
            if flags & TE_CHUNKED != 0 {
                self.num = 0;
                State::ChunkStart
            } else {
                // hyper answers 400 to a request whose last coding is not chunked.
                State::Stopped
            }
        } else if flags & CL_SEEN != 0 {
            if flags & CL_BAD != 0 {
                // hyper answers 400 to an invalid or conflicting Content-Length.
                State::Stopped
            } else if self.cl == 0 {
                State::Idle
            } else {
                self.num = self.cl;
                State::Body
            }
        } else {
            // RFC 9112 §6.3: a request without either field has no body.
            State::Idle
        };
        None
    }
}

/// What may follow the digits of a chunk size, per hyper's decoder.
fn after_chunk_size(byte: u8) -> State {
    match byte {
        b' ' | b'\t' => State::ChunkLws,
        b';' => State::ChunkExt,
        b'\r' => State::ChunkSizeLf,
        _ => State::Stopped,
    }
}

fn hex(byte: u8) -> Option<u64> {
    // to_digit(16) accepts exactly 0-9, a-f and A-F, as hyper does.
    char::from(byte).to_digit(16).map(u64::from)
}

/// RFC 9110 §5.6.2 tchar, the characters httparse accepts in a method.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[cfg(test)]
mod tests;
