//! Loading configs end to end through the public API: defaults, env overrides, the shipped
//! files in `config/`, and the located error for each kind of mistake a user can make.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use candor::config::{self, Config, ConfigError, Location};
use candor::rules::{BodyAction, JsonOp, Mode, RetryAfterSource, StatusMatch};
use http::StatusCode;

const MINIMAL: &str = "[upstream]\nurl = \"http://127.0.0.1:3000\"\n";

/// Environment variables as `(name, value)` pairs.
type Vars<'a> = &'a [(&'a str, &'a str)];

fn env(pairs: Vars<'_>) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load_ok(text: &str, vars: &[(&str, &str)]) -> Config {
    config::from_toml(text, "test.toml", env(vars)).unwrap_or_else(|e| panic!("rejected:\n{e}"))
}

fn load_err(text: &str, vars: &[(&str, &str)]) -> ConfigError {
    match config::from_toml(text, "test.toml", env(vars)) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

#[test]
fn two_line_config_gets_every_default() {
    let c = load_ok(MINIMAL, &[]);
    assert_eq!(c.origin, "test.toml");
    assert_eq!(
        c.server.listen,
        "127.0.0.1:8080".parse().unwrap_or_else(|e| panic!("{e}"))
    );
    assert_eq!(c.server.admin_listen.to_string(), "127.0.0.1:9901");
    assert!(c.server.debug_headers);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(c.server.workers, cpus.min(1024));
    assert_eq!(c.server.drain_timeout, Duration::from_secs(10));
    assert_eq!(c.server.shutdown_delay, Duration::ZERO);
    assert_eq!(c.server.header_read_timeout, Duration::from_secs(10));

    assert_eq!(c.upstream.url.to_string(), "http://127.0.0.1:3000/");
    assert_eq!(
        (c.upstream.host.as_str(), c.upstream.port),
        ("127.0.0.1", 3000)
    );
    assert_eq!(c.upstream.authority.as_str(), "127.0.0.1:3000");
    assert_eq!(c.upstream.connect_timeout, Duration::from_secs(2));
    assert_eq!(c.upstream.timeout, Duration::from_secs(30));
    assert_eq!(c.upstream.pool_idle_timeout, Duration::from_secs(4));
    assert_eq!(c.upstream.pool_max_idle, 64);

    assert_eq!(c.failures.connect, StatusCode::BAD_GATEWAY);
    assert_eq!(c.failures.timeout, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(c.failures.retry_after, Duration::from_secs(5));

    assert_eq!(c.inspect.max_body_bytes, 262_144);
    assert_eq!(
        c.inspect.content_types,
        [
            "application/json",
            "application/problem+json",
            "text/html",
            "text/plain"
        ]
    );
    assert_eq!(
        c.retry_after.statuses,
        [
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::SERVICE_UNAVAILABLE
        ]
    );
    assert_eq!(c.retry_after.default, Duration::from_secs(30));
    assert!(c.html_errors.enabled);
    assert!(c.scrub.enabled);
    assert_eq!(
        c.audit,
        candor::audit::Settings {
            enabled: false,
            sample: 1.0,
            max_routes: 1000
        }
    );
    assert!(c.rules.is_empty());
}

#[test]
fn for_upstream_is_the_two_line_config() {
    let c = Config::for_upstream("http://api.internal").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (c.upstream.host.as_str(), c.upstream.port),
        ("api.internal", 80)
    );
    assert_eq!(c.upstream.authority.as_str(), "api.internal");
    assert_eq!(c.upstream.url.to_string(), "http://api.internal:80/");
}

#[test]
fn env_overrides_win_over_the_file() {
    let text = format!("{MINIMAL}[server]\ndebug_headers = true\n[failures]\nconnect = 502\n");
    let c = load_ok(
        &text,
        &[
            ("CANDOR__UPSTREAM__URL", "http://x:1"),
            ("CANDOR__FAILURES__CONNECT", "503"),
            ("CANDOR__SERVER__DEBUG_HEADERS", "false"),
            ("CANDOR__SERVER__LISTEN", "0.0.0.0:8000"),
            ("CANDOR__UPSTREAM__TIMEOUT", "1m"),
            ("CANDOR__SERVER__SHUTDOWN_DELAY", "5s"),
            ("CANDOR__RETRY_AFTER__STATUSES", "429,503,500"),
            (
                "CANDOR__INSPECT__CONTENT_TYPES",
                "application/json,application/vnd.api+json",
            ),
            ("UNRELATED", "ignored"),
        ],
    );
    assert_eq!(c.upstream.url.to_string(), "http://x:1/");
    assert_eq!(c.failures.connect, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!c.server.debug_headers);
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:8000");
    assert_eq!(c.upstream.timeout, Duration::from_secs(60));
    assert_eq!(c.server.shutdown_delay, Duration::from_secs(5));
    assert_eq!(c.retry_after.statuses.len(), 3);
    assert_eq!(
        c.inspect.content_types,
        ["application/json", "application/vnd.api+json"]
    );
}

#[test]
fn audit_settings_come_from_the_file_and_the_environment() {
    let text = format!("{MINIMAL}[audit]\nenabled = true\nsample = 0.5\nmax_routes = 20\n");
    let c = load_ok(&text, &[]);
    assert!(c.audit.enabled);
    assert_eq!((c.audit.sample, c.audit.max_routes), (0.5, 20));
    let c = load_ok(
        MINIMAL,
        &[
            ("CANDOR__AUDIT__ENABLED", "true"),
            ("CANDOR__AUDIT__SAMPLE", "0.25"),
            ("CANDOR__AUDIT__MAX_ROUTES", "300"),
        ],
    );
    assert!(c.audit.enabled);
    assert_eq!((c.audit.sample, c.audit.max_routes), (0.25, 300));
    // A whole number from the environment is a share too.
    let c = load_ok(MINIMAL, &[("CANDOR__AUDIT__SAMPLE", "0")]);
    assert_eq!(c.audit.sample, 0.0);
}

#[test]
fn upstream_url_may_come_from_env_alone() {
    let c = load_ok("", &[("CANDOR__UPSTREAM__URL", "http://127.0.0.1:9")]);
    assert_eq!(c.upstream.port, 9);
}

#[test]
fn bad_env_values_name_the_variable() {
    let cases: [(Vars<'_>, &[&str]); 8] = [
        (
            &[("CANDOR__UPSTREAM__URLL", "http://x:1")],
            &["CANDOR__UPSTREAM__URLL = \"http://x:1\"", "upstream.urll", "unknown field `urll`"],
        ),
        (
            &[("CANDOR__UPSTREAM__TIMEOUT", "soon")],
            &["CANDOR__UPSTREAM__TIMEOUT = \"soon\": upstream.timeout: invalid duration (expected e.g. \"2s\", \"500ms\")"],
        ),
        (
            &[("CANDOR__UPSTREAM__TIMEOUT", "5")],
            &["CANDOR__UPSTREAM__TIMEOUT = \"5\"", "expected a duration string like \"5s\""],
        ),
        (
            &[("CANDOR__FAILURES__CONNECT", "404")],
            &["CANDOR__FAILURES__CONNECT = \"404\": failures.connect = 404: invalid status (expected a 5xx status, 500..=599)"],
        ),
        (
            &[("CANDOR__UPSTREAM__URL", "ftp://api")],
            &["CANDOR__UPSTREAM__URL = \"ftp://api\": upstream.url", "unsupported scheme (expected http:// or https://)"],
        ),
        (
            &[("CANDOR__RULES__0__NAME", "x")],
            &["CANDOR__RULES__0__NAME", "rules can only be defined in the config file"],
        ),
        (
            &[("CANDOR__AUDIT__SAMPLE", "2")],
            &["CANDOR__AUDIT__SAMPLE = \"2\": audit.sample = 2: out of range"],
        ),
        (
            &[("CANDOR__AUDIT__SAMPLE", "half")],
            &["CANDOR__AUDIT__SAMPLE = \"half\"", "audit.sample", "invalid type"],
        ),
    ];
    for (vars, wants) in cases {
        let err = load_err(MINIMAL, vars);
        let text = err.to_string();
        for want in wants {
            assert!(
                text.contains(want),
                "{vars:?}: missing {want:?} in:\n{text}"
            );
        }
        assert!(
            err.issues()
                .iter()
                .all(|i| matches!(i.location, Location::Env { .. })),
            "{text}"
        );
    }
}

/// One `(config text, substrings the error must contain)` per kind of mistake.
fn bad_inputs() -> Vec<(String, Vec<&'static str>)> {
    let rule = |body: &str| format!("{MINIMAL}\n[[rules]]\nname = \"r1\"\n{body}\n");
    vec![
        // Unknown key: the key, its path and its line and column.
        (format!("{MINIMAL}[server]\nlistn = \"x\"\n"), vec!["test.toml:4:1:", "server.listn", "unknown field `listn`"]),
        (rule("when.pathh = \"x\"\nthen.status = 404"), vec!["test.toml:6:6:", "rule \"r1\"", "when.pathh", "unknown field `pathh`"]),
        // Bad regex.
        (rule("when.path = \"([a-z\"\nthen.status = 404"), vec!["test.toml:6:", "rule \"r1\"", "when.path = \"([a-z\"", "invalid regex"]),
        (rule("when.body = '\\p{Nope}'\nthen.status = 404"), vec!["test.toml:6:", "when.body = '\\p{Nope}'", "invalid regex: Unicode property not found"]),
        // Status outside 100..=599.
        (rule("when.status = [200, 700]\nthen.status = 404"), vec!["test.toml:6:", "when.status[1] = 700", "invalid status"]),
        (rule("then.status = 600"), vec!["test.toml:6:", "then.status = 600", "invalid status"]),
        (format!("{MINIMAL}[retry_after]\nstatuses = [429, 99]\n"), vec!["test.toml:4:", "retry_after.statuses[1] = 99"]),
        // Bad duration.
        (format!("{MINIMAL}connect_timeout = \"2 parsecs\"\n"), vec!["test.toml:3:", "upstream.connect_timeout = \"2 parsecs\"", "invalid duration"]),
        (format!("{MINIMAL}timeout = \"0s\"\n"), vec!["test.toml:3:", "upstream.timeout = \"0s\"", "at least 1ms"]),
        (format!("{MINIMAL}timeout = 5\n"), vec!["test.toml:3:11:", "upstream.timeout", "expected a duration string like \"5s\""]),
        // Bad address.
        (format!("{MINIMAL}[server]\nlisten = \"localhost:80x\"\n"), vec!["test.toml:4: server.listen = \"localhost:80x\": invalid address (expected IP:PORT, e.g. \"127.0.0.1:8080\")"]),
        // Duplicate rule name, pointing at the first.
        (
            format!("{MINIMAL}[[rules]]\nname = \"dup\"\nthen.status = 404\n\n[[rules]]\nname = \"dup\"\nthen.status = 410\n"),
            vec!["test.toml:8: rules[1] \"dup\": name = \"dup\": duplicate rule name (first defined at line 4)"],
        ),
        // Missing upstream.url.
        ("[server]\nlisten = \"127.0.0.1:1\"\n".into(), vec!["test.toml: upstream.url: missing (required)"]),
        ("[upstream]\ntimeout = \"1s\"\n".into(), vec!["test.toml:1: upstream.url: missing (required)"]),
        // Missing rule name: the rule's [[rules]] line.
        (format!("{MINIMAL}\n[[rules]]\nthen.status = 404\n"), vec!["test.toml:4: rules[0]: name: missing"]),
        // A json entry with zero or two tests.
        (rule("when.json = [{ pointer = \"/a\" }]\nthen.status = 404"), vec!["test.toml:6:", "rule \"r1\"", "when.json[0]", "no test for the pointer"]),
        (
            rule("when.json = [\n  { pointer = \"/a\", exists = true },\n  { pointer = \"/b\", equals = 1, is_null = true },\n]\nthen.status = 404"),
            vec!["test.toml:8:", "rule \"r1\"", "when.json[1]", "2 tests (equals, is_null)"],
        ),
        // Bad header name and value.
        (rule("when.header = [{ name = \"x legacy\" }]\nthen.status = 404"), vec!["test.toml:6:", "when.header[0].name = \"x legacy\"", "invalid header name"]),
        (
            rule("then.headers = [{ name = \"x-a\", value = \"caf\\u00e9\\n\" }]"),
            vec!["test.toml:6:", "then.headers[0].value = \"café\\n\"", "invalid header value"],
        ),
        // Bad JSON pointer.
        (rule("when.json = [{ pointer = \"status\", exists = true }]\nthen.status = 404"), vec!["test.toml:6:", "when.json[0].pointer = \"status\"", "invalid JSON pointer"]),
        (rule("then.status_from = \"/a~2\""), vec!["test.toml:6:", "then.status_from = \"/a~2\"", "must be followed by 0 or 1"]),
        // Others a user will meet.
        (rule("when.status = [200]"), vec!["test.toml:4:", "rule \"r1\"", "then: rule does nothing"]),
        ("[upstream]\nurl = \"https://api.internal\"\nca = \"missing.pem\"\n".into(), vec!["test.toml:3: upstream.ca = \"missing.pem\"", "cannot read missing.pem"]),
        (format!("{MINIMAL}[server.tls]\ncert = \"c.pem\"\n"), vec!["server.tls.key: missing (required in [server.tls])"]),
        ("[upstream]\nurl = \"http://api/v1\"\n".into(), vec!["test.toml:2:", "must not have a path"]),
        (format!("{MINIMAL}[failures]\nconnect = 404\n"), vec!["test.toml:4: failures.connect = 404"]),
        (format!("{MINIMAL}[inspect]\nmax_body_bytes = 0\n"), vec!["test.toml:4: inspect.max_body_bytes = 0: out of range"]),
        (format!("{MINIMAL}[server]\nworkers = 0\n"), vec!["test.toml:4: server.workers = 0: out of range (expected 1..=1024)"]),
        // [audit]: a share and a bounded count.
        (format!("{MINIMAL}[audit]\nsample = 1.5\n"), vec!["test.toml:4: audit.sample = 1.5: out of range (expected 0.0 to 1.0"]),
        (format!("{MINIMAL}[audit]\nsample = -0.1\n"), vec!["test.toml:4: audit.sample = -0.1: out of range"]),
        (format!("{MINIMAL}[audit]\nsample = nan\n"), vec!["test.toml:4: audit.sample = NaN: not a number"]),
        (format!("{MINIMAL}[audit]\nsample = \"all\"\n"), vec!["test.toml:4:", "audit.sample", "invalid type: string"]),
        (format!("{MINIMAL}[audit]\nmax_routes = 0\n"), vec!["test.toml:4: audit.max_routes = 0: out of range (expected 1..=100000)"]),
        (format!("{MINIMAL}[audit]\nmax_routes = 100001\n"), vec!["test.toml:4: audit.max_routes = 100001: out of range"]),
        (rule("mode = \"dry-run\"\nthen.status = 404"), vec!["test.toml:6:8:", "rule \"r1\": mode", "unknown variant `dry-run`"]),
        ("[upstream\nurl = 1\n".into(), vec!["test.toml:1:10:"]),
    ]
}

#[test]
fn each_mistake_is_reported_with_line_field_and_value() {
    for (text, wants) in bad_inputs() {
        let err = load_err(&text, &[]);
        let shown = err.to_string();
        for want in &wants {
            assert!(
                shown.contains(want),
                "missing {want:?} in:\n{shown}\n--- config:\n{text}"
            );
        }
    }
}

#[test]
fn all_mistakes_in_a_file_are_reported_together() {
    let text = r#"
[server]
listen = "nowhere"

[upstream]
url = "http://127.0.0.1:3000"
timeout = "forever"

[[rules]]
name = "a"
when.path = "("
then.status = 1000
"#;
    let err = load_err(text, &[]);
    let lines: Vec<String> = err.issues().iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "test.toml:3: server.listen = \"nowhere\": invalid address (expected IP:PORT, e.g. \"127.0.0.1:8080\")",
            "test.toml:7: upstream.timeout = \"forever\": invalid duration (expected e.g. \"2s\", \"500ms\")",
            "test.toml:11: rule \"a\": when.path = \"(\": invalid regex: unclosed group",
            "test.toml:12: rule \"a\": then.status = 1000: invalid status (expected 200..=599)",
        ]
    );
}

#[test]
fn unreadable_file_names_the_path() {
    let path = config_dir().join("does-not-exist.toml");
    let err = config::load_with_env(&path, HashMap::new())
        .err()
        .map(|e| e.to_string());
    let err = err.unwrap_or_default();
    assert!(
        err.contains("does-not-exist.toml: cannot read config file"),
        "{err}"
    );
}

#[test]
fn every_shipped_config_loads() {
    let Ok(entries) = std::fs::read_dir(config_dir()) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    for path in paths {
        let config = config::load_with_env(&path, HashMap::new()).unwrap_or_else(|e| panic!("{e}"));
        assert!(config.summary().contains(": ok: "), "{}", config.summary());
    }
}

#[test]
fn example_config_holds_the_demo_rules() {
    let path = config_dir().join("candor.toml");
    if !path.exists() {
        return;
    }
    let c = config::load_with_env(&path, HashMap::new()).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = c.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "user-not-found",
            "account-created",
            "job-accepted",
            "validation-failed",
            "version-conflict",
            "no-credentials",
            "allow-missing",
            "dependency-down",
            "quota-exceeded",
            "null-entity",
            "delete-empty",
            "status-in-body"
        ]
    );
    assert_eq!(c.upstream.url.to_string(), "http://127.0.0.1:3000/");

    let rule = |name: &str| c.rules.get(name).unwrap_or_else(|| panic!("rule {name}"));
    let unf = rule("user-not-found");
    assert_eq!(unf.when.status, [StatusMatch::Code(StatusCode::OK)]);
    assert_eq!(unf.when.json.len(), 2);
    assert_eq!(unf.then.status, Some(StatusCode::NOT_FOUND));
    assert_eq!(unf.then.body, BodyAction::Problem);
    assert_eq!(
        unf.then.detail_from.as_ref().map(|p| p.as_str()),
        Some("/message")
    );

    let quota = rule("quota-exceeded");
    assert!(
        matches!(&quota.then.retry_after, Some(RetryAfterSource::From(p)) if p.as_str() == "/retry_in")
    );

    let null = rule("null-entity");
    assert_eq!(null.when.method, [http::Method::GET]);
    assert!(matches!(null.when.json[0].op, JsonOp::IsNull(true)));

    let empty = rule("delete-empty");
    let body = empty
        .when
        .body
        .as_ref()
        .unwrap_or_else(|| panic!("body regex"));
    assert!(body.is_match(b" { \n} "));
    assert!(!body.is_match(b"{\"a\":1}"));
    assert_eq!(empty.then.status, Some(StatusCode::NO_CONTENT));
    assert_eq!(empty.then.body, BodyAction::Empty);

    let sib = rule("status-in-body");
    assert_eq!(sib.mode, Mode::Enforce);
    assert_eq!(sib.then.status, Some(StatusCode::BAD_GATEWAY));
    assert_eq!(sib.then.body, BodyAction::Keep);

    let summary = c.summary();
    let want_tail = ", 12 rules, 18 tests";
    assert!(
        summary.starts_with(&format!(
            "{}: ok: upstream http://127.0.0.1:3000, listen 127.0.0.1:8080, admin 127.0.0.1:9901, ",
            path.display()
        )),
        "{summary}"
    );
    assert!(summary.ends_with(want_tail), "{summary}");
}

#[test]
fn example_config_takes_env_overrides() {
    let path = config_dir().join("candor.toml");
    if !path.exists() {
        return;
    }
    let c = config::load_with_env(&path, env(&[("CANDOR__SERVER__WORKERS", "3")]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.server.workers, 3);
    assert!(c.summary().contains(", 3 workers, "));
}

#[test]
fn load_reads_the_file_and_the_process_env() {
    let path = config_dir().join("candor.toml");
    let ours = std::env::vars_os()
        .any(|(k, _)| k.to_string_lossy().to_lowercase().starts_with("candor__"));
    if !path.exists() || ours {
        return;
    }
    let c = config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.rules.len(), 12);
}

#[test]
fn summary_counts_rules_workers_and_shadow_rules() {
    let text = format!(
        "{MINIMAL}[server]\nworkers = 1\n\n[[rules]]\nname = \"a\"\nthen.status = 404\n\n\
         [[rules]]\nname = \"b\"\nmode = \"shadow\"\nthen.status = 410\n"
    );
    let c = load_ok(&text, &[]);
    assert_eq!(c.rules.shadow_count(), 1);
    assert_eq!(c.rules.get("b").map(|r| r.mode), Some(Mode::Shadow));
    assert_eq!(
        c.summary(),
        "test.toml: ok: upstream http://127.0.0.1:3000, listen 127.0.0.1:8080, \
         admin 127.0.0.1:9901, 1 worker, 2 rules (1 shadow)"
    );
}
