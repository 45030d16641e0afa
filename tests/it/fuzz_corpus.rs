//! The fuzz corpus as regression tests, on stable (Envoy's practice: a fuzzer's finds are only
//! kept fixed if every build replays them): every file under `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` goes
//! through the same `candor::fuzzing` entry the cargo-fuzz target calls, with the same oracles.
//! A crash the fuzzer finds is copied to `fuzz/regressions/<target>/` once fixed, so it stays
//! fixed whether or not nightly and cargo-fuzz are around.
//!
//! `write_seeds` (ignored) regenerates the hand-written seeds, `seed-*` files; the rest of each
//! corpus is what the fuzzer found and `fuzz/run.sh --merge` kept.

use std::fs;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Regression files named `known-*` reproduce a bug that is not fixed yet: the replay skips
/// them, and `known_bugs_still_reproduce` (ignored) runs them.
const KNOWN: &str = "known-";

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn entry(target: &str) -> fn(&[u8]) {
    candor::fuzzing::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, entry)| *entry)
        .unwrap_or_else(|| panic!("no fuzz target {target}"))
}

/// Feeds every corpus and regression file of `target` to its entry; names the file that fails.
fn replay(target: &str) {
    let entry = entry(target);
    let corpus = files(&fuzz_dir().join("corpus").join(target));
    assert!(
        corpus.iter().any(|p| file_name(p).starts_with("seed-")),
        "fuzz/corpus/{target} has no seeds"
    );
    let regressions = files(&fuzz_dir().join("regressions").join(target));
    for path in corpus.iter().chain(&regressions) {
        if file_name(path).starts_with(KNOWN) {
            continue;
        }
        run_one(entry, path);
    }
}

fn run_one(entry: fn(&[u8]), path: &Path) {
    let data = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| entry(&data))) {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        panic!("{} fails: {message}", path.display());
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[test]
fn config_corpus_replays() {
    replay("config");
}

#[test]
fn rules_corpus_replays() {
    replay("rules");
}

#[test]
fn problem_corpus_replays() {
    replay("problem");
}

#[test]
fn audit_corpus_replays() {
    replay("audit");
}

#[test]
fn inspect_corpus_replays() {
    replay("inspect");
}

#[test]
fn exchange_corpus_replays() {
    replay("exchange");
}

#[test]
#[ignore = "reproduces bugs not fixed yet (fuzz/regressions/*/known-*)"]
fn known_bugs_still_reproduce() {
    candor::fuzzing::strict(true);
    for (target, entry) in candor::fuzzing::TARGETS {
        for path in files(&fuzz_dir().join("regressions").join(target)) {
            if file_name(&path).starts_with(KNOWN) {
                run_one(entry, &path);
            }
        }
    }
}

/// Seeds are small and readable; this test only checks that the generator below still
/// produces inputs every entry accepts (the files themselves are replayed above).
#[test]
fn seeds_pass_their_oracles() {
    for (target, seeds) in seeds() {
        let entry = entry(target);
        for (name, data) in seeds {
            if target == "exchange" {
                continue; // replayed from the files; a live candor costs time per input
            }
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| entry(&data))) {
                panic!("seed {target}/{name}: {:?}", panic.downcast_ref::<String>());
            }
            if target == "audit" && name.starts_with("har-") {
                har_seed_is_read(name, &data);
            }
        }
    }
}

/// A HAR seed must be a capture the reader takes, with a finding: one that is not valid JSON
/// only ever reaches the parse error, and leaves the reader's oracles unseeded.
fn har_seed_is_read(name: &str, data: &[u8]) {
    let read = candor::audit::har::read(data, None, 64 * 1024)
        .unwrap_or_else(|e| panic!("seed audit/{name} is not read as a HAR: {e}"));
    let findings: usize = read.report.routes.iter().map(|r| r.findings.len()).sum();
    assert!(
        findings > 0,
        "seed audit/{name} finds nothing: {:?}",
        read.report
    );
}

/// Writes `fuzz/corpus/<target>/seed-<name>` for every seed below.
#[test]
#[ignore = "writes the seed corpus: cargo test --test it -- --ignored fuzz_corpus::write_seeds"]
fn write_seeds() {
    for (target, seeds) in seeds() {
        let dir = fuzz_dir().join("corpus").join(target);
        fs::create_dir_all(&dir).unwrap();
        for (name, data) in seeds {
            fs::write(dir.join(format!("seed-{name}")), data).unwrap();
        }
    }
}

type Seeds = Vec<(&'static str, Vec<(&'static str, Vec<u8>)>)>;

fn seeds() -> Seeds {
    vec![
        ("config", config_seeds()),
        ("rules", rules_seeds()),
        ("problem", problem_seeds()),
        ("inspect", inspect_seeds()),
        ("exchange", exchange_seeds()),
        ("audit", audit_seeds()),
    ]
}

fn audit_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let seed = |comment: &str, exchanges: &[&str]| {
        format!("# audit: {comment}\n{}", exchanges.join("\n%%\n")).into_bytes()
    };
    vec![
        ("every-kind", seed(
            "one exchange per finding kind, and honest ones beside them",
            &[
                "GET /users/7 200\n< content-type: application/json\n\n{\"status\":\"error\",\"message\":\"user not found\"}",
                "GET /users/1 200\n< content-type: application/json\n\n{\"status\":\"ok\",\"data\":{\"id\":1}}",
                "GET /orders/5 200\n< content-type: application/json\n\n{\"code\":404,\"message\":\"order missing\"}",
                "GET /profiles/3 200\n< content-type: application/json\n\n{\"data\":null}",
                "POST /accounts 200\n< content-type: application/json\n\n{\"id\":77}",
                "DELETE /sessions/12 200\n\n",
                "PUT /settings 200\n\n",
                "GET /legacy 404\n> accept: application/json\n< content-type: text/html\n\n<html><h1>Not Found</h1></html>",
                "GET /promo 200\n< content-type: text/html\n\n<html><title>Page Not Found</title></html>",
                "GET /crash 502\n< content-type: text/plain\n\nTraceback (most recent call last):\\n  File \"/app/x.py\", line 3, in f",
                "POST /signup 500\n> content-type: application/json\n< content-type: application/json\n\n{\"error\":\"email is required\"}",
                "GET /inventory 500\n< content-type: application/json\n\n{\"error\":\"database connection refused\"}",
                "GET /busy 503\n\nbusy",
                "GET /admin 403\n\n",
                "DELETE /items/3 405\n\n",
                "GET /items/4 200\n< content-type: application/json\n\n{\"id\":4}",
            ],
        )),
        ("secrets", seed(
            "secrets, tokens and internals never reach an example",
            &[
                "GET /login 200\n< content-type: application/json\n\n{\"status\":\"fail\",\"password\":\"PLANTED-SECRET-4f1c\",\"message\":\"bad token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.x\"}",
                "GET /debug 500\n< content-type: text/html\n\n<b>Fatal error</b>: Uncaught PDOException in /var/www/app/db.php:12 password=hunter2",
            ],
        )),
        ("har-playwright", br#"{"log":{"version":"1.2","creator":{"name":"Playwright","version":"1.65.1"},"pages":[],"entries":[{"startedDateTime":"2026-12-07T10:00:00.123Z","request":{"method":"GET","url":"http://127.0.0.1:8080/users/1001","headers":[{"name":"Accept","value":"*/*"}]},"response":{"status":200,"headers":[{"name":"Content-Type","value":"application/json"},{"name":"Content-Encoding","value":"gzip"}],"content":{"size":53,"mimeType":"application/json","text":"{\"status\": \"error\", \"message\": \"user 1001 not found\"}"}}},{"startedDateTime":"2026-12-07T10:00:01Z","request":{"method":"DELETE","url":"http://127.0.0.1:8080/items/6","headers":[]},"response":{"status":405,"headers":[],"content":{"size":0}}},{"request":{"method":"GET","url":"http://127.0.0.1:8080/gone"},"response":{"status":0,"headers":[]}}]}}"#.to_vec()),
        ("har-base64", br#"{"log":{"version":"1.2","creator":{"name":"mitmproxy","version":"11"},"entries":[{"startedDateTime":"2026-12-07T10:00:00+01:00","request":{"method":"POST","url":"https://api.example/accounts","headers":[{"name":":authority","value":"api.example"},{"name":"content-type","value":"application/json"}]},"response":{"status":200,"headers":[{"name":"content-type","value":"application/json"}],"content":{"size":9,"text":"eyJpZCI6Nzd9","encoding":"base64"}}},{"request":{"method":"GET","url":"::bad"},"response":{"status":200}}]}}"#.to_vec()),
        ("hostile", seed(
            "invalid UTF-8, deep JSON, a huge string, an empty honest route",
            &[
                "GET /bin/1 200\n< content-type: application/json\n\n{\"status\":\"error\",\"message\":\"\\xff\\xfe\"}",
                "GET /deep 200\n< content-type: application/json\n\n[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
                "GET /weird/%2e%2e/{id} 200\n< content-type: application/json\n\n{\"error\":\"it's \\\"quoted\\\" and 'single'\"}",
                "OPTIONS / 204\n\n",
            ],
        )),
    ]
}

fn text(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

const MINIMAL: &str = "[upstream]\nurl = \"http://127.0.0.1:3000\"\n";

fn config_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| fs::read(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let mut with_env = text(MINIMAL);
    with_env.extend_from_slice(
        b"\0CANDOR__UPSTREAM__TIMEOUT=5s\nCANDOR__INSPECT__CONTENT_TYPES=application/json,text/plain\nCANDOR__SERVER__WORKERS=2",
    );
    let mut bad_env = text(MINIMAL);
    bad_env.extend_from_slice(b"\0CANDOR__UPSTREAM__URLL=x\nCANDOR__RETRY_AFTER__STATUSES=429,abc");
    vec![
        ("example", read("config/candor.toml")),
        ("docker", read("deploy/docker/candor.toml")),
        ("browser", read("tests/browser/candor.toml")),
        ("minimal", text(MINIMAL)),
        ("env", with_env),
        ("env-invalid", bad_env),
        (
            "every-feature",
            text(&format!(
                "{MINIMAL}{}",
                r#"
[server]
listen = "127.0.0.1:8080"
admin_listen = "[::1]:9901"
debug_headers = false
workers = 2
drain_timeout = "10s"
header_read_timeout = "1m 30s"

[failures]
connect = 503
timeout = 504
retry_after = "1500ms"

[inspect]
max_body_bytes = 1
content_types = ["application/json", "Text/Plain"]

[retry_after]
statuses = [429, 503]
default = "0s"

[scrub]
enabled = true
patterns = ['(?i)secret', 'at [\w.]+\(']

[log]
level = "info,candor::access=off"
format = "json"
access_log = true

[[rules]]
name = "user-not-found"
mode = "shadow"
when.status = [200, "2xx"]
when.method = ["get", "DELETE"]
when.path = '^/users/\d+$'
when.content_type = "json"
when.header = [{ name = "x-legacy", matches = "yes" }, { name = "x-present" }]
when.json = [{ pointer = "/status", equals = "error" }, { pointer = "/code", one_of = [1042, { a = [1.5] }] }, { pointer = "/n", gte = 3 }, { pointer = "/d", is_null = false }, { pointer = "/e", exists = false }, { pointer = "/m", matches = "(?i)x" }, { pointer = "/x", lt = -1e300 }]
when.body = '(?i)not\s+found'
then.status = 404
then.retry_after_from = "/retry_in"
then.body = "problem"
then.detail_from = "/message"
then.headers = [{ name = "x-foo", value = "bar" }]

[[rules]]
name = "delete-empty"
when.body = '^\s*\{\s*\}\s*$'
then.status_from = "/a~1b"
then.retry_after = "1s"
then.body = "empty"

[[tests]]
name = "a test"
request = { method = "DELETE", path = "/users/1", headers = { accept = "text/html" } }
response = { status = 200, headers = { content-type = "application/json", content-encoding = "identity" }, body = "{}" }
expect = { rule = "delete-empty", status = 204, body = "empty" }
"#
            )),
        ),
        (
            "requests-and-templates",
            text(&format!(
                "{MINIMAL}{}",
                r#"
[[rules]]
name = "validation"
when.status = ["2xx"]
when.query = '(^|&)v=2(&|$)'
when.request_header = [{ name = "accept", matches = "json" }, { name = "authorization", absent = true }, { name = "x-api-version" }]
when.header = [{ name = "location", absent = true }, { name = "x-legacy", absent = false }]
when.json = [{ pointer = "/status", equals = "error" }]
then.status = 422
then.body = "problem"
then.headers = [{ name = "location", value = "/users/{/id}" }, { name = "content-location", value = "{path}/{/a/0}" }, { name = "x-debug", value = "{method} {request_id} {{{query}}}" }, { name = "www-authenticate", value = "Bearer error=\"{/code}\"" }, { name = "allow", value = "GET, HEAD" }]
then.problem = { type = "https://errors.example.com/validation", title = "Validation failed", members = { errors = "/errors", code = "/code" } }

[[tests]]
name = "validation rewrites"
request = { method = "POST", path = "/users?v=2", headers = { accept = "application/json", x-api-version = "2" } }
response = { status = 200, headers = { x-legacy = "1" }, body = '{"status":"error","id":"a b","code":7,"a":["x"],"errors":[{"field":"email"}]}' }
expect = { rule = "validation", status = 422, body = "problem", headers = { location = "/users/a%20b", content-location = "/users/x", x-debug = "POST  {v=2}" }, json = [{ pointer = "/errors/0/field", equals = "email" }, { pointer = "/title", equals = "Validation failed" }, { pointer = "/code", gte = 7 }] }
"#
            )),
        ),
        (
            "invalid-templates",
            text(&format!(
                "{MINIMAL}{}",
                r#"
[[rules]]
name = "bad"
when.header = [{ name = "x-a", matches = "x", absent = true }]
when.request_header = [{ name = "bad name", absent = true }]
when.query = "(("
then.status = 404
then.body = "problem"
then.headers = [{ name = "location", value = "{/a" }, { name = "etag", value = "{nope}" }, { name = "allow", value = "}" }, { name = "link", value = "{/a~2}" }]
then.problem = { type = "not a uri", title = "", members = { type = "/a", request_id = "/b", "1bad" = "/c", ok = "no-slash" } }

[[rules]]
name = "stray"
then.status = 500
then.problem = { title = "x" }

[[tests]]
name = "bad expectations"
request = { path = "/" }
response = { status = 200 }
expect = { headers = { "bad name" = "x" }, json = [{ pointer = "x", equals = 1 }] }
"#
            )),
        ),
        (
            "invalid-everything",
            text(&format!(
                "{MINIMAL}{}",
                r#"
[server]
listen = "localhost:80"
workers = 0
drain_timeout = "0s"
[failures]
connect = 404
[inspect]
max_body_bytes = 999999999999
content_types = ["*/*"]
[[rules]]
name = "bad name!"
when.path = "([a-z"
when.json = [{ pointer = "no-slash", gt = nan }, { pointer = "/a", equals = 1, exists = true }]
then.status = 99
then.headers = [{ name = "content-length", value = "1" }, { name = "x-ok", value = "a\u0001b" }]
[[rules]]
name = "dup"
then.body = "keep"
[[rules]]
name = "dup"
then.retry_after = "25h"
then.retry_after_from = "/x"
"#
            )),
        ),
        (
            "syntax-error",
            text("[upstream\nurl = \"http://a\"\n[[rules]]\nname = 'x"),
        ),
        (
            "crlf",
            text("[upstream]\r\nurl = \"http://127.0.0.1:3000\"\r\n[server]\r\nworkers = 1\r\n"),
        ),
        (
            "unknown-key",
            text(&format!("{MINIMAL}[server]\nlistn = 1\n")),
        ),
        (
            "ipv6-upstream",
            text("[upstream]\nurl = \"http://[::1]:8080\"\npool_max_idle = 0\n"),
        ),
    ]
}

/// The example rules, each paired with a response it decides.
fn rules_seeds() -> Vec<(&'static str, Vec<u8>)> {
    const EXAMPLE: &str = r#"[[rules]]
name = "user-not-found"
when.status = [200]
when.json = [{ pointer = "/status", equals = "error" }, { pointer = "/code", equals = 1042 }]
then.status = 404
then.body = "problem"
then.detail_from = "/message"

[[rules]]
name = "validation-failed"
when.status = [200]
when.json = [{ pointer = "/status", equals = "error" }, { pointer = "/errors", exists = true }]
then.status = 422
then.body = "problem"

[[rules]]
name = "quota-exceeded"
when.status = [200]
when.json = [{ pointer = "/error", equals = "rate_limited" }]
then.status = 429
then.retry_after_from = "/retry_in"
then.body = "problem"

[[rules]]
name = "null-entity"
mode = "shadow"
when.method = ["GET"]
when.status = ["2xx"]
when.json = [{ pointer = "/data", is_null = true }]
then.status = 404
then.body = "problem"

[[rules]]
name = "delete-empty"
when.method = ["DELETE"]
when.status = [200]
when.body = '^\s*\{\s*\}\s*$'
then.status = 204
then.body = "empty"

[[rules]]
name = "status-in-body"
when.status = [200]
when.json = [{ pointer = "/http_status", exists = true }]
then.status_from = "/http_status"
then.status = 502
then.headers = [{ name = "x-legacy-status", value = "1" }]
"#;
    let seed = |comment: &str, head: &str, body: Option<&[u8]>| {
        let mut out = format!("# rules: {comment}\n{EXAMPLE}\n%%\n{head}").into_bytes();
        if let Some(body) = body {
            out.extend_from_slice(b"\n%%\n");
            out.extend_from_slice(body);
        }
        out
    };
    let json = "GET /users/7 200\ncontent-type: application/json";
    vec![
        ("user-not-found", seed("an error body becomes 404", json, Some(br#"{"status":"error","code":1042,"message":"user\r\nnot found\u0000"}"#))),
        ("code-as-float", seed("1042.0 equals 1042", json, Some(br#"{"status":"error","code":1042.0}"#))),
        ("validation", seed("errors present", "POST /orders 200", Some(br#"{"status":"error","errors":[{"field":"quantity"}]}"#))),
        ("quota-number", seed("retry_in as a number", json, Some(br#"{"error":"rate_limited","retry_in":30}"#))),
        ("quota-string", seed("retry_in as digits", json, Some(br#"{"error":"rate_limited","retry_in":"0030"}"#))),
        ("quota-huge", seed("retry_in beyond ten digits is dropped", json, Some(br#"{"error":"rate_limited","retry_in":99999999999}"#))),
        ("quota-limit", seed("retry_in at the limit", json, Some(br#"{"error":"rate_limited","retry_in":9999999999}"#))),
        ("quota-crlf", seed("retry_in with CR/LF is dropped", json, Some(b"{\"error\":\"rate_limited\",\"retry_in\":\"30\\r\\nx: y\"}"))),
        ("null-entity", seed("shadow rule then no enforce", json, Some(br#"{"data":null}"#))),
        ("delete-empty", seed("{} to a DELETE", "DELETE /users/42 200", Some(b" { } "))),
        ("status-in-body", seed("a status string in the body", json, Some(br#"{"http_status":"503"}"#))),
        ("status-in-body-2xx", seed("a 2xx in the body is not used", json, Some(br#"{"http_status":200}"#))),
        ("not-inspected", seed("body rules do not match without a body", json, None)),
        ("not-json", seed("a body that is not JSON", json, Some(b"\xff\xfe not json {"))),
        ("deep-json", seed("deeply nested JSON", json, Some(&[b"[".repeat(200), b"]".repeat(200)].concat()))),
        ("latin1", seed("a Latin-1 body", "DELETE /x 200\ncontent-type: text/plain; charset=iso-8859-1", Some(b"{ } caf\xe9"))),
        ("status-500", seed("no rule wants a 500", "GET / 500\ncontent-type: application/json", Some(br#"{"status":"error","code":1042}"#))),
        (
            "headers-and-types",
            format!(
                "# rules: header and content-type conditions\n{}\n%%\nGET /users/7 200\nx-legacy: yes\nx-legacy: no\ncontent-type: application/json; charset=utf-8\n%%\n{{\"a\":{{\"b\":[1,2,{{\"c\":\"d\"}}]}}}}",
                r#"[[rules]]
name = "legacy"
mode = "shadow"
when.header = [{ name = "x-legacy", matches = "^no$" }]
then.retry_after = "1500ms"

[[rules]]
name = "typed"
when.content_type = '^application/json\b'
when.path = '^/users/\d+$'
when.json = [{ pointer = "/a/b/2/c", one_of = ["d", 1] }, { pointer = "/a/b/0", lte = 1 }, { pointer = "/a/b/1", gt = 1.5 }, { pointer = "/a/x", exists = false }, { pointer = "/a/b/-", exists = false }]
then.status = 503
then.body = "problem"
then.detail_from = "/a/b/2/c"
then.headers = [{ name = "retry-after", value = "7" }, { name = "cache-control", value = "no-cache" }]
"#
            )
            .into_bytes(),
        ),
        (
            "requests-and-templates",
            requests_seed(
                "request conditions, templates and problem members",
                "POST /accounts?debug=1&x=2 200\ncontent-type: application/json\nx-legacy: 1\n> accept: application/json\n> x-api-version: 2\n> x-request-id: r-42",
                br#"{"status":"error","id":"a b/c","code":7,"a":["../x"],"errors":[{"field":"email"}],"message":"bad"}"#,
            ),
        ),
        (
            "templates-dot-segments",
            requests_seed(
                "body values that are dot segments or hold CR/LF are refused",
                "GET /x/y 200\ncontent-type: application/json\n> accept: text/html",
                br#"{"status":"error","id":"..","code":".","a":["x\r\ny"],"errors":"e","message":"m"}"#,
            ),
        ),
        (
            "templates-missing",
            requests_seed(
                "no request headers, no query: absent conditions, missing values",
                "GET /users/7 200\ncontent-type: application/json",
                br#"{"status":"error","errors":{"big":[1,2,3]}}"#,
            ),
        ),
        (
            "templates-invalid",
            format!(
                "# rules: malformed templates and problem fields are config errors\n{}\n%%\nGET / 200",
                r#"[[rules]]
name = "bad"
when.header = [{ name = "x-a", matches = "x", absent = true }]
then.status = 404
then.body = "problem"
then.headers = [{ name = "location", value = "{/a" }, { name = "etag", value = "{nope}" }, { name = "allow", value = "}" }, { name = "link", value = "{}" }]
then.problem = { type = "not a uri", title = "", members = { type = "/a", request_id = "/b", "1bad" = "/c", "bad-name" = "/d", ok = "no-slash" } }

[[rules]]
name = "stray"
then.status = 500
then.problem = { title = "x" }
"#
            )
            .into_bytes(),
        ),
    ]
}

/// Rules with every request condition and template placeholder, for `requests_seed`.
const REQUESTS: &str = r#"[[rules]]
name = "api-v2-only"
mode = "shadow"
when.request_header = [{ name = "x-api-version", matches = "^2$" }, { name = "authorization", absent = true }, { name = "accept" }]
when.query = '(^|&)debug=1(&|$)'
then.headers = [{ name = "x-debug", value = "{method} {request_id} {{{query}}}" }]

[[rules]]
name = "created"
when.status = [200]
when.method = ["POST"]
when.header = [{ name = "location", absent = true }, { name = "x-legacy", absent = false }]
when.json = [{ pointer = "/status", equals = "error" }]
then.status = 422
then.body = "problem"
then.headers = [{ name = "location", value = "/x/{/id}" }, { name = "content-location", value = "{path}/{/a/0}" }, { name = "www-authenticate", value = "Bearer error=\"{/code}\"" }, { name = "allow", value = "GET, {method}" }, { name = "etag", value = "W/\"{/code}\"" }]
then.problem = { type = "https://errors.example.com/validation", title = "Validation failed", members = { errors = "/errors", code = "/code", first = "/errors/0/field" } }

[[rules]]
name = "dots"
when.request_header = [{ name = "accept", matches = "html" }]
then.status = 404
then.body = "problem"
then.detail_from = "/message"
then.headers = [{ name = "location", value = "../{/id}/{/code}" }, { name = "content-location", value = "/{/a/0}?r={request_id}" }, { name = "link", value = "<{path}>; rel=\"self\"" }]
then.problem = { type = "/errors/not-found", members = { errors = "/errors", missing = "/nope" } }

[[rules]]
name = "fallback"
when.request_header = [{ name = "x-api-version", absent = true }]
then.status = 500
then.body = "problem"
then.headers = [{ name = "location", value = "{path}?{query}" }, { name = "x-id", value = "{/id}" }]
then.problem = { title = "Internal", members = { errors = "/errors" } }
"#;

fn requests_seed(comment: &str, head: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("# rules: {comment}\n{REQUESTS}\n%%\n{head}\n%%\n").into_bytes();
    out.extend_from_slice(body);
    out
}

fn problem_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let seed = |comment: &str, request: &str, response: &str, detail: &str| {
        format!("# problem: {comment}\n{request}\n%%\n{response}\n%%\n{detail}").into_bytes()
    };
    vec![
        ("smuggling-shape", seed(
            "CL+TE request, Connection naming headers, TE trailers",
            "POST /orders HTTP/1.1\r\nHost: api.example\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive, X-Secret, host, te, x-forwarded-for\r\nTE: gzip, trailers;q=1\r\nx-secret: 1\r\nx-forwarded-for: 192.0.2.1\r\nx-request-id: abc-123\r\nExpect: 100-continue\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic eA==\r\n",
            "HTTP/1.1 200 OK\r\nConnection: close, x-internal\r\nx-internal: 1\r\nTransfer-Encoding: chunked\r\nContent-Length: 10\r\nProxy-Authenticate: Basic\r\n",
            "User \"bob\"\r\n  not found\t\u{0}at /srv/app.py",
        )),
        ("websocket", seed(
            "a WebSocket upgrade and its 101",
            "GET /ws HTTP/1.1\nHost: a\nConnection: Upgrade, x-secret\nUpgrade: websocket\nSec-WebSocket-Key: k\nx-secret: 1",
            "HTTP/1.1 101 Switching Protocols\nConnection: Upgrade\nUpgrade: websocket",
            "",
        )),
        ("h2c", seed(
            "an h2c upgrade is not forwarded",
            "GET / HTTP/1.1\nHost: a\nConnection: Upgrade, HTTP2-Settings\nUpgrade: h2c\nHTTP2-Settings: AAA",
            "HTTP/1.1 200 OK\nUpgrade: h2c",
            "x",
        )),
        ("absolute-form", seed(
            "an absolute-form target never routes",
            "GET http://169.254.169.254/latest?x=1 HTTP/1.1\nHost: a.example",
            "HTTP/1.1 404 Not Found",
            "\u{202e}right-to-left \u{85}next line",
        )),
        ("http10-no-host", seed(
            "HTTP/1.0 without Host gets the upstream's",
            "GET /x HTTP/1.0\nConnection: keep-alive",
            "HTTP/1.1 304 Not Modified\nContent-Length: 99\nConnection: content-length, etag\nETag: \"x\"",
            "",
        )),
        ("head", seed(
            "a HEAD response keeps its Content-Length",
            "HEAD /x HTTP/1.1\nHost: a\nx-request-id: \u{7f}bad",
            "HTTP/1.1 200 OK\nContent-Length: 12\nTransfer-Encoding: chunked",
            &"long detail ".repeat(40),
        )),
        ("connect", seed("CONNECT is refused", "CONNECT a.example:443 HTTP/1.1\nHost: a.example:443", "HTTP/1.1 200 OK", "")),
        ("duplicate-host", seed("two Host headers are refused", "GET / HTTP/1.1\nHost: a\nHost: b", "HTTP/1.1 400 Bad Request", "")),
        ("bad-host", seed("a Host with userinfo is refused", "GET / HTTP/1.1\nHost: user@a", "HTTP/1.1 200 OK", "")),
        ("obs-text", seed(
            "obs-text in a Connection value",
            "GET / HTTP/1.1\nHost: a\nConnection: x-secret\nConnection: caf\u{e9}\nx-secret: 1\nx-request-id: 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789",
            "HTTP/1.1 200 OK",
            &"é".repeat(310),
        )),
    ]
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn raw_deflate(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn br(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = brotli::CompressorWriter::new(&mut out, 4096, 9, 22);
    e.write_all(data).unwrap();
    drop(e);
    out
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

fn inspect_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let seed = |comment: &str, toml: &str, head: &str, body: &[u8]| {
        let mut out = format!("# inspect: {comment}\n{toml}\n%%\n{head}\n%%\n").into_bytes();
        out.extend_from_slice(body);
        out
    };
    let error = br#"{"status":"error","code":1042,"message":"user not found"}"#;
    let json = "content-type: application/json";
    let zeros = vec![0u8; 1 << 20];
    let mut two_members = gzip(b"{\"status\":\"error\",");
    two_members.extend(gzip(b"\"code\":1042}"));
    let mut trailing = gzip(error);
    trailing.extend_from_slice(b"garbage");
    let html404 = b"<!DOCTYPE html><html><head><title>404 Not Found</title></head><body><h1>Not Found</h1><p>No user 7.</p></body></html>";
    vec![
        ("json", seed("an error body, plain", "", &format!("GET /users/7 200\n{json}"), error)),
        ("gzip", seed("gzip", "", &format!("GET /users/7 200\n{json}\ncontent-encoding: gzip"), &gzip(error))),
        ("x-gzip-members", seed("two gzip members", "", &format!("GET /users/7 200\n{json}\ncontent-encoding: x-gzip"), &two_members)),
        ("gzip-trailing", seed("bytes after the gzip stream", "", &format!("GET /users/7 200\n{json}\ncontent-encoding: gzip"), &trailing)),
        ("deflate-zlib", seed("deflate as zlib", "", &format!("GET /users/7 200\n{json}\ncontent-encoding: deflate"), &zlib(error))),
        ("deflate-raw", seed("deflate as raw deflate", "", &format!("GET /users/7 200\n{json}\ncontent-encoding: deflate"), &raw_deflate(error))),
        ("br", seed("brotli", "", &format!("GET /users/7 200\n{json}\ncontent-encoding: br"), &br(error))),
        ("zstd", seed("zstd", "", &format!("GET /users/7 200\n{json}\ncontent-encoding: zstd"), &zstd(error))),
        ("stacked", seed("gzip then br", "", &format!("GET /users/7 200\n{json}\ncontent-encoding: gzip, br"), &br(&gzip(error)))),
        ("gzip-bomb", seed("1 MiB of zeros in 1 KiB of gzip, limit 64 KiB", "", &format!("GET /users/7 200 limit=65536\n{json}\ncontent-encoding: gzip"), &gzip(&zeros))),
        ("br-bomb", seed("1 MiB of zeros in brotli", "", &format!("GET /users/7 200 limit=4096\n{json}\ncontent-encoding: br"), &br(&zeros))),
        ("zstd-bomb", seed("1 MiB of zeros in zstd", "", &format!("GET /users/7 200 limit=4096\n{json}\ncontent-encoding: zstd"), &zstd(&zeros))),
        ("unknown-coding", seed("a coding candor does not decode", "", &format!("GET /users/7 200\n{json}\ncontent-encoding: compress"), error)),
        ("truncated-gzip", seed("a gzip body cut short", "", &format!("GET /users/7 200\n{json}\ncontent-encoding: gzip"), &gzip(error)[..20])),
        ("html-404", seed("an HTML 404 for an API client", "", "GET /profile 404\ncontent-type: text/html; charset=utf-8\n> accept: application/json", html404)),
        ("html-404-browser", seed("a browser keeps its page", "", "GET /profile 404 config=1\ncontent-type: text/html\n> accept: text/html,application/xhtml+xml,*/*;q=0.8", html404)),
        ("html-500", seed("a 5xx page's text never becomes detail", "", "GET / 500 config=2\ncontent-type: text/html", b"<html><body><h1>Internal Server Error</h1><pre>at com.example.Foo.bar(Foo.java:42)</pre></body></html>")),
        ("traceback", seed("a Python traceback is scrubbed", "", "GET /export 500 config=1\ncontent-type: text/plain", b"Traceback (most recent call last):\n  File \"/srv/app/export.py\", line 88, in export\nKeyError: 'x'")),
        ("sql-leak", seed("an SQL error with a private address", "", "GET / 502 config=2\ncontent-type: application/json\ncontent-encoding: gzip", &gzip(b"{\"error\":\"ERROR: syntax error at or near \\\"FROM\\\" (SQLSTATE 42601) host 10.0.3.7\"}"))),
        ("429-reset", seed("a 429 gets Retry-After from RateLimit-Reset", "", "GET /search 429 config=1\ncontent-type: application/json\nratelimit-reset: 17", b"{\"error\":\"slow down\"}")),
        ("503-kept", seed("an upstream Retry-After is kept", "", "GET / 503\nretry-after: Wed, 21 Oct 2015 07:28:00 GMT\ncontent-type: text/plain", b"down")),
        ("status-from", seed("status and Retry-After read from the body", "", &format!("GET /payments/1 200\n{json}"), br#"{"http_status":"503","retry_in":"30"}"#)),
        ("delete-204", seed("{} to a DELETE becomes 204", "", &format!("DELETE /users/42 200 frames=1\n{json}\netag: \"v1\"\ncontent-length: 2"), b"{}")),
        ("frames-overflow", seed("frames past the limit are replayed whole", "", &format!("GET /users/7 200 limit=16 frames=1,2,3,10,40 trailers\n{json}"), error)),
        ("frames-fail", seed("a body failing mid-read", "", &format!("GET /users/7 200 frames=5,10,20 fail=12\n{json}"), error)),
        ("exact-overflow", seed("an exact size hint above the limit", "", &format!("GET /users/7 200 limit=8 exact fail=30 frames=30\n{json}"), error)),
        ("legacy-header", seed("a header rule and a shadow rule", "", "GET / 200\ncontent-type: application/json\nx-legacy: yes", b"{\"error\":true}")),
        ("custom-config", seed(
            "a config of its own",
            "[inspect]\nmax_body_bytes = 64\ncontent_types = [\"text/plain\"]\n[[rules]]\nname = \"t\"\nwhen.body = 'fail'\nthen.status = 304\nthen.body = \"problem\"\nthen.headers = [{ name = \"etag\", value = \"x\" }]",
            "GET / 200 limit=64\ncontent-type: text/plain",
            b"it did fail",
        )),
    ]
}

fn exchange_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let seed = |comment: &str, lines: &[&str]| {
        let mut out = format!("# exchange: {comment}\n");
        for line in lines {
            out.push_str(line);
            out.push('\n');
        }
        out.into_bytes()
    };
    let get = r"> GET /users/42 HTTP/1.1\r\nhost: api.example\r\n\r\n";
    let mut gzipped = String::new();
    for b in gzip(br#"{"status":"error","message":"nope"}"#) {
        gzipped.push_str(&format!("\\x{b:02x}"));
    }
    let gzip_response = format!(
        "< HTTP/1.1 200 OK\\r\\ncontent-type: application/json\\r\\ncontent-encoding: gzip\\r\\ncontent-length: {}\\r\\n\\r\\n{gzipped}",
        gzipped.len() / 4
    );
    let big = "x".repeat(3000);
    let big_response = format!("< HTTP/1.1 200 OK\\r\\ncontent-type: application/json\\r\\ncontent-length: 3000\\r\\n\\r\\n{big}");
    vec![
        (
            "get",
            seed(
                "a plain GET and its answer",
                &[
                    get,
                    r#"< HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 32\r\n\r\n{"status":"ok","data":{"id":42}}"#,
                ],
            ),
        ),
        (
            "chunked-trailers",
            seed(
                "a chunked answer with trailers",
                &[
                    r"> GET /x HTTP/1.1\r\nhost: a\r\nte: trailers\r\n\r\n",
                    r"< HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n3;ext=1\r\nabc\r\n0\r\nx-sum: 1\r\n\r\n",
                ],
            ),
        ),
        (
            "close-delimited",
            seed(
                "a body delimited by close",
                &[
                    get,
                    r"< HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\npart one ",
                    r"< part two",
                    "< !close",
                ],
            ),
        ),
        (
            "close-delimited-reset",
            seed(
                "a close-delimited body cut by a reset stays incomplete",
                &[
                    get,
                    r"< HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\npart one",
                    "< !reset",
                ],
            ),
        ),
        (
            "short-length",
            seed(
                "a body shorter than its Content-Length",
                &[
                    get,
                    r"< HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",
                    "< !close",
                ],
            ),
        ),
        (
            "short-chunked",
            seed(
                "a chunked body without its last chunk",
                &[
                    get,
                    r"< HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nabcde\r\n",
                    "< !close",
                ],
            ),
        ),
        (
            "rewrite",
            seed(
                "a 200 error body becomes a 404 problem",
                &[
                    get,
                    r#"< HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 46\r\n\r\n{"status":"error","message":"user not found!"}"#,
                ],
            ),
        ),
        (
            "gzip-rewrite",
            seed(
                "a gzip error body is decoded and rewritten",
                &[get, &gzip_response],
            ),
        ),
        (
            "overflow",
            seed(
                "a body past the inspection limit streams on",
                &[get, &big_response],
            ),
        ),
        (
            "cl-te",
            seed(
                "CL+TE is refused and never reaches the upstream",
                &[
                    r"> POST /orders HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: a\r\n\r\n",
                ],
            ),
        ),
        (
            "pipelined",
            seed(
                "two pipelined requests",
                &[
                    r"> GET /a HTTP/1.1\r\nhost: a\r\n\r\nGET /b HTTP/1.1\r\nhost: a\r\n\r\n",
                    r"< HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na",
                    "~ 5",
                    r"< HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nb",
                ],
            ),
        ),
        (
            "expect-continue",
            seed(
                "Expect: 100-continue and a chunked request body",
                &[
                    r"> POST /orders HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ntransfer-encoding: chunked\r\n\r\n",
                    r"> 4\r\nbody\r\n0\r\n\r\n",
                    r"< HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok",
                ],
            ),
        ),
        (
            "websocket",
            seed(
                "a WebSocket upgrade becomes a tunnel",
                &[
                    r"> GET /ws HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
                    r"< HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
                    r"> \x81\x05hello",
                    r"< \x81\x02hi",
                ],
            ),
        ),
        (
            "unsolicited-101",
            seed(
                "a 101 nobody asked for is a 502",
                &[
                    get,
                    r"< HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
                ],
            ),
        ),
        (
            "head",
            seed(
                "HEAD with a Content-Length answer",
                &[
                    r"> HEAD /x HTTP/1.1\r\nhost: a\r\n\r\n",
                    r"< HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n",
                ],
            ),
        ),
        (
            "garbage-upstream",
            seed(
                "an upstream answer that is not HTTP",
                &[get, r"< HTTP/1.1 2OO OK\r\n\x00\xff\r\n\r\n"],
            ),
        ),
        (
            "slow-client",
            seed(
                "a client too slow to send its head",
                &[r"> GET / HTTP/1.1\r\nhost:", "~ 60", "~ 60"],
            ),
        ),
        (
            "slow-upstream",
            seed(
                "an upstream too slow to answer",
                &[
                    get,
                    "~ 60",
                    "~ 60",
                    r"< HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
                ],
            ),
        ),
        (
            "http10",
            seed(
                "an HTTP/1.0 client",
                &[
                    r"> GET /x HTTP/1.0\r\n\r\n",
                    r"< HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                ],
            ),
        ),
        (
            "no-content",
            seed(
                "a 204 and a 304 with stray bodies",
                &[
                    r"> DELETE /users/42 HTTP/1.1\r\nhost: a\r\n\r\n",
                    r"< HTTP/1.1 204 No Content\r\ncontent-length: 3\r\n\r\nabc",
                ],
            ),
        ),
        (
            "obs-fold",
            seed(
                "an obs-folded upstream header",
                &[
                    get,
                    r"< HTTP/1.1 200 OK\r\nx-a: 1\r\n  continued\r\ncontent-length: 1\r\n\r\nz",
                ],
            ),
        ),
        (
            "double-length",
            seed(
                "two Content-Lengths from the upstream",
                &[
                    get,
                    r"< HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nzz",
                ],
            ),
        ),
        (
            "h2-prior-knowledge",
            seed(
                "an HTTP/2 preface",
                &[r"> PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"],
            ),
        ),
        (
            "client-half-close",
            seed(
                "the client half-closes after its request",
                &[
                    get,
                    "> !shutdown",
                    r"< HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
                ],
            ),
        ),
    ]
}
