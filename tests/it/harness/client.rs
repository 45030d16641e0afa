//! Clients: hyper over a fresh HTTP/1.1 connection (`send`, `get`, `request`), and raw bytes
//! read back as text (`raw`, `connect`, `read_until_close`). Their connections are recorded for
//! the protocol lint (`capture`). The raw client that parses responses is [`super::raw`].

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{capture, full, Body};

/// Sends `req` on a fresh HTTP/1.1 connection.
pub async fn send(addr: SocketAddr, req: Request<Body>) -> Response<Incoming> {
    let stream = capture::Tap::new(
        TcpStream::connect(addr).await.unwrap(),
        capture::Side::Client,
        "send",
        &capture::test_name(),
    );
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn.with_upgrades());
    sender.send_request(req).await.unwrap()
}

/// GET `path` and collect the whole response.
pub async fn get(addr: SocketAddr, path: &str) -> (StatusCode, HeaderMap, Bytes) {
    let req = Request::get(path)
        .header("host", addr.to_string())
        .body(full(""))
        .unwrap();
    collect(send(addr, req).await).await
}

/// Collects a response.
pub async fn collect(response: Response<Incoming>) -> (StatusCode, HeaderMap, Bytes) {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, body)
}

/// Writes `request` on a fresh connection and reads until the peer closes or `deadline` passes.
/// Returns what was read and whether the connection was closed by the peer.
pub async fn raw(addr: SocketAddr, request: &[u8], deadline: Duration) -> (String, bool) {
    let mut stream = capture::Tap::new(
        TcpStream::connect(addr).await.unwrap(),
        capture::Side::Client,
        "raw",
        &capture::test_name(),
    );
    stream.write_all(request).await.unwrap();
    read_until_close(&mut stream, deadline).await
}

/// A fresh client connection to `addr` whose bytes the protocol lint records (see `capture`).
pub async fn connect(addr: SocketAddr) -> capture::Tap<TcpStream> {
    let stream = TcpStream::connect(addr).await.unwrap();
    capture::Tap::new(
        stream,
        capture::Side::Client,
        "connect",
        &capture::test_name(),
    )
}

/// Reads until EOF (true) or until `deadline` passes with the connection still open (false).
pub async fn read_until_close<S: AsyncRead + Unpin>(
    stream: &mut S,
    deadline: Duration,
) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let closed = tokio::time::timeout(deadline, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// Parses a problem+json body.
pub fn problem(body: &Bytes) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
}

/// Sends a request with method, path and extra headers; collects the response.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Bytes) {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "api.example");
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    collect(send(addr, builder.body(full("")).unwrap()).await).await
}
