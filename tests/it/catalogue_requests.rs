//! Failure catalogue rows R1–R14 (request framing and smuggling) and H1–H8 (headers, routing and
//! exposure), against the evil origin with a raw client.
//!
//! Every test asserts the status, whether the connection was closed, what the origin received
//! (bytes, or nothing), and ends with the liveness check: a fresh connection gets a normal
//! response, and so does the same connection when it was left open.

use std::time::{Duration, Instant};

use crate::harness::evil::*;
use crate::harness::raw::*;
use crate::harness::{config_toml, Canary, Candor, WAIT};

/// An evil origin and candor in front of it; `toml` is appended to `[upstream]` (so it may set
/// upstream keys first, then open other tables).
async fn setup(toml: &str) -> (Origin, Candor) {
    let origin = Origin::start().await;
    let candor = Candor::start(config_toml(&origin.url(), toml)).await;
    (origin, candor)
}

/// Sends each case on a fresh connection. Each must be answered with one of `statuses` (or, with
/// `or_silent_close`, closed without an answer), the connection must then be closed, and not a
/// byte may reach the origin.
async fn assert_refused(
    candor: &Candor,
    origin: &Origin,
    cases: &[(&str, Vec<u8>)],
    statuses: &[u16],
    or_silent_close: bool,
) {
    for (name, request) in cases {
        let before = origin.received_all().len();
        let (wire, closed) = send_raw(candor.addr, request, WAIT).await;
        let text = String::from_utf8_lossy(&wire);
        match status_of(&wire) {
            Some(status) => assert!(
                statuses.contains(&status),
                "{name}: status {status}, want one of {statuses:?}:\n{text}"
            ),
            None => assert!(
                or_silent_close && wire.is_empty(),
                "{name}: no status line:\n{text}"
            ),
        }
        let (responses, _) = parse_responses(&wire, &[], closed);
        assert!(
            responses.len() <= 1,
            "{name}: more than one response:\n{text}"
        );
        assert!(closed, "{name}: connection left open:\n{text}");
        assert_eq!(
            origin.received_all().len(),
            before,
            "{name}: bytes reached the origin: {:?}",
            origin.requests()
        );
    }
}

fn post(headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("POST /echo HTTP/1.1\r\nHost: api.example\r\n{headers}\r\n").into_bytes();
    out.extend_from_slice(body);
    out
}

/// R1: CL.TE (`Content-Length` plus `Transfer-Encoding: chunked`, either order) is refused with
/// 400 and a close; neither it nor the request hidden behind it reaches the origin.
#[tokio::test]
async fn r1_cl_te_requests_are_refused_and_never_forwarded() {
    let (origin, candor) = setup("").await;
    let cases = [
        (
            "CL then TE",
            post(
                "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
                b"0\r\n\r\nG",
            ),
        ),
        (
            "TE then CL",
            post(
                "Transfer-Encoding: chunked\r\nContent-Length: 6\r\n",
                b"0\r\n\r\nG",
            ),
        ),
        (
            "CL.TE hiding a request",
            post(
                "Content-Length: 44\r\nTransfer-Encoding: chunked\r\n",
                b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: api.example\r\n\r\n",
            ),
        ),
    ];
    assert_refused(&candor, &origin, &cases, &[400], false).await;
    assert_eq!(origin.connections(), 0);
    assert_live(candor.addr).await;
    assert!(origin.requests().iter().all(|r| r.path() != "/smuggled"));
    origin.assert_clean();
}

/// R2: TE.CL, a chunk body hiding `GET /admin`, is refused like R1.
#[tokio::test]
async fn r2_te_cl_requests_are_refused_and_never_forwarded() {
    let (origin, candor) = setup("").await;
    let hidden = b"GET /admin HTTP/1.1\r\nHost: api.example\r\n\r\n";
    let mut body = format!("{:x}\r\n", hidden.len()).into_bytes();
    body.extend_from_slice(hidden);
    body.extend_from_slice(b"\r\n0\r\n\r\n");
    let cases = [(
        "TE.CL",
        post("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", &body),
    )];
    assert_refused(&candor, &origin, &cases, &[400], false).await;
    assert_eq!(origin.connections(), 0);
    assert_live(candor.addr).await;
    assert!(origin.requests().iter().all(|r| r.path() != "/admin"));
    origin.assert_clean();
}

/// R3: differing duplicate `Content-Length`s, on two lines or one, are refused with 400 + close.
#[tokio::test]
async fn r3_differing_content_lengths_are_refused() {
    let (origin, candor) = setup("").await;
    let cases = [
        (
            "two lines",
            post("Content-Length: 4\r\nContent-Length: 5\r\n", b"hello"),
        ),
        ("one line", post("Content-Length: 4, 5\r\n", b"hello")),
    ];
    assert_refused(&candor, &origin, &cases, &[400], false).await;
    assert_eq!(origin.connections(), 0);
    assert_live(candor.addr).await;
    origin.assert_clean();
}

/// R4: identical duplicate `Content-Length` lines are accepted, and the origin receives exactly
/// one `Content-Length: 5` with the body. (The one-line list `5, 5`, which RFC 9110 §8.6 lets a
/// recipient either accept or reject, is refused by hyper with 400 + close: also safe.)
#[tokio::test]
async fn r4_identical_content_lengths_reach_the_origin_as_one() {
    let (origin, candor) = setup("").await;
    let (wire, closed) = send_raw(
        candor.addr,
        &post("Content-Length: 5, 5\r\n", b"hello"),
        WAIT,
    )
    .await;
    assert_eq!(
        status_of(&wire),
        Some(400),
        "{}",
        String::from_utf8_lossy(&wire)
    );
    assert!(closed);
    assert_eq!(origin.connections(), 0);
    for (name, headers) in [
        ("two lines", "Content-Length: 5\r\nContent-Length: 5\r\n"),
        (
            "two lines, spaced",
            "Content-Length: 5\r\nContent-Length:  5 \r\n",
        ),
    ] {
        let mut conn = RawConn::connect(candor.addr).await;
        conn.send(&post(headers, b"hello")).await;
        let r = conn.response(WAIT).await;
        assert_eq!(r.status, 200, "{name}: {}", r.head);
        assert_eq!(r.body, b"hello", "{name}");
        let seen = origin.requests().pop().unwrap();
        assert_eq!(seen.header_all("content-length"), vec!["5"], "{name}");
        assert_eq!(seen.body, b"hello", "{name}");
        conn.assert_live().await;
    }
    assert_live(candor.addr).await;
    origin.assert_clean();
}

/// R5: obfuscated `Transfer-Encoding` values that hyper refuses (an unknown or non-final
/// coding, TE on HTTP/1.0) get 400 + close, and nothing reaches the origin.
#[tokio::test]
async fn r5_obfuscated_transfer_encodings_are_refused() {
    let (origin, candor) = setup("").await;
    let chunk = b"5\r\nhello\r\n0\r\n\r\n";
    let cases = [
        ("xchunked", post("Transfer-Encoding: xchunked\r\n", chunk)),
        ("gzip", post("Transfer-Encoding: gzip\r\n", chunk)),
        (
            "chunked, gzip",
            post("Transfer-Encoding: chunked, gzip\r\n", chunk),
        ),
        ("identity", post("Transfer-Encoding: identity\r\n", chunk)),
        ("TE on HTTP/1.0", {
            let mut r =
                b"POST /echo HTTP/1.0\r\nHost: api.example\r\nTransfer-Encoding: chunked\r\n\r\n"
                    .to_vec();
            r.extend_from_slice(chunk);
            r
        }),
    ];
    assert_refused(&candor, &origin, &cases, &[400, 501], false).await;
    assert_eq!(origin.connections(), 0);
    assert_live(candor.addr).await;
    origin.assert_clean();
}

/// R5 (the rest): `Transfer-Encoding` lists whose last coding is `chunked` but which are not
/// exactly `chunked` must be refused too (the framing policy: any TE other than exactly
/// `chunked` gets 400 + close). hyper accepts them and reads the body as chunked; candor forwards the request, and
/// for `gzip, chunked` hands the origin the still-gzipped bytes as if they were the body.
#[tokio::test]
async fn r5_transfer_encoding_lists_ending_in_chunked_are_refused() {
    let (origin, candor) = setup("").await;
    let chunk = b"5\r\nhello\r\n0\r\n\r\n";
    let cases = [
        (
            "chunked, chunked",
            "Transfer-Encoding: chunked, chunked\r\n",
        ),
        (",chunked", "Transfer-Encoding: ,chunked\r\n"),
        (
            "two TE lines",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        ),
        ("gzip, chunked", "Transfer-Encoding: gzip, chunked\r\n"),
        (
            "identity, chunked",
            "Transfer-Encoding: identity, chunked\r\n",
        ),
        // Not here: `chunked` followed by blanks. RFC 9110 §5.5 makes surrounding whitespace no
        // part of a field value, httparse drops it, and candor re-frames the body itself, so the
        // upstream never sees the client's spelling; `r5_obfuscated_transfer_encodings_are_refused`
        // covers codings that are not `chunked`.
    ];
    let mut forwarded = Vec::new();
    for (name, headers) in cases {
        let before = origin.requests().len();
        let (wire, closed) =
            send_raw(candor.addr, &post(headers, chunk), Duration::from_secs(2)).await;
        let status = status_of(&wire);
        if !matches!(status, Some(400 | 501)) || !closed || origin.requests().len() != before {
            forwarded.push(format!("{name}: status {status:?}, closed {closed}"));
        }
    }
    assert!(forwarded.is_empty(), "not refused: {forwarded:#?}");
    assert_live(candor.addr).await;
}

/// R6: malformed chunked request bodies. hyper has handed candor the head before it meets the
/// bad chunk, so candor may already be forwarding: the oracle is that the client gets a 400 or
/// a close, the origin never receives a complete request, the upstream connection is closed
/// (never reused), and each case is decided quickly (chunk-extension CPU is capped).
#[tokio::test]
async fn r6_malformed_chunked_bodies_never_become_a_request_upstream() {
    let (origin, candor) = setup("").await;
    let long_ext = format!("5;{}\r\nhello\r\n0\r\n\r\n", "a=b;".repeat(5 * 1024));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("0x prefix", b"0x5\r\nhello\r\n0\r\n\r\n".to_vec()),
        ("plus sign", b"+5\r\nhello\r\n0\r\n\r\n".to_vec()),
        ("minus one", b"-1\r\nhello\r\n0\r\n\r\n".to_vec()),
        ("empty size line", b"\r\nhello\r\n0\r\n\r\n".to_vec()),
        (
            "20 hex digits",
            b"FFFFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n".to_vec(),
        ),
        ("no CRLF after data", b"5\r\nhelloXX0\r\n\r\n".to_vec()),
        ("bare LF", b"5\nhello\n0\n\n".to_vec()),
        (
            "CR before extension",
            b"5\r;a=b\r\nhello\r\n0\r\n\r\n".to_vec(),
        ),
        ("20 KiB of extensions", long_ext.into_bytes()),
    ];
    for (name, body) in &cases {
        let before_requests = origin.requests().len();
        let before_conns = origin.connections();
        let started = Instant::now();
        let mut request = post("Transfer-Encoding: chunked\r\n", body);
        // Were the bad chunk skipped, this would be the next request.
        request.extend_from_slice(b"GET /smuggled HTTP/1.1\r\nHost: api.example\r\n\r\n");
        let (wire, closed) = send_raw(candor.addr, &request, WAIT).await;
        let text = String::from_utf8_lossy(&wire);
        assert!(closed, "{name}: connection left open:\n{text}");
        match status_of(&wire) {
            Some(status) => assert_eq!(status, 400, "{name}:\n{text}"),
            None => assert!(wire.is_empty(), "{name}: garbage:\n{text}"),
        }
        assert!(
            parse_responses(&wire, &[], true).0.len() <= 1,
            "{name}: a second response:\n{text}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{name}: {:?}",
            started.elapsed()
        );
        assert_eq!(
            origin.requests().len(),
            before_requests,
            "{name}: a complete request reached the origin: {:?}",
            origin.requests()
        );
        // Any upstream connection opened for the aborted forward is closed, never reused.
        for conn in before_conns..origin.connections() {
            assert!(
                origin.wait_peer_closed(conn, WAIT).await,
                "{name}: upstream connection {conn} left open"
            );
        }
    }
    assert_live(candor.addr).await;
    assert!(origin.requests().iter().all(|r| r.path() != "/smuggled"));
    origin.assert_clean();
}

/// R7: invalid header bytes (NUL or CR in a value, a blank before the colon, a first header
/// line that starts with a tab, a line without a colon, obs-fold) get 400 + close and never
/// reach the origin.
#[tokio::test]
async fn r7_invalid_header_bytes_are_refused() {
    let (origin, candor) = setup("").await;
    let get = |lines: &str| format!("GET /ok HTTP/1.1\r\n{lines}\r\n").into_bytes();
    let cases = [
        ("NUL in value", get("Host: a\r\nX-A: a\0b\r\n")),
        ("CR in value", get("Host: a\r\nX-A: a\rb\r\n")),
        ("blank before colon", get("Host: a\r\nX-A : b\r\n")),
        ("tab-led first line", get("\tHost: a\r\nX-A: b\r\n")),
        ("line without colon", get("Host: a\r\nX-A b\r\n")),
        ("obs-fold", get("Host: a\r\nX-A: b\r\n c\r\n")),
        ("DEL in name", get("Host: a\r\nX\x7fA: b\r\n")),
    ];
    assert_refused(&candor, &origin, &cases, &[400], false).await;
    assert_eq!(origin.connections(), 0);
    assert_live(candor.addr).await;
    origin.assert_clean();
}

/// R7 (underscores): a header name with an underscore (`X_Forwarded_For`) is never forwarded
/// as is, since upstreams may read `_` as `-` (Envoy's edge default rejects it; candor drops it).
#[tokio::test]
async fn r7_underscore_header_names_are_not_forwarded() {
    let (origin, candor) = setup("").await;
    let mut conn = RawConn::connect(candor.addr).await;
    conn.send(b"GET /ok HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 6.6.6.6\r\nX_Api_Key: k\r\n\r\n")
        .await;
    let r = conn.response(WAIT).await;
    assert!(r.status == 200 || r.status == 400, "{}", r.head);
    if r.status == 200 {
        let seen = origin.requests().pop().unwrap();
        assert!(
            !seen.headers.iter().any(|(n, _)| n.contains('_')),
            "{:?}",
            seen.headers
        );
        conn.assert_live().await;
    } else {
        assert_eq!(origin.connections(), 0);
    }
    assert_live(candor.addr).await;
}

/// R8: malformed `Content-Length` values get 400 + close and never reach the origin.
#[tokio::test]
async fn r8_malformed_content_lengths_are_refused() {
    let (origin, candor) = setup("").await;
    let cases = [
        ("plus", post("Content-Length: +5\r\n", b"hello")),
        ("hex", post("Content-Length: 0x5\r\n", b"hello")),
        ("empty", post("Content-Length: \r\n", b"hello")),
        ("negative", post("Content-Length: -1\r\n", b"hello")),
        (
            "30 digits",
            post(&format!("Content-Length: {}\r\n", "9".repeat(30)), b"hello"),
        ),
        ("trailing letters", post("Content-Length: 5a\r\n", b"hello")),
    ];
    assert_refused(&candor, &origin, &cases, &[400], false).await;
    assert_eq!(origin.connections(), 0);
    assert_live(candor.addr).await;
    origin.assert_clean();
}

/// R9: three pipelined requests in one write (GET, POST with a body, GET) get three responses
/// in order, bodies not mixed, and the origin sees three well-framed requests.
#[tokio::test]
async fn r9_pipelined_requests_are_answered_in_order() {
    let (origin, candor) = setup("").await;
    let mut conn = RawConn::connect(candor.addr).await;
    conn.send(
        b"GET /a HTTP/1.1\r\nHost: api.example\r\n\r\n\
          POST /echo HTTP/1.1\r\nHost: api.example\r\nContent-Length: 11\r\n\r\nhello world\
          GET /c HTTP/1.1\r\nHost: api.example\r\n\r\n",
    )
    .await;
    let responses = conn.read_responses(3, WAIT).await;
    assert_eq!(
        responses.len(),
        3,
        "{:?}",
        String::from_utf8_lossy(&conn.wire)
    );
    let bodies: Vec<String> = responses.iter().map(|r| r.body_text()).collect();
    assert_eq!(bodies, ["ok /a", "hello world", "ok /c"]);
    assert!(responses.iter().all(|r| r.status == 200 && r.complete));
    let seen = origin.requests();
    let lines: Vec<(String, String)> = seen
        .iter()
        .map(|r| (r.method.clone(), r.target.clone()))
        .collect();
    assert_eq!(
        lines,
        [
            ("GET".into(), "/a".into()),
            ("POST".into(), "/echo".into()),
            ("GET".into(), "/c".into())
        ]
    );
    assert_eq!(seen[1].body, b"hello world");
    conn.assert_live().await;
    assert_live(candor.addr).await;
    origin.assert_clean();
}

/// R10 (FIN): a body shorter than its `Content-Length`, then the client closes. The forward is
/// aborted: the origin never receives a complete request, its connection is closed (not
/// reused), and no phantom second request appears.
#[tokio::test]
async fn r10_a_body_cut_short_by_the_client_aborts_the_forward() {
    let (origin, candor) = setup("").await;
    let mut conn = RawConn::connect(candor.addr).await;
    conn.send(b"POST /echo HTTP/1.1\r\nHost: api.example\r\nContent-Length: 10\r\n\r\nhello")
        .await;
    // Half-close: the client has nothing more to send.
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut conn.stream).await;
    assert!(conn.read_to_close(WAIT).await, "connection left open");
    if let Some(status) = status_of(&conn.wire) {
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(&conn.wire));
    }
    assert!(origin.requests().is_empty(), "{:?}", origin.requests());
    for c in 0..origin.connections() {
        assert!(
            origin.wait_peer_closed(c, WAIT).await,
            "upstream connection {c} left open"
        );
    }
    assert_live(candor.addr).await;
    assert_eq!(origin.requests().len(), 1, "only the liveness request");
    origin.assert_clean();
}

/// R10 (pause): a body shorter than its `Content-Length`, then silence. Today the wait is bounded
/// by `upstream.timeout` (the origin waits for the whole body): 504, then a close, because the
/// rest of the body can never be read. The origin never sees a complete request, and its
/// connection is closed.
#[tokio::test]
async fn r10_a_stalled_request_body_is_bounded_and_never_forwarded_whole() {
    let (origin, candor) = setup("timeout = \"500ms\"\n").await;
    let mut conn = RawConn::connect(candor.addr).await;
    let started = Instant::now();
    conn.send(b"POST /echo HTTP/1.1\r\nHost: api.example\r\nContent-Length: 10\r\n\r\nhello")
        .await;
    assert!(conn.read_to_close(WAIT).await, "connection left open");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    if let Some(status) = status_of(&conn.wire) {
        assert!(
            [408, 504].contains(&status),
            "{}",
            String::from_utf8_lossy(&conn.wire)
        );
    }
    assert!(origin.requests().is_empty(), "{:?}", origin.requests());
    assert!(
        origin.wait_peer_closed(0, WAIT).await,
        "upstream connection left open"
    );
    assert_live(candor.addr).await;
    origin.assert_clean();
}

/// R10 (pause, with the client body idle timeout): the stalled body is cut off by
/// `server.body_idle_timeout`, well before `upstream.timeout`.
#[tokio::test]
async fn r10_a_stalled_request_body_is_cut_by_the_body_idle_timeout() {
    let (origin, candor) =
        setup("timeout = \"30s\"\n\n[server]\nbody_idle_timeout = \"300ms\"\n").await;
    let mut conn = RawConn::connect(candor.addr).await;
    let started = Instant::now();
    conn.send(b"POST /echo HTTP/1.1\r\nHost: api.example\r\nContent-Length: 10\r\n\r\nhello")
        .await;
    assert!(conn.read_to_close(WAIT).await, "connection left open");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1300), "{elapsed:?}");
    if let Some(status) = status_of(&conn.wire) {
        assert!(
            [400, 408].contains(&status),
            "{}",
            String::from_utf8_lossy(&conn.wire)
        );
    }
    assert!(origin.requests().is_empty());
    for c in 0..origin.connections() {
        assert!(origin.wait_peer_closed(c, WAIT).await);
    }
    assert_live(candor.addr).await;
}

/// Writes a 50 MiB request body behind `head`, with a pipelined request hidden at its start;
/// write errors end it (the server may close first).
fn spawn_big_body(
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    head: Vec<u8>,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut sent = 0usize;
        let hidden = b"GET /smuggled HTTP/1.1\r\nHost: api.example\r\n\r\n";
        let mut first = head;
        first.extend_from_slice(hidden);
        if writer.write_all(&first).await.is_err() {
            return sent;
        }
        sent += hidden.len();
        let block = vec![b'z'; 256 * 1024];
        while sent < 50 << 20 {
            let take = block.len().min((50 << 20) - sent);
            if writer.write_all(&block[..take]).await.is_err() {
                return sent;
            }
            sent += take;
        }
        sent
    })
}

/// R11: a 50 MiB POST that candor answers itself (here: two `Host` headers, 400) before reading
/// the body, with a request hidden in the body's first bytes. Exactly one response, then a close
/// or a full drain; the hidden bytes are never parsed as a request, and nothing reaches the
/// origin.
#[tokio::test]
async fn r11_an_early_local_response_never_parses_the_unread_body() {
    let (origin, candor) = setup("").await;
    let stream = tokio::net::TcpStream::connect(candor.addr).await.unwrap();
    let (mut reader, writer) = stream.into_split();
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: {}\r\n\r\n",
        50 << 20
    )
    .into_bytes();
    let writing = spawn_big_body(writer, head);
    let mut wire = Vec::new();
    let closed = tokio::time::timeout(WAIT, async {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 65536];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => wire.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    let sent = writing.await.unwrap();
    let text = String::from_utf8_lossy(&wire);
    let (responses, _) = parse_responses(&wire, &[], closed);
    assert_eq!(responses.len(), 1, "exactly one response:\n{text}");
    assert_eq!(responses[0].status, 400, "{text}");
    assert!(
        closed || sent == 50 << 20,
        "neither closed nor drained ({sent} bytes written)"
    );
    assert_eq!(origin.connections(), 0, "{:?}", origin.requests());
    assert_live(candor.addr).await;
    assert!(origin.requests().iter().all(|r| r.path() != "/smuggled"));
    origin.assert_clean();
}

/// R11 with the request body limit: a 50 MiB declared body over `server.max_request_body_bytes`
/// gets 413 with `Connection: close` before anything reaches the origin; the hidden request is
/// never parsed.
#[tokio::test]
async fn r11_a_body_over_the_limit_gets_413_and_a_close() {
    let (origin, candor) = setup("[server]\nmax_request_body_bytes = 1048576\n").await;
    let stream = tokio::net::TcpStream::connect(candor.addr).await.unwrap();
    let (mut reader, writer) = stream.into_split();
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
        50 << 20
    )
    .into_bytes();
    let writing = spawn_big_body(writer, head);
    let mut wire = Vec::new();
    let closed = tokio::time::timeout(WAIT, async {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 65536];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => wire.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    let _ = writing.await;
    let (responses, _) = parse_responses(&wire, &[], closed);
    assert_eq!(responses.len(), 1, "{}", String::from_utf8_lossy(&wire));
    assert_eq!(responses[0].status, 413);
    // 50 MiB cannot be drained cheaply: the connection must end.
    assert!(closed, "left open after an unread 50 MiB body");
    assert_eq!(origin.connections(), 0);
    assert_live(candor.addr).await;
}

/// R12: an optimistic upgrade (`Upgrade: foo`, and `GET /internal` in the same write) that the
/// origin answers with 200: no tunnel. The second request is parsed and proxied by candor (it
/// reaches the origin with candor's `x-request-id` and `x-forwarded-for`, as its own request).
#[tokio::test]
async fn r12_an_upgrade_answered_200_never_tunnels_the_next_request() {
    let (origin, candor) = setup("").await;
    let mut conn = RawConn::connect(candor.addr).await;
    conn.send(
        b"GET /upgrade-refused?status=200 HTTP/1.1\r\nHost: api.example\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\n\
          GET /internal HTTP/1.1\r\nHost: api.example\r\n\r\n",
    )
    .await;
    let responses = conn.read_responses(2, WAIT).await;
    assert_eq!(
        responses.len(),
        2,
        "{}",
        String::from_utf8_lossy(&conn.wire)
    );
    assert_eq!(responses[0].status, 200);
    assert_eq!(responses[1].status, 200);
    assert_eq!(responses[1].body_text(), "ok /internal");
    let seen = origin.requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1].target, "/internal");
    assert!(
        seen[1].has("x-request-id") && seen[1].has("x-forwarded-for"),
        "{:?}",
        seen[1]
    );
    assert!(!seen[1].has("upgrade"));
    conn.assert_live().await;
    assert_live(candor.addr).await;
    origin.assert_clean();
}

/// R13: `Upgrade: h2c` with `HTTP2-Settings` is not forwarded: the origin sees neither header,
/// the client gets a plain 200 and the connection stays HTTP/1.1.
#[tokio::test]
async fn r13_h2c_upgrades_are_not_forwarded() {
    let (origin, candor) = setup("").await;
    let mut conn = RawConn::connect(candor.addr).await;
    conn.send(
        b"GET /ok HTTP/1.1\r\nHost: api.example\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\
          Connection: Upgrade, HTTP2-Settings\r\n\r\n",
    )
    .await;
    let r = conn.response(WAIT).await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(!r.has("upgrade"), "{}", r.head);
    let seen = origin.requests().pop().unwrap();
    for gone in ["upgrade", "http2-settings", "connection"] {
        assert!(
            !seen.has(gone),
            "{gone} reached the origin: {:?}",
            seen.headers
        );
    }
    conn.assert_live().await;
    assert_live(candor.addr).await;
    origin.assert_clean();
}

/// R14: oversized heads (a 100 KB request line, 101 headers, one 700 KB or 1 MiB header) get
/// 414/431 (or 400) + close with nothing upstream; a 60 KB head in 20 headers (under the 64 KiB
/// head cap candor sets, `candor::proxy::MAX_HEAD_BYTES`, and under hyper's default) is forwarded
/// whole.
#[tokio::test]
async fn r14_oversized_heads_are_refused_and_large_ones_pass() {
    let (origin, candor) = setup("").await;
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let big = |n: usize| {
        format!(
            "GET /ok HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
            "b".repeat(n)
        )
        .into_bytes()
    };
    let cases = [
        (
            "100 KB request line",
            format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(100_000)).into_bytes(),
        ),
        (
            "101 headers",
            format!("GET /ok HTTP/1.1\r\nHost: a\r\n{many}\r\n").into_bytes(),
        ),
        ("one 700 KB header", big(700_000)),
        ("one 1 MiB header", big(1 << 20)),
    ];
    assert_refused(&candor, &origin, &cases, &[400, 414, 431], false).await;
    assert_eq!(origin.connections(), 0);

    let large: String = (0..20)
        .map(|i| format!("X-L{i}: {}\r\n", "c".repeat(3000)))
        .collect();
    let mut conn = RawConn::connect(candor.addr).await;
    conn.send(format!("GET /ok HTTP/1.1\r\nHost: a\r\n{large}\r\n").as_bytes())
        .await;
    let r = conn.response(WAIT).await;
    assert_eq!(r.status, 200, "{}", r.head);
    let seen = origin.requests().pop().unwrap();
    let forwarded: Vec<&(String, Vec<u8>)> = seen
        .headers
        .iter()
        .filter(|(n, _)| n.to_ascii_lowercase().starts_with("x-l"))
        .collect();
    assert_eq!(forwarded.len(), 20);
    assert!(forwarded.iter().all(|(_, v)| v.len() == 3000));
    conn.assert_live().await;
    assert_live(candor.addr).await;
    origin.assert_clean();
}

/// R14 (500 KB): a single 500 KB header is over hyper's documented ~400 KB head cap and must get
/// 431. Today it is forwarded: hyper checks `max_buf_size` only after a read leaves the head
/// incomplete, and one read can carry the buffer well past it (700 KB is refused, 500 KB not).
/// candor's own cap is that same `max_buf_size` check (`candor::proxy::MAX_HEAD_BYTES`, 64 KiB).
#[tokio::test]
async fn r14_a_500_kb_header_is_refused() {
    let (origin, candor) = setup("").await;
    let request = format!(
        "GET /ok HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "b".repeat(500_000)
    );
    let (wire, closed) = send_raw(candor.addr, request.as_bytes(), WAIT).await;
    assert_eq!(
        status_of(&wire),
        Some(431),
        "{}",
        String::from_utf8_lossy(&wire)
    );
    assert!(closed);
    assert_eq!(origin.connections(), 0);
    assert_live(candor.addr).await;
}

/// H1: `Connection` nominating `X-Forwarded-For` and `X-Request-Id` cannot erase them (the
/// origin gets candor's XFF entry and a request id), other nominated headers are removed, and
/// nominating `Host` or `Content-Length` changes neither `Host` nor the body's framing.
#[tokio::test]
async fn h1_connection_nominations_cannot_erase_forwarding_headers_or_framing() {
    let (origin, candor) = setup("").await;
    let mut conn = RawConn::connect(candor.addr).await;
    conn.send(
        b"GET /ok HTTP/1.1\r\nHost: api.example\r\nConnection: X-Forwarded-For, X-Request-Id, X-Secret\r\n\
          X-Forwarded-For: 6.6.6.6\r\nX-Request-Id: rid-1\r\nX-Secret: s\r\n\r\n",
    )
    .await;
    let r = conn.response(WAIT).await;
    assert_eq!(r.status, 200);
    let seen = origin.requests().pop().unwrap();
    assert_eq!(
        seen.header("x-forwarded-for").as_deref(),
        Some("6.6.6.6, 127.0.0.1")
    );
    assert_eq!(seen.header("x-request-id").as_deref(), Some("rid-1"));
    assert!(
        !seen.has("x-secret") && !seen.has("connection"),
        "{:?}",
        seen.headers
    );
    conn.assert_live().await;

    let mut conn = RawConn::connect(candor.addr).await;
    conn.send(
        b"POST /echo HTTP/1.1\r\nHost: api.example\r\nConnection: Host, Content-Length, close\r\n\
          Content-Length: 5\r\n\r\nhello",
    )
    .await;
    let r = conn.response(WAIT).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello");
    let seen = origin.requests().pop().unwrap();
    assert_eq!(seen.header("host").as_deref(), Some("api.example"));
    assert_eq!(seen.header_all("content-length"), vec!["5"]);
    assert_eq!(seen.body, b"hello");
    // The client asked for close.
    assert!(conn.read_to_close(WAIT).await);
    assert_live(candor.addr).await;
    origin.assert_clean();
}

/// H2: the default hop-by-hop request headers are not forwarded: `Keep-Alive`,
/// `Proxy-Connection`, `Upgrade` without `Connection: upgrade`, `Proxy-Authorization`, and `TE`
/// other than `trailers`. By design (README) `TE: trailers` is passed on, since candor forwards
/// trailers, and `Trailer` is end-to-end (RFC 9110 §6.6.2).
#[tokio::test]
async fn h2_default_hop_by_hop_request_headers_are_not_forwarded() {
    let (origin, candor) = setup("").await;
    let mut conn = RawConn::connect(candor.addr).await;
    conn.send(
        b"GET /ok HTTP/1.1\r\nHost: api.example\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n\
          TE: gzip, trailers\r\nTrailer: x-sum\r\nUpgrade: websocket\r\nProxy-Authorization: Basic dXNlcjpwdw==\r\n\r\n\
          GET /ok HTTP/1.1\r\nHost: api.example\r\nTE: gzip\r\n\r\n",
    )
    .await;
    let responses = conn.read_responses(2, WAIT).await;
    assert!(responses.len() == 2 && responses.iter().all(|r| r.status == 200));
    let seen = origin.requests();
    for gone in [
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "proxy-authorization",
    ] {
        assert!(
            !seen[0].has(gone),
            "{gone} forwarded: {:?}",
            seen[0].headers
        );
    }
    assert_eq!(seen[0].header_all("te"), vec!["trailers"]);
    assert_eq!(seen[0].header("trailer").as_deref(), Some("x-sum"));
    assert!(!seen[1].has("te"), "{:?}", seen[1].headers);
    assert!(!String::from_utf8_lossy(&origin.received_all()).contains("dXNlcjpwdw"));
    conn.assert_live().await;
    assert_live(candor.addr).await;
    origin.assert_clean();
}

/// H3: hop-by-hop response headers (`Connection: X-Secret, Keep-Alive`, `X-Secret`,
/// `Keep-Alive`, `Upgrade` on a 200, `Proxy-Authenticate`) never reach the client; the rest do.
#[tokio::test]
async fn h3_hop_by_hop_response_headers_never_reach_the_client() {
    let (origin, candor) = setup("").await;
    let mut conn = RawConn::connect(candor.addr).await;
    conn.send(b"GET /hop HTTP/1.1\r\nHost: api.example\r\n\r\n")
        .await;
    let r = conn.response(WAIT).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"ok");
    for gone in ["x-secret", "keep-alive", "upgrade", "proxy-authenticate"] {
        assert!(!r.has(gone), "{gone} reached the client:\n{}", r.head);
    }
    assert!(
        r.header("connection")
            .is_none_or(|c| c.eq_ignore_ascii_case("keep-alive")),
        "{}",
        r.head
    );
    assert_eq!(r.header("x-app"), Some("kept"));
    conn.assert_live().await;
    assert_live(candor.addr).await;
    origin.assert_clean();
}

/// H4 (connection state): after refusing a bad `Host` with 400 candor should also close the
/// connection, as the catalogue's "400 + close" asks (nginx does): a client that sends a bad
/// `Host` is broken or probing. Today candor answers 400 and keeps the connection open (only the
/// CL+TE refusal closes).
#[tokio::test]
async fn h4_bad_host_headers_get_400_and_a_close() {
    let (origin, candor) = setup("").await;
    let get = |lines: &str| format!("GET /ok HTTP/1.1\r\n{lines}\r\n").into_bytes();
    let cases = [
        ("missing", get("")),
        ("two", get("Host: a\r\nHost: b\r\n")),
        ("a:b:c", get("Host: a:b:c\r\n")),
        ("port 99999", get("Host: x:99999\r\n")),
        ("empty", get("Host: \r\n")),
        ("userinfo", get("Host: user@a\r\n")),
    ];
    assert_refused(&candor, &origin, &cases, &[400], false).await;
    assert_eq!(origin.connections(), 0);
    assert_live(candor.addr).await;
    origin.assert_clean();
}

/// H4 (status only): the same bad `Host` headers get 400 and never reach the origin, whether or
/// not the connection is then closed.
#[tokio::test]
async fn h4_bad_host_headers_get_400_and_never_reach_the_origin() {
    let (origin, candor) = setup("").await;
    for (name, lines) in [
        ("missing", ""),
        ("two", "Host: a\r\nHost: b\r\n"),
        ("a:b:c", "Host: a:b:c\r\n"),
        ("empty", "Host: \r\n"),
        ("userinfo", "Host: user@a\r\n"),
    ] {
        let mut conn = RawConn::connect(candor.addr).await;
        conn.send(format!("GET /ok HTTP/1.1\r\n{lines}Connection: close\r\n\r\n").as_bytes())
            .await;
        let r = conn.response(WAIT).await;
        assert_eq!(r.status, 400, "{name}: {}", r.head);
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        assert!(conn.read_to_close(WAIT).await, "{name}");
    }
    assert_eq!(origin.connections(), 0);
    assert_live(candor.addr).await;
}

/// H4 (port range): `Host: x:99999` names no valid port (RFC 3986 ports are 16-bit here) and
/// must get 400. Today candor forwards it: `http::uri::Authority` parses the port lazily, so
/// `hygiene::valid_authority` accepts it.
#[tokio::test]
async fn h4_a_host_with_an_out_of_range_port_gets_400() {
    let (origin, candor) = setup("").await;
    for host in ["x:99999", "x:65536", "x:-1", "x:8o"] {
        let (wire, _) = send_raw(
            candor.addr,
            format!("GET /ok HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
            WAIT,
        )
        .await;
        assert_eq!(
            status_of(&wire),
            Some(400),
            "{host}: {}",
            String::from_utf8_lossy(&wire)
        );
    }
    assert_eq!(origin.connections(), 0);
    assert_live(candor.addr).await;
}

/// H5: absolute-form targets naming the canary never reach it: the origin gets the origin-form
/// path (or candor answers 400), and userinfo in the target is refused and never forwarded.
#[tokio::test]
async fn h5_absolute_form_targets_never_reach_another_host() {
    let (origin, candor) = setup("").await;
    let canary = Canary::start().await;
    let c = canary.addr;
    let mut conn = RawConn::connect(candor.addr).await;
    conn.send(format!("GET http://{c}/x?q=1 HTTP/1.1\r\nHost: {c}\r\n\r\n").as_bytes())
        .await;
    let r = conn.response(WAIT).await;
    assert!(r.status == 200 || r.status == 400, "{}", r.head);
    if r.status == 200 {
        let seen = origin.requests().pop().unwrap();
        assert_eq!(seen.target, "/x?q=1");
        conn.assert_live().await;
    }
    let (wire, closed) = send_raw(
        candor.addr,
        format!("GET http://user:pw@{c}/x HTTP/1.1\r\nHost: {c}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
        WAIT,
    )
    .await;
    assert_eq!(
        status_of(&wire),
        Some(400),
        "{}",
        String::from_utf8_lossy(&wire)
    );
    assert!(closed);
    let received = String::from_utf8_lossy(&origin.received_all()).into_owned();
    assert!(
        !received.contains("user:pw") && !received.contains("dXNlcjpwdw"),
        "{received}"
    );
    assert_eq!(canary.connections(), 0);
    assert_live(candor.addr).await;
    assert_eq!(canary.connections(), 0);
    origin.assert_clean();
}

/// H5 with the foreign-target check: an absolute-form target whose authority differs from
/// `Host` is a forward-proxy request and gets 400; nothing reaches the origin or the canary.
#[tokio::test]
async fn h5_absolute_form_targets_naming_another_host_get_400() {
    let (origin, candor) = setup("").await;
    let canary = Canary::start().await;
    let c = canary.addr;
    let (wire, _) = send_raw(
        candor.addr,
        format!("GET http://{c}/x HTTP/1.1\r\nHost: api.example\r\nConnection: close\r\n\r\n")
            .as_bytes(),
        WAIT,
    )
    .await;
    assert_eq!(
        status_of(&wire),
        Some(400),
        "{}",
        String::from_utf8_lossy(&wire)
    );
    assert_eq!(origin.connections(), 0);
    assert_eq!(canary.connections(), 0);
    assert_live(candor.addr).await;
}

/// H6: `CONNECT` to the canary gets 405 with `Allow` and no tunnel (a request pipelined after it
/// is proxied as HTTP); `OPTIONS *` reaches the origin as `*`, not `/`; a method with illegal
/// characters gets 400 + close. The canary sees nothing.
#[tokio::test]
async fn h6_connect_is_refused_options_star_is_kept_and_bad_methods_are_refused() {
    let (origin, candor) = setup("").await;
    let canary = Canary::start().await;
    let c = canary.addr;
    let mut conn = RawConn::connect(candor.addr).await;
    conn.send(
        format!(
            "CONNECT {c} HTTP/1.1\r\nHost: {c}\r\n\r\nGET /after HTTP/1.1\r\nHost: api.example\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let responses = conn.read_responses(2, WAIT).await;
    assert!(
        !responses.is_empty(),
        "{}",
        String::from_utf8_lossy(&conn.wire)
    );
    assert_eq!(responses[0].status, 405);
    assert!(responses[0].has("allow"));
    if conn.closed {
        assert_eq!(responses.len(), 1);
    } else {
        assert_eq!(
            responses.len(),
            2,
            "{}",
            String::from_utf8_lossy(&conn.wire)
        );
        assert_eq!(responses[1].body_text(), "ok /after");
        conn.assert_live().await;
    }
    assert_eq!(canary.connections(), 0);
    assert!(origin.requests().iter().all(|r| r.method != "CONNECT"));

    let mut conn = RawConn::connect(candor.addr).await;
    conn.send(b"OPTIONS * HTTP/1.1\r\nHost: api.example\r\n\r\n")
        .await;
    let r = conn.response(WAIT).await;
    assert_eq!(r.status, 200, "{}", r.head);
    let seen = origin.requests().pop().unwrap();
    assert_eq!(
        (seen.method.as_str(), seen.target.as_str()),
        ("OPTIONS", "*")
    );
    conn.assert_live().await;

    let before = origin.received_all().len();
    for bad in [
        &b"G(T /ok HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"GET\x01 /ok HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        let (wire, closed) = send_raw(candor.addr, bad, WAIT).await;
        assert_eq!(
            status_of(&wire),
            Some(400),
            "{}",
            String::from_utf8_lossy(&wire)
        );
        assert!(closed);
    }
    assert_eq!(origin.received_all().len(), before);
    assert_live(candor.addr).await;
    assert_eq!(canary.connections(), 0);
    origin.assert_clean();
}

/// H7: spoofed `X-Forwarded-For` and `Forwarded` are never trusted blindly: candor appends the
/// real peer to `X-Forwarded-For` (the last entry is always the true client) and passes
/// `Forwarded` on untouched, reading nothing from it.
#[tokio::test]
async fn h7_spoofed_forwarding_headers_get_the_real_peer_appended() {
    let (origin, candor) = setup("").await;
    let mut conn = RawConn::connect(candor.addr).await;
    conn.send(
        b"GET /ok HTTP/1.1\r\nHost: api.example\r\nX-Forwarded-For: 1.2.3.4\r\n\
          Forwarded: for=1.2.3.4;proto=https\r\nX-Forwarded-Host: evil.example\r\n\r\n",
    )
    .await;
    let r = conn.response(WAIT).await;
    assert_eq!(r.status, 200);
    let seen = origin.requests().pop().unwrap();
    assert_eq!(
        seen.header_all("x-forwarded-for"),
        vec!["1.2.3.4, 127.0.0.1"]
    );
    assert_eq!(
        seen.header("forwarded").as_deref(),
        Some("for=1.2.3.4;proto=https")
    );
    assert_eq!(
        seen.header_all("x-forwarded-host"),
        vec!["evil.example, api.example"]
    );
    assert_eq!(seen.header("host").as_deref(), Some("api.example"));
    conn.assert_live().await;
    assert_live(candor.addr).await;
    origin.assert_clean();
}

/// H8: the admin listener defaults to loopback; `/metrics` on the data port is proxied, never the
/// admin handler; the admin refuses non-GET; and 10,000 unique paths and `Host` values leave the
/// scrape small (< 256 KiB) and free of any of them.
#[tokio::test]
async fn h8_admin_stays_apart_and_metrics_labels_stay_bounded() {
    let defaults = candor::config::Config::for_upstream("http://127.0.0.1:3000").unwrap();
    assert!(defaults.server.admin_listen.ip().is_loopback());
    assert!(defaults.server.listen.ip().is_loopback());

    let (origin, candor) = setup("").await;
    let r = get(candor.addr, "/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body_text(),
        "ok /metrics",
        "the data port proxies /metrics"
    );
    let mut admin = RawConn::connect(candor.admin).await;
    admin
        .send(b"POST /metrics HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n")
        .await;
    assert_eq!(admin.response(WAIT).await.status, 405);

    // 10,000 unique paths and Host values, pipelined on 4 connections in batches.
    let mut tasks = Vec::new();
    for c in 0..4 {
        let addr = candor.addr;
        tasks.push(tokio::spawn(async move {
            let mut conn = RawConn::connect(addr).await;
            let mut done = 0;
            for batch in 0..25 {
                let mut wire = Vec::new();
                for i in 0..100 {
                    let n = c * 10_000 + batch * 100 + i;
                    wire.extend(
                        format!("GET /u/{n}/p{n} HTTP/1.1\r\nHost: h{n}.example\r\n\r\n")
                            .as_bytes(),
                    );
                }
                conn.send(&wire).await;
                done += 100;
                let got = conn.read_responses(done, WAIT).await;
                assert_eq!(got.len(), done);
            }
            conn.finals().iter().filter(|r| r.status == 200).count()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    assert_eq!(ok, 10_000);
    let scrape = candor.metrics().await;
    assert!(
        scrape.len() < 256 * 1024,
        "scrape is {} bytes",
        scrape.len()
    );
    assert!(
        !scrape.contains("/u/") && !scrape.contains(".example"),
        "raw labels in the scrape"
    );
    assert!(
        !scrape.contains(&origin.addr.to_string()),
        "upstream address in the scrape"
    );
    assert_live(candor.addr).await;
    origin.assert_clean();
}
