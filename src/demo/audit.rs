//! `candor demo --audit`: from zero rules to an enforced rule set, on the demo's legacy API.
//!
//! 1. candor with no rules and audit on watches one request per endpoint;
//! 2. audit's report, and the rules and tests it proposes (`candor audit --rules --enforce`),
//!    checked and tested as `candor check` and `candor test` would;
//! 3. candor with only those rules (and the built-ins, on by default) answers the same
//!    requests: the table of the plain demo, with no rule written by hand.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, StatusCode};
use http_body_util::Full;
use tower::BoxError;

use super::legacy::{Case, CASES};
use super::{fetch, print_table, row, send, Row};
use crate::audit::{propose, Report};
use crate::config;
use crate::inspect::{simulate, Normalizer};
use crate::Listeners;

/// What the first candor runs with: audit on, the built-ins off so the lies show as they are.
fn observing(legacy: SocketAddr) -> String {
    format!(
        "[upstream]\nurl = \"http://{legacy}\"\ntimeout = \"{}\"\n\n[audit]\nenabled = true\n\n\
         [html_errors]\nenabled = false\n\n[scrub]\nenabled = false\n\n[retry_after]\nstatuses = []\n",
        super::DEMO_TIMEOUT
    )
}

/// What the second candor runs with: the defaults (built-ins on) and the proposed rules.
fn audited(legacy: SocketAddr, proposals: &str) -> String {
    format!(
        "[upstream]\nurl = \"http://{legacy}\"\ntimeout = \"{}\"\n\n{proposals}",
        super::DEMO_TIMEOUT
    )
}

/// The endpoints audit watches: all but the one that hangs (a timeout is not a lie in a body).
fn watched() -> impl Iterator<Item = &'static Case> {
    CASES.iter().filter(|c| c.path != "/slow")
}

/// Runs the walkthrough against the legacy API at `legacy`; returns the rows of step 3, and the
/// second candor's addresses and stop handle for serving on.
pub(super) async fn walkthrough(legacy: SocketAddr) -> Result<(), BoxError> {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));

    // 1. Zero rules, audit on.
    let config = config::from_toml(&observing(legacy), "<demo --audit>", Default::default())?;
    let listeners = Listeners::bind_to(any, any)?;
    let (proxy, admin) = (listeners.proxy_addr()?, listeners.admin_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::run(config, listeners, async move {
        let _ = stopped.await;
    }));
    let mut watched_count: u64 = 0;
    for case in watched() {
        // In order, so the counts are the same on every run.
        let _ = fetch(proxy, case).await;
        watched_count += 1;
    }
    let report = fetch_report(admin, watched_count).await;
    let _ = stop.send(());
    server.await??;
    let mut report = report?;

    println!("1. candor with no rules and audit on ([audit] enabled = true) watched {watched_count} requests, one per endpoint:");
    println!();
    print_findings(&report);

    // 2. The proposals, enforced, checked and tested.
    propose::annotate(&mut report, true);
    let proposals = propose::rules(&report);
    let text = audited(legacy, &proposals);
    let config = config::from_toml(&text, "<demo --audit>", Default::default())
        .map_err(|e| format!("the proposed rules do not pass check:\n{e}"))?;
    let normalizer = Arc::new(Normalizer::new(Arc::new(config.clone())));
    let failed: Vec<String> = config
        .tests
        .iter()
        .filter_map(|t| {
            simulate::run_test(&normalizer, t)
                .err()
                .map(|e| format!("{}: {e}", t.name))
        })
        .collect();
    println!();
    println!(
        "2. `candor audit --rules --enforce` proposed {} rules with {} tests: `candor check` accepts them, {} of {} tests pass.",
        config.rules.len(),
        config.tests.len(),
        config.tests.len() - failed.len(),
        config.tests.len()
    );
    for failure in &failed {
        println!("   FAILED {failure}");
    }
    println!("   The first of them:");
    println!();
    if let Some(first) = proposals
        .split("\n\n")
        .find(|block| block.contains("[[rules]]"))
    {
        for line in first.lines() {
            println!("   {line}");
        }
    }

    // 3. Only those rules, on the same requests.
    let listeners = Listeners::bind_to(any, any)?;
    let proxy = listeners.proxy_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::run(config, listeners, async move {
        let _ = stopped.await;
    }));
    let mut rows: Vec<Row> = Vec::new();
    for case in watched() {
        rows.push(row(*case, legacy, proxy).await);
    }
    let _ = stop.send(());
    server.await??;
    println!();
    println!("3. candor with only the proposed rules (and the built-ins, on by default):");
    println!();
    print_table(&rows);
    let changed = rows
        .iter()
        .filter(|r| r.upstream != r.candor || r.note != "passed through")
        .count();
    println!();
    println!(
        "{changed} of {} answers changed, by rules no one wrote by hand and the built-ins.",
        rows.len()
    );
    println!("On your API: turn audit on, then `candor audit`, `candor audit --rules > audited.toml`; review,");
    println!("append, `candor check`, `candor test`; watch candor_rewrites_total{{mode=\"shadow\"}}, then enforce.");
    if !failed.is_empty() {
        return Err(format!("{} proposed tests failed", failed.len()).into());
    }
    Ok(())
}

/// The report once it counts `exchanges` (each is recorded when its body has gone by, off the
/// request path), or as it is after two seconds.
async fn fetch_report(admin: SocketAddr, exchanges: u64) -> Result<Report, BoxError> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let request = Request::builder()
            .method(Method::GET)
            .uri("/audit.json")
            .header("host", admin.to_string())
            .body(Full::default())?;
        let (status, _, body) = send(admin, request).await?;
        if status != StatusCode::OK {
            return Err(format!("GET /audit.json answered {status}").into());
        }
        let report: Report = serde_json::from_slice(&body)?;
        if report.exchanges >= exchanges || tokio::time::Instant::now() >= deadline {
            return Ok(report);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

fn print_findings(report: &Report) {
    let width = report
        .routes
        .iter()
        .map(|r| r.route.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!(
        "   {:<7} {:<width$}  {:<33} {:>5}  FIX",
        "METHOD", "ROUTE", "FINDING", "COUNT"
    );
    for route in &report.routes {
        for finding in &route.findings {
            let fix = match (finding.kind, finding.evidence.status) {
                (crate::audit::Kind::HtmlToApiClient, _) => "the html_errors built-in".to_owned(),
                (crate::audit::Kind::LeakedInternals, _) => "the scrub built-in".to_owned(),
                (crate::audit::Kind::MissingRetryAfter, _) => "add Retry-After".to_owned(),
                (crate::audit::Kind::MethodNotAllowedWithoutAllow, _) => "add Allow".to_owned(),
                (_, Some(status)) => format!("→ {status}"),
                (_, None) => String::new(),
            };
            println!(
                "   {:<7} {:<width$}  {:<33} {:>5}  {fix}",
                route.method,
                route.route,
                finding.kind.as_str(),
                finding.count
            );
        }
    }
    let findings: usize = report.routes.iter().map(|r| r.findings.len()).sum();
    let clean = report
        .routes
        .iter()
        .filter(|r| r.findings.is_empty())
        .count();
    println!();
    println!(
        "   {findings} findings on {} of {} routes; the others answered honestly.",
        report.routes.len() - clean,
        report.routes.len()
    );
}
