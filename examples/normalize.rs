//! `NormalizeLayer` on its own: candor's rules in front of any tower service, no proxy needed.
//!
//! A tiny hyper 1.x HTTP/1 server whose tower service is a *local* legacy handler that answers
//! `GET /users/7` with `200 {"status":"error","code":1042,"message":"user not found"}`. The
//! normaliser sits in front of it, configured from the inline TOML below, and turns that into an
//! honest `404` with an RFC 9457 problem document. Nothing here proxies: the layer only looks at
//! the responses of the service it wraps.
//!
//! ```text
//! cargo run --example normalize              # serve until Ctrl-C; try curl -i http://ADDR/users/7
//! cargo run --example normalize -- --once    # make one request itself, print it, exit
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};
use tower::{ServiceBuilder, ServiceExt};

use candor::inspect::{NormalizeLayer, Normalizer};
use candor::metrics::Metrics;

/// The rules, as they would appear in `candor.toml`. The schema requires `upstream.url`; the
/// layer never uses it, since the wrapped service is the "upstream".
const CONFIG: &str = r#"
[upstream]
url = "http://127.0.0.1:1"

[[rules]]
name = "user-not-found"
when.status = [200]
when.json = [
  { pointer = "/status", equals = "error" },
  { pointer = "/code", equals = 1042 },
]
then.status = 404
then.body = "problem"
then.detail_from = "/message"
"#;

/// The legacy API: every answer is a 200, errors included.
async fn legacy(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match req.uri().path() {
        "/users/7" => r#"{"status":"error","code":1042,"message":"user not found"}"#,
        _ => r#"{"status":"ok","data":{"id":1,"name":"Ada"}}"#,
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let once = std::env::args().any(|arg| arg == "--once");

    // Load and validate the rules once, before serving: every regex and pointer is compiled
    // here, so evaluating them per response cannot fail.
    let config = candor::config::from_toml(CONFIG, "<example>", HashMap::new())?;
    let normalizer = Arc::new(Normalizer::new(Arc::new(config)));
    // The layer counts rewrites; a real server would keep the registry and expose it.
    let metrics = Metrics::register(&mut Registry::default());

    // The normaliser in front of the legacy handler. From each request it reads only the method,
    // the path, `Accept` (HTML or JSON errors) and, if present, `x-request-id`, which it copies
    // into the problem document's `request_id`; the request itself goes on untouched.
    let service = ServiceBuilder::new()
        .layer(NormalizeLayer::new(normalizer, metrics))
        .service_fn(legacy);

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}  (try: curl -i http://{addr}/users/7)");

    // Serves forever: one task per connection, as any hyper server does.
    let server = async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(err) => {
                    eprintln!("accept failed: {err}");
                    continue;
                }
            };
            let service = service.clone();
            // hyper calls a `hyper::service::Service` by reference; a clone of the tower stack
            // per request is how tower services are driven (`oneshot` = ready, then call).
            let hyper_service = hyper::service::service_fn(move |req| service.clone().oneshot(req));
            tokio::spawn(async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), hyper_service);
                if let Err(err) = conn.await {
                    eprintln!("connection error: {err}");
                }
            });
        }
    };

    if !once {
        server.await;
        return Ok(());
    }
    tokio::spawn(server);

    // --once: one request over a plain hyper client connection, printed as received.
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(TcpStream::connect(addr).await?))
            .await?;
    tokio::spawn(conn);
    let request = Request::get("/users/7")
        .header("host", addr.to_string())
        .header("x-request-id", "example-1")
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    println!("{:?} {}", response.version(), response.status());
    for (name, value) in response.headers() {
        println!("{name}: {}", value.to_str().unwrap_or("<binary>"));
    }
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    println!("\n{}", String::from_utf8_lossy(&body));

    // Fail loudly if the rewrite did not happen, so that running this in CI checks it.
    if status != StatusCode::NOT_FOUND {
        return Err(format!("expected 404, got {status}").into());
    }
    Ok(())
}
