//! The `candor` command line: parses arguments, sets up logging, calls the library, and maps
//! outcomes to exit codes. No proxy logic lives here.
//!
//! Exit codes: 0 success; 1 runtime failure (a port in use, a worker that cannot start);
//! 2 usage error (clap's own); 78 invalid configuration (`EX_CONFIG` from sysexits, as
//! `vector validate` uses).
//!
//! | file | owns |
//! | --- | --- |
//! | `mod.rs` | the commands |
//! | `audit.rs` | `candor audit`: reports gathered from pods or read from a HAR, the findings table |
//! | `client.rs` | the small HTTP client of the commands that talk to a running candor |

mod audit;
mod client;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Method, StatusCode, Uri};

use crate::config::cases::Exchange;
use crate::config::{self, Config, LogFormat};
use crate::inspect::simulate;
use crate::inspect::Normalizer;
use crate::{demo, Listeners};

/// Exit code for an invalid configuration (sysexits `EX_CONFIG`).
pub const EXIT_CONFIG: u8 = 78;

/// candor: a sidecar reverse proxy that makes a legacy HTTP API's status codes honest.
#[derive(Debug, Parser)]
#[command(name = "candor", version, about, long_about = None)]
pub struct Cli {
    /// Log line format: `auto` (text on a terminal, JSON lines otherwise), `text` or `json`.
    /// Overrides `log.format`.
    #[arg(long, global = true, value_name = "FORMAT", value_parser = ["auto", "text", "json"])]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy. SIGHUP and changes to the config file reload it; SIGTERM drains and exits.
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// Do not watch the config file; reload only on SIGHUP.
        #[arg(long)]
        no_watch: bool,
    },
    /// Exit 0 if candor's `/readyz` answers 200, else 1: a health check for images without a
    /// shell or curl.
    Healthcheck {
        /// The admin address; an unspecified IP (`0.0.0.0`, `::`) means this host's loopback.
        /// No config is read, so this works in an image with nothing but the binary.
        #[arg(
            long,
            default_value = "127.0.0.1:9901",
            env = "CANDOR__SERVER__ADMIN_LISTEN",
            value_name = "ADDR"
        )]
        admin: String,
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
        /// Start from zero rules: candor watches the legacy API with audit on, proposes rules
        /// and tests, checks them, and shows the table with only those rules; then exits.
        #[arg(long)]
        audit: bool,
    },
    /// Watch a running candor: the status page in the terminal, refreshed every second.
    Top(TopArgs),
    /// Switch a running candor's maintenance mode on or off through its admin API, and print
    /// the resulting state. A reload of the config file sets it back to the file's value.
    Maintenance(MaintenanceArgs),
    /// The responses that lie, found by audit in running candors' traffic (`[audit] enabled`)
    /// or in a HAR capture, and the rules (with tests) that fix them.
    Audit(audit::AuditArgs),
}

/// Arguments of `candor maintenance`.
#[derive(Debug, clap::Args)]
struct MaintenanceArgs {
    /// `on` (candor answers 503 itself) or `off` (requests are forwarded again).
    #[arg(value_parser = ["on", "off"])]
    switch: String,
    /// The admin address; an unspecified IP (`0.0.0.0`, `::`) means this host's loopback.
    #[arg(
        long,
        default_value = "127.0.0.1:9901",
        env = "CANDOR__SERVER__ADMIN_LISTEN",
        value_name = "ADDR"
    )]
    admin: String,
    /// `Retry-After` while on (e.g. "10m"); default: the config file's `maintenance.retry_after`.
    #[arg(long, value_name = "DURATION")]
    retry_after: Option<String>,
    /// The 503's `detail` while on; default: the config file's `maintenance.detail`.
    #[arg(long, value_name = "TEXT")]
    detail: Option<String>,
    /// The admin token (`server.admin_token`), needed when the running candor has one.
    #[arg(
        long,
        env = "CANDOR__SERVER__ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
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
    let format = cli.log_format.as_deref().and_then(LogFormat::parse);
    match cli.command {
        Command::Check { config } => check(&config.path),
        Command::Run { config, no_watch } => run(&config.path, !no_watch, format),
        Command::Healthcheck { admin } => healthcheck(&admin),
        Command::Explain(args) => explain(&args),
        Command::Test { config } => test(&config.path),
        Command::Demo {
            config,
            once,
            audit,
        } => {
            // The demo's output is its table; only errors should interleave with it.
            init_logging("error", format.unwrap_or(LogFormat::Auto));
            demo(&config.path, once, audit)
        }
        Command::Audit(args) => audit::audit(&args),
        Command::Top(args) => {
            // Top's output is its frame; likewise.
            init_logging("error", format.unwrap_or(LogFormat::Auto));
            top(&args)
        }
        Command::Maintenance(args) => maintenance(&args),
    }
}

/// Logs to stderr: `RUST_LOG` wins over `level`; `auto` means text on a terminal, JSON lines
/// otherwise (a container's log collector).
fn init_logging(level: &str, format: LogFormat) {
    init_logging_to(level, format, std::io::stderr);
}

/// Lines queued for the logging thread. tracing-appender's default (128,000) preallocates a
/// 4 MB channel (massif: a sixth of candor's heap under load); a burst this long is already
/// written in one go.
const LOG_QUEUE_LINES: usize = 4096;

/// As [`init_logging`], for the proxy: lines are handed to a logging thread that writes them
/// in batches, so a request path that logs (a rewrite, the access log) never waits on stderr,
/// and a burst costs one `write` rather than one per line. Nothing is dropped: when the
/// thread falls behind by [`LOG_QUEUE_LINES`], loggers wait, as nginx's do on a slow disk. The
/// guard flushes what is queued when it is dropped, at exit.
fn init_proxy_logging(
    level: &str,
    format: LogFormat,
) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("candor-log")
        .finish(std::io::BufWriter::new(std::io::stderr()));
    init_logging_to(level, format, writer);
    guard
}

fn init_logging_to<W>(level: &str, format: LogFormat, writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !terminal,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = if json {
        builder.event_format(crate::logging::JsonLines).try_init()
    } else {
        builder.with_ansi(terminal).try_init()
    };
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
    let normalizer = std::sync::Arc::new(Normalizer::new(std::sync::Arc::new(config)));
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
    let normalizer = std::sync::Arc::new(Normalizer::new(std::sync::Arc::new(config)));
    let sim = simulate::simulate(&normalizer, &exchange);
    let traces = if args.verbose {
        simulate::traces(&normalizer, &exchange)
    } else {
        Vec::new()
    };
    let applied: Vec<&str> = sim.report.applied.iter().map(String::as_str).collect();
    let shadows: Vec<&str> = sim.report.shadows.iter().map(String::as_str).collect();
    let skipped = sim.report.skipped.map(|reason| reason.as_str());
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
            "inspection_skipped": skipped,
            "members": sim.report.members,
            "unfilled": sim.report.unfilled,
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
    if let Some(reason) = skipped {
        println!("note:    the body was not inspected ({reason})");
    }
    if !sim.report.members.is_empty() {
        println!(
            "members: {} (copied from the body)",
            sim.report.members.join(", ")
        );
    }
    for unfilled in &sim.report.unfilled {
        println!("left out: {unfilled}");
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

fn run(path: &std::path::Path, watch: bool, format: Option<LogFormat>) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let _log = init_proxy_logging(&config.log.level, format.unwrap_or(config.log.format));
    // The process's allocator is the binary's to tune, not the library's (a test or an
    // embedding program keeps its own).
    crate::memory::tune();
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
    let reload = crate::Reload {
        path: path.to_path_buf(),
        env: None,
        watch,
        sighup: true,
    };
    match runtime.block_on(crate::run_with(
        config,
        listeners,
        shutdown_signal(),
        Some(reload),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", crate::failure::error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

fn demo(path: &std::path::Path, once: bool, audit: bool) -> ExitCode {
    // Validate first so a broken config is reported like `check` reports it.
    if let Err(code) = load(path) {
        return code;
    }
    crate::memory::tune();
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(demo::run(path, once, audit, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", crate::failure::error_chain(&*err));
            ExitCode::FAILURE
        }
    }
}

fn healthcheck(admin: &str) -> ExitCode {
    // A container binds the admin port on every interface; the probe comes from inside it.
    let admin = client::dial_address(admin);
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let request = http::Request::get("/readyz").body(http_body_util::Full::new(Bytes::new()));
    let Ok(request) = request else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(client::exchange(&admin, request)) {
        Ok((status, _, _)) if status == StatusCode::OK => ExitCode::SUCCESS,
        Ok((status, _, _)) => {
            eprintln!("candor at {admin} is not ready: /readyz answered {status}");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("candor at {admin} {err}");
            ExitCode::FAILURE
        }
    }
}

/// `candor maintenance on|off`: one `PUT /maintenance`; exit 0 on 200 with the state printed as
/// JSON, 1 with the server's reason otherwise.
fn maintenance(args: &MaintenanceArgs) -> ExitCode {
    let admin = client::dial_address(&args.admin);
    let mut change = serde_json::Map::new();
    change.insert("enabled".into(), (args.switch == "on").into());
    if let Some(retry_after) = &args.retry_after {
        change.insert("retry_after".into(), retry_after.clone().into());
    }
    if let Some(detail) = &args.detail {
        change.insert("detail".into(), detail.clone().into());
    }
    let body = serde_json::Value::Object(change).to_string();
    let mut request = http::Request::put("/maintenance").header(CONTENT_TYPE, "application/json");
    if let Some(token) = &args.token {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = match request.body(http_body_util::Full::new(Bytes::from(body))) {
        Ok(request) => request,
        Err(_) => {
            eprintln!("error: --token must be visible ASCII without spaces");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(client::exchange(&admin, request)) {
        Ok((status, _, body)) if status == StatusCode::OK => {
            match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(state) => println!("{state:#}"),
                Err(_) => println!("{}", String::from_utf8_lossy(&body)),
            }
            ExitCode::SUCCESS
        }
        Ok((status, _, body)) => {
            // candor answers a refusal with a problem document; its detail says why.
            let detail = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|doc| doc["detail"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_owned());
            eprintln!("error: candor at {admin} answered {status}: {detail}");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("error: candor at {admin} {err}");
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
