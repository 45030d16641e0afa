//! The raw client: writes exact bytes, reads exact bytes, and says whether the server closed the
//! connection. Responses are split with a small strict parser (httparse heads; Content-Length,
//! chunked or close-delimited bodies), so a test can check framing byte by byte.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One response as it came off the wire.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Names lowercased, values as text.
    pub headers: Vec<(String, String)>,
    /// The body as framed (chunked bodies decoded).
    pub body: Vec<u8>,
    /// The framing was satisfied: the declared length arrived, the last chunk arrived, or (for
    /// a close-delimited body) the connection ended.
    pub complete: bool,
    /// The body was chunked.
    pub chunked: bool,
    /// The head as text, for messages.
    pub head: String,
}

impl Response {
    /// The first value of `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn has(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body_text()))
    }

    /// Interim (1xx other than 101) responses precede the final one.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }
}

/// Parses the status code of a status line at the start of `wire`.
pub fn status_of(wire: &[u8]) -> Option<u16> {
    let line = wire.split(|b| *b == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.split(' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.trim().parse().ok()
}

/// Splits pipelined responses. `heads[i]` says whether the i-th *final* response answers a HEAD
/// request (no body whatever its headers say); missing entries mean "not HEAD". `closed` says
/// the connection ended after `wire`, which completes a close-delimited body. Returns the
/// responses (interim ones included; the last one may be incomplete) and the bytes left over
/// that do not start a complete head.
pub fn parse_responses(wire: &[u8], heads: &[bool], closed: bool) -> (Vec<Response>, Vec<u8>) {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut finals = 0;
    while pos < wire.len() {
        let head = heads.get(finals).copied().unwrap_or(false);
        match parse_one(&wire[pos..], head, closed) {
            Parsed::Done(response, used) => {
                pos += used;
                let switched = response.status == 101;
                if !response.is_interim() {
                    finals += 1;
                }
                out.push(response);
                if switched {
                    // Whatever follows is tunnel data, not HTTP.
                    return (out, wire[pos..].to_vec());
                }
            }
            Parsed::Partial(response, _) => {
                out.push(response);
                return (out, Vec::new());
            }
            Parsed::NoHead => return (out, wire[pos..].to_vec()),
        }
    }
    (out, Vec::new())
}

/// One response parsed off the front of a buffer.
enum Parsed {
    /// A complete response and the bytes it used.
    Done(Response, usize),
    /// A head whose body has not fully arrived (yet), and how many bytes of the buffer must be
    /// there before it can complete (so callers need not re-parse a long body on every read).
    Partial(Response, usize),
    /// Not even a complete head.
    NoHead,
}

fn parse_one(wire: &[u8], head_request: bool, closed: bool) -> Parsed {
    let mut headers = vec![httparse::EMPTY_HEADER; 256];
    let mut parsed = httparse::Response::new(&mut headers);
    let n = match parsed.parse(wire) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return Parsed::NoHead,
    };
    let status = parsed.code.unwrap_or(0);
    let version = parsed.version.unwrap_or(1);
    let fields: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let mut response = Response {
        status,
        version,
        headers: fields,
        body: Vec::new(),
        complete: true,
        chunked: false,
        head: String::from_utf8_lossy(&wire[..n]).into_owned(),
    };
    let rest = &wire[n..];
    let interim = response.is_interim();
    if interim || head_request || status == 204 || status == 304 || status == 101 {
        return Parsed::Done(response, n);
    }
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().ends_with("chunked"));
    if chunked {
        response.chunked = true;
        let (body, used, complete, need) = dechunk(rest);
        response.body = body;
        response.complete = complete;
        return if complete {
            Parsed::Done(response, n + used)
        } else {
            Parsed::Partial(response, n + need)
        };
    }
    if let Some(length) = response
        .header("content-length")
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        let take = length.min(rest.len());
        response.body = rest[..take].to_vec();
        response.complete = take == length;
        return if response.complete {
            Parsed::Done(response, n + take)
        } else {
            Parsed::Partial(response, n + length)
        };
    }
    response.body = rest.to_vec();
    response.complete = closed;
    if closed {
        Parsed::Done(response, wire.len())
    } else {
        Parsed::Partial(response, usize::MAX)
    }
}

/// Decodes a chunked body: (data, bytes used, whether the last chunk and trailers arrived, and
/// when incomplete, how many bytes must be there before more can be decoded).
fn dechunk(wire: &[u8]) -> (Vec<u8>, usize, bool, usize) {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let (start, size) = match httparse::parse_chunk_size(&wire[pos..]) {
            Ok(httparse::Status::Complete(found)) => found,
            _ => return (body, wire.len(), false, wire.len() + 1),
        };
        pos += start;
        let size = size as usize;
        if size == 0 {
            // Trailers up to the empty line.
            loop {
                let Some(end) = wire[pos..].windows(2).position(|w| w == b"\r\n") else {
                    return (body, wire.len(), false, wire.len() + 1);
                };
                pos += end + 2;
                if end == 0 {
                    return (body, pos, true, pos);
                }
            }
        }
        if wire.len() < pos + size + 2 {
            body.extend_from_slice(&wire[pos..wire.len().min(pos + size)]);
            return (body, wire.len(), false, pos + size + 2);
        }
        body.extend_from_slice(&wire[pos..pos + size]);
        pos += size + 2;
    }
}

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
