//! The soak origin: a raw-socket HTTP/1.1 server that answers `/soak/…` paths as the path says
//! (kind, size, framing, fault), sends `X-Body-SHA256` and `X-Soak-Id` with every body, records
//! which exchanges reached it, and on demand refuses connections.
//!
//! Raw sockets rather than a hyper server, because the faults need them: a reset is a real RST
//! (`SO_LINGER` 0) at a chosen byte of the head or body, a close-delimited body is a real FIN.
//! Like a legacy server with `MaxKeepAliveRequests`, it closes a connection after
//! `max_requests` responses, so candor reconnects regularly even in the clean soak.
//!
//! Refusals: while the gate is closed the listening socket is closed too, so candor's connects
//! fail with ECONNREFUSED (connections already accepted carry on); reopening binds the same
//! port again. The port is taken below the kernel's ephemeral range, so that no outgoing
//! connection can take it while the gate is closed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::super::http1::{self, Head};
use super::super::rng::Rng;
use super::body::template;
use super::spec::{Exchange, Fault, Framing};

/// How long a stalled exchange waits for candor to give up before the origin does.
const STALL_LIMIT: Duration = Duration::from_secs(120);

/// What the origin counted.
#[derive(Debug, Default)]
pub struct OriginStats {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    /// Requests for an exchange that had already reached the origin (a retry by candor).
    pub duplicates: AtomicU64,
    pub resets: AtomicU64,
    pub stalls: AtomicU64,
    /// Times the listening socket was closed.
    pub refusal_windows: AtomicU64,
    /// Connections closed after `max_requests` responses.
    pub keepalive_limits: AtomicU64,
    pub bytes: AtomicU64,
}

/// Which exchange ids have reached the origin.
struct Seen {
    bits: Vec<AtomicU64>,
}

impl Seen {
    fn new(capacity: u64) -> Seen {
        Seen {
            bits: (0..capacity / 64 + 1).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Marks `id`; true if it was already marked.
    fn mark(&self, id: u64) -> bool {
        let Some(word) = self.bits.get((id / 64) as usize) else {
            return false;
        };
        let bit = 1u64 << (id % 64);
        word.fetch_or(bit, Ordering::SeqCst) & bit != 0
    }

    fn contains(&self, id: u64) -> bool {
        self.bits
            .get((id / 64) as usize)
            .is_some_and(|w| w.load(Ordering::SeqCst) & (1u64 << (id % 64)) != 0)
    }
}

struct Shared {
    stats: OriginStats,
    seen: Seen,
    max_requests: u32,
}

/// A running origin.
pub struct Origin {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    gate: watch::Sender<bool>,
}

impl Origin {
    /// Starts an origin for exchange ids below `capacity`.
    pub async fn start(capacity: u64, max_requests: u32) -> Origin {
        let (listener, addr) = bind_below_ephemeral();
        let shared = Arc::new(Shared {
            stats: OriginStats::default(),
            seen: Seen::new(capacity),
            max_requests,
        });
        let (gate, open) = watch::channel(true);
        tokio::spawn(accept_loop(listener, addr, open, shared.clone()));
        Origin { addr, shared, gate }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> &OriginStats {
        &self.shared.stats
    }

    /// Whether exchange `id` reached the origin.
    pub fn saw(&self, id: u64) -> bool {
        self.shared.seen.contains(id)
    }

    /// Closes the listening socket (true) or opens it again (false).
    pub fn refuse(&self, refuse: bool) {
        self.gate.send_replace(!refuse);
    }
}

/// Binds 127.0.0.1 on a free port below 32768, where Linux never picks ephemeral ports.
fn bind_below_ephemeral() -> (std::net::TcpListener, SocketAddr) {
    let mut rng = Rng::new(u64::from(std::process::id()) << 20 ^ now_nanos());
    for _ in 0..1000 {
        let port = 20_000 + rng.below(12_000) as u16;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if let Ok(listener) = bind_exact(addr) {
            return (listener, addr);
        }
    }
    panic!("no free port between 20000 and 32000");
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos().into())
}

fn bind_exact(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    // Accepted connections keep the port after the listener closes; they share this flag.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

async fn accept_loop(
    first: std::net::TcpListener,
    addr: SocketAddr,
    mut open: watch::Receiver<bool>,
    shared: Arc<Shared>,
) {
    let mut next = Some(first);
    loop {
        let std_listener = match next.take() {
            Some(listener) => listener,
            None => rebind(addr).await,
        };
        let listener = TcpListener::from_std(std_listener).expect("a tokio runtime is running");
        loop {
            tokio::select! {
                changed = open.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if !*open.borrow_and_update() {
                        break;
                    }
                }
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        shared.stats.connections.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(serve(stream, shared.clone()));
                    }
                }
            }
        }
        drop(listener);
        shared.stats.refusal_windows.fetch_add(1, Ordering::Relaxed);
        while !*open.borrow_and_update() {
            if open.changed().await.is_err() {
                return;
            }
        }
    }
}

async fn rebind(addr: SocketAddr) -> std::net::TcpListener {
    for _ in 0..1000 {
        match bind_exact(addr) {
            Ok(listener) => return listener,
            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
    panic!("could not bind {addr} again");
}

/// Serves one connection until candor closes it, a fault ends it, or `max_requests`.
async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(4096);
    let mut served = 0u32;
    loop {
        let (exchange, end) = loop {
            match http1::request_target(&buf) {
                Head::Complete(target, n) => break (Exchange::parse(target), n),
                // Answered like a path that names no exchange.
                Head::Invalid(_) => break (None, buf.len()),
                Head::Partial => {}
            }
            if buf.len() > 64 * 1024 {
                return;
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let _ = buf.split_to(end);
        let Some(exchange) = exchange else {
            let _ = stream
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            return;
        };
        shared.stats.requests.fetch_add(1, Ordering::Relaxed);
        if shared.seen.mark(exchange.id) {
            shared.stats.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        served += 1;
        let last = served >= shared.max_requests;
        if !respond(&mut stream, &exchange, last, &shared).await {
            return;
        }
    }
}

/// The wire bytes of a response, and where in them each body byte is.
struct Wire {
    bytes: Vec<u8>,
    head_len: usize,
    /// For chunked bodies: the body offset where each chunk's data starts, and the wire offset
    /// of that data.
    chunk_map: Vec<(usize, usize)>,
}

impl Wire {
    /// The wire offset of body byte `at`.
    fn offset_of(&self, at: usize) -> usize {
        if self.chunk_map.is_empty() {
            return self.head_len + at;
        }
        let i = self.chunk_map.partition_point(|(body, _)| *body <= at) - 1;
        let (body, wire) = self.chunk_map[i];
        wire + (at - body)
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

fn wire(exchange: &Exchange, last: bool) -> Wire {
    let template = template(exchange.kind, exchange.size);
    let body = template.body(exchange.id);
    let status = exchange.kind.status();
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: {}\r\nx-soak-id: {}\r\nx-body-sha256: {}\r\n",
        reason(status),
        exchange.kind.content_type(),
        exchange.id,
        template.sha256(exchange.id),
    );
    match exchange.framing {
        Framing::Length => head.push_str(&format!("content-length: {}\r\n", body.len())),
        Framing::Chunked => head.push_str("transfer-encoding: chunked\r\n"),
        Framing::Close => {}
    }
    if last || exchange.framing == Framing::Close {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    let head_len = head.len();
    let mut bytes = head.into_bytes();
    let mut chunk_map = Vec::new();
    if exchange.framing == Framing::Chunked {
        let mut rng = Rng::new(exchange.id ^ 0xC4_u64 << 56);
        let max = [64usize, 4096, 65536][rng.below(3) as usize].max(body.len() / 512);
        let mut at = 0;
        while at < body.len() {
            let len = (1 + rng.below(max as u64) as usize).min(body.len() - at);
            bytes.extend_from_slice(format!("{len:x}\r\n").as_bytes());
            chunk_map.push((at, bytes.len()));
            bytes.extend_from_slice(&body[at..at + len]);
            bytes.extend_from_slice(b"\r\n");
            at += len;
        }
        bytes.extend_from_slice(b"0\r\n\r\n");
    } else {
        bytes.extend_from_slice(&body);
    }
    Wire {
        bytes,
        head_len,
        chunk_map,
    }
}

/// Sends the response (or the fault); false when the connection is finished.
async fn respond(stream: &mut TcpStream, exchange: &Exchange, last: bool, shared: &Shared) -> bool {
    let wire = wire(exchange, last);
    let stats = &shared.stats;
    let cut = match exchange.fault {
        Fault::None => {
            if stream.write_all(&wire.bytes).await.is_err() {
                return false;
            }
            stats
                .bytes
                .fetch_add(wire.bytes.len() as u64, Ordering::Relaxed);
            if last || exchange.framing == Framing::Close {
                if last {
                    stats.keepalive_limits.fetch_add(1, Ordering::Relaxed);
                }
                let _ = stream.shutdown().await;
                return false;
            }
            return true;
        }
        Fault::ResetBeforeHead | Fault::StallHead => 0,
        Fault::ResetMidHead => wire.head_len / 2,
        Fault::ResetMidBody(at) | Fault::StallBody(at) => wire.offset_of(at),
    };
    let _ = stream.write_all(&wire.bytes[..cut]).await;
    let _ = stream.flush().await;
    match exchange.fault {
        Fault::StallHead | Fault::StallBody(_) => {
            stats.stalls.fetch_add(1, Ordering::Relaxed);
            // Until candor closes its end (it timed out, or its client went away).
            let mut sink = [0u8; 1024];
            let _ = tokio::time::timeout(STALL_LIMIT, async {
                while let Ok(n) = stream.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
        }
        _ => {
            stats.resets.fetch_add(1, Ordering::Relaxed);
            // SO_LINGER 0: close() sends RST instead of FIN.
            let _ = socket2::SockRef::from(&*stream).set_linger(Some(Duration::ZERO));
        }
    }
    false
}
