//! The `candor` command line: parses arguments, sets up logging, calls the library, and maps
//! outcomes to exit codes. No proxy logic lives here.
//!
//! Exit codes: 0 success; 1 runtime failure (a port in use, a worker that cannot start);
//! 2 usage error (clap's own); 78 invalid configuration (`EX_CONFIG` from sysexits, as
//! `vector validate` uses).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Method, StatusCode, Uri};

use crate::config::cases::Exchange;
use crate::config::{self, Config};
use crate::inspect::simulate;
use crate::inspect::Normalizer;
use crate::{demo, Listeners};

/// Exit code for an invalid configuration (sysexits `EX_CONFIG`).
pub const EXIT_CONFIG: u8 = 78;

/// candor: a sidecar reverse proxy that makes a legacy HTTP API's status codes honest.
#[derive(Debug, Parser)]
#[command(name = "candor", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy.
    Run {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Validate a configuration file and exit: 0 and a one-line summary, or 78 and every problem.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Show what candor would do with one upstream response, without starting anything.
    Explain(ExplainArgs),
    /// Run the config's `[[tests]]`: exit 0 if all pass, 1 if any fails.
    Test {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Start an embedded legacy API with candor in front and show what candor does to it.
    Demo {
        /// The rules to apply (the config's upstream is replaced by the demo's).
        #[command(flatten)]
        config: ConfigArg,
        /// Print the before/after table and exit instead of serving.
        #[arg(long)]
        once: bool,
    },
    /// Watch a running candor: the status page in the terminal, refreshed every second.
    Top(TopArgs),
}

/// Arguments of `candor top`.
#[derive(Debug, clap::Args)]
struct TopArgs {
    /// The admin listener of the candor to watch (its `server.admin_listen`).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9901")]
    admin: String,
    /// Print one frame and exit.
    #[arg(long)]
    once: bool,
}

/// `--config`, shared by every command that reads a configuration.
#[derive(Debug, clap::Args)]
struct ConfigArg {
    /// The configuration file.
    #[arg(
        id = "config",
        long = "config",
        short = 'c',
        value_name = "PATH",
        default_value = "config/candor.toml",
        env = "CANDOR_CONFIG"
    )]
    path: PathBuf,
}

/// Arguments of `candor explain`.
#[derive(Debug, clap::Args)]
struct ExplainArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The upstream's status.
    #[arg(long)]
    status: u16,
    /// The request method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// The request path (and query).
    #[arg(long, default_value = "/")]
    path: String,
    /// A response header, "Name: value"; repeatable. Without Content-Type, one is guessed
    /// from the body (JSON, HTML or plain text).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// A request header, e.g. "Accept: text/html"; repeatable.
    #[arg(long = "request-header", value_name = "NAME: VALUE")]
    request_headers: Vec<String>,
    /// The response body.
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// Read the response body from a file.
    #[arg(long, value_name = "FILE")]
    body_file: Option<PathBuf>,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
    /// Also say why each rule did or did not match.
    #[arg(long, short)]
    verbose: bool,
}

/// Entry point of the `candor` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo's output is its table, top's its frame; only errors should interleave with them.
    init_logging(match cli.command {
        Command::Demo { .. } | Command::Top(_) => "error",
        _ => "info",
    });
    match cli.command {
        Command::Check { config } => check(&config.path),
        Command::Run { config } => run(&config.path),
        Command::Explain(args) => explain(&args),
        Command::Test { config } => test(&config.path),
        Command::Demo { config, once } => demo(&config.path, once),
        Command::Top(args) => top(&args),
    }
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    config::load(path).map_err(|err| {
        eprintln!("{err}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn check(path: &std::path::Path) -> ExitCode {
    match load(path) {
        Ok(config) => {
            for finding in config.rules.unreachable() {
                eprintln!(
                    "warning: {}: rule {:?} can never match: rule {:?} before it always wins",
                    config.origin, finding.rule, finding.because
                );
            }
            println!("{}", config.summary());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn test(path: &std::path::Path) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let normalizer = Normalizer::new(std::sync::Arc::new(config));
    let tests = &normalizer.config().tests;
    let mut failed = 0;
    for test in tests {
        match simulate::run_test(&normalizer, test) {
            Ok(()) => println!("ok    {}", test.name),
            Err(why) => {
                failed += 1;
                println!("FAIL  {}: {why}", test.name);
            }
        }
    }
    println!(
        "{}: {} tests, {} passed, {} failed",
        normalizer.config().origin,
        tests.len(),
        tests.len() - failed,
        failed
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn explain(args: &ExplainArgs) -> ExitCode {
    let config = match load(&args.config.path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let exchange = match exchange(args) {
        Ok(exchange) => exchange,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let normalizer = Normalizer::new(std::sync::Arc::new(config));
    let sim = simulate::simulate(&normalizer, &exchange);
    let traces = if args.verbose {
        simulate::traces(&normalizer, &exchange)
    } else {
        Vec::new()
    };
    let applied: Vec<&str> = sim.outcome.applied.iter().map(|a| a.rule).collect();
    let shadows: Vec<&str> = sim.outcome.shadows.iter().map(|a| a.rule).collect();
    let body = String::from_utf8_lossy(&sim.body);
    if args.json {
        let headers: serde_json::Map<String, serde_json::Value> = sim
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned().into(),
                )
            })
            .collect();
        let doc = serde_json::json!({
            "rules": applied,
            "shadow": shadows,
            "upstream_status": exchange.status.as_u16(),
            "status": sim.status.as_u16(),
            "headers": headers,
            "body_kind": sim.body_kind.as_str(),
            "body": body,
            "inspection_skipped": sim.outcome.skipped,
            "traces": traces,
        });
        println!("{doc:#}");
        return ExitCode::SUCCESS;
    }
    if applied.is_empty() {
        println!("rule:    none: candor sends the upstream's response unchanged");
    } else {
        println!("rule:    {}", applied.join(", "));
    }
    if !shadows.is_empty() {
        println!(
            "shadow:  {} (matched; counted and logged only)",
            shadows.join(", ")
        );
    }
    if let Some(reason) = sim.outcome.skipped {
        println!("note:    the body was not inspected ({reason})");
    }
    println!(
        "status:  {} -> {}",
        exchange.status.as_u16(),
        sim.status.as_u16()
    );
    println!("headers:");
    for (name, value) in &sim.headers {
        println!("  {name}: {}", String::from_utf8_lossy(value.as_bytes()));
    }
    println!(
        "body:    {} ({} bytes)",
        sim.body_kind.as_str(),
        sim.body.len()
    );
    if !sim.body.is_empty() {
        println!("  {body}");
    }
    if args.verbose {
        println!("why:");
        for trace in traces {
            println!("  {trace}");
        }
    }
    ExitCode::SUCCESS
}

/// Builds the canned exchange `explain` describes.
fn exchange(args: &ExplainArgs) -> Result<Exchange, String> {
    let status = StatusCode::from_u16(args.status)
        .ok()
        .filter(|s| (100..=599).contains(&s.as_u16()))
        .ok_or_else(|| format!("--status {}: expected 100..=599", args.status))?;
    let method = Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("--method {:?}: not a method", args.method))?;
    let uri: Uri = args
        .path
        .parse()
        .map_err(|_| format!("--path {:?}: not a path", args.path))?;
    let body = match (&args.body, &args.body_file) {
        (Some(text), _) => Bytes::from(text.clone()),
        (None, Some(file)) => std::fs::read(file)
            .map(Bytes::from)
            .map_err(|err| format!("--body-file {}: {err}", file.display()))?,
        (None, None) => Bytes::new(),
    };
    let mut response_headers = header_map("--header", &args.headers)?;
    if !response_headers.contains_key(CONTENT_TYPE) && !body.is_empty() {
        let text = String::from_utf8_lossy(&body);
        let guess = match text.trim_start().chars().next() {
            Some('{') | Some('[') => "application/json",
            Some('<') => "text/html",
            _ => "text/plain",
        };
        response_headers.insert(CONTENT_TYPE, HeaderValue::from_static(guess));
    }
    Ok(Exchange {
        method,
        uri,
        request_headers: header_map("--request-header", &args.request_headers)?,
        status,
        response_headers,
        body,
    })
}

fn header_map(flag: &str, lines: &[String]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("{flag} {line:?}: expected \"Name: value\""))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("{flag} {line:?}: invalid header name"))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("{flag} {line:?}: invalid header value"))?;
        map.append(name, value);
    }
    Ok(map)
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| {
            eprintln!("error: cannot start the runtime: {err}");
            ExitCode::FAILURE
        })
}

fn run(path: &std::path::Path) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let listeners = match Listeners::bind(&config.server) {
        Ok(listeners) => listeners,
        Err(err) => {
            eprintln!("error: {}", crate::failure::error_chain(&err));
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        config = %path.display(),
        upstream = %config.upstream.url,
        listen = %config.server.listen,
        admin = %config.server.admin_listen,
        workers = config.server.workers,
        rules = config.rules.len(),
        version = env!("CARGO_PKG_VERSION"),
        "config loaded"
    );
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(crate::run(config, listeners, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", crate::failure::error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

fn demo(path: &std::path::Path, once: bool) -> ExitCode {
    // Validate first so a broken config is reported like `check` reports it.
    if let Err(code) = load(path) {
        return code;
    }
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(demo::run(path, once, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", crate::failure::error_chain(&*err));
            ExitCode::FAILURE
        }
    }
}

fn top(args: &TopArgs) -> ExitCode {
    match runtime() {
        Ok(runtime) => runtime.block_on(crate::status::top::run(
            &args.admin,
            args.once,
            shutdown_signal(),
        )),
        Err(code) => code,
    }
}

/// Completes on SIGTERM (what Kubernetes and systemd send) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGTERM; only Ctrl-C stops candor");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        // clap checks argument ids, defaults and conflicts only when a command is built; this
        // builds every subcommand.
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}
