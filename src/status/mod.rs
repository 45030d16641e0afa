//! Live status: the admin listener's HTML page (`/`), its data (`/status.json`) and `candor top`.
//!
//! Where it sits: the normalize layer reports each rewrite once, to
//! [`Metrics::rewrite`](crate::metrics::Metrics::rewrite), which counts `candor_rewrites_total`
//! and feeds its [`Recorder`](crate::metrics::Recorder) in the same call. Everything else the
//! page shows is read from the Prometheus counters that already exist (requests by status,
//! upstream failures by kind, inspection skips by reason), never counted a second time; its audit
//! section is the audit table's counts ([`Audit::counts`]). `run` calls [`Status::set_config`]
//! when the config is loaded; hot reload calls it again on every swap.
//!
//! | file | role |
//! | --- | --- |
//! | `mod.rs` | [`Status`], the [`Snapshot`] that `/status.json` serialises |
//! | `page.html` | the self-contained page at `/` |
//! | `top.rs` | `candor top`: the same view in a terminal |

pub mod top;

use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::audit::Audit;
use crate::builtin::Builtin;
use crate::config::Config;
use crate::maintenance::{self, Switch};
use crate::metrics::Metrics;

/// The status page, served at `/` on the admin listener.
pub const PAGE: &str = include_str!("page.html");

/// `Content-Security-Policy` of [`PAGE`]: its inline script and style may run and it may fetch
/// `/status.json` from where it came from; nothing else loads, and no other site may frame it.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self' 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// What the status page shows, kept by the process for its whole life.
#[derive(Debug)]
pub struct Status {
    metrics: Metrics,
    maintenance: std::sync::Arc<Switch>,
    audit: std::sync::Arc<Audit>,
    started_at: SystemTime,
    started: Instant,
    config: RwLock<Loaded>,
}

/// The config as the page describes it, replaced whole on every (re)load.
#[derive(Debug, Clone)]
struct Loaded {
    origin: String,
    summary: String,
    upstream: String,
    loaded_at: SystemTime,
    rules: Vec<ConfiguredRule>,
}

impl Status {
    /// A status view over `metrics` (and the rewrite record inside them), the maintenance
    /// switch and the audit table, with no config yet.
    pub fn new(
        metrics: Metrics,
        maintenance: std::sync::Arc<Switch>,
        audit: std::sync::Arc<Audit>,
    ) -> Self {
        Status {
            metrics,
            maintenance,
            audit,
            started_at: SystemTime::now(),
            started: Instant::now(),
            config: RwLock::new(Loaded {
                origin: String::new(),
                summary: String::new(),
                upstream: String::new(),
                loaded_at: SystemTime::now(),
                rules: Vec::new(),
            }),
        }
    }

    /// Describes `config`, loaded at `loaded_at`: called at startup and after each reload.
    pub fn set_config(&self, config: &Config, loaded_at: SystemTime) {
        let mut rules: Vec<ConfiguredRule> = config
            .rules
            .iter()
            .map(|rule| ConfiguredRule {
                name: rule.name.clone(),
                mode: rule.mode.as_str().to_owned(),
                builtin: false,
            })
            .collect();
        // Built-ins run after the rules, in their order.
        for builtin in Builtin::ORDER {
            let enabled = match builtin {
                Builtin::Scrub => config.scrub.enabled,
                Builtin::HtmlErrors => config.html_errors.enabled,
                Builtin::RetryAfter => !config.retry_after.statuses.is_empty(),
            };
            rules.push(ConfiguredRule {
                name: builtin.name().to_owned(),
                mode: if enabled { "enforce" } else { "off" }.to_owned(),
                builtin: true,
            });
        }
        let loaded = Loaded {
            origin: config.origin.clone(),
            summary: config.summary(),
            upstream: format!("http://{}", config.upstream.authority),
            loaded_at,
            rules,
        };
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = loaded;
    }

    /// Everything the page shows, as of now.
    pub fn snapshot(&self) -> Snapshot {
        let now = SystemTime::now();
        let loaded = self
            .config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let recorded = self.metrics.recorder().copy();

        let mut rules: Vec<RuleCounts> = loaded
            .rules
            .iter()
            .map(|rule| {
                let count = recorded
                    .by_rule
                    .get(&rule.name)
                    .copied()
                    .unwrap_or_default();
                RuleCounts {
                    name: rule.name.clone(),
                    mode: rule.mode.clone(),
                    builtin: rule.builtin,
                    enforce: count.enforce,
                    shadow: count.shadow,
                }
            })
            .collect();
        // Rules a reload removed keep their counts (as the metric does), listed last.
        let mut removed: Vec<RuleCounts> = recorded
            .by_rule
            .iter()
            .filter(|(name, _)| !loaded.rules.iter().any(|r| &r.name == *name))
            .map(|(name, count)| RuleCounts {
                name: name.clone(),
                mode: "removed".to_owned(),
                builtin: false,
                enforce: count.enforce,
                shadow: count.shadow,
            })
            .collect();
        removed.sort_by(|a, b| a.name.cmp(&b.name));
        rules.extend(removed);

        let mut rewrites: Vec<Transition> = recorded
            .by_transition
            .iter()
            .map(|(&(from, to, mode), &count)| Transition {
                from,
                to,
                mode: mode.to_owned(),
                count,
            })
            .collect();
        // Stable sort: equal counts stay in (from, to, mode) order.
        rewrites.sort_by_key(|t| std::cmp::Reverse(t.count));

        let by_status = self.metrics.requests_by_status();
        let total = by_status.iter().map(|(_, n)| n).sum();
        Snapshot {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            generated_at: rfc3339(now),
            started_at: rfc3339(self.started_at),
            uptime_seconds: self.started.elapsed().as_secs(),
            config: ConfigSummary {
                origin: loaded.origin,
                summary: loaded.summary,
                loaded_at: rfc3339(loaded.loaded_at),
                upstream: loaded.upstream,
                rules: loaded.rules,
            },
            requests: Requests {
                total,
                by_status: by_status
                    .into_iter()
                    .map(|(status, n)| (status.to_string(), n))
                    .collect(),
            },
            rules,
            rewrites,
            upstream_failures: counts(self.metrics.upstream_failures_by_kind()),
            upstream_limit: Some(UpstreamLimit::from(self.metrics.upstream_load())),
            inspect_skipped: counts(self.metrics.inspect_skipped_by_reason()),
            maintenance: Some(Maintenance {
                state: self.maintenance.state().view(),
                responses: self.metrics.maintenance_responses(),
            }),
            audit: Some(self.audit_section()),
            recent: recorded
                .recent
                .iter()
                .rev()
                .map(|e| RecentRewrite {
                    time: humantime::format_rfc3339_millis(e.time).to_string(),
                    method: e.method.clone(),
                    path: e.path.clone(),
                    from: e.from,
                    to: e.to,
                    rule: e.rule.clone(),
                    mode: e.mode.to_owned(),
                    request_id: e.request_id.clone(),
                })
                .collect(),
        }
    }

    /// The audit table's counts: its findings, most seen first, at most [`AUDIT_FINDINGS`].
    fn audit_section(&self) -> AuditSection {
        let report = self.audit.counts();
        let mut findings: Vec<AuditFinding> = report
            .routes
            .iter()
            .flat_map(|route| {
                route.findings.iter().map(|f| AuditFinding {
                    route: route.route.clone(),
                    method: route.method.clone(),
                    kind: f.kind.as_str().to_owned(),
                    count: f.count,
                    fixed: f.fixed,
                })
            })
            .collect();
        // Stable: equal counts stay in route order.
        findings.sort_by_key(|f| std::cmp::Reverse(f.count));
        let more = findings.len().saturating_sub(AUDIT_FINDINGS);
        findings.truncate(AUDIT_FINDINGS);
        AuditSection {
            enabled: self.audit.enabled(),
            since: report.since,
            exchanges: report.exchanges,
            skipped: report.skipped,
            findings,
            more,
        }
    }

    /// [`Status::snapshot`] as the body of `/status.json`.
    pub fn to_json(&self) -> Vec<u8> {
        // Strings, integers and maps with string keys: serialising cannot fail.
        serde_json::to_vec(&self.snapshot()).unwrap_or_default()
    }
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

fn counts(pairs: Vec<(&'static str, u64)>) -> BTreeMap<String, u64> {
    pairs
        .into_iter()
        .map(|(key, n)| (key.to_owned(), n))
        .collect()
}

/// The document `/status.json` serves. The schema is stable: fields may be added, none
/// renamed or removed.
///
/// ```text
/// {
///   "version": "0.1.0",                       candor's version
///   "generated_at": "2026-11-26T06:00:01Z",   when this document was made (RFC 3339, UTC)
///   "started_at": "2026-11-26T05:00:00Z",     when the process started
///   "uptime_seconds": 3601,
///   "config": {
///     "origin": "config/candor.toml",         where the live config came from
///     "summary": "config/candor.toml: ok: upstream http://…, 6 rules",  as `candor check` prints
///     "loaded_at": "2026-11-26T05:00:00Z",    when it was loaded (startup or the last reload)
///     "upstream": "http://127.0.0.1:3000",
///     "rules": [{"name", "mode", "builtin"}]  the [[rules]] in evaluation order, then the
///                                             built-ins scrub, html-errors, retry-after
///   },
///   "requests": {"total": 1234, "by_status": {"200": 1200, "404": 34}},   statuses sent
///   "rules": [{"name", "mode", "builtin", "enforce", "shadow"}],   every rule and built-in of
///        the config, counts 0 included, then any rule a reload removed (mode "removed")
///   "rewrites": [{"from": 200, "to": 404, "mode": "enforce", "count": 12}],   most first
///   "upstream_failures": {"connect": 0, "timeout": 1, …},   every kind, as in the metric
///   "upstream_limit": {"in_flight": 3, "limit": 4, "queue_depth": 0},   the concurrency
///        limit now (candor_upstream_in_flight, candor_upstream_limit,
///        candor_upstream_queue_depth)
///   "inspect_skipped": {"too_large": 0, "content_type": 0, "encoding": 0},
///   "maintenance": {"enabled": false, "retry_after": "5m", "retry_after_seconds": 300,
///                   "detail": "…", "except_paths": [], "source": "config", "since": "…",
///                   "responses": 0},   the live state (crate::maintenance::View) and
///                                      candor_maintenance_responses_total
///   "audit": {"enabled": true, "since": "…", "exchanges": 120, "skipped": 0,
///             "findings": [{"route": "/users/{id}", "method": "GET",
///                           "kind": "error_in_success", "count": 3, "fixed": 0}],
///             "more": 0},   the audit table's counts, its findings most seen first (at most
///                           AUDIT_FINDINGS; `more` were left out; /audit.json has them all)
///   "recent": [{"time", "method", "path", "from", "to", "rule", "mode", "request_id"}]
/// }
/// ```
///
/// `mode` is `enforce` or `shadow` for a rule; `enforce` or `off` for a built-in; `removed` for
/// a rule no longer configured. `recent` holds the last [`RECENT`](crate::metrics::RECENT)
/// rewrites, newest first, with `time` in RFC 3339 UTC to the millisecond and `path` clipped to
/// [`MAX_PATH`](crate::metrics::MAX_PATH) bytes. Counts are
/// since the process started; `rules` and `rewrites` count the same events as
/// `candor_rewrites_total`, `requests` is `candor_requests_total`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// candor's version.
    pub version: String,
    /// When the snapshot was taken.
    pub generated_at: String,
    /// When the process started.
    pub started_at: String,
    /// Whole seconds since start.
    pub uptime_seconds: u64,
    /// The live config.
    pub config: ConfigSummary,
    /// Requests answered.
    pub requests: Requests,
    /// Every rule and built-in with its counts.
    pub rules: Vec<RuleCounts>,
    /// Rewrites by status transition.
    pub rewrites: Vec<Transition>,
    /// `candor_upstream_failures_total` by kind.
    pub upstream_failures: BTreeMap<String, u64>,
    /// The upstream concurrency limit now (absent from a candor older than the limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_limit: Option<UpstreamLimit>,
    /// `candor_inspect_skipped_total` by reason.
    pub inspect_skipped: BTreeMap<String, u64>,
    /// Maintenance mode now (absent from a candor older than maintenance mode).
    #[serde(default)]
    pub maintenance: Option<Maintenance>,
    /// What audit found so far (absent from a candor older than audit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditSection>,
    /// The last rewrites, newest first.
    pub recent: Vec<RecentRewrite>,
}

/// `upstream_limit` of a [`Snapshot`]: exchanges in flight, the limit, requests queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamLimit {
    /// `candor_upstream_in_flight`.
    pub in_flight: u64,
    /// `candor_upstream_limit`: `upstream.max_connections`, or the adaptive limit now.
    pub limit: u64,
    /// `candor_upstream_queue_depth`.
    pub queue_depth: u64,
}

impl From<crate::metrics::UpstreamLoad> for UpstreamLimit {
    fn from(load: crate::metrics::UpstreamLoad) -> Self {
        UpstreamLimit {
            in_flight: load.in_flight,
            limit: load.limit,
            queue_depth: load.queue_depth,
        }
    }
}

/// `maintenance` of a [`Snapshot`]: the live state and how many requests it answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Maintenance {
    /// The state, as `GET /maintenance` shows it.
    #[serde(flatten)]
    pub state: maintenance::View,
    /// `candor_maintenance_responses_total`.
    pub responses: u64,
}

/// Most findings the status page lists; `/audit.json` has them all.
pub const AUDIT_FINDINGS: usize = 50;

/// `audit` of a [`Snapshot`]: the table's counts since `since` (start, or `DELETE /audit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditSection {
    /// Whether the proxy observes its traffic now.
    pub enabled: bool,
    /// When observation started (RFC 3339).
    pub since: String,
    /// Exchanges observed.
    pub exchanges: u64,
    /// Sampled exchanges skipped because inspection memory was busy.
    pub skipped: u64,
    /// Findings, most seen first.
    pub findings: Vec<AuditFinding>,
    /// Findings left out of `findings`.
    pub more: usize,
}

/// One finding in an [`AuditSection`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFinding {
    /// The route template (`/users/{id}`).
    pub route: String,
    /// The request method.
    pub method: String,
    /// The finding's kind (`error_in_success`).
    pub kind: String,
    /// Exchanges that showed it.
    pub count: u64,
    /// Of those, how many candor already answered honestly.
    pub fixed: u64,
}

/// `config` of a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSummary {
    /// Where the config came from.
    pub origin: String,
    /// `candor check`'s one line.
    pub summary: String,
    /// When it was loaded.
    pub loaded_at: String,
    /// The upstream URL.
    pub upstream: String,
    /// Rules and built-ins in evaluation order.
    pub rules: Vec<ConfiguredRule>,
}

/// One rule or built-in as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfiguredRule {
    /// Its name (a built-in's fixed name).
    pub name: String,
    /// `enforce`, `shadow`, or `off` (a disabled built-in).
    pub mode: String,
    /// Whether it is a built-in.
    pub builtin: bool,
}

/// `requests` of a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requests {
    /// All requests answered.
    pub total: u64,
    /// By the status sent; statuses never sent are left out.
    pub by_status: BTreeMap<String, u64>,
}

/// One entry of `rules` in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCounts {
    /// The rule or built-in.
    pub name: String,
    /// `enforce`, `shadow`, `off` or `removed`.
    pub mode: String,
    /// Whether it is a built-in.
    pub builtin: bool,
    /// Responses it rewrote.
    pub enforce: u64,
    /// Responses it matched in shadow mode.
    pub shadow: u64,
}

/// One entry of `rewrites` in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The upstream's status.
    pub from: u16,
    /// The status candor sent (or in shadow mode, would have).
    pub to: u16,
    /// `enforce` or `shadow`.
    pub mode: String,
    /// How many times.
    pub count: u64,
}

/// One entry of `recent` in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentRewrite {
    /// When (RFC 3339 UTC, milliseconds).
    pub time: String,
    /// The request method.
    pub method: String,
    /// The request path.
    pub path: String,
    /// The status before.
    pub from: u16,
    /// The status after.
    pub to: u16,
    /// The rule or built-in.
    pub rule: String,
    /// `enforce` or `shadow`.
    pub mode: String,
    /// The request id.
    pub request_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{FailureKind, Rewrite, SkipReason};
    use crate::rules::Mode;
    use http::{Method, StatusCode};
    use prometheus_client::registry::Registry;
    use std::time::Duration;

    fn config(rules: &str) -> Config {
        crate::config::from_toml(
            &format!("[upstream]\nurl = \"http://127.0.0.1:3000\"\n\n[html_errors]\nenabled = false\n\n{rules}"),
            "status-test.toml",
            Default::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn switch() -> std::sync::Arc<Switch> {
        std::sync::Arc::new(Switch::new(&config("").maintenance))
    }

    fn audit() -> std::sync::Arc<Audit> {
        std::sync::Arc::new(Audit::new(&crate::audit::Settings::default()))
    }

    const TWO_RULES: &str =
        "[[rules]]\nname = \"gone\"\nwhen.status = [200]\nthen.status = 410\n\n\
         [[rules]]\nname = \"watch\"\nmode = \"shadow\"\nwhen.status = [201]\nthen.status = 500\n";

    #[test]
    fn every_configured_rule_and_builtin_is_listed_with_zero_counts() {
        let metrics = Metrics::register(&mut Registry::default());
        let status = Status::new(metrics, switch(), audit());
        status.set_config(&config(TWO_RULES), SystemTime::UNIX_EPOCH);
        let snap = status.snapshot();
        let rows: Vec<(&str, &str, bool, u64, u64)> = snap
            .rules
            .iter()
            .map(|r| (&*r.name, &*r.mode, r.builtin, r.enforce, r.shadow))
            .collect();
        assert_eq!(
            rows,
            [
                ("gone", "enforce", false, 0, 0),
                ("watch", "shadow", false, 0, 0),
                ("scrub", "enforce", true, 0, 0),
                ("html-errors", "off", true, 0, 0),
                ("retry-after", "enforce", true, 0, 0),
            ]
        );
        assert_eq!(snap.config.loaded_at, "1970-01-01T00:00:00Z");
        assert_eq!(snap.config.origin, "status-test.toml");
        assert_eq!(snap.config.upstream, "http://127.0.0.1:3000");
        assert!(snap.config.summary.contains("2 rules (1 shadow)"));
        assert_eq!(snap.requests.total, 0);
        assert_eq!(snap.upstream_failures["connect"], 0);
        assert_eq!(snap.inspect_skipped["too_large"], 0);
        assert!(snap.recent.is_empty() && snap.rewrites.is_empty());
    }

    #[test]
    fn counts_come_from_the_metrics_and_reloads_keep_removed_rules() {
        let metrics = Metrics::register(&mut Registry::default());
        let status = Status::new(metrics.clone(), switch(), audit());
        status.set_config(&config(TWO_RULES), SystemTime::UNIX_EPOCH);
        metrics.response(StatusCode::OK);
        metrics.response(StatusCode::GONE);
        metrics.response(StatusCode::GONE);
        metrics.upstream_failure(FailureKind::Timeout);
        metrics.inspect_skipped(SkipReason::Encoding);
        for (rule, mode, to) in [
            ("gone", Mode::Enforce, StatusCode::GONE),
            ("gone", Mode::Enforce, StatusCode::GONE),
            ("watch", Mode::Shadow, StatusCode::INTERNAL_SERVER_ERROR),
        ] {
            metrics.rewrite(&Rewrite {
                rule,
                from: StatusCode::OK,
                to,
                mode,
                method: &Method::GET,
                path: "/x",
                request_id: "id",
            });
        }
        let snap = status.snapshot();
        assert_eq!(snap.requests.total, 3);
        assert_eq!(
            snap.requests.by_status,
            BTreeMap::from([("200".to_owned(), 1), ("410".to_owned(), 2)])
        );
        assert_eq!(snap.upstream_failures["timeout"], 1);
        assert_eq!(snap.inspect_skipped["encoding"], 1);
        assert_eq!((snap.rules[0].enforce, snap.rules[0].shadow), (2, 0));
        assert_eq!((snap.rules[1].enforce, snap.rules[1].shadow), (0, 1));
        assert_eq!(
            snap.rewrites
                .iter()
                .map(|t| (t.from, t.to, &*t.mode, t.count))
                .collect::<Vec<_>>(),
            [(200, 410, "enforce", 2), (200, 500, "shadow", 1)]
        );
        assert_eq!(snap.recent[0].rule, "watch");

        // A reload that drops "watch": its counts stay, marked removed, after the built-ins.
        let later = SystemTime::UNIX_EPOCH + Duration::from_secs(60);
        status.set_config(
            &config("[[rules]]\nname = \"gone\"\nwhen.status = [200]\nthen.status = 410\n"),
            later,
        );
        let snap = status.snapshot();
        assert_eq!(snap.config.loaded_at, "1970-01-01T00:01:00Z");
        let last = snap.rules.last().unwrap();
        assert_eq!(
            (&*last.name, &*last.mode, last.shadow),
            ("watch", "removed", 1)
        );
    }

    #[test]
    fn the_json_has_the_documented_fields_and_reads_back() {
        let status = Status::new(
            Metrics::register(&mut Registry::default()),
            switch(),
            audit(),
        );
        status.set_config(&config(TWO_RULES), SystemTime::now());
        let json = status.to_json();
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        for key in [
            "version",
            "generated_at",
            "started_at",
            "uptime_seconds",
            "config",
            "requests",
            "rules",
            "rewrites",
            "upstream_failures",
            "inspect_skipped",
            "maintenance",
            "audit",
            "recent",
        ] {
            assert!(value.get(key).is_some(), "{key} missing: {value}");
        }
        for key in ["origin", "summary", "loaded_at", "upstream", "rules"] {
            assert!(value["config"].get(key).is_some(), "config.{key} missing");
        }
        let back: Snapshot = serde_json::from_slice(&json).unwrap();
        assert_eq!(back.rules.len(), 5);
    }

    #[test]
    fn the_page_never_puts_data_into_html() {
        // Paths and request ids are chosen by clients: the page may only insert text.
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
        ] {
            assert!(!PAGE.contains(banned), "page.html uses {banned}");
        }
        // Self-contained: nothing is loaded from anywhere else.
        assert!(!PAGE.contains("://"), "page.html names another origin");
        assert!(PAGE.contains("<noscript>"));
        assert!(PAGE.contains("/status.json"));
    }
}
