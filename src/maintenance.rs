//! Maintenance mode's live state: one [`Switch`] per process, read by every worker on every
//! request, set from the config file at start and on every reload, and by the admin API
//! (`PUT /maintenance`) in between.
//!
//! The request path pays one atomic load while maintenance is off: [`Switch::answering`] reads
//! a flag and returns. Only while it is on does a request load the [`State`] (an `ArcSwap`) and
//! match its `except_paths`. Writers (reload, the admin API, both rare) are serialised by a
//! mutex and store the state before the flag, so a reader that sees the flag on also sees a
//! state at least that new; the state's own `enabled` has the last word.
//!
//! The answer itself (503, `Retry-After`, the problem document) is made by
//! `crate::failure::maintenance`, like every answer candor makes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::config::{Maintenance, MaintenanceDetail};

/// Who set the live state last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The config file, at start or on a reload.
    Config,
    /// `PUT /maintenance` on the admin listener.
    Admin,
}

/// Maintenance mode as it is now.
#[derive(Debug, Clone)]
pub struct State {
    /// Whether candor answers requests itself.
    pub enabled: bool,
    /// `Retry-After` on its answers.
    pub retry_after: Duration,
    /// The answers' `detail`.
    pub detail: MaintenanceDetail,
    /// Paths still forwarded (always the config file's).
    pub except_paths: Arc<[regex::Regex]>,
    /// Who set this state.
    pub source: Source,
    /// When it was set.
    pub since: SystemTime,
}

impl State {
    fn from_file(file: &Maintenance, source: Source) -> State {
        State {
            enabled: file.enabled,
            retry_after: file.retry_after,
            detail: file.detail.clone(),
            except_paths: file.except_paths.clone().into(),
            source,
            since: SystemTime::now(),
        }
    }

    /// Whether a request for `path` is answered by candor: maintenance is on and no
    /// `except_paths` regex matches.
    pub fn covers(&self, path: &str) -> bool {
        self.enabled && !self.except_paths.iter().any(|regex| regex.is_match(path))
    }

    /// The state as `GET /maintenance` and `/status.json` show it.
    pub fn view(&self) -> View {
        View {
            enabled: self.enabled,
            retry_after: humantime::format_duration(self.retry_after).to_string(),
            retry_after_seconds: crate::headers::whole_seconds(self.retry_after),
            detail: self.detail.as_str().to_owned(),
            except_paths: self
                .except_paths
                .iter()
                .map(|regex| regex.as_str().to_owned())
                .collect(),
            source: self.source,
            since: humantime::format_rfc3339_seconds(self.since).to_string(),
        }
    }
}

/// What the admin API asks for: `enabled`, and optionally a `retry_after` and `detail` that
/// replace the file's for as long as this state lasts (absent ones are the file's).
#[derive(Debug, Clone)]
pub struct Change {
    /// On or off.
    pub enabled: bool,
    /// A `Retry-After` other than the file's.
    pub retry_after: Option<Duration>,
    /// A `detail` other than the file's.
    pub detail: Option<MaintenanceDetail>,
}

/// The JSON form of a [`State`], served by `GET`/`PUT /maintenance` and inside `/status.json`:
///
/// ```json
/// {"enabled": true, "retry_after": "10m", "retry_after_seconds": 600,
///  "detail": "Back at 14:00 UTC.", "except_paths": ["^/healthz$"],
///  "source": "admin", "since": "2026-11-26T06:00:00Z"}
/// ```
///
/// `retry_after` is written as the config file writes durations; `retry_after_seconds` is the
/// `Retry-After` value sent (whole seconds, rounded up). `source` is `config` or `admin`;
/// `since` is when that source set it (RFC 3339, UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    /// Whether candor answers requests itself.
    pub enabled: bool,
    /// The `Retry-After` delay, as a duration string (`"10m"`).
    pub retry_after: String,
    /// The `Retry-After` header value, in seconds.
    pub retry_after_seconds: u64,
    /// The answers' `detail`.
    pub detail: String,
    /// The regexes of paths still forwarded.
    pub except_paths: Vec<String>,
    /// `config` or `admin`.
    pub source: Source,
    /// When the state was set.
    pub since: String,
}

/// The process's maintenance switch.
#[derive(Debug)]
pub struct Switch {
    /// The fast path's flag: `state.enabled`, stored after `state`.
    on: AtomicBool,
    state: ArcSwap<State>,
    /// Serialises writers, so the flag and the state always end up agreeing.
    write: Mutex<()>,
}

impl Switch {
    /// A switch set to the config file's value.
    pub fn new(file: &Maintenance) -> Switch {
        let state = State::from_file(file, Source::Config);
        Switch {
            on: AtomicBool::new(state.enabled),
            state: ArcSwap::from_pointee(state),
            write: Mutex::new(()),
        }
    }

    /// The state to answer `path` with, or `None` when the request is to be forwarded. While
    /// maintenance is off this is one atomic load.
    #[inline]
    pub fn answering(&self, path: &str) -> Option<Arc<State>> {
        if !self.on.load(Ordering::Acquire) {
            return None;
        }
        self.answering_on(path)
    }

    #[cold]
    fn answering_on(&self, path: &str) -> Option<Arc<State>> {
        let state = self.state.load_full();
        state.covers(path).then_some(state)
    }

    /// The state now.
    pub fn state(&self) -> Arc<State> {
        self.state.load_full()
    }

    /// Back to the config file's value: at every successful reload, so the file is the truth
    /// again after any admin change.
    pub fn reset(&self, file: &Maintenance) -> Arc<State> {
        self.store(State::from_file(file, Source::Config))
    }

    /// The admin API's change; what it leaves out comes from `file`, the live config's
    /// `[maintenance]`.
    pub fn set(&self, file: &Maintenance, change: Change) -> Arc<State> {
        let mut state = State::from_file(file, Source::Admin);
        state.enabled = change.enabled;
        if let Some(retry_after) = change.retry_after {
            state.retry_after = retry_after;
        }
        if let Some(detail) = change.detail {
            state.detail = detail;
        }
        self.store(state)
    }

    fn store(&self, state: State) -> Arc<State> {
        let _writer = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let state = Arc::new(state);
        self.state.store(state.clone());
        self.on.store(state.enabled, Ordering::Release);
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(enabled: bool, except: &[&str]) -> Maintenance {
        Maintenance {
            enabled,
            retry_after: Duration::from_millis(1500),
            detail: MaintenanceDetail::parse("from the file").unwrap(),
            except_paths: except
                .iter()
                .map(|p| crate::pattern::text(p).unwrap())
                .collect(),
        }
    }

    #[test]
    fn off_answers_nothing_and_on_answers_all_but_the_exceptions() {
        let switch = Switch::new(&file(false, &["^/healthz$"]));
        assert!(switch.answering("/users").is_none());
        switch.reset(&file(true, &["^/healthz$"]));
        assert!(switch.answering("/users").is_some());
        assert!(switch.answering("/healthz").is_none());
        assert!(switch.answering("/healthz/deep").is_some());
    }

    #[test]
    fn an_admin_change_keeps_what_it_leaves_out_and_a_reset_undoes_it() {
        let config = file(false, &["^/healthz$"]);
        let switch = Switch::new(&config);
        let set = switch.set(
            &config,
            Change {
                enabled: true,
                retry_after: Some(Duration::from_secs(600)),
                detail: None,
            },
        );
        assert!(set.enabled);
        assert_eq!(set.source, Source::Admin);
        assert_eq!(set.retry_after, Duration::from_secs(600));
        assert_eq!(set.detail.as_str(), "from the file");
        assert!(switch.answering("/x").is_some());

        let back = switch.reset(&config);
        assert!(!back.enabled);
        assert_eq!(back.source, Source::Config);
        assert!(switch.answering("/x").is_none());
    }

    #[test]
    fn the_view_has_the_documented_shape() {
        let switch = Switch::new(&file(true, &["^/healthz$"]));
        let view = serde_json::to_value(switch.state().view()).unwrap();
        assert_eq!(view["enabled"], true);
        assert_eq!(view["retry_after"], "1s 500ms");
        // Whole seconds, rounded up, as the header sends it.
        assert_eq!(view["retry_after_seconds"], 2);
        assert_eq!(view["detail"], "from the file");
        assert_eq!(view["except_paths"], serde_json::json!(["^/healthz$"]));
        assert_eq!(view["source"], "config");
        assert!(view["since"].as_str().unwrap().ends_with('Z'), "{view}");
    }
}
