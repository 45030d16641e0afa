//! Hot reload: SIGHUP and changes to the config file load, validate and publish a new
//! configuration without dropping a request.
//!
//! Every trigger funnels into one path: load the file (with the same environment overrides as at
//! start), validate it completely, and only then publish it on the watch channel the workers
//! follow. A worker builds a new request path for it (reusing its upstream pool when `[upstream]`
//! did not change) and swaps it in atomically; a request keeps the generation it started with.
//! A config that does not validate is refused: the running one stays, the error is logged with
//! its location, `candor_config_reloads_total{result="error"}` counts it and
//! `candor_config_last_reload_successful` drops to 0 (the Prometheus convention).
//!
//! The watcher watches the config file's *directory*: editors save by renaming a temporary file
//! over the original, and a Kubernetes ConfigMap volume updates by swapping a `..data` symlink in
//! the mounted directory; neither is a write to the file itself.
//!
//! The TLS files the configuration names (`[server.tls]`, `upstream.ca`, the upstream client
//! pair) are watched the same way, their directories too: cert-manager and a Kubernetes Secret
//! volume rotate a certificate by the same `..data` swap. A change to any of them reloads the
//! whole configuration through the one path, so a bad or mismatched pair is refused like a bad
//! config (the old pair keeps serving, `result="error"`), and a good one serves every
//! connection accepted after it while open connections keep theirs.
//!
//! A successful reload also sets maintenance mode back to the file's `[maintenance]`: the file
//! is the truth again after any change made through the admin API. It applies the file's
//! `[audit]` to the process's audit (`Audit::configure`), which keeps what it found.
//!
//! This module owns what it publishes: [`Loaded`], one validated configuration as every worker
//! and the admin listener receive it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};

use crate::audit::Audit;
use crate::config::{self, Config};
use crate::inspect::Normalizer;
use crate::listener;
use crate::maintenance::Switch;
use crate::metrics::Metrics;
use crate::sd_notify::{self, Notifier};
use crate::status::Status;

/// A validated configuration as every worker receives it: published at start and after each
/// reload on a watch channel the workers and the admin listener follow.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// The configuration.
    pub config: Arc<Config>,
    /// Its rules and built-ins, compiled once for all workers.
    pub normalizer: Arc<Normalizer>,
    /// The proxy listening socket for this configuration (a new one when `server.listen`
    /// changed).
    pub listener: Arc<std::net::TcpListener>,
    /// The admin listening socket, likewise.
    pub admin: Arc<std::net::TcpListener>,
}

impl Loaded {
    /// The first configuration, on the sockets the caller bound.
    pub(crate) fn first(
        config: Arc<Config>,
        listener: std::net::TcpListener,
        admin: std::net::TcpListener,
    ) -> Loaded {
        Loaded {
            normalizer: Arc::new(Normalizer::new(config.clone())),
            config,
            listener: Arc::new(listener),
            admin: Arc::new(admin),
        }
    }
}

/// How long to wait after a file event for the burst to end (editors and the kubelet write in
/// several steps).
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Where a running candor reloads its configuration from.
#[derive(Debug, Clone)]
pub struct Reload {
    /// The config file.
    pub path: PathBuf,
    /// Environment overrides to apply (`None`: the process environment, as `config::load`).
    pub env: Option<HashMap<String, String>>,
    /// Watch the file's directory for changes.
    pub watch: bool,
    /// Reload on SIGHUP.
    pub sighup: bool,
}

/// Why the running configuration was not replaced.
#[derive(Debug, thiserror::Error)]
enum ReloadError {
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("cannot listen on {addr} ({role})")]
    Bind {
        addr: std::net::SocketAddr,
        role: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// The triggers of one running candor, set up before it reports ready so that no change made
/// after that is missed.
pub(crate) struct Reloader {
    reload: Reload,
    events: mpsc::UnboundedReceiver<()>,
    /// Kept alive while reloading; dropping it stops the watching.
    watcher: Option<notify::RecommendedWatcher>,
    /// The directories watched, so each is added once.
    watched: HashSet<PathBuf>,
    hangups: Option<tokio::signal::unix::Signal>,
    /// The TLS files the running configuration read.
    files: Vec<PathBuf>,
    /// The config file's and those files' contents when last looked at: events that leave
    /// them unchanged are ignored.
    last_seen: Vec<Option<Vec<u8>>>,
    /// Told of every reload (systemd's RELOADING=1, then READY=1).
    notifier: Notifier,
}

impl Reloader {
    /// Starts watching the config file and `files`, the TLS files it names (inside a tokio
    /// runtime: SIGHUP is registered with it); `notifier` hears of each reload.
    pub(crate) fn start(reload: Reload, files: Vec<PathBuf>, notifier: Notifier) -> Reloader {
        let (events_tx, events) = mpsc::unbounded_channel::<()>();
        let watcher = if reload.watch {
            match watch_directory(&reload.path, events_tx) {
                Ok(watcher) => Some(watcher),
                Err(err) => {
                    tracing::warn!(
                        path = %reload.path.display(),
                        error = %err,
                        "cannot watch the config file; reload with SIGHUP"
                    );
                    None
                }
            }
        } else {
            None
        };
        let hangups = if reload.sighup {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(signal) => Some(signal),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot listen for SIGHUP");
                    None
                }
            }
        } else {
            None
        };
        let mut watched = HashSet::new();
        watched.insert(directory_of(&reload.path));
        let mut reloader = Reloader {
            last_seen: Vec::new(),
            reload,
            events,
            watcher,
            watched,
            hangups,
            files: Vec::new(),
            notifier,
        };
        reloader.follow(files);
        reloader
    }

    /// Watches the directories of `files` not watched yet, and remembers what they hold now.
    fn follow(&mut self, files: Vec<PathBuf>) {
        if let Some(watcher) = &mut self.watcher {
            use notify::Watcher;
            for file in &files {
                let directory = directory_of(file);
                if self.watched.contains(&directory) {
                    continue;
                }
                match watcher.watch(&directory, notify::RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        self.watched.insert(directory);
                    }
                    Err(err) => tracing::warn!(
                        path = %file.display(),
                        error = %err,
                        "cannot watch a TLS file; reload with SIGHUP"
                    ),
                }
            }
        }
        self.files = files;
        self.last_seen = self.contents();
    }

    /// What the config file and the TLS files hold now.
    fn contents(&self) -> Vec<Option<Vec<u8>>> {
        std::iter::once(&self.reload.path)
            .chain(&self.files)
            .map(|path| std::fs::read(path).ok())
            .collect()
    }

    /// Runs until `stop` flips, publishing each new configuration on `publish`.
    pub(crate) async fn run(
        mut self,
        publish: watch::Sender<Arc<Loaded>>,
        metrics: Metrics,
        status: Arc<Status>,
        maintenance: Arc<Switch>,
        audit: Arc<Audit>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let trigger = tokio::select! {
                _ = stop.changed() => return,
                Some(()) = self.events.recv() => {
                    // Let the burst of events end, then look at what the file says now.
                    tokio::time::sleep(DEBOUNCE).await;
                    while self.events.try_recv().is_ok() {}
                    let now = self.contents();
                    if now == self.last_seen {
                        continue;
                    }
                    self.last_seen = now;
                    "file"
                }
                Some(()) = recv_hangup(&mut self.hangups) => {
                    self.last_seen = self.contents();
                    "sighup"
                }
            };
            // A reload the service manager can see (`systemctl status`), and READY again
            // whatever the outcome: a refused config leaves the running one serving.
            self.notifier.reloading();
            let reloaded = apply(
                &self.reload,
                trigger,
                &publish,
                &metrics,
                &status,
                &maintenance,
                &audit,
            );
            if reloaded {
                let files = publish.borrow().config.files();
                self.follow(files);
            }
            let current = publish.borrow().clone();
            let serving = match (current.listener.local_addr(), current.admin.local_addr()) {
                (Ok(listen), Ok(admin)) => {
                    sd_notify::serving(&current.config.upstream.url, listen, admin)
                }
                _ => "serving".to_owned(),
            };
            if reloaded {
                self.notifier.ready(&serving);
            } else {
                self.notifier
                    .ready(&format!("{serving}; the last reload failed, see the log"));
            }
        }
    }
}

async fn recv_hangup(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

/// Loads, validates and publishes; logs and counts the outcome, and says whether the new
/// config is live.
fn apply(
    reload: &Reload,
    trigger: &'static str,
    publish: &watch::Sender<Arc<Loaded>>,
    metrics: &Metrics,
    status: &Status,
    maintenance: &Switch,
    audit: &Audit,
) -> bool {
    let current = publish.borrow().clone();
    match prepare(reload, &current) {
        Ok(next) => {
            let diff = RuleDiff::between(&current.config, &next.config);
            warn_about_restart_only_changes(&current.config, &next.config);
            let now = SystemTime::now();
            status.set_config(&next.config, now);
            let before = maintenance.state();
            let after = maintenance.reset(&next.config.maintenance);
            // Before the workers see the new config: a generation built for it finds the audit
            // already set as it says.
            audit.configure(&next.config.audit);
            publish.send_replace(Arc::new(next));
            metrics.reload(true, now);
            if before.source != after.source || before.enabled != after.enabled {
                tracing::info!(
                    enabled = after.enabled,
                    "maintenance mode set to the config file's value"
                );
            }
            tracing::info!(
                trigger,
                path = %reload.path.display(),
                added = %diff.added.join(","),
                removed = %diff.removed.join(","),
                changed = %diff.changed.join(","),
                "config reloaded"
            );
            true
        }
        Err(err) => {
            metrics.reload(false, SystemTime::now());
            tracing::error!(
                trigger,
                path = %reload.path.display(),
                error = %err,
                "config reload failed; keeping the running config"
            );
            false
        }
    }
}

fn prepare(reload: &Reload, current: &Loaded) -> Result<Loaded, ReloadError> {
    let config = match &reload.env {
        Some(env) => config::load_with_env(&reload.path, env.clone())?,
        None => config::load(&reload.path)?,
    };
    let listener = rebind(
        current.config.server.listen,
        config.server.listen,
        &current.listener,
        "proxy",
    )?;
    let admin = rebind(
        current.config.server.admin_listen,
        config.server.admin_listen,
        &current.admin,
        "admin",
    )?;
    let config = Arc::new(config);
    Ok(Loaded {
        normalizer: Arc::new(Normalizer::new(config.clone())),
        config,
        listener,
        admin,
    })
}

/// The socket for `next`: the current one when the address did not change, else a new one.
fn rebind(
    current_addr: std::net::SocketAddr,
    next: std::net::SocketAddr,
    current: &Arc<std::net::TcpListener>,
    role: &'static str,
) -> Result<Arc<std::net::TcpListener>, ReloadError> {
    if current_addr == next {
        return Ok(current.clone());
    }
    listener::bind(next)
        .map(Arc::new)
        .map_err(|source| ReloadError::Bind {
            addr: next,
            role,
            source,
        })
}

/// Settings read once at start; a reload that changes them says so instead of ignoring it quietly.
fn warn_about_restart_only_changes(current: &Config, next: &Config) {
    if current.server.workers != next.server.workers {
        tracing::warn!(
            from = current.server.workers,
            to = next.server.workers,
            "server.workers changed; restart candor to apply it"
        );
    }
    if current.log != next.log {
        tracing::warn!("[log] changed; restart candor to apply it");
    }
}

/// Which rules a reload added, removed or changed (by name), for the reload log line.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct RuleDiff {
    pub(crate) added: Vec<String>,
    pub(crate) removed: Vec<String>,
    pub(crate) changed: Vec<String>,
}

impl RuleDiff {
    pub(crate) fn between(old: &Config, new: &Config) -> RuleDiff {
        let old_rules: HashMap<&str, String> = old
            .rules
            .iter()
            .map(|r| (r.name.as_str(), format!("{r:?}")))
            .collect();
        let new_names: HashSet<&str> = new.rules.iter().map(|r| r.name.as_str()).collect();
        let mut diff = RuleDiff::default();
        for rule in new.rules.iter() {
            match old_rules.get(rule.name.as_str()) {
                None => diff.added.push(rule.name.clone()),
                Some(before) if *before != format!("{rule:?}") => {
                    diff.changed.push(rule.name.clone())
                }
                Some(_) => {}
            }
        }
        for rule in old.rules.iter() {
            if !new_names.contains(rule.name.as_str()) {
                diff.removed.push(rule.name.clone());
            }
        }
        diff
    }
}

/// The directory a file is watched through.
fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Watches `path`'s directory (not the file: see the module docs) and sends `()` on every event.
fn watch_directory(
    path: &Path,
    events: mpsc::UnboundedSender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let directory = directory_of(path);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            // The receiver reads the file itself; what changed does not matter here.
            let _ = events.send(());
        }
    })?;
    watcher.watch(&directory, notify::RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rules: &str) -> Config {
        config::from_toml(
            &format!("[upstream]\nurl = \"http://127.0.0.1:3000\"\n{rules}"),
            "t",
            HashMap::new(),
        )
        .unwrap()
    }

    #[test]
    fn rule_diff_names_added_removed_and_changed_rules() {
        let old = config(
            "[[rules]]\nname = \"a\"\nthen.status = 404\n[[rules]]\nname = \"b\"\nthen.status = 409\n",
        );
        let new = config(
            "[[rules]]\nname = \"b\"\nthen.status = 410\n[[rules]]\nname = \"c\"\nthen.status = 404\n",
        );
        let diff = RuleDiff::between(&old, &new);
        assert_eq!(diff.added, vec!["c"]);
        assert_eq!(diff.removed, vec!["a"]);
        assert_eq!(diff.changed, vec!["b"]);
        assert_eq!(RuleDiff::between(&old, &old), RuleDiff::default());
    }
}
