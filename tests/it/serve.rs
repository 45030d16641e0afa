//! `candor::serve` runs the whole proxy on the test's own runtime, so a timing test can pause
//! time: a 30-second upstream timeout is tested without waiting 30 seconds.

use std::time::Duration;

use candor::config::from_toml;
use candor::Listeners;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test(start_paused = true)]
async fn an_upstream_that_never_answers_gets_504_after_the_upstream_timeout_in_paused_time() {
    // An upstream that accepts connections and never answers on them.
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = upstream.accept().await {
            held.push(stream);
        }
    });
    // The connect timeout is longer than the response timeout, so whichever way the clock
    // jumps, the response timeout is what ends the wait.
    let config = from_toml(
        &format!(
            "[upstream]\nurl = \"http://{upstream_addr}\"\ntimeout = \"30s\"\n\
             connect_timeout = \"60s\"\n"
        ),
        "serve-test",
        Default::default(),
    )
    .unwrap();
    let listeners = Listeners::bind_to(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let addr = listeners.proxy_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(candor::serve(
        config,
        listeners,
        async {
            let _ = stopped.await;
        },
        None,
    ));

    let start = tokio::time::Instant::now();
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut wire = Vec::new();
    client.read_to_end(&mut wire).await.unwrap();
    let waited = start.elapsed();
    let wire = String::from_utf8_lossy(&wire);
    assert!(wire.starts_with("HTTP/1.1 504 "), "{wire}");
    assert!(
        wire.contains("proxy-status: candor; error=http_response_timeout"),
        "{wire}"
    );
    assert!(
        waited >= Duration::from_secs(30),
        "the paused clock moved {waited:?}: the timeout cannot have fired"
    );

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
