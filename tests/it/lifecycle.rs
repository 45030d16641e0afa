//! Admin endpoints, graceful shutdown and protocol upgrades.

use std::sync::Arc;
use std::time::Duration;

use crate::harness::*;
use http::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn admin_serves_health_readiness_and_metrics() {
    let up = upstream(|_req| async { response(200, "ok") }).await;
    let candor = Candor::start(config(&up.url())).await;
    // Readiness flips once the workers accept; a request through the proxy proves they do.
    assert_eq!(get(candor.addr, "/").await.0, 200);
    let (status, _, body) = get(candor.admin, "/healthz").await;
    assert_eq!((status.as_u16(), &body[..]), (200, &b"ok\n"[..]));
    assert_eq!(get(candor.admin, "/readyz").await.0, 200);
    assert_eq!(get(candor.admin, "/nope").await.0, 404);
    let (status, headers, body) = get(candor.admin, "/metrics").await;
    assert_eq!(status, 200);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(body.to_vec()).unwrap();
    for needle in [
        "candor_requests_total{status=\"200\"} 1",
        "# TYPE candor_request_duration_seconds histogram",
        "candor_request_duration_seconds_count 1",
        "candor_upstream_failures_total{kind=\"connect\"} 0",
        "candor_upstream_failures_total{kind=\"timeout\"} 0",
    ] {
        assert!(text.contains(needle), "missing {needle}:\n{text}");
    }
    let req = Request::post("/metrics")
        .header("host", "a")
        .body(full(""))
        .unwrap();
    assert_eq!(send(candor.admin, req).await.status(), 405);
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_refuses_new_connections() {
    let release = Arc::new(Notify::new());
    let arrived = Arc::new(Notify::new());
    let (r, a) = (release.clone(), arrived.clone());
    let up = upstream(move |_req| {
        let (release, arrived) = (r.clone(), a.clone());
        async move {
            arrived.notify_one();
            release.notified().await;
            response(200, "finished")
        }
    })
    .await;
    let mut candor = Candor::start(config(&up.url())).await;
    let addr = candor.addr;
    let in_flight = tokio::spawn(async move { get(addr, "/slow").await });
    arrived.notified().await;

    candor.begin_shutdown();
    // Readiness drops first, then the listener closes; poll for that state with a deadline.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "listener still open"
        );
        tokio::task::yield_now().await;
    }
    release.notify_one();
    let (status, _, body) = in_flight.await.unwrap();
    assert_eq!((status.as_u16(), &body[..]), (200, &b"finished"[..]));
    candor.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_gives_up_on_requests_that_outlast_the_drain_timeout() {
    let up = upstream(|_req| async {
        std::future::pending::<()>().await;
        response(200, "never")
    })
    .await;
    let mut config = config(&up.url());
    config.server.drain_timeout = Duration::from_millis(200);
    let candor = Candor::start(config).await;
    let addr = candor.addr;
    let in_flight = tokio::spawn(async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /hang HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        read_until_close(&mut stream, WAIT).await
    });
    // The request must be in flight before shutdown begins.
    while up.requests().is_empty() {
        tokio::task::yield_now().await;
    }
    let started = std::time::Instant::now();
    candor.stop().await.unwrap();
    assert!(started.elapsed() < WAIT);
    let (_, closed) = in_flight.await.unwrap();
    assert!(
        closed,
        "the connection is closed once the drain timeout passes"
    );
}

#[tokio::test]
async fn websocket_upgrade_passes_through_after_a_real_101() {
    // An upstream that switches to a byte echo after its 101.
    let (addr, _) = raw_upstream(|mut stream| async move {
        let head = read_head(&mut stream).await.to_ascii_lowercase();
        assert!(head.contains("upgrade: websocket"), "{head}");
        assert!(head.contains("connection: upgrade"), "{head}");
        stream
            .write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
            )
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if stream.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await;
    let candor = Candor::start(config(&format!("http://{addr}"))).await;
    let mut client = tokio::net::TcpStream::connect(candor.addr).await.unwrap();
    client
        .write_all(
            b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let head = read_head(&mut client).await.to_ascii_lowercase();
    assert!(head.ends_with("\r\n\r\n"), "no whole head: {head}");
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(head.contains("sec-websocket-accept"), "{head}");
    for message in [
        &b"hello"[..],
        &[0u8, 255, 13, 10, 0][..],
        &vec![7u8; 100_000][..],
    ] {
        client.write_all(message).await.unwrap();
        let mut echo = vec![0u8; message.len()];
        tokio::time::timeout(WAIT, client.read_exact(&mut echo))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echo, message);
    }
}

#[tokio::test]
async fn refused_upgrade_keeps_the_connection_http() {
    let up = upstream(|req: Request<hyper::body::Incoming>| async move {
        response(200, format!("plain {}", req.uri().path()))
    })
    .await;
    let candor = Candor::start(config(&up.url())).await;
    let (wire, _) = raw(
        candor.addr,
        b"GET /a HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\
          GET /b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(wire.matches("HTTP/1.1 200 OK").count(), 2, "{wire}");
    assert!(
        wire.contains("plain /a") && wire.ends_with("plain /b"),
        "{wire}"
    );
}

#[tokio::test]
async fn slow_request_heads_are_cut_off_by_the_header_read_timeout() {
    let up = upstream(|_req| async { response(200, "ok") }).await;
    let mut config = config(&up.url());
    config.server.header_read_timeout = Duration::from_millis(200);
    let candor = Candor::start(config).await;
    let mut stream = tokio::net::TcpStream::connect(candor.addr).await.unwrap();
    let started = std::time::Instant::now();
    // Half a request head, then silence: the slowloris shape.
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        .await
        .unwrap();
    let (_, closed) = read_until_close(&mut stream, WAIT).await;
    assert!(closed, "a partial head must not hold the connection open");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert!(up.requests().is_empty());
}
