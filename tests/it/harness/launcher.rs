//! candor under test: in-process (`Candor`: `candor::run_with` on 127.0.0.1:0, ready once its
//! admin `/readyz` says so) or as the built binary (`CandorProcess`: `candor run --config`, its
//! addresses read from the `ready` log line, its log kept in a file, its memory and descriptors
//! read from /proc); and the configs the tests start it with.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{full, get};

/// A candor instance serving on 127.0.0.1:0.
pub struct Candor {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), candor::RunError>>>,
}

impl Candor {
    pub async fn start(config: candor::config::Config) -> Candor {
        Candor::start_with(config, None).await
    }

    /// Starts candor with hot reload from `reload`.
    pub async fn start_with(
        config: candor::config::Config,
        reload: Option<candor::Reload>,
    ) -> Candor {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let listeners = candor::Listeners::bind_to(any, any).unwrap();
        let addr = listeners.proxy_addr().unwrap();
        let admin = listeners.admin_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(candor::run_with(
            config,
            listeners,
            async move {
                let _ = stopped.await;
            },
            reload,
        ));
        // Ready means the workers accept and hot reload watches: wait for it, with a deadline.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(stream) = TcpStream::connect(admin).await {
                let req = Request::get("/readyz")
                    .header("host", "admin")
                    .body(full(""))
                    .unwrap();
                if let Ok((mut sender, conn)) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
                {
                    tokio::spawn(conn);
                    if let Ok(response) = sender.send_request(req).await {
                        if response.status() == StatusCode::OK {
                            break;
                        }
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline && !task.is_finished(),
                "candor did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Candor {
            addr,
            admin,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Triggers graceful shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts down and returns what `run` returned.
    pub async fn stop(mut self) -> Result<(), candor::RunError> {
        self.begin_shutdown();
        self.task.take().unwrap().await.unwrap()
    }

    pub async fn metrics(&self) -> String {
        let (status, _, body) = get(self.admin, "/metrics").await;
        assert_eq!(status, 200);
        String::from_utf8(body.to_vec()).unwrap()
    }
}

impl Drop for Candor {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

/// A config for `upstream` with short, test-friendly timeouts and one worker.
pub fn config(upstream: &str) -> candor::config::Config {
    let mut config = candor::config::Config::for_upstream(upstream).unwrap();
    config.server.workers = 1;
    config.server.drain_timeout = Duration::from_secs(5);
    config
}

/// A config from TOML text with `upstream.url` filled in.
pub fn config_toml(upstream: &str, text: &str) -> candor::config::Config {
    let text = format!("[upstream]\nurl = \"{upstream}\"\n\n{text}");
    let mut config = candor::config::from_toml(&text, "test.toml", Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    config.server.workers = 1;
    config
}

/// The built candor binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_candor");

/// A running `candor run`.
pub struct CandorProcess {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The config file it was started with.
    pub config: PathBuf,
    /// Where its log goes.
    pub log: PathBuf,
    tail: Arc<Mutex<VecDeque<String>>>,
    /// Every JSON log line after `ready`, when [`CandorProcess::run`] started it.
    events: Option<Arc<Mutex<Vec<serde_json::Value>>>>,
}

impl CandorProcess {
    /// Starts `candor run --no-watch --log-format json --config config` with `env` (`CANDOR__…`
    /// overrides) and without `RUST_LOG`; `name` names the log file under the target's
    /// temporary directory.
    pub fn start(name: &str, config: &str, env: &[(&str, String)]) -> CandorProcess {
        let mut command = Command::new(BIN);
        command
            .args([
                "run",
                "--no-watch",
                "--log-format",
                "json",
                "--config",
                config,
            ])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env_remove("RUST_LOG");
        CandorProcess::spawn(name, command, Path::new(config), false)
    }

    /// Starts `candor run --config config` with `flags`, `env` and `RUST_LOG=info`, leaving the
    /// log format to candor: every line it writes before `ready` must be JSON (its `auto`
    /// format, off a terminal), and every JSON line after it is kept for [`Self::log_line`].
    pub fn run(name: &str, config: &Path, flags: &[&str], env: &[(&str, &str)]) -> CandorProcess {
        let mut command = Command::new(BIN);
        command
            .args(["run", "--config"])
            .arg(config)
            .args(flags)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info");
        CandorProcess::spawn(name, command, config, true)
    }

    fn spawn(name: &str, mut command: Command, config: &Path, json_only: bool) -> CandorProcess {
        let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.log"));
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the candor binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = BufReader::new(stderr).lines();
        let mut file = std::fs::File::create(&log).expect("the log file can be created");
        let ready: serde_json::Value = loop {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                _ => panic!("candor exited before it was ready; log: {}", log.display()),
            };
            let _ = writeln!(file, "{line}");
            match serde_json::from_str::<serde_json::Value>(&line) {
                Ok(event) if event["message"] == "ready" => break event,
                Ok(_) => {}
                Err(_) if json_only => panic!("not a JSON log line: {line}"),
                Err(_) => {}
            }
        };
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let events = json_only.then(|| Arc::new(Mutex::new(Vec::new())));
        let (keep, sink) = (tail.clone(), events.clone());
        // Drains stderr so that candor never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut file = std::io::BufWriter::new(file);
            for line in lines.map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                if let Some(sink) = &sink {
                    if let Ok(event) = serde_json::from_str(&line) {
                        sink.lock().unwrap().push(event);
                    }
                }
                let mut tail = keep.lock().unwrap();
                if tail.len() == 40 {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        let field = |name: &str| -> SocketAddr {
            ready[name]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in the ready line: {ready}"))
        };
        CandorProcess {
            addr: field("listen"),
            admin: field("admin"),
            child,
            config: config.to_owned(),
            log,
            tail,
            events,
        }
    }

    /// Sends signal `name` (`TERM`, `HUP`, …).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGTERM, and the exit code it then ends with (-1 for none).
    pub fn terminate(mut self) -> i32 {
        self.signal("TERM");
        self.child.wait().unwrap().code().unwrap_or(-1)
    }

    /// Waits for it to exit by itself; its exit code (-1 for none).
    pub fn wait(mut self) -> i32 {
        self.child.wait().unwrap().code().unwrap_or(-1)
    }

    /// Waits (with a deadline) for a JSON log line with this message (see [`Self::run`]).
    pub async fn log_line(&self, message: &str) -> serde_json::Value {
        let events = self
            .events
            .as_ref()
            .expect("log lines are kept for `CandorProcess::run`");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let found = events
                .lock()
                .unwrap()
                .iter()
                .find(|e| e["message"] == message)
                .cloned();
            if let Some(found) = found {
                return found;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {message:?} log line"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A `Vm…:` field of /proc/PID/status, in KiB.
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("candor is running");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"))
    }

    /// Resident set size now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS")
    }

    /// Peak resident set size, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM")
    }

    /// Open file descriptors.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last lines it logged, each cut to 300 characters.
    pub fn log_tail(&self) -> String {
        let tail = self.tail.lock().unwrap();
        tail.iter()
            .skip(tail.len().saturating_sub(10))
            .map(|l| l.chars().take(300).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for CandorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
