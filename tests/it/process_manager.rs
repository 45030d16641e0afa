//! What a process manager sees: systemd's notifications (`NOTIFY_SOCKET`: READY, RELOADING,
//! STOPPING) and `server.shutdown_delay` (after SIGTERM, `/readyz` fails while candor keeps
//! serving), on the built binary, signalled as systemd and Kubernetes signal it.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::Request;
use hyper_util::rt::TokioIo;

use crate::harness::*;

/// The longest any notification or state change may take to arrive.
const WAIT: Duration = Duration::from_secs(10);

/// A fresh path under the target's temporary directory.
fn temp_path(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "process-manager-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ))
}

/// A config on loopback port 0 for `upstream`, with `extra` lines in `[server]` and a rule
/// answering `status` (a reload changes it).
fn config_text(upstream: &str, extra: &str, status: u16) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nworkers = 1\n{extra}\n\
         [upstream]\nurl = \"{upstream}\"\n\n[[rules]]\nname = \"to-{status}\"\n\
         when.status = [200]\nthen.status = {status}\n"
    )
}

/// The service manager's end: a datagram socket that reads one notification at a time, each
/// read bounded by [`WAIT`].
struct Manager {
    socket: tokio::net::UnixDatagram,
}

impl Manager {
    fn new(socket: UnixDatagram) -> Manager {
        socket.set_nonblocking(true).unwrap();
        Manager {
            socket: tokio::net::UnixDatagram::from_std(socket).unwrap(),
        }
    }

    /// The next notification's lines.
    async fn next(&self) -> Vec<String> {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, self.socket.recv(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no notification within {WAIT:?}"))
            .unwrap();
        String::from_utf8(buf[..n].to_vec())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The next notification, which must carry `state` (`READY=1`, …).
    async fn expect(&self, state: &str) -> Vec<String> {
        let lines = self.next().await;
        assert!(
            lines.iter().any(|l| l == state),
            "expected {state}: {lines:?}"
        );
        lines
    }
}

/// Runs `candor run` on `text` with `NOTIFY_SOCKET` set to `notify_socket`.
fn run_notified(text: &str, notify_socket: &str) -> CandorProcess {
    let path = temp_path("candor.toml");
    std::fs::write(&path, text).unwrap();
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    CandorProcess::run(
        &name,
        &path,
        &["--no-watch"],
        &[("NOTIFY_SOCKET", notify_socket)],
    )
}

#[tokio::test]
async fn systemd_hears_ready_then_reloading_and_ready_on_sighup_then_stopping() {
    let up = upstream(|_req| async { response(200, "ok") }).await;
    let socket_path = temp_path("notify.sock");
    let manager = Manager::new(UnixDatagram::bind(&socket_path).unwrap());
    let running = run_notified(
        &config_text(&up.url(), "", 409),
        socket_path.to_str().unwrap(),
    );

    let ready = manager.expect("READY=1").await;
    let status = format!("STATUS=proxying {} to ", running.addr);
    assert!(ready.iter().any(|l| l.starts_with(&status)), "{ready:?}");
    assert_eq!(get(running.addr, "/").await.0, 409);

    std::fs::write(&running.config, config_text(&up.url(), "", 410)).unwrap();
    running.signal("HUP");
    let reloading = manager.expect("RELOADING=1").await;
    // systemd 253 and later refuse a RELOADING=1 without the monotonic clock beside it.
    let usec = reloading
        .iter()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(usec.is_some_and(|usec| usec > 0), "{reloading:?}");
    manager.expect("READY=1").await;
    // READY came after the swap: the new rule answers.
    assert_eq!(get(running.addr, "/").await.0, 410);

    // A config that does not validate: reloading, then ready again on the old config.
    std::fs::write(&running.config, "[upstream]\nurl = 3\n").unwrap();
    running.signal("HUP");
    manager.expect("RELOADING=1").await;
    let ready = manager.expect("READY=1").await;
    assert!(
        ready.iter().any(|l| l.contains("the last reload failed")),
        "{ready:?}"
    );
    assert_eq!(get(running.addr, "/").await.0, 410);

    running.signal("TERM");
    manager.expect("STOPPING=1").await;
    assert_eq!(running.wait(), 0);
    let _ = std::fs::remove_file(&socket_path);
}

#[tokio::test]
async fn an_abstract_notify_socket_is_reached_too() {
    let up = upstream(|_req| async { response(200, "ok") }).await;
    let name = format!("candor-test-notify-{}", std::process::id());
    let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let manager = Manager::new(UnixDatagram::bind_addr(&address).unwrap());
    let running = run_notified(&config_text(&up.url(), "", 409), &format!("@{name}"));
    manager.expect("READY=1").await;
    running.signal("TERM");
    manager.expect("STOPPING=1").await;
    assert_eq!(running.wait(), 0);
}

/// Polls `/readyz` until it answers `want`, within [`WAIT`].
async fn readyz_becomes(admin: std::net::SocketAddr, want: u16) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if get(admin, "/readyz").await.0 == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never answered {want}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn during_a_reloaded_shutdown_delay_readyz_fails_while_requests_still_succeed() {
    let up = upstream(|_req| async { response(200, "ok") }).await;
    let path = temp_path("candor.toml");
    std::fs::write(&path, config_text(&up.url(), "", 409)).unwrap();
    let running = CandorProcess::run("shutdown-delay", &path, &["--no-watch"], &[]);
    // The delay is read when SIGTERM comes, so a reload sets it. An hour: it cannot end by
    // itself while the test looks; a second SIGTERM ends it.
    std::fs::write(
        &path,
        config_text(&up.url(), "shutdown_delay = \"1h\"", 409),
    )
    .unwrap();
    running.signal("HUP");
    running.log_line("config reloaded").await;
    assert_eq!(get(running.admin, "/readyz").await.0, 200);
    // A keep-alive client, connected before SIGTERM.
    let (mut kept, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(connect(running.addr).await))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = |path: &str| {
        Request::get(path)
            .header("host", "candor")
            .body(full(""))
            .unwrap()
    };
    let first = kept.send_request(request("/")).await.unwrap();
    assert_eq!(collect(first).await.0, 409);

    running.signal("TERM");
    readyz_becomes(running.admin, 503).await;
    running
        .log_line("shutdown delayed; still serving while /readyz answers 503")
        .await;
    // New connections and the kept one are both still served, through the rules.
    assert_eq!(get(running.addr, "/new").await.0, 409);
    let again = kept.send_request(request("/kept")).await.unwrap();
    assert_eq!(collect(again).await.0, 409);

    running.signal("TERM");
    running
        .log_line("second signal; ending the shutdown delay")
        .await;
    assert_eq!(running.wait(), 0);
}

#[tokio::test]
async fn the_shutdown_delay_ends_by_itself_and_candor_exits_0() {
    let up = upstream(|_req| async { response(200, "ok") }).await;
    let path = temp_path("candor.toml");
    std::fs::write(
        &path,
        config_text(&up.url(), "shutdown_delay = \"200ms\"", 409),
    )
    .unwrap();
    let running = CandorProcess::run("shutdown-delay-ends", &path, &["--no-watch"], &[]);
    running.signal("TERM");
    running
        .log_line("shutdown delayed; still serving while /readyz answers 503")
        .await;
    running.log_line("stopped").await;
    assert_eq!(running.wait(), 0);
}
