//! Harnesses for the failure and attack catalogue (`shared/reliability.md` §3, §4.3): an evil
//! origin that misbehaves by path and records everything it receives, a byte-exact raw client
//! that reports whether the connection was closed, a canary listener that must never be
//! contacted, and the liveness check every catalogue row ends with.
//!
//! Shared by the `tests/catalogue_*.rs` files through `mod support;`. It depends on nothing in
//! `tests/common` so that either can change without the other.
#![allow(dead_code)]

pub mod client;
pub mod origin;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use client::*;
pub use origin::*;

/// Generous bound for anything that should happen promptly; loose enough for a loaded CI box.
pub const WAIT: Duration = Duration::from_secs(10);

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

/// A listener on another loopback address that counts the connections it accepts. A test that
/// points a request at it asserts the count stays zero: candor never connects anywhere but its
/// configured upstream.
pub struct Canary {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Canary {
    /// Binds 127.0.0.2:0 (any loopback address works on Linux), falling back to 127.0.0.1.
    pub async fn start() -> Canary {
        let listener = match TcpListener::bind("127.0.0.2:0").await {
            Ok(listener) => listener,
            Err(_) => TcpListener::bind("127.0.0.1:0").await.unwrap(),
        };
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        Canary { addr, accepted }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// An address nothing listens on: bound, then released.
pub fn dead_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
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
