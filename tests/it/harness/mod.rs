//! The integration tests' one harness: real loopback origins, clients that speak hyper or raw
//! bytes, candor started in-process or as the built binary, and the checks the failure catalogue
//! ends with. With `CANDOR_CAPTURE_DIR` set, the hyper clients and origins and the string raw
//! client record their exchanges for the protocol lint (`capture`).
//!
//! | module | holds |
//! | --- | --- |
//! | `http1` | the one HTTP/1 reader: request and response heads, framing, chunked decoding |
//! | `origin` | hyper origins (recording, canned routes) and raw scripted origins |
//! | `evil` | the evil origin: strict request parsing, misbehaviour by path, full records |
//! | `client` | hyper clients, and the raw client that returns text |
//! | `raw` | the raw client that parses responses (pipelining, keep-alive, liveness) |
//! | `canary` | a listener candor must never contact |
//! | `files` | a fresh directory per test, and saving a config by rename |
//! | `launcher` | candor in-process (`Candor`) and as a child process (`CandorProcess`) |
//! | `capture` | exchange recording for the protocol lint |
//! | `rng` | the seeded generator (SplitMix64) |
//! | `load` | the soak: exchange spec, bodies, its fault-injecting origin, its client |
//!
//! The memory and soak test binaries include this tree too (`#[path]`), so it must not depend on
//! anything in the `it` crate.
#![allow(dead_code)]

pub mod canary;
pub mod capture;
pub mod client;
pub mod evil;
pub mod files;
pub mod http1;
pub mod launcher;
pub mod load;
pub mod origin;
pub mod raw;
pub mod rng;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncRead, AsyncReadExt};

// What most tests use, at the root; the memory and soak binaries use less of it.
#[allow(unused_imports)]
pub use {canary::Canary, client::*, files::*, launcher::*, origin::*};

/// Generous bound for anything that should happen promptly; loose enough for a loaded CI box.
pub const WAIT: Duration = Duration::from_secs(10);

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A response with `status` and `body`.
pub fn response(status: u16, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r
}

/// Polls `check` until it holds or `deadline` passes; returns whether it held.
pub async fn eventually(deadline: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Reads one head (up to and including the blank line) byte by byte, so that nothing after it is
/// consumed; returns what arrived, short of the blank line if the peer closed first.
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// An address nothing listens on: bound, then released.
pub fn dead_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// An address where connecting neither succeeds nor fails: a listener whose accept queue is
/// full and never drained, so further SYNs are dropped until the connect times out. Hold the
/// returned sockets for as long as the address must stay that way.
pub fn black_hole() -> (SocketAddr, Vec<socket2::Socket>) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut sockets = vec![socket];
    for _ in 0..8 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&addr.into());
        sockets.push(s);
    }
    (addr, sockets)
}

/// `data` gzip-encoded, for upstreams that send `Content-Encoding: gzip`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A deterministic pseudo-random byte stream (xorshift), so the origin and a checking client
/// can produce the same body from a seed without shipping it around.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    // Printable, so failures print readably and no byte is special to a text rule.
    for b in &mut out {
        *b = b'a' + (*b % 26);
    }
    out
}
