//! Per-connection limits hyper does not enforce: how many client connections are open at once,
//! and how long a write to a client that stopped reading may wait.
//!
//! Without the write timeout a client that never reads (a "slow read" attack) holds its
//! connection, the upstream connection behind it and their buffers for as long as it likes;
//! without the cap, enough idle connections exhaust file descriptors and memory.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::guard::IdleTimer;

/// Counts the client connections open across workers.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    open: AtomicUsize,
    /// The most open at once since [`Gate::restart_high`] (`memory` trims after bursts).
    high: AtomicUsize,
    gauge: prometheus_client::metrics::gauge::Gauge,
}

impl Gate {
    /// A gate reporting the open connections in `gauge`.
    pub(crate) fn new(gauge: prometheus_client::metrics::gauge::Gauge) -> Self {
        Gate {
            open: AtomicUsize::new(0),
            high: AtomicUsize::new(0),
            gauge,
        }
    }

    /// Admits a connection if fewer than `max` are open; the ticket lets it out when dropped.
    pub(crate) fn admit(self: &Arc<Self>, max: usize) -> Option<Ticket> {
        let admitted = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < max).then_some(open + 1)
            });
        let open = admitted.ok()? + 1;
        self.high.fetch_max(open, Ordering::AcqRel);
        self.gauge.inc();
        Some(Ticket { gate: self.clone() })
    }

    /// The most connections open at once since [`Gate::restart_high`] (or since the gate was
    /// made).
    pub(crate) fn high(&self) -> usize {
        self.high.load(Ordering::Acquire)
    }

    /// Starts the next high-point period at the count open now.
    pub(crate) fn restart_high(&self) {
        self.high.store(self.open(), Ordering::Release);
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// One admitted connection; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Ticket {
    gate: Arc<Gate>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.open.fetch_sub(1, Ordering::AcqRel);
        self.gate.gauge.dec();
    }
}

/// An I/O stream whose writes fail with `TimedOut` when they make no progress for `timeout`.
///
/// The timer is allocated the first time a write has to wait and re-armed after each write that
/// goes through, so a client that reads promptly costs nothing.
#[derive(Debug)]
pub(crate) struct WriteTimeout<IO> {
    io: IO,
    idle: IdleTimer,
}

impl<IO> WriteTimeout<IO> {
    /// Wraps `io`.
    pub(crate) fn new(io: IO, timeout: Duration) -> Self {
        WriteTimeout {
            io,
            idle: IdleTimer::new(timeout),
        }
    }

    fn on_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.idle.poll_stalled(cx).map(|()| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not read the response in time",
            ))
        })
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteTimeout<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Pending => self.on_pending(cx).map(|r| r.map(|()| 0)),
            ready => {
                self.idle.progress();
                ready
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.on_pending(cx).map(|r| r.map(|()| 0)),
            ready => {
                self.idle.progress();
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Pending => self.on_pending(cx),
            ready => {
                self.idle.progress();
                ready
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_admits_up_to_the_cap_and_frees_places() {
        let gate = Arc::new(Gate::default());
        let a = gate.admit(2).unwrap();
        let _b = gate.admit(2).unwrap();
        assert!(gate.admit(2).is_none());
        drop(a);
        assert_eq!(gate.open(), 1);
        assert!(gate.admit(2).is_some());
    }

    #[test]
    fn the_gate_remembers_its_high_point_until_restarted() {
        let gate = Arc::new(Gate::default());
        let tickets: Vec<_> = (0..5).map(|_| gate.admit(10).unwrap()).collect();
        drop(tickets);
        let _one = gate.admit(10).unwrap();
        // Five were open at once although one is open now; a refused admission is no high.
        assert!(gate.admit(1).is_none());
        assert_eq!(gate.high(), 5);
        // The next period starts at what is open now.
        gate.restart_high();
        assert_eq!(gate.high(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_cannot_proceed_times_out() {
        // A duplex whose reader never reads: writes fill its buffer and then wait forever.
        let (client, _server) = tokio::io::duplex(16);
        let mut io = WriteTimeout::new(client, Duration::from_secs(5));
        use tokio::io::AsyncWriteExt;
        let err = io.write_all(&[0u8; 64]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn writes_that_proceed_never_time_out() {
        let (client, mut server) = tokio::io::duplex(16);
        let mut io = WriteTimeout::new(client, Duration::from_secs(5));
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            let mut total = 0;
            while total < 4096 {
                // A slow but steady reader: 8 bytes every second, below the 5 s timeout.
                tokio::time::sleep(Duration::from_secs(1)).await;
                total += server.read(&mut buf).await.unwrap();
            }
        });
        io.write_all(&[1u8; 4096]).await.unwrap();
        reader.await.unwrap();
    }
}
