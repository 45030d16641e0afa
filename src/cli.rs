//! The `candor` command line: parses arguments, sets up logging, calls the library, and maps
//! outcomes to exit codes. No proxy logic lives here.
//!
//! Exit codes: 0 success; 1 runtime failure (a port in use, a worker that cannot start);
//! 2 usage error (clap's own); 78 invalid configuration (`EX_CONFIG` from sysexits, as
//! `vector validate` uses).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config};
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
        /// The configuration file.
        #[arg(
            long,
            short,
            default_value = "config/candor.toml",
            env = "CANDOR_CONFIG"
        )]
        config: PathBuf,
    },
    /// Validate a configuration file and exit: 0 and a one-line summary, or 78 and every problem.
    Check {
        /// The configuration file.
        #[arg(
            long,
            short,
            default_value = "config/candor.toml",
            env = "CANDOR_CONFIG"
        )]
        config: PathBuf,
    },
    /// Start an embedded legacy API with candor in front and show what candor does to it.
    Demo {
        /// The configuration whose rules candor applies (its upstream is replaced by the demo's).
        #[arg(
            long,
            short,
            default_value = "config/candor.toml",
            env = "CANDOR_CONFIG"
        )]
        config: PathBuf,
        /// Print the before/after table and exit instead of serving.
        #[arg(long)]
        once: bool,
    },
}

/// Entry point of the `candor` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo's output is its table; only errors should interleave with it.
    init_logging(match cli.command {
        Command::Demo { .. } => "error",
        _ => "info",
    });
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Run { config } => run(&config),
        Command::Demo { config, once } => demo(&config, once),
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
            println!("{}", config.summary());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
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
