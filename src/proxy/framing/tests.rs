//! Tests of the framing watch: the tracker over split byte streams, and agreement with hyper.
use super::*;

use std::error::Error;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the tracker concluded after a whole input.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    suspect: Option<u64>,
    heads: u64,
    end: End,
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Between messages: every body was followed to its end.
    Boundary,
    Stopped,
}

struct Case {
    name: &'static str,
    input: &'static [u8],
    expect: Outcome,
}

fn followed(heads: u64) -> Outcome {
    Outcome {
        suspect: None,
        heads,
        end: End::Boundary,
    }
}

fn flagged(index: u64) -> Outcome {
    Outcome {
        suspect: Some(index),
        heads: index + 1,
        end: End::Stopped,
    }
}

fn stopped(heads: u64) -> Outcome {
    Outcome {
        suspect: None,
        heads,
        end: End::Stopped,
    }
}

fn run<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut tracker = Tracker::new();
    let mut suspect = None;
    for piece in pieces {
        if tracker.is_stopped() {
            break;
        }
        if let Some(index) = tracker.feed(piece) {
            assert!(suspect.is_none(), "flagged twice");
            assert!(tracker.is_stopped(), "a flag stops the tracker");
            suspect = Some(index);
        }
    }
    let end = match tracker.state {
        State::Idle => End::Boundary,
        State::Stopped => End::Stopped,
        other => panic!("input ended mid-message in {other:?}"),
    };
    Outcome {
        suspect,
        heads: tracker.heads,
        end,
    }
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "content-length only",
            input: b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
            expect: followed(1),
        },
        Case {
            name: "chunked with extensions and trailers",
            input: b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                5;name=val\r\nhello\r\n\
                A \t; a=\"b c\" ;d\r\n0123456789\r\n\
                1f\r\n0123456789012345678901234567890\r\n\
                0;last\r\nExpires: never\r\nX-Trailer: 1\r\n\r\n",
            expect: followed(1),
        },
        Case {
            name: "chunked without trailers, then a plain request",
            input: b"POST /a HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n\
                3\r\nabc\r\n0\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
            expect: followed(2),
        },
        Case {
            name: "content-length then transfer-encoding",
            input: b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\
                Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            expect: flagged(0),
        },
        Case {
            name: "transfer-encoding then content-length",
            input: b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: x\r\n\
                Content-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            expect: flagged(0),
        },
        Case {
            name: "mixed case names",
            input: b"POST /a HTTP/1.1\r\ncOnTeNt-LeNgTh: 5\r\nTRANSFER-ENCODING: CHUNKED\r\n\r\n",
            expect: flagged(0),
        },
        Case {
            name: "gzip, chunked with content-length",
            input: b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\
                Transfer-Encoding: gzip, chunked\r\n\r\n",
            expect: flagged(0),
        },
        Case {
            name: "content-length with invalid value after transfer-encoding",
            input: b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: x\r\n\r\n",
            expect: flagged(0),
        },
        Case {
            name: "pipelined: content-length, chunked, then both",
            input: b"POST /1 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
                POST /2 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n\
                POST /3 HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
                4\r\nfghi\r\n0\r\n\r\n",
            expect: flagged(2),
        },
        Case {
            name: "content-length body holding a transfer-encoding line",
            input: b"POST /a HTTP/1.1\r\nContent-Length: 28\r\n\r\n\
                Transfer-Encoding: chunked\r\n\
                GET /b HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            expect: followed(2),
        },
        Case {
            name: "content-length body holding a whole smuggled head",
            input: b"POST /a HTTP/1.1\r\nContent-Length: 66\r\n\r\n\
                GET /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n\
                GET /b HTTP/1.1\r\n\r\n",
            expect: followed(2),
        },
        Case {
            name: "chunk data holding a content-length line",
            input: b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
                13\r\ncontent-length: 5\r\n\r\n0\r\n\r\n\
                POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            expect: followed(2),
        },
        Case {
            name: "leading empty lines, CRLF and LF",
            input: b"\r\n\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n\r\n\
                POST /b HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            expect: flagged(1),
        },
        Case {
            name: "bare LF line endings",
            input: b"POST /a HTTP/1.1\nContent-Length: 2\n\nok\
                POST /b HTTP/1.1\nTransfer-Encoding: chunked\nContent-Length: 2\n\n",
            expect: flagged(1),
        },
        Case {
            name: "http2 prior-knowledge preface",
            input: b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00",
            expect: stopped(0),
        },
        Case {
            name: "PRI as an ordinary method is followed",
            input: b"PRI /a HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            expect: flagged(0),
        },
        Case {
            name: "content-length with blanks around the digits",
            input: b"POST /a HTTP/1.1\r\nContent-Length: \t 7 \t\r\n\r\n1234567\
                POST /b HTTP/1.1\r\nContent-Length:3\r\n\r\nabc\
                POST /c HTTP/1.1\r\nContent-Length:1\r\nTransfer-Encoding:chunked\r\n\r\n",
            expect: flagged(2),
        },
        Case {
            name: "repeated equal content-length",
            input: b"POST /a HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab\
                GET /b HTTP/1.1\r\n\r\n",
            expect: followed(2),
        },
        Case {
            name: "conflicting content-length stops",
            input: b"POST /a HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
            expect: stopped(1),
        },
        Case {
            name: "content-length list stops",
            input: b"POST /a HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\nab",
            expect: stopped(1),
        },
        Case {
            name: "content-length that overflows stops",
            input: b"POST /a HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n",
            expect: stopped(1),
        },
        Case {
            name: "last coding not chunked stops",
            input: b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
            expect: stopped(1),
        },
        Case {
            name: "content-length with a non-chunked coding is flagged too",
            input: b"POST /a HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: gzip\r\n\r\nabc",
            expect: flagged(0),
        },
        Case {
            name: "later transfer-encoding line decides",
            input: b"POST /a HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\
                Transfer-Encoding: chunked \t\r\n\r\n0\r\n\r\n",
            expect: followed(1),
        },
        Case {
            name: "space before colon is not a field",
            input: b"GET /a HTTP/1.1\r\nContent-Length : 5\r\nTransfer-Encoding: chunked\r\n\r\n\
                0\r\n\r\n",
            expect: followed(1),
        },
        Case {
            name: "similar names are other fields",
            input: b"GET /a HTTP/1.1\r\nContent-Lengthy: 5\r\nTransfer-Encodings: chunked\r\n\
                Content-Type: text/plain\r\nTE: trailers\r\n\r\n",
            expect: followed(1),
        },
        Case {
            name: "transfer-encoding line with a control byte does not count",
            input:
                b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\x01\r\nContent-Length: 1\r\n\r\n\
                zGET /b HTTP/1.1\r\n\r\n",
            expect: followed(2),
        },
        Case {
            name: "upgrade request is followed, then a smuggling attempt",
            input: b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\
                POST /b HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            expect: flagged(1),
        },
        Case {
            name: "tunnel bytes after an upgrade stop the tracker",
            input: b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n\x81\x85\x37\xfa\x21\x3d\x7f",
            expect: stopped(1),
        },
        Case {
            name: "tls record stops",
            input: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            expect: stopped(0),
        },
        Case {
            name: "header line starting with CR stops",
            input: b"GET /a HTTP/1.1\r\n\rX: y\r\n\r\n",
            expect: stopped(0),
        },
        Case {
            name: "bad chunk size stops",
            input: b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            expect: stopped(1),
        },
        Case {
            name: "chunk data without CRLF stops",
            input: b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
            expect: stopped(1),
        },
        Case {
            name: "bare LF in a chunk extension stops",
            input: b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;x\nab\r\n",
            expect: stopped(1),
        },
    ]
}

#[test]
fn tracker_table_in_one_piece_and_split_everywhere() {
    for case in cases() {
        let input = case.input;
        assert_eq!(run([input]), case.expect, "{}: one piece", case.name);
        assert_eq!(
            run(input.chunks(1)),
            case.expect,
            "{}: one byte at a time",
            case.name
        );
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            assert_eq!(run([a, b]), case.expect, "{}: split at {i}", case.name);
        }
        for i in 0..=input.len() {
            for j in i..=input.len() {
                let pieces = [&input[..i], &input[i..j], &input[j..]];
                assert_eq!(run(pieces), case.expect, "{}: split at {i}, {j}", case.name);
            }
        }
    }
}

#[test]
fn tracker_state_stays_small() {
    assert!(std::mem::size_of::<Tracker>() <= 32);
}

#[test]
fn verdict_matches_only_the_suspect_request() {
    let verdict = FramingVerdict::new();
    assert_eq!(verdict.suspect_index(), None);
    verdict.flag(2);
    assert_eq!(verdict.suspect_index(), Some(2));
    let answers: Vec<bool> = (0..4).map(|_| verdict.next_request_is_suspect()).collect();
    assert_eq!(answers, [false, false, true, false]);
}

/// Tiny deterministic generator (xorshift64) so the differential test needs no extra crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a [u8]]) -> &'a [u8] {
        items[self.below(items.len() as u64) as usize]
    }

    fn mixed_case(&mut self, name: &[u8], out: &mut Vec<u8>) {
        for &b in name {
            out.push(if self.below(2) == 0 {
                b.to_ascii_uppercase()
            } else {
                b
            });
        }
    }
}

/// Body text that looks like framing, to tempt a tracker that loses its place.
const TRAPS: &[&[u8]] = &[
    b"GET /trap HTTP/1.1\r\n",
    b"Content-Length: 3\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"\r\n",
    b"\n",
    b"0\r\n\r\n",
    b"abc",
];

/// One connection's worth of pipelined requests; returns the bytes and, per request that
/// hyper will hand to the service, whether it carried both framing fields.
fn pipeline(rng: &mut Rng) -> (Vec<u8>, Vec<(String, bool)>) {
    let mut out = Vec::new();
    let mut expected = Vec::new();
    for i in 0..1 + rng.below(5) {
        let eol: &[u8] = if rng.below(4) == 0 { b"\n" } else { b"\r\n" };
        for _ in 0..rng.below(3) {
            out.extend_from_slice(eol);
        }
        let path = format!("/r{i}");
        let kind = rng.below(5);
        let method: &[u8] = if kind == 0 { b"GET " } else { b"POST " };
        out.extend_from_slice(method);
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1");
        out.extend_from_slice(eol);
        let header = |rng: &mut Rng, out: &mut Vec<u8>, name: &[u8], value: &[u8]| {
            rng.mixed_case(name, out);
            out.push(b':');
            out.extend_from_slice(rng.pick(&[b"", b" ", b"  ", b"\t"]));
            out.extend_from_slice(value);
            out.extend_from_slice(rng.pick(&[b"", b" "]));
            out.extend_from_slice(eol);
        };
        header(rng, &mut out, b"host", b"candor.test");
        if rng.below(2) == 0 {
            header(
                rng,
                &mut out,
                b"x-note",
                b"Content-Length: 9, Transfer-Encoding: chunked",
            );
        }
        if kind == 4 {
            header(rng, &mut out, b"upgrade", b"websocket");
            header(rng, &mut out, b"connection", b"upgrade");
        }
        let both = kind == 3;
        let chunked = kind == 2 || both;
        let mut body = Vec::new();
        if kind == 1 || chunked {
            for _ in 0..rng.below(6) {
                body.extend_from_slice(rng.pick(TRAPS));
            }
        }
        if kind == 1 {
            header(
                rng,
                &mut out,
                b"content-length",
                body.len().to_string().as_bytes(),
            );
        }
        if chunked {
            let te: &[u8] = rng.pick(&[b"chunked", b"gzip, chunked", b"CHUNKED"]);
            if both && rng.below(2) == 0 {
                // hyper does not even parse a Content-Length that follows Transfer-Encoding.
                header(rng, &mut out, b"transfer-encoding", te);
                let length = rng.pick(&[b"5", b"x"]);
                header(rng, &mut out, b"content-length", length);
            } else {
                if both {
                    header(rng, &mut out, b"content-length", b"7");
                }
                header(rng, &mut out, b"transfer-encoding", te);
            }
        }
        out.extend_from_slice(eol);
        if kind == 1 {
            out.extend_from_slice(&body);
        }
        if chunked {
            let mut rest = &body[..];
            while !rest.is_empty() {
                let n = (1 + rng.below(12) as usize).min(rest.len());
                let size = if rng.below(2) == 0 {
                    format!("{n:x}")
                } else {
                    format!("{n:X}")
                };
                out.extend_from_slice(size.as_bytes());
                out.extend_from_slice(rng.pick(&[b"", b" ", b";ext=1", b" ;a=\"b\""]));
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(&rest[..n]);
                out.extend_from_slice(b"\r\n");
                rest = &rest[n..];
            }
            out.extend_from_slice(b"0\r\n");
            if rng.below(3) == 0 {
                out.extend_from_slice(b"X-Trailer: Transfer-Encoding chunked\r\n");
            }
            out.extend_from_slice(b"\r\n");
        }
        expected.push((path, both));
        if both {
            // hyper closes the connection after serving such a request.
            break;
        }
    }
    (out, expected)
}

#[tokio::test]
async fn tracker_agrees_with_hyper_on_random_pipelines() -> Result<(), Box<dyn Error>> {
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    for round in 0..400 {
        let (bytes, expected) = pipeline(&mut rng);
        let (mut client, server_io) = tokio::io::duplex(1 << 20);
        let (watch, verdict) = FramingWatch::new(server_io);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let service = service_fn(move |request: Request<Incoming>| {
            let verdict = Arc::clone(&verdict);
            let record = Arc::clone(&record);
            async move {
                let suspect = verdict.next_request_is_suspect();
                let path = request.uri().path().to_owned();
                request.into_body().collect().await?;
                if let Ok(mut seen) = record.lock() {
                    seen.push((path, suspect));
                }
                Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::new())))
            }
        });
        let server = tokio::spawn(async move {
            let mut builder = http1::Builder::new();
            // Keep serving what was sent after the client's EOF.
            builder.half_close(true);
            builder.serve_connection(TokioIo::new(watch), service).await
        });
        // Random write sizes, yielding between them, so hyper reads in odd pieces too.
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let n = (1 + rng.below(40) as usize).min(rest.len());
            client.write_all(&rest[..n]).await?;
            rest = &rest[n..];
            tokio::task::yield_now().await;
        }
        client.shutdown().await?;
        let mut responses = Vec::new();
        client.read_to_end(&mut responses).await?;
        server.await??;
        let seen = seen.lock().map_err(|e| e.to_string())?.clone();
        assert_eq!(
            seen,
            expected,
            "round {round}: {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
    Ok(())
}

/// Reads one response with a Content-Length body; returns status line and body.
async fn read_response(stream: &mut TcpStream) -> Result<(Vec<u8>, Vec<u8>), Box<dyn Error>> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err("eof before response head".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec())?.to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .ok_or("no content-length")?
        .trim()
        .parse()?;
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err("eof in response body".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let status_line = head.lines().next().unwrap_or_default().as_bytes().to_vec();
    Ok((status_line, buf[head_end..head_end + length].to_vec()))
}

#[tokio::test]
async fn hyper_server_refuses_cl_te_request_after_a_clean_one() -> Result<(), Box<dyn Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await?;
        let (watch, verdict) = FramingWatch::new(stream);
        let service = service_fn(move |request: Request<Incoming>| {
            let verdict = Arc::clone(&verdict);
            async move {
                let suspect = verdict.next_request_is_suspect();
                // Read the body either way so the client never sees a reset.
                let body = request.into_body().collect().await?.to_bytes();
                let mut response = Response::new(Full::new(Bytes::from(body.len().to_string())));
                if suspect {
                    *response.status_mut() = StatusCode::BAD_REQUEST;
                }
                Ok::<_, hyper::Error>(response)
            }
        });
        http1::Builder::new()
            .serve_connection(TokioIo::new(watch), service)
            .await?;
        Ok::<_, Box<dyn Error + Send + Sync>>(())
    });

    // A guard against hanging forever, not a synchronisation point.
    let client = tokio::time::timeout(Duration::from_secs(20), async {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(b"POST /one HTTP/1.1\r\nHost: candor.test\r\nContent-Length: 5\r\n\r\nhello")
            .await?;
        let (status, body) = read_response(&mut stream).await?;
        assert!(status.starts_with(b"http/1.1 200"), "{status:?}");
        assert_eq!(body, b"5");

        stream
            .write_all(
                b"POST /two HTTP/1.1\r\nHost: candor.test\r\nContent-Length: 5\r\n\
                  Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            )
            .await?;
        let mut rest = Vec::new();
        // hyper closes the connection after a request that had both fields.
        stream.read_to_end(&mut rest).await?;
        assert!(
            rest.starts_with(b"HTTP/1.1 400 "),
            "{:?}",
            String::from_utf8_lossy(&rest)
        );
        Ok::<_, Box<dyn Error>>(())
    })
    .await?;
    client?;
    server.await?.map_err(|e| e.to_string())?;
    Ok(())
}
