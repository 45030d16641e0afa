//! Listening sockets: how every candor listener is bound, and a listener that follows the
//! socket of the live configuration (a reload that changes `server.listen` or
//! `server.admin_listen` brings a new one) and backs off when accepting fails.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// How long to wait after a failed accept (EMFILE and friends) before the next: the listener
/// stays readable, and retrying at once would spin.
const ACCEPT_BACK_OFF: Duration = Duration::from_millis(50);

/// Binds a listening socket the way every candor listener is bound.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    // A restarted candor must not wait for TIME_WAIT sockets of its predecessor.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// A tokio listener on one of the live configuration's sockets, moved when a reload brings
/// another.
#[derive(Debug)]
pub(crate) struct Following {
    listener: TcpListener,
    source: Arc<std::net::TcpListener>,
}

impl Following {
    /// Listens on `source` (inside the runtime that will accept on it).
    pub(crate) fn new(source: Arc<std::net::TcpListener>) -> io::Result<Self> {
        Ok(Following {
            listener: TcpListener::from_std(source.try_clone()?)?,
            source,
        })
    }

    /// Moves to `next` if it is another socket. Connections accepted on the old one carry on.
    pub(crate) fn follow(&mut self, next: &Arc<std::net::TcpListener>) -> io::Result<()> {
        if !Arc::ptr_eq(&self.source, next) {
            *self = Following::new(next.clone())?;
        }
        Ok(())
    }

    /// The next connection. A failed accept is returned; [`back_off`] after it.
    pub(crate) async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        self.listener.accept().await
    }
}

/// Logs a failed accept of the `role` listener and waits before the next one.
pub(crate) async fn back_off(err: io::Error, role: &'static str) {
    tracing::warn!(error = %err, role, "accept failed");
    tokio::time::sleep(ACCEPT_BACK_OFF).await;
}
