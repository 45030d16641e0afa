//! Hot reload: the config file's directory is watched (editors that save by rename, Kubernetes
//! ConfigMap `..data` symlink swaps), invalid configs are refused, requests in flight keep their
//! config, and nothing is dropped while reloading under load.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::*;

/// A config whose only rule rewrites every 200 to `status`.
fn config_text(upstream: &str, status: u16) -> String {
    format!(
        "[server]\nworkers = 2\n\n[upstream]\nurl = \"{upstream}\"\n\n\
         [[rules]]\nname = \"to-{status}\"\nwhen.status = [200]\nthen.status = {status}\n"
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

/// Polls `GET /` until it answers `want`, with a deadline: the reload is asynchronous.
async fn until_status(candor: &Candor, want: u16) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if get(candor.addr, "/").await.0 == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "candor never answered {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_editor_saving_by_rename_reloads_the_rules() {
    let up = upstream(|_req| async { response(200, "ok") }).await;
    let dir = temp_dir("reload-rename");
    let path = dir.join("candor.toml");
    std::fs::write(&path, config_text(&up.url(), 409)).unwrap();
    let candor = start(&path).await;
    assert_eq!(get(candor.addr, "/").await.0, 409);

    save_by_rename(&path, &config_text(&up.url(), 410));
    until_status(&candor, 410).await;
    let metrics = candor.metrics().await;
    assert!(
        metrics.contains(r#"candor_config_reloads_total{result="success"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("candor_config_last_reload_successful 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_kubernetes_configmap_symlink_swap_reloads_the_rules() {
    // The kubelet's layout: candor.toml -> ..data/candor.toml, ..data -> ..<timestamp>/; an
    // update writes a new timestamped directory and renames a new `..data` symlink over the old.
    let up = upstream(|_req| async { response(200, "ok") }).await;
    let dir = temp_dir("reload-configmap");
    let first = dir.join("..2026_11_26_01");
    std::fs::create_dir(&first).unwrap();
    std::fs::write(first.join("candor.toml"), config_text(&up.url(), 409)).unwrap();
    std::os::unix::fs::symlink("..2026_11_26_01", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/candor.toml", dir.join("candor.toml")).unwrap();
    let path = dir.join("candor.toml");
    let candor = start(&path).await;
    assert_eq!(get(candor.addr, "/").await.0, 409);

    let second = dir.join("..2026_11_26_02");
    std::fs::create_dir(&second).unwrap();
    std::fs::write(second.join("candor.toml"), config_text(&up.url(), 410)).unwrap();
    std::os::unix::fs::symlink("..2026_11_26_02", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(&first).unwrap();
    until_status(&candor, 410).await;
}

#[tokio::test]
async fn an_invalid_config_is_refused_and_the_running_one_keeps_serving() {
    let up = upstream(|_req| async { response(200, "ok") }).await;
    let dir = temp_dir("reload-invalid");
    let path = dir.join("candor.toml");
    std::fs::write(&path, config_text(&up.url(), 409)).unwrap();
    let candor = start(&path).await;

    let broken = config_text(&up.url(), 409).replace("then.status = 409", "then.status = 4099");
    save_by_rename(&path, &broken);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let metrics = candor.metrics().await;
        if metrics.contains(r#"candor_config_reloads_total{result="error"} 1"#) {
            assert!(
                metrics.contains("candor_config_last_reload_successful 0"),
                "{metrics}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(candor.admin, "/readyz").await.0, 200);
    assert_eq!(
        get(candor.addr, "/").await.0,
        409,
        "the old rules still apply"
    );

    // A fixed config is taken again and the gauge recovers.
    save_by_rename(&path, &config_text(&up.url(), 410));
    until_status(&candor, 410).await;
    assert!(candor
        .metrics()
        .await
        .contains("candor_config_last_reload_successful 1"));
}

#[tokio::test]
async fn a_request_in_flight_finishes_under_the_config_it_started_with() {
    let release = Arc::new(tokio::sync::Notify::new());
    let arrived = Arc::new(tokio::sync::Notify::new());
    let (r, a) = (release.clone(), arrived.clone());
    let up = upstream(move |req: http::Request<hyper::body::Incoming>| {
        let (release, arrived) = (r.clone(), a.clone());
        async move {
            if req.uri().path() == "/slow" {
                arrived.notify_one();
                release.notified().await;
            }
            response(200, "ok")
        }
    })
    .await;
    let dir = temp_dir("reload-inflight");
    let path = dir.join("candor.toml");
    std::fs::write(&path, config_text(&up.url(), 409)).unwrap();
    let candor = start(&path).await;
    let addr = candor.addr;
    let slow = tokio::spawn(async move { get(addr, "/slow").await });
    arrived.notified().await;

    save_by_rename(&path, &config_text(&up.url(), 410));
    until_status(&candor, 410).await;
    release.notify_one();
    let (status, headers, _) = slow.await.unwrap();
    assert_eq!(status, 409, "the request in flight kept its rules");
    assert_eq!(headers["x-candor-rule"], "to-409");
}

#[tokio::test]
async fn reloading_under_load_drops_nothing() {
    let up = upstream(|_req| async { response(200, "ok") }).await;
    let dir = temp_dir("reload-load");
    let path = dir.join("candor.toml");
    std::fs::write(&path, config_text(&up.url(), 409)).unwrap();
    let candor = start(&path).await;

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (stop, done, addr) = (stop.clone(), done.clone(), candor.addr);
        clients.push(tokio::spawn(async move {
            // One keep-alive connection per client, so reloads happen under open connections.
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let req = http::Request::get("/")
                    .header("host", "a")
                    .body(full(""))
                    .unwrap();
                let response = sender.send_request(req).await.expect("no request may fail");
                seen.push(response.status().as_u16());
                let _ = collect(response).await;
                done.fetch_add(1, Ordering::SeqCst);
            }
            seen
        }));
    }
    // Five reloads, each waited for, while the clients run.
    for status in [410, 409, 410, 409, 410] {
        save_by_rename(&path, &config_text(&up.url(), status));
        until_status(&candor, status).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for client in clients {
        let seen = client.await.unwrap();
        assert!(seen.iter().all(|s| *s == 409 || *s == 410), "{seen:?}");
        total += seen.len();
    }
    assert!(total > 100, "only {total} requests ran during the reloads");
    assert_eq!(total, done.load(Ordering::SeqCst));
    assert!(candor
        .metrics()
        .await
        .contains(r#"candor_config_reloads_total{result="success"} 5"#));
}

#[tokio::test]
async fn a_changed_listen_address_moves_the_listener() {
    let up = upstream(|_req| async { response(200, "ok") }).await;
    let dir = temp_dir("reload-listen");
    let path = dir.join("candor.toml");
    let with_listen = |port: u16, status: u16| {
        config_text(&up.url(), status).replace(
            "[server]\n",
            &format!("[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:0\"\n"),
        )
    };
    std::fs::write(&path, with_listen(0, 409)).unwrap();
    let candor = start(&path).await;
    let new_port = dead_addr().port();
    save_by_rename(&path, &with_listen(new_port, 410));
    let new_addr: std::net::SocketAddr = format!("127.0.0.1:{new_port}").parse().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if tokio::net::TcpStream::connect(new_addr).await.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never moved");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(new_addr, "/").await.0, 410);
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(candor.addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "old listener still open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_status_page_shows_the_reloaded_config() {
    let up = upstream(|_req| async { response(200, "ok") }).await;
    let dir = temp_dir("reload-status");
    let path = dir.join("candor.toml");
    std::fs::write(&path, config_text(&up.url(), 409)).unwrap();
    let candor = start(&path).await;
    let status =
        |body: bytes::Bytes| -> serde_json::Value { serde_json::from_slice(&body).unwrap() };
    let before = status(get(candor.admin, "/status.json").await.2);
    save_by_rename(&path, &config_text(&up.url(), 410));
    until_status(&candor, 410).await;
    let after = status(get(candor.admin, "/status.json").await.2);
    let names = |doc: &serde_json::Value| -> Vec<String> {
        doc["config"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert!(names(&before).contains(&"to-409".to_owned()), "{before}");
    assert!(names(&after).contains(&"to-410".to_owned()), "{after}");
    // RFC 3339 in UTC with whole seconds: later or equal, never earlier.
    let at = |doc: &serde_json::Value| doc["config"]["loaded_at"].as_str().unwrap().to_owned();
    assert!(at(&after) >= at(&before), "{before} {after}");
}
