//! `candor audit`: the findings of running candors (one or several pods) or of a HAR capture,
//! as a table, as JSON, as proposed rules and tests, or as an OpenAPI document.
//!
//! A pod that does not answer is named (on stderr and in the report's `unreachable`) but is not
//! an error while another one answered: a rollout or an evicted pod must not hide what the rest
//! found.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde::Deserialize;

use super::client;
use crate::audit::{har, openapi, propose, Kind, Report};

/// Largest audit report read from one pod.
const MAX_REPORT: usize = 64 << 20;

/// How long one pod may take to send its report: tens of MiB take longer than the 2 s a
/// health check gets.
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The admin address when neither `--admin` nor the environment names one.
const DEFAULT_ADMIN: &str = "127.0.0.1:9901";

/// Arguments of `candor audit`.
#[derive(Debug, clap::Args)]
pub(super) struct AuditArgs {
    /// A running candor's admin address (repeatable: one per pod). A host name that resolves
    /// to several addresses, such as a Kubernetes headless Service, means all of them; an
    /// unspecified IP (`0.0.0.0`, `::`) means this host's loopback. Default:
    /// $CANDOR__SERVER__ADMIN_LISTEN, else 127.0.0.1:9901.
    #[arg(long, value_name = "ADDR")]
    admin: Vec<String>,
    /// Read a HAR 1.2 capture instead of asking a running candor (`-`: standard input).
    #[arg(long, value_name = "FILE", conflicts_with = "admin")]
    har: Option<PathBuf>,
    /// Print the proposed [[rules]] and [[tests]] as TOML to append to a config.
    #[arg(long)]
    rules: bool,
    /// Propose the rules with mode = "enforce" instead of "shadow" (implies --rules).
    #[arg(long)]
    enforce: bool,
    /// Print the (merged) report as JSON, in the shape of `GET /audit.json`, with proposals.
    #[arg(long, conflicts_with_all = ["rules", "enforce", "openapi"])]
    json: bool,
    /// Print an OpenAPI 3.1 document (JSON) of the observed routes and the statuses sent.
    #[arg(long, conflicts_with_all = ["rules", "enforce"])]
    openapi: bool,
    /// With --har: the body bytes read per entry (as inspect.max_body_bytes).
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = har::DEFAULT_MAX_BODY_BYTES,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1 << 30)
    )]
    max_body_bytes: usize,
    /// The admin token (`server.admin_token`), sent as a bearer token. Reading the report needs
    /// none; this is for an admin listener behind a proxy that asks for one.
    #[arg(
        long,
        env = "CANDOR__SERVER__ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
}

pub(super) fn audit(args: &AuditArgs) -> ExitCode {
    let report = match &args.har {
        Some(path) => match har::read_file(path, args.max_body_bytes) {
            Ok(read) => {
                if read.skipped.total() > 0 {
                    eprintln!(
                        "{}: {} of {} entries skipped: {}",
                        path.display(),
                        read.skipped.total(),
                        read.entries,
                        read.skipped
                    );
                }
                read.report
            }
            Err(err) => {
                eprintln!("error: {}: {err}", path.display());
                return ExitCode::FAILURE;
            }
        },
        None => match from_admins(args) {
            Some(report) => report,
            None => return ExitCode::FAILURE,
        },
    };
    let mut report = report;
    // Every output but the OpenAPI document shows proposals: a merge dropped the pods' own.
    propose::annotate(&mut report, args.enforce);
    let out = if args.json {
        // Strings, numbers, lists and maps with string keys: serialising cannot fail.
        let mut text = serde_json::to_string_pretty(&report).unwrap_or_default();
        text.push('\n');
        text
    } else if args.openapi {
        format!("{:#}\n", openapi::document(&report))
    } else if args.rules || args.enforce {
        propose::rules(&report)
    } else {
        findings_table(&report)
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // `candor audit --rules | head` closing the pipe early is not a failure.
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: cannot write the output: {err}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}

/// The merged report of every pod `--admin` names, `None` (said on stderr) when none answered.
fn from_admins(args: &AuditArgs) -> Option<Report> {
    let admins = if args.admin.is_empty() {
        vec![std::env::var("CANDOR__SERVER__ADMIN_LISTEN")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ADMIN.to_owned())]
    } else {
        args.admin.clone()
    };
    let auth = match &args.token {
        Some(token) => match HeaderValue::from_str(&format!("Bearer {token}")) {
            Ok(value) => Some(value),
            Err(_) => {
                eprintln!("error: --token must be visible ASCII without spaces");
                return None;
            }
        },
        None => None,
    };
    let runtime = super::runtime().ok()?;
    let (report, answered) = runtime.block_on(gather(&admins, auth));
    for pod in &report.unreachable {
        eprintln!("unreachable: {pod}");
    }
    if answered == 0 {
        eprintln!("error: no candor answered");
        return None;
    }
    Some(report)
}

/// One pod to ask: the address dialled, and how it is named (with the name it came from).
struct Pod {
    addr: String,
    name: String,
}

/// Every address `admin` names: itself when it is an address, else all a name resolves to.
async fn addresses(admin: &str) -> Result<Vec<(SocketAddr, Pod)>, String> {
    // The resolver's own words for these ("invalid socket address", "Name or service not
    // known") do not say what is wrong with the argument.
    if admin.contains("://") {
        return Err(format!("{admin}: give HOST:PORT, not a URL"));
    }
    if !admin.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
    }) {
        return Err(format!("{admin}: not HOST:PORT"));
    }
    let dial = client::dial_address(admin);
    if let Ok(addr) = dial.parse::<SocketAddr>() {
        let pod = Pod {
            addr: dial.clone(),
            name: dial,
        };
        return Ok(vec![(addr, pod)]);
    }
    let found: BTreeSet<SocketAddr> =
        tokio::time::timeout(client::TIMEOUT, tokio::net::lookup_host(&dial))
            .await
            .map_err(|_| {
                format!(
                    "{admin}: not resolved within {}s",
                    client::TIMEOUT.as_secs()
                )
            })?
            .map_err(|e| format!("{admin}: cannot resolve: {e}"))?
            .collect();
    if found.is_empty() {
        return Err(format!("{admin}: resolves to no address"));
    }
    Ok(found
        .into_iter()
        .map(|addr| {
            let pod = Pod {
                addr: addr.to_string(),
                name: format!("{addr} ({admin})"),
            };
            (addr, pod)
        })
        .collect())
}

/// The body of `GET /audit.json`: the report, and whether that candor observes now.
#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(flatten)]
    report: Report,
}

/// Reads `/audit.json` from every pod, each address once however many names lead to it, and
/// merges what they found; also says how many answered.
async fn gather(admins: &[String], auth: Option<HeaderValue>) -> (Report, usize) {
    let mut unreachable = Vec::new();
    let mut seen = BTreeSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    for admin in admins {
        match addresses(admin).await {
            Ok(list) => {
                for (addr, pod) in list {
                    if !seen.insert(addr) {
                        continue;
                    }
                    let auth = auth.clone();
                    tasks.spawn(async move {
                        let result = fetch(&pod.addr, auth).await;
                        (pod.name, result)
                    });
                }
            }
            Err(why) => unreachable.push(why),
        }
    }
    let mut reports = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((name, Ok(answer))) => {
                if answer.enabled == Some(false) {
                    eprintln!(
                        "note: {name}: audit is off there ([audit] enabled = false); its report holds what it found while on"
                    );
                }
                reports.push((name, answer.report));
            }
            Ok((name, Err(why))) => unreachable.push(format!("{name}: {why}")),
            Err(err) => unreachable.push(format!("a fetch failed: {err}")),
        }
    }
    // The same pods give the same merge, whichever answered first.
    reports.sort_by(|a, b| a.0.cmp(&b.0));
    let answered = reports.len();
    let mut merged = Report::merge(reports.into_iter().map(|(_, r)| r).collect());
    unreachable.sort();
    merged.unreachable.extend(unreachable);
    (merged, answered)
}

async fn fetch(admin: &str, auth: Option<HeaderValue>) -> Result<Answer, String> {
    let mut request = http::Request::get("/audit.json");
    if let Some(auth) = auth {
        request = request.header(http::header::AUTHORIZATION, auth);
    }
    let request = request
        .body(http_body_util::Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    match client::exchange_limited(admin, request, MAX_REPORT, REPORT_TIMEOUT).await {
        Ok((status, _, body)) if status == StatusCode::OK => serde_json::from_slice(&body)
            .map_err(|e| format!("/audit.json is not an audit report: {e}")),
        Ok((status, _, _)) if status == StatusCode::NOT_FOUND => {
            Err("/audit.json answered 404: a candor from before audit?".to_owned())
        }
        Ok((status, _, _)) => Err(format!("/audit.json answered {status}")),
        Err(err) => Err(err.to_string()),
    }
}

/// What `--rules` holds for a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proposed {
    /// A `[[rules]]` entry with its test.
    Rule,
    /// A comment only: a built-in to turn on, or why no rule can be written.
    Note,
    /// Nothing: no rule tells it apart (the route's honest responses look the same, or it is
    /// `{other}`).
    Nothing,
}

impl Proposed {
    fn of(finding: &crate::audit::report::FindingReport) -> Proposed {
        match finding.proposal.as_deref() {
            Some(p) if p.contains("[[rules]]") => Proposed::Rule,
            Some(_) => Proposed::Note,
            None => Proposed::Nothing,
        }
    }
}

/// What the table says would fix a finding.
fn fix(kind: Kind, status: Option<u16>, fixed: bool, proposed: Proposed) -> String {
    if fixed {
        return "fixed".to_owned();
    }
    let what = match (kind, status) {
        (Kind::HtmlToApiClient, _) => "the html_errors built-in".to_owned(),
        (Kind::LeakedInternals, _) => "the scrub built-in".to_owned(),
        (Kind::MissingRetryAfter, _) => "add Retry-After".to_owned(),
        (Kind::MethodNotAllowedWithoutAllow, _) => "add Allow".to_owned(),
        (Kind::ForbiddenWithoutCredentials, _) => "→ 401 + WWW-Authenticate".to_owned(),
        (Kind::CreatedAs200, _) => "→ 201 + Location".to_owned(),
        (_, Some(status)) => format!("→ {status}"),
        (_, None) => String::new(),
    };
    // The note says where `--rules` has something other than a rule, so nobody looks there
    // for one that is not.
    let note = match (kind, proposed) {
        (_, Proposed::Rule) => return what,
        (Kind::HtmlToApiClient | Kind::LeakedInternals, _) => "(see --rules)",
        (_, Proposed::Note) => "(no rule: see the note in --rules)",
        (_, Proposed::Nothing) => "(no rule proposed)",
    };
    if what.is_empty() {
        note.to_owned()
    } else {
        format!("{what} {note}")
    }
}

/// The findings as a table (none when there are none), then a one-line summary.
pub(crate) fn findings_table(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut rows = Vec::new();
    for route in &report.routes {
        for f in &route.findings {
            rows.push([
                route.route.clone(),
                route.method.clone(),
                f.kind.as_str().to_owned(),
                f.count.to_string(),
                f.fixed.to_string(),
                fix(f.kind, f.evidence.status, f.is_fixed(), Proposed::of(f)),
            ]);
        }
    }
    let header = ["ROUTE", "METHOD", "KIND", "COUNT", "FIXED", "FIX"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: [&str; 6]| {
        let _ = writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:>w4$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            cells[5],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
            w4 = widths[4],
        );
    };
    if !rows.is_empty() {
        line(&mut out, header);
        for row in &rows {
            line(
                &mut out,
                [&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]],
            );
        }
        out.push('\n');
    }
    let findings = rows.len();
    let fixed = report
        .routes
        .iter()
        .flat_map(|r| &r.findings)
        .filter(|f| f.is_fixed())
        .count();
    let lying = report
        .routes
        .iter()
        .filter(|r| !r.findings.is_empty())
        .count();
    let _ =
        write!(
        out,
        "{findings} findings on {lying} of {} routes, {fixed} fixed, from {} exchanges since {}",
        report.routes.len(),
        report.exchanges,
        if report.since.is_empty() { "-" } else { &report.since }
    );
    if report.skipped > 0 {
        let _ = write!(out, " ({} skipped)", report.skipped);
    }
    if report.folded {
        out.push_str("; routes past audit.max_routes folded into {other}");
    }
    if !report.unreachable.is_empty() {
        let _ = write!(out, "; {} unreachable", report.unreachable.len());
    }
    // One line, so a script (or `candor demo --audit`) can take the summary with `tail -1`.
    if findings > fixed {
        out.push_str("; `candor audit --rules` proposes the rules");
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::report::{Evidence, Example, FindingReport, RouteReport};

    fn finding(kind: Kind, count: u64, fixed: u64, proposal: Option<&str>) -> FindingReport {
        FindingReport {
            kind,
            count,
            fixed,
            first_seen: "2026-12-07T10:00:00Z".into(),
            last_seen: "2026-12-07T10:00:00Z".into(),
            evidence: Evidence {
                status: Some(404),
                ..Evidence::default()
            },
            example: Example::default(),
            proposal: proposal.map(str::to_owned),
        }
    }

    fn route(route: &str, method: &str, findings: Vec<FindingReport>) -> RouteReport {
        RouteReport {
            method: method.into(),
            route: route.into(),
            findings,
            ..RouteReport::default()
        }
    }

    #[test]
    fn the_table_says_what_fixes_each_finding_and_sums_up_in_one_line() {
        let report = Report {
            since: "2026-12-07T10:00:00Z".into(),
            exchanges: 40,
            routes: vec![
                route(
                    "/users/{id}",
                    "GET",
                    vec![finding(Kind::ErrorInSuccess, 12, 0, Some("[[rules]]\n"))],
                ),
                route(
                    "/orders/{id}",
                    "GET",
                    vec![
                        finding(Kind::NullEntity, 3, 3, None),
                        finding(Kind::ErrorInSuccess, 2, 0, Some("# fix: add a type\n")),
                    ],
                ),
                route(
                    "/pages",
                    "GET",
                    vec![finding(Kind::HtmlToApiClient, 1, 0, Some("# fix: …\n"))],
                ),
                route(
                    "/{other}",
                    "GET",
                    vec![finding(Kind::StatusInBody, 1, 0, None)],
                ),
                route("/health", "GET", Vec::new()),
            ],
            unreachable: vec!["10.0.0.3:9901: does not answer".into()],
            ..Report::default()
        };
        let table = findings_table(&report);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 8, "{table}");
        let cells: Vec<Vec<&str>> = lines[..6]
            .iter()
            .map(|l| {
                l.split("  ")
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .collect();
        assert_eq!(
            cells[0],
            ["ROUTE", "METHOD", "KIND", "COUNT", "FIXED", "FIX"]
        );
        assert_eq!(
            cells[1],
            ["/users/{id}", "GET", "error_in_success", "12", "0", "→ 404"]
        );
        assert_eq!(cells[2][5], "fixed");
        assert_eq!(cells[3][5], "→ 404 (no rule: see the note in --rules)");
        assert_eq!(cells[4][5], "the html_errors built-in (see --rules)");
        assert_eq!(cells[5][5], "→ 404 (no rule proposed)");
        assert_eq!(lines[6], "");
        assert_eq!(
            lines[7],
            "5 findings on 4 of 5 routes, 1 fixed, from 40 exchanges since 2026-12-07T10:00:00Z; 1 unreachable; `candor audit --rules` proposes the rules"
        );
    }

    #[test]
    fn nothing_found_is_the_summary_alone() {
        let report = Report {
            since: "2026-12-07T10:00:00Z".into(),
            exchanges: 3,
            routes: vec![route("/health", "GET", Vec::new())],
            ..Report::default()
        };
        assert_eq!(
            findings_table(&report),
            "0 findings on 0 of 1 routes, 0 fixed, from 3 exchanges since 2026-12-07T10:00:00Z\n"
        );
        let all_fixed = Report {
            routes: vec![route(
                "/a",
                "GET",
                vec![finding(Kind::NullEntity, 2, 2, None)],
            )],
            ..Report::default()
        };
        let table = findings_table(&all_fixed);
        assert!(
            table.ends_with("1 fixed, from 0 exchanges since -\n"),
            "{table}"
        );
    }
}
