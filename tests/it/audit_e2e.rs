//! Audit end to end, against a real legacy app (`tests/audit/legacy.py`, every lie audit
//! detects on some routes, honest answers on others): live observation finds each kind where
//! it is shown and nothing on the honest routes; `candor audit --rules --enforce` proposes
//! rules that `check` and `test` accept; and with them candor answers traffic it never
//! observed (other ids, other bodies of the same shape) honestly, while the honest routes stay
//! byte-identical.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use http::{HeaderMap, Request, StatusCode};

use crate::harness::*;

/// The legacy app, stopped on drop.
pub struct Legacy {
    child: Child,
    pub addr: SocketAddr,
}

impl Legacy {
    pub fn start() -> Legacy {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/audit/legacy.py");
        let mut child = Command::new("python3")
            .arg(script)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the legacy app");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().expect("the legacy app prints its port");
        Legacy {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Legacy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn traffic() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/audit/traffic.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Sends one entry of `traffic.json`.
pub async fn send_entry(
    addr: SocketAddr,
    entry: &serde_json::Value,
) -> (StatusCode, HeaderMap, bytes::Bytes) {
    let mut builder = Request::builder()
        .method(entry["method"].as_str().unwrap())
        .uri(entry["path"].as_str().unwrap())
        .header("host", "api.example");
    if let Some(headers) = entry["headers"].as_object() {
        for (name, value) in headers {
            builder = builder.header(name.as_str(), value.as_str().unwrap());
        }
    }
    let body = entry["body"].as_str().unwrap_or("").to_owned();
    if !body.is_empty() {
        builder = builder.header("content-type", "application/json");
    }
    collect(send(addr, builder.body(full(body)).unwrap()).await).await
}

/// What audit must find on the observed traffic, and nothing else.
pub fn expected_findings() -> BTreeSet<(String, String, String)> {
    [
        ("GET", "/users/{id}", "error_in_success"),
        ("GET", "/orders/{id}", "status_in_body"),
        ("GET", "/profiles/{id}", "null_entity"),
        ("POST", "/accounts", "created_as_200"),
        ("DELETE", "/sessions/{id}", "empty_delete_200"),
        ("PUT", "/settings", "empty_200"),
        ("GET", "/legacy/pages/{id}", "html_to_api_client"),
        ("GET", "/promo/{id}", "soft_error_page"),
        ("GET", "/reports/{id}", "leaked_internals"),
        ("POST", "/signup", "validation_as_500"),
        ("GET", "/inventory/{id}", "dependency_as_500"),
        ("GET", "/busy", "missing_retry_after"),
        ("GET", "/admin/stats", "forbidden_without_credentials"),
        ("DELETE", "/items/{id}", "method_not_allowed_without_allow"),
    ]
    .into_iter()
    .map(|(m, r, k)| (m.to_owned(), r.to_owned(), k.to_owned()))
    .collect()
}

/// The findings of an audit report as (method, route, kind).
pub fn findings(report: &serde_json::Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for route in report["routes"].as_array().unwrap() {
        for finding in route["findings"].as_array().unwrap() {
            out.insert((
                route["method"].as_str().unwrap().to_owned(),
                route["route"].as_str().unwrap().to_owned(),
                finding["kind"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

/// A config that shows the lies as they are: built-ins off, no rules.
pub const OBSERVING: &str = "[audit]\nenabled = true\n\n[html_errors]\nenabled = false\n\n[scrub]\nenabled = false\n\n[retry_after]\nstatuses = []\n";

/// Waits until `/audit.json` counts `n` exchanges (each is recorded once its body has gone by,
/// off the request path), and returns it.
pub async fn until_exchanges(admin: SocketAddr, n: u64) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, _, body) = get(admin, "/audit.json").await;
        assert_eq!(status, 200);
        let report: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if report["exchanges"] == n {
            return report;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the report never counted {n} exchanges: {report:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Runs the candor binary off the runtime, so the candor under test keeps serving meanwhile.
async fn run(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || Command::new(BIN).args(args).output().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn audit_finds_every_lie_then_its_rules_answer_unseen_traffic_honestly() {
    let legacy = Legacy::start();
    let traffic = traffic();
    let candor = Candor::start(config_toml(&legacy.url(), OBSERVING)).await;
    for entry in traffic["observed"].as_array().unwrap() {
        send_entry(candor.addr, entry).await;
    }

    let observed = traffic["observed"].as_array().unwrap().len() as u64;
    let report = until_exchanges(candor.admin, observed).await;
    assert_eq!(findings(&report), expected_findings(), "{report:#}");
    // Both directions, said plainly: these routes were seen and found honest.
    for (method, route) in [
        ("GET", "/healthz"),
        ("GET", "/catalog"),
        ("POST", "/carts/{id}/items"),
        ("DELETE", "/carts/{id}"),
        ("GET", "/missing/thing"),
        ("GET", "/items/{id}"),
    ] {
        let seen = report["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["method"] == method && r["route"] == route)
            .unwrap_or_else(|| panic!("{method} {route} not in the report: {report:#}"));
        assert_eq!(seen["findings"], serde_json::json!([]), "{method} {route}");
    }
    let users = report["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "/users/{id}")
        .unwrap();
    assert_eq!(users["upstream_statuses"]["200"], 4);
    assert_eq!(users["findings"][0]["count"], 2);

    // The proposals, enforced, appended to the config: check and test accept them.
    let admin = candor.admin.to_string();
    let out = run(&["audit", "--admin", &admin, "--rules", "--enforce"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let proposals = String::from_utf8(out.stdout).unwrap();
    assert!(proposals.contains("mode = \"enforce\""), "{proposals}");
    let dir = temp_dir("audit-enforce");
    let path = dir.join("candor.toml");
    let base = format!(
        "[upstream]\nurl = \"{}\"\n\n[html_errors]\nenabled = false\n\n[scrub]\nenabled = false\n\n[retry_after]\nstatuses = []\n",
        legacy.url()
    );
    std::fs::write(&path, format!("{base}\n{proposals}")).unwrap();
    let config_arg = path.to_str().unwrap();
    let check = run(&["check", "--config", config_arg]).await;
    assert!(
        check.status.success(),
        "check: {}\n{proposals}",
        String::from_utf8_lossy(&check.stderr)
    );
    let test = run(&["test", "--config", config_arg]).await;
    assert!(
        test.status.success(),
        "test: {}{}\n{proposals}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
    drop(candor);

    // Candor with the proposed rules, on traffic audit never saw.
    let mut config =
        candor::config::load_with_env(&path, Default::default()).unwrap_or_else(|e| panic!("{e}"));
    config.server.workers = 1;
    let fixed = Candor::start(config).await;
    for entry in traffic["unseen"].as_array().unwrap() {
        let (status, headers, body) = send_entry(fixed.addr, entry).await;
        let what = format!("{} {}", entry["method"], entry["path"]);
        assert_eq!(
            status.as_u16(),
            entry["status"].as_u64().unwrap() as u16,
            "{what}: {headers:?} {body:?}\n{proposals}"
        );
        if let Some(re) = entry["location"].as_str() {
            let location = headers["location"].to_str().unwrap();
            assert!(
                regex::Regex::new(re).unwrap().is_match(location),
                "{what}: {location}"
            );
        }
        if entry["retry_after"] == true {
            assert!(headers.contains_key("retry-after"), "{what}: {headers:?}");
        }
        if let Some(allow) = entry["allow"].as_str() {
            assert_eq!(headers["allow"], allow, "{what}");
        }
    }
    // The honest routes: what the app sent, byte for byte.
    for entry in traffic["byte_identical"].as_array().unwrap() {
        let (direct_status, direct_headers, direct_body) = send_entry(legacy.addr, entry).await;
        let (status, headers, body) = send_entry(fixed.addr, entry).await;
        let what = format!("{} {}", entry["method"], entry["path"]);
        assert_eq!(status, direct_status, "{what}");
        assert_eq!(body, direct_body, "{what}");
        assert_eq!(
            headers.get("content-type"),
            direct_headers.get("content-type"),
            "{what}"
        );
        assert!(
            !headers.contains_key("x-candor-rule"),
            "{what}: {headers:?}"
        );
    }
}

/// `tests/audit/chromium.har` is what Chromium recorded (Playwright's `recordHar`) while
/// `tests/browser/audit.spec.mjs` sent `observed` through candor to the legacy app: the HAR
/// reader finds in it exactly what live observation finds (the browser test checks the two
/// against each other on every CI run; this replays the committed capture without a browser).
#[tokio::test]
async fn a_har_chromium_recorded_gives_the_findings_of_live_observation() {
    let har = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/audit/chromium.har");
    let out = run(&["audit", "--har", har.to_str().unwrap(), "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(findings(&report), expected_findings(), "{report:#}");
    let table = run(&["audit", "--har", har.to_str().unwrap()]).await;
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains("14 findings on 14 of"), "{table}");
    let rules = run(&["audit", "--har", har.to_str().unwrap(), "--rules"]).await;
    let rules = String::from_utf8(rules.stdout).unwrap();
    assert!(
        rules.contains("mode = \"shadow\"") && !rules.contains("\"enforce\""),
        "{rules}"
    );
    let openapi = run(&["audit", "--har", har.to_str().unwrap(), "--openapi"]).await;
    let openapi: serde_json::Value = serde_json::from_slice(&openapi.stdout).unwrap();
    assert_eq!(openapi["openapi"], "3.1.0");
    assert!(
        openapi["paths"]["/users/{id}"]["get"]["responses"]["200"].is_object(),
        "{openapi:#}"
    );
}

#[tokio::test]
async fn broken_sources_are_named_and_exit_1() {
    let dir = temp_dir("audit-broken");
    let bad = dir.join("bad.har");
    std::fs::write(&bad, "{\"log\": 17}").unwrap();
    let out = run(&["audit", "--har", bad.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a HAR 1.2 capture"), "{stderr}");
    let missing = run(&["audit", "--har", dir.join("nope.har").to_str().unwrap()]).await;
    assert_eq!(missing.status.code(), Some(1));
    // Nothing listens there (a port just freed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = run(&["audit", "--admin", &port.to_string()]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("unreachable: {port}")), "{stderr}");
}

/// One candor per replica: `--admin` repeated merges their findings and counts into one report
/// and one rule set; a name resolving to several addresses means all of them (`localhost` is
/// 127.0.0.1 and, where there is IPv6, ::1, where nothing listens: named, not fatal).
#[tokio::test]
async fn pods_merge_into_one_report() {
    let legacy = Legacy::start();
    let a = Candor::start(config_toml(&legacy.url(), OBSERVING)).await;
    let b = Candor::start(config_toml(&legacy.url(), OBSERVING)).await;
    for pod in [&a, &b] {
        for path in ["/users/1001", "/users/1"] {
            let entry = serde_json::json!({ "method": "GET", "path": path });
            send_entry(pod.addr, &entry).await;
        }
    }
    until_exchanges(a.admin, 2).await;
    until_exchanges(b.admin, 2).await;
    let (a_admin, b_admin) = (a.admin.to_string(), b.admin.to_string());
    let out = run(&["audit", "--admin", &a_admin, "--admin", &b_admin, "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let merged: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(merged["exchanges"], 4, "{merged:#}");
    let users = &merged["routes"][0];
    assert_eq!(users["route"], "/users/{id}");
    assert_eq!(users["upstream_statuses"]["200"], 4);
    assert_eq!(users["findings"][0]["count"], 2);

    let by_name = format!("localhost:{}", a.admin.port());
    let out = run(&["audit", "--admin", &by_name, "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["exchanges"], 2, "{report:#}");
}
