//! The record behind the status page: the last [`RECENT`] rewrites and running tallies by rule
//! and by status transition.
//!
//! Fed only by [`Metrics::rewrite`](super::Metrics::rewrite), the same call that counts
//! `candor_rewrites_total`, so the page and the metric can never disagree. Nothing here runs for a
//! response no rule rewrites: the pass-through path never touches the recorder.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use http::{Method, StatusCode};

use crate::rules::Mode;

/// How many rewrites the record keeps, newest first.
pub const RECENT: usize = 100;

/// Longest path kept in the record, in bytes; longer ones end in `…`. Paths come from clients,
/// so without a bound a hundred long URIs would hold megabytes.
pub const MAX_PATH: usize = 256;

/// Longest method kept (extension methods can be any token).
const MAX_METHOD: usize = 24;

/// Longest request id kept (candor replaces ids longer than 128 bytes, so this only guards).
const MAX_REQUEST_ID: usize = 128;

/// One rewrite, as the normalize layer reports it.
#[derive(Debug, Clone, Copy)]
pub struct Rewrite<'a> {
    /// The rule or built-in that rewrote (or in shadow mode, would have rewritten).
    pub rule: &'a str,
    /// The status before.
    pub from: StatusCode,
    /// The status after.
    pub to: StatusCode,
    /// Whether the rewrite was enforced or only observed.
    pub mode: Mode,
    /// The request method.
    pub method: &'a Method,
    /// The request path, without the query.
    pub path: &'a str,
    /// The request id candor sent upstream (empty when there was none).
    pub request_id: &'a str,
}

/// One remembered rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When it was recorded.
    pub time: SystemTime,
    /// The request method (clipped).
    pub method: String,
    /// The request path (clipped to [`MAX_PATH`]).
    pub path: String,
    /// The status before.
    pub from: u16,
    /// The status after.
    pub to: u16,
    /// The rule or built-in.
    pub rule: String,
    /// `enforce` or `shadow`.
    pub mode: &'static str,
    /// The request id.
    pub request_id: String,
}

impl Default for Entry {
    fn default() -> Self {
        Entry {
            time: SystemTime::UNIX_EPOCH,
            method: String::new(),
            path: String::new(),
            from: 0,
            to: 0,
            rule: String::new(),
            mode: "",
            request_id: String::new(),
        }
    }
}

/// Rewrites counted for one rule since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleCount {
    /// Enforced rewrites.
    pub enforce: u64,
    /// Shadow matches.
    pub shadow: u64,
}

impl RuleCount {
    fn count(&mut self, mode: Mode) {
        match mode {
            Mode::Enforce => self.enforce += 1,
            Mode::Shadow => self.shadow += 1,
        }
    }
}

/// A copy of the record, taken under the lock and worked on outside it.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// The last [`RECENT`] rewrites, oldest first.
    pub recent: VecDeque<Entry>,
    /// Counts by rule name.
    pub by_rule: HashMap<String, RuleCount>,
    /// Counts by (from, to, mode).
    pub by_transition: BTreeMap<(u16, u16, &'static str), u64>,
}

/// The rewrite record shared by every worker.
///
/// One `Mutex` guards it all. Contention is not a concern: only rewritten responses take the
/// lock (rare next to the requests that pass), they hold it for a few small copies, and the
/// admin endpoint takes it once per snapshot.
#[derive(Debug, Default)]
pub struct Recorder {
    inner: Mutex<Recorded>,
}

impl Recorder {
    /// Records one rewrite.
    pub fn record(&self, rewrite: &Rewrite<'_>) {
        let mode = rewrite.mode.as_str();
        let time = SystemTime::now();
        // Nothing panics while the lock is held, so a poisoned lock still holds a consistent
        // record.
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        match inner.by_rule.get_mut(rewrite.rule) {
            Some(count) => count.count(rewrite.mode),
            None => inner
                .by_rule
                .entry(rewrite.rule.to_owned())
                .or_default()
                .count(rewrite.mode),
        }
        *inner
            .by_transition
            .entry((rewrite.from.as_u16(), rewrite.to.as_u16(), mode))
            .or_default() += 1;
        // Once the ring is full, the evicted entry's strings are reused: a rewrite then costs
        // no allocation here.
        let mut entry = if inner.recent.len() == RECENT {
            inner.recent.pop_front().unwrap_or_default()
        } else {
            Entry::default()
        };
        entry.time = time;
        clip_into(&mut entry.method, rewrite.method.as_str(), MAX_METHOD);
        clip_into(&mut entry.path, rewrite.path, MAX_PATH);
        entry.from = rewrite.from.as_u16();
        entry.to = rewrite.to.as_u16();
        entry.rule.clear();
        entry.rule.push_str(rewrite.rule);
        entry.mode = mode;
        clip_into(&mut entry.request_id, rewrite.request_id, MAX_REQUEST_ID);
        inner.recent.push_back(entry);
    }

    /// A copy of everything recorded so far.
    pub fn copy(&self) -> Recorded {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// `text` cut to at most `max` bytes on a character boundary, with `…` when cut.
#[cfg(test)]
fn clip(text: &str, max: usize) -> String {
    let mut out = String::new();
    clip_into(&mut out, text, max);
    out
}

/// Replaces `out` with `text` cut to at most `max` bytes on a character boundary, with `…`
/// when cut.
fn clip_into(out: &mut String, text: &str, max: usize) {
    out.clear();
    if text.len() <= max {
        out.push_str(text);
        return;
    }
    let end = text
        .char_indices()
        .map(|(i, _)| i)
        .take_while(|&i| i <= max)
        .last()
        .unwrap_or(0);
    out.push_str(&text[..end]);
    out.push('…');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite<'a>(rule: &'a str, mode: Mode, path: &'a str, id: &'a str) -> Rewrite<'a> {
        Rewrite {
            rule,
            from: StatusCode::OK,
            to: StatusCode::NOT_FOUND,
            mode,
            method: &Method::GET,
            path,
            request_id: id,
        }
    }

    #[test]
    fn keeps_the_last_hundred_and_counts_them_all() {
        let recorder = Recorder::default();
        for i in 0..150 {
            let id = format!("id-{i}");
            recorder.record(&rewrite("r", Mode::Enforce, "/p", &id));
        }
        recorder.record(&rewrite("s", Mode::Shadow, "/p", "last"));
        let recorded = recorder.copy();
        assert_eq!(recorded.recent.len(), RECENT);
        assert_eq!(recorded.recent.front().unwrap().request_id, "id-51");
        assert_eq!(recorded.recent.back().unwrap().request_id, "last");
        assert_eq!(
            recorded.by_rule["r"],
            RuleCount {
                enforce: 150,
                shadow: 0
            }
        );
        assert_eq!(
            recorded.by_rule["s"],
            RuleCount {
                enforce: 0,
                shadow: 1
            }
        );
        assert_eq!(recorded.by_transition[&(200, 404, "enforce")], 150);
        assert_eq!(recorded.by_transition[&(200, 404, "shadow")], 1);
    }

    #[test]
    fn long_paths_are_clipped_on_a_character_boundary() {
        let recorder = Recorder::default();
        let long = format!("/{}", "é".repeat(400));
        recorder.record(&rewrite("r", Mode::Enforce, &long, ""));
        let path = recorder.copy().recent[0].path.clone();
        assert!(path.len() <= MAX_PATH + '…'.len_utf8(), "{}", path.len());
        assert!(path.ends_with('…'));
        assert_eq!(clip("/short", MAX_PATH), "/short");
        assert_eq!(clip("abcdef", 3), "abc…");
    }
}
