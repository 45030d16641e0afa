//! Failure catalogue rows U1–U14 (upstream faults and lies): the evil origin misbehaves by path,
//! a raw client watches what candor makes of it.
//!
//! Every test asserts the status (or the exact bytes of a cut stream), whether the client
//! connection was closed, what the origin received and whether candor dropped the upstream
//! connection, and ends with the liveness check.

use std::time::{Duration, Instant};

use crate::harness::evil::*;
use crate::harness::raw::*;
use crate::harness::{black_hole, config_toml, dead_addr, pattern, Candor, WAIT};

/// An evil origin and candor in front of it; `toml` is appended to `[upstream]`.
async fn setup(toml: &str) -> (Origin, Candor) {
    let origin = Origin::start().await;
    let candor = Candor::start(config_toml(&origin.url(), toml)).await;
    (origin, candor)
}

/// A rule that wants every JSON 200 body, so such bodies are inspected (buffered) before
/// anything is sent.
const JSON_RULE: &str = r#"
[[rules]]
name = "json-error"
when.status = [200]
when.json = [{ pointer = "/status", equals = "error" }]
then.status = 500
"#;

/// Asserts a candor problem document for an upstream failure.
fn assert_failure(r: &Response, status: u16, proxy_status: &str) {
    assert_eq!(r.status, status, "{}{}", r.head, r.body_text());
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{}",
        r.head
    );
    assert_eq!(
        r.header("proxy-status"),
        Some(format!("candor; error={proxy_status}").as_str()),
        "{}",
        r.head
    );
    let doc = r.json();
    assert_eq!(doc["status"], status);
    let text = r.body_text();
    for leak in ["127.0.0.1", "os error", "hyper", "connection reset"] {
        assert!(!text.contains(leak), "{leak} leaked: {text}");
    }
}

/// Sends a GET for `target` on `conn` and reads its response.
async fn get_on(conn: &mut RawConn, target: &str) -> Response {
    conn.send(format!("GET {target} HTTP/1.1\r\nHost: api.example\r\n\r\n").as_bytes())
        .await;
    conn.response(WAIT).await
}

/// U1: connection refused → a 502 problem document within 1 s (the catalogue's 100 ms is the
/// pre-release figure), no internal address in it; the client connection stays usable, and once
/// the upstream listens again both it and a fresh connection get 200.
#[tokio::test]
async fn u1_connection_refused_becomes_a_502_problem_quickly() {
    let dead = dead_addr();
    let candor = Candor::start(config_toml(&format!("http://{dead}"), "")).await;
    let mut conn = RawConn::connect(candor.addr).await;
    let started = Instant::now();
    let r = get_on(&mut conn, "/orders/1").await;
    let elapsed = started.elapsed();
    assert_failure(&r, 502, "connection_refused");
    assert!(
        !r.body_text().contains(&dead.port().to_string()),
        "{}",
        r.body_text()
    );
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    assert!(!conn.closed);
    let r = get_on(&mut conn, "/orders/2").await;
    assert_failure(&r, 502, "connection_refused");

    // The upstream comes back on the same address.
    let origin = Origin::start_on(dead).await;
    conn.assert_live().await;
    assert_live(candor.addr).await;
    assert_eq!(origin.requests().len(), 2);
    origin.assert_clean();
}

/// U2: an upstream whose accept queue is full never completes the connect: 504 at
/// `upstream.connect_timeout` (within +500 ms), and the client connection stays usable.
#[tokio::test]
async fn u2_a_connect_that_never_completes_becomes_504_at_the_connect_timeout() {
    let (addr, black_hole) = black_hole();
    let timeout = Duration::from_millis(500);
    let candor = Candor::start(config_toml(
        &format!("http://{addr}"),
        "connect_timeout = \"500ms\"\n",
    ))
    .await;
    let mut conn = RawConn::connect(candor.addr).await;
    for _ in 0..2 {
        let started = Instant::now();
        let r = get_on(&mut conn, "/orders/1").await;
        let elapsed = started.elapsed();
        assert_failure(&r, 504, "connection_timeout");
        assert!(elapsed >= timeout, "{elapsed:?}");
        assert!(
            elapsed < timeout + Duration::from_millis(500),
            "{elapsed:?}"
        );
        assert!(!conn.closed);
    }
    // Nothing was accepted: the upstream received nothing.
    drop(black_hole);
}

/// U3: an upstream that reads the request and never answers: 504 at `upstream.timeout` (within
/// +500 ms); candor closes that upstream connection; the client connection is reused.
#[tokio::test]
async fn u3_a_silent_upstream_becomes_504_and_its_connection_is_closed() {
    let (origin, candor) = setup("timeout = \"500ms\"\n").await;
    let mut conn = RawConn::connect(candor.addr).await;
    let started = Instant::now();
    let r = get_on(&mut conn, "/hang").await;
    let elapsed = started.elapsed();
    assert_failure(&r, 504, "http_response_timeout");
    assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1000), "{elapsed:?}");
    assert_eq!(origin.requests().len(), 1);
    assert!(
        origin.wait_peer_closed(0, WAIT).await,
        "upstream connection left open"
    );
    conn.assert_live().await;
    assert_live(candor.addr).await;
    origin.assert_clean();
}

/// U4 (below L): headers, then a body that stalls. An inspected body must end in a 504 before
/// any header reaches the client, at `upstream.body_idle_timeout`.
#[tokio::test]
async fn u4_a_stalled_inspected_body_becomes_504() {
    let (origin, candor) = setup(&format!(
        "body_idle_timeout = \"300ms\"\ntimeout = \"30s\"\n{JSON_RULE}"
    ))
    .await;
    let mut conn = RawConn::connect(candor.addr).await;
    let started = Instant::now();
    let r = get_on(
        &mut conn,
        "/stall-body?len=1000&send=10&ct=application/json",
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(r.status, 504, "{}", r.head);
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_millis(1300),
        "{elapsed:?}"
    );
    assert!(origin.wait_peer_closed(0, WAIT).await);
    conn.assert_live().await;
    assert_live(candor.addr).await;
}

/// U4 (above L, streaming): headers, part of the body, then a stall: the client gets the head and
/// the bytes sent, then a close at `upstream.body_idle_timeout`, never a complete response.
#[tokio::test]
async fn u4_a_stalled_streamed_body_is_cut_at_the_body_idle_timeout() {
    let (origin, candor) = setup("body_idle_timeout = \"300ms\"\ntimeout = \"30s\"\n").await;
    let mut conn = RawConn::connect(candor.addr).await;
    let started = Instant::now();
    conn.send(b"GET /stall-body?len=100000&send=5000 HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    assert!(
        conn.read_to_close(WAIT).await,
        "the stalled stream was never cut"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_millis(1300),
        "{elapsed:?}"
    );
    let r = &conn.responses()[0];
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 5000);
    assert!(!r.complete);
    assert!(origin.wait_peer_closed(0, WAIT).await);
    assert_live(candor.addr).await;
}

/// U5: a reset before any response byte → 502. A GET on a fresh connection is sent once (no
/// retry: bytes were written); a POST is never sent twice, on a fresh or a pooled connection.
#[tokio::test]
async fn u5_a_reset_before_headers_becomes_502_and_post_is_never_retried() {
    let (origin, candor) = setup("").await;
    let mut conn = RawConn::connect(candor.addr).await;
    let r = get_on(&mut conn, "/rst-early?m=get").await;
    assert_failure(&r, 502, "connection_terminated");
    // Warm the pool, then POST on the pooled connection and on a fresh one.
    let r = get_on(&mut conn, "/ok").await;
    assert_eq!(r.status, 200);
    for id in 0..2 {
        conn.send(
            format!("POST /rst-early?m=post&id={id} HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
                .as_bytes(),
        )
        .await;
        let r = conn.response(WAIT).await;
        assert_failure(&r, 502, "connection_terminated");
    }
    let seen = origin.requests();
    let count = |needle: &str| seen.iter().filter(|r| r.target.contains(needle)).count();
    assert!(count("m=get") <= 2, "GET retried more than once: {seen:?}");
    assert_eq!(count("m=post&id=0"), 1, "POST sent twice: {seen:?}");
    assert_eq!(count("m=post&id=1"), 1, "POST sent twice: {seen:?}");
    conn.assert_live().await;
    assert_live(candor.addr).await;
    origin.assert_clean();
}

/// U6: the upstream announces 100,000 bytes and closes (FIN) after 40,010. Inspected (below L):
/// a 502 problem, no partial body, the client connection kept. Streamed (above L): the head,
/// exactly the 40,010 bytes, then a close: never a complete-looking response.
#[tokio::test]
async fn u6_a_content_length_body_cut_short_is_never_a_complete_response() {
    let (origin, candor) = setup(&format!(
        "\n[inspect]\nmax_body_bytes = 1048576\n{JSON_RULE}"
    ))
    .await;
    let mut conn = RawConn::connect(candor.addr).await;
    let r = get_on(&mut conn, "/short-cl?ct=application/json").await;
    assert_failure(&r, 502, "http_response_incomplete");
    assert!(origin.wait_peer_closed(0, WAIT).await);
    conn.assert_live().await;

    for rst in ["0", "1"] {
        let mut conn = RawConn::connect(candor.addr).await;
        conn.send(format!("GET /short-cl?rst={rst} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
            .await;
        assert!(
            conn.read_to_close(WAIT).await,
            "rst={rst}: the cut stream was not closed"
        );
        let r = &conn.responses()[0];
        assert_eq!(r.status, 200, "rst={rst}");
        assert_eq!(r.header("content-length"), Some("100000"), "rst={rst}");
        assert!(!r.complete, "rst={rst}");
        if rst == "0" {
            assert_eq!(
                r.body.len(),
                40_010,
                "every byte the upstream sent, and no more"
            );
        } else {
            // A reset may discard bytes still in flight; never more than were sent.
            assert!(r.body.len() <= 40_010, "rst: {} bytes", r.body.len());
        }
    }
    assert_live(candor.addr).await;
    origin.assert_clean();
}

/// U7: a chunked body cut (no last chunk) by FIN or by RST. Inspected: a 502. Streamed: the
/// client never receives the terminating `0\r\n\r\n` and the connection is closed.
#[tokio::test]
async fn u7_a_chunked_body_cut_short_never_gets_its_last_chunk() {
    let (origin, candor) = setup(&format!(
        "\n[inspect]\nmax_body_bytes = 1048576\n{JSON_RULE}"
    ))
    .await;
    for rst in ["0", "1"] {
        let mut conn = RawConn::connect(candor.addr).await;
        let r = get_on(
            &mut conn,
            &format!("/cut-chunked?ct=application/json&rst={rst}"),
        )
        .await;
        assert_failure(&r, 502, "http_response_incomplete");
        conn.assert_live().await;

        let mut conn = RawConn::connect(candor.addr).await;
        conn.send(format!("GET /cut-chunked?rst={rst} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
            .await;
        assert!(conn.read_to_close(WAIT).await, "rst={rst}: not closed");
        let r = &conn.responses()[0];
        assert_eq!(r.status, 200);
        assert!(r.chunked && !r.complete, "rst={rst}: {}", r.head);
        assert!(
            !conn.wire.ends_with(b"0\r\n\r\n"),
            "rst={rst}: a last chunk was sent"
        );
        assert!(r.body.len() <= 40_010);
        if rst == "0" {
            assert_eq!(r.body.len(), 40_010);
        }
    }
    assert_live(candor.addr).await;
    origin.assert_clean();
}

/// U8: extra bytes after a complete response (beyond `Content-Length`, after the last chunk, a
/// body on 204/304, a body to HEAD) are dropped, and the upstream connection is not reused: the
/// next request arrives on a new connection and gets its own response, never the extra bytes.
#[tokio::test]
async fn u8_extra_upstream_bytes_are_dropped_and_the_connection_is_not_reused() {
    let (origin, candor) = setup("").await;
    let cases = [
        ("GET", "/extra/cl", 200, &b"hello"[..]),
        ("GET", "/extra/chunked", 200, b"hello"),
        ("GET", "/extra/204", 204, b""),
        ("GET", "/extra/304", 304, b""),
        ("HEAD", "/extra/head", 200, b""),
    ];
    for round in 0..5 {
        for (method, path, status, body) in cases {
            let mut conn = RawConn::connect(candor.addr).await;
            conn.heads = vec![method == "HEAD", false];
            conn.send(
                format!("{method} {path}?r={round} HTTP/1.1\r\nHost: a\r\n\r\nGET /ok?after={round} HTTP/1.1\r\nHost: a\r\n\r\n")
                    .as_bytes(),
            )
            .await;
            let responses = conn.read_responses(2, WAIT).await;
            let wire = String::from_utf8_lossy(&conn.wire).into_owned();
            assert_eq!(responses.len(), 2, "{path}: {wire}");
            assert_eq!(responses[0].status, status, "{path}: {wire}");
            assert_eq!(responses[0].body, body, "{path}: {wire}");
            assert_eq!(responses[1].status, 200, "{path}: {wire}");
            assert_eq!(
                responses[1].body_text(),
                format!("ok /ok?after={round}"),
                "{path}: {wire}"
            );
            assert!(
                !wire.contains("smuggled") && !wire.to_ascii_lowercase().contains("x-smuggled"),
                "{path}: {wire}"
            );
            let seen = origin.requests();
            let extra = seen.iter().rev().find(|r| r.path() == path).unwrap();
            let after = seen
                .iter()
                .rev()
                .find(|r| r.target == format!("/ok?after={round}"))
                .unwrap();
            assert_ne!(
                extra.conn, after.conn,
                "{path}: the upstream connection was reused"
            );
            conn.assert_live().await;
        }
    }
    assert_live(candor.addr).await;
    origin.assert_clean();
}

/// The U9 lies hyper's client refuses: each becomes a 502 (`http_protocol_error`, or
/// `connection_terminated` when the head is cut off), and candor drops the connection.
const REFUSED_LIES: &[&str] = &[
    "cl-cl",
    "cl-list",
    "cl-abc",
    "cl-plus",
    "te-http10",
    "obs-fold",
    "space-colon",
    "nul",
    "many-headers",
    "status-2000",
    "status-abc",
    "http09",
    "bad-chunk",
];

/// U9: framing lies (differing or invalid `Content-Length`s, TE on an HTTP/1.0 response,
/// obs-fold, a blank before the colon, NUL in a value, more than 100 headers, a 4-digit or
/// non-numeric status, an HTTP/0.9 reply) become 502, and the upstream connection is discarded.
/// An invalid chunk size is found only after the head: the streamed response is aborted (the
/// client connection closes without a complete response).
#[tokio::test]
async fn u9_framing_lies_become_502_and_the_connection_is_discarded() {
    let (origin, candor) = setup("").await;
    for lie in REFUSED_LIES {
        let mut conn = RawConn::connect(candor.addr).await;
        if *lie == "bad-chunk" {
            conn.send(b"GET /lie/bad-chunk HTTP/1.1\r\nHost: a\r\n\r\n")
                .await;
            assert!(conn.read_to_close(WAIT).await, "bad-chunk: not closed");
            assert!(
                conn.responses().iter().all(|r| !r.complete),
                "bad-chunk: looked complete"
            );
            assert!(
                origin
                    .wait_peer_closed(origin.connections() - 1, WAIT)
                    .await
            );
            continue;
        }
        let r = get_on(&mut conn, &format!("/lie/{lie}")).await;
        assert_eq!(r.status, 502, "{lie}: {}{}", r.head, r.body_text());
        assert!(
            r.header("proxy-status")
                .is_some_and(|p| p.contains("http_protocol_error")),
            "{lie}: {}",
            r.head
        );
        let req = origin
            .requests()
            .into_iter()
            .rev()
            .find(|s| s.path() == format!("/lie/{lie}"))
            .unwrap();
        assert!(
            origin.wait_peer_closed(req.conn, WAIT).await,
            "{lie}: connection kept"
        );
        conn.assert_live().await;
    }
    assert_live(candor.addr).await;
    origin.assert_clean();
}

/// U9 (the rest): lies hyper's client reads in its own way instead of refusing. CL+TE in either
/// order and `chunked, chunked` / `gzip, chunked` are read as chunked *and the connection is
/// pooled and reused*; TE `gzip` alone is read until close and relayed; a 500 KB head passes
/// hyper's fuzzy ~400 KB read cap and is relayed. nginx and HAProxy answer 502 and drop the
/// connection; so does the catalogue. Each case runs against its own origin, since the origin
/// stops answering on a connection once it has lied.
#[tokio::test]
async fn u9_ambiguous_framing_hyper_accepts_becomes_502() {
    let mut relayed = Vec::new();
    for lie in [
        "cl-te",
        "te-cl",
        "te-chunked-chunked",
        "te-gzip-chunked",
        "te-gzip",
        "huge-head",
    ] {
        let (origin, candor) = setup("timeout = \"2s\"\n").await;
        let mut conn = RawConn::connect(candor.addr).await;
        conn.send(format!("GET /lie/{lie} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
            .await;
        let responses = conn.read_responses(1, Duration::from_secs(3)).await;
        let status = responses.first().map(|r| r.status);
        let dropped = origin.wait_peer_closed(0, Duration::from_secs(1)).await;
        if status != Some(502) || !dropped {
            relayed.push(format!(
                "{lie}: status {status:?}, upstream connection dropped: {dropped}"
            ));
        }
    }
    assert!(relayed.is_empty(), "not refused: {relayed:#?}");
}

/// U10: a close-delimited body (no length) ending in FIN is forwarded complete; cut by RST it is
/// never complete (streamed: no last chunk and a close; inspected: 502).
#[tokio::test]
async fn u10_close_delimited_bodies_complete_on_fin_and_fail_visibly_on_reset() {
    let (origin, candor) = setup(&format!(
        "\n[inspect]\nmax_body_bytes = 1048576\n{JSON_RULE}"
    ))
    .await;
    let mut conn = RawConn::connect(candor.addr).await;
    let r = get_on(&mut conn, "/close-delimited?n=50000").await;
    assert_eq!(r.status, 200);
    assert!(r.complete);
    assert_eq!(r.body, pattern(7, 50_000));
    conn.assert_live().await;

    let mut conn = RawConn::connect(candor.addr).await;
    conn.send(b"GET /close-delimited?n=50000&rst=1 HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    assert!(conn.read_to_close(WAIT).await);
    let r = &conn.responses()[0];
    assert_eq!(r.status, 200);
    assert!(!r.complete, "a reset close-delimited body looked complete");

    let mut conn = RawConn::connect(candor.addr).await;
    let r = get_on(
        &mut conn,
        "/close-delimited?n=5000&rst=1&ct=application/json",
    )
    .await;
    assert_failure(&r, 502, "http_response_incomplete");
    conn.assert_live().await;
    assert_live(candor.addr).await;
    origin.assert_clean();
}

/// U10 (metric): truncation of a close-delimited body by FIN cannot be detected, so such
/// responses should at least be counted (`candor_upstream_close_delimited_total`).
#[tokio::test]
async fn u10_close_delimited_responses_are_counted() {
    let (_origin, candor) = setup("").await;
    assert!(candor
        .metrics()
        .await
        .contains("candor_upstream_close_delimited_total 0"));
    let r = get(candor.addr, "/close-delimited?n=100").await;
    assert_eq!(r.status, 200);
    let r = get(candor.addr, "/size?n=100").await;
    assert_eq!(r.status, 200);
    assert!(candor
        .metrics()
        .await
        .contains("candor_upstream_close_delimited_total 1"));
}

/// U11: 100 + 103 then 200 → the final 200 intact on a kept connection; 100,000 × `102
/// Processing` then silence → 504 at `upstream.timeout`; an unsolicited 101 → 502.
#[tokio::test]
async fn u11_informational_responses_are_bounded_and_unsolicited_101_is_refused() {
    let (origin, candor) = setup("timeout = \"1s\"\n").await;
    let mut conn = RawConn::connect(candor.addr).await;
    let r = get_on(&mut conn, "/1xx/hints").await;
    assert_eq!((r.status, r.body_text().as_str()), (200, "final"));
    conn.assert_live().await;

    let started = Instant::now();
    let r = get_on(&mut conn, "/1xx/flood?n=100000").await;
    let elapsed = started.elapsed();
    assert_failure(&r, 504, "http_response_timeout");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");

    let r = get_on(&mut conn, "/1xx/101").await;
    assert_failure(&r, 502, "http_protocol_error");
    conn.assert_live().await;
    assert_live(candor.addr).await;
    origin.assert_clean();
}

/// Sends `n` paced requests around the origin's keep-alive timeout (`idle_ms`), each with a
/// unique id; returns the statuses.
async fn paced(candor: &Candor, method: &str, n: usize, idle_ms: u64) -> Vec<u16> {
    let mut statuses = Vec::new();
    let mut conn = RawConn::connect(candor.addr).await;
    for i in 0..n {
        // Gaps of idle_ms ± 10 %, spread evenly, so some land right on the origin's close.
        let gap = idle_ms * 9 / 10 + (idle_ms / 5) * (i as u64 % 11) / 10;
        tokio::time::sleep(Duration::from_millis(gap)).await;
        let body = format!("{method}-{i}");
        let request = if method == "POST" {
            format!(
                "POST /ka?idle_ms={idle_ms}&id={body} HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        } else {
            format!("GET /ka?idle_ms={idle_ms}&id={body} HTTP/1.1\r\nHost: a\r\n\r\n")
        };
        conn.send(request.as_bytes()).await;
        statuses.push(conn.response(WAIT).await.status);
    }
    statuses
}

/// U12 (POST): the origin closes idle connections after 100 ms and POSTs arrive at 90–110 ms
/// gaps: whatever candor answers, no POST ever reaches the origin twice.
#[tokio::test]
async fn u12_a_post_is_never_duplicated_by_the_keep_alive_race() {
    let (origin, candor) = setup("").await;
    let statuses = paced(&candor, "POST", 30, 100).await;
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 502),
        "{statuses:?}"
    );
    let seen = origin.requests();
    for i in 0..30 {
        let id = format!("id=POST-{i}");
        let n = seen.iter().filter(|r| r.target.ends_with(&id)).count();
        assert!(n <= 1, "{id} reached the origin {n} times");
    }
    assert_live(candor.addr).await;
    origin.assert_clean();
}

/// U12 (GET): the same race for GETs must cost no spurious 502: a stale pooled connection that
/// fails before any response byte is retried once for an idempotent method.
#[tokio::test]
async fn u12_gets_survive_the_keep_alive_race_without_502() {
    let (origin, candor) = setup("").await;
    let statuses = paced(&candor, "GET", 60, 100).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_live(candor.addr).await;
    origin.assert_clean();
}

/// U13: a response dripped one byte every 10 ms arrives intact within `upstream.timeout`; one
/// whose head is still dripping when the timeout passes becomes 504.
#[tokio::test]
async fn u13_a_slow_drip_is_delivered_intact_or_ends_in_504() {
    let (origin, candor) = setup("timeout = \"3s\"\n").await;
    let mut conn = RawConn::connect(candor.addr).await;
    let r = get_on(&mut conn, "/drip?ms=5&n=40").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, pattern(3, 40));
    conn.assert_live().await;
    drop(conn);

    let origin2 = Origin::start().await;
    let candor2 = Candor::start(config_toml(&origin2.url(), "timeout = \"300ms\"\n")).await;
    let mut conn = RawConn::connect(candor2.addr).await;
    let r = get_on(&mut conn, "/drip?ms=20&n=40").await;
    assert_failure(&r, 504, "http_response_timeout");
    assert!(origin2.wait_peer_closed(0, WAIT).await);
    conn.assert_live().await;
    assert_live(candor.addr).await;
    origin.assert_clean();
}

/// U14: an upgrade request answered 426 or 200 is forwarded as a normal response; no tunnel:
/// the next request on the connection is parsed and proxied by candor as HTTP.
#[tokio::test]
async fn u14_a_refused_upgrade_leaves_the_connection_http() {
    let (origin, candor) = setup("").await;
    for status in [426u16, 200] {
        let mut conn = RawConn::connect(candor.addr).await;
        conn.send(
            format!(
                "GET /upgrade-refused?status={status} HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\
                 GET /next?s={status} HTTP/1.1\r\nHost: a\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        let responses = conn.read_responses(2, WAIT).await;
        assert_eq!(
            responses.len(),
            2,
            "{}",
            String::from_utf8_lossy(&conn.wire)
        );
        assert_eq!(responses[0].status, status);
        assert!(!responses[0].has("upgrade"), "{}", responses[0].head);
        assert_eq!(responses[1].body_text(), format!("ok /next?s={status}"));
        let next = origin.requests().pop().unwrap();
        assert!(
            next.has("x-request-id"),
            "the next request was tunnelled: {next:?}"
        );
        conn.assert_live().await;
    }
    assert_live(candor.addr).await;
    origin.assert_clean();
}
