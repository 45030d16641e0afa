//! Forwarding, header hygiene and request refusals, against real loopback upstreams.

use std::time::Duration;

use crate::harness::*;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn forwards_method_path_query_and_body() {
    let up = upstream(|req: Request<hyper::body::Incoming>| async move {
        let line = format!("{} {}", req.method(), req.uri());
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let mut echo = line.into_bytes();
        echo.push(b'|');
        echo.extend_from_slice(&body);
        response(201, echo)
    })
    .await;
    let candor = Candor::start(config(&up.url())).await;
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PURGE"] {
        let req = Request::builder()
            .method(method)
            .uri("/a/b%20c?x=1&y=%2F")
            .header("host", "api.example")
            .body(full("payload"))
            .unwrap();
        let (status, _, body) = collect(send(candor.addr, req).await).await;
        assert_eq!(status, 201, "{method}");
        assert_eq!(body, format!("{method} /a/b%20c?x=1&y=%2F|payload"));
    }
}

#[tokio::test]
async fn streams_a_20_mib_upload_and_a_10_mib_download_byte_identical() {
    const UP: usize = 20 << 20;
    const DOWN: usize = 10 << 20;
    let pattern = |i: usize| (i.wrapping_mul(31) ^ (i >> 13)) as u8;
    let up = upstream(move |req: Request<hyper::body::Incoming>| async move {
        // Verify the upload as it streams, then stream a download back in 64 KiB frames.
        let mut body = req.into_body();
        let mut n = 0usize;
        let mut ok = true;
        while let Some(frame) = body.frame().await {
            let frame = frame.unwrap();
            if let Some(data) = frame.data_ref() {
                ok &= data.iter().enumerate().all(|(i, b)| *b == pattern(n + i));
                n += data.len();
            }
        }
        let chunks = (0..DOWN / 65536).map(move |c| {
            let chunk: Vec<u8> = (0..65536).map(|i| pattern(c * 65536 + i)).collect();
            Ok::<_, BoxError>(Frame::data(Bytes::from(chunk)))
        });
        let mut r =
            http::Response::new(StreamBody::new(futures_util::stream::iter(chunks)).boxed());
        r.headers_mut()
            .insert("x-upload", format!("{n} {ok}").parse().unwrap());
        r
    })
    .await;
    let candor = Candor::start(config(&up.url())).await;
    let chunks = (0..UP / 65536).map(move |c| {
        let chunk: Vec<u8> = (0..65536).map(|i| pattern(c * 65536 + i)).collect();
        Ok::<_, BoxError>(Frame::data(Bytes::from(chunk)))
    });
    let req = Request::post("/upload")
        .header("host", "x")
        .body(StreamBody::new(futures_util::stream::iter(chunks)).boxed())
        .unwrap();
    let response = send(candor.addr, req).await;
    assert_eq!(
        response.headers()["x-upload"],
        format!("{UP} true").as_str()
    );
    let (status, _, body) = collect(response).await;
    assert_eq!(status, 200);
    assert_eq!(body.len(), DOWN);
    assert!(body.iter().enumerate().all(|(i, b)| *b == pattern(i)));
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_in_both_directions() {
    let up = upstream(|_req| async {
        let mut r = response(200, "ok");
        let h = r.headers_mut();
        h.insert("connection", "x-internal-token".parse().unwrap());
        h.insert("x-internal-token", "secret".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("proxy-authenticate", "Basic".parse().unwrap());
        h.insert("upgrade", "h2c".parse().unwrap());
        h.insert("x-app", "kept".parse().unwrap());
        r
    })
    .await;
    let candor = Candor::start(config(&up.url())).await;
    let (head, _) = raw(
        candor.addr,
        b"GET /h HTTP/1.1\r\nHost: api.example\r\nConnection: close, X-Client-Secret\r\n\
          X-Client-Secret: 1\r\nKeep-Alive: timeout=9\r\nTE: gzip\r\n\
          Proxy-Authorization: Basic Zm9v\r\nProxy-Connection: keep-alive\r\nX-Kept: yes\r\n\r\n",
        WAIT,
    )
    .await;
    let seen = &up.requests()[0];
    for gone in [
        "connection",
        "x-client-secret",
        "keep-alive",
        "te",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert!(
            !seen.headers.contains_key(gone),
            "{gone} reached the upstream: {seen:?}"
        );
    }
    assert_eq!(seen.headers["x-kept"], "yes");
    let lower = head.to_ascii_lowercase();
    for gone in [
        "x-internal-token",
        "keep-alive",
        "proxy-authenticate",
        "upgrade:",
    ] {
        assert!(!lower.contains(gone), "{gone} reached the client:\n{head}");
    }
    assert!(lower.contains("x-app: kept"), "{head}");
    assert!(head.ends_with("\r\n\r\nok"), "{head}");
}

#[tokio::test]
async fn forwarding_headers_are_appended_and_the_request_id_round_trips() {
    let up = upstream(|_req| async { response(200, "ok") }).await;
    let candor = Candor::start(config(&up.url())).await;

    let req = Request::get("/x")
        .header("host", "api.example:8443")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .body(full(""))
        .unwrap();
    let (_, headers, _) = collect(send(candor.addr, req).await).await;
    let seen = &up.requests()[0];
    assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "https, http");
    assert_eq!(seen.headers["x-forwarded-host"], "api.example:8443");
    assert_eq!(seen.headers["host"], "api.example:8443");
    let id = headers["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a generated UUID: {id}");
    assert_eq!(seen.headers["x-request-id"], id);

    let req = Request::get("/x")
        .header("host", "h")
        .header("x-request-id", "trace-abc-1")
        .body(full(""))
        .unwrap();
    let (_, headers, _) = collect(send(candor.addr, req).await).await;
    assert_eq!(headers["x-request-id"], "trace-abc-1");
    assert_eq!(up.requests()[1].headers["x-request-id"], "trace-abc-1");
}

#[tokio::test]
async fn absolute_form_targets_only_ever_reach_the_configured_upstream() {
    let up = upstream(|_req| async { response(200, "configured upstream") }).await;
    let canary = upstream(|_req| async { response(200, "canary") }).await;
    let candor = Candor::start(config(&up.url())).await;
    let request = format!(
        "GET http://{}/steal?x=1 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        canary.addr, canary.addr
    );
    let (head, _) = raw(candor.addr, request.as_bytes(), WAIT).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.ends_with("configured upstream"), "{head}");
    assert_eq!(canary.connection_count(), 0);
    let seen = &up.requests()[0];
    assert_eq!(seen.uri, "/steal?x=1");
    assert_eq!(seen.headers["host"], canary.addr.to_string());
}

/// Each request is refused with the given status, the connection then closed or not, and the
/// upstream never contacted.
#[tokio::test]
async fn refused_requests_never_reach_the_upstream() {
    let up = upstream(|_req| async { response(200, "forwarded") }).await;
    let candor = Candor::start(config(&up.url())).await;
    let cases: [(&str, &[u8], u16); 6] = [
        ("missing host", b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 400),
        (
            "duplicate host",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            "host with userinfo",
            b"GET / HTTP/1.1\r\nHost: user@a\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            "connect",
            b"CONNECT 10.0.0.1:22 HTTP/1.1\r\nHost: 10.0.0.1:22\r\nConnection: close\r\n\r\n",
            405,
        ),
        (
            "content-length then transfer-encoding",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
            400,
        ),
        (
            "transfer-encoding then content-length",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nG",
            400,
        ),
    ];
    for (name, request, status) in cases {
        let (head, closed) = raw(candor.addr, request, WAIT).await;
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{name}: {head}"
        );
        assert!(closed, "{name}: connection left open");
        assert!(head.contains("application/problem+json"), "{name}: {head}");
        if status == 405 {
            assert!(head.to_ascii_lowercase().contains("\r\nallow: "), "{head}");
        }
    }
    assert_eq!(up.connection_count(), 0, "{:?}", up.requests());
    // And the proxy still serves.
    let (status, _, body) = get(candor.addr, "/").await;
    assert_eq!((status.as_u16(), &body[..]), (200, &b"forwarded"[..]));
}

#[tokio::test]
async fn http10_clients_without_host_are_served() {
    let up = upstream(|_req| async { response(200, "old but fine") }).await;
    let candor = Candor::start(config(&up.url())).await;
    let (head, closed) = raw(candor.addr, b"GET /legacy HTTP/1.0\r\n\r\n", WAIT).await;
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(head.ends_with("old but fine"), "{head}");
    assert!(closed);
    assert_eq!(up.requests()[0].headers["host"], up.addr.to_string());
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    let up = upstream(|_req| async { response(200, "ok") }).await;
    let candor = Candor::start(config(&up.url())).await;
    for _ in 0..5 {
        let (status, _, _) = get(candor.addr, "/").await;
        assert_eq!(status, 200);
    }
    assert_eq!(up.requests().len(), 5);
    assert_eq!(up.connection_count(), 1);
}

#[tokio::test]
async fn head_keeps_content_length_and_bodyless_statuses_send_no_body() {
    let up = upstream(|req: Request<hyper::body::Incoming>| async move {
        match req.uri().path() {
            "/head" => {
                let mut r = response(200, "");
                r.headers_mut()
                    .insert("content-length", "1234".parse().unwrap());
                r
            }
            "/204" => response(204, ""),
            _ => {
                let mut r = response(304, "");
                r.headers_mut().insert("etag", "\"v1\"".parse().unwrap());
                r
            }
        }
    })
    .await;
    let candor = Candor::start(config(&up.url())).await;
    let mut stream = tokio::net::TcpStream::connect(candor.addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    stream
        .write_all(
            b"HEAD /head HTTP/1.1\r\nHost: a\r\n\r\nGET /204 HTTP/1.1\r\nHost: a\r\n\r\n\
              GET /304 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let (wire, closed) = read_until_close(&mut stream, WAIT).await;
    assert!(closed);
    let responses: Vec<&str> = wire.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(responses.len(), 3, "{wire}");
    assert!(responses[0].starts_with("200"), "{wire}");
    assert!(responses[0].contains("content-length: 1234\r\n"), "{wire}");
    assert!(responses[1].starts_with("204"), "{wire}");
    assert!(!responses[1].contains("content-length"), "{wire}");
    assert!(responses[2].starts_with("304"), "{wire}");
    assert!(
        responses[2].ends_with("\r\n\r\n"),
        "no body after a 304: {wire}"
    );
}

#[tokio::test]
async fn h2c_prior_knowledge_clients_are_forwarded_as_http11() {
    let up = upstream(|_req| async { response(200, "via h2") }).await;
    let candor = Candor::start(config(&up.url())).await;
    let stream = tokio::net::TcpStream::connect(candor.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://api.example/h2?q=1")
        .body(full(""))
        .unwrap();
    let (status, headers, body) = collect(sender.send_request(req).await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(body, "via h2");
    assert!(headers.contains_key("x-request-id"));
    let seen = &up.requests()[0];
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.uri, "/h2?q=1");
    assert_eq!(seen.headers["host"], "api.example");
}

#[tokio::test]
async fn trailers_reach_http11_clients_that_accept_them() {
    let (addr, _) = raw_upstream(|mut stream| async move {
        let head = read_head(&mut stream).await.to_ascii_lowercase();
        assert!(head.contains("\r\nte: trailers\r\n"), "{head}");
        use tokio::io::AsyncWriteExt;
        let _ = stream
            .write_all(
                b"HTTP/1.1 201 Created\r\nContent-Type: application/octet-stream\r\n\
                  Trailer: x-checksum\r\nTransfer-Encoding: chunked\r\n\r\n\
                  5\r\nhello\r\n0\r\nx-checksum: 4a7d\r\n\r\n",
            )
            .await;
    })
    .await;
    let candor = Candor::start(config(&format!("http://{addr}"))).await;
    let (wire, _) = raw(
        candor.addr,
        b"GET /t HTTP/1.1\r\nHost: a\r\nTE: trailers\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    let lower = wire.to_ascii_lowercase();
    assert!(lower.contains("trailer: x-checksum\r\n"), "{wire}");
    assert!(
        lower.contains("\r\n0\r\nx-checksum: 4a7d\r\n\r\n"),
        "{wire}"
    );
}
