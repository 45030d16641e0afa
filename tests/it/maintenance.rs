//! Maintenance mode end to end: the 503 candor answers itself without touching the upstream,
//! `except_paths`, switching it by reload and through the admin API under keep-alive load
//! (every request gets exactly one answer, the upstream's or the maintenance 503), a reload
//! putting the file's value back, and the admin token guard, over HTTP and through the CLI.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use tokio::task::JoinHandle;

use crate::harness::*;

const TOKEN: &str = "test-token-0123456789abcdef";

/// A config file's text: `workers = 2` so the switch is seen by more than one worker.
fn config_text(upstream: &str, enabled: bool, extra: &str) -> String {
    format!(
        "[server]\nworkers = 2\n\n[upstream]\nurl = \"{upstream}\"\n\n\
         [maintenance]\nenabled = {enabled}\nretry_after = \"10m\"\n\
         detail = \"Back at 14:00 UTC.\"\nexcept_paths = ['^/healthz$']\n{extra}"
    )
}

async fn start(path: &Path) -> Candor {
    let config = candor::config::load_with_env(path, HashMap::new()).unwrap();
    let reload = candor::Reload {
        path: path.to_path_buf(),
        env: Some(HashMap::new()),
        watch: true,
        sighup: false,
    };
    Candor::start_with(config, Some(reload)).await
}

/// `GET /maintenance` on the admin listener, as JSON.
async fn state(admin: SocketAddr) -> serde_json::Value {
    let (status, headers, body) = get(admin, "/maintenance").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    serde_json::from_slice(&body).unwrap()
}

/// Waits until the live state is `enabled` (set by `source`). Reload is asynchronous; the
/// workers read the same switch the admin endpoint shows, so once it says so, they do.
async fn until_state(admin: SocketAddr, enabled: bool, source: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = state(admin).await;
        if now["enabled"] == enabled && now["source"] == source {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "maintenance never became {enabled} by {source}: {now}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `PUT /maintenance` with `body` and optionally a bearer token.
async fn put(
    admin: SocketAddr,
    body: &str,
    token: Option<&str>,
) -> (StatusCode, http::HeaderMap, serde_json::Value) {
    let mut req = http::Request::put("/maintenance")
        .header("host", "admin")
        .header("content-type", "application/json");
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let (status, headers, body) =
        collect(send(admin, req.body(full(body.to_owned())).unwrap()).await).await;
    (status, headers, serde_json::from_slice(&body).unwrap())
}

/// Checks a response is the maintenance answer for `path`.
fn assert_maintenance(status: StatusCode, headers: &http::HeaderMap, body: &Bytes, path: &str) {
    assert_eq!(status, 503);
    assert_eq!(headers["retry-after"], "600");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(headers.get("proxy-status").is_none(), "{headers:?}");
    let doc = problem(body);
    assert_eq!(doc["status"], 503);
    assert_eq!(doc["detail"], "Back at 14:00 UTC.");
    assert_eq!(doc["instance"], path);
    assert_eq!(doc["request_id"], headers["x-request-id"].to_str().unwrap());
}

/// Client load: tasks, each on one keep-alive connection, sending `GET /work` until stopped;
/// each returns every (status, body) it got. A request that gets no response fails the task.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    clients: Vec<JoinHandle<Vec<(u16, Bytes)>>>,
}

impl Load {
    /// Waits until the clients have had `n` more answers: each state is seen under load, with
    /// no guess at how long that takes.
    async fn run_for(&self, n: usize) {
        let target = self.done.load(Ordering::SeqCst) + n;
        assert!(
            eventually(WAIT, || self.done.load(Ordering::SeqCst) >= target).await,
            "the clients stalled"
        );
    }
}

fn keep_alive_load(addr: SocketAddr) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let clients = (0..4)
        .map(|_| {
            let (stop, done) = (stop.clone(), done.clone());
            tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                let mut seen = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let req = http::Request::get("/work")
                        .header("host", "api.example")
                        .body(full(""))
                        .unwrap();
                    let response = sender
                        .send_request(req)
                        .await
                        .expect("every request gets a response on its connection");
                    let (status, headers, body) = collect(response).await;
                    if status == 503 {
                        assert_maintenance(status, &headers, &body, "/work");
                    }
                    seen.push((status.as_u16(), body));
                    done.fetch_add(1, Ordering::SeqCst);
                }
                seen
            })
        })
        .collect();
    Load {
        stop,
        done,
        clients,
    }
}

/// Stops the load and checks it: only 200s from the upstream and maintenance 503s, at least one
/// of each, and exactly as many 200s as the upstream saw requests for `/work`.
async fn check_load(load: Load, up: &Upstream) {
    load.stop.store(true, Ordering::SeqCst);
    let (mut ok, mut maintenance) = (0, 0);
    for client in load.clients {
        for (status, body) in client.await.unwrap() {
            match status {
                200 => {
                    assert_eq!(body, "upstream", "a 200 is the upstream's");
                    ok += 1;
                }
                503 => maintenance += 1,
                other => panic!("unexpected status {other}"),
            }
        }
    }
    let forwarded = up.requests().iter().filter(|r| r.uri == "/work").count();
    assert_eq!(
        forwarded, ok,
        "the upstream saw exactly the requests answered 200"
    );
    assert!(
        ok > 0 && maintenance > 0,
        "{ok} forwarded, {maintenance} in maintenance"
    );
}

#[tokio::test]
async fn maintenance_on_by_config_answers_503_itself_and_never_contacts_the_upstream() {
    let up = upstream(|_req| async { response(200, "upstream") }).await;
    let config = config_toml(
        &up.url(),
        "[maintenance]\nenabled = true\nretry_after = \"599500ms\"\n\
         detail = \"Back at 14:00 UTC.\"\nexcept_paths = ['^/healthz$']\n",
    );
    let candor = Candor::start(config).await;

    let (status, headers, body) = request(
        candor.addr,
        "POST",
        "/users/7?token=secret",
        &[("x-request-id", "client-id-1")],
    )
    .await;
    assert_maintenance(status, &headers, &body, "/users/7");
    assert_eq!(headers["x-request-id"], "client-id-1");
    let (status, headers, body) = get(candor.addr, "/").await;
    assert_maintenance(status, &headers, &body, "/");
    assert_eq!(
        up.connection_count(),
        0,
        "no upstream connection was opened"
    );

    // A request that must be refused still is, before maintenance answers.
    let (status, _, _) = request(candor.addr, "GET", "/x", &[("host", "other.example")]).await;
    assert_eq!(status, 400, "two Host headers are refused first");

    // An excepted path is forwarded.
    let (status, _, body) = get(candor.addr, "/healthz").await;
    assert_eq!((status.as_u16(), &body[..]), (200, &b"upstream"[..]));
    let seen: Vec<String> = up.requests().iter().map(|r| r.uri.clone()).collect();
    assert_eq!(seen, ["/healthz"]);

    // The pod stays ready: traffic must keep reaching candor to get the 503.
    assert_eq!(get(candor.admin, "/readyz").await.0, 200);
    let metrics = candor.metrics().await;
    assert!(
        metrics.contains("candor_maintenance_responses_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"candor_requests_total{status="503"} 2"#),
        "{metrics}"
    );
    let status_json: serde_json::Value =
        serde_json::from_slice(&get(candor.admin, "/status.json").await.2).unwrap();
    let m = &status_json["maintenance"];
    assert_eq!(m["enabled"], true, "{status_json}");
    assert_eq!(m["source"], "config");
    assert_eq!(m["retry_after_seconds"], 600);
    assert_eq!(m["responses"], 2);
    assert_eq!(m["except_paths"], serde_json::json!(["^/healthz$"]));
}

#[tokio::test]
async fn a_reload_switches_maintenance_under_keep_alive_load_and_loses_nothing() {
    let up = upstream(|_req| async { response(200, "upstream") }).await;
    let dir = temp_dir("maintenance-reload");
    let path = dir.join("candor.toml");
    std::fs::write(&path, config_text(&up.url(), false, "")).unwrap();
    let candor = start(&path).await;

    let load = keep_alive_load(candor.addr);
    // Each flip is a different file (the comment counts), each waited for under load.
    for (round, enabled) in [true, false, true, false].into_iter().enumerate() {
        load.run_for(40).await;
        save_by_rename(
            &path,
            &config_text(&up.url(), enabled, &format!("# round {round}\n")),
        );
        until_state(candor.admin, enabled, "config").await;
    }
    load.run_for(40).await;
    check_load(load, &up).await;
}

#[tokio::test]
async fn the_admin_api_switches_maintenance_under_keep_alive_load_and_a_reload_resets_it() {
    let up = upstream(|_req| async { response(200, "upstream") }).await;
    let dir = temp_dir("maintenance-admin");
    let path = dir.join("candor.toml");
    std::fs::write(&path, config_text(&up.url(), false, "")).unwrap();
    let candor = start(&path).await;

    let load = keep_alive_load(candor.addr);
    for enabled in [true, false, true, false, true] {
        load.run_for(40).await;
        // No token configured: the test runs on loopback, which may write.
        let (status, _, now) =
            put(candor.admin, &format!("{{\"enabled\": {enabled}}}"), None).await;
        assert_eq!(status, 200, "{now}");
        // The answer is the new state, in force already.
        assert_eq!(now["enabled"], enabled);
        assert_eq!(now["source"], "admin");
        assert_eq!(now["retry_after"], "10m", "left out: the file's");
        assert_eq!(now["detail"], "Back at 14:00 UTC.");
    }
    load.run_for(40).await;
    check_load(load, &up).await;

    // On by the admin API: a reload of a file that says off puts it back off.
    assert_eq!(state(candor.admin).await["enabled"], true);
    save_by_rename(&path, &config_text(&up.url(), false, "# changed\n"));
    until_state(candor.admin, false, "config").await;
    assert_eq!(get(candor.addr, "/work").await.0, 200);

    // Values the admin API sets replace the file's until the next reload.
    let (status, _, now) = put(
        candor.admin,
        r#"{"enabled": true, "retry_after": "1m", "detail": "Upgrading the database."}"#,
        None,
    )
    .await;
    assert_eq!(status, 200, "{now}");
    assert_eq!(now["retry_after_seconds"], 60);
    let (status, headers, body) = get(candor.addr, "/work").await;
    assert_eq!(status, 503);
    assert_eq!(headers["retry-after"], "60");
    assert_eq!(problem(&body)["detail"], "Upgrading the database.");

    // Bad input is refused with a reason, and changes nothing.
    for (body, want) in [
        (
            r#"{"enabled": true, "retry_after": "soon"}"#,
            "invalid duration",
        ),
        (r#"{"enabled": true, "detail": ""}"#, "must not be empty"),
        (r#"{"on": true}"#, "unknown field"),
    ] {
        let (status, _, doc) = put(candor.admin, body, None).await;
        assert_eq!(status, 400, "{body}: {doc}");
        assert!(doc["detail"].as_str().unwrap().contains(want), "{doc}");
    }
    assert_eq!(
        state(candor.admin).await["detail"],
        "Upgrading the database."
    );
    let big = format!(
        "{{\"enabled\": true, \"detail\": \"{}\"}}",
        "x".repeat(17 * 1024)
    );
    assert_eq!(put(candor.admin, &big, None).await.0, 413);
}

#[tokio::test]
async fn the_admin_token_guards_writes_and_reads_stay_open() {
    let up = upstream(|_req| async { response(200, "upstream") }).await;
    let config = config_toml(&up.url(), &format!("[server]\nadmin_token = \"{TOKEN}\"\n"));
    assert!(
        !format!("{config:?}").contains(TOKEN),
        "Debug shows the token"
    );
    let candor = Candor::start(config).await;

    let (status, headers, doc) = put(candor.admin, r#"{"enabled": true}"#, None).await;
    assert_eq!(status, 401, "{doc}");
    assert!(headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let (status, headers, _) = put(candor.admin, r#"{"enabled": true}"#, Some("wrong")).await;
    assert_eq!(status, 401);
    assert!(headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    assert_eq!(
        state(candor.admin).await["enabled"],
        false,
        "nothing changed"
    );
    assert_eq!(get(candor.addr, "/x").await.0, 200);

    let (status, _, now) = put(candor.admin, r#"{"enabled": true}"#, Some(TOKEN)).await;
    assert_eq!(status, 200, "{now}");
    assert_eq!(now["enabled"], true);
    assert_eq!(get(candor.addr, "/x").await.0, 503);

    // Other methods are named in Allow; the rest of the admin listener stays read-only.
    let (status, headers, _) = request(candor.admin, "DELETE", "/maintenance", &[]).await;
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "GET, HEAD, PUT");
    let (status, headers, _) = request(candor.admin, "PUT", "/metrics", &[]).await;
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "GET, HEAD");
    let metrics = candor.metrics().await;
    assert!(!metrics.contains(TOKEN));
    let status_json = get(candor.admin, "/status.json").await.2;
    assert!(!String::from_utf8_lossy(&status_json).contains(TOKEN));
}

/// `candor maintenance …` against `admin`, with `env`.
fn cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("maintenance")
        .args(args)
        .env_remove("CANDOR__SERVER__ADMIN_TOKEN")
        .env_remove("CANDOR__SERVER__ADMIN_LISTEN")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_switches_maintenance_with_the_token() {
    let up = upstream(|_req| async { response(200, "upstream") }).await;
    let config = config_toml(&up.url(), &format!("[server]\nadmin_token = \"{TOKEN}\"\n"));
    let candor = Candor::start(config).await;
    let admin = candor.admin.to_string();

    let a = admin.clone();
    let (code, _, stderr) = tokio::task::spawn_blocking(move || cli(&["on", "--admin", &a], &[]))
        .await
        .unwrap();
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("answered 401 Unauthorized"), "{stderr}");
    assert!(stderr.contains("needs the admin token"), "{stderr}");

    let a = admin.clone();
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
        cli(
            &[
                "on",
                "--admin",
                &a,
                "--retry-after",
                "2m",
                "--detail",
                "Moving racks.",
            ],
            &[("CANDOR__SERVER__ADMIN_TOKEN", TOKEN)],
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}");
    let printed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(printed["enabled"], true);
    assert_eq!(printed["retry_after_seconds"], 120);
    assert_eq!(printed["detail"], "Moving racks.");
    let (status, headers, _) = get(candor.addr, "/x").await;
    assert_eq!(
        (status.as_u16(), headers["retry-after"].to_str().unwrap()),
        (503, "120")
    );

    let a = admin.clone();
    let (code, stdout, stderr) =
        tokio::task::spawn_blocking(move || cli(&["off", "--admin", &a, "--token", TOKEN], &[]))
            .await
            .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("\"enabled\": false"), "{stdout}");
    assert_eq!(get(candor.addr, "/x").await.0, 200);

    // A bad value is the server's message, exit 1.
    let (code, _, stderr) = tokio::task::spawn_blocking(move || {
        cli(
            &[
                "on",
                "--admin",
                &admin,
                "--token",
                TOKEN,
                "--retry-after",
                "soon",
            ],
            &[],
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 1);
    assert!(
        stderr.contains("400 Bad Request: retry_after \"soon\": invalid duration"),
        "{stderr}"
    );
}

#[test]
fn check_locates_maintenance_mistakes_and_never_shows_the_token() {
    let dir = temp_dir("maintenance-check");
    let path = dir.join("candor.toml");
    std::fs::write(
        &path,
        "[upstream]\nurl = \"http://127.0.0.1:3000\"\n\n[server]\nadmin_token = \"short-secret\"\n\n\
         [maintenance]\nretry_after = \"soon\"\ndetail = \"\"\nexcept_paths = ['^/ok$', '([a-z']\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .env_remove("CANDOR__SERVER__ADMIN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for want in [
        "candor.toml:5: server.admin_token: too short (at least 16 characters",
        "candor.toml:8: maintenance.retry_after = \"soon\": invalid duration",
        "candor.toml:9: maintenance.detail = \"\": must not be empty",
        "candor.toml:10: maintenance.except_paths[1] = \"([a-z\": invalid regex: unclosed character class",
    ] {
        assert!(stderr.contains(want), "{want:?} missing:\n{stderr}");
    }
    assert!(!stderr.contains("short-secret"), "{stderr}");

    // From the environment the value is the variable's, and still not shown.
    std::fs::write(&path, "[upstream]\nurl = \"http://127.0.0.1:3000\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .env(
            "CANDOR__SERVER__ADMIN_TOKEN",
            "has space in it, long enough",
        )
        .env("CANDOR__MAINTENANCE__ENABLED", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("CANDOR__SERVER__ADMIN_TOKEN = \"<redacted>\": server.admin_token: must be visible ASCII"),
        "{stderr}"
    );
    assert!(!stderr.contains("has space"), "{stderr}");
}
