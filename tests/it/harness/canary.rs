//! The canary: a listener on another loopback address that counts the connections it accepts. A
//! test that points a request at it asserts the count stays zero: candor never connects anywhere
//! but its configured upstream.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;

/// A listener that must never be contacted.
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
