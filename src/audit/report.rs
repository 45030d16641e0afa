//! The audit report: what `GET /audit.json` answers, what `candor audit` reads (from one pod or
//! several, merged), and what proposals are made from.
//!
//! ```json
//! { "since": "2026-12-07T10:00:00Z", "exchanges": 120, "skipped": 0,
//!   "routes": [ { "method": "GET", "route": "/users/{id}", "path_regex": "^/users/[0-9]+$",
//!                 "upstream_statuses": { "200": 12 }, "sent_statuses": { "404": 3, "200": 9 },
//!                 "findings": [ { "kind": "error_in_success", "count": 3, "fixed": 0,
//!                                 "evidence": { "pointer": "/status", "value": "error" },
//!                                 "example": { … }, "proposal": "[[rules]] …" } ] } ] }
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::kind::Kind;

/// Everything audit found, route by route.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// When observation started (RFC 3339), or the earliest start of the merged reports.
    pub since: String,
    /// Exchanges observed.
    pub exchanges: u64,
    /// Sampled exchanges skipped because inspection memory was busy.
    pub skipped: u64,
    /// Routes past `audit.max_routes` were folded into `{other}`.
    #[serde(default)]
    pub folded: bool,
    /// Per route and method, in route order.
    pub routes: Vec<RouteReport>,
    /// Pods whose report could not be read (`candor audit --admin`, several pods), and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<String>,
}

/// One route and method.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteReport {
    /// The request method.
    pub method: String,
    /// The route template (`/users/{id}`).
    pub route: String,
    /// An anchored regex matching the route's paths, for `when.path`.
    pub path_regex: String,
    /// A path of the route, for a proposed test (ids replaced by samples of their class).
    pub sample_path: String,
    /// The upstream's statuses and how often each was seen.
    pub upstream_statuses: BTreeMap<String, u64>,
    /// The statuses candor sent, after its rules.
    pub sent_statuses: BTreeMap<String, u64>,
    /// Top-level JSON members of the route's honest 2xx responses that a detector reads as
    /// markers elsewhere, with the values they had: what a proposed condition must not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub honest: Vec<Honest>,
    /// What was found.
    pub findings: Vec<FindingReport>,
}

/// A member seen in honest responses, with up to [`MAX_HONEST_VALUES`] of its values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Honest {
    /// Its pointer.
    pub pointer: String,
    /// Values seen (scalars; strings at most 64 bytes).
    pub values: Vec<serde_json::Value>,
}

/// Most values kept per honest member.
pub const MAX_HONEST_VALUES: usize = 4;

/// One finding on a route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingReport {
    /// What was found.
    pub kind: Kind,
    /// Exchanges that showed it.
    pub count: u64,
    /// Of those, how many candor already answered honestly (a live rule or built-in fixed them).
    #[serde(default)]
    pub fixed: u64,
    /// First and last seen (RFC 3339).
    pub first_seen: String,
    /// Last seen (RFC 3339).
    pub last_seen: String,
    /// What triggered it.
    pub evidence: Evidence,
    /// One exchange that showed it, scrubbed.
    pub example: Example,
    /// The proposed `[[rules]]` and `[[tests]]` entries as TOML, when a rule can fix it and
    /// live rules do not already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal: Option<String>,
}

impl FindingReport {
    /// Every exchange that showed it was answered honestly.
    pub fn is_fixed(&self) -> bool {
        self.count > 0 && self.fixed >= self.count
    }
}

/// What triggered a finding. Values are scalars, redacted, and at most 64 bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Evidence {
    /// The JSON pointer of the member that gave it away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// That member's value (JSON text, so evidence stays hashable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A header that gave it away (`content-type: text/html`) or is missing
    /// (`retry-after: absent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// The pattern family (`java-stack`) or the words (`not found`) that matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The member holding the message, when there is one (`/message`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The status the evidence says the response should have had, and why (`from the body`,
    /// `the message says "not found"`, `a guess: review it`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why that status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<String>,
}

/// One exchange that showed a finding. The body is scrubbed and at most 200 bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// The request path (no query).
    pub path: String,
    /// The request's `Accept`, when it had one (at most 64 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept: Option<String>,
    /// The request carried `Authorization`.
    #[serde(default)]
    pub authorization: bool,
    /// The request carried `Cookie`.
    #[serde(default)]
    pub cookie: bool,
    /// The upstream's status.
    pub status: u16,
    /// The response's `Content-Type` (at most 64 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The start of the body, scrubbed (at most 200 bytes).
    pub body: String,
    /// `body` is the whole body (nothing cut, withheld or redacted), so a test can replay it.
    #[serde(default)]
    pub complete: bool,
    /// The body's top-level JSON member names (at most 16): what a proposed problem document
    /// can carry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

impl Report {
    /// Merges the reports of several pods into one: statuses and counts add up, the earliest
    /// `first_seen` and latest `last_seen` win, the first example is kept. Proposals are
    /// dropped: make them again from the merged report ([`super::propose::annotate`]).
    pub fn merge(reports: Vec<Report>) -> Report {
        let mut merged = Report::default();
        let mut index: BTreeMap<(String, String), usize> = BTreeMap::new();
        for report in reports {
            if merged.since.is_empty() || (!report.since.is_empty() && report.since < merged.since)
            {
                merged.since = report.since;
            }
            merged.exchanges += report.exchanges;
            merged.skipped += report.skipped;
            merged.folded |= report.folded;
            merged.unreachable.extend(report.unreachable);
            for route in report.routes {
                let key = (route.route.clone(), route.method.clone());
                match index.get(&key) {
                    None => {
                        index.insert(key, merged.routes.len());
                        let mut route = route;
                        for f in &mut route.findings {
                            f.proposal = None;
                        }
                        merged.routes.push(route);
                    }
                    Some(&i) => merge_route(&mut merged.routes[i], route),
                }
            }
        }
        merged
            .routes
            .sort_by(|a, b| (&a.route, &a.method).cmp(&(&b.route, &b.method)));
        merged
    }
}

fn merge_route(into: &mut RouteReport, from: RouteReport) {
    for (status, n) in from.upstream_statuses {
        *into.upstream_statuses.entry(status).or_default() += n;
    }
    for (status, n) in from.sent_statuses {
        *into.sent_statuses.entry(status).or_default() += n;
    }
    if into.path_regex != from.path_regex {
        // Two pods saw different id classes: the route must match both.
        into.path_regex = wider_regex(&into.path_regex, &from.path_regex);
    }
    for honest in from.honest {
        match into.honest.iter_mut().find(|h| h.pointer == honest.pointer) {
            Some(mine) => {
                for v in honest.values {
                    if mine.values.len() < MAX_HONEST_VALUES && !mine.values.contains(&v) {
                        mine.values.push(v);
                    }
                }
            }
            None => into.honest.push(honest),
        }
    }
    for finding in from.findings {
        match into
            .findings
            .iter_mut()
            .find(|f| f.kind == finding.kind && f.evidence == finding.evidence)
        {
            Some(mine) => {
                mine.count += finding.count;
                mine.fixed += finding.fixed;
                if finding.first_seen < mine.first_seen {
                    mine.first_seen = finding.first_seen;
                }
                if finding.last_seen > mine.last_seen {
                    mine.last_seen = finding.last_seen;
                }
                if !mine.example.complete && finding.example.complete {
                    mine.example = finding.example;
                }
            }
            None => {
                let mut finding = finding;
                finding.proposal = None;
                into.findings.push(finding);
            }
        }
    }
}

/// The regex of a route whose id classes differ between two reports: every id segment `[^/]+`.
fn wider_regex(a: &str, b: &str) -> String {
    if a.len() < b.len() {
        return wider_regex(b, a);
    }
    let token = super::route::IdClass::Token.regex();
    let mut out = a.to_owned();
    for class in [
        super::route::IdClass::Uuid,
        super::route::IdClass::Hex,
        super::route::IdClass::Number,
    ] {
        out = out.replace(class.regex(), token);
    }
    out
}
