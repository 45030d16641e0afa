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
    /// Request headers beyond the ones every demo request sends.
    pub headers: &'static [(&'static str, &'static str)],
    /// The response header that carries what the new status promises, shown in the table.
    pub shows: Option<&'static str>,
    /// Or the members of candor's problem document that do.
    pub members: &'static [&'static str],
}

impl Case {
    pub(crate) const fn new(method: &'static str, path: &'static str, what: &'static str) -> Case {
        Case {
            method,
            path,
            what,
            headers: &[],
            shows: None,
            members: &[],
        }
    }

    const fn keeping(mut self, members: &'static [&'static str]) -> Case {
        self.members = members;
        self
    }

    pub(crate) const fn showing(mut self, header: &'static str) -> Case {
        self.shows = Some(header);
        self
    }

    const fn with(mut self, headers: &'static [(&'static str, &'static str)]) -> Case {
        self.headers = headers;
        self
    }
}

/// Every endpoint the demo exercises, in table order.
pub(crate) const CASES: &[Case] = &[
    Case::new("GET", "/users/42", "healthy response"),
    Case::new("GET", "/users/7", "200 with an error body"),
    Case::new("POST", "/accounts", "200 for a create").showing("location"),
    Case::new("POST", "/reports", "200 for an async job").showing("location"),
    Case::new("POST", "/orders", "200 with validation errors").keeping(&["errors"]),
    Case::new("PUT", "/docs/42", "200 for a stale-version write")
        .keeping(&["currentVersion", "yourVersion"]),
    Case::new("GET", "/admin/audit", "403 to a request without token").showing("www-authenticate"),
    Case::new("GET", "/admin/audit", "403 to a valid token")
        .with(&[("authorization", "Bearer demo-token")]),
    Case::new("DELETE", "/orders/9", "405 without Allow").showing("allow"),
    Case::new("GET", "/reports/daily", "200 saying rate limited").showing("retry-after"),
    Case::new("GET", "/orders/9", "200 with a null entity"),
    Case::new("DELETE", "/users/42", "200 with {} for a delete"),
    Case::new("GET", "/payments/1", "status carried in the body").showing("retry-after"),
    Case::new("GET", "/inventory", "500 saying the database is down").showing("retry-after"),
    Case::new("GET", "/profile", "HTML 404 page to a JSON client"),
    Case::new("GET", "/export", "500 with a stack trace"),
    Case::new("GET", "/search", "429 without Retry-After").showing("retry-after"),
    Case::new("GET", "/slow", "hangs"),
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
        (Method::POST, "/accounts") => json(
            StatusCode::OK,
            r#"{"id":77,"status":"created","name":"Grace Hopper"}"#,
        ),
        (Method::POST, "/reports") => json(StatusCode::OK, r#"{"job":"abc-123","state":"queued"}"#),
        (Method::POST, "/orders") => json(
            StatusCode::OK,
            r#"{"status":"error","message":"the order is not valid","errors":[{"field":"quantity","message":"must be positive"}]}"#,
        ),
        (Method::PUT, "/docs/42") => json(
            StatusCode::OK,
            r#"{"error":"version_conflict","message":"document 42 was changed by someone else","current_version":5,"your_version":3}"#,
        ),
        (Method::GET, "/admin/audit") => json(StatusCode::FORBIDDEN, r#"{"error":"forbidden"}"#),
        (Method::DELETE, "/orders/9") => json(
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"error":"method not allowed"}"#,
        ),
        (Method::GET, "/inventory") => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error":"database unavailable: connection refused"}"#,
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
