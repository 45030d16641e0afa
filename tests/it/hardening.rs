//! Limits hyper does not enforce by itself: request body size, body idle timeouts, write
//! timeouts, the connection cap and the inspection budget; plus the request shapes a reverse
//! proxy refuses (foreign absolute-form targets, underscored header names).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::*;
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn with(upstream: &str, text: &str) -> candor::config::Config {
    config_toml(upstream, text)
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_with_413_before_forwarding() {
    let up = upstream(|_req| async { response(200, "ok") }).await;
    let candor = Candor::start(with(&up.url(), "[server]\nmax_request_body_bytes = 1000\n")).await;
    let (wire, closed) = raw(
        candor.addr,
        b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n",
        WAIT,
    )
    .await;
    assert!(wire.starts_with("HTTP/1.1 413 "), "{wire}");
    assert!(
        wire.to_ascii_lowercase().contains("connection: close"),
        "{wire}"
    );
    assert!(closed);
    assert_eq!(up.connection_count(), 0, "nothing reached the upstream");
    // Exactly at the limit is fine.
    let req = http::Request::post("/upload")
        .header("host", "a")
        .body(full(vec![b'x'; 1000]))
        .unwrap();
    assert_eq!(send(candor.addr, req).await.status(), 200);
}

#[tokio::test]
async fn a_chunked_body_passing_the_limit_becomes_413() {
    let up = upstream(|req: http::Request<hyper::body::Incoming>| async move {
        // An upstream that reads the whole body before answering, as most do.
        let _ = req.into_body().collect().await;
        response(200, "ok")
    })
    .await;
    let candor = Candor::start(with(&up.url(), "[server]\nmax_request_body_bytes = 1000\n")).await;
    let mut stream = tokio::net::TcpStream::connect(candor.addr).await.unwrap();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    // candor may answer 413 and close while the client is still writing: a write error then
    // is part of the behaviour, not a failure; the answer is what counts.
    for _ in 0..3 {
        let _ = stream.write_all(b"200\r\n").await;
        let _ = stream.write_all(&[b'y'; 512]).await;
        let _ = stream.write_all(b"\r\n").await;
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let (wire, _) = read_until_close(&mut stream, WAIT).await;
    assert!(wire.starts_with("HTTP/1.1 413 "), "{wire}");
    assert!(
        problem(&Bytes::from(
            wire.split_once("\r\n\r\n").unwrap().1.to_owned()
        ))["status"]
            == 413
    );
}

#[tokio::test]
async fn a_request_body_that_stops_arriving_becomes_408() {
    let up = upstream(|req: http::Request<hyper::body::Incoming>| async move {
        let _ = req.into_body().collect().await;
        response(200, "ok")
    })
    .await;
    let candor = Candor::start(with(&up.url(), "[server]\nbody_idle_timeout = \"200ms\"\n")).await;
    let mut stream = tokio::net::TcpStream::connect(candor.addr).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(b"POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nonly ten b")
        .await
        .unwrap();
    let (wire, _) = read_until_close(&mut stream, WAIT).await;
    assert!(wire.starts_with("HTTP/1.1 408 "), "{wire}");
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn an_upstream_body_that_stalls_is_cut_when_streaming_and_504_when_inspected() {
    let (addr, _) = raw_upstream(|mut stream| async move {
        let head = read_head(&mut stream).await;
        let big = head.contains("/big");
        let body_len = if big { 100_000 } else { 100 };
        let content_type = if big { "application/octet-stream" } else { "application/json" };
        let _ = stream
            .write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {body_len}\r\n\r\n{{\"status\":"
                )
                .as_bytes(),
            )
            .await;
        // Then nothing, ever.
        std::future::pending::<()>().await;
    })
    .await;
    let candor = Candor::start(with(
        &format!("http://{addr}"),
        // Continues config_toml's [upstream] table.
        "body_idle_timeout = \"300ms\"\n\n[[rules]]\nname = \"r\"\n\
         when.json = [{ pointer = \"/status\", equals = \"error\" }]\nthen.status = 500\n",
    ))
    .await;
    // Inspected: no header has been sent yet, so the stall is an honest 504.
    let (status, headers, body) = get(candor.addr, "/small").await;
    assert_eq!(status, 504, "{headers:?} {body:?}");
    assert_eq!(
        headers["proxy-status"],
        "candor; error=http_response_timeout"
    );
    // Streamed: the headers went out; the client sees the body end short and the connection close.
    let (wire, closed) = raw(candor.addr, b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n", WAIT).await;
    assert!(wire.starts_with("HTTP/1.1 200"), "{wire}");
    assert!(closed, "the stalled body is given up");
    let (_, body) = wire.split_once("\r\n\r\n").unwrap();
    assert_eq!(
        body, "{\"status\":",
        "exactly what the upstream sent, nothing more"
    );
}

#[tokio::test]
async fn connections_over_the_cap_are_answered_503_and_closed() {
    let up = upstream(|_req| async { response(200, "ok") }).await;
    let candor = Candor::start(with(&up.url(), "[server]\nmax_connections = 2\n")).await;
    // Two open connections, each proven accepted by a request.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(candor.addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(stream);
    }
    let (wire, closed) = raw(candor.addr, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", WAIT).await;
    assert!(wire.starts_with("HTTP/1.1 503 "), "{wire}");
    assert!(wire.contains("retry-after: 1"), "{wire}");
    assert!(closed);
    let metrics = candor.metrics().await;
    assert!(
        metrics.contains("candor_connections_rejected_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("candor_connections_open 2"), "{metrics}");
    drop(held);
    // Places free up as connections close.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if raw(
            candor.addr,
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            WAIT,
        )
        .await
        .0
        .starts_with("HTTP/1.1 200")
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_after_the_write_timeout() {
    const SIZE: usize = 32 << 20;
    let up = upstream(|_req| async { response(200, vec![b'z'; SIZE]) }).await;
    let candor = Candor::start(with(&up.url(), "[server]\nwrite_timeout = \"300ms\"\n")).await;
    let mut stream = tokio::net::TcpStream::connect(candor.addr).await.unwrap();
    stream
        .write_all(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    // Read nothing until candor must have given up (socket buffers hold far less than 32 MiB).
    let mut first = [0u8; 1];
    stream.read_exact(&mut first).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while candor.metrics().await.contains("candor_connections_open 1") {
        assert!(tokio::time::Instant::now() < deadline, "still connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (rest, closed) = read_until_close(&mut stream, WAIT).await;
    assert!(closed);
    assert!(rest.len() + 1 < SIZE, "the response was cut, not completed");
}

#[tokio::test]
async fn over_the_inspection_budget_responses_stream_through_uninspected() {
    let release = Arc::new(tokio::sync::Notify::new());
    let hold = release.clone();
    let (addr, _) = raw_upstream(move |mut stream| {
        let hold = hold.clone();
        async move {
            let head = read_head(&mut stream).await;
            let error = br#"{"status":"error"}"#;
            let _ = stream
                .write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        error.len()
                    )
                    .as_bytes(),
                )
                .await;
            if head.contains("/held") {
                // The body stays unfinished until the test says so: an inspection in progress.
                let _ = stream.write_all(&error[..5]).await;
                hold.notified().await;
                let _ = stream.write_all(&error[5..]).await;
            } else {
                let _ = stream.write_all(error).await;
            }
        }
    })
    .await;
    let candor = Candor::start(with(
        &format!("http://{addr}"),
        "[inspect]\nmax_concurrent = 1\n\n[[rules]]\nname = \"r\"\n\
         when.json = [{ pointer = \"/status\", equals = \"error\" }]\nthen.status = 500\n",
    ))
    .await;
    let held_addr = candor.addr;
    let held = tokio::spawn(async move { get(held_addr, "/held").await });
    // Wait until the held response is being inspected (the upstream has sent part of it).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, _, body) = get(candor.addr, "/other").await;
        if status == 200 {
            assert_eq!(body, r#"{"status":"error"}"#, "passed through untouched");
            break;
        }
        assert_eq!(
            status, 500,
            "before the held inspection starts, rules apply"
        );
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(candor
        .metrics()
        .await
        .contains(r#"candor_inspect_skipped_total{reason="busy"}"#));
    release.notify_one();
    assert_eq!(held.await.unwrap().0, 500, "the held one was inspected");
}

#[tokio::test]
async fn foreign_absolute_form_targets_and_underscored_names_are_refused_or_dropped() {
    let up = upstream(|_req| async { response(200, "ok") }).await;
    let candor = Candor::start(with(&up.url(), "")).await;
    let (wire, _) = raw(
        candor.addr,
        b"GET http://169.254.169.254/latest HTTP/1.1\r\nHost: api.example\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    assert!(wire.starts_with("HTTP/1.1 400 "), "{wire}");
    assert_eq!(up.connection_count(), 0);

    let (wire, _) = raw(
        candor.addr,
        b"GET /x HTTP/1.1\r\nHost: a\r\nX-User_Id: 1\r\nX-User-Id: 2\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    assert!(wire.starts_with("HTTP/1.1 200"), "{wire}");
    let seen = &up.requests()[0];
    assert!(!seen.headers.contains_key("x-user_id"), "{seen:?}");
    assert_eq!(seen.headers["x-user-id"], "2");
}
