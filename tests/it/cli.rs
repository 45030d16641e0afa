//! The `candor` binary: `check` messages and exit codes, `--version`, `run` with environment
//! overrides, SIGTERM, and memory while streaming large bodies.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::harness::*;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

fn temp_config(text: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "cli-{}-{}.toml",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, text).unwrap();
    path
}

fn check(text: &str) -> (i32, String, String, PathBuf) {
    let path = temp_config(text);
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
        path,
    )
}

#[test]
fn version_prints_the_crate_version() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("candor {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_accepts_the_example_config_with_a_one_line_summary() {
    let out = Command::new(BIN)
        .args(["check", "--config", "config/candor.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with("config/candor.toml: ok"), "{stdout}");
    assert!(stdout.contains("12 rules"), "{stdout}");
}

#[test]
fn check_accepts_a_two_line_config() {
    let (code, stdout, stderr, _) = check("[upstream]\nurl = \"http://127.0.0.1:3000\"\n");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(": ok"), "{stdout}");
}

/// Each bad input exits 78 with a message naming the file and line, the rule, the field and
/// the value.
#[test]
fn check_locates_every_kind_of_mistake() {
    let cases: [(&str, &str, &[&str]); 7] = [
        (
            "unknown key",
            "[upstream]\nurl = \"http://127.0.0.1:3000\"\ntimeuot = \"2s\"\n",
            &[":3:", "timeuot", "unknown field"],
        ),
        (
            "bad regex",
            "[upstream]\nurl = \"http://127.0.0.1:3000\"\n\n[[rules]]\nname = \"users\"\nwhen.path = \"^/users/(\"\nthen.status = 404\n",
            &[":6:", "rule \"users\"", "when.path", "\"^/users/(\"", "regex"],
        ),
        (
            "status out of range",
            "[upstream]\nurl = \"http://127.0.0.1:3000\"\n\n[[rules]]\nname = \"big\"\nthen.status = 700\n",
            &[":6:", "rule \"big\"", "then.status", "700"],
        ),
        (
            "bad duration",
            "[upstream]\nurl = \"http://127.0.0.1:3000\"\ntimeout = \"soon\"\n",
            &[":3:", "upstream.timeout", "\"soon\"", "duration"],
        ),
        (
            "bad address",
            "[server]\nlisten = \"localhost:80x\"\n[upstream]\nurl = \"http://127.0.0.1:3000\"\n",
            &[":2:", "server.listen", "\"localhost:80x\"", "address"],
        ),
        (
            "duplicate rule name",
            "[upstream]\nurl = \"http://127.0.0.1:3000\"\n\n[[rules]]\nname = \"dup\"\nthen.status = 404\n\n[[rules]]\nname = \"dup\"\nthen.status = 410\n",
            &[":9:", "\"dup\"", "name", "duplicate rule name", "line 5"],
        ),
        (
            "missing upstream url",
            "[server]\ndebug_headers = false\n",
            &["upstream.url"],
        ),
    ];
    for (name, text, needles) in cases {
        let (code, stdout, stderr, path) = check(text);
        assert_eq!(code, 78, "{name}: {stdout}{stderr}");
        assert!(stdout.is_empty(), "{name}: {stdout}");
        assert!(
            stderr.contains(&*path.to_string_lossy()),
            "{name}: file not named: {stderr}"
        );
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{name}: {needle:?} missing from: {stderr}"
            );
        }
    }
}

#[test]
fn check_names_an_unreadable_file() {
    let out = Command::new(BIN)
        .args(["check", "--config", "/nonexistent/candor.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("/nonexistent/candor.toml"), "{stderr}");
}

/// `candor run` on a config written from `text` (`CandorProcess::run`: the log format is
/// candor's choice, every log line is kept).
fn running(text: &str, env: &[(&str, &str)], flags: &[&str]) -> CandorProcess {
    let path = temp_config(text);
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    CandorProcess::run(&name, &path, flags, env)
}

#[tokio::test]
async fn run_applies_environment_overrides_and_exits_0_on_sigterm() {
    let up = upstream(|_req| async { response(200, "from the env upstream") }).await;
    let running = running(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         [upstream]\nurl = \"http://127.0.0.1:9\"\n",
        &[
            ("CANDOR__UPSTREAM__URL", &up.url()),
            ("CANDOR__SERVER__WORKERS", "1"),
        ],
        &[],
    );
    let (status, _, body) = get(running.addr, "/x").await;
    assert_eq!(status, 200);
    assert_eq!(body, "from the env upstream");
    assert_eq!(get(running.admin, "/readyz").await.0, 200);
    assert_eq!(running.terminate(), 0);
}

#[tokio::test]
async fn large_bodies_stream_with_flat_memory() {
    const UP: usize = 20 << 20;
    const DOWN: usize = 10 << 20;
    const LIMIT_KIB: u64 = 30 * 1024;
    let up = upstream(|req: http::Request<hyper::body::Incoming>| async move {
        let mut body = req.into_body();
        let mut received = 0usize;
        while let Some(frame) = body.frame().await {
            received += frame.unwrap().data_ref().map_or(0, Bytes::len);
        }
        let chunks = (0..DOWN / 65536)
            .map(|_| Ok::<_, BoxError>(Frame::data(Bytes::from(vec![b'd'; 65536]))));
        let mut r =
            http::Response::new(StreamBody::new(futures_util::stream::iter(chunks)).boxed());
        r.headers_mut()
            .insert("x-received", received.to_string().parse().unwrap());
        r
    })
    .await;
    let running = running(
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nworkers = 1\n\
             [upstream]\nurl = \"{}\"\n",
            up.url()
        ),
        &[],
        &[],
    );
    let chunks =
        (0..UP / 65536).map(|_| Ok::<_, BoxError>(Frame::data(Bytes::from(vec![b'u'; 65536]))));
    let req = Request::post("/transfer")
        .header("host", "a")
        .body(StreamBody::new(futures_util::stream::iter(chunks)).boxed())
        .unwrap();
    let response = send(running.addr, req).await;
    assert_eq!(response.headers()["x-received"], UP.to_string().as_str());
    let mut body = response.into_body();
    let mut received = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap();
        if let Some(data) = frame.data_ref() {
            assert!(data.iter().all(|b| *b == b'd'));
            received += data.len();
        }
    }
    assert_eq!(received, DOWN);
    let peak = running.peak_rss_kib();
    eprintln!("candor peak RSS after a 20 MiB upload and a 10 MiB download: {peak} KiB");
    assert!(peak < LIMIT_KIB, "peak RSS {peak} KiB");
}

#[test]
fn test_runs_the_example_configs_own_tests() {
    let out = Command::new(BIN)
        .args(["test", "--config", "config/candor.toml"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("0 failed"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn test_exits_1_and_says_what_failed() {
    let path = temp_config(
        "[upstream]\nurl = \"http://127.0.0.1:3000\"\n\n[[rules]]\nname = \"r\"\nwhen.status = [200]\n\
         when.json = [{ pointer = \"/ok\", equals = false }]\nthen.status = 500\n\n\
         [[tests]]\nname = \"wrong expectation\"\nresponse.body = '{\"ok\":false}'\n\
         expect = { rule = \"r\", status = 503 }\n\n\
         [[tests]]\nname = \"right expectation\"\nresponse.body = '{\"ok\":false}'\n\
         expect = { rule = \"r\", status = 500, body = \"keep\" }\n",
    );
    let out = Command::new(BIN)
        .args(["test", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL  wrong expectation: expected status 503, got 500"),
        "{stdout}"
    );
    assert!(stdout.contains("ok    right expectation"), "{stdout}");
    assert!(stdout.contains("2 tests, 1 passed, 1 failed"), "{stdout}");
}

#[test]
fn check_locates_a_bad_test_and_warns_about_unreachable_rules() {
    let (code, _, stderr, _) = check(
        "[upstream]\nurl = \"http://127.0.0.1:3000\"\n\n[[tests]]\nname = \"t\"\n\
         expect.rule = \"no-such-rule\"\n",
    );
    assert_eq!(code, 78);
    assert!(
        stderr.contains(":6: test \"t\": expect.rule = \"no-such-rule\""),
        "{stderr}"
    );

    let (code, stdout, stderr, _) = check(
        "[upstream]\nurl = \"http://127.0.0.1:3000\"\n\n[[rules]]\nname = \"all-200\"\n\
         when.status = [200]\nthen.status = 500\n\n[[rules]]\nname = \"json-200\"\n\
         when.status = [200]\nwhen.json = [{ pointer = \"/a\", exists = true }]\nthen.status = 404\n",
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(": ok"), "{stdout}");
    assert!(
        stderr.contains("warning:")
            && stderr.contains("\"json-200\" can never match")
            && stderr.contains("\"all-200\""),
        "{stderr}"
    );
}

#[test]
fn explain_shows_the_rule_status_headers_and_body() {
    let out = Command::new(BIN)
        .args([
            "explain",
            "--config",
            "config/candor.toml",
            "--status",
            "200",
            "--path",
            "/users/7",
            "--body",
            r#"{"status":"error","code":1042,"message":"user not found"}"#,
            "--verbose",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "rule:    user-not-found",
        "status:  200 -> 404",
        "content-type: application/problem+json",
        "\"detail\":\"user not found\"",
        "validation-failed (enforce): not evaluated",
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing:\n{stdout}");
    }

    let out = Command::new(BIN)
        .args([
            "explain",
            "--config",
            "config/candor.toml",
            "--status",
            "200",
            "--body",
            r#"{"status":"ok"}"#,
            "--json",
            "--verbose",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["status"], 200);
    assert_eq!(doc["rules"], serde_json::json!([]));
    assert_eq!(doc["body_kind"], "keep");
    let traces = doc["traces"].as_array().unwrap();
    assert!(traces[0]
        .as_str()
        .unwrap()
        .contains("/status: \"ok\" does not equal \"error\""));

    let out = Command::new(BIN)
        .args(["explain", "--status", "200", "--header", "no colon"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

fn healthcheck(admin: std::net::SocketAddr) -> i32 {
    Command::new(BIN)
        .args(["healthcheck", "--admin", &admin.to_string()])
        .output()
        .unwrap()
        .status
        .code()
        .unwrap()
}

#[tokio::test]
async fn sighup_reloads_and_healthcheck_follows_readiness() {
    let up = upstream(|_req| async { response(200, "ok") }).await;
    let text = |status: u16| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nworkers = 1\n\
             [upstream]\nurl = \"{}\"\n\n[[rules]]\nname = \"to-{status}\"\n\
             when.status = [200]\nthen.status = {status}\n",
            up.url()
        )
    };
    // --no-watch: only SIGHUP reloads, so the change below waits for the signal.
    let running = running(&text(409), &[], &["--no-watch"]);
    assert_eq!(get(running.addr, "/").await.0, 409);
    assert_eq!(healthcheck(running.admin), 0);

    std::fs::write(&running.config, text(410)).unwrap();
    assert_eq!(
        get(running.addr, "/").await.0,
        409,
        "not reloaded before SIGHUP"
    );
    running.signal("HUP");
    let reloaded = running.log_line("config reloaded").await;
    assert_eq!(reloaded["trigger"], "sighup");
    assert_eq!(reloaded["added"], "to-410");
    assert_eq!(reloaded["removed"], "to-409");
    assert_eq!(get(running.addr, "/").await.0, 410);

    let admin = running.admin;
    assert_eq!(running.terminate(), 0);
    assert_eq!(
        healthcheck(admin),
        1,
        "nothing answers once candor has stopped"
    );
}

#[tokio::test]
async fn logs_are_json_lines_with_an_access_line_per_request() {
    let up = canned_upstream(vec![(
        "/users/7",
        Canned::json(200, r#"{"status":"error","code":1042}"#),
    )])
    .await;
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nworkers = 1\n\
         [log]\naccess_log = true\n[upstream]\nurl = \"{}\"\n\n[[rules]]\n\
         name = \"user-not-found\"\nwhen.json = [{{ pointer = \"/code\", equals = 1042 }}]\n\
         then.status = 404\n",
        up.url()
    );
    let running = running(&config, &[], &[]);
    let (status, _, _) =
        request(running.addr, "GET", "/users/7", &[("x-request-id", "rq-9")]).await;
    assert_eq!(status, 404);
    let rewrite = running.log_line("response rewritten").await;
    assert_eq!(rewrite["rule"], "user-not-found");
    assert_eq!(rewrite["request_id"], "rq-9");
    let access = running.log_line("request").await;
    assert_eq!(access["target"], "candor::access");
    assert_eq!(access["method"], "GET");
    assert_eq!(access["path"], "/users/7");
    assert_eq!(access["upstream_status"], 200);
    assert_eq!(access["status"], 404);
    assert_eq!(access["rule"], "user-not-found");
    assert_eq!(access["request_id"], "rq-9");
    assert!(access["duration_ms"].as_f64().unwrap() >= 0.0);
}
