//! `candor demo`: an embedded legacy API on loopback with candor in front, and a before/after
//! table of what candor does to each of its anti-patterns.
//!
//! `--audit` walks from zero rules to the rules audit proposes instead (`audit.rs`).
//!
//! The demo runs the real thing: the same `crate::run` as `candor run`, with the rules of the
//! given config file. Only the upstream is replaced (by the embedded API) and `upstream.timeout`
//! shortened to one second so the hanging endpoint answers promptly.

mod audit;
pub(crate) mod legacy;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tower::BoxError;

use crate::config;
use crate::headers::PROXY_STATUS;
use crate::Listeners;

use self::legacy::{Case, CASES};

/// The upstream timeout the demo runs with.
const DEMO_TIMEOUT: &str = "1s";
/// How long the table waits for the legacy API itself before calling it hung.
const DIRECT_TIMEOUT: Duration = Duration::from_millis(1500);

/// Runs the demo. With `once`, prints the table and returns; otherwise keeps both servers up
/// until `shutdown` completes.
pub(crate) async fn run(
    config_path: &Path,
    once: bool,
    audit: bool,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BoxError> {
    // Fixed, memorable ports when serving (so the printed curl commands are short), falling back
    // to free ones; always free ones for `--once`, which must never collide with anything.
    let legacy_listener = bind_preferring(once, "127.0.0.1:3000").await?;
    let legacy_addr = legacy_listener.local_addr()?;
    tokio::spawn(legacy::serve(legacy_listener));
    if audit {
        // The walkthrough runs its own candors, with no rules and then the proposed ones.
        return audit::walkthrough(legacy_addr).await;
    }

    let env = HashMap::from([
        (
            "CANDOR__UPSTREAM__URL".to_owned(),
            format!("http://{legacy_addr}"),
        ),
        (
            "CANDOR__UPSTREAM__TIMEOUT".to_owned(),
            DEMO_TIMEOUT.to_owned(),
        ),
    ]);
    let config = config::load_with_env(config_path, env)?;
    let listeners = bind_candor(once, &config.server)?;
    let candor_addr = listeners.proxy_addr()?;
    let admin_addr = listeners.admin_addr()?;

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::run(config, listeners, async move {
        let _ = stopped.await;
    }));

    let mut rows = table(legacy_addr, candor_addr).await;
    rows.extend(maintenance(legacy_addr, candor_addr, admin_addr).await);
    print_table(&rows);
    if !once {
        println!();
        println!("legacy API  http://{legacy_addr}");
        println!("candor      http://{candor_addr}   (admin http://{admin_addr}/metrics)");
        println!();
        println!("try:  curl -i http://{candor_addr}/users/7");
        println!("      curl -i http://{legacy_addr}/users/7");
        println!("      curl -i -X POST http://{candor_addr}/accounts");
        println!(
            "      curl -X PUT -d '{{\"enabled\":true}}' -H 'content-type: application/json' http://{admin_addr}/maintenance"
        );
        println!("Ctrl-C stops the demo.");
        shutdown.await;
    }
    let _ = stop.send(());
    server.await??;
    Ok(())
}

async fn bind_preferring(once: bool, preferred: &str) -> std::io::Result<TcpListener> {
    if !once {
        if let Ok(listener) = TcpListener::bind(preferred).await {
            return Ok(listener);
        }
    }
    TcpListener::bind("127.0.0.1:0").await
}

fn bind_candor(once: bool, server: &config::Server) -> Result<Listeners, crate::RunError> {
    let any: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    if !once {
        if let Ok(listeners) = Listeners::bind_to(server.listen, server.admin_listen) {
            return Ok(listeners);
        }
    }
    Listeners::bind_to(any, any)
}

/// One line of the table.
#[derive(Debug)]
pub(crate) struct Row {
    case: Case,
    upstream: Option<StatusCode>,
    candor: Option<StatusCode>,
    /// The header the case shows, as candor sent it (`Location: /accounts/77`), or empty.
    header: String,
    note: String,
}

async fn table(legacy: SocketAddr, candor: SocketAddr) -> Vec<Row> {
    // All rows at once, so the table takes as long as its slowest row (the hanging endpoint).
    let tasks: Vec<_> = CASES
        .iter()
        .map(|case| tokio::spawn(row(*case, legacy, candor)))
        .collect();
    let mut rows = Vec::with_capacity(tasks.len());
    for (task, case) in tasks.into_iter().zip(CASES) {
        rows.push(task.await.unwrap_or_else(|_| Row {
            case: *case,
            upstream: None,
            candor: None,
            header: String::new(),
            note: "demo client failed".to_owned(),
        }));
    }
    rows
}

/// A deploy: maintenance switched on through the admin API (`PUT /maintenance`, allowed from
/// loopback), a request answered by candor itself, then switched off and answered by the app.
/// After the other rows, because it changes what every request gets.
async fn maintenance(legacy: SocketAddr, candor: SocketAddr, admin: SocketAddr) -> Vec<Row> {
    let mut rows = Vec::with_capacity(2);
    for on in [true, false] {
        let case = if on {
            Case::new("GET", "/users/42", "deploy: PUT /maintenance on").showing("retry-after")
        } else {
            Case::new("GET", "/users/42", "deploy over: maintenance off")
        };
        let switched = switch_maintenance(admin, on).await;
        let mut row = row(case, legacy, candor).await;
        row.note = match (switched, on) {
            (Ok(()), true) => "maintenance mode (candor answers, no upstream call)".to_owned(),
            (Ok(()), false) => row.note,
            (Err(err), _) => format!("admin API: {err}"),
        };
        rows.push(row);
    }
    rows
}

/// Switches maintenance mode on (for ten minutes, as a deploy would announce) or off.
async fn switch_maintenance(admin: SocketAddr, on: bool) -> Result<(), BoxError> {
    let body = if on {
        r#"{"enabled":true,"retry_after":"10m","detail":"Deploying a new version."}"#
    } else {
        r#"{"enabled":false}"#
    };
    let request = Request::builder()
        .method(Method::PUT)
        .uri("/maintenance")
        .header("host", admin.to_string())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))?;
    let (status, _, _) = send(admin, request).await?;
    if status != StatusCode::OK {
        return Err(format!("PUT /maintenance answered {status}").into());
    }
    Ok(())
}

async fn row(case: Case, legacy: SocketAddr, candor: SocketAddr) -> Row {
    let (direct, proxied) = tokio::join!(
        tokio::time::timeout(DIRECT_TIMEOUT, fetch(legacy, &case)),
        tokio::time::timeout(Duration::from_secs(5), fetch(candor, &case)),
    );
    let upstream = match direct {
        Ok(Ok((status, _, _))) => Some(status),
        _ => None,
    };
    let (candor, header, note) = match proxied {
        Ok(Ok((status, headers, body))) => (
            Some(status),
            shown(&case, &headers, &body),
            explain(&headers),
        ),
        Ok(Err(err)) => (None, String::new(), format!("error: {err}")),
        Err(_) => (None, String::new(), "no answer".to_owned()),
    };
    Row {
        case,
        upstream,
        candor,
        header,
        note,
    }
}

/// Longest member text shown in the table.
const MAX_SHOWN: usize = 44;

/// What a case shows: its header as `Name: value` (`Name: (none)` when candor did not send it),
/// or the problem members it keeps, as compact JSON.
fn shown(case: &Case, headers: &HeaderMap, body: &[u8]) -> String {
    let Some(name) = case.shows else {
        let doc: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let members: Vec<String> = case
            .members
            .iter()
            .map(|m| {
                format!(
                    "\"{m}\":{}",
                    doc.get(m).map_or("(none)".into(), |v| v.to_string())
                )
            })
            .collect();
        let mut text = members.join(",");
        if let Some((at, _)) = text.char_indices().nth(MAX_SHOWN) {
            text.truncate(at);
            text.push('…');
        }
        return text;
    };
    let title: String = name
        .split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or(String::new(), |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join("-");
    let title = title.replace("Www", "WWW");
    match headers.get(name).and_then(|v| v.to_str().ok()) {
        Some(value) => format!("{title}: {value}"),
        None => format!("{title}: (none)"),
    }
}

/// What candor did, from the headers it adds: the rule that rewrote the response, or the failure
/// it answered for the upstream.
fn explain(headers: &HeaderMap) -> String {
    if let Some(rule) = headers.get("x-candor-rule").and_then(|v| v.to_str().ok()) {
        return format!("rule {rule}");
    }
    if let Some(status) = headers.get(&PROXY_STATUS).and_then(|v| v.to_str().ok()) {
        let error = status.split("error=").nth(1).unwrap_or(status);
        return format!("upstream failure: {error}");
    }
    "passed through".to_owned()
}

fn print_table(rows: &[Row]) {
    let status = |s: Option<StatusCode>| s.map_or("-".to_owned(), |s| s.as_u16().to_string());
    let width = rows
        .iter()
        .map(|r| r.header.chars().count())
        .max()
        .unwrap_or(0)
        .max(7);
    let path = rows
        .iter()
        .map(|r| r.case.path.len())
        .max()
        .unwrap_or(0)
        .max(4);
    println!(
        "{:<7} {:<path$} {:<31} {:>8}  {:>6}  {:<width$}  WHY",
        "METHOD", "PATH", "LEGACY API DOES", "UPSTREAM", "CANDOR", "CARRIES"
    );
    for row in rows {
        let upstream = match row.upstream {
            Some(s) => s.as_u16().to_string(),
            None => "hangs".to_owned(),
        };
        println!(
            "{:<7} {:<path$} {:<31} {:>8}  {:>6}  {:<width$}  {}",
            row.case.method,
            row.case.path,
            row.case.what,
            upstream,
            status(row.candor),
            row.header,
            row.note
        );
    }
}

/// One request on a fresh connection; returns the status, headers and body.
async fn fetch(addr: SocketAddr, case: &Case) -> Result<(StatusCode, HeaderMap, Bytes), BoxError> {
    let body = match case.method {
        "POST" => Bytes::from_static(br#"{"quantity":-1}"#),
        "PUT" => Bytes::from_static(br#"{"version":3,"title":"draft"}"#),
        _ => Bytes::new(),
    };
    let mut request = Request::builder()
        .method(Method::from_bytes(case.method.as_bytes())?)
        .uri(case.path)
        .header("host", addr.to_string())
        .header("accept", "application/json")
        .header("content-type", "application/json");
    for (name, value) in case.headers {
        request = request.header(*name, *value);
    }
    send(addr, request.body(Full::new(body))?).await
}

/// Sends `request` on a fresh connection to `addr`; returns the status, headers and body.
async fn send(
    addr: SocketAddr,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, HeaderMap, Bytes), BoxError> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let response = sender.send_request(request).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok((parts.status, parts.headers, body))
}
