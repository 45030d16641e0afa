//! TLS on both sides, with certificates made here (rcgen): clients over TLS (curl with h2 and
//! HTTP/1.1, rustls clients under keep-alive load) to a plaintext upstream; a real nginx with
//! `ssl` as the upstream, with a client certificate, and failing the ways RFC 9209 names
//! (expired, wrong name, untrusted CA, an alert, a plaintext port); a certificate rotated by a
//! Kubernetes-style `..data` swap under load, and a mismatched pair refused on reload.
//!
//! curl and nginx are installed by `.ci/run`; without them the tests that need them say so and
//! return.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::harness::*;

/// The name candor's test certificates are for (curl reaches it with `--resolve`).
const CANDOR_NAME: &str = "candor.test";
/// The name nginx's test certificates are for.
const UPSTREAM_NAME: &str = "upstream.test";

/// A certificate authority that signs leaves.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf certificate and its key, as PEM.
struct Leaf {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf_with(&self, name: &str, usage: ExtendedKeyUsagePurpose, expired: bool) -> Leaf {
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn server(&self, name: &str) -> Leaf {
        self.leaf_with(name, ExtendedKeyUsagePurpose::ServerAuth, false)
    }

    fn client(&self, name: &str) -> Leaf {
        self.leaf_with(name, ExtendedKeyUsagePurpose::ClientAuth, false)
    }
}

/// Writes `text` to `dir/name` and returns the path.
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A config for `upstream` from TOML text, loaded as from a file in `dir` (relative TLS paths
/// resolve there).
fn config_in(dir: &Path, upstream: &str, text: &str) -> candor::config::Config {
    let text = format!("[upstream]\nurl = \"{upstream}\"\n{text}");
    let path = write(dir, "candor.toml", &text);
    let mut config =
        candor::config::load_with_env(&path, HashMap::new()).unwrap_or_else(|e| panic!("{e}"));
    config.server.workers = 1;
    config
}

/// `[server.tls]` with `cert.pem` and `key.pem` written in `dir`.
fn server_tls(dir: &Path, leaf: &Leaf) -> String {
    write(dir, "cert.pem", &leaf.cert);
    write(dir, "key.pem", &leaf.key);
    "[server.tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n".to_owned()
}

/// A program on the PATH (or in /usr/sbin, where Debian puts nginx).
fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// curl, or `None` after saying why the test does not run.
fn curl() -> Option<PathBuf> {
    let found = program("curl");
    if found.is_none() {
        eprintln!("skipped: curl is not installed (.ci/run installs it)");
    }
    found
}

/// Runs curl against candor's TLS listener; returns (exit code, stdout).
async fn run_curl(curl: &Path, candor: SocketAddr, args: &[&str]) -> (i32, String) {
    let resolve = format!("{CANDOR_NAME}:{}:127.0.0.1", candor.port());
    let url = format!("https://{CANDOR_NAME}:{}/", candor.port());
    let output = tokio::process::Command::new(curl)
        .args(["--silent", "--show-error", "--max-time", "10", "--resolve"])
        .arg(&resolve)
        .args(args)
        .arg(&url)
        .output()
        .await
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// A rustls client configuration trusting `ca`.
fn client_config(ca: &Ca) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// An HTTP/1.1 connection to candor over TLS, and the certificate candor presented on it.
async fn tls_connection(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> (SendRequest<Body>, CertificateDer<'static>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(config.clone())
        .connect(ServerName::try_from(CANDOR_NAME).unwrap(), tcp)
        .await
        .unwrap();
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    (sender, presented)
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

async fn get_on(sender: &mut SendRequest<Body>) -> u16 {
    let req = Request::get("/")
        .header("host", CANDOR_NAME)
        .body(full(""))
        .unwrap();
    let response = sender.send_request(req).await.expect("no request may fail");
    let status = response.status().as_u16();
    let _ = collect(response).await;
    status
}

#[tokio::test]
async fn curl_reaches_a_plaintext_upstream_over_h2_and_http1_with_x_forwarded_proto_https() {
    let Some(curl) = curl() else { return };
    let up = upstream(|_req| async { response(200, "plain upstream") }).await;
    let dir = temp_dir("tls-curl");
    let ca = Ca::new("candor test CA");
    let tls = server_tls(&dir, &ca.server(CANDOR_NAME));
    let candor = Candor::start(config_in(&dir, &up.url(), &tls)).await;
    let ca_file = write(&dir, "ca.pem", &ca.pem);
    let ca_arg = ca_file.to_str().unwrap();
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let (code, out) = run_curl(
            &curl,
            candor.addr,
            &[flag, "--cacert", ca_arg, "--write-out", " %{http_version}"],
        )
        .await;
        assert_eq!(code, 0, "curl {flag}");
        assert_eq!(out, format!("plain upstream {version}"), "curl {flag}");
    }
    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    for request in seen {
        assert_eq!(request.headers["x-forwarded-proto"], "https");
    }
    // Plaintext on the TLS port is not HTTP to candor: no answer, the connection closes.
    let (text, closed) = raw(candor.addr, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n", WAIT).await;
    assert!(closed && !text.starts_with("HTTP/1.1 200"), "{text:?}");
}

#[tokio::test]
async fn client_ca_requires_a_client_certificate_it_signed() {
    let Some(curl) = curl() else { return };
    let up = upstream(|_req| async { response(200, "mtls ok") }).await;
    let dir = temp_dir("tls-client-ca");
    let ca = Ca::new("candor test CA");
    let clients = Ca::new("clients CA");
    let strangers = Ca::new("another CA");
    write(&dir, "clients.pem", &clients.pem);
    let tls = server_tls(&dir, &ca.server(CANDOR_NAME)) + "client_ca = \"clients.pem\"\n";
    let candor = Candor::start(config_in(&dir, &up.url(), &tls)).await;
    let ca_file = write(&dir, "ca.pem", &ca.pem);
    let ca_arg = ca_file.to_str().unwrap();
    let good = clients.client("client.test");
    let bad = strangers.client("client.test");
    let good_cert = write(&dir, "good.crt", &good.cert);
    let good_key = write(&dir, "good.key", &good.key);
    let bad_cert = write(&dir, "bad.crt", &bad.cert);
    let bad_key = write(&dir, "bad.key", &bad.key);

    let (code, out) = run_curl(
        &curl,
        candor.addr,
        &[
            "--cacert",
            ca_arg,
            "--cert",
            good_cert.to_str().unwrap(),
            "--key",
            good_key.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "mtls ok"));
    let (code, _) = run_curl(&curl, candor.addr, &["--cacert", ca_arg]).await;
    assert_ne!(code, 0, "a client without a certificate was served");
    let (code, _) = run_curl(
        &curl,
        candor.addr,
        &[
            "--cacert",
            ca_arg,
            "--cert",
            bad_cert.to_str().unwrap(),
            "--key",
            bad_key.to_str().unwrap(),
        ],
    )
    .await;
    assert_ne!(code, 0, "a client certificate from another CA was accepted");
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn a_client_that_never_completes_the_handshake_is_closed_after_header_read_timeout() {
    let up = upstream(|_req| async { response(200, "ok") }).await;
    let dir = temp_dir("tls-handshake-timeout");
    let ca = Ca::new("candor test CA");
    let tls = server_tls(&dir, &ca.server(CANDOR_NAME));
    let text = format!("[server]\nheader_read_timeout = \"300ms\"\n{tls}");
    let candor = Candor::start(config_in(&dir, &up.url(), &text)).await;
    let mut stream = TcpStream::connect(candor.addr).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 16];
    // candor closes the connection itself; the bound only keeps a broken build from hanging.
    let read = tokio::time::timeout(WAIT, stream.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the silent client was not closed: {read:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
}

/// A Kubernetes Secret volume: `name` → `..data/name` → `..<version>/name`.
struct SecretVolume {
    dir: PathBuf,
    version: usize,
}

impl SecretVolume {
    fn new(dir: PathBuf, leaf: &Leaf) -> SecretVolume {
        std::fs::create_dir_all(&dir).unwrap();
        let mut volume = SecretVolume { dir, version: 0 };
        volume.publish(leaf);
        for name in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{name}"), volume.dir.join(name)).unwrap();
        }
        volume
    }

    /// The kubelet's atomic update: a new version directory, then `..data` swapped by rename.
    fn publish(&mut self, leaf: &Leaf) {
        self.version += 1;
        let version = format!("..v{}", self.version);
        let versioned = self.dir.join(&version);
        std::fs::create_dir_all(&versioned).unwrap();
        std::fs::write(versioned.join("tls.crt"), &leaf.cert).unwrap();
        std::fs::write(versioned.join("tls.key"), &leaf.key).unwrap();
        let tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
    }

    fn toml(&self) -> String {
        format!(
            "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            self.dir.join("tls.crt").display(),
            self.dir.join("tls.key").display()
        )
    }
}

async fn start_reloading(path: &Path) -> Candor {
    let mut config = candor::config::load_with_env(path, HashMap::new()).unwrap();
    config.server.workers = 2;
    let reload = candor::Reload {
        path: path.to_path_buf(),
        env: Some(HashMap::new()),
        watch: true,
        sighup: false,
    };
    Candor::start_with(config, Some(reload)).await
}

/// Waits until candor's metrics contain `line`.
async fn until_metric(candor: &Candor, line: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !candor.metrics().await.contains(line) {
        assert!(tokio::time::Instant::now() < deadline, "never saw {line}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_certificate_rotated_under_keep_alive_load_fails_no_request() {
    let up = upstream(|_req| async { response(200, "ok") }).await;
    let dir = temp_dir("tls-rotate");
    let ca = Ca::new("candor test CA");
    let first = ca.server(CANDOR_NAME);
    let second = ca.server(CANDOR_NAME);
    let mut volume = SecretVolume::new(dir.join("secret"), &first);
    let path = write(
        &dir,
        "candor.toml",
        &format!("[upstream]\nurl = \"{}\"\n{}", up.url(), volume.toml()),
    );
    let candor = start_reloading(&path).await;
    let config = client_config(&ca);

    // Keep-alive clients opened before the rotation, and one that opens a new connection for
    // every request, all running through it.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut kept = Vec::new();
    for _ in 0..4 {
        let (mut sender, presented) = tls_connection(candor.addr, &config).await;
        assert_eq!(presented, der(&first.cert));
        let (stop, done) = (stop.clone(), done.clone());
        kept.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                statuses.push(get_on(&mut sender).await);
                done.fetch_add(1, Ordering::SeqCst);
            }
            // The same connection still serves after the rotation.
            statuses.push(get_on(&mut sender).await);
            statuses
        }));
    }
    let fresh = {
        let (stop, done, config, addr) = (stop.clone(), done.clone(), config.clone(), candor.addr);
        let second = der(&second.cert);
        tokio::spawn(async move {
            let mut rotated = 0;
            while !stop.load(Ordering::SeqCst) {
                let (mut sender, presented) = tls_connection(addr, &config).await;
                assert_eq!(get_on(&mut sender).await, 200);
                done.fetch_add(1, Ordering::SeqCst);
                if presented == second {
                    rotated += 1;
                }
            }
            rotated
        })
    };
    while done.load(Ordering::SeqCst) < 50 {
        tokio::task::yield_now().await;
    }
    volume.publish(&second);
    until_metric(
        &candor,
        r#"candor_config_reloads_total{result="success"} 1"#,
    )
    .await;
    // A handshake after the reload sees the new certificate.
    let (mut sender, presented) = tls_connection(candor.addr, &config).await;
    assert_eq!(presented, der(&second.cert));
    assert_eq!(get_on(&mut sender).await, 200);
    let before = done.load(Ordering::SeqCst);
    while done.load(Ordering::SeqCst) < before + 50 {
        tokio::task::yield_now().await;
    }
    stop.store(true, Ordering::SeqCst);
    for client in kept {
        let statuses = client.await.unwrap();
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }
    assert!(
        fresh.await.unwrap() > 0,
        "no fresh connection saw the new certificate"
    );
    assert!(done.load(Ordering::SeqCst) > 100);
}

#[tokio::test]
async fn a_mismatched_pair_is_refused_on_reload_and_the_old_pair_keeps_serving() {
    let up = upstream(|_req| async { response(200, "ok") }).await;
    let dir = temp_dir("tls-mismatch");
    let ca = Ca::new("candor test CA");
    let first = ca.server(CANDOR_NAME);
    let mut volume = SecretVolume::new(dir.join("secret"), &first);
    let path = write(
        &dir,
        "candor.toml",
        &format!("[upstream]\nurl = \"{}\"\n{}", up.url(), volume.toml()),
    );
    let candor = start_reloading(&path).await;
    let config = client_config(&ca);
    let other = ca.server(CANDOR_NAME);
    volume.publish(&Leaf {
        cert: other.cert,
        key: first.key.clone(),
    });
    until_metric(&candor, r#"candor_config_reloads_total{result="error"} 1"#).await;
    assert!(candor
        .metrics()
        .await
        .contains("candor_config_last_reload_successful 0"));
    let (mut sender, presented) = tls_connection(candor.addr, &config).await;
    assert_eq!(presented, der(&first.cert));
    assert_eq!(get_on(&mut sender).await, 200);

    // `check` refuses the same pair, naming the key.
    let err = candor::config::load_with_env(&path, HashMap::new())
        .expect_err("a mismatched pair was accepted")
        .to_string();
    assert!(
        err.contains("server.tls.key") && err.contains("does not match"),
        "{err}"
    );
}

/// nginx as an `ssl` upstream, in its own directory with its own config, stopped when dropped.
struct Nginx {
    child: Child,
    dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port for a peer that binds it itself.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Nginx {
    /// Starts nginx with `servers` (server blocks) and waits until each of `ports` accepts.
    /// `None` (after saying so) when nginx is not installed.
    async fn start(dir: &Path, servers: &str, ports: &[u16]) -> Option<Nginx> {
        let Some(binary) = program("nginx") else {
            eprintln!("skipped: nginx is not installed (.ci/run installs it)");
            return None;
        };
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 128; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
             keepalive_requests 10000;\n{servers}\n}}\n"
        );
        let conf = write(dir, "nginx.conf", &conf);
        let mut child = Command::new(binary)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        for port in ports {
            while TcpStream::connect(("127.0.0.1", *port)).await.is_err() {
                let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                assert!(child.try_wait().unwrap().is_none(), "nginx exited: {log}");
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "nginx never listened: {log}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Some(Nginx {
            child,
            dir: dir.to_owned(),
        })
    }
}

/// What the upstream tests share: a CA, nginx's files, candor's client pair.
struct UpstreamPki {
    ca: Ca,
    dir: PathBuf,
}

impl UpstreamPki {
    fn new(name: &str) -> UpstreamPki {
        let dir = temp_dir(&format!("tls-{name}"));
        let ca = Ca::new("upstream test CA");
        write(&dir, "ca.pem", &ca.pem);
        let good = ca.server(UPSTREAM_NAME);
        write(&dir, "good.crt", &good.cert);
        write(&dir, "good.key", &good.key);
        UpstreamPki { ca, dir }
    }

    /// A server block on `port` with `extra` directives; the good certificate unless `extra`
    /// names another.
    fn server(&self, port: u16, extra: &str, answer: &str) -> String {
        let d = self.dir.display();
        let cert = if extra.contains("ssl_certificate ") {
            String::new()
        } else {
            format!("ssl_certificate {d}/good.crt;\nssl_certificate_key {d}/good.key;\n")
        };
        format!(
            "server {{\nlisten 127.0.0.1:{port} ssl;\n{cert}{extra}\n\
             location / {{\nadd_header x-connection $connection always;\n\
             add_header x-seen-proto $http_x_forwarded_proto always;\n\
             add_header x-client-verify $ssl_client_verify always;\n\
             return 200 \"{answer}\";\n}}\n}}\n"
        )
    }

    /// candor in front of `https://127.0.0.1:port` with `extra` `[upstream]` keys.
    async fn candor(&self, port: u16, extra: &str) -> Candor {
        let text = format!("ca = \"ca.pem\"\nserver_name = \"{UPSTREAM_NAME}\"\n{extra}");
        Candor::start(config_in(
            &self.dir,
            &format!("https://127.0.0.1:{port}"),
            &text,
        ))
        .await
    }
}

#[tokio::test]
async fn an_nginx_ssl_upstream_is_verified_and_its_connections_pooled() {
    let pki = UpstreamPki::new("nginx-ok");
    let port = free_port();
    let Some(_nginx) = Nginx::start(&pki.dir, &pki.server(port, "", "tls upstream"), &[port]).await
    else {
        return;
    };
    let candor = pki.candor(port, "").await;
    let mut connections = Vec::new();
    for _ in 0..3 {
        let (status, headers, body) = get(candor.addr, "/").await;
        assert_eq!((status.as_u16(), &body[..]), (200, &b"tls upstream"[..]));
        assert_eq!(headers["x-seen-proto"], "http");
        connections.push(headers["x-connection"].to_str().unwrap().to_owned());
    }
    // Three client connections, one after the other: one pooled TLS connection upstream.
    assert!(
        connections.iter().all(|c| *c == connections[0]),
        "{connections:?}"
    );
    let _ = &_nginx.dir;
}

#[tokio::test]
async fn candor_presents_its_client_certificate_to_an_nginx_that_verifies_it() {
    let pki = UpstreamPki::new("nginx-mtls");
    let clients = Ca::new("nginx clients CA");
    write(&pki.dir, "clients.pem", &clients.pem);
    let pair = clients.client("candor.client");
    write(&pki.dir, "client.crt", &pair.cert);
    write(&pki.dir, "client.key", &pair.key);
    let port = free_port();
    let verify = format!(
        "ssl_verify_client on;\nssl_client_certificate {}/clients.pem;",
        pki.dir.display()
    );
    let Some(_nginx) = Nginx::start(
        &pki.dir,
        &pki.server(port, &verify, "mtls upstream"),
        &[port],
    )
    .await
    else {
        return;
    };
    let with = pki
        .candor(
            port,
            "client_cert = \"client.crt\"\nclient_key = \"client.key\"\n",
        )
        .await;
    let (status, headers, body) = get(with.addr, "/").await;
    assert_eq!((status.as_u16(), &body[..]), (200, &b"mtls upstream"[..]));
    assert_eq!(headers["x-client-verify"], "SUCCESS");
    // Without the pair nginx answers 400 itself (a response, passed on as the upstream's).
    let without = pki.candor(port, "").await;
    let (status, _, _) = get(without.addr, "/").await;
    assert_eq!(status.as_u16(), 400);
}

#[tokio::test]
async fn upstream_tls_failures_are_502_with_their_rfc_9209_types() {
    let pki = UpstreamPki::new("nginx-failures");
    let expired = pki
        .ca
        .leaf_with(UPSTREAM_NAME, ExtendedKeyUsagePurpose::ServerAuth, true);
    write(&pki.dir, "expired.crt", &expired.cert);
    write(&pki.dir, "expired.key", &expired.key);
    let d = pki.dir.display();
    let (good, old, no_shared_cipher) = (free_port(), free_port(), free_port());
    let servers = pki.server(good, "", "ok")
        + &pki.server(
            old,
            &format!("ssl_certificate {d}/expired.crt;\nssl_certificate_key {d}/expired.key;"),
            "ok",
        )
        // TLS 1.2 with only a static-RSA suite: rustls offers none of it, nginx alerts.
        + &pki.server(
            no_shared_cipher,
            "ssl_protocols TLSv1.2;\nssl_ciphers AES256-GCM-SHA384;",
            "ok",
        );
    let Some(_nginx) = Nginx::start(&pki.dir, &servers, &[good, old, no_shared_cipher]).await
    else {
        return;
    };
    let strangers = Ca::new("a CA nobody trusts");
    write(&pki.dir, "strangers.pem", &strangers.pem);
    let plain = upstream(|_req| async { response(200, "plaintext") }).await;

    let mut cases: Vec<(&str, Candor, &str)> = vec![
        (
            "expired",
            pki.candor(old, "").await,
            "tls_certificate_error",
        ),
        (
            "wrong name",
            Candor::start(config_in(
                &pki.dir,
                &format!("https://127.0.0.1:{good}"),
                "ca = \"ca.pem\"\nserver_name = \"other.test\"\n",
            ))
            .await,
            "tls_certificate_error",
        ),
        (
            "untrusted CA",
            Candor::start(config_in(
                &pki.dir,
                &format!("https://127.0.0.1:{good}"),
                &format!("ca = \"strangers.pem\"\nserver_name = \"{UPSTREAM_NAME}\"\n"),
            ))
            .await,
            "tls_certificate_error",
        ),
        (
            "no shared cipher",
            pki.candor(no_shared_cipher, "").await,
            "tls_alert_received",
        ),
        (
            "plaintext port",
            Candor::start(config_in(
                &pki.dir,
                &format!("https://{}", plain.addr),
                "ca = \"ca.pem\"\n",
            ))
            .await,
            "tls_protocol_error",
        ),
    ];
    for (case, candor, error) in cases.drain(..) {
        let (status, headers, body) = get(candor.addr, "/").await;
        assert_eq!(status.as_u16(), 502, "{case}");
        assert_eq!(
            headers["proxy-status"],
            format!("candor; error={error}"),
            "{case}"
        );
        assert_eq!(
            headers["content-type"], "application/problem+json",
            "{case}"
        );
        assert_eq!(problem(&body)["status"], 502, "{case}");
        assert!(
            candor
                .metrics()
                .await
                .contains(r#"candor_upstream_failures_total{kind="tls"} 1"#),
            "{case}"
        );
    }
    // The good server really was fine: verification, not nginx, failed above.
    let candor = pki.candor(good, "").await;
    assert_eq!(get(candor.addr, "/").await.0, 200);
}

#[test]
fn upstream_tls_keys_are_refused_on_a_plaintext_upstream_and_the_pair_goes_together() {
    let dir = temp_dir("tls-keys");
    for (text, expected) in [
        ("ca = \"x.pem\"\n", "upstream.ca"),
        ("server_name = \"a.test\"\n", "upstream.server_name"),
    ] {
        let err = candor::config::from_toml(
            &format!("[upstream]\nurl = \"http://127.0.0.1:1\"\n{text}"),
            dir.join("c.toml").to_str().unwrap(),
            HashMap::new(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains(expected) && err.contains("only for an https:// upstream.url"),
            "{err}"
        );
    }
    let err = candor::config::from_toml(
        "[upstream]\nurl = \"https://127.0.0.1:1\"\nclient_cert = \"c.pem\"\n",
        dir.join("c.toml").to_str().unwrap(),
        HashMap::new(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("upstream.client_key: missing"), "{err}");
    let err = candor::config::from_toml(
        "[upstream]\nurl = \"https://127.0.0.1:1\"\nca = \"nowhere.pem\"\n",
        dir.join("c.toml").to_str().unwrap(),
        HashMap::new(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("upstream.ca") && err.contains("cannot read") && err.contains("nowhere.pem"),
        "{err}"
    );
}

/// A rustls upstream on 127.0.0.1:0 that requires a client certificate from `clients`: over
/// TLS 1.3 it judges the certificate after the handshake, and refuses with an alert.
async fn rustls_upstream_requiring_client_certificates(pki: &UpstreamPki, clients: &Ca) -> u16 {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(&clients.pem)).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    let leaf = pki.ca.server(UPSTREAM_NAME);
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![der(&leaf.cert)], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            // Every handshake fails here: the client sent no certificate.
            let _ = acceptor.accept(stream).await;
        }
    });
    port
}

#[tokio::test]
async fn a_client_certificate_refused_after_a_tls_13_handshake_is_tls_alert_received() {
    let pki = UpstreamPki::new("rustls-alert");
    let clients = Ca::new("upstream clients CA");
    let port = rustls_upstream_requiring_client_certificates(&pki, &clients).await;
    let candor = pki.candor(port, "").await;
    let (status, headers, _) = get(candor.addr, "/").await;
    assert_eq!(status.as_u16(), 502);
    assert_eq!(headers["proxy-status"], "candor; error=tls_alert_received");
    assert!(candor
        .metrics()
        .await
        .contains(r#"candor_upstream_failures_total{kind="tls"} 1"#));
}
