//! Origins the tests script: a hyper origin that records what it was asked and answers through a
//! handler (or canned routes), and a raw TCP origin that hands each connection to a script. The
//! hyper origin's connections are recorded for the protocol lint (`capture`).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use super::{capture, response, Body};

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
