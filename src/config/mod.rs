//! candor's configuration: loading, validation, and the compiled [`Config`] the proxy runs on.
//!
//! `main` calls [`load`] once at startup (and `reload` on every change) before any socket is
//! bound; nothing here is read at request time except the compiled values. Loading runs in three
//! phases, each with its own kind of [`ConfigError`]:
//!
//! 1. **Syntax and schema** ([`ConfigError::Syntax`]): the raw text goes through `toml` into
//!    [`spec::FileSpec`], so malformed TOML, unknown keys and wrong types are reported with line
//!    and column.
//! 2. **Environment** ([`ConfigError::Env`]): the `config` crate layers `CANDOR__SECTION__KEY`
//!    variables over the file and deserializes the same `FileSpec`; a failure names the variable.
//! 3. **Validation** ([`ConfigError::Invalid`]): every value is checked and compiled (addresses,
//!    URL, durations, statuses, regexes, pointers) into the types below. All problems are
//!    collected, each located at its line in the file or at the variable that set it.
//!
//! Layout: `spec` (file structs), `env` (phase 2), `validate` (phase 3 for the sections),
//! `rules` (phase 3 for `[[rules]]`: specs into a [`crate::rules::RuleSet`]), `cases`
//! (`[[tests]]`), `locate` (field → line), `error` (the error types).

pub mod cases;
pub(crate) mod env;
pub mod error;
mod locate;
pub mod maintenance;
mod rules;
pub mod spec;
pub(crate) mod validate;
mod values;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use toml::de::DeTable;

pub use error::{ConfigError, Issue, Location};
pub use maintenance::{Maintenance, MaintenanceDetail};

use error::Problems;
use locate::Locator;

/// A validated, compiled configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was loaded from (a file path or a name like `<demo>`), for messages.
    pub origin: String,
    /// `[server]`.
    pub server: Server,
    /// `[upstream]`.
    pub upstream: Upstream,
    /// `[upstream]`'s concurrency limit, apart from [`Upstream`] so that changing it keeps the
    /// workers' connection pools.
    pub limit: Limit,
    /// `[failures]`.
    pub failures: Failures,
    /// `[inspect]`.
    pub inspect: Inspect,
    /// `[retry_after]`.
    pub retry_after: RetryAfter,
    /// `[html_errors]`.
    pub html_errors: HtmlErrors,
    /// `[scrub]`.
    pub scrub: Scrub,
    /// `[log]`.
    pub log: Log,
    /// `[maintenance]`: the file's maintenance window (the live switch is
    /// `crate::maintenance`'s).
    pub maintenance: Maintenance,
    /// `[audit]`: applied to the process's `crate::audit::Audit` at start and on every reload.
    pub audit: crate::audit::Settings,
    /// `[[rules]]`, compiled, in evaluation order.
    pub rules: crate::rules::RuleSet,
    /// `[[tests]]`, run by `candor test`.
    pub tests: Vec<cases::RuleTest>,
}

/// candor's own listeners and process settings.
#[derive(Debug, Clone)]
pub struct Server {
    /// Where the proxy listens.
    pub listen: SocketAddr,
    /// Where the admin endpoints (metrics, health) listen.
    pub admin_listen: SocketAddr,
    /// Whether responses carry `x-candor-*` debug headers.
    pub debug_headers: bool,
    /// Worker threads, 1..=1024 (default: available parallelism).
    pub workers: usize,
    /// How long graceful shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
    /// How long candor keeps serving after SIGTERM while `/readyz` answers 503, before it
    /// drains; zero (the default) drains at once.
    pub shutdown_delay: Duration,
    /// How long a client has to send a complete request head.
    pub header_read_timeout: Duration,
    /// Client connections open at once, across workers; more are answered 503 and closed.
    pub max_connections: usize,
    /// Largest request body forwarded; larger ones get 413.
    pub max_request_body_bytes: u64,
    /// Longest pause between two pieces of a request body before it is given up (408).
    pub body_idle_timeout: Duration,
    /// Longest a write to a client may wait before the connection is closed.
    pub write_timeout: Duration,
    /// The bearer token the admin API's writes need; `None`: only loopback peers may write.
    pub admin_token: Option<AdminToken>,
    /// `[server.tls]`, read and checked: TLS on the proxy listener.
    pub tls: Option<crate::tls::ServerTls>,
}

/// `server.admin_token`: it can be compared with what a client presents, never read back or
/// printed (`Debug` shows `<redacted>`), so it cannot reach a log line, a metric or `check`'s
/// output by accident.
#[derive(Clone)]
pub struct AdminToken(String);

impl AdminToken {
    /// Wraps a token `validate` checked (visible ASCII, at least 16 characters).
    pub(crate) fn new(token: String) -> AdminToken {
        AdminToken(token)
    }

    /// Whether `presented` is the token, in constant time: the work depends only on the
    /// token's length, never on where the first differing byte is, so timing tells an attacker
    /// nothing about how much of a guess was right.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let token = self.0.as_bytes();
        // A length difference still runs the whole loop.
        let mut diff = u8::from(presented.len() != token.len());
        for (i, expected) in token.iter().enumerate() {
            let got = presented.get(i).copied().unwrap_or(!*expected);
            diff |= std::hint::black_box(got ^ expected);
        }
        diff == 0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The legacy API candor fronts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Normalized `http://host:port` or `https://host:port` (displays with a trailing `/`).
    pub url: http::Uri,
    /// Host to connect to; an IPv6 address is given without brackets.
    pub host: String,
    /// Port to connect to (80, or 443 for `https://`, when the URL names none).
    pub port: u16,
    /// `host[:port]` as written in the URL; the `Host` header when the client sent none.
    pub authority: http::uri::Authority,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Time allowed until the upstream's response headers arrive.
    pub timeout: Duration,
    /// Idle pooled connections older than this are not reused.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per worker (0 disables pooling).
    pub pool_max_idle: usize,
    /// Longest pause between two pieces of a response body before it is given up.
    pub body_idle_timeout: Duration,
    /// For an `https://` URL: trust, verified name and client certificate, read and checked.
    pub tls: Option<crate::tls::UpstreamTls>,
}

/// The upstream concurrency limit (`upstream.max_connections` and friends), applied to the
/// process's `crate::upstream::Limiter` at start and on every reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// Exchanges in flight at once across workers, 1..; in adaptive mode the ceiling.
    pub max_connections: usize,
    /// Requests that may wait for a place, 1..; more are shed.
    pub max_queue: usize,
    /// Longest a request waits for a place before it is shed.
    pub queue_timeout: Duration,
    /// Whether the limit follows the upstream's latency (`upstream/gradient.rs`).
    pub adaptive: bool,
    /// The adaptive limit's floor and starting point, 1..=`max_connections`.
    pub min_connections: usize,
}

/// Statuses for upstream failures.
#[derive(Debug, Clone)]
pub struct Failures {
    /// Sent when the upstream refuses or cannot be reached (5xx).
    pub connect: http::StatusCode,
    /// Sent when the upstream's headers do not arrive within `upstream.timeout` (5xx).
    pub timeout: http::StatusCode,
    /// `Retry-After` on every 503 candor makes (whole seconds, rounded up).
    pub retry_after: Duration,
}

/// Which responses have their bodies read for rules.
#[derive(Debug, Clone)]
pub struct Inspect {
    /// Largest body read, 1..=64 MiB; larger bodies pass through untouched.
    pub max_body_bytes: usize,
    /// Lowercased `type/subtype` media types whose bodies are read.
    pub content_types: Vec<String>,
    /// Bodies read for inspection at once, per process; more stream through uninspected.
    pub max_concurrent: usize,
}

/// The `Retry-After` policy for responses that lack one.
#[derive(Debug, Clone)]
pub struct RetryAfter {
    /// Statuses that get a `Retry-After` when the upstream sent none.
    pub statuses: Vec<http::StatusCode>,
    /// The value then sent (whole seconds, rounded up).
    pub default: Duration,
}

/// Handling of upstream HTML error pages.
#[derive(Debug, Clone)]
pub struct HtmlErrors {
    /// Whether it is on.
    pub enabled: bool,
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    /// The filter directive (validated).
    pub level: String,
    /// How lines are written.
    pub format: LogFormat,
    /// Whether each request gets an access log line.
    pub access_log: bool,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Text on a terminal, JSON lines otherwise.
    Auto,
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Parses `auto`, `text` or `json`.
    pub fn parse(text: &str) -> Option<LogFormat> {
        match text {
            "auto" => Some(LogFormat::Auto),
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// Scrubbing of internal details from error bodies.
#[derive(Debug, Clone)]
pub struct Scrub {
    /// Whether it is on.
    pub enabled: bool,
    /// The compiled leak patterns (built-in and added); `None` when scrubbing is off.
    pub scrubber: Option<std::sync::Arc<crate::builtin::scrub::Scrubber>>,
}

/// Load from a file plus process environment overrides `CANDOR__SECTION__KEY`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let env = env::from_process(&path.display().to_string())?;
    load_with_env(path, env)
}

/// Same, with an explicit environment map (tests must not mutate the process env).
pub fn load_with_env(path: &Path, env: HashMap<String, String>) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Unreadable {
        path: path.to_owned(),
        error,
    })?;
    from_toml(&text, &path.display().to_string(), env)
}

/// From TOML text; `origin` names it in messages (a file path or `"<demo>"`); env as above.
///
/// Only variables whose name starts with `CANDOR__` (any case) are used from `env`.
pub fn from_toml(
    text: &str,
    origin: &str,
    env: HashMap<String, String>,
) -> Result<Config, ConfigError> {
    let overrides = env::overrides(env);

    // Phase 1: syntax (every error toml can recover from), then schema.
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        // The tree toml recovers after a syntax error can misplace keys, so these issues give
        // only line and column, never a field name that might be wrong.
        let locator = Locator::new(origin, text, None, &overrides);
        return Err(ConfigError::Syntax(
            syntax.iter().map(|e| locator.toml_issue(e)).collect(),
        ));
    }
    let locator = Locator::new(origin, text, Some(root.into_inner()), &overrides);
    if let Err(e) = toml::from_str::<spec::FileSpec>(text) {
        return Err(ConfigError::Syntax(vec![locator.toml_issue(&e)]));
    }

    // Phase 2: environment overrides.
    let spec = env::layer(text, origin, &overrides)?;

    // Phase 3: validation.
    let mut problems = Problems::default();
    let line_of = |path: &error::FieldPath| locator.line(path);
    match validate::compile(&spec, origin, &mut problems, &line_of) {
        Some(config) if problems.is_empty() => Ok(config),
        _ => Err(ConfigError::Invalid(
            problems
                .list
                .into_iter()
                .map(|p| locator.issue(p))
                .collect(),
        )),
    }
}

impl Config {
    /// A config with only `upstream.url` set and every other key at its default, without env
    /// overrides; handy in tests.
    pub fn for_upstream(url: &str) -> Result<Config, ConfigError> {
        // toml's own encoder quotes any input correctly, control characters included.
        let quoted = toml::Value::String(url.to_owned()).to_string();
        from_toml(
            &format!("[upstream]\nurl = {quoted}\n"),
            "<for_upstream>",
            HashMap::new(),
        )
    }

    /// Every file the configuration read besides itself (TLS certificates and keys): the
    /// reloader watches them with the config file.
    pub fn files(&self) -> Vec<std::path::PathBuf> {
        let mut files = Vec::new();
        if let Some(tls) = &self.server.tls {
            files.extend(tls.files());
        }
        if let Some(tls) = &self.upstream.tls {
            files.extend(tls.files());
        }
        files
    }

    /// One line for `candor check`, e.g. `config/candor.toml: ok: upstream
    /// http://127.0.0.1:3000, listen 127.0.0.1:8080, admin 127.0.0.1:9901, 4 workers, 6 rules
    /// (1 shadow)`. The shadow count is left out when there are none.
    pub fn summary(&self) -> String {
        let plural = |n: usize, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
        let shadow = match self.rules.shadow_count() {
            0 => String::new(),
            n => format!(" ({n} shadow)"),
        };
        let tests = match self.tests.len() {
            0 => String::new(),
            n => format!(", {}", plural(n, "test")),
        };
        format!(
            "{}: ok: upstream {}://{}, listen {}{}, admin {}, {}, {}{}{}",
            self.origin,
            if self.upstream.tls.is_some() {
                "https"
            } else {
                "http"
            },
            self.upstream.authority,
            self.server.listen,
            match &self.server.tls {
                Some(tls) if tls.client_ca.is_some() => " (tls, client certificates)",
                Some(_) => " (tls)",
                None => "",
            },
            self.server.admin_listen,
            plural(self.server.workers, "worker"),
            plural(self.rules.len(), "rule"),
            shadow,
            tests,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env() -> HashMap<String, String> {
        HashMap::new()
    }

    #[test]
    fn two_lines_are_a_whole_config() {
        let config =
            Config::for_upstream("http://127.0.0.1:3000").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.upstream.port, 3000);
        assert!(config.rules.is_empty());
        let summary = config.summary();
        assert!(summary.starts_with("<for_upstream>: ok: upstream http://127.0.0.1:3000, listen 127.0.0.1:8080, admin 127.0.0.1:9901, "), "{summary}");
        assert!(summary.ends_with(", 0 rules"), "{summary}");
    }

    #[test]
    fn for_upstream_quotes_anything() {
        for url in ["http://a\"b", "x\\y", "\n", "\u{7f}", "'''"] {
            let err = Config::for_upstream(url)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("upstream.url"), "{url:?}: {err}");
        }
    }

    #[test]
    fn each_phase_has_its_error_kind() {
        let url = "[upstream]\nurl = \"http://127.0.0.1:3000\"\n";
        let env = |k: &str, v: &str| HashMap::from([(k.to_owned(), v.to_owned())]);
        let cases: [(String, HashMap<String, String>, &str); 5] = [
            ("[upstream\n".into(), no_env(), "Syntax"),
            (format!("{url}[server]\nlistn = 1\n"), no_env(), "Syntax"),
            (url.into(), env("CANDOR__UPSTREAM__URLL", "x"), "Env"),
            (
                format!("{url}[server]\nlisten = \"x\"\n"),
                no_env(),
                "Invalid",
            ),
            (
                url.into(),
                env("CANDOR__UPSTREAM__TIMEOUT", "soon"),
                "Invalid",
            ),
        ];
        for (text, env, want) in cases {
            let err = from_toml(&text, "t", env)
                .err()
                .unwrap_or_else(|| panic!("{text}: accepted"));
            assert!(format!("{err:?}").starts_with(want), "{text}: {err:?}");
        }
    }

    /// A small PRNG so the fuzz test needs no dependency and always runs the same inputs.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self, bound: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % bound.max(1) as u64) as usize
        }
    }

    /// Exercises every section and rule feature, so mutations land everywhere.
    const SEED: &str = r#"
[server]
listen = "127.0.0.1:8080"
admin_listen = "127.0.0.1:9901"
debug_headers = true
workers = 2
drain_timeout = "10s"
shutdown_delay = "5s"
header_read_timeout = "10s"

[upstream]
url = "http://127.0.0.1:3000"
connect_timeout = "2s"
timeout = "30s"
pool_idle_timeout = "4s"
pool_max_idle = 64

[failures]
connect = 502
timeout = 504
retry_after = "5s"

[inspect]
max_body_bytes = 262144
content_types = ["application/json", "text/plain"]

[retry_after]
statuses = [429, 503]
default = "30s"

[html_errors]
enabled = true

[scrub]
enabled = true

[[rules]]
name = "user-not-found"
mode = "shadow"
when.status = [200, "2xx"]
when.method = ["GET", "DELETE"]
when.path = "^/users/"
when.content_type = "json"
when.header = [{ name = "x-legacy", matches = "yes" }]
when.json = [{ pointer = "/status", equals = "error" }, { pointer = "/code", one_of = [1042, { a = [1.5] }] }, { pointer = "/n", gte = 3 }]
when.body = '(?i)not\s+found'
then.status = 404
then.retry_after_from = "/retry_in"
then.body = "problem"
then.detail_from = "/message"
then.headers = [{ name = "x-foo", value = "bar" }]

[[rules]]
name = "delete-empty"
when.body = '^\s*\{\s*\}\s*$'
then.status_from = "/a~1b"
then.retry_after = "1s"
then.body = "empty"

[[rules]]
name = "validation"
when.status = ["2xx"]
when.query = '(^|&)v=2(&|$)'
when.request_header = [{ name = "accept", matches = "json" }, { name = "authorization", absent = true }, { name = "x-api-version" }]
when.header = [{ name = "location", absent = true }]
when.json = [{ pointer = "/status", equals = "error" }]
then.status = 422
then.body = "problem"
then.headers = [{ name = "location", value = "/users/{/id}" }, { name = "content-location", value = "{path}?{query}" }, { name = "x-debug", value = "{method} {request_id} {{x}}" }]
then.problem = { type = "https://errors.example.com/validation", title = "Validation failed", members = { errors = "/errors", code = "/code" } }

[[tests]]
name = "validation rewrites"
request = { method = "POST", path = "/users?v=2", headers = { accept = "application/json" } }
response = { status = 200, body = '{"status":"error","id":"a b","errors":[{"field":"email"}]}' }
expect = { rule = "validation", status = 422, body = "problem", headers = { location = "/users/a%20b", x-legacy = "<absent>" }, json = [{ pointer = "/errors/0/field", equals = "email" }] }
"#;

    #[test]
    fn the_fuzz_seed_is_valid() {
        let config = from_toml(SEED, "seed", no_env()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.rules.len(), 3);
        assert_eq!(config.tests.len(), 1);
    }

    #[test]
    fn mutated_configs_never_panic() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let seed = SEED.as_bytes();
        let interesting = b"\"'[]{}=.,\n#~\\/0129xs-";
        let mut rejected = 0;
        for round in 0..600 {
            let mut bytes = seed.to_vec();
            match round % 4 {
                // Flip a few bytes to arbitrary values.
                0 => {
                    for _ in 0..1 + rng.next(4) {
                        let i = rng.next(bytes.len());
                        bytes[i] = rng.next(256) as u8;
                    }
                }
                // Replace a few bytes with TOML punctuation and digits.
                1 => {
                    for _ in 0..1 + rng.next(4) {
                        let i = rng.next(bytes.len());
                        bytes[i] = interesting[rng.next(interesting.len())];
                    }
                }
                // Truncate.
                2 => bytes.truncate(rng.next(bytes.len())),
                // Delete or duplicate a line.
                _ => {
                    let mut lines: Vec<&[u8]> = seed.split(|&b| b == b'\n').collect();
                    let i = rng.next(lines.len());
                    if rng.next(2) == 0 {
                        lines.remove(i);
                    } else {
                        lines.insert(i, lines[i]);
                    }
                    bytes = lines.join(&b'\n');
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            let env = if round % 5 == 0 {
                HashMap::from([(
                    "CANDOR__UPSTREAM__TIMEOUT".to_owned(),
                    text.lines().nth(3).unwrap_or("").to_owned(),
                )])
            } else {
                no_env()
            };
            if let Err(e) = from_toml(&text, "fuzz", env) {
                rejected += 1;
                // Every rejection explains itself, one line per issue.
                let shown = e.to_string();
                assert!(!shown.is_empty());
                assert_eq!(shown.lines().count(), e.issues().len().max(1), "{shown}");
            }
        }
        // Sanity: the mutations are not all harmless.
        assert!(rejected > 100, "only {rejected} rejected");
    }
}
