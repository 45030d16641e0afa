//! The raw client: writes exact bytes, reads exact bytes, and says whether the server closed the
//! connection. Responses are split by the harness's HTTP/1 reader ([`super::http1`]: httparse
//! heads; Content-Length, chunked or close-delimited bodies), so a test can check framing byte by
//! byte.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::http1::{parse_one, Parsed};
#[allow(unused_imports)] // not every binary that includes the harness uses them all
pub use super::http1::{parse_responses, status_of, Response};

/// Writes `bytes` on a fresh connection and reads until the peer closes or `deadline` passes.
/// Returns every byte read and whether the peer closed. Write errors are ignored: a server may
/// rightly close before the client has sent everything.
pub async fn send_raw(addr: SocketAddr, bytes: &[u8], deadline: Duration) -> (Vec<u8>, bool) {
    let mut conn = RawConn::connect(addr).await;
    conn.send(bytes).await;
    let closed = conn.read_to_close(deadline).await;
    (conn.wire.clone(), closed)
}

/// A client connection that keeps what it read, for keep-alive and pipelining tests.
pub struct RawConn {
    pub stream: TcpStream,
    /// Every byte read so far.
    pub wire: Vec<u8>,
    /// The peer closed (or reset) the connection.
    pub closed: bool,
    /// Which final responses answer HEAD requests (see [`parse_responses`]).
    pub heads: Vec<bool>,
    /// Complete responses parsed so far, and where the unparsed bytes start.
    done: Vec<Response>,
    offset: usize,
    done_finals: usize,
    /// Buffer length needed before the pending response can make progress.
    need: usize,
    /// Final responses dropped from `done` by [`RawConn::forget`].
    forgotten: usize,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect(addr).await.unwrap();
        let _ = stream.set_nodelay(true);
        RawConn {
            stream,
            wire: Vec::new(),
            closed: false,
            heads: Vec::new(),
            done: Vec::new(),
            offset: 0,
            done_finals: 0,
            need: 0,
            forgotten: 0,
        }
    }

    /// Parses whatever complete responses the new bytes finish.
    fn advance(&mut self) {
        while self.offset < self.wire.len() {
            if self.wire.len() < self.need && !self.closed {
                return;
            }
            let head = self.heads.get(self.done_finals).copied().unwrap_or(false);
            match parse_one(&self.wire[self.offset..], head, self.closed) {
                Parsed::Done(response, used) => {
                    self.offset += used;
                    if !response.is_interim() {
                        self.done_finals += 1;
                    }
                    let switched = response.status == 101;
                    self.done.push(response);
                    if switched {
                        self.offset = usize::MAX;
                        return;
                    }
                }
                Parsed::Partial(_, need) => {
                    self.need = self.offset.saturating_add(need);
                    return;
                }
                Parsed::NoHead => {
                    self.need = self.wire.len() + 1;
                    return;
                }
            }
        }
    }

    /// Writes `bytes`; false if the peer had already gone.
    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok()
    }

    /// Reads once (up to `deadline`); false at end of stream or on timeout.
    async fn read_some(&mut self, deadline: tokio::time::Instant) -> bool {
        if self.closed {
            return false;
        }
        let mut buf = vec![0u8; 64 * 1024];
        match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                self.closed = true;
                false
            }
            Ok(Ok(n)) => {
                self.wire.extend_from_slice(&buf[..n]);
                true
            }
            Err(_) => false,
        }
    }

    /// The responses read so far (the last one may be incomplete).
    pub fn responses(&self) -> Vec<Response> {
        let mut all = self.done.clone();
        if self.offset < self.wire.len() {
            let heads = self.heads.get(self.done_finals..).unwrap_or(&[]);
            all.extend(parse_responses(&self.wire[self.offset..], heads, self.closed).0);
        }
        all
    }

    /// Final (non-interim) responses read so far.
    pub fn finals(&self) -> Vec<Response> {
        self.responses()
            .into_iter()
            .filter(|r| !r.is_interim())
            .collect()
    }

    /// Reads until `n` complete final responses arrived, the peer closed, or `deadline` passed.
    pub async fn read_responses(&mut self, n: usize, deadline: Duration) -> Vec<Response> {
        self.wait_finals(n, deadline).await;
        self.finals()
    }

    /// Reads until `n` complete final responses arrived (true), or the peer closed or `deadline`
    /// passed (false).
    pub async fn wait_finals(&mut self, n: usize, deadline: Duration) -> bool {
        let end = tokio::time::Instant::now() + deadline;
        loop {
            self.advance();
            if self.done_finals >= n {
                return true;
            }
            if !self.read_some(end).await {
                self.advance();
                return self.done_finals >= n;
            }
        }
    }

    /// How many complete final responses have arrived.
    pub fn final_count(&self) -> usize {
        self.done_finals
    }

    /// The `i`-th complete final response, if it arrived (and was not forgotten).
    pub fn final_at(&self, i: usize) -> Option<Response> {
        self.done
            .iter()
            .filter(|r| !r.is_interim())
            .nth(i.checked_sub(self.forgotten)?)
            .cloned()
    }

    /// Drops the complete responses kept so far (a long soak would otherwise keep every body),
    /// and the bytes they came in. Counts and indices stay as they were.
    pub fn forget(&mut self) {
        if self.offset == usize::MAX {
            return;
        }
        self.forgotten = self.done_finals;
        self.done.clear();
        self.wire.drain(..self.offset);
        self.need = self.need.saturating_sub(self.offset);
        self.offset = 0;
    }

    /// Reads the one next response (panics if none arrives complete in time).
    pub async fn response(&mut self, deadline: Duration) -> Response {
        let before = self.final_count();
        self.wait_finals(before + 1, deadline).await;
        match self.final_at(before) {
            Some(r) => r,
            None => panic!(
                "no complete response within {deadline:?} (closed: {}): {:?}",
                self.closed,
                String::from_utf8_lossy(&self.wire[..self.wire.len().min(2000)])
            ),
        }
    }

    /// Reads until the peer closes; true if it did within `deadline`.
    pub async fn read_to_close(&mut self, deadline: Duration) -> bool {
        let end = tokio::time::Instant::now() + deadline;
        while self.read_some(end).await {}
        self.closed
    }

    /// The liveness check on this connection: it must still be open and serve a normal request.
    pub async fn assert_live(&mut self) {
        assert!(!self.closed, "the connection was closed");
        let before = self.final_count();
        assert!(
            self.send(b"GET /ok HTTP/1.1\r\nHost: live.example\r\n\r\n")
                .await,
            "the connection is gone"
        );
        self.wait_finals(before + 1, super::WAIT).await;
        let r = self.final_at(before).unwrap_or_else(|| {
            panic!(
                "no liveness response on the same connection: {:?}",
                String::from_utf8_lossy(&self.wire[..self.wire.len().min(2000)])
            )
        });
        assert_eq!(r.status, 200, "liveness on the same connection: {}", r.head);
        assert_eq!(r.body_text(), "ok /ok", "liveness body");
    }
}

/// The liveness check every catalogue row ends with: a fresh connection gets a normal response
/// from the evil origin's `/ok`.
pub async fn assert_live(candor: SocketAddr) {
    let mut conn = RawConn::connect(candor).await;
    conn.send(b"GET /ok HTTP/1.1\r\nHost: live.example\r\n\r\n")
        .await;
    let r = conn.response(super::WAIT).await;
    assert_eq!(r.status, 200, "liveness on a fresh connection: {}", r.head);
    assert_eq!(r.body_text(), "ok /ok", "liveness body");
}

/// A GET on a fresh connection; returns the response (panics if none arrives complete).
pub async fn get(candor: SocketAddr, target: &str) -> Response {
    let mut conn = RawConn::connect(candor).await;
    conn.send(format!("GET {target} HTTP/1.1\r\nHost: api.example\r\n\r\n").as_bytes())
        .await;
    conn.response(super::WAIT).await
}
