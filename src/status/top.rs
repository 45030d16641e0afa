//! `candor top`: the status page in a terminal, for someone who ssh'd into a node.
//!
//! Polls `/status.json` on the admin listener once a second with a bare hyper HTTP/1.1
//! connection and redraws the screen with ANSI escapes (cursor home, clear to end of line and
//! of screen), on the terminal's alternate screen so Ctrl-C leaves the shell as it was. No TUI
//! crate: the frame is plain text, and `terminal_size` only tells how much of it fits.
//!
//! If the admin address does not answer at first, `top` says so and exits 1; if it stops
//! answering later (candor restarting), the last frame stays with the error above it and
//! polling goes on.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, HOST};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::Snapshot;

/// How often the view refreshes.
const REFRESH: Duration = Duration::from_secs(1);
/// How long one poll may take, connect included.
const POLL_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest `/status.json` accepted (a snapshot is a few tens of KiB).
const MAX_BODY: usize = 4 << 20;
/// Recent rewrites shown when the terminal's height is unknown (`--once`, a pipe).
const RECENT_ROWS: usize = 20;

/// Enter the alternate screen and hide the cursor.
const ENTER: &str = "\x1b[?1049h\x1b[?25l";
/// Show the cursor and leave the alternate screen.
const LEAVE: &str = "\x1b[?25h\x1b[?1049l";

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    /// Nothing accepted the connection.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The admin address.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The exchange failed at the HTTP level.
    #[error("{0}")]
    Http(#[from] hyper::Error),
    /// The body was unreadable or too large.
    #[error("reading the answer: {0}")]
    Body(String),
    /// No answer within the poll timeout (2 s).
    #[error("no answer within {}s", POLL_TIMEOUT.as_secs())]
    Timeout,
    /// An answer, but not a 200.
    #[error("/status.json answered {0} (is this a candor older than the status page?)")]
    Status(StatusCode),
    /// A 200 that is not a status document.
    #[error("/status.json is not a status document: {0}")]
    Json(#[from] serde_json::Error),
}

/// Runs `candor top` against `admin` (`HOST:PORT`, an `http://` prefix allowed).
pub async fn run(
    admin: &str,
    once: bool,
    shutdown: impl std::future::Future<Output = ()>,
) -> ExitCode {
    let addr = admin
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut snapshot = match fetch(&addr).await {
        Ok(snapshot) => snapshot,
        Err(err) => {
            eprintln!(
                "error: candor's admin endpoint at {addr} does not answer: {err}\n\
                 (is candor running? --admin sets the address, server.admin_listen in its config)"
            );
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    if once {
        let _ = stdout.write_all(render(&snapshot, &addr, None, None).as_bytes());
        return ExitCode::SUCCESS;
    }

    let tty = stdout.is_terminal();
    if tty {
        let _ = stdout.write_all(ENTER.as_bytes());
    }
    let mut error: Option<String> = None;
    tokio::pin!(shutdown);
    loop {
        let size = if tty {
            terminal_size::terminal_size().map(|(w, h)| (usize::from(w.0), usize::from(h.0)))
        } else {
            None
        };
        let frame = render(&snapshot, &addr, size, error.as_deref());
        let _ = if tty {
            // Home, the frame with each line cleared past its end, then clear the rest.
            let frame = frame.replace('\n', "\x1b[K\n");
            write!(stdout, "\x1b[H{frame}\x1b[J")
        } else {
            writeln!(stdout, "{frame}")
        };
        let _ = stdout.flush();
        tokio::select! {
            _ = tokio::time::sleep(REFRESH) => {}
            _ = &mut shutdown => break,
        }
        tokio::select! {
            polled = fetch(&addr) => match polled {
                Ok(next) => {
                    snapshot = next;
                    error = None;
                }
                Err(err) => error = Some(err.to_string()),
            },
            _ = &mut shutdown => break,
        }
    }
    if tty {
        let _ = stdout.write_all(LEAVE.as_bytes());
        let _ = stdout.flush();
    }
    ExitCode::SUCCESS
}

/// GETs `/status.json` from `addr`.
pub async fn fetch(addr: &str) -> Result<Snapshot, TopError> {
    tokio::time::timeout(POLL_TIMEOUT, async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| TopError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let conn = tokio::spawn(conn);
        let request = Request::get("/status.json")
            .header(HOST, addr)
            .header(ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|err| TopError::Body(err.to_string()))?;
        let response = sender.send_request(request).await?;
        if response.status() != StatusCode::OK {
            conn.abort();
            return Err(TopError::Status(response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|err| TopError::Body(err.to_string()))?
            .to_bytes();
        conn.abort();
        Ok(serde_json::from_slice(&body)?)
    })
    .await
    .unwrap_or(Err(TopError::Timeout))
}

/// One frame of `candor top`: `size` is the terminal's (columns, rows) when known, `error` the
/// last poll's failure. Every line ends in `\n`; text from the snapshot has its control
/// characters replaced, so a client-chosen path cannot drive the terminal.
pub fn render(
    snap: &Snapshot,
    admin: &str,
    size: Option<(usize, usize)>,
    error: Option<&str>,
) -> String {
    let mut out = String::new();
    if let Some(error) = error {
        let _ = writeln!(
            out,
            "! no answer from {admin}, figures as of {} UTC: {}",
            time_of_day(&snap.generated_at),
            clean(error)
        );
    }
    if let Some(m) = snap.maintenance.as_ref().filter(|m| m.state.enabled) {
        let except = if m.state.except_paths.is_empty() {
            String::new()
        } else {
            format!(" except {}", clean(&m.state.except_paths.join(", ")))
        };
        let _ = writeln!(
            out,
            "!!! MAINTENANCE MODE ON: every request{except} answered 503, Retry-After {}s \
             (set by {} at {}, {} answered)",
            m.state.retry_after_seconds,
            match m.state.source {
                crate::maintenance::Source::Config => "config",
                crate::maintenance::Source::Admin => "admin",
            },
            clean(&m.state.since),
            m.responses,
        );
    }
    let _ = writeln!(
        out,
        "candor {} at {admin}   up {}   {} UTC   (Ctrl-C quits)",
        clean(&snap.version),
        uptime(snap.uptime_seconds),
        time_of_day(&snap.generated_at),
    );
    let _ = writeln!(
        out,
        "config    {}, loaded {}",
        clean(&snap.config.origin),
        clean(&snap.config.loaded_at)
    );
    match &snap.upstream_limit {
        Some(load) => {
            let _ = writeln!(
                out,
                "upstream  {}   {} in flight / limit {}   {} queued",
                clean(&snap.config.upstream),
                load.in_flight,
                load.limit,
                load.queue_depth
            );
        }
        None => {
            let _ = writeln!(out, "upstream  {}", clean(&snap.config.upstream));
        }
    }
    let by_status: Vec<String> = snap
        .requests
        .by_status
        .iter()
        .map(|(status, n)| format!("{}: {n}", clean(status)))
        .collect();
    let _ = writeln!(
        out,
        "requests  {} total   {}",
        snap.requests.total,
        by_status.join("  ")
    );
    let pairs = |map: &std::collections::BTreeMap<String, u64>| {
        map.iter()
            .map(|(k, n)| format!("{} {n}", clean(k)))
            .collect::<Vec<_>>()
            .join("  ")
    };
    let _ = writeln!(out, "upstream failures  {}", pairs(&snap.upstream_failures));
    let _ = writeln!(out, "not inspected      {}", pairs(&snap.inspect_skipped));

    out.push('\n');
    let names: Vec<String> = snap
        .rules
        .iter()
        .map(|r| {
            let name = clean(&r.name);
            if r.builtin {
                format!("{name} (built-in)")
            } else {
                name
            }
        })
        .collect();
    let width = names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let _ = writeln!(
        out,
        "{:<width$}  {:<8} {:>8} {:>8}",
        "RULE", "MODE", "ENFORCE", "SHADOW"
    );
    for (rule, name) in snap.rules.iter().zip(&names) {
        let _ = writeln!(
            out,
            "{name:<width$}  {:<8} {:>8} {:>8}",
            clean(&rule.mode),
            rule.enforce,
            rule.shadow
        );
    }

    out.push('\n');
    let _ = writeln!(
        out,
        "{:<5} {:<5} {:<8} {:>8}",
        "FROM", "TO", "MODE", "REWRITES"
    );
    if snap.rewrites.is_empty() {
        let _ = writeln!(out, "(no rewrites yet)");
    }
    for t in &snap.rewrites {
        let _ = writeln!(
            out,
            "{:<5} {:<5} {:<8} {:>8}",
            t.from,
            t.to,
            clean(&t.mode),
            t.count
        );
    }

    out.push('\n');
    // The two header lines below, and one spare so the last newline does not scroll.
    let used = out.lines().count() + 3;
    let rows = match size {
        Some((_, height)) => height.saturating_sub(used).max(3),
        None => RECENT_ROWS,
    };
    let shown = snap.recent.len().min(rows);
    let _ = writeln!(
        out,
        "RECENT REWRITES, newest first ({shown} of {})",
        snap.recent.len()
    );
    let recent: Vec<[String; 8]> = snap
        .recent
        .iter()
        .take(shown)
        .map(|e| {
            [
                time_of_day(&e.time),
                clean(&e.method),
                clean(&e.path),
                e.from.to_string(),
                e.to.to_string(),
                clean(&e.rule),
                clean(&e.mode),
                clean(&e.request_id),
            ]
        })
        .collect();
    let header = [
        "TIME",
        "METHOD",
        "PATH",
        "FROM",
        "TO",
        "RULE",
        "MODE",
        "REQUEST ID",
    ];
    let mut widths = header.map(str::len);
    for row in &recent {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // The path gives way first when the terminal is narrow.
    if let Some((columns, _)) = size {
        let others: usize = widths
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 2)
            .map(|(_, w)| w + 2)
            .sum();
        widths[2] = widths[2].min(columns.saturating_sub(others).max(12));
    }
    let line = |cells: &[String]| {
        let mut line = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let cell = truncate(cell, w);
            if i + 1 == cells.len() {
                line.push_str(&cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        line
    };
    let _ = writeln!(out, "{}", line(&header.map(str::to_owned)));
    if recent.is_empty() {
        let _ = writeln!(out, "(no rewrites yet)");
    }
    for row in &recent {
        let _ = writeln!(out, "{}", line(row));
    }

    match size {
        Some((columns, _)) => out
            .lines()
            .map(|l| format!("{}\n", truncate(l, columns)))
            .collect(),
        None => out,
    }
}

/// `text` with every control character (C0, DEL, C1: terminal escapes) shown as `?`.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// At most `width` characters of `text`, ending in `…` when cut.
fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `06:00:01.123` from `2026-11-26T06:00:01.123Z`.
fn time_of_day(rfc3339: &str) -> String {
    let time = rfc3339.split_once('T').map_or(rfc3339, |(_, t)| t);
    clean(time.trim_end_matches('Z'))
}

fn uptime(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds % 86_400 / 3600,
        seconds % 3600 / 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m {s}s"),
        _ => format!("{d}d {h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{ConfigSummary, RecentRewrite, Requests, RuleCounts, Transition};

    fn snapshot() -> Snapshot {
        Snapshot {
            version: "0.1.0".into(),
            generated_at: "2026-11-26T06:00:01Z".into(),
            started_at: "2026-11-26T05:00:00Z".into(),
            uptime_seconds: 3601,
            config: ConfigSummary {
                origin: "config/candor.toml".into(),
                summary: "config/candor.toml: ok".into(),
                loaded_at: "2026-11-26T05:00:00Z".into(),
                upstream: "http://127.0.0.1:3000".into(),
                rules: Vec::new(),
            },
            requests: Requests {
                total: 12,
                by_status: [("200".into(), 5), ("404".into(), 7)].into(),
            },
            rules: vec![
                RuleCounts {
                    name: "user-not-found".into(),
                    mode: "enforce".into(),
                    builtin: false,
                    enforce: 7,
                    shadow: 0,
                },
                RuleCounts {
                    name: "scrub".into(),
                    mode: "enforce".into(),
                    builtin: true,
                    enforce: 0,
                    shadow: 0,
                },
            ],
            rewrites: vec![Transition {
                from: 200,
                to: 404,
                mode: "enforce".into(),
                count: 7,
            }],
            upstream_failures: [("connect".into(), 0)].into(),
            upstream_limit: Some(crate::status::UpstreamLimit {
                in_flight: 3,
                limit: 4,
                queue_depth: 9,
            }),
            inspect_skipped: [("too_large".into(), 0)].into(),
            maintenance: None,
            audit: None,
            recent: (0..30)
                .rev()
                .map(|i| RecentRewrite {
                    time: format!("2026-11-26T06:00:{i:02}.000Z"),
                    method: "GET".into(),
                    path: format!("/users/{i}\x1b[2J"),
                    from: 200,
                    to: 404,
                    rule: "user-not-found".into(),
                    mode: "enforce".into(),
                    request_id: format!("req-{i}"),
                })
                .collect(),
        }
    }

    #[test]
    fn a_frame_shows_the_counts_and_the_newest_rewrites() {
        let frame = render(&snapshot(), "127.0.0.1:9901", None, None);
        for needle in [
            "candor 0.1.0 at 127.0.0.1:9901   up 1h 0m 1s   06:00:01 UTC",
            "requests  12 total   200: 5  404: 7",
            "upstream  http://127.0.0.1:3000   3 in flight / limit 4   9 queued",
            "user-not-found    enforce         7        0",
            "scrub (built-in)  enforce         0        0",
            "200   404   enforce         7",
            "RECENT REWRITES, newest first (20 of 30)",
        ] {
            assert!(frame.contains(needle), "{needle:?} missing:\n{frame}");
        }
        let first = frame.lines().position(|l| l.contains("req-29")).unwrap();
        let second = frame.lines().position(|l| l.contains("req-28")).unwrap();
        assert!(first < second);
        assert!(
            !frame.contains("req-9 "),
            "older rows beyond 20 are left out"
        );
    }

    #[test]
    fn maintenance_mode_is_the_first_line_while_on() {
        let mut snap = snapshot();
        let state = crate::maintenance::View {
            enabled: true,
            retry_after: "10m".into(),
            retry_after_seconds: 600,
            detail: "Back soon.".into(),
            except_paths: vec!["^/healthz$".into()],
            source: crate::maintenance::Source::Admin,
            since: "2026-11-26T06:00:00Z".into(),
        };
        snap.maintenance = Some(crate::status::Maintenance {
            state: state.clone(),
            responses: 42,
        });
        let frame = render(&snap, "a", None, None);
        let first = frame.lines().next().unwrap_or("");
        assert!(
            first.starts_with("!!! MAINTENANCE MODE ON: every request except ^/healthz$ answered 503, Retry-After 600s (set by admin at 2026-11-26T06:00:00Z, 42 answered)"),
            "{frame}"
        );
        snap.maintenance = Some(crate::status::Maintenance {
            state: crate::maintenance::View {
                enabled: false,
                ..state
            },
            responses: 42,
        });
        assert!(!render(&snap, "a", None, None).contains("MAINTENANCE"));
    }

    #[test]
    fn client_text_cannot_reach_the_terminal_as_escapes() {
        let frame = render(&snapshot(), "a", None, Some("boom\x1b[31m"));
        assert!(!frame.contains('\x1b'), "{frame:?}");
        assert!(frame.contains("/users/29?[2J"));
        assert!(frame.starts_with("! no answer from a, figures as of 06:00:01 UTC: boom?[31m"));
    }

    #[test]
    fn a_small_terminal_gets_a_frame_that_fits() {
        let frame = render(&snapshot(), "127.0.0.1:9901", Some((60, 30)), None);
        assert!(frame.lines().count() <= 30, "{frame}");
        assert!(frame.lines().all(|l| l.chars().count() <= 60), "{frame}");
    }
}
