//! Audit on live traffic, end to end: lies found per route and nothing for honest responses,
//! a streamed first byte never held back and a large download untouched while audit watches,
//! `DELETE /audit` guarded and resetting, a live rule's fix counted as fixed, the inspection
//! places shared (a skip counted, the response intact), and sampling (0.0 observes nothing)
//! following a reload that keeps what was found.
//!
//! Audit records an exchange on a task of its own once its body has gone by, so the tests wait
//! for the report (or metric) to say so rather than for a time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::harness::*;

const LIE: &str = r#"{"status":"error","message":"user not found"}"#;
const HONEST: &str = r#"{"id":1,"name":"Ada"}"#;
const TOKEN: &str = "audit-token-0123456789abcdef";

/// A config with audit on and `extra` appended.
fn audit_config(upstream: &str, extra: &str) -> candor::config::Config {
    config_toml(upstream, &format!("[audit]\nenabled = true\n{extra}"))
}

/// `GET /audit.json`, as JSON.
async fn report(admin: SocketAddr) -> Value {
    let (status, headers, body) = get(admin, "/audit.json").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    serde_json::from_slice(&body).unwrap()
}

/// Waits until the report counts `n` exchanges, and returns it.
async fn until_exchanges(admin: SocketAddr, n: u64) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = report(admin).await;
        if now["exchanges"] == n {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the report never counted {n} exchanges: {now}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Waits until `/metrics` has `line`.
async fn until_metric(candor: &Candor, line: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = candor.metrics().await;
        if text.lines().any(|l| l == line) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/metrics never showed {line}:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// The report's entry for `method` `route`.
fn route<'a>(report: &'a Value, method: &str, route: &str) -> &'a Value {
    report["routes"]
        .as_array()
        .and_then(|routes| {
            routes
                .iter()
                .find(|r| r["method"] == method && r["route"] == route)
        })
        .unwrap_or_else(|| panic!("no {method} {route} in {report}"))
}

/// A body that sends `first`, then waits for `go` before it sends `rest`.
fn held(first: &'static str, rest: &'static str, go: oneshot::Receiver<()>) -> Body {
    let frames = futures_util::stream::unfold((0, Some(go)), move |(step, mut go)| async move {
        let chunk = match step {
            0 => first,
            1 => {
                let _ = go.take()?.await;
                rest
            }
            _ => return None,
        };
        let frame = Ok::<_, BoxError>(Frame::data(Bytes::from_static(chunk.as_bytes())));
        Some((frame, (step + 1, go)))
    });
    StreamBody::new(frames).boxed()
}

fn json(body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}

/// An upstream answering `/slow` with a body held after its first chunk (until the returned
/// sender fires), `/download` with `DOWNLOAD` bytes in 64 KiB frames, `/users/1` honestly and
/// every other `/users/…` with the lie.
async fn legacy() -> (Upstream, oneshot::Sender<()>) {
    let (go, wait) = oneshot::channel();
    let wait = Arc::new(Mutex::new(Some(wait)));
    let up = upstream(move |req: Request<Incoming>| {
        let wait = wait.clone();
        async move {
            match req.uri().path() {
                "/slow" => {
                    let wait = wait.lock().unwrap().take().expect("/slow is asked once");
                    json(held(r#"{"status":"error","#, r#""message":"held"}"#, wait))
                }
                "/download" => {
                    let frames = (0..DOWNLOAD / 65536).map(|i| {
                        let chunk = pattern(i as u64, 65536);
                        Ok::<_, BoxError>(Frame::data(Bytes::from(chunk)))
                    });
                    Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed())
                }
                "/users/1" => json(full(HONEST)),
                _ => json(full(LIE)),
            }
        }
    })
    .await;
    (up, go)
}

const DOWNLOAD: usize = 10 << 20;

#[tokio::test]
async fn lies_are_found_per_route_and_honest_responses_show_nothing() {
    let (up, _go) = legacy().await;
    let candor = Candor::start(audit_config(&up.url(), "")).await;
    for path in ["/users/7", "/users/8", "/users/1"] {
        let (status, _, body) = get(candor.addr, path).await;
        assert_eq!(status, 200, "{path}");
        let want = if path == "/users/1" { HONEST } else { LIE };
        assert_eq!(body, want, "audit must not change a body");
    }
    let report = until_exchanges(candor.admin, 3).await;
    assert_eq!(report["enabled"], true);
    assert_eq!(report["skipped"], 0);
    assert_eq!(
        report["routes"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    let users = route(&report, "GET", "/users/{id}");
    assert_eq!(users["upstream_statuses"], serde_json::json!({"200": 3}));
    assert_eq!(users["sent_statuses"], serde_json::json!({"200": 3}));
    let findings = users["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "only the lie is a finding: {users}");
    let finding = &findings[0];
    assert_eq!(finding["kind"], "error_in_success");
    assert_eq!(
        (finding["count"].as_u64(), finding["fixed"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(finding["evidence"]["pointer"], "/status");
    assert!(
        finding["proposal"]
            .as_str()
            .is_some_and(|p| p.contains("[[rules]]")),
        "an unfixed lie gets a proposal: {finding}"
    );

    until_metric(
        &candor,
        "candor_audit_findings_total{kind=\"error_in_success\"} 2",
    )
    .await;
    let metrics = candor.metrics().await;
    assert!(
        metrics.contains("candor_audit_findings_total{kind=\"null_entity\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("candor_audit_skipped_total 0"),
        "{metrics}"
    );

    // The status page's section: the same counts.
    let (_, _, body) = get(candor.admin, "/status.json").await;
    let status: Value = serde_json::from_slice(&body).unwrap();
    let audit = &status["audit"];
    assert_eq!(audit["enabled"], true);
    assert_eq!(
        (audit["exchanges"].as_u64(), audit["skipped"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(
        audit["findings"],
        serde_json::json!([{"route": "/users/{id}", "method": "GET",
                            "kind": "error_in_success", "count": 2, "fixed": 0}])
    );
}

#[tokio::test]
async fn audit_never_holds_back_a_first_byte_nor_changes_a_large_download() {
    let (up, go) = legacy().await;
    let candor = Candor::start(audit_config(&up.url(), "")).await;

    let req = Request::get("/slow")
        .header("host", "api")
        .body(full(""))
        .unwrap();
    let response = send(candor.addr, req).await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    // The upstream holds the rest until `go` fires, so this chunk came through on its own.
    let first = tokio::time::timeout(WAIT, body.frame())
        .await
        .expect("the first chunk arrives while the upstream holds the rest")
        .unwrap()
        .unwrap();
    assert_eq!(first.data_ref().unwrap().as_ref(), br#"{"status":"error","#);
    go.send(()).unwrap();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, r#""message":"held"}"#);

    let (status, _, download) = get(candor.addr, "/download").await;
    assert_eq!(status, 200);
    assert_eq!(download.len(), DOWNLOAD);
    let want: Vec<u8> = (0..DOWNLOAD / 65536)
        .flat_map(|i| pattern(i as u64, 65536))
        .collect();
    assert!(download == want, "the download arrived changed");

    // Both were observed: the held one whole, its two chunks read as one body.
    let report = until_exchanges(candor.admin, 2).await;
    let slow = route(&report, "GET", "/slow");
    assert_eq!(slow["findings"][0]["kind"], "error_in_success", "{slow}");
    assert_eq!(slow["findings"][0]["example"]["complete"], true, "{slow}");
    let large = route(&report, "GET", "/download");
    assert_eq!(large["upstream_statuses"], serde_json::json!({"200": 1}));
}

#[tokio::test]
async fn delete_audit_is_guarded_and_resets_what_was_found() {
    let (up, _go) = legacy().await;
    let candor = Candor::start(audit_config(
        &up.url(),
        &format!("[server]\nadmin_token = \"{TOKEN}\"\n"),
    ))
    .await;
    get(candor.addr, "/users/7").await;
    until_exchanges(candor.admin, 1).await;

    let delete = |auth: Option<&'static str>| async move {
        let mut req = Request::delete("/audit").header("host", "admin");
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        collect(send(candor.admin, req.body(full("")).unwrap()).await).await
    };
    let (status, headers, _) = delete(None).await;
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], r#"Bearer realm="candor""#);
    let (status, _, _) = delete(Some("Bearer not-the-token-0123456789")).await;
    assert_eq!(status, 401);
    let (status, headers, _) = request(candor.admin, "POST", "/audit", &[]).await;
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "DELETE");
    let (status, _, _) = request(candor.admin, "PUT", "/audit.json", &[]).await;
    assert_eq!(status, 405);
    // Refused writes changed nothing.
    assert_eq!(report(candor.admin).await["exchanges"], 1);

    let bearer: &'static str = Box::leak(format!("Bearer {TOKEN}").into_boxed_str());
    let (status, _, body) = delete(Some(bearer)).await;
    assert_eq!(status, 204);
    assert!(body.is_empty());
    let now = report(candor.admin).await;
    assert_eq!(now["exchanges"], 0);
    assert_eq!(now["routes"], serde_json::json!([]));

    // Observation goes on.
    get(candor.addr, "/users/8").await;
    let now = until_exchanges(candor.admin, 1).await;
    assert_eq!(route(&now, "GET", "/users/{id}")["findings"][0]["count"], 1);
}

#[tokio::test]
async fn the_report_answers_while_audit_is_off() {
    let (up, _go) = legacy().await;
    let candor = Candor::start(config(&up.url())).await;
    let (status, _, body) = get(candor.addr, "/users/7").await;
    assert_eq!((status.as_u16(), body), (200, Bytes::from(LIE)));
    let now = report(candor.admin).await;
    assert_eq!(now["enabled"], false);
    assert_eq!(now["exchanges"], 0);
    assert_eq!(now["routes"], serde_json::json!([]));
    let (_, _, body) = get(candor.admin, "/status.json").await;
    let status: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status["audit"]["enabled"], false);
}

#[tokio::test]
async fn a_lie_a_rule_fixes_is_reported_fixed_without_a_proposal() {
    let (up, _go) = legacy().await;
    let rule = "[[rules]]\nname = \"user-not-found\"\nwhen.status = [200]\n\
                when.json = [{ pointer = \"/status\", equals = \"error\" }]\n\
                then.status = 404\nthen.body = \"problem\"\n";
    let candor = Candor::start(audit_config(&up.url(), rule)).await;
    for path in ["/users/7", "/users/8"] {
        let (status, headers, _) = get(candor.addr, path).await;
        assert_eq!(status, 404);
        assert_eq!(headers["content-type"], "application/problem+json");
    }
    let report = until_exchanges(candor.admin, 2).await;
    let users = route(&report, "GET", "/users/{id}");
    assert_eq!(users["upstream_statuses"], serde_json::json!({"200": 2}));
    assert_eq!(users["sent_statuses"], serde_json::json!({"404": 2}));
    let finding = &users["findings"][0];
    assert_eq!(finding["kind"], "error_in_success");
    assert_eq!(
        (finding["count"].as_u64(), finding["fixed"].as_u64()),
        (Some(2), Some(2))
    );
    assert!(
        finding.get("proposal").is_none(),
        "a fixed lie needs no rule: {finding}"
    );
}

#[tokio::test]
async fn with_no_inspection_place_free_an_exchange_is_skipped_and_delivered_intact() {
    let (up, go) = legacy().await;
    let candor = Candor::start(audit_config(&up.url(), "[inspect]\nmax_concurrent = 1\n")).await;

    // The held response holds the one place while it streams.
    let req = Request::get("/slow")
        .header("host", "api")
        .body(full(""))
        .unwrap();
    let mut slow = send(candor.addr, req).await.into_body();
    let first = tokio::time::timeout(WAIT, slow.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.is_data());

    let (status, _, body) = get(candor.addr, "/users/7").await;
    assert_eq!((status.as_u16(), body), (200, Bytes::from(LIE)));
    // Counted before the response left.
    let now = report(candor.admin).await;
    assert_eq!(now["skipped"], 1, "{now}");
    assert!(candor
        .metrics()
        .await
        .contains("candor_audit_skipped_total 1"));
    let (_, _, body) = get(candor.admin, "/status.json").await;
    let status: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status["audit"]["skipped"], 1);

    go.send(()).unwrap();
    slow.collect().await.unwrap();
    let now = until_exchanges(candor.admin, 1).await;
    assert_eq!(now["skipped"], 1);
    route(&now, "GET", "/slow");
    // The place is free again: the next exchange is observed.
    get(candor.addr, "/users/8").await;
    let now = until_exchanges(candor.admin, 2).await;
    assert_eq!(now["skipped"], 1);
}

#[tokio::test]
async fn sample_zero_observes_nothing_and_a_reload_keeps_what_was_found() {
    let (up, _go) = legacy().await;
    let dir = temp_dir("audit-live-sample");
    let path = dir.join("candor.toml");
    let text = |audit: &str| {
        format!(
            "[server]\nworkers = 1\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n\
             [upstream]\nurl = \"{}\"\n\n[audit]\n{audit}\n",
            up.url()
        )
    };
    save_by_rename(&path, &text("enabled = true\nsample = 0.0"));
    let config = candor::config::load_with_env(&path, HashMap::new()).unwrap();
    let reload = candor::Reload {
        path: path.clone(),
        env: Some(HashMap::new()),
        watch: true,
        sighup: false,
    };
    let candor = Candor::start_with(config, Some(reload)).await;
    for _ in 0..3 {
        get(candor.addr, "/users/7").await;
    }
    let now = report(candor.admin).await;
    assert_eq!(now["enabled"], true);
    assert_eq!(
        (now["exchanges"].as_u64(), now["skipped"].as_u64()),
        (Some(0), Some(0))
    );

    save_by_rename(&path, &text("enabled = true\nsample = 1.0"));
    until_metric(&candor, "candor_config_reloads_total{result=\"success\"} 1").await;
    get(candor.addr, "/users/8").await;
    // Exactly the one sent after the reload: none of the three before it.
    let now = until_exchanges(candor.admin, 1).await;
    assert_eq!(route(&now, "GET", "/users/{id}")["findings"][0]["count"], 1);

    // Off again: observation stops, what was found stays.
    save_by_rename(&path, &text("enabled = false\nmax_routes = 5"));
    until_metric(&candor, "candor_config_reloads_total{result=\"success\"} 2").await;
    let now = report(candor.admin).await;
    assert_eq!(now["enabled"], false);
    assert_eq!(now["exchanges"], 1);
    assert_eq!(route(&now, "GET", "/users/{id}")["findings"][0]["count"], 1);
    let _ = std::fs::remove_dir_all(&dir);
}
