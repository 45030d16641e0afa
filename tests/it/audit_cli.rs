//! `candor audit` through the binary: a HAR's findings as a table, `--rules` that `candor check`
//! and `candor test` accept appended to a minimal config, `--openapi`, broken captures (exit 1
//! and a message naming the member), and `--admin` over pods that answer and one that does not.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::harness::BIN;
use serde_json::{json, Value};

/// A fresh directory under the target's temporary directory.
fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "audit-cli-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One HAR entry as Playwright's `recordHar` writes it (`content: "embed"`).
fn entry(method: &str, path: &str, status: u16, content_type: Option<&str>, body: &str) -> Value {
    let mut response_headers =
        vec![json!({ "name": "Date", "value": "Mon, 07 Dec 2026 10:00:00 GMT" })];
    if let Some(ct) = content_type {
        response_headers.push(json!({ "name": "Content-Type", "value": ct }));
    }
    let mut request_headers = vec![json!({ "name": "Accept", "value": "*/*" })];
    if method == "POST" || method == "PUT" {
        request_headers.push(json!({ "name": "Content-Type", "value": "application/json" }));
    }
    json!({
        "startedDateTime": "2026-12-07T10:00:00.000Z",
        "time": 2.5,
        "request": {
            "method": method,
            "url": format!("http://127.0.0.1:8080{path}"),
            "httpVersion": "HTTP/1.1",
            "cookies": [],
            "headers": request_headers,
            "queryString": [],
            "headersSize": -1,
            "bodySize": 0
        },
        "response": {
            "status": status,
            "statusText": "",
            "httpVersion": "HTTP/1.1",
            "cookies": [],
            "headers": response_headers,
            "content": {
                "size": body.len(),
                "mimeType": content_type.unwrap_or("x-unknown"),
                "text": body
            },
            "headersSize": -1,
            "bodySize": -1,
            "redirectURL": ""
        },
        "cache": {},
        "timings": { "send": 0, "wait": 2, "receive": 0.5 }
    })
}

const JSON: Option<&str> = Some("application/json");

/// A capture showing every kind audit detects, honest responses beside them, and a failed
/// request.
fn capture() -> Value {
    let lie = r#"{"status":"error","message":"user not found"}"#;
    let mut gzip = entry("GET", "/users/8", 200, JSON, lie);
    gzip["response"]["headers"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": "Content-Encoding", "value": "gzip" }));
    let failed = {
        let mut e = entry("GET", "/refused", 0, None, "");
        e["response"]["_error"] = json!("net::ERR_CONNECTION_REFUSED");
        e
    };
    let entries = vec![
        entry("GET", "/users/7", 200, JSON, lie),
        gzip,
        entry(
            "GET",
            "/users/1",
            200,
            JSON,
            r#"{"status":"ok","data":{"id":1}}"#,
        ),
        entry(
            "GET",
            "/orders/3",
            200,
            JSON,
            r#"{"code":404,"message":"no such order"}"#,
        ),
        entry("GET", "/profiles/4", 200, JSON, "null"),
        entry("POST", "/accounts", 200, JSON, r#"{"id":17,"name":"ann"}"#),
        entry("DELETE", "/sessions/12", 200, None, ""),
        entry("PUT", "/settings", 200, JSON, ""),
        entry(
            "GET",
            "/legacy/pages/7",
            500,
            Some("text/html"),
            "<html><body>Error</body></html>",
        ),
        entry(
            "GET",
            "/promo/1",
            200,
            Some("text/html"),
            "<html><head><title>Page not found</title></head></html>",
        ),
        entry(
            "GET",
            "/reports/5",
            500,
            JSON,
            r#"{"error":"NullPointerException at com.acme.Reports.run(Reports.java:42)"}"#,
        ),
        entry(
            "POST",
            "/signup",
            500,
            JSON,
            r#"{"message":"email is required"}"#,
        ),
        entry(
            "GET",
            "/inventory/5",
            500,
            JSON,
            r#"{"message":"database connection refused"}"#,
        ),
        entry("GET", "/busy", 503, JSON, r#"{"message":"busy"}"#),
        entry(
            "GET",
            "/admin/stats",
            403,
            JSON,
            r#"{"message":"forbidden"}"#,
        ),
        entry("DELETE", "/items/6", 405, JSON, r#"{"message":"no"}"#),
        entry("GET", "/items/6", 200, JSON, r#"{"id":6}"#),
        failed,
    ];
    json!({
        "log": {
            "version": "1.2",
            "creator": { "name": "Playwright", "version": "1.64.1" },
            "browser": { "name": "chromium", "version": "156.0.8078.73" },
            "pages": [],
            "entries": entries
        }
    })
}

fn write_har(dir: &Path, har: &Value) -> PathBuf {
    let path = dir.join("capture.har");
    std::fs::write(&path, serde_json::to_vec_pretty(har).unwrap()).unwrap();
    path
}

fn candor(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("CANDOR__SERVER__ADMIN_LISTEN")
        .env_remove("CANDOR__SERVER__ADMIN_TOKEN")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

const KINDS: [&str; 14] = [
    "error_in_success",
    "null_entity",
    "status_in_body",
    "created_as_200",
    "empty_delete_200",
    "empty_200",
    "html_to_api_client",
    "soft_error_page",
    "leaked_internals",
    "validation_as_500",
    "dependency_as_500",
    "missing_retry_after",
    "forbidden_without_credentials",
    "method_not_allowed_without_allow",
];

#[test]
fn a_har_gives_a_table_of_findings_and_a_summary() {
    let dir = temp_dir("table");
    let har = write_har(&dir, &capture());
    let out = candor(&["audit", "--har", har.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let head: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(head, ["ROUTE", "METHOD", "KIND", "COUNT", "FIXED", "FIX"]);
    for kind in KINDS {
        assert!(
            lines
                .iter()
                .any(|l| l.split_whitespace().nth(2) == Some(kind)),
            "{kind} missing:\n{stdout}"
        );
    }
    let users: Vec<&str> = lines
        .iter()
        .find(|l| l.starts_with("/users/{id} "))
        .unwrap()
        .split_whitespace()
        .collect();
    // The gzip-labelled entry's content is decoded text: found like the other.
    assert_eq!(
        users,
        [
            "/users/{id}",
            "GET",
            "error_in_success",
            "2",
            "0",
            "→",
            "404"
        ]
    );
    // 14 rows under the head, a blank line, and the one-line summary.
    assert_eq!(lines.len(), 17, "{stdout}");
    assert_eq!(
        lines[16],
        "14 findings on 14 of 15 routes, 0 fixed, from 17 exchanges since 2026-12-07T10:00:00Z; `candor audit --rules` proposes the rules"
    );
    assert!(
        stderr.contains("1 of 18 entries skipped: 1 failed"),
        "{stderr}"
    );

    // --json is the report, in /audit.json's shape.
    let out = candor(&["audit", "--har", har.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["exchanges"], 17);
    assert_eq!(report["routes"].as_array().unwrap().len(), 15);
}

/// A config with nothing but an upstream: every built-in at its default.
const DEFAULTS: &str = "[upstream]\nurl = \"http://127.0.0.1:3000\"\n";

/// The smallest valid config with every built-in that changes a response off.
const BUILT_INS_OFF: &str = "[upstream]\nurl = \"http://127.0.0.1:9\"\n[html_errors]\nenabled = false\n[scrub]\nenabled = false\n[retry_after]\nstatuses = []\n";

#[test]
fn proposed_rules_pass_check_and_their_tests_in_a_minimal_config() {
    let dir = temp_dir("rules");
    let har = write_har(&dir, &capture());
    for (flags, summary) in [
        (&["--rules"][..], "12 rules (12 shadow), 12 tests"),
        (&["--rules", "--enforce"][..], "12 rules, 12 tests"),
    ] {
        let mut args = vec!["audit", "--har", har.to_str().unwrap()];
        args.extend_from_slice(flags);
        let out = candor(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let rules = text(&out.stdout);
        assert!(
            rules.starts_with("# Proposed by `candor audit` from 17 exchanges"),
            "{rules}"
        );
        // With the built-ins on (the defaults), and with every one off: the proposed tests
        // must not lean on a built-in's answer.
        for (n, base) in [DEFAULTS, BUILT_INS_OFF].into_iter().enumerate() {
            let config = dir.join(format!("candor{}-{n}.toml", flags.len()));
            std::fs::write(&config, format!("{base}\n{rules}")).unwrap();
            let check = candor(&["check", "--config", config.to_str().unwrap()]);
            let stdout = text(&check.stdout);
            assert_eq!(
                check.status.code(),
                Some(0),
                "{}\n{base}\n{rules}",
                text(&check.stderr)
            );
            assert!(stdout.contains(summary), "{stdout}");
            let test = candor(&["test", "--config", config.to_str().unwrap()]);
            assert_eq!(
                test.status.code(),
                Some(0),
                "{}\n{base}",
                text(&test.stdout)
            );
        }
    }
}

#[test]
fn openapi_lists_routes_methods_and_sent_statuses() {
    let dir = temp_dir("openapi");
    let har = write_har(&dir, &capture());
    let out = candor(&["audit", "--har", har.to_str().unwrap(), "--openapi"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "observed by candor audit");
    assert_eq!(doc["info"]["version"], "2026-12-07T10:00:00Z");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.keys().all(|p| p.starts_with('/')));
    let users = &paths["/users/{id}"];
    assert_eq!(
        users["parameters"],
        json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }])
    );
    assert_eq!(users["get"]["responses"]["200"]["description"], "OK");
    assert!(users["get"]["responses"]["200"]["content"]["application/json"].is_object());
    let items = &paths["/items/{id}"];
    assert_eq!(
        items["delete"]["responses"]["405"]["description"],
        "Method Not Allowed"
    );
    assert_eq!(items["get"]["responses"]["200"]["description"], "OK");
    assert_eq!(
        paths["/accounts"]["post"]["responses"]["200"]["description"],
        "OK"
    );

    // Validated against the OpenAPI 3.1 schema where the validator is installed
    // (`pip install openapi-spec-validator`).
    let file = dir.join("openapi.json");
    std::fs::write(&file, &out.stdout).unwrap();
    let script = "import json, sys\nfrom openapi_spec_validator import validate\nvalidate(json.load(open(sys.argv[1])))\n";
    let have = Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .is_ok_and(|o| o.status.success());
    if have {
        let run = Command::new("python3")
            .args(["-c", script])
            .arg(&file)
            .output()
            .unwrap();
        assert!(run.status.success(), "{}", text(&run.stderr));
    } else {
        eprintln!("openapi-spec-validator is not installed: the document was checked for its structure only");
    }
}

#[test]
fn a_broken_har_is_exit_1_with_a_message_naming_what_and_where() {
    let dir = temp_dir("broken");
    let mut har = capture();
    har["log"]["entries"][3]["response"]["status"] = json!("200");
    let wrong = write_har(&dir, &har);
    let not_json = dir.join("page.har");
    std::fs::write(&not_json, "<html>not a capture</html>").unwrap();
    let not_har = dir.join("other.json");
    std::fs::write(&not_har, r#"{"routes": []}"#).unwrap();
    let missing = dir.join("missing.har");
    for (file, needle) in [
        (
            &wrong,
            "log.entries[3].response.status: expected a number, found a string",
        ),
        (&not_json, "not valid JSON"),
        (&not_har, "not a HAR 1.2 capture: no `log` member"),
        (&missing, "cannot read it"),
    ] {
        let out = candor(&["audit", "--har", file.to_str().unwrap()]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(out.stdout.is_empty());
        assert!(stderr.contains(file.to_str().unwrap()), "{stderr}");
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let usage = candor(&["audit", "--har", "x.har", "--admin", "127.0.0.1:9901"]);
    assert_eq!(usage.status.code(), Some(2));
    let usage = candor(&["audit", "--har", "x.har", "--json", "--rules"]);
    assert_eq!(usage.status.code(), Some(2));
}

/// An address where nothing listens: a port bound and let go.
fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr.to_string()
}

/// A fake admin listener answering every `GET /audit.json` with `report`.
fn pod(report: Value) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let body = serde_json::to_vec(&report).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let (status, body) = if first.starts_with("GET /audit.json ") {
                ("200 OK", body.as_slice())
            } else {
                ("404 Not Found", &b""[..])
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(body);
        }
    });
    addr
}

#[test]
fn admin_pods_are_merged_and_an_unreachable_one_is_named() {
    let nobody = closed_port();
    let out = candor(&["audit", "--admin", &nobody]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("unreachable: {nobody}: does not answer")),
        "{stderr}"
    );
    assert!(stderr.contains("no candor answered"), "{stderr}");
    for (admin, why) in [
        ("http://127.0.0.1:9901", "not a URL"),
        ("127.0.0.1", "not HOST:PORT"),
    ] {
        let out = candor(&["audit", "--admin", admin]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("unreachable: {admin}: ")) && stderr.contains(why),
            "{stderr}"
        );
    }

    // Two pods that saw the capture, as `/audit.json` answers it (with `enabled`).
    let dir = temp_dir("admin");
    let har = write_har(&dir, &capture());
    let out = candor(&["audit", "--har", har.to_str().unwrap(), "--json"]);
    let mut report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["enabled"] = json!(true);
    let (a, b) = (pod(report.clone()), pod(report));
    let out = candor(&[
        "audit", "--admin", &a, "--admin", &nobody, "--admin", &b, "--json",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("unreachable: {nobody}: does not answer")),
        "{stderr}"
    );
    let merged: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(merged["exchanges"], 34);
    let unreachable = merged["unreachable"].as_array().unwrap();
    assert_eq!(unreachable.len(), 1);
    assert!(unreachable[0].as_str().unwrap().starts_with(&nobody));
    let users = merged["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "/users/{id}")
        .unwrap();
    assert_eq!(users["findings"][0]["count"], 4);
    assert!(
        users["findings"][0]["proposal"].is_string(),
        "proposed again after the merge"
    );

    // The table names the unreachable pod in its summary too.
    let out = candor(&["audit", "--admin", &a, "--admin", &nobody]);
    assert_eq!(out.status.code(), Some(0));
    let table = text(&out.stdout);
    assert!(table.contains("from 17 exchanges since"), "{table}");
    assert!(table.contains("; 1 unreachable"), "{table}");
    // A host name means every address it resolves to: `localhost` is at least 127.0.0.1.
    let port = a.rsplit(':').next().unwrap();
    let out = candor(&["audit", "--admin", &format!("localhost:{port}"), "--json"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let by_name: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(by_name["exchanges"], 17);
}
