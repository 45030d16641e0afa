//! The upstream concurrency limit (`upstream.max_connections`, `max_queue`, `queue_timeout`):
//! a gated upstream announces every arrival on a channel and answers only when the test releases
//! it, so each test steps through queueing, shedding and reloads on real events (arrivals at the
//! upstream, candor's queue gauge), never on sleeps. Row L6 of the reliability catalogue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::harness::*;

/// One request held at the gated upstream: its path, and what it saw in flight as it arrived.
struct Arrival {
    path: String,
    concurrent: usize,
    release: oneshot::Sender<()>,
}

/// An upstream that holds every request until the test releases it.
struct Gated {
    upstream: Upstream,
    arrivals: mpsc::UnboundedReceiver<Arrival>,
    /// The most requests it held at once.
    peak: Arc<AtomicUsize>,
}

impl Gated {
    async fn start() -> Gated {
        let (tx, arrivals) = mpsc::unbounded_channel();
        let tx = Arc::new(Mutex::new(tx));
        let held = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let peak2 = peak.clone();
        let upstream = upstream(move |req| {
            let (tx, held, peak) = (tx.clone(), held.clone(), peak2.clone());
            async move {
                let concurrent = held.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(concurrent, Ordering::SeqCst);
                let (release, released) = oneshot::channel();
                let path = req.uri().path().to_owned();
                let _ = tx.lock().unwrap().send(Arrival {
                    path: path.clone(),
                    concurrent,
                    release,
                });
                let _ = released.await;
                held.fetch_sub(1, Ordering::SeqCst);
                response(200, path)
            }
        })
        .await;
        Gated {
            upstream,
            arrivals,
            peak,
        }
    }

    /// The next request to reach the upstream.
    async fn next(&mut self) -> Arrival {
        tokio::time::timeout(WAIT, self.arrivals.recv())
            .await
            .expect("a request reached the upstream")
            .expect("the upstream is running")
    }
}

/// Sends `GET path` and collects the answer, in a task.
fn fire(
    addr: std::net::SocketAddr,
    path: &str,
) -> JoinHandle<(StatusCode, HeaderMap, bytes::Bytes)> {
    let path = path.to_owned();
    tokio::spawn(async move { get(addr, &path).await })
}

/// The value of an unlabelled gauge in `/metrics`.
async fn gauge(candor: &Candor, name: &str) -> i64 {
    let text = candor.metrics().await;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

/// Waits until candor's queue holds `depth` requests.
async fn queued(candor: &Candor, depth: i64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while gauge(candor, "candor_upstream_queue_depth").await != depth {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the queue never held {depth}"
        );
        tokio::task::yield_now().await;
    }
}

fn limited(upstream: &str, max_connections: usize, max_queue: usize) -> candor::config::Config {
    let mut config = config(upstream);
    config.limit.max_connections = max_connections;
    config.limit.max_queue = max_queue;
    config.failures.retry_after = Duration::from_secs(7);
    config
}

/// A shed answer: 503, `Retry-After` from `failures.retry_after`, the RFC 9209 error type and a
/// problem document.
fn assert_shed(status: StatusCode, headers: &HeaderMap, body: &bytes::Bytes) {
    assert_eq!(status, 503);
    assert_eq!(headers["retry-after"], "7");
    assert_eq!(
        headers["proxy-status"],
        "candor; error=connection_limit_reached"
    );
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(problem(body)["status"], 503);
}

#[tokio::test]
async fn l6_queued_requests_reach_the_upstream_in_arrival_order() {
    let mut gated = Gated::start().await;
    let candor = Candor::start(limited(&gated.upstream.url(), 1, 16)).await;
    let first = fire(candor.addr, "/0");
    let held = gated.next().await;
    let mut waiting = Vec::new();
    for i in 1..=5 {
        waiting.push(fire(candor.addr, &format!("/{i}")));
        queued(&candor, i).await;
    }
    assert_eq!(gauge(&candor, "candor_upstream_in_flight").await, 1);
    assert_eq!(gauge(&candor, "candor_upstream_limit").await, 1);
    held.release.send(()).unwrap();
    assert_eq!(first.await.unwrap().0, 200);
    for i in 1..=5 {
        let arrival = gated.next().await;
        assert_eq!(arrival.path, format!("/{i}"), "FIFO");
        assert_eq!(arrival.concurrent, 1);
        arrival.release.send(()).unwrap();
    }
    for (i, answer) in (1..).zip(waiting) {
        let (status, _, body) = answer.await.unwrap();
        assert_eq!((status, body), (StatusCode::OK, format!("/{i}").into()));
    }
    assert_eq!(gated.peak.load(Ordering::SeqCst), 1);
    assert_eq!(gauge(&candor, "candor_upstream_queue_depth").await, 0);
}

#[tokio::test]
async fn l6_a_full_queue_and_a_queue_timeout_are_503_with_retry_after() {
    let mut gated = Gated::start().await;
    let mut config = limited(&gated.upstream.url(), 1, 1);
    config.limit.queue_timeout = Duration::from_millis(300);
    let candor = Candor::start(config).await;
    let first = fire(candor.addr, "/held");
    let held = gated.next().await;
    let timed_out = fire(candor.addr, "/waits");
    queued(&candor, 1).await;
    // The queue is full: shed at once.
    let (status, headers, body) = get(candor.addr, "/full").await;
    assert_shed(status, &headers, &body);
    // The queued one waits `queue_timeout` and is shed too, never sent.
    let (status, headers, body) = timed_out.await.unwrap();
    assert_shed(status, &headers, &body);
    held.release.send(()).unwrap();
    assert_eq!(first.await.unwrap().0, 200);
    let seen: Vec<String> = gated
        .upstream
        .requests()
        .into_iter()
        .map(|s| s.uri)
        .collect();
    assert_eq!(seen, ["/held"]);
    let metrics = candor.metrics().await;
    assert!(
        metrics.contains("candor_upstream_failures_total{kind=\"shed\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("candor_upstream_queue_seconds_count 1"),
        "{metrics}"
    );
    assert!(!metrics.contains("status=\"504\""), "{metrics}");
}

#[tokio::test]
async fn l6_a_client_that_goes_away_while_queued_frees_its_place() {
    let mut gated = Gated::start().await;
    let candor = Candor::start(limited(&gated.upstream.url(), 1, 1)).await;
    let first = fire(candor.addr, "/held");
    let held = gated.next().await;
    let mut gone = tokio::net::TcpStream::connect(candor.addr).await.unwrap();
    gone.write_all(b"GET /gone HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    queued(&candor, 1).await;
    drop(gone);
    queued(&candor, 0).await;
    // Its place is free: the next request queues instead of being shed, and is the next sent.
    let next = fire(candor.addr, "/next");
    queued(&candor, 1).await;
    held.release.send(()).unwrap();
    assert_eq!(first.await.unwrap().0, 200);
    let arrival = gated.next().await;
    assert_eq!(arrival.path, "/next");
    arrival.release.send(()).unwrap();
    assert_eq!(next.await.unwrap().0, 200);
    let seen: Vec<String> = gated
        .upstream
        .requests()
        .into_iter()
        .map(|s| s.uri)
        .collect();
    assert_eq!(seen, ["/held", "/next"]);
}

fn limit_text(upstream: &str, max_connections: usize) -> String {
    format!(
        "[server]\nworkers = 2\n\n[upstream]\nurl = \"{upstream}\"\nmax_connections = \
         {max_connections}\nmax_queue = 64\n"
    )
}

#[tokio::test]
async fn l6_a_reload_that_lowers_the_limit_under_load_loses_no_request() {
    let mut gated = Gated::start().await;
    let dir = temp_dir("limit-lower");
    let path = dir.join("candor.toml");
    std::fs::write(&path, limit_text(&gated.upstream.url(), 4)).unwrap();
    let config = candor::config::load_with_env(&path, HashMap::new()).unwrap();
    let reload = candor::Reload {
        path: path.clone(),
        env: Some(HashMap::new()),
        watch: true,
        sighup: false,
    };
    let candor = Candor::start_with(config, Some(reload)).await;
    let mut answers = Vec::new();
    let mut held = Vec::new();
    for i in 0..4 {
        answers.push(fire(candor.addr, &format!("/{i}")));
        held.push(gated.next().await);
    }
    for i in 4..8 {
        answers.push(fire(candor.addr, &format!("/{i}")));
    }
    queued(&candor, 4).await;
    save_by_rename(&path, &limit_text(&gated.upstream.url(), 2));
    let deadline = tokio::time::Instant::now() + WAIT;
    while gauge(&candor, "candor_upstream_limit").await != 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reload never applied"
        );
        tokio::task::yield_now().await;
    }
    // Nothing in flight was cut: the four held requests finish.
    for arrival in held {
        arrival.release.send(()).unwrap();
    }
    // The queued four go out, never more than the new limit at the upstream at once.
    for _ in 4..8 {
        let arrival = gated.next().await;
        assert!(
            arrival.concurrent <= 2,
            "{} saw {}",
            arrival.path,
            arrival.concurrent
        );
        arrival.release.send(()).unwrap();
    }
    for (i, answer) in answers.into_iter().enumerate() {
        let (status, _, body) = answer.await.unwrap();
        assert_eq!(status, 200, "/{i}");
        assert_eq!(body, format!("/{i}"));
    }
    assert_eq!(gauge(&candor, "candor_upstream_in_flight").await, 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn l6_the_limit_holds_across_workers() {
    let mut gated = Gated::start().await;
    let mut config = limited(&gated.upstream.url(), 2, 64);
    config.server.workers = 4;
    let candor = Candor::start(config).await;
    let answers: Vec<_> = (0..12)
        .map(|i| fire(candor.addr, &format!("/{i}")))
        .collect();
    let mut first = vec![gated.next().await, gated.next().await];
    queued(&candor, 10).await;
    assert_eq!(gated.peak.load(Ordering::SeqCst), 2);
    for _ in 2..12 {
        first.remove(0).release.send(()).unwrap();
        first.push(gated.next().await);
        assert!(gated.peak.load(Ordering::SeqCst) <= 2);
    }
    for arrival in first {
        arrival.release.send(()).unwrap();
    }
    for answer in answers {
        assert_eq!(answer.await.unwrap().0, 200);
    }
    assert_eq!(gated.peak.load(Ordering::SeqCst), 2);
}

/// Asks candor for a WebSocket upgrade on a fresh connection and returns it once switched.
async fn upgraded(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    client
        .write_all(
            b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let head = tokio::time::timeout(WAIT, read_head(&mut client))
        .await
        .expect("a head within the deadline");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    client
}

#[tokio::test]
async fn l6_an_upgraded_connection_holds_its_place_while_open() {
    // An upstream that switches to a byte echo after its 101, for every connection.
    let (addr, _) = raw_upstream(|mut stream| async move {
        let _ = read_head(&mut stream).await;
        let _ = stream
            .write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
            )
            .await;
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            if stream.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    })
    .await;
    let candor = Candor::start(limited(&format!("http://{addr}"), 1, 4)).await;
    let mut first = upgraded(candor.addr).await;
    first.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    first.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"ping");
    assert_eq!(gauge(&candor, "candor_upstream_in_flight").await, 1);
    // The tunnel is open: a second upgrade waits for its place, until the first one closes.
    let second = tokio::spawn(upgraded(candor.addr));
    queued(&candor, 1).await;
    drop(first);
    let mut second = second.await.unwrap();
    assert_eq!(gauge(&candor, "candor_upstream_queue_depth").await, 0);
    second.write_all(b"pong").await.unwrap();
    second.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"pong");
}
