//! Test harness: real loopback upstreams (hyper servers and raw TCP scripts), candor started
//! through `candor::run` on port 0, and clients that speak either hyper or raw bytes. With
//! `CANDOR_CAPTURE_DIR` set, the clients and hyper upstreams record their exchanges for the
//! protocol lint (see `capture`).
#![allow(dead_code)]

pub mod capture;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A response with `status` and `body`.
pub fn response(status: u16, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r
}

/// What an upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub version: http::Version,
    pub headers: HeaderMap,
}

/// A hyper upstream on 127.0.0.1:0 that records requests and connections.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub connections: Arc<AtomicUsize>,
}

impl Upstream {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Starts an upstream whose responses `handler` makes.
pub async fn upstream<F, Fut>(handler: F) -> Upstream
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(AtomicUsize::new(0));
    let (seen2, conns2) = (seen.clone(), connections.clone());
    let test = capture::test_name();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            conns2.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            let seen = seen2.clone();
            let stream = capture::Tap::new(stream, capture::Side::Upstream, "upstream", &test);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    seen.lock().unwrap().push(Seen {
                        method: req.method().to_string(),
                        uri: req.uri().to_string(),
                        version: req.version(),
                        headers: req.headers().clone(),
                    });
                    let fut = handler(req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Upstream {
        addr,
        seen,
        connections,
    }
}

/// A raw TCP upstream: `script` gets each accepted connection.
pub async fn raw_upstream<F, Fut>(script: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(script(stream));
        }
    });
    (addr, accepted)
}

/// Reads one request head (up to the blank line) from a raw connection.
pub async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// An address nothing listens on: bound, then released.
pub fn dead_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// An address where connecting neither succeeds nor fails: a listener whose accept queue is
/// full and never drained, so further SYNs are dropped until the connect times out. Hold the
/// returned sockets for as long as the address must stay that way.
pub fn black_hole() -> (SocketAddr, Vec<socket2::Socket>) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut sockets = vec![socket];
    for _ in 0..8 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&addr.into());
        sockets.push(s);
    }
    (addr, sockets)
}

/// A candor instance serving on 127.0.0.1:0.
pub struct Candor {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), candor::RunError>>>,
}

impl Candor {
    pub async fn start(config: candor::config::Config) -> Candor {
        Candor::start_with(config, None).await
    }

    /// Starts candor with hot reload from `reload`.
    pub async fn start_with(
        config: candor::config::Config,
        reload: Option<candor::Reload>,
    ) -> Candor {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let listeners = candor::Listeners::bind_to(any, any).unwrap();
        let addr = listeners.proxy_addr().unwrap();
        let admin = listeners.admin_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(candor::run_with(
            config,
            listeners,
            async move {
                let _ = stopped.await;
            },
            reload,
        ));
        // Ready means the workers accept and hot reload watches: wait for it, with a deadline.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(stream) = TcpStream::connect(admin).await {
                let req = Request::get("/readyz")
                    .header("host", "admin")
                    .body(full(""))
                    .unwrap();
                if let Ok((mut sender, conn)) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
                {
                    tokio::spawn(conn);
                    if let Ok(response) = sender.send_request(req).await {
                        if response.status() == StatusCode::OK {
                            break;
                        }
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline && !task.is_finished(),
                "candor did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Candor {
            addr,
            admin,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Triggers graceful shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts down and returns what `run` returned.
    pub async fn stop(mut self) -> Result<(), candor::RunError> {
        self.begin_shutdown();
        self.task.take().unwrap().await.unwrap()
    }

    pub async fn metrics(&self) -> String {
        let (status, _, body) = get(self.admin, "/metrics").await;
        assert_eq!(status, 200);
        String::from_utf8(body.to_vec()).unwrap()
    }
}

impl Drop for Candor {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

/// A config for `upstream` with short, test-friendly timeouts and one worker.
pub fn config(upstream: &str) -> candor::config::Config {
    let mut config = candor::config::Config::for_upstream(upstream).unwrap();
    config.server.workers = 1;
    config.server.drain_timeout = Duration::from_secs(5);
    config
}

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

/// A canned upstream response.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Canned {
    pub fn new(status: u16, content_type: &str, body: impl Into<Bytes>) -> Canned {
        Canned {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
        }
    }

    pub fn json(status: u16, body: &str) -> Canned {
        Canned::new(
            status,
            "application/json",
            Bytes::copy_from_slice(body.as_bytes()),
        )
    }

    pub fn header(mut self, name: &str, value: &str) -> Canned {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn into_response(self) -> Response<Body> {
        let mut r = response(self.status, self.body);
        for (k, v) in self.headers {
            r.headers_mut().append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(&v).unwrap(),
            );
        }
        r
    }
}

/// An upstream answering each path with its canned response (404 text otherwise).
pub async fn canned_upstream(routes: Vec<(&'static str, Canned)>) -> Upstream {
    let routes = Arc::new(routes);
    upstream(move |req: Request<Incoming>| {
        let routes = routes.clone();
        async move {
            let path = req.uri().path().to_owned();
            match routes.iter().find(|(p, _)| *p == path) {
                Some((_, canned)) => canned.clone().into_response(),
                None => response(404, "no such canned route"),
            }
        }
    })
    .await
}

/// A config from TOML text with `upstream.url` filled in.
pub fn config_toml(upstream: &str, text: &str) -> candor::config::Config {
    let text = format!("[upstream]\nurl = \"{upstream}\"\n\n{text}");
    let mut config = candor::config::from_toml(&text, "test.toml", Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    config.server.workers = 1;
    config
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
