//! The embedded legacy API of `candor demo`: one endpoint per anti-pattern candor exists to fix,
//! served by a small hyper server on loopback.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, SERVER};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// How long `/slow` hangs before it finally answers: far longer than the demo's upstream timeout.
const HANG: Duration = Duration::from_secs(60);

/// One demo endpoint: the request and what the legacy API does wrong there.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Case {
    /// Request method.
    pub method: &'static str,
    /// Request path.
    pub path: &'static str,
    /// The anti-pattern, for the table.
    pub what: &'static str,
}

/// Every endpoint the demo exercises, in table order.
pub(crate) const CASES: &[Case] = &[
    Case {
        method: "GET",
        path: "/users/42",
        what: "healthy response",
    },
    Case {
        method: "GET",
        path: "/users/7",
        what: "200 with an error body",
    },
    Case {
        method: "POST",
        path: "/orders",
        what: "200 with validation errors",
    },
    Case {
        method: "GET",
        path: "/reports/daily",
        what: "200 saying rate limited",
    },
    Case {
        method: "GET",
        path: "/orders/9",
        what: "200 with a null entity",
    },
    Case {
        method: "DELETE",
        path: "/users/42",
        what: "200 with {} for a delete",
    },
    Case {
        method: "GET",
        path: "/payments/1",
        what: "status carried in the body",
    },
    Case {
        method: "GET",
        path: "/profile",
        what: "HTML 404 page to a JSON client",
    },
    Case {
        method: "GET",
        path: "/export",
        what: "500 with a stack trace",
    },
    Case {
        method: "GET",
        path: "/search",
        what: "429 without Retry-After",
    },
    Case {
        method: "GET",
        path: "/slow",
        what: "hangs",
    },
];

/// Serves the legacy API on `listener` forever.
pub(crate) async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(
                    |req| async move { Ok::<_, Infallible>(respond(req).await) },
                );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn respond(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    match (method, req.uri().path()) {
        (Method::GET, "/users/42") => json(
            StatusCode::OK,
            r#"{"status":"ok","data":{"id":42,"name":"Ada Lovelace"}}"#,
        ),
        (Method::GET, "/users/7") => json(
            StatusCode::OK,
            r#"{"status":"error","code":1042,"message":"user not found"}"#,
        ),
        (Method::POST, "/orders") => json(
            StatusCode::OK,
            r#"{"status":"error","errors":[{"field":"quantity","message":"must be positive"}]}"#,
        ),
        (Method::GET, "/reports/daily") => json(
            StatusCode::OK,
            r#"{"error":"rate_limited","message":"too many report requests","retry_in":30}"#,
        ),
        (Method::GET, "/orders/9") => json(StatusCode::OK, r#"{"data":null}"#),
        (Method::DELETE, "/users/42") => json(StatusCode::OK, "{}"),
        (Method::GET, "/payments/1") => json(
            StatusCode::OK,
            r#"{"http_status":503,"message":"payment provider unavailable"}"#,
        ),
        (Method::GET, "/export") => html(
            StatusCode::INTERNAL_SERVER_ERROR,
            "<html><head><title>500 Internal Server Error</title></head><body>\
             <h1>Internal Server Error</h1><pre>Traceback (most recent call last):\n  \
             File \"/srv/legacy/app/export.py\", line 88, in run\n    \
             rows = db.execute(\"SELECT * FROM invoices WHERE tenant = %s\" % tenant)\n\
             psycopg2.OperationalError: could not connect to server at 10.0.3.17:5432\n\
             </pre></body></html>",
        ),
        (Method::GET, "/search") => json(StatusCode::TOO_MANY_REQUESTS, r#"{"error":"slow down"}"#),
        (Method::GET, "/slow") => {
            tokio::time::sleep(HANG).await;
            json(StatusCode::OK, r#"{"status":"ok","finally":true}"#)
        }
        _ => html(
            StatusCode::NOT_FOUND,
            "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\
             <title>404 Not Found</title></head><body><h1>Not Found</h1>\
             <p>The requested URL was not found on this server.</p><hr>\
             <address>Apache/2.2.3 (CentOS) Server at legacy.internal Port 80</address>\
             </body></html>",
        ),
    }
}

fn json(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    with_type(status, body, "application/json")
}

fn html(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    with_type(status, body, "text/html; charset=iso-8859-1")
}

fn with_type(
    status: StatusCode,
    body: &'static str,
    content_type: &'static str,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(SERVER, HeaderValue::from_static("Apache/2.2.3 (CentOS)"));
    headers.insert("x-powered-by", HeaderValue::from_static("PHP/5.3.3"));
    response
}
