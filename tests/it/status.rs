//! The status views end to end: `/status.json` and the page on the admin listener after real
//! traffic through candor, and `candor top --once` (the built binary) against a running candor.

use std::process::Command;

use crate::harness::*;
use candor::status::{Snapshot, PAGE, PAGE_CSP};
use http::Request;

const JSON_ERROR: &str = r#"{"status":"error","code":1042,"message":"user not found"}"#;

/// An enforced rule, a shadow rule, and a rule nothing matches.
const RULES: &str = r#"
[[rules]]
name = "user-not-found"
when.status = [200]
when.json = [{ pointer = "/status", equals = "error" }, { pointer = "/code", equals = 1042 }]
then.status = 404
then.body = "problem"

[[rules]]
name = "watch-orders"
mode = "shadow"
when.status = [200]
when.path = "^/orders/"
then.status = 500

[[rules]]
name = "never-matches"
when.status = [418]
then.status = 500
"#;

async fn legacy() -> Upstream {
    canned_upstream(vec![
        ("/users/7", Canned::json(200, JSON_ERROR)),
        ("/ok", Canned::json(200, r#"{"status":"ok"}"#)),
        ("/orders/1", Canned::json(200, r#"{"id":1}"#)),
        (
            "/profile",
            Canned::new(404, "text/html", "<html><h1>No such profile</h1></html>"),
        ),
    ])
    .await
}

async fn snapshot(candor: &Candor) -> Snapshot {
    let (status, headers, body) = get(candor.admin, "/status.json").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["cache-control"], "no-store");
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
}

async fn call(candor: &Candor, method: &str, path: &str, id: &str) -> u16 {
    request(candor.addr, method, path, &[("x-request-id", id)])
        .await
        .0
        .as_u16()
}

#[tokio::test]
async fn status_json_counts_requests_rules_and_rewrites_after_traffic() {
    let up = legacy().await;
    let candor = Candor::start(config_toml(&up.url(), RULES)).await;
    for i in 0..3 {
        assert_eq!(
            call(&candor, "GET", "/users/7", &format!("u-{i}")).await,
            404
        );
    }
    assert_eq!(call(&candor, "GET", "/ok", "ok-0").await, 200);
    assert_eq!(call(&candor, "GET", "/ok", "ok-1").await, 200);
    assert_eq!(call(&candor, "GET", "/orders/1", "o-0").await, 200);
    assert_eq!(call(&candor, "GET", "/profile", "h-0").await, 404);

    let snap = snapshot(&candor).await;
    assert_eq!(snap.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(snap.config.origin, "test.toml");
    assert_eq!(snap.config.upstream, up.url());
    assert!(
        snap.config.summary.contains("3 rules (1 shadow)"),
        "{}",
        snap.config.summary
    );
    assert!(snap.config.loaded_at.ends_with('Z') && snap.started_at.ends_with('Z'));

    assert_eq!(snap.requests.total, 7);
    let by_status: Vec<(&str, u64)> = snap
        .requests
        .by_status
        .iter()
        .map(|(s, n)| (s.as_str(), *n))
        .collect();
    assert_eq!(by_status, [("200", 3), ("404", 4)]);

    // Every rule in config order, the one nothing matched included, then the built-ins.
    let rules: Vec<(&str, &str, bool, u64, u64)> = snap
        .rules
        .iter()
        .map(|r| (&*r.name, &*r.mode, r.builtin, r.enforce, r.shadow))
        .collect();
    assert_eq!(
        rules,
        [
            ("user-not-found", "enforce", false, 3, 0),
            ("watch-orders", "shadow", false, 0, 1),
            ("never-matches", "enforce", false, 0, 0),
            ("scrub", "enforce", true, 0, 0),
            ("html-errors", "enforce", true, 1, 0),
            ("retry-after", "enforce", true, 0, 0),
        ]
    );
    let rewrites: Vec<(u16, u16, &str, u64)> = snap
        .rewrites
        .iter()
        .map(|t| (t.from, t.to, &*t.mode, t.count))
        .collect();
    assert_eq!(
        rewrites,
        [
            (200, 404, "enforce", 3),
            (200, 500, "shadow", 1),
            (404, 404, "enforce", 1)
        ]
    );
    assert_eq!(snap.upstream_failures.len(), 9);
    assert!(snap.upstream_failures.values().all(|n| *n == 0));
    assert_eq!(snap.inspect_skipped["too_large"], 0);

    // Newest first, with the request ids the clients sent.
    let recent: Vec<(&str, &str, &str, u16, u16, &str, &str)> = snap
        .recent
        .iter()
        .map(|e| {
            (
                &*e.method,
                &*e.path,
                &*e.rule,
                e.from,
                e.to,
                &*e.mode,
                &*e.request_id,
            )
        })
        .collect();
    assert_eq!(
        recent,
        [
            ("GET", "/profile", "html-errors", 404, 404, "enforce", "h-0"),
            (
                "GET",
                "/orders/1",
                "watch-orders",
                200,
                500,
                "shadow",
                "o-0"
            ),
            (
                "GET",
                "/users/7",
                "user-not-found",
                200,
                404,
                "enforce",
                "u-2"
            ),
            (
                "GET",
                "/users/7",
                "user-not-found",
                200,
                404,
                "enforce",
                "u-1"
            ),
            (
                "GET",
                "/users/7",
                "user-not-found",
                200,
                404,
                "enforce",
                "u-0"
            ),
        ]
    );
    assert!(snap.recent.windows(2).all(|w| w[0].time >= w[1].time));
    assert!(snap.recent.iter().all(|e| e.time.ends_with('Z')));

    // The page and the metric count the same events.
    let metrics = candor.metrics().await;
    for line in [
        r#"candor_rewrites_total{rule="user-not-found",from="200",to="404",mode="enforce"} 3"#,
        r#"candor_rewrites_total{rule="watch-orders",from="200",to="500",mode="shadow"} 1"#,
        r#"candor_rewrites_total{rule="html-errors",from="404",to="404",mode="enforce"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
}

#[tokio::test]
async fn recent_rewrites_keep_the_newest_100_of_150() {
    let up = legacy().await;
    let candor = Candor::start(config_toml(&up.url(), RULES)).await;
    for i in 0..150 {
        assert_eq!(
            call(&candor, "GET", "/users/7", &format!("r-{i}")).await,
            404
        );
    }
    let snap = snapshot(&candor).await;
    assert_eq!(snap.recent.len(), 100);
    assert_eq!(snap.recent[0].request_id, "r-149");
    assert_eq!(snap.recent[99].request_id, "r-50");
    let ids: Vec<String> = snap.recent.iter().map(|e| e.request_id.clone()).collect();
    let expected: Vec<String> = (50..150).rev().map(|i| format!("r-{i}")).collect();
    assert_eq!(ids, expected);
    // The tallies count all of them.
    assert_eq!(snap.rules[0].enforce, 150);
    assert_eq!(snap.rewrites[0].count, 150);
    assert_eq!(snap.requests.total, 150);
}

#[tokio::test]
async fn upstream_failures_come_from_the_metric() {
    let candor = Candor::start(config_toml(&format!("http://{}", dead_addr()), "")).await;
    assert_eq!(call(&candor, "GET", "/x", "f-0").await, 502);
    assert_eq!(call(&candor, "GET", "/y", "f-1").await, 502);
    let snap = snapshot(&candor).await;
    assert_eq!(snap.upstream_failures["connect"], 2);
    assert_eq!(snap.upstream_failures["timeout"], 0);
    assert_eq!(snap.requests.by_status["502"], 2);
    // candor's own 502 problem documents are never rewritten.
    assert!(snap.recent.is_empty());
    assert!(snap.rules.iter().all(|r| r.enforce == 0 && r.shadow == 0));
}

#[tokio::test]
async fn the_page_is_self_contained_and_locked_down() {
    let up = legacy().await;
    let candor = Candor::start(config_toml(&up.url(), RULES)).await;
    let (status, headers, body) = get(candor.admin, "/").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["content-security-policy"], PAGE_CSP);
    assert!(PAGE_CSP.starts_with(
        "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; \
         connect-src 'self'"
    ));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body, PAGE.as_bytes());
    let page = String::from_utf8(body.to_vec()).unwrap();
    for needle in [
        "<table id=\"rewrites\">",
        "<th scope=\"col\">",
        "<noscript>",
    ] {
        assert!(page.contains(needle), "{needle} missing");
    }

    let head = Request::head("/")
        .header("host", "admin")
        .body(full(""))
        .unwrap();
    let (status, headers, body) = collect(send(candor.admin, head).await).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-security-policy"], PAGE_CSP);
    assert!(body.is_empty());

    assert_eq!(get(candor.admin, "/favicon.ico").await.0, 204);
    let post = Request::post("/status.json")
        .header("host", "admin")
        .body(full(""))
        .unwrap();
    assert_eq!(send(candor.admin, post).await.status(), 405);
}

/// Runs the built binary off the runtime thread, so the in-process candor keeps answering.
async fn candor_cli(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn top_once_prints_the_counts_of_a_running_candor() {
    let up = legacy().await;
    let candor = Candor::start(config_toml(&up.url(), RULES)).await;
    for i in 0..2 {
        assert_eq!(
            call(&candor, "GET", "/users/7", &format!("t-{i}")).await,
            404
        );
    }
    assert_eq!(call(&candor, "GET", "/orders/1", "t-shadow").await, 200);
    let out = candor_cli(vec![
        "top".into(),
        "--once".into(),
        "--admin".into(),
        candor.admin.to_string(),
    ])
    .await;
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(!stdout.contains('\x1b'), "--once prints plain text");
    // Column widths follow the content: compare with runs of spaces squashed.
    let squashed: Vec<String> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    for needle in [
        format!("candor {} at {}", env!("CARGO_PKG_VERSION"), candor.admin),
        "requests 3 total 200: 1 404: 2".to_owned(),
        "user-not-found enforce 2 0".to_owned(),
        "watch-orders shadow 0 1".to_owned(),
        "never-matches enforce 0 0".to_owned(),
        "html-errors (built-in) enforce 0 0".to_owned(),
        "200 404 enforce 2".to_owned(),
        "200 500 shadow 1".to_owned(),
        "RECENT REWRITES, newest first (3 of 3)".to_owned(),
    ] {
        assert!(
            squashed.iter().any(|l| l.contains(&needle)),
            "{needle:?} missing:\n{stdout}"
        );
    }
    let newest = stdout
        .lines()
        .position(|l| l.ends_with("t-shadow"))
        .unwrap();
    let oldest = stdout.lines().position(|l| l.ends_with("t-0")).unwrap();
    assert!(newest < oldest, "{stdout}");
}

#[tokio::test]
async fn top_exits_1_when_the_admin_address_does_not_answer() {
    let dead = dead_addr().to_string();
    let out = candor_cli(vec!["top".into(), "--admin".into(), dead.clone()]).await;
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains(&format!("admin endpoint at {dead} does not answer")),
        "{stderr}"
    );
}
