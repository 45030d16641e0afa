//! Exchanges written for the protocol lint (`tests/lint/run.sh`): candor's messages on paths
//! the rest of the suite reaches only through raw TCP upstreams, whose side of the exchange the
//! capture does not record. Here both ends are the harness's hyper peers, so the lint sees what
//! candor sends each way; the assertions are only what the exchange needs to have happened.

use std::time::Duration;

use crate::harness::*;
use http::Request;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};

const WAIT: Duration = Duration::from_secs(5);

/// Two pipelined requests on one connection; the server side must stay in step.
fn pipelined(first: &str, second: &str) -> Vec<u8> {
    format!("{first} HTTP/1.1\r\nHost: a\r\n\r\n{second} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

#[tokio::test]
async fn a_client_accepting_trailers_gets_them_from_an_upstream_asked_for_them() {
    let up = upstream(|req: Request<Incoming>| async move {
        let asked = req.headers().get("te").is_some();
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-checksum", "4a7d".parse().unwrap());
        let frames = vec![
            Ok::<_, BoxError>(Frame::data(bytes::Bytes::from_static(b"hello"))),
            Ok(Frame::trailers(trailers)),
        ];
        let mut r = http::Response::new(
            http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed(),
        );
        r.headers_mut()
            .insert("trailer", "x-checksum".parse().unwrap());
        r.headers_mut().insert(
            "x-te-seen",
            if asked { "yes" } else { "no" }.parse().unwrap(),
        );
        r
    })
    .await;
    let candor = Candor::start(config(&up.url())).await;
    let (wire, _) = raw(
        candor.addr,
        b"GET /t HTTP/1.1\r\nHost: a\r\nTE: trailers\r\nConnection: TE, close\r\n\r\n",
        WAIT,
    )
    .await;
    let lower = wire.to_ascii_lowercase();
    assert!(lower.contains("x-te-seen: yes\r\n"), "{wire}");
    assert!(lower.contains("\r\nx-checksum: 4a7d\r\n"), "{wire}");
}

#[tokio::test]
async fn head_and_get_pipelined_through_a_problem_rewrite_stay_in_step() {
    let up = canned_upstream(vec![("/gone", Canned::json(200, r#"{"status":"error"}"#))]).await;
    let rules = "[[rules]]\nname = \"gone\"\nwhen.path = \"^/gone$\"\nthen.status = 410\nthen.body = \"problem\"\n";
    let candor = Candor::start(config_toml(&up.url(), rules)).await;
    let (wire, _) = raw(candor.addr, &pipelined("HEAD /gone", "GET /gone"), WAIT).await;
    assert_eq!(wire.matches("HTTP/1.1 410 ").count(), 2, "{wire}");
}

#[tokio::test]
async fn a_conditional_get_answered_304_passes_without_a_body() {
    let up = upstream(|req: Request<Incoming>| async move {
        let mut r = if req.headers().get("if-none-match").is_some() {
            response(304, "")
        } else {
            Canned::json(200, r#"{"ok":true}"#).into_response()
        };
        r.headers_mut().insert("etag", "\"v1\"".parse().unwrap());
        r
    })
    .await;
    let candor = Candor::start(config(&up.url())).await;
    let (status, headers, body) =
        request(candor.addr, "GET", "/doc", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!((status.as_u16(), body.len()), (304, 0));
    assert_eq!(headers["etag"], "\"v1\"");
    let (status, _, _) = request(candor.addr, "GET", "/doc", &[]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn expect_100_continue_gets_one_interim_and_one_final_response() {
    let up = upstream(|req: Request<Incoming>| async move {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        Canned::json(200, &format!(r#"{{"received":{}}}"#, body.len())).into_response()
    })
    .await;
    let candor = Candor::start(config(&up.url())).await;
    let mut stream = connect(candor.addr).await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\n\
              Content-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).await.unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"hello").await.unwrap();
    let (wire, _) = read_until_close(&mut stream, WAIT).await;
    assert!(wire.starts_with("HTTP/1.1 200 "), "{wire}");
    assert!(wire.ends_with(r#"{"received":5}"#), "{wire}");
}
