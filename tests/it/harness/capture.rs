//! Exchange capture for the protocol lint (`tests/lint/run.sh`).
//!
//! When `CANDOR_CAPTURE_DIR` is set, the harness's clients (`send`, `raw`, `connect`) and its
//! hyper upstreams wrap their sockets in a [`Tap`] that records every byte each way. When the
//! connection is dropped the tap writes one file in HTTPolice's `combined` input format: a
//! preamble naming the test and the side, then the client→server stream and the server→client
//! stream, each verbatim. Unset, a tap is a plain pass-through and nothing is written.
//!
//! Files are named `<test crate>--<test>--<side>-<n>.http`: `side` is `client` (the test's
//! client talking to candor, so candor is the server) or `upstream` (candor talking to the
//! test's upstream, so candor is the client), and `n` counts connections per test and side.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes kept per direction; past this a capture is marked truncated and the lint skips it. The
/// suite's largest exchange moves 32 MiB one way.
const MAX_BYTES: usize = 40 * 1024 * 1024;

/// Which connection a tap records, and so which end candor plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The test's client talking to candor: reads are candor's responses.
    Client,
    /// candor talking to a test upstream: reads are candor's requests.
    Upstream,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
        }
    }
}

fn dir() -> Option<&'static PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(std::env::var_os("CANDOR_CAPTURE_DIR")?);
        std::fs::create_dir_all(&dir).expect("CANDOR_CAPTURE_DIR can be created");
        Some(dir)
    })
    .as_ref()
}

/// The running test's name: libtest names each test's thread after it, and the suite's tokio
/// tests run on that thread (current-thread runtime).
pub fn test_name() -> String {
    let thread = std::thread::current();
    match thread.name() {
        Some(name) if name != "main" && !name.starts_with("tokio-") => name.to_owned(),
        _ => "unnamed".to_owned(),
    }
}

/// Where the next capture of `test` on `side` goes.
fn next_path(dir: &std::path::Path, test: &str, side: Side) -> PathBuf {
    static COUNTS: Mutex<Option<HashMap<(String, Side), usize>>> = Mutex::new(None);
    let mut counts = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
    let n = counts
        .get_or_insert_with(HashMap::new)
        .entry((test.to_owned(), side))
        .or_insert(0);
    *n += 1;
    let safe: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let krate = env!("CARGO_CRATE_NAME");
    dir.join(format!("{krate}--{safe}--{}-{n:02}.http", side.name()))
}

struct Recording {
    path: PathBuf,
    test: String,
    side: Side,
    via: &'static str,
    /// Client → server bytes.
    inbound: Vec<u8>,
    /// Server → client bytes.
    outbound: Vec<u8>,
    truncated: bool,
    /// The client saw the server end the connection (EOF, or a read or write error).
    server_ended: bool,
}

impl Recording {
    fn push(&mut self, to_server: bool, bytes: &[u8]) {
        let stream = if to_server {
            &mut self.inbound
        } else {
            &mut self.outbound
        };
        if stream.len() + bytes.len() > MAX_BYTES {
            self.truncated = true;
        } else {
            stream.extend_from_slice(bytes);
        }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        if self.inbound.is_empty() && self.outbound.is_empty() {
            return;
        }
        let mut file = format!(
            "candor capture for the protocol lint (tests/lint/run.sh)\r\n\
             test: {}\r\nside: {}\r\nvia: {}\r\ntruncated: {}\r\n\
             server-ended: {}\r\n",
            test_path(&self.test),
            self.side.name(),
            self.via,
            yes_no(self.truncated),
            yes_no(self.server_ended),
        )
        .into_bytes();
        file.extend_from_slice(b"======== BEGIN INBOUND STREAM ========\r\n");
        file.extend_from_slice(&self.inbound);
        file.extend_from_slice(b"======== BEGIN OUTBOUND STREAM ========\r\n");
        file.extend_from_slice(&self.outbound);
        // A capture that cannot be written must not fail the test it records.
        if let Err(e) = std::fs::write(&self.path, file) {
            eprintln!("capture: cannot write {}: {e}", self.path.display());
        }
    }
}

/// A test as the lint's silence list names it, `file::test`: in the `it` crate a test's name
/// already starts with its module, which is named after the file it came from; elsewhere the
/// crate is the file.
fn test_path(test: &str) -> String {
    if test.contains("::") {
        test.to_owned()
    } else {
        format!("{}::{test}", env!("CARGO_CRATE_NAME"))
    }
}

fn yes_no(flag: bool) -> &'static str {
    if flag {
        "yes"
    } else {
        "no"
    }
}

/// A stream that records what passes through it when capture is on (see the module docs).
pub struct Tap<S> {
    inner: S,
    side: Side,
    recording: Option<Recording>,
}

impl<S> Tap<S> {
    /// Wraps `inner`, the `side` end of a connection, made by the harness helper `via` for the
    /// test `test`.
    pub fn new(inner: S, side: Side, via: &'static str, test: &str) -> Tap<S> {
        let recording = dir().map(|dir| Recording {
            path: next_path(dir, test, side),
            test: test.to_owned(),
            side,
            via,
            inbound: Vec::new(),
            outbound: Vec::new(),
            truncated: false,
            server_ended: false,
        });
        Tap {
            inner,
            side,
            recording,
        }
    }

    /// The wrapped stream.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Notes that a client's read hit EOF or that its I/O failed: the server ended the
    /// connection, so a response cut short was cut by the server.
    fn ended(&mut self) {
        if let (Side::Client, Some(recording)) = (self.side, &mut self.recording) {
            recording.server_ended = true;
        }
    }

    fn record(&mut self, written: bool, bytes: &[u8]) {
        // A client's writes go to the server; a server's writes go to the client.
        let to_server = written == (self.side == Side::Client);
        if let Some(recording) = &mut self.recording {
            recording.push(to_server, bytes);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tap<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) => {
                let read = buf.filled().len() - before;
                if read == 0 && buf.remaining() > 0 {
                    this.ended();
                }
                this.record(false, &buf.filled()[before..]);
            }
            Poll::Ready(Err(_)) => this.ended(),
            Poll::Pending => {}
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tap<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        match &polled {
            Poll::Ready(Ok(n)) => this.record(true, &buf[..*n]),
            Poll::Ready(Err(_)) => this.ended(),
            Poll::Pending => {}
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Err(_)) = &polled {
            this.ended();
        }
        if let Poll::Ready(Ok(n)) = polled {
            let mut left = n;
            for buf in bufs {
                let take = left.min(buf.len());
                this.record(true, &buf[..take]);
                left -= take;
                if left == 0 {
                    break;
                }
            }
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
