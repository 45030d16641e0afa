//! The `exchange` fuzz target: Envoy's capture fuzzing (a recorded exchange of client and
//! upstream events, replayed and mutated) for candor. An input is a list of events, replayed against a real candor (`crate::run`
//! on 127.0.0.1:0, one worker, short timeouts, no upstream pooling) between a raw TCP client
//! and a raw fake upstream, all in this process. One candor serves every input; a lock keeps
//! inputs from overlapping.

use std::fmt::Write as _;
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

use super::wire::{self, Message, Unclear};
use super::{is_text, unescape, Blob, Word, HEADER_NAMES, HEADER_VALUES, METHODS, PATHS};

/// Most events played from one input.
const MAX_EVENTS: usize = 24;
/// Most bytes one send event writes.
const MAX_SEND: usize = 64 * 1024;
/// Most time all `Advance` events of one input may sleep.
const MAX_ADVANCE: Duration = Duration::from_millis(150);
/// How long an upstream event waits for candor to connect.
const ACCEPT_WAIT: Duration = Duration::from_millis(30);
/// How long a write may wait for the peer to read.
const WRITE_WAIT: Duration = Duration::from_millis(50);
/// After the events, the exchange is over once no byte has moved for this long...
const QUIET: Duration = Duration::from_millis(10);
/// ...or after this long at most.
const SETTLE: Duration = Duration::from_millis(300);
/// Most bytes recorded per direction of one connection.
const MAX_RECORD: usize = 1 << 20;
/// The path of the liveness request, which the fake upstream answers `200 live`.
const LIVE_PATH: &str = "/__candor_fuzz_live";

/// candor's config for the fuzzer: short timeouts, so that timeouts fire within an input, no
/// upstream pooling, so that each request has a connection of its own, a small inspection limit
/// and rules that rewrite 2xx bodies (their responses carry `x-candor-rule`).
const CONFIG: &str = r#"
[server]
workers = 1
debug_headers = true
header_read_timeout = "100ms"
drain_timeout = "1s"

[upstream]
url = "http://UPSTREAM"
connect_timeout = "100ms"
timeout = "100ms"
pool_max_idle = 0

[inspect]
max_body_bytes = 1024

[[rules]]
name = "user-not-found"
when.status = [200]
when.json = [{ pointer = "/status", equals = "error" }]
then.status = 404
then.body = "problem"
then.detail_from = "/message"

[[rules]]
name = "delete-empty"
when.method = ["DELETE"]
when.body = '^\s*\{\s*\}\s*$'
then.status = 204
then.body = "empty"

[[rules]]
name = "status-in-body"
when.status = ["2xx"]
when.json = [{ pointer = "/http_status", exists = true }]
then.status_from = "/http_status"
then.retry_after_from = "/retry_in"
"#;

/// Replays an exchange against a live candor; must never panic, and candor must not either.
///
/// Text input (starts with `#`): one event per line, the rest of the line after the prefix
/// being the bytes, with `\r`, `\n`, `\t`, `\\`, `\0`, `\xHH` escapes:
///
/// ```text
/// > GET / HTTP/1.1\r\nhost: a\r\n\r\n        the client sends
/// < HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok   the upstream sends
/// < !close        the upstream closes (FIN)     < !reset   the upstream resets (RST)
/// > !shutdown     the client half-closes        ~ 20       20 ms pass
/// ```
///
/// Upstream events act on the connection candor opened last (waiting briefly for one). With
/// `CANDOR_FUZZ_DEBUG` set, each exchange is printed (both sides, as the text format).
///
/// Oracles: no panic anywhere in candor; afterwards candor still answers a normal request (within
/// 2 s, three tries); what
/// it sent the client parses as HTTP/1.1 with unambiguous framing, and every 2xx body it
/// forwarded (not rewritten by a rule) is a body the upstream sent, complete only if the
/// upstream's was; every request it sent upstream parses with unambiguous framing and one Host.
pub fn exchange(data: &[u8]) {
    let events = if is_text(data) {
        text(data)
    } else {
        match Vec::<Event>::arbitrary_take_rest(Unstructured::new(data)) {
            Ok(events) => events.iter().map(Event::play).collect(),
            Err(_) => return,
        }
    };
    let harness = harness();
    let _one_at_a_time = harness.lock.lock().unwrap_or_else(PoisonError::into_inner);
    harness.runtime.block_on(async {
        drain_stale(&harness.upstream).await;
        let _ = take_panic();
        let record = play(harness, &events).await;
        if let Some(message) = take_panic() {
            panic!("candor panicked during the exchange: {message}");
        }
        if std::env::var_os("CANDOR_FUZZ_DEBUG").is_some() {
            eprintln!("{}", record.describe());
        }
        if let Err(violation) = judge(&record) {
            panic!("{violation}\n\n{}", record.describe());
        }
        let mut last = String::new();
        for _ in 0..3 {
            match live(harness).await {
                Ok(()) => {
                    last.clear();
                    break;
                }
                Err(why) => last = why,
            }
        }
        if let Some(message) = take_panic() {
            panic!("candor panicked after the exchange: {message}");
        }
        assert!(
            last.is_empty(),
            "candor no longer answers a normal request after this input: {last}\n\n{}",
            record.describe()
        );
    });
}

/// One step of an exchange, ready to play.
#[derive(Debug, Clone)]
enum Step {
    ClientSend(Vec<u8>),
    ClientShutdown,
    UpstreamSend(Vec<u8>),
    UpstreamClose,
    UpstreamReset,
    Advance(Duration),
}

fn text(data: &[u8]) -> Vec<Step> {
    data.split(|b| *b == b'\n')
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let (prefix, rest) = (line.get(..2)?, &line[2..]);
            Some(match (prefix, rest) {
                (b"> ", b"!shutdown") => Step::ClientShutdown,
                (b"> ", bytes) => Step::ClientSend(unescape(bytes)),
                (b"< ", b"!close") => Step::UpstreamClose,
                (b"< ", b"!reset") => Step::UpstreamReset,
                (b"< ", bytes) => Step::UpstreamSend(unescape(bytes)),
                (b"~ ", ms) => Step::Advance(Duration::from_millis(
                    std::str::from_utf8(ms).ok()?.trim().parse().ok()?,
                )),
                _ => return None,
            })
        })
        .collect()
}

/// A structured event.
#[derive(Debug, Arbitrary)]
enum Event {
    ClientSend(Chunk),
    ClientShutdown,
    UpstreamSend(Chunk),
    UpstreamClose,
    UpstreamReset,
    Advance(u8),
}

#[derive(Debug, Arbitrary)]
enum Chunk {
    Raw(Vec<u8>),
    Request(RequestIn),
    Response(ResponseIn),
}

#[derive(Debug, Arbitrary)]
struct RequestIn {
    method: Word,
    path: Word,
    version: u8,
    headers: Vec<(Word, Blob)>,
    body: Vec<u8>,
    framing: u8,
}

#[derive(Debug, Arbitrary)]
struct ResponseIn {
    status: u16,
    content_type: Option<Blob>,
    headers: Vec<(Word, Blob)>,
    body: Blob,
    framing: u8,
}

/// Bodies the config's rules and the built-ins react to.
const BODIES: [&str; 8] = [
    "{\"status\":\"ok\",\"data\":{\"id\":42}}",
    "{\"status\":\"error\",\"message\":\"user not found\"}",
    "{\"http_status\":503,\"retry_in\":30}",
    "{}",
    "<!DOCTYPE html><html><body><h1>Not Found</h1></body></html>",
    "Traceback (most recent call last):\n  File \"/srv/app.py\", line 1",
    "",
    "0123456789abcdef",
];

impl Event {
    fn play(&self) -> Step {
        match self {
            Event::ClientSend(chunk) => Step::ClientSend(chunk.bytes()),
            Event::ClientShutdown => Step::ClientShutdown,
            Event::UpstreamSend(chunk) => Step::UpstreamSend(chunk.bytes()),
            Event::UpstreamClose => Step::UpstreamClose,
            Event::UpstreamReset => Step::UpstreamReset,
            Event::Advance(ms) => Step::Advance(Duration::from_millis(u64::from(ms % 64))),
        }
    }
}

impl Chunk {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Chunk::Raw(bytes) => bytes.clone(),
            Chunk::Request(r) => r.bytes(),
            Chunk::Response(r) => r.bytes(),
        }
    }
}

fn fields(out: &mut Vec<u8>, headers: &[(Word, Blob)]) {
    for (name, value) in headers.iter().take(12) {
        out.extend_from_slice(name.get(&HEADER_NAMES).as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(&value.get(&HEADER_VALUES));
        out.extend_from_slice(b"\r\n");
    }
}

/// Body framings: 0 none, 1 `Content-Length`, 2 chunked (with an extension and a trailer),
/// 3 both (the smuggling shape), 4 two lengths, 5 a length one short, 6 a length one long.
fn framed(out: &mut Vec<u8>, body: &[u8], framing: u8) {
    match framing % 7 {
        0 => out.extend_from_slice(b"\r\n"),
        1 => {
            let _ = write!(Text(out), "content-length: {}\r\n\r\n", body.len());
        }
        2 => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
            for piece in body.chunks(7) {
                let _ = write!(Text(out), "{:x};ext=1\r\n", piece.len());
                out.extend_from_slice(piece);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\nx-sum: 1\r\n\r\n");
            return;
        }
        3 => {
            let _ = write!(
                Text(out),
                "content-length: {}\r\ntransfer-encoding: chunked\r\n\r\n",
                body.len()
            );
        }
        4 => {
            let _ = write!(
                Text(out),
                "content-length: {0}\r\ncontent-length: {0}\r\n\r\n",
                body.len()
            );
        }
        5 => {
            let _ = write!(
                Text(out),
                "content-length: {}\r\n\r\n",
                body.len().saturating_sub(1)
            );
        }
        _ => {
            let _ = write!(Text(out), "content-length: {}\r\n\r\n", body.len() + 1);
        }
    }
    out.extend_from_slice(body);
}

/// `fmt::Write` into a byte buffer.
struct Text<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Text<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

impl RequestIn {
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let version =
            ["HTTP/1.1", "HTTP/1.0", "HTTP/1.1", "HTTP/2.0"][usize::from(self.version % 4)];
        let _ = write!(
            Text(&mut out),
            "{} {} {version}\r\nhost: api.example\r\n",
            self.method.get(&METHODS),
            self.path.get(&PATHS)
        );
        fields(&mut out, &self.headers);
        framed(&mut out, &self.body, self.framing);
        out
    }
}

impl ResponseIn {
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = write!(Text(&mut out), "HTTP/1.1 {} X\r\n", 100 + self.status % 500);
        if let Some(ct) = &self.content_type {
            out.extend_from_slice(b"content-type: ");
            out.extend_from_slice(&ct.get(&HEADER_VALUES[..7]));
            out.extend_from_slice(b"\r\n");
        }
        fields(&mut out, &self.headers);
        framed(&mut out, &self.body.get(&BODIES), self.framing);
        out
    }
}

/// The shared candor and fake upstream.
struct Harness {
    runtime: tokio::runtime::Runtime,
    proxy: SocketAddr,
    upstream: TcpListener,
    lock: Mutex<()>,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        record_panics();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("candor-fuzz-runtime")
            .enable_all()
            .build()
            .expect("the fuzz harness needs a tokio runtime");
        let upstream = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("the fuzz harness binds a loopback upstream");
        let upstream_addr = upstream
            .local_addr()
            .expect("a bound socket has an address");
        upstream
            .set_nonblocking(true)
            .expect("a loopback socket can be made non-blocking");
        let upstream = {
            let _entered = runtime.enter();
            TcpListener::from_std(upstream).expect("tokio takes a bound listener")
        };
        let text = CONFIG.replace("UPSTREAM", &upstream_addr.to_string());
        let config = crate::config::from_toml(&text, "<fuzz exchange>", Default::default())
            .unwrap_or_else(|e| panic!("the exchange fuzz config is invalid: {e}"));
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        let listeners = crate::Listeners::bind_to(any, any).expect("candor binds loopback ports");
        let proxy = listeners
            .proxy_addr()
            .expect("a bound socket has an address");
        runtime.spawn(async move {
            if let Err(error) = crate::run(config, listeners, std::future::pending()).await {
                panic!("candor stopped: {error}");
            }
        });
        let harness = Harness {
            runtime,
            proxy,
            upstream,
            lock: Mutex::new(()),
        };
        harness.runtime.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(20);
            while let Err(why) = live(&harness).await {
                assert!(Instant::now() < deadline, "candor did not start: {why}");
                sleep(Duration::from_millis(20)).await;
            }
        });
        harness
    })
}

/// Panics on candor's threads (its workers and the runtime running `run`), which tokio catches
/// per task, so that the oracle sees them.
static PANICKED: Mutex<Option<String>> = Mutex::new(None);

fn record_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("");
        if name.starts_with("candor-") {
            let mut slot = PANICKED.lock().unwrap_or_else(PoisonError::into_inner);
            if slot.is_none() {
                *slot = Some(format!("thread {name}: {info}"));
            }
        }
        previous(info);
    }));
}

fn take_panic() -> Option<String> {
    PANICKED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
}

/// What one side of a connection received.
#[derive(Debug, Default)]
struct Seen {
    bytes: Vec<u8>,
    /// The peer closed cleanly (FIN).
    eof: bool,
    /// Reading failed (a reset).
    error: bool,
    /// More than [`MAX_RECORD`] bytes came; the rest was dropped.
    capped: bool,
}

/// One end of a TCP connection the harness holds: a reader task records what arrives.
struct Peer {
    /// `None` once reset.
    stream: Option<Arc<TcpStream>>,
    seen: Arc<Mutex<Seen>>,
    reader: JoinHandle<()>,
    sent: Vec<u8>,
    /// The harness closed its side: `Some(true)` with a FIN, `Some(false)` with a reset.
    closed: Option<bool>,
}

impl Peer {
    fn new(stream: TcpStream) -> Peer {
        let stream = Arc::new(stream);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let reader = tokio::spawn(read_into(stream.clone(), seen.clone()));
        Peer {
            stream: Some(stream),
            seen,
            reader,
            sent: Vec::new(),
            closed: None,
        }
    }

    fn snapshot(&self) -> Seen {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        Seen {
            bytes: seen.bytes.clone(),
            eof: seen.eof,
            error: seen.error,
            capped: seen.capped,
        }
    }

    fn moved(&self) -> usize {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.bytes.len() + usize::from(seen.eof || seen.error)
    }

    async fn send(&mut self, bytes: &[u8]) {
        let (None, Some(stream)) = (self.closed, self.stream.clone()) else {
            return;
        };
        let mut rest = &bytes[..bytes.len().min(MAX_SEND)];
        let _ = timeout(WRITE_WAIT, async {
            while !rest.is_empty() {
                if stream.writable().await.is_err() {
                    return;
                }
                match stream.try_write(rest) {
                    Ok(n) => {
                        self.sent.extend_from_slice(&rest[..n]);
                        rest = &rest[n..];
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        })
        .await;
    }

    fn shutdown(&mut self) {
        if let (None, Some(stream)) = (self.closed, &self.stream) {
            let _ = socket2::SockRef::from(&**stream).shutdown(Shutdown::Write);
            self.closed = Some(true);
        }
    }

    /// Closes with a reset (RST, no FIN first), and stops the reader.
    async fn reset(&mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        let _ = socket2::SockRef::from(&*stream).set_linger(Some(Duration::ZERO));
        self.reader.abort();
        let _ = (&mut self.reader).await;
        // The reader's handle is gone: this drop closes the socket, with a reset.
        drop(stream);
        if self.closed.is_none() {
            self.closed = Some(false);
        }
    }
}

async fn read_into(stream: Arc<TcpStream>, seen: Arc<Mutex<Seen>>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if stream.readable().await.is_err() {
            break;
        }
        let result = stream.try_read(&mut buf);
        let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(0) => {
                seen.eof = true;
                return;
            }
            Ok(n) => {
                let room = MAX_RECORD.saturating_sub(seen.bytes.len());
                seen.capped |= n > room;
                seen.bytes.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {
                seen.error = true;
                return;
            }
        }
    }
}

/// Connections candor opened upstream for an earlier input and never used: reset them.
async fn drain_stale(listener: &TcpListener) {
    while let Ok(Ok((stream, _))) = timeout(Duration::ZERO, listener.accept()).await {
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    }
}

/// What happened in one exchange.
struct Record {
    steps: Vec<Step>,
    client_sent: Vec<u8>,
    client: Seen,
    upstreams: Vec<(Vec<u8>, Option<bool>, Seen)>,
}

impl Record {
    fn describe(&self) -> String {
        let mut out = String::from("steps:\n");
        for step in &self.steps {
            let _ = writeln!(out, "  {}", show_step(step));
        }
        let _ = writeln!(
            out,
            "client sent: {}\nclient received{}: {}",
            show(&self.client_sent),
            if self.client.eof { " (then FIN)" } else { "" },
            show(&self.client.bytes)
        );
        for (i, (sent, closed, seen)) in self.upstreams.iter().enumerate() {
            let _ = writeln!(
                out,
                "upstream #{i} received: {}\nupstream #{i} sent{}: {}",
                show(&seen.bytes),
                match closed {
                    Some(true) => " (then FIN)",
                    Some(false) => " (then RST)",
                    None => "",
                },
                show(sent)
            );
        }
        out
    }
}

fn show_step(step: &Step) -> String {
    match step {
        Step::ClientSend(b) => format!("> {}", show(b)),
        Step::ClientShutdown => "> !shutdown".into(),
        Step::UpstreamSend(b) => format!("< {}", show(b)),
        Step::UpstreamClose => "< !close".into(),
        Step::UpstreamReset => "< !reset".into(),
        Step::Advance(d) => format!("~ {}", d.as_millis()),
    }
}

/// Bytes in the text format's escapes, cut at 512 bytes.
fn show(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes.iter().take(512) {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    if bytes.len() > 512 {
        let _ = write!(out, "… ({} bytes)", bytes.len());
    }
    out
}

async fn play(harness: &Harness, steps: &[Step]) -> Record {
    let steps: Vec<Step> = steps.iter().take(MAX_EVENTS).cloned().collect();
    let mut client = match TcpStream::connect(harness.proxy).await {
        Ok(stream) => Peer::new(stream),
        Err(e) => panic!("candor refused a connection: {e}"),
    };
    let mut upstreams: Vec<Peer> = Vec::new();
    let mut advanced = Duration::ZERO;
    for step in &steps {
        match step {
            Step::ClientSend(bytes) => {
                client.send(bytes).await;
                sleep(Duration::from_millis(1)).await;
            }
            Step::ClientShutdown => client.shutdown(),
            Step::UpstreamSend(bytes) => {
                if let Some(upstream) = current(harness, &mut upstreams).await {
                    upstream.send(bytes).await;
                    sleep(Duration::from_millis(1)).await;
                }
            }
            Step::UpstreamClose => {
                if let Some(upstream) = current(harness, &mut upstreams).await {
                    upstream.shutdown();
                }
            }
            Step::UpstreamReset => {
                if let Some(upstream) = current(harness, &mut upstreams).await {
                    upstream.reset().await;
                }
            }
            Step::Advance(by) => {
                let by = (*by).min(MAX_ADVANCE.saturating_sub(advanced));
                advanced += by;
                sleep(by).await;
            }
        }
    }
    // Let the exchange finish: until nothing moves, or the client is closed.
    let until = Instant::now() + SETTLE;
    let mut last = usize::MAX;
    let mut quiet_since = Instant::now();
    loop {
        // Connections candor opens now get no events, but their requests are still checked.
        while let Ok(Ok((stream, _))) = timeout(Duration::ZERO, harness.upstream.accept()).await {
            upstreams.push(Peer::new(stream));
        }
        let moved = client.moved() + upstreams.iter().map(Peer::moved).sum::<usize>();
        let now = Instant::now();
        if moved != last {
            last = moved;
            quiet_since = now;
        }
        let client_done = {
            let seen = client.seen.lock().unwrap_or_else(PoisonError::into_inner);
            seen.eof || seen.error
        };
        if client_done || now.duration_since(quiet_since) >= QUIET || now >= until {
            break;
        }
        sleep(Duration::from_millis(1)).await;
    }
    let record = Record {
        steps,
        client_sent: client.sent.clone(),
        client: client.snapshot(),
        upstreams: upstreams
            .iter()
            .map(|u| (u.sent.clone(), u.closed, u.snapshot()))
            .collect(),
    };
    client.reset().await;
    for mut upstream in upstreams {
        upstream.reset().await;
    }
    record
}

/// The upstream connection events act on: the newest one candor opened, waiting briefly for one
/// when there is none still open.
async fn current<'u>(harness: &Harness, upstreams: &'u mut Vec<Peer>) -> Option<&'u mut Peer> {
    while let Ok(Ok((stream, _))) = timeout(Duration::ZERO, harness.upstream.accept()).await {
        upstreams.push(Peer::new(stream));
    }
    let usable = upstreams.last().is_some_and(|u| {
        let seen = u.seen.lock().unwrap_or_else(PoisonError::into_inner);
        u.closed.is_none() && !seen.eof && !seen.error
    });
    if !usable {
        if let Ok(Ok((stream, _))) = timeout(ACCEPT_WAIT, harness.upstream.accept()).await {
            upstreams.push(Peer::new(stream));
        }
    }
    upstreams.last_mut().filter(|u| u.closed.is_none())
}

/// The response an upstream connection gave candor, as candor must have read it.
struct Answer {
    status: u16,
    body: Vec<u8>,
    complete: bool,
}

/// Checks the recorded exchange against the oracles.
fn judge(record: &Record) -> Result<(), String> {
    // Requests candor sent upstream: strictly parseable, framed unambiguously, one Host.
    let mut answers: Vec<Answer> = Vec::new();
    let mut unjudgeable = record.client.capped;
    for (i, (sent, closed, seen)) in record.upstreams.iter().enumerate() {
        let request = match wire::first_request(&seen.bytes) {
            Ok(request) => request,
            Err(Unclear::Malformed(why) | Unclear::Ambiguous(why)) => {
                return Err(format!(
                    "candor sent upstream #{i} a request that is not clean HTTP/1.1: {why}"
                ));
            }
            Err(Unclear::UnknownMethod) => None,
        };
        if let Some(request) = &request {
            let hosts = request.all("host").count();
            if hosts != 1 {
                return Err(format!(
                    "candor sent upstream #{i} a request with {hosts} Host headers"
                ));
            }
            for hop in [
                "keep-alive",
                "proxy-connection",
                "proxy-authorization",
                "expect",
            ] {
                if request.all(hop).next().is_some() {
                    return Err(format!("candor forwarded {hop} to upstream #{i}"));
                }
            }
        }
        if sent.is_empty() {
            continue;
        }
        let Some(request) = request else {
            unjudgeable = true;
            continue;
        };
        let method = |n: usize| (n == 0).then(|| request.method.clone());
        match wire::responses(sent, &method, *closed == Some(true)) {
            Ok(responses) => {
                if let Some(first) = responses.first() {
                    answers.push(Answer {
                        status: first.status,
                        body: first.body.clone(),
                        complete: first.complete,
                    });
                }
            }
            Err(_) => unjudgeable = true,
        }
    }

    // What candor sent the client.
    if record.client_sent.starts_with(b"PRI") {
        return Ok(());
    }
    let requests = wire::requests(&record.client_sent, 64).unwrap_or_default();
    let mentions_head = record
        .client_sent
        .windows(4)
        .any(|w| w.eq_ignore_ascii_case(b"HEAD"));
    let method = |n: usize| match requests.get(n) {
        Some(request) => Some(request.method.clone()),
        None if mentions_head => None,
        None => Some("GET".to_owned()),
    };
    let client_ended = record.client.eof && !record.client.error;
    let responses = match wire::responses(&record.client.bytes, &method, client_ended) {
        Ok(responses) => responses,
        Err(Unclear::UnknownMethod) => return Ok(()),
        Err(Unclear::Malformed(why) | Unclear::Ambiguous(why)) => {
            return Err(format!(
                "candor sent the client a response that is not clean HTTP/1.1: {why}"
            ));
        }
    };
    if unjudgeable {
        return Ok(());
    }

    // Every 2xx body candor forwarded untouched is one the upstream sent, in order.
    let mut next = 0;
    for (n, response) in responses.iter().enumerate() {
        if !(200..300).contains(&response.status) || response.all("x-candor-rule").next().is_some()
        {
            continue;
        }
        let complete = response.complete && !response.close_delimited;
        let found = answers[next.min(answers.len())..]
            .iter()
            .position(|a| matches(a, response, complete));
        match found {
            Some(at) => next += at + 1,
            None => {
                return Err(format!(
                    "response #{n} to the client, {} with {} {}-byte body {:?}, is not what the upstream sent",
                    response.status,
                    if complete { "a complete" } else { "an incomplete" },
                    response.body.len(),
                    show(&response.body[..response.body.len().min(200)]),
                ))
            }
        }
    }
    Ok(())
}

fn matches(answer: &Answer, response: &Message, complete: bool) -> bool {
    answer.status == response.status
        && if complete {
            answer.complete && answer.body == response.body
        } else {
            answer.body.starts_with(&response.body)
        }
}

/// A normal request through candor, answered `200 live` by the fake upstream (or, if that was
/// too slow, by candor's own timeout or failure response).
async fn live(harness: &Harness) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut client = TcpStream::connect(harness.proxy)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let request = format!("GET {LIVE_PATH} HTTP/1.1\r\nhost: live\r\n\r\n");
    client
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut upstream = loop {
        let (mut stream, _) = tokio::time::timeout_at(deadline, harness.upstream.accept())
            .await
            .map_err(|_| "candor did not connect upstream within 2 s".to_owned())?
            .map_err(|e| format!("accept: {e}"))?;
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
            match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        if head.starts_with(format!("GET {LIVE_PATH} ").as_bytes()) {
            break stream;
        }
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    };
    upstream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nlive")
        .await
        .map_err(|e| format!("upstream send: {e}"))?;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let get = |_: usize| Some("GET".to_owned());
    let result = loop {
        if let Ok(responses) = wire::responses(&received, &get, false) {
            if let Some(first) = responses.first().filter(|r| r.complete) {
                // candor's own 502/504 is an answer too: on a loaded machine the fake upstream
                // can miss the short `upstream.timeout`, which is no sign of a wedged candor.
                let own_failure =
                    matches!(first.status, 502 | 504) && first.all("proxy-status").next().is_some();
                break if (first.status == 200 && first.body == b"live") || own_failure {
                    Ok(())
                } else {
                    Err(format!("got {} {:?}", first.status, show(&first.body)))
                };
            }
        }
        match tokio::time::timeout_at(deadline, client.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => received.extend_from_slice(&buf[..n]),
            Ok(_) => break Err(format!("connection closed after {:?}", show(&received))),
            Err(_) => break Err(format!("no response within 2 s ({:?})", show(&received))),
        }
    };
    for stream in [&client, &upstream] {
        let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
    }
    result
}
