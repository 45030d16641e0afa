//! The evil origin: a scriptable upstream on 127.0.0.1:0 that parses each request strictly (the
//! harness's HTTP/1 reader, [`super::http1`]: httparse with its defaults, no obs-fold, no blank
//! before a colon, no bare CR; framing judged as below) and then behaves according to the request
//! path, well or badly.
//!
//! It records every connection it accepts, every byte it receives on each, every request it
//! parsed, whether candor closed the connection, and anything it received that a strict parser
//! refuses or finds ambiguous (a "framing violation": the oracle that candor never forwards an
//! ambiguous message). Tests assert on those records: "nothing reached the upstream", "no
//! connection was reused", "the upstream received exactly these bytes".
//!
//! | path | behaviour |
//! | --- | --- |
//! | `/ok` (and anything unknown) | 200 `ok <target>`, keep-alive |
//! | `/echo` | 200 echoing the request body |
//! | `/hang` | reads the request, never answers |
//! | `/stall-body?len=&send=&ct=` | head with `Content-Length: len`, `send` body bytes, then silence |
//! | `/rst-early` | reads the request, then resets (SO_LINGER 0) |
//! | `/short-cl?announce=&send=&ct=&rst=` | announces `announce` bytes, sends `send`, then FIN (or RST) |
//! | `/cut-chunked?send=&ct=&rst=` | chunked, `send` bytes in 1000-byte chunks, no last chunk, then FIN (or RST) |
//! | `/close-delimited?n=&ct=&rst=` | no length, `n` bytes, then FIN (or RST) |
//! | `/extra/<cl,chunked,204,304,head>` | a correct response followed, in the same write, by a second one |
//! | `/lie/<case>` | a response with broken or ambiguous framing ([`lie`]) |
//! | `/1xx/hints`, `/1xx/flood?n=`, `/1xx/101` | 100 + 103 + 200; `n` × 102 then silence; an unsolicited 101 |
//! | `/ka?idle_ms=` | 200, then closes the connection if no request follows within `idle_ms` |
//! | `/drip?ms=&n=` | a 200 with an `n`-byte body, written one byte every `ms` milliseconds |
//! | `/json/<case>` | a JSON (or JSON-labelled) body from [`json_case`] |
//! | `/html500` | an HTML 500 page leaking a traceback, paths, SQL, addresses and `Server` |
//! | `/b2?enc=` | a 20 KB HTML 500 with validators and digests (gzip-encoded with `enc=gzip`) |
//! | `/hop` | a 200 carrying hop-by-hop headers |
//! | `/ws-echo` | 101 with bytes in the same write, then an echo of whatever arrives |
//! | `/upgrade-refused?status=` | a plain `status` response to an upgrade request |
//! | `/size?n=&chunk=&seed=&kind=&ct=` | a deterministic `n`-byte body ([`size_body`]), CL or chunked |
//! | `/status/<code>?ct=&body=` | `code` with that body (none for 1xx/204/304) |
//! | `/random?seed=&n=` | the L8 fault mix ([`random_fault`]), else like `/size` |

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::http1::{self, Dechunker, Head, Step};

/// Largest request head the origin accepts (candor forwards heads up to hyper's ~400 KB cap).
const MAX_HEAD: usize = 2 << 20;

/// One request as the origin parsed it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Which accepted connection (0-based, in accept order) it arrived on.
    pub conn: usize,
    pub method: String,
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Names as received (case kept), values as bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// The body came chunked.
    pub chunked: bool,
}

impl Seen {
    /// The first value of `name` (case-insensitive), as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_all(name).into_iter().next()
    }

    /// Every value of `name`, in order.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// Whether a header named `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// What the origin knows about one accepted connection.
#[derive(Debug, Default)]
pub struct ConnRecord {
    received: Mutex<Vec<u8>>,
    /// Bytes the origin wrote to candor on this connection.
    written: AtomicUsize,
    /// candor closed (or reset) the connection.
    peer_closed: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    conns: Mutex<Vec<Arc<ConnRecord>>>,
    requests: Mutex<Vec<Seen>>,
    /// Things a strict parser refuses or finds ambiguous.
    violations: Mutex<Vec<String>>,
    /// Requests whose connection ended before their body was complete (an aborted forward).
    incomplete: Mutex<Vec<String>>,
    /// Raw responses registered by tests, by path.
    canned: Mutex<HashMap<String, Vec<u8>>>,
}

/// A running evil origin.
pub struct Origin {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl Origin {
    /// Starts an origin on 127.0.0.1:0.
    pub async fn start() -> Origin {
        Origin::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts an origin on `addr` (to bring a dead upstream address back to life).
    pub async fn start_on(addr: SocketAddr) -> Origin {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let record = Arc::new(ConnRecord::default());
                let id = {
                    let mut conns = shared.conns.lock().unwrap();
                    conns.push(record.clone());
                    conns.len() - 1
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let mut conn = Conn {
                        id,
                        head_only: false,
                        head_written: false,
                        stream,
                        buf: Vec::new(),
                        record,
                        state,
                    };
                    conn.serve().await;
                });
            }
        });
        Origin { addr, state }
    }

    /// `http://127.0.0.1:PORT`, for `upstream.url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.conns.lock().unwrap().len()
    }

    /// Registers a raw response, written verbatim whenever `path` is requested (before the
    /// built-in behaviours are consulted).
    pub fn canned(&self, path: &str, raw: Vec<u8>) {
        self.state
            .canned
            .lock()
            .unwrap()
            .insert(path.to_owned(), raw);
    }

    /// Requests parsed so far, across connections, in arrival order.
    pub fn requests(&self) -> Vec<Seen> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Every byte received on connection `conn`.
    pub fn received(&self, conn: usize) -> Vec<u8> {
        self.state.conns.lock().unwrap()[conn]
            .received
            .lock()
            .unwrap()
            .clone()
    }

    /// Every byte received, on every connection, in connection order.
    pub fn received_all(&self) -> Vec<u8> {
        let conns = self.state.conns.lock().unwrap();
        conns
            .iter()
            .flat_map(|c| c.received.lock().unwrap().clone())
            .collect()
    }

    /// Bytes written to candor on connection `conn` so far.
    pub fn written(&self, conn: usize) -> usize {
        self.state.conns.lock().unwrap()[conn]
            .written
            .load(Ordering::SeqCst)
    }

    /// Whether candor has closed connection `conn`.
    pub fn peer_closed(&self, conn: usize) -> bool {
        self.state.conns.lock().unwrap()[conn]
            .peer_closed
            .load(Ordering::SeqCst)
    }

    /// Waits (polling, with a deadline) until candor has closed connection `conn`.
    pub async fn wait_peer_closed(&self, conn: usize, deadline: Duration) -> bool {
        super::eventually(deadline, || self.peer_closed(conn)).await
    }

    /// Waits until at least `n` requests have been parsed.
    pub async fn wait_requests(&self, n: usize, deadline: Duration) -> bool {
        super::eventually(deadline, || self.requests().len() >= n).await
    }

    /// Messages a strict parser refused or found ambiguous; must stay empty.
    pub fn violations(&self) -> Vec<String> {
        self.state.violations.lock().unwrap().clone()
    }

    /// Requests that arrived incomplete because the connection ended inside their body: what an
    /// aborted forward looks like. They are never acted on.
    pub fn incomplete(&self) -> Vec<String> {
        self.state.incomplete.lock().unwrap().clone()
    }

    /// Asserts the origin never received anything a strict parser refuses or finds ambiguous.
    pub fn assert_clean(&self) {
        let v = self.violations();
        assert!(v.is_empty(), "the origin received ill-framed input: {v:?}");
    }
}

/// How reading the next request ended.
enum Next {
    Request(Seen),
    /// The peer closed (or reset) the connection.
    Closed,
    /// No byte of a new request arrived within the idle limit.
    Idle,
    /// Something a strict parser refuses.
    Bad,
}

/// What the connection loop does after a behaviour ran.
enum After {
    /// Serve the next request; `Some` limits how long the origin waits for it.
    Continue(Option<Duration>),
    /// Answer nothing more; keep reading (and recording) until candor closes.
    Watch,
    /// The connection is gone (reset or closed by the origin).
    Gone,
}

struct Conn {
    id: usize,
    /// The current request is HEAD: write the response head only.
    head_only: bool,
    /// The head of the current response has been written (with `head_only`).
    head_written: bool,
    stream: TcpStream,
    /// Received but not yet consumed.
    buf: Vec<u8>,
    record: Arc<ConnRecord>,
    state: Arc<State>,
}

impl Conn {
    async fn serve(&mut self) {
        let mut idle = None;
        loop {
            let request = match self.read_request(idle).await {
                Next::Request(request) => request,
                Next::Closed => return self.mark_closed(),
                Next::Idle => {
                    // A keep-alive timeout: the origin closes politely (FIN).
                    let _ = self.stream.shutdown().await;
                    return self.watch().await;
                }
                Next::Bad => return self.watch().await,
            };
            self.state.requests.lock().unwrap().push(request.clone());
            match self.act(&request).await {
                After::Continue(next_idle) => idle = next_idle,
                After::Watch => return self.watch().await,
                After::Gone => return,
            }
        }
    }

    fn mark_closed(&self) {
        self.record.peer_closed.store(true, Ordering::SeqCst);
    }

    fn incomplete(&self, what: String) {
        self.state
            .incomplete
            .lock()
            .unwrap()
            .push(format!("conn {}: {what}", self.id));
    }

    fn violation(&self, what: String) {
        self.state
            .violations
            .lock()
            .unwrap()
            .push(format!("conn {}: {what}", self.id));
    }

    /// Reads more bytes into `buf`, recording them; `Ok(0)` at end of stream.
    async fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        self.record
            .received
            .lock()
            .unwrap()
            .extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Keeps reading and recording until candor closes the connection.
    async fn watch(&mut self) {
        loop {
            match self.fill().await {
                Ok(0) | Err(_) => return self.mark_closed(),
                Ok(_) => {}
            }
        }
    }

    async fn read_request(&mut self, idle: Option<Duration>) -> Next {
        // The head.
        let (seen, consumed) = loop {
            match http1::request_head(&self.buf) {
                Head::Complete(head, n) => {
                    let seen = Seen {
                        conn: self.id,
                        method: head.method,
                        target: head.target,
                        version: head.version,
                        headers: head.fields,
                        body: Vec::new(),
                        chunked: false,
                    };
                    break (seen, n);
                }
                Head::Partial if self.buf.len() > MAX_HEAD => {
                    self.violation("request head over 2 MiB".into());
                    return Next::Bad;
                }
                Head::Partial => {}
                Head::Invalid(err) => {
                    self.violation(format!(
                        "strict parser refused a request head ({err}): {:?}",
                        String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)])
                    ));
                    return Next::Bad;
                }
            }
            let read = match idle {
                Some(limit) if self.buf.is_empty() => {
                    match tokio::time::timeout(limit, self.fill()).await {
                        Ok(read) => read,
                        Err(_) => return Next::Idle,
                    }
                }
                _ => self.fill().await,
            };
            match read {
                Ok(0) | Err(_) => {
                    if !self.buf.is_empty() {
                        self.violation(format!(
                            "connection ended inside a request head ({} bytes)",
                            self.buf.len()
                        ));
                    }
                    return Next::Closed;
                }
                Ok(_) => {}
            }
        };
        self.buf.drain(..consumed);
        let mut seen = seen;

        // The framing, judged strictly: one clean Content-Length, or Transfer-Encoding exactly
        // `chunked`, never both.
        let lengths = seen.header_all("content-length");
        let codings = seen.header_all("transfer-encoding");
        if !lengths.is_empty() && !codings.is_empty() {
            self.violation(format!(
                "both Content-Length and Transfer-Encoding: {seen:?}"
            ));
            return Next::Bad;
        }
        if lengths.len() > 1 {
            self.violation(format!("{} Content-Length fields", lengths.len()));
            return Next::Bad;
        }
        if codings.len() > 1 || codings.first().is_some_and(|c| c != "chunked") {
            self.violation(format!("Transfer-Encoding {codings:?}"));
            return Next::Bad;
        }
        if let Some(length) = lengths.first() {
            if length.is_empty() || !length.bytes().all(|b| b.is_ascii_digit()) {
                self.violation(format!("Content-Length {length:?}"));
                return Next::Bad;
            }
            let Ok(length) = length.parse::<usize>() else {
                self.violation(format!("Content-Length {length:?}"));
                return Next::Bad;
            };
            while self.buf.len() < length {
                match self.fill().await {
                    Ok(0) | Err(_) => {
                        // An incomplete request: recorded as such, never acted on.
                        self.incomplete(format!(
                            "connection ended inside a {length}-byte body after {} bytes: {} {}",
                            self.buf.len(),
                            seen.method,
                            seen.target
                        ));
                        self.mark_closed();
                        return Next::Closed;
                    }
                    Ok(_) => {}
                }
            }
            seen.body = self.buf.drain(..length).collect();
        } else if !codings.is_empty() {
            seen.chunked = true;
            match self.read_chunked().await {
                Ok(body) => seen.body = body,
                Err(what) => {
                    let what = format!("{what}: {} {}", seen.method, seen.target);
                    if what.starts_with("connection ended") {
                        self.incomplete(what);
                        self.mark_closed();
                        return Next::Closed;
                    }
                    self.violation(what);
                    return Next::Bad;
                }
            }
        }
        Next::Request(seen)
    }

    /// Reads a chunked body through the harness's decoder; on success the body's bytes (trailers
    /// included) are consumed from `buf`.
    async fn read_chunked(&mut self) -> Result<Vec<u8>, String> {
        let mut decoder = Dechunker::new();
        loop {
            match decoder.advance(&self.buf) {
                Step::Done(used) => {
                    self.buf.drain(..used);
                    return Ok(decoder.body);
                }
                Step::More(need) => {
                    while self.buf.len() < need {
                        self.more().await?;
                    }
                }
                Step::Invalid(what) => return Err(what),
            }
        }
    }

    async fn more(&mut self) -> Result<(), String> {
        match self.fill().await {
            Ok(0) | Err(_) => Err("connection ended inside a chunked body".into()),
            Ok(_) => Ok(()),
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> bool {
        let mut bytes = bytes;
        if self.head_only {
            // A response to HEAD: the head, and not a byte of body (RFC 9110 §9.3.2).
            if self.head_written {
                return true;
            }
            if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
                self.head_written = true;
                bytes = &bytes[..end + 4];
            }
        }
        match self.stream.write_all(bytes).await {
            Ok(()) => {
                self.record.written.fetch_add(bytes.len(), Ordering::SeqCst);
                true
            }
            Err(_) => {
                // candor closed or reset the connection.
                self.mark_closed();
                false
            }
        }
    }

    /// Writes `bytes` in pieces, counting as it goes (so a test can see backpressure).
    async fn write_pieces(&mut self, bytes: &[u8], piece: usize) -> bool {
        for part in bytes.chunks(piece.max(1)) {
            if !self.write(part).await {
                return false;
            }
        }
        true
    }

    fn reset(&self) {
        let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
    }

    /// Ends the connection: RST when `rst`, else FIN and watch for candor's close.
    async fn end(&mut self, rst: bool) -> After {
        if rst {
            self.reset();
            // Dropping the stream (when `serve` returns) sends the RST.
            return After::Gone;
        }
        let _ = self.stream.shutdown().await;
        After::Watch
    }

    async fn act(&mut self, req: &Seen) -> After {
        let path = req.path().to_owned();
        // `/extra/head` sends a body to HEAD on purpose.
        self.head_only = req.method == "HEAD" && !path.starts_with("/extra");
        self.head_written = false;
        let canned = self.state.canned.lock().unwrap().get(&path).cloned();
        if let Some(raw) = canned {
            self.write(&raw).await;
            return After::Continue(None);
        }
        let q = query(&req.target);
        let num = |k: &str, default: usize| -> usize {
            q.get(k).and_then(|v| v.parse().ok()).unwrap_or(default)
        };
        let flag = |k: &str| q.get(k).is_some_and(|v| v == "1");
        let ct = q
            .get("ct")
            .cloned()
            .unwrap_or_else(|| "application/octet-stream".into());
        let mut segments = path.trim_start_matches('/').splitn(2, '/');
        let first = segments.next().unwrap_or("").to_owned();
        let rest = segments.next().unwrap_or("").to_owned();
        match first.as_str() {
            "echo" => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                    req.body.len()
                );
                let mut out = head.into_bytes();
                out.extend_from_slice(&req.body);
                self.write(&out).await;
                After::Continue(None)
            }
            "hang" => After::Watch,
            "stall-body" => {
                let (len, send) = (num("len", 1000), num("send", 10));
                let mut out = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {len}\r\n\r\n"
                )
                .into_bytes();
                out.extend(std::iter::repeat_n(b'x', send));
                self.write(&out).await;
                After::Watch
            }
            "rst-early" => {
                self.reset();
                After::Gone
            }
            "short-cl" => {
                let (announce, send) = (num("announce", 100_000), num("send", 40_010));
                let mut out = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {announce}\r\n\r\n"
                )
                .into_bytes();
                out.extend(std::iter::repeat_n(b'x', send));
                self.write(&out).await;
                self.end(flag("rst")).await
            }
            "cut-chunked" => {
                let send = num("send", 40_010);
                let mut out = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nTransfer-Encoding: chunked\r\n\r\n"
                )
                .into_bytes();
                let data = vec![b'x'; send];
                for piece in data.chunks(1000) {
                    out.extend(format!("{:x}\r\n", piece.len()).as_bytes());
                    out.extend(piece);
                    out.extend(b"\r\n");
                }
                self.write(&out).await;
                self.end(flag("rst")).await
            }
            "close-delimited" => {
                let n = num("n", 10_000);
                let mut out =
                    format!("HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nConnection: close\r\n\r\n")
                        .into_bytes();
                out.extend(super::pattern(7, n));
                self.write(&out).await;
                self.end(flag("rst")).await
            }
            "extra" => {
                let smuggled: &[u8] =
                    b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nX-Smuggled: 1\r\n\r\nsmuggled";
                let mut out: Vec<u8> = match rest.as_str() {
                    "cl" => b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
                    "chunked" => b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec(),
                    "204" => b"HTTP/1.1 204 No Content\r\n\r\nhello".to_vec(),
                    "304" => b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\nhello".to_vec(),
                    // To HEAD: a body that must not be there.
                    _ => b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
                };
                out.extend_from_slice(smuggled);
                self.write(&out).await;
                After::Continue(None)
            }
            "lie" => {
                let out = lie(&rest);
                self.write(&out).await;
                After::Watch
            }
            "1xx" => match rest.as_str() {
                "hints" => {
                    self.write(
                        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
                          HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nfinal",
                    )
                    .await;
                    After::Continue(None)
                }
                "flood" => {
                    let n = num("n", 100_000);
                    let one: &[u8] = b"HTTP/1.1 102 Processing\r\n\r\n";
                    let batch: Vec<u8> = one.repeat(1000);
                    let mut sent = 0;
                    while sent < n {
                        let take = (n - sent).min(1000);
                        if !self.write(&batch[..take * one.len()]).await {
                            return After::Gone;
                        }
                        sent += take;
                    }
                    After::Watch
                }
                _ => {
                    self.write(
                        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                    )
                    .await;
                    After::Watch
                }
            },
            "ka" => {
                let idle = Duration::from_millis(num("idle_ms", 1000) as u64);
                let body = format!("ka {} {}", self.id, req.method);
                let out = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                self.write(out.as_bytes()).await;
                After::Continue(Some(idle))
            }
            "drip" => {
                let (ms, n) = (num("ms", 10) as u64, num("n", 20));
                let mut out = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {n}\r\n\r\n"
                )
                .into_bytes();
                out.extend(super::pattern(3, n));
                for byte in out {
                    // The drip is the behaviour under test, not synchronisation.
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    if !self.write(&[byte]).await {
                        return After::Gone;
                    }
                }
                After::Continue(None)
            }
            "json" => {
                let (ct, body) = json_case(&rest);
                let mut out = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                out.extend_from_slice(&body);
                self.write(&out).await;
                After::Continue(None)
            }
            "html500" => {
                let body = LEAKY_PAGE;
                let out = format!(
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/html; charset=utf-8\r\n\
                     Server: Apache/2.2.3 (CentOS)\r\nX-Powered-By: PHP/5.1.6\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                self.write(out.as_bytes()).await;
                After::Continue(None)
            }
            "b2" => {
                let mut page = String::from("<html><head><title>Internal Server Error</title></head><body><h1>Internal Server Error</h1>");
                while page.len() < 20_000 {
                    page.push_str("<p>Something went wrong on our side. Please try again.</p>");
                }
                page.push_str("</body></html>");
                let (body, encoding) = if q.get("enc").is_some_and(|e| e == "gzip") {
                    let mut e =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    e.write_all(page.as_bytes()).unwrap();
                    (e.finish().unwrap(), "Content-Encoding: gzip\r\n")
                } else {
                    (page.into_bytes(), "")
                };
                let mut out = format!(
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/html\r\n{encoding}\
                     ETag: \"abc123\"\r\nLast-Modified: Tue, 01 Jan 2030 00:00:00 GMT\r\n\
                     Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n\
                     Digest: sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=\r\n\
                     Content-Digest: sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:\r\n\
                     Repr-Digest: sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:\r\n\
                     Content-Length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                out.extend_from_slice(&body);
                self.write(&out).await;
                After::Continue(None)
            }
            "hop" => {
                self.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: X-Secret, Keep-Alive\r\n\
                      X-Secret: 1\r\nKeep-Alive: timeout=5, max=100\r\nUpgrade: websocket\r\n\
                      Proxy-Authenticate: Basic realm=\"x\"\r\nX-App: kept\r\nContent-Length: 2\r\n\r\nok",
                )
                .await;
                After::Continue(None)
            }
            "ws-echo" => {
                if !req
                    .header("upgrade")
                    .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
                {
                    self.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                        .await;
                    return After::Continue(None);
                }
                // The origin's first tunnel bytes ride in the same write as the 101.
                self.write(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                      Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\norigin-hello",
                )
                .await;
                // Whatever candor already sent beyond the head is tunnel data.
                let early = std::mem::take(&mut self.buf);
                if !early.is_empty() && !self.write(&early).await {
                    return After::Gone;
                }
                let mut chunk = vec![0u8; 64 * 1024];
                loop {
                    match self.stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => {
                            self.mark_closed();
                            return After::Gone;
                        }
                        Ok(n) => {
                            self.record
                                .received
                                .lock()
                                .unwrap()
                                .extend_from_slice(&chunk[..n]);
                            let data = chunk[..n].to_vec();
                            if !self.write(&data).await {
                                return After::Gone;
                            }
                        }
                    }
                }
            }
            "upgrade-refused" => {
                let status = num("status", 426);
                let body = format!("no upgrade {}", req.target);
                let extra = if status == 426 {
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                } else {
                    ""
                };
                let out = format!(
                    "HTTP/1.1 {status} Status\r\nContent-Type: text/plain\r\n{extra}Content-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                self.write(out.as_bytes()).await;
                After::Continue(None)
            }
            "size" => {
                let (n, chunk, seed) = (num("n", 0), num("chunk", 0), num("seed", 1) as u64);
                let kind = q.get("kind").cloned().unwrap_or_default();
                let body = size_body(n, seed, &kind);
                self.send_body(200, &ct, &body, chunk, req.method == "HEAD")
                    .await
            }
            "status" => {
                let code: u16 = rest.parse().unwrap_or(200);
                let body = q.get("body").cloned().unwrap_or_default();
                let bodyless = code < 200 || code == 204 || code == 304;
                let out = if bodyless {
                    format!("HTTP/1.1 {code} Status\r\nContent-Type: {ct}\r\n\r\n")
                } else {
                    format!(
                        "HTTP/1.1 {code} Status\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                };
                self.write(out.as_bytes()).await;
                After::Continue(None)
            }
            "random" => {
                let (seed, n) = (num("seed", 0) as u64, num("n", 1000));
                match random_fault(seed) {
                    Fault::Refused => {
                        self.reset();
                        After::Gone
                    }
                    Fault::Stall => After::Watch,
                    Fault::Reset => {
                        let body = size_body(n, seed, "");
                        let mut out = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {n}\r\n\r\n"
                        )
                        .into_bytes();
                        out.extend_from_slice(&body[..n / 2]);
                        self.write(&out).await;
                        self.reset();
                        After::Gone
                    }
                    Fault::StallBody => {
                        let body = size_body(n, seed, "");
                        let mut out = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {n}\r\n\r\n"
                        )
                        .into_bytes();
                        out.extend_from_slice(&body[..n / 2]);
                        self.write(&out).await;
                        After::Watch
                    }
                    Fault::None => {
                        let body = size_body(n, seed, "");
                        let chunk = if seed % 2 == 0 { 0 } else { 4096 };
                        self.send_body(200, &ct, &body, chunk, false).await
                    }
                }
            }
            _ => {
                let body = format!("ok {}", req.target);
                let out = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Origin-Conn: {}\r\nContent-Length: {}\r\n\r\n{body}",
                    self.id,
                    body.len()
                );
                self.write(out.as_bytes()).await;
                After::Continue(None)
            }
        }
    }

    /// Sends `body` with Content-Length (`chunk == 0`) or chunked in `chunk`-byte chunks.
    async fn send_body(
        &mut self,
        status: u16,
        ct: &str,
        body: &[u8],
        chunk: usize,
        head: bool,
    ) -> After {
        if chunk == 0 {
            let out = format!(
                "HTTP/1.1 {status} OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            if !self.write(out.as_bytes()).await {
                return After::Gone;
            }
            if !head && !self.write_pieces(body, 64 * 1024).await {
                return After::Gone;
            }
        } else {
            let out = format!(
                "HTTP/1.1 {status} OK\r\nContent-Type: {ct}\r\nTransfer-Encoding: chunked\r\n\r\n"
            );
            let mut wire = out.into_bytes();
            if !head {
                for piece in body.chunks(chunk) {
                    wire.extend(format!("{:x}\r\n", piece.len()).as_bytes());
                    wire.extend(piece);
                    wire.extend(b"\r\n");
                }
                wire.extend(b"0\r\n\r\n");
            }
            if !self.write_pieces(&wire, 64 * 1024).await {
                return After::Gone;
            }
        }
        After::Continue(None)
    }
}

/// The query of a request target as a map (no percent-decoding: tests use plain values).
fn query(target: &str) -> HashMap<String, String> {
    target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// The body `/size` sends: `kind=json` is a JSON object whose `status` is `"error"`, padded to
/// exactly `n` bytes (n ≥ 32); otherwise [`pattern`](super::pattern) bytes.
pub fn size_body(n: usize, seed: u64, kind: &str) -> Vec<u8> {
    if kind == "json" {
        let head = br#"{"status":"error","pad":""#;
        let tail = br#""}"#;
        assert!(n >= head.len() + tail.len(), "json body of {n} bytes");
        let mut out = head.to_vec();
        out.extend(super::pattern(seed, n - head.len() - tail.len()));
        out.extend_from_slice(tail);
        return out;
    }
    super::pattern(seed, n)
}

/// What `/random` does for a seed (the L8 fault mix): 2 % resets mid-body, 1 % stalls before
/// the head, 1 % stalls mid-body, 1 % refusals (reset before any byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    Reset,
    Stall,
    StallBody,
    Refused,
}

pub fn random_fault(seed: u64) -> Fault {
    match seed.wrapping_mul(0x2545_F491_4F6C_DD1D) % 100 {
        0 | 1 => Fault::Reset,
        2 => Fault::Stall,
        3 => Fault::StallBody,
        4 => Fault::Refused,
        _ => Fault::None,
    }
}

/// The upstream framing lies of catalogue row U9, by name.
pub const LIES: &[&str] = &[
    "cl-te",
    "te-cl",
    "cl-cl",
    "cl-list",
    "cl-abc",
    "cl-plus",
    "te-gzip",
    "te-chunked-chunked",
    "te-gzip-chunked",
    "te-http10",
    "obs-fold",
    "space-colon",
    "nul",
    "many-headers",
    "huge-head",
    "status-2000",
    "status-abc",
    "http09",
    "bad-chunk",
];

/// The raw bytes of a lying response.
pub fn lie(case: &str) -> Vec<u8> {
    let ok = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n";
    let text = match case {
        "cl-te" => format!("{ok}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        "te-cl" => format!("{ok}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        "cl-cl" => format!("{ok}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        "cl-list" => format!("{ok}Content-Length: 5, 6\r\n\r\nhello!"),
        "cl-abc" => format!("{ok}Content-Length: abc\r\n\r\nhello"),
        "cl-plus" => format!("{ok}Content-Length: +5\r\n\r\nhello"),
        "te-gzip" => format!("{ok}Transfer-Encoding: gzip\r\n\r\nhello"),
        "te-chunked-chunked" => {
            format!("{ok}Transfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        }
        "te-gzip-chunked" => {
            format!("{ok}Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        }
        "te-http10" => "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_string(),
        "obs-fold" => format!("{ok}X-Folded: a\r\n b\r\nContent-Length: 5\r\n\r\nhello"),
        "space-colon" => format!("{ok}X-Spaced : a\r\nContent-Length: 5\r\n\r\nhello"),
        "nul" => format!("{ok}X-Nul: a\0b\r\nContent-Length: 5\r\n\r\nhello"),
        "many-headers" => {
            let mut s = ok.to_string();
            for i in 0..101 {
                s.push_str(&format!("X-H{i}: v\r\n"));
            }
            s + "Content-Length: 5\r\n\r\nhello"
        }
        "huge-head" => format!("{ok}X-Huge: {}\r\nContent-Length: 5\r\n\r\nhello", "a".repeat(500_000)),
        "status-2000" => "HTTP/1.1 2000 OK\r\nContent-Length: 5\r\n\r\nhello".to_string(),
        "status-abc" => "HTTP/1.1 abc OK\r\nContent-Length: 5\r\n\r\nhello".to_string(),
        "http09" => "hello, this is an HTTP/0.9 style reply without a status line\n".to_string(),
        "bad-chunk" => format!("{ok}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
        other => panic!("unknown lie {other}"),
    };
    text.into_bytes()
}

/// JSON cases of catalogue rows B6 and B8: (content type, body).
pub fn json_case(case: &str) -> (&'static str, Vec<u8>) {
    let json = "application/json";
    let body: Vec<u8> = match case {
        "error" => br#"{"status":"error","message":"broken"}"#.to_vec(),
        "ok" => br#"{"status":"ok"}"#.to_vec(),
        "depth129" => nested(129),
        "depth128" => nested(128),
        "depth100000" => nested(100_000),
        "invalid-utf8" => b"{\"status\":\"error\",\"message\":\"\xff\xfe\"}".to_vec(),
        "bom" => b"\xef\xbb\xbf{\"status\":\"error\"}".to_vec(),
        "dup-last-error" => br#"{"status":"ok","status":"error"}"#.to_vec(),
        "dup-last-ok" => br#"{"status":"error","status":"ok"}"#.to_vec(),
        "huge-number" => br#"{"status":"error","n":1e400}"#.to_vec(),
        "nan" => br#"{"status":"error","n":NaN}"#.to_vec(),
        "trailing" => br#"{"status":"error"} trailing garbage"#.to_vec(),
        "html-body" => b"<html><body>{\"status\":\"error\"}</body></html>".to_vec(),
        // B8: values a rule copies into a header.
        "retry-crlf" => br#"{"status":"busy","retry":"5\r\nSet-Cookie: a=b"}"#.to_vec(),
        "retry-nul" => br#"{"status":"busy","retry":"5\u0000"}"#.to_vec(),
        "retry-del" => br#"{"status":"busy","retry":"5\u007f"}"#.to_vec(),
        "retry-utf8" => "{\"status\":\"busy\",\"retry\":\"5\u{e9}\"}"
            .as_bytes()
            .to_vec(),
        "retry-big" => br#"{"status":"busy","retry":99999999999999999999999}"#.to_vec(),
        "retry-ok" => br#"{"status":"busy","retry":7}"#.to_vec(),
        other => panic!("unknown json case {other}"),
    };
    (json, body)
}

/// `{"status":"error","n":[[[…]]]}` with the whole document nested `depth` levels deep.
fn nested(depth: usize) -> Vec<u8> {
    let inner = depth.saturating_sub(2);
    let mut out = br#"{"status":"error","n":"#.to_vec();
    out.extend(std::iter::repeat_n(b'[', inner));
    out.extend(std::iter::repeat_n(b']', inner));
    out.push(b'}');
    if inner == 0 {
        return br#"{"status":"error"}"#.to_vec();
    }
    out
}

/// An HTML 500 page leaking what row B7 lists.
pub const LEAKY_PAGE: &str = "<html><head><title>500 Internal Server Error</title></head><body>\
<h1>Internal Server Error</h1>\
<pre>Traceback (most recent call last):\n  File \"/srv/app/views.py\", line 42, in get_user\n    \
row = db.execute(\"SELECT * FROM users WHERE id = 7\")\npsycopg2.OperationalError: could not connect \
to server at 10.0.3.17:5432\n</pre>\
<pre>java.lang.NullPointerException\n\tat com.acme.Foo.bar(Foo.java:42)\n\tat com.acme.Main.run(Main.java:7)</pre>\
<p>Apache/2.2.3 (CentOS) Server at 192.168.1.20 Port 80</p></body></html>";

/// Tokens from [`LEAKY_PAGE`] and its headers that must never reach a client.
pub const LEAK_TOKENS: &[&str] = &[
    "Traceback",
    "views.py",
    "/srv/app",
    "SELECT",
    "psycopg2",
    "10.0.3.17",
    "NullPointerException",
    "com.acme",
    "Foo.java",
    "192.168.1.20",
];
