//! Telling the service manager what candor is doing: systemd's notification protocol
//! (`sd_notify(3)`), spoken when `NOTIFY_SOCKET` is set, so a `Type=notify` unit is "started" only
//! once candor serves, "reloading" while it loads a config, and "stopping" once it drains.
//!
//! The protocol is one datagram of `KEY=value` lines sent to a Unix socket whose address is in
//! `NOTIFY_SOCKET`: a path, or with a leading `@` a name in Linux's abstract namespace (systemd
//! uses those for containers and user instances). That is the whole of it, written here in a few
//! lines: the `sd-notify` crate (0.5) connects to `@name` as if it were a file and so cannot
//! reach an abstract socket.
//!
//! `lib.rs` sends `READY=1` once the workers accept and `STOPPING=1` when shutdown begins;
//! `reload` sends `RELOADING=1` (with `MONOTONIC_USEC`, which systemd 253 and later require
//! beside it) before it loads a config and `READY=1` after, whatever the outcome (a refused
//! config leaves the running one serving); after `STOPPING=1` nothing says ready again. A failed
//! send is logged and otherwise ignored: the service manager is an observer, never a reason to
//! stop serving.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Where notifications go: `NOTIFY_SOCKET`'s address, or nowhere when it is unset. Clones share
/// one state: once `STOPPING=1` is sent, no clone sends `READY=1` again (a reload during
/// `server.shutdown_delay` must not tell systemd that a stopping candor is ready).
#[derive(Debug, Clone, Default)]
pub(crate) struct Notifier {
    socket: Option<SocketAddr>,
    stopping: Arc<AtomicBool>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket); an unset, empty or
    /// unusable value sends nothing.
    pub(crate) fn from_env() -> Notifier {
        let Some(value) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier::default();
        };
        let socket = address(&value);
        if socket.is_none() && !value.is_empty() {
            tracing::warn!(
                notify_socket = %value.to_string_lossy(),
                "NOTIFY_SOCKET is not a usable socket address; not notifying the service manager"
            );
        }
        Notifier {
            socket,
            stopping: Arc::default(),
        }
    }

    /// `READY=1`: serving (after start, and after every reload); `status` is what
    /// `systemctl status` shows.
    pub(crate) fn ready(&self, status: &str) {
        if self.stopping.load(Ordering::Acquire) {
            return;
        }
        self.send(&format!("READY=1\nSTATUS={status}\n"));
    }

    /// `RELOADING=1`: loading a new configuration. systemd 253 and later want the monotonic
    /// clock beside it, to tell this reload from an earlier one.
    pub(crate) fn reloading(&self) {
        if self.socket.is_none() || self.stopping.load(Ordering::Acquire) {
            return;
        }
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let usec = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000;
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading the configuration\n"
        ));
    }

    /// `STOPPING=1`: shutdown has begun.
    pub(crate) fn stopping(&self) {
        self.stopping.store(true, Ordering::Release);
        self.send("STOPPING=1\nSTATUS=shutting down\n");
    }

    fn send(&self, message: &str) {
        let Some(socket) = &self.socket else {
            return;
        };
        let sent = UnixDatagram::unbound().and_then(|s| s.send_to_addr(message.as_bytes(), socket));
        if let Err(err) = sent {
            tracing::warn!(error = %err, "cannot notify the service manager");
        }
    }
}

/// What `systemctl status` shows while candor serves: where it listens and what it proxies to.
pub(crate) fn serving(
    upstream: &http::Uri,
    listen: std::net::SocketAddr,
    admin: std::net::SocketAddr,
) -> String {
    format!("proxying {listen} to {upstream}, admin on {admin}")
}

/// `NOTIFY_SOCKET`'s value as an address: `@name` is abstract, anything else a path.
fn address(value: &std::ffi::OsStr) -> Option<SocketAddr> {
    match value.as_bytes().split_first() {
        None => None,
        Some((b'@', name)) => SocketAddr::from_abstract_name(name).ok(),
        Some(_) => SocketAddr::from_pathname(std::path::Path::new(value)).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_is_one_datagram_of_lines_to_the_socket() {
        let path = std::env::temp_dir().join(format!("candor-sd-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let receiver = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier {
            socket: Some(SocketAddr::from_pathname(&path).unwrap()),
            stopping: Arc::default(),
        };
        let mut buf = [0u8; 512];
        let mut next = || {
            let n = receiver.recv(&mut buf).unwrap();
            String::from_utf8(buf[..n].to_vec()).unwrap()
        };
        notifier.ready("serving");
        assert_eq!(next(), "READY=1\nSTATUS=serving\n");
        notifier.reloading();
        let reloading = next();
        let usec = reloading
            .lines()
            .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
            .and_then(|v| v.parse::<u64>().ok());
        assert!(reloading.starts_with("RELOADING=1\n"), "{reloading}");
        assert!(usec.is_some_and(|usec| usec > 0), "{reloading}");
        notifier.stopping();
        assert!(next().starts_with("STOPPING=1\n"));
        // A reload while stopping says nothing: the next datagram is the one sent after it.
        notifier.clone().reloading();
        notifier.clone().ready("serving");
        notifier.stopping();
        assert!(next().starts_with("STOPPING=1\n"));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn notify_socket_is_a_path_or_an_abstract_name() {
        let shown = |value: &str| match address(std::ffi::OsStr::new(value)) {
            None => "none".to_owned(),
            Some(a) => match (a.as_pathname(), a.as_abstract_name()) {
                (Some(path), _) => format!("path {}", path.display()),
                (_, Some(name)) => format!("abstract {}", String::from_utf8_lossy(name)),
                _ => "unnamed".to_owned(),
            },
        };
        let long = format!("/{}", "x".repeat(200));
        let cases = [
            ("/run/systemd/notify", "path /run/systemd/notify"),
            (
                "@/org/freedesktop/systemd1/notify/42",
                "abstract /org/freedesktop/systemd1/notify/42",
            ),
            ("", "none"),
            // Longer than a Unix socket address holds (108 bytes).
            (&long, "none"),
        ];
        for (value, want) in cases {
            assert_eq!(shown(value), want, "{value:?}");
        }
    }
}
