//! `candor audit`: the findings of running candors (one or several pods) or of a HAR capture,
//! as a table, as JSON, as proposed rules and tests, or as an OpenAPI document.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use http::StatusCode;

use super::client;
use crate::audit::{har, openapi, propose, Kind, Report};

/// Largest audit report read from one pod.
const MAX_REPORT: usize = 64 << 20;

/// Arguments of `candor audit`.
#[derive(Debug, clap::Args)]
pub(super) struct AuditArgs {
    /// A running candor's admin address (repeatable: one per pod). A host name that resolves
    /// to several addresses, such as a Kubernetes headless Service, means all of them.
    /// Default 127.0.0.1:9901.
    #[arg(long, value_name = "ADDR")]
    admin: Vec<String>,
    /// Read a HAR 1.2 capture instead of asking a running candor.
    #[arg(long, value_name = "FILE", conflicts_with = "admin")]
    har: Option<PathBuf>,
    /// Print the proposed [[rules]] and [[tests]] as TOML to append to a config.
    #[arg(long)]
    rules: bool,
    /// Propose the rules with mode = "enforce" instead of "shadow" (implies --rules).
    #[arg(long)]
    enforce: bool,
    /// Print the (merged) report as JSON.
    #[arg(long, conflicts_with_all = ["rules", "enforce", "openapi"])]
    json: bool,
    /// Print an OpenAPI 3.1 document (JSON) of the observed routes and the statuses sent.
    #[arg(long, conflicts_with_all = ["rules", "enforce"])]
    openapi: bool,
    /// With --har: the body bytes read per entry (as inspect.max_body_bytes).
    #[arg(long, value_name = "BYTES", default_value_t = 256 * 1024)]
    max_body_bytes: usize,
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
        None => {
            let admins = if args.admin.is_empty() {
                vec!["127.0.0.1:9901".to_owned()]
            } else {
                args.admin.clone()
            };
            let runtime = match super::runtime() {
                Ok(runtime) => runtime,
                Err(code) => return code,
            };
            let report = runtime.block_on(gather(&admins));
            for pod in &report.unreachable {
                eprintln!("unreachable: {pod}");
            }
            // A merge of no report has no start: nothing answered.
            if report.since.is_empty() && !report.unreachable.is_empty() {
                eprintln!("error: no candor answered");
                return ExitCode::FAILURE;
            }
            report
        }
    };
    let mut report = report;
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::FAILURE;
            }
        }
    } else if args.openapi {
        println!("{:#}", openapi::document(&report));
    } else if args.rules || args.enforce {
        propose::annotate(&mut report, args.enforce);
        print!("{}", propose::rules(&report));
    } else {
        propose::annotate(&mut report, false);
        print!("{}", findings_table(&report));
    }
    ExitCode::SUCCESS
}

/// Every address `admin` names: itself when it is an address, else all a name resolves to.
async fn addresses(admin: &str) -> Result<Vec<String>, String> {
    let dial = client::dial_address(admin);
    if dial.parse::<SocketAddr>().is_ok() {
        return Ok(vec![dial]);
    }
    let found: BTreeSet<SocketAddr> = tokio::net::lookup_host(&dial)
        .await
        .map_err(|e| format!("{admin}: cannot resolve: {e}"))?
        .collect();
    if found.is_empty() {
        return Err(format!("{admin}: resolves to no address"));
    }
    Ok(found.into_iter().map(|a| a.to_string()).collect())
}

/// Reads `/audit.json` from every pod and merges what they found.
async fn gather(admins: &[String]) -> Report {
    let mut unreachable = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for admin in admins {
        match addresses(admin).await {
            Ok(list) => {
                for addr in list {
                    tasks.spawn(async move {
                        let result = fetch(&addr).await;
                        (addr, result)
                    });
                }
            }
            Err(why) => unreachable.push(why),
        }
    }
    let mut reports = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((_, Ok(report))) => reports.push(report),
            Ok((addr, Err(why))) => unreachable.push(format!("{addr}: {why}")),
            Err(err) => unreachable.push(format!("a fetch failed: {err}")),
        }
    }
    let mut merged = if reports.len() == 1 {
        reports.pop().unwrap_or_default()
    } else {
        Report::merge(reports)
    };
    unreachable.sort();
    merged.unreachable.extend(unreachable);
    merged
}

async fn fetch(admin: &str) -> Result<Report, String> {
    let request = http::Request::get("/audit.json")
        .body(http_body_util::Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    match client::exchange_limited(admin, request, MAX_REPORT).await {
        Ok((status, _, body)) if status == StatusCode::OK => serde_json::from_slice(&body)
            .map_err(|e| format!("/audit.json is not an audit report: {e}")),
        Ok((status, _, _)) => Err(format!("/audit.json answered {status}")),
        Err(err) => Err(err.to_string()),
    }
}

/// What the table says would fix a finding.
fn fix(kind: Kind, status: Option<u16>, fixed: bool, proposed: bool) -> String {
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
    if proposed {
        what
    } else {
        format!("{what} (see --rules)")
    }
}

/// The findings as a table, then a one-line summary.
pub(crate) fn findings_table(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut rows = Vec::new();
    for route in &report.routes {
        for f in &route.findings {
            let proposed = f
                .proposal
                .as_deref()
                .is_some_and(|p| p.contains("[[rules]]"));
            rows.push([
                route.route.clone(),
                route.method.clone(),
                f.kind.as_str().to_owned(),
                f.count.to_string(),
                f.fixed.to_string(),
                fix(
                    f.kind,
                    f.evidence.status,
                    f.is_fixed(),
                    proposed || f.is_fixed(),
                ),
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
    out.push('\n');
    if findings > fixed {
        out.push_str("`candor audit --rules` proposes the rules and tests that fix them.\n");
    }
    out
}
