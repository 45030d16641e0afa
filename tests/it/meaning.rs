//! Status codes that mean what happened: the rule engine's request conditions
//! (`when.request_header`, `when.query`, absent headers), `then.headers` templates and
//! `then.problem` members, each row as a user would write the rule, through the real proxy
//! against real loopback upstreams; then `candor test` and `candor check` on the same keys.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::harness::raw::{RawConn, Response};
use crate::harness::*;
use serde_json::json;
use tokio::io::AsyncWriteExt;

/// The issue's first row, as a user would write it.
const ACCOUNT_CREATED: &str = r#"
[[rules]]
name = "account-created"
when.method = ["POST"]
when.path = '^/accounts$'
when.status = [200]
when.json = [{ pointer = "/id", exists = true }]
then.status = 201
then.headers = [{ name = "location", value = "/accounts/{/id}" }]
"#;

/// The validation row's rule; the chunked and gzip tests use it too.
const VALIDATION_FAILED: &str = r#"
[[rules]]
name = "validation-failed"
when.status = [200]
when.json = [{ pointer = "/status", equals = "error" }, { pointer = "/errors", exists = true }]
then.status = 422
then.body = "problem"
then.detail_from = "/message"
then.problem.type = "https://errors.example.com/validation"
then.problem.title = "Your request is not valid"
then.problem.members = { errors = "/errors" }
"#;

const VALIDATION_BODY: &str = r#"{"status":"error","message":"invalid input","errors":[{"field":"email","message":"must be a valid email"}]}"#;

/// An upstream answering each request target (path *and* query) with its canned response,
/// 404 text otherwise: one path can then carry many bodies, told apart by a query no rule reads.
async fn target_upstream(routes: Vec<(&'static str, Canned)>) -> Upstream {
    let routes = Arc::new(routes);
    upstream(move |req: http::Request<hyper::body::Incoming>| {
        let target = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        let found = routes
            .iter()
            .find(|(t, _)| *t == target)
            .map(|(_, c)| c.clone());
        async move {
            match found {
                Some(canned) => canned.into_response(),
                None => response(404, "no such canned target"),
            }
        }
    })
    .await
}

/// One request on a fresh raw connection, read back with the harness's HTTP/1 reader: the head
/// exactly as candor wrote it. `headers` are whole field lines (`"Authorization: x"`).
async fn wire(
    addr: std::net::SocketAddr,
    method: &str,
    target: &str,
    headers: &[&str],
) -> Response {
    let mut text = format!("{method} {target} HTTP/1.1\r\nHost: api.example\r\n");
    for line in headers {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    let mut conn = RawConn::connect(addr).await;
    assert!(
        conn.send(text.as_bytes()).await,
        "{method} {target}: not sent"
    );
    conn.response(WAIT).await
}

/// Every field line of a response head is one well-formed `name: value` with a token name and
/// no `Set-Cookie` among them: nothing a body value carried was smuggled into the head.
fn assert_clean_head(r: &Response, case: &str) {
    let mut lines = r.head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    assert!(status_line.starts_with("HTTP/1.1 "), "{case}: {:?}", r.head);
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, _) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("{case}: a head line that is not a field: {line:?}"));
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)),
            "{case}: field name {name:?} in {:?}",
            r.head
        );
        assert!(
            !name.eq_ignore_ascii_case("set-cookie"),
            "{case}: {:?}",
            r.head
        );
    }
    assert!(
        !r.head.replace("\r\n", "").contains(['\r', '\n']),
        "{case}: a bare CR or LF in {:?}",
        r.head
    );
}

/// The value of `candor_template_failures_total` for `rule` (0 when the series is absent).
async fn template_failures(candor: &Candor, rule: &str) -> u64 {
    let metrics = candor.metrics().await;
    let series = format!("candor_template_failures_total{{rule=\"{rule}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .map(|v| v.trim().parse().unwrap_or_else(|e| panic!("{v}: {e}")))
        .unwrap_or(0)
}

#[tokio::test]
async fn a_post_that_creates_becomes_201_with_a_location_and_nothing_else_changes() {
    let body = r#"{"id":42,"name":"Ada","email":"ada@example.com"}"#;
    let up = canned_upstream(vec![
        ("/accounts", Canned::json(200, body)),
        ("/accounts/42/notes", Canned::json(200, body)),
        ("/orders", Canned::json(200, body)),
    ])
    .await;
    let candor = Candor::start(config_toml(&up.url(), ACCOUNT_CREATED)).await;

    let (status, headers, got) = request(candor.addr, "POST", "/accounts", &[]).await;
    assert_eq!(status, 201);
    assert_eq!(headers["location"], "/accounts/42");
    assert_eq!(headers["x-candor-rule"], "account-created");
    assert_eq!(headers["x-candor-original-status"], "200");
    assert_eq!(got, body, "the body is kept");
    assert_eq!(headers["content-type"], "application/json");

    for (method, path) in [
        ("GET", "/accounts"),
        ("PUT", "/accounts"),
        ("POST", "/accounts/42/notes"),
        ("POST", "/orders"),
    ] {
        let (status, headers, got) = request(candor.addr, method, path, &[]).await;
        assert_eq!(status, 200, "{method} {path}");
        assert!(!headers.contains_key("location"), "{method} {path}");
        assert!(!headers.contains_key("x-candor-rule"), "{method} {path}");
        assert_eq!(got, body, "{method} {path}");
    }
    assert_eq!(template_failures(&candor, "account-created").await, 0);
}

#[tokio::test]
async fn a_post_without_an_id_is_left_alone() {
    let up = canned_upstream(vec![(
        "/accounts",
        Canned::json(200, r#"{"status":"error","message":"name taken"}"#),
    )])
    .await;
    let candor = Candor::start(config_toml(&up.url(), ACCOUNT_CREATED)).await;
    let (status, headers, _) = request(candor.addr, "POST", "/accounts", &[]).await;
    assert_eq!(status, 200);
    assert!(!headers.contains_key("location"));
    assert!(!headers.contains_key("x-candor-rule"));
}

#[tokio::test]
async fn an_async_job_becomes_202_with_a_location_to_the_job() {
    let up = target_upstream(vec![
        (
            "/reports",
            Canned::json(200, r#"{"job":"abc-123","state":"queued"}"#),
        ),
        (
            "/reports?done",
            Canned::json(200, r#"{"job":"abc-124","state":"done","url":"/r/1"}"#),
        ),
    ])
    .await;
    let rules = r#"
[[rules]]
name = "job-accepted"
when.method = ["POST"]
when.path = '^/reports$'
when.status = [200]
when.json = [{ pointer = "/state", equals = "queued" }, { pointer = "/job", exists = true }]
then.status = 202
then.headers = [{ name = "location", value = "/jobs/{/job}" }]
"#;
    let candor = Candor::start(config_toml(&up.url(), rules)).await;
    let (status, headers, body) = request(candor.addr, "POST", "/reports", &[]).await;
    assert_eq!(status, 202);
    assert_eq!(headers["location"], "/jobs/abc-123");
    assert_eq!(body, r#"{"job":"abc-123","state":"queued"}"#);

    // A job that finished at once is a plain 200.
    let (status, headers, _) = request(candor.addr, "POST", "/reports?done", &[]).await;
    assert_eq!(status, 200);
    assert!(!headers.contains_key("location"));
}

#[tokio::test]
async fn a_validation_error_becomes_a_422_problem_with_the_errors_copied() {
    let up = canned_upstream(vec![("/signup", Canned::json(200, VALIDATION_BODY))]).await;
    let candor = Candor::start(config_toml(&up.url(), VALIDATION_FAILED)).await;
    let (status, headers, body) =
        request(candor.addr, "POST", "/signup", &[("x-request-id", "rq-v")]).await;
    assert_eq!(status, 422);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(headers["content-length"], body.len().to_string().as_str());
    assert_eq!(
        problem(&body),
        json!({
            "type": "https://errors.example.com/validation",
            "title": "Your request is not valid",
            "status": 422,
            "detail": "invalid input",
            "instance": "/signup",
            "request_id": "rq-v",
            "errors": [{"field": "email", "message": "must be a valid email"}],
        })
    );
    assert_eq!(template_failures(&candor, "validation-failed").await, 0);
}

#[tokio::test]
async fn an_optimistic_lock_failure_becomes_409_with_the_versions() {
    let body = r#"{"error":"stale","current_version":5,"your_version":3}"#;
    let up = canned_upstream(vec![("/docs/42", Canned::json(200, body))]).await;
    let rules = r#"
[[rules]]
name = "stale-write"
when.method = ["PUT", "PATCH"]
when.status = [200]
when.json = [{ pointer = "/error", equals = "stale" }]
then.status = 409
then.body = "problem"
then.problem.title = "Version conflict"
then.problem.members = { currentVersion = "/current_version", yourVersion = "/your_version" }
"#;
    let candor = Candor::start(config_toml(&up.url(), rules)).await;
    let (status, headers, got) =
        request(candor.addr, "PUT", "/docs/42", &[("x-request-id", "rq-l")]).await;
    assert_eq!(status, 409);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(
        problem(&got),
        json!({
            "type": "about:blank",
            "title": "Version conflict",
            "status": 409,
            "instance": "/docs/42",
            "request_id": "rq-l",
            "currentVersion": 5,
            "yourVersion": 3,
        })
    );
    let (status, _, kept) = request(candor.addr, "GET", "/docs/42", &[]).await;
    assert_eq!((status.as_u16(), &kept[..]), (200, body.as_bytes()));
}

#[tokio::test]
async fn a_403_to_a_request_without_credentials_becomes_401() {
    let up = canned_upstream(vec![("/me", Canned::json(403, r#"{"error":"forbidden"}"#))]).await;
    let rules = r#"
[[rules]]
name = "needs-auth"
when.status = [403]
when.request_header = [{ name = "authorization", absent = true }]
then.status = 401
then.headers = [{ name = "www-authenticate", value = 'Bearer realm="api"' }]
"#;
    let candor = Candor::start(config_toml(&up.url(), rules)).await;

    let r = wire(candor.addr, "GET", "/me", &[]).await;
    assert_eq!(r.status, 401, "{}", r.head);
    assert_eq!(r.header_all("www-authenticate"), ["Bearer realm=\"api\""]);
    assert_eq!(r.header("x-candor-rule"), Some("needs-auth"));

    for (case, line) in [
        ("a token", "Authorization: Bearer t0ken"),
        // An empty value is still the field: the client did send credentials (of a kind).
        ("an empty value", "Authorization:"),
        ("an empty value with a space", "authorization: "),
    ] {
        let r = wire(candor.addr, "GET", "/me", &[line]).await;
        assert_eq!(r.status, 403, "{case}: {}", r.head);
        assert!(!r.has("www-authenticate"), "{case}: {}", r.head);
        assert!(!r.has("x-candor-rule"), "{case}: {}", r.head);
    }
    // The upstream saw every request, the credential-less one included, with what was sent.
    let seen = up.requests();
    assert_eq!(seen.len(), 4);
    assert!(seen[0].headers.get("authorization").is_none());
    assert_eq!(seen[1].headers["authorization"], "Bearer t0ken");
}

#[tokio::test]
async fn a_405_without_allow_gets_one_and_an_upstream_allow_is_kept() {
    let up = canned_upstream(vec![
        ("/bare", Canned::json(405, "{}")),
        ("/has", Canned::json(405, "{}").header("allow", "POST")),
        ("/empty", Canned::json(405, "{}").header("allow", "")),
    ])
    .await;
    let rules = r#"
[[rules]]
name = "allow-missing"
when.status = [405]
when.header = [{ name = "allow", absent = true }]
then.headers = [{ name = "allow", value = "GET, HEAD" }]
"#;
    let candor = Candor::start(config_toml(&up.url(), rules)).await;

    let r = wire(candor.addr, "DELETE", "/bare", &[]).await;
    assert_eq!(r.status, 405, "{}", r.head);
    assert_eq!(r.header_all("allow"), ["GET, HEAD"]);
    assert_eq!(r.header("x-candor-rule"), Some("allow-missing"));

    let r = wire(candor.addr, "DELETE", "/has", &[]).await;
    assert_eq!(r.status, 405, "{}", r.head);
    assert_eq!(r.header_all("allow"), ["POST"]);
    assert!(!r.has("x-candor-rule"), "{}", r.head);

    // RFC 9110 §10.2.1: an empty Allow says "no method is allowed"; it is there, so kept.
    let r = wire(candor.addr, "DELETE", "/empty", &[]).await;
    assert_eq!(r.status, 405, "{}", r.head);
    assert_eq!(r.header_all("allow"), [""], "{}", r.head);
    assert!(!r.has("x-candor-rule"), "{}", r.head);
}

#[tokio::test]
async fn a_failed_dependency_becomes_503_with_retry_after() {
    let up = canned_upstream(vec![
        (
            "/json",
            Canned::json(500, r#"{"error":"database connection refused"}"#),
        ),
        (
            "/text",
            Canned::new(500, "text/plain", "upstream said: Connection refused"),
        ),
        ("/other", Canned::json(500, r#"{"error":"out of paper"}"#)),
    ])
    .await;
    let rules = r#"
[[rules]]
name = "dependency-down"
when.status = [500]
when.body = '(?i)database|connection refused'
then.status = 503
then.retry_after = "30s"
"#;
    let candor = Candor::start(config_toml(&up.url(), rules)).await;
    for path in ["/json", "/text"] {
        let (status, headers, _) = request(candor.addr, "GET", path, &[]).await;
        assert_eq!(status, 503, "{path}");
        assert_eq!(headers["retry-after"], "30", "{path}");
        // The rule set Retry-After, not the built-in (which would be named here too).
        assert_eq!(headers["x-candor-rule"], "dependency-down", "{path}");
        assert_eq!(headers["x-candor-original-status"], "500", "{path}");
    }
    let (status, headers, body) = request(candor.addr, "GET", "/other", &[]).await;
    assert_eq!(status, 500);
    assert!(!headers.contains_key("retry-after"));
    assert_eq!(body, r#"{"error":"out of paper"}"#);
}

/// Body values in `Location` are one percent-encoded path segment, and a value no encoding
/// makes safe (control characters, dot segments, empty, over 2048 bytes) leaves the header out:
/// counted, never smuggled, the rest of the rewrite applied.
#[tokio::test]
async fn hostile_ids_are_encoded_as_one_segment_or_leave_location_out() {
    let long = format!(r#"{{"id":"{}"}}"#, "x".repeat(10 * 1024));
    let long: &'static str = Box::leak(long.into_boxed_str());
    // (query, body, the Location candor must send; None: none at all)
    let cases: Vec<(&str, &str, Option<&str>)> = vec![
        ("crlf", r#"{"id":"42\r\nSet-Cookie: x"}"#, None),
        ("lf", r#"{"id":"42\nSet-Cookie: x=1"}"#, None),
        ("nul", r#"{"id":"42\u0000"}"#, None),
        ("dotdot-x", r#"{"id":"../x"}"#, Some("/accounts/..%2Fx")),
        ("dotdot", r#"{"id":".."}"#, None),
        ("dot", r#"{"id":"."}"#, None),
        ("empty", r#"{"id":""}"#, None),
        ("long", long, None),
        (
            "space-slash",
            r#"{"id":"a b/c"}"#,
            Some("/accounts/a%20b%2Fc"),
        ),
        (
            "encoded-crlf",
            r#"{"id":"42%0d%0aSet-Cookie:x"}"#,
            Some("/accounts/42%250d%250aSet-Cookie%3Ax"),
        ),
        ("unicode", r#"{"id":"é"}"#, Some("/accounts/%C3%A9")),
        ("number", r#"{"id":42}"#, Some("/accounts/42")),
        ("bool", r#"{"id":true}"#, Some("/accounts/true")),
        // Not a scalar: nothing to put in a path.
        ("object", r#"{"id":{"n":1}}"#, None),
        ("null", r#"{"id":null}"#, None),
    ];
    let routes = cases
        .iter()
        .map(|(case, body, _)| {
            let target: &'static str = Box::leak(format!("/accounts?case={case}").into_boxed_str());
            (target, Canned::json(200, body))
        })
        .collect();
    let up = target_upstream(routes).await;
    let candor = Candor::start(config_toml(&up.url(), ACCOUNT_CREATED)).await;

    let mut refused = 0;
    for (case, body, want) in &cases {
        let r = wire(candor.addr, "POST", &format!("/accounts?case={case}"), &[]).await;
        assert_eq!(r.status, 201, "{case}: {}", r.head);
        assert_clean_head(&r, case);
        assert!(r.header_all("set-cookie").is_empty(), "{case}: {}", r.head);
        assert_eq!(r.header("x-candor-rule"), Some("account-created"), "{case}");
        // The rest of the response is intact: the upstream's body and its length.
        assert_eq!(r.body, body.as_bytes(), "{case}");
        assert_eq!(
            r.header("content-length"),
            Some(body.len().to_string().as_str()),
            "{case}"
        );
        match want {
            Some(location) => assert_eq!(r.header_all("location"), [*location], "{case}"),
            None => {
                refused += 1;
                assert!(!r.has("location"), "{case}: {}", r.head);
            }
        }
        assert_eq!(
            template_failures(&candor, "account-created").await,
            refused,
            "{case}: every refused Location is counted, once"
        );
    }
    let metrics = candor.metrics().await;
    assert!(
        metrics.contains(&format!(
            "candor_template_failures_total{{rule=\"account-created\"}} {refused}"
        )),
        "{metrics}"
    );
}

fn temp_config(text: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "meaning-{}-{}.toml",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, text).unwrap();
    path
}

/// The refusal is logged (warn, with the rule, the header and the request id, never the value)
/// by the real binary.
#[tokio::test]
async fn a_refused_location_is_logged_with_the_rule_and_the_request_id() {
    let up = canned_upstream(vec![(
        "/accounts",
        Canned::json(200, r#"{"id":"42\r\nSet-Cookie: x"}"#),
    )])
    .await;
    let path = temp_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nworkers = 1\n\
         [upstream]\nurl = \"{}\"\n{ACCOUNT_CREATED}",
        up.url()
    ));
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    let running = CandorProcess::run(&name, &path, &["--no-watch"], &[]);
    let (status, headers, _) = request(
        running.addr,
        "POST",
        "/accounts",
        &[("x-request-id", "rq-x")],
    )
    .await;
    assert_eq!(status, 201);
    assert!(!headers.contains_key("location"));
    assert!(!headers.contains_key("set-cookie"));
    let line = running
        .log_line("rule could not fill a header or member; left it out")
        .await;
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(line["rule"], "account-created", "{line}");
    assert_eq!(line["request_id"], "rq-x", "{line}");
    assert_eq!(line["field"], "header location", "{line}");
    assert!(!line.to_string().contains("Set-Cookie"), "{line}");
}

/// An origin that sends `body` chunked, one byte per chunk, each chunk its own write.
async fn one_byte_chunks(body: &'static str) -> std::net::SocketAddr {
    let (addr, _) = raw_upstream(move |mut stream| async move {
        let _ = read_head(&mut stream).await;
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let _ = stream.set_nodelay(true);
        for byte in body.bytes() {
            let chunk = [b'1', b'\r', b'\n', byte, b'\r', b'\n'];
            if stream.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n").await;
        let _ = stream.shutdown().await;
    })
    .await;
    addr
}

#[tokio::test]
async fn members_are_copied_from_a_body_sent_one_byte_per_chunk() {
    let addr = one_byte_chunks(VALIDATION_BODY).await;
    let candor = Candor::start(config_toml(&format!("http://{addr}"), VALIDATION_FAILED)).await;
    let (status, headers, body) = request(candor.addr, "POST", "/signup", &[]).await;
    assert_eq!(status, 422);
    assert_eq!(headers["content-type"], "application/problem+json");
    let doc = problem(&body);
    assert_eq!(doc["detail"], "invalid input");
    assert_eq!(
        doc["errors"],
        json!([{"field": "email", "message": "must be a valid email"}])
    );
    assert_eq!(template_failures(&candor, "validation-failed").await, 0);
}

#[tokio::test]
async fn members_are_copied_from_a_gzip_body() {
    let up = canned_upstream(vec![(
        "/signup",
        Canned::new(200, "application/json", gzip(VALIDATION_BODY.as_bytes()))
            .header("content-encoding", "gzip"),
    )])
    .await;
    let candor = Candor::start(config_toml(&up.url(), VALIDATION_FAILED)).await;
    let (status, headers, body) = request(candor.addr, "POST", "/signup", &[]).await;
    assert_eq!(status, 422);
    assert!(!headers.contains_key("content-encoding"), "{headers:?}");
    let doc = problem(&body);
    assert_eq!(doc["type"], "https://errors.example.com/validation");
    assert_eq!(doc["detail"], "invalid input");
    assert_eq!(
        doc["errors"],
        json!([{"field": "email", "message": "must be a valid email"}])
    );
}

#[tokio::test]
async fn a_member_over_16_kib_is_left_out_counted_and_the_rest_of_the_document_kept() {
    // 20 KiB of field errors.
    let errors: Vec<serde_json::Value> = (0..400)
        .map(|i| json!({"field": format!("field{i}"), "message": "must not be blank here"}))
        .collect();
    let errors = serde_json::Value::Array(errors);
    assert!(
        errors.to_string().len() > 20 * 1024,
        "the test's own premise"
    );
    let big = json!({"status": "error", "message": "too many errors", "code": "E_MANY", "errors": errors});
    let big: &'static str = Box::leak(big.to_string().into_boxed_str());
    // Two members of 9 KiB each: together past the bound, so the second (in name order) is out.
    let nine = json!({"status": "error", "message": "two big", "a": "a".repeat(9 * 1024), "b": "b".repeat(9 * 1024)});
    let nine: &'static str = Box::leak(nine.to_string().into_boxed_str());
    let up = canned_upstream(vec![
        ("/big", Canned::json(200, big)),
        ("/nine", Canned::json(200, nine)),
    ])
    .await;
    let rules = r#"
[[rules]]
name = "many-errors"
when.path = '^/big$'
when.json = [{ pointer = "/status", equals = "error" }]
then.status = 422
then.body = "problem"
then.detail_from = "/message"
then.problem.members = { errors = "/errors", code = "/code" }

[[rules]]
name = "two-big"
when.path = '^/nine$'
when.json = [{ pointer = "/status", equals = "error" }]
then.status = 422
then.body = "problem"
then.detail_from = "/message"
then.problem.members = { first = "/a", second = "/b" }
"#;
    let candor = Candor::start(config_toml(&up.url(), rules)).await;

    let (status, headers, body) =
        request(candor.addr, "POST", "/big", &[("x-request-id", "rq-b")]).await;
    assert_eq!(status, 422);
    assert_eq!(headers["content-length"], body.len().to_string().as_str());
    assert_eq!(
        problem(&body),
        json!({
            "type": "about:blank",
            "title": "Unprocessable Entity",
            "status": 422,
            "detail": "too many errors",
            "instance": "/big",
            "request_id": "rq-b",
            "code": "E_MANY",
        })
    );
    assert_eq!(template_failures(&candor, "many-errors").await, 1);

    let (status, _, body) = request(candor.addr, "POST", "/nine", &[]).await;
    assert_eq!(status, 422);
    let doc = problem(&body);
    assert_eq!(doc["detail"], "two big");
    assert_eq!(
        doc["first"],
        "a".repeat(9 * 1024),
        "the first in name order fits"
    );
    assert!(doc.get("second").is_none(), "the second does not fit");
    assert!(body.len() < 16 * 1024 + 512, "{}", body.len());
    assert_eq!(template_failures(&candor, "two-big").await, 1);
}

#[tokio::test]
async fn request_placeholders_are_filled_from_the_request() {
    let up = canned_upstream(vec![
        ("/items/a%20b", Canned::json(200, "{}")),
        ("/items/7", Canned::json(200, "{}")),
    ])
    .await;
    let rules = r#"
[[rules]]
name = "echo"
when.path = '^/items/'
then.headers = [
  { name = "x-seen", value = "{method} {path}?{query}" },
  { name = "x-trace", value = "req={request_id}" },
  { name = "content-location", value = "{path}" },
  { name = "x-braces", value = "{{literal}} {{/id}}" },
]
"#;
    let candor = Candor::start(config_toml(&up.url(), rules)).await;
    let (status, headers, _) = request(
        candor.addr,
        "DELETE",
        "/items/a%20b?force=1&x=%2F",
        &[("x-request-id", "rq-7")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-seen"], "DELETE /items/a%20b?force=1&x=%2F");
    assert_eq!(headers["x-trace"], "req=rq-7");
    // `{path}` is the path as sent, already encoded: never encoded twice.
    assert_eq!(headers["content-location"], "/items/a%20b");
    assert_eq!(headers["x-braces"], "{literal} {/id}");
    assert_eq!(headers["x-candor-rule"], "echo");

    // No query: `{query}` is empty. No client id: `{request_id}` is the one candor made.
    let (_, headers, _) = request(candor.addr, "GET", "/items/7", &[]).await;
    assert_eq!(headers["x-seen"], "GET /items/7?");
    let made = headers["x-request-id"].to_str().unwrap();
    assert!(!made.is_empty());
    assert_eq!(headers["x-trace"], format!("req={made}").as_str());
}

#[tokio::test]
async fn query_conditions_match_the_raw_query_and_an_absent_one_is_empty() {
    let up = canned_upstream(vec![
        ("/search", Canned::json(200, "{}")),
        ("/plain", Canned::json(200, "{}")),
    ])
    .await;
    let rules = r#"
[[rules]]
name = "legacy-flag"
when.path = '^/search$'
when.query = '(^|&)legacy=1(&|$)'
then.status = 410

[[rules]]
name = "no-query"
when.path = '^/plain$'
when.query = '^$'
then.status = 409
"#;
    let candor = Candor::start(config_toml(&up.url(), rules)).await;
    for (target, want) in [
        ("/search?legacy=1", 410),
        ("/search?q=x&legacy=1&page=2", 410),
        ("/search?legacy=10", 200),
        ("/search?notlegacy=1", 200),
        ("/search", 200),
        ("/plain", 409),
        ("/plain?x=1", 200),
    ] {
        let (status, headers, _) = request(candor.addr, "GET", target, &[]).await;
        assert_eq!(status, want, "{target}");
        assert_eq!(
            headers.contains_key("x-candor-rule"),
            want != 200,
            "{target}"
        );
    }
}

#[tokio::test]
async fn request_header_conditions_match_present_and_absent() {
    let up = canned_upstream(vec![
        ("/a", Canned::json(200, "{}")),
        ("/b", Canned::json(200, "{}")),
    ])
    .await;
    let rules = r#"
[[rules]]
name = "old-client"
when.path = '^/a$'
when.request_header = [{ name = "x-client", matches = "^legacy/" }]
then.status = 426
then.headers = [{ name = "x-upgrade-to", value = "v2" }]

[[rules]]
name = "debug-asked"
when.path = '^/b$'
when.request_header = [{ name = "x-debug" }, { name = "x-client", absent = true }]
then.headers = [{ name = "x-debug-seen", value = "1" }]
"#;
    let candor = Candor::start(config_toml(&up.url(), rules)).await;
    // (path, request headers, the status candor must send, whether the rule applies)
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        u16,
        bool,
    );
    let cases: [Case; 8] = [
        ("/a", &[("x-client", "legacy/1.0")], 426, true),
        // One of repeated values matching is enough.
        (
            "/a",
            &[("x-client", "modern/2"), ("x-client", "legacy/0.9")],
            426,
            true,
        ),
        ("/a", &[("x-client", "modern/2")], 200, false),
        ("/a", &[("x-client", "")], 200, false),
        ("/a", &[], 200, false),
        // Presence only: an empty value counts.
        ("/b", &[("x-debug", "")], 200, true),
        ("/b", &[("x-debug", "1"), ("x-client", "a")], 200, false),
        ("/b", &[], 200, false),
    ];
    for (path, headers, want, applies) in cases {
        let (status, got, _) = request(candor.addr, "GET", path, headers).await;
        assert_eq!(status, want, "{path} {headers:?}");
        assert_eq!(
            got.contains_key("x-candor-rule"),
            applies,
            "{path} {headers:?}"
        );
        let set = if path == "/a" {
            "x-upgrade-to"
        } else {
            "x-debug-seen"
        };
        assert_eq!(got.contains_key(set), applies, "{path} {headers:?}");
    }
}

/// A config whose `[[tests]]` use `expect.headers` (a value and `"<absent>"`) and
/// `expect.json`, with `right` tests or deliberately `wrong` ones.
fn tests_config(wrong: bool) -> String {
    let (location, absent, field, kind) = if wrong {
        (
            "/accounts/43",
            "\"/accounts/7\"",
            "phone",
            "\"https://errors.example.com/other\"",
        )
    } else {
        (
            "/accounts/42",
            "\"<absent>\"",
            "email",
            "\"https://errors.example.com/validation\"",
        )
    };
    format!(
        r#"[upstream]
url = "http://127.0.0.1:3000"
{ACCOUNT_CREATED}
{VALIDATION_FAILED}
[[tests]]
name = "a created account has a location"
request = {{ method = "POST", path = "/accounts" }}
response.body = '{{"id":42}}'
expect = {{ rule = "account-created", status = 201, headers = {{ location = "{location}" }} }}

[[tests]]
name = "a hostile id has no location"
request = {{ method = "POST", path = "/accounts" }}
response.body = '{{"id":"42\r\nSet-Cookie: x"}}'
expect = {{ status = 201, headers = {{ location = {absent}, set-cookie = "<absent>" }} }}

[[tests]]
name = "validation errors are copied"
request.path = "/signup"
response.body = '{VALIDATION_BODY}'
expect.status = 422
expect.json = [{{ pointer = "/errors/0/field", equals = "{field}" }}, {{ pointer = "/type", equals = {kind} }}, {{ pointer = "/status", equals = 422 }}]
"#
    )
}

fn candor_cli(command: &str, path: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args([command, "--config"])
        .arg(path)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn candor_test_checks_expected_headers_and_json() {
    let right = temp_config(&tests_config(false));
    let (code, stdout, stderr) = candor_cli("test", &right);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("3 tests, 3 passed, 0 failed"), "{stdout}");

    let wrong = temp_config(&tests_config(true));
    let (code, stdout, stderr) = candor_cli("test", &wrong);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("3 tests, 0 passed, 3 failed"), "{stdout}");
    for needle in [
        r#"FAIL  a created account has a location: expected header location "/accounts/43", got "/accounts/42""#,
        r#"FAIL  a hostile id has no location: expected header location "/accounts/7", got <absent>"#,
        r#"expected json /errors/0/field equals "phone": does not hold"#,
        r#"expected json /type equals "https://errors.example.com/other": does not hold"#,
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing:\n{stdout}");
    }
    // The right expectation in the same test does not fail with the wrong ones.
    assert!(!stdout.contains("/status equals 422"), "{stdout}");
}

#[test]
fn candor_check_locates_template_and_member_mistakes() {
    const HEAD: &str = "[upstream]\nurl = \"http://127.0.0.1:3000\"\n\n[[rules]]\nname = \"r\"\nwhen.status = [200]\n";
    // (case, the rule's lines after HEAD (line 7 on), needles)
    let cases: [(&str, &str, &[&str]); 7] = [
        (
            "unknown placeholder",
            "then.status = 201\nthen.headers = [{ name = \"location\", value = \"/a/{nope}\" }]\n",
            &[":8:", "rule \"r\"", "then.headers[0].value", "unknown placeholder '{nope}'"],
        ),
        (
            "unbalanced brace",
            "then.headers = [{ name = \"location\", value = \"/a/{/a\" }]\n",
            &[":7:", "then.headers[0].value", "unbalanced '{'"],
        ),
        (
            "reserved member name",
            "then.status = 422\nthen.body = \"problem\"\nthen.problem.members = { status = \"/s\" }\n",
            &[":9:", "then.problem.members.status", "reserved member name"],
        ),
        (
            "bad member name",
            "then.status = 422\nthen.body = \"problem\"\nthen.problem.members = { 1abc = \"/x\" }\n",
            &[":9:", "then.problem.members.1abc", "invalid member name"],
        ),
        (
            "problem without body = problem",
            "then.status = 422\nthen.problem.title = \"Nope\"\n",
            &[":8:", "then.problem", "only used with then.body = \"problem\""],
        ),
        (
            "absent with matches",
            "when.header = [{ name = \"allow\", absent = true, matches = \"GET\" }]\nthen.status = 405\n",
            &[":7:", "when.header[0].absent", "conflicts with matches"],
        ),
        (
            "request header absent with matches",
            "when.request_header = [{ name = \"authorization\", matches = \"x\", absent = true }]\nthen.status = 401\n",
            &[":7:", "when.request_header[0].absent", "conflicts with matches"],
        ),
    ];
    for (case, rule, needles) in cases {
        let path = temp_config(&format!("{HEAD}{rule}"));
        let (code, stdout, stderr) = candor_cli("check", &path);
        assert_eq!(code, 78, "{case}: {stdout}{stderr}");
        assert!(stdout.is_empty(), "{case}: {stdout}");
        assert!(
            stderr.contains(&*path.to_string_lossy()),
            "{case}: file not named: {stderr}"
        );
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{case}: {needle:?} missing from: {stderr}"
            );
        }
    }
}

/// A header template is reason enough to read the body, and a rule whose only change is a
/// header it cannot fill changes nothing but still counts what it left out.
#[tokio::test]
async fn a_template_alone_reads_the_body_and_an_unfillable_one_is_still_counted() {
    let up = canned_upstream(vec![
        ("/accounts", Canned::json(200, r#"{"id":9}"#)),
        ("/listed", Canned::json(405, r#"{"allowed":"GET, POST"}"#)),
        ("/unlisted", Canned::json(405, r#"{"error":"method"}"#)),
    ])
    .await;
    let rules = r#"
[[rules]]
name = "created-no-condition"
when.method = ["POST"]
when.path = '^/accounts$'
then.status = 201
then.headers = [{ name = "location", value = "/accounts/{/id}" }]

[[rules]]
name = "allow-from-body"
when.status = [405]
then.headers = [{ name = "allow", value = "{/allowed}" }]
"#;
    let candor = Candor::start(config_toml(&up.url(), rules)).await;
    let (status, headers, _) = request(candor.addr, "POST", "/accounts", &[]).await;
    assert_eq!(status, 201);
    assert_eq!(headers["location"], "/accounts/9");

    let (status, headers, _) = request(candor.addr, "DELETE", "/listed", &[]).await;
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "GET, POST");
    assert_eq!(template_failures(&candor, "allow-from-body").await, 0);

    let (status, headers, body) = request(candor.addr, "DELETE", "/unlisted", &[]).await;
    assert_eq!(status, 405);
    assert!(!headers.contains_key("allow"));
    assert!(!headers.contains_key("x-candor-rule"), "nothing changed");
    assert_eq!(body, r#"{"error":"method"}"#);
    assert_eq!(
        template_failures(&candor, "allow-from-body").await,
        1,
        "the header left out is counted even though the rule then changed nothing"
    );
}
