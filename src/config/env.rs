//! Phase 2: layering `CANDOR__SECTION__KEY` environment overrides over the file.
//!
//! The `config` crate does the layering (file, then environment; last wins). Its errors carry
//! no position and sometimes no key, so when layering fails each variable is tried on its own
//! to find the ones at fault, and every issue names its variable and value.
//!
//! Overrides are for scalar and list settings. `[[rules]]` are arrays of tables that env
//! variables cannot express sensibly, so a variable under `CANDOR__RULES` is refused outright.

use std::collections::HashMap;

use config::{Environment, File, FileFormat};

use super::error::{ConfigError, Issue, Location};
use super::spec::FileSpec;

/// The prefix of candor's variables, lowercased as the `config` crate compares keys.
const PREFIX: &str = "candor__";
/// Keys whose env values are comma-separated lists.
const LIST_KEYS: [&str; 3] = [
    "inspect.content_types",
    "retry_after.statuses",
    "maintenance.except_paths",
];

/// Keys whose values are secrets: an issue about one shows `<redacted>` instead of the value.
const SECRET_KEYS: [&str; 1] = ["server.admin_token"];

/// The value of `var` (setting `key`) as an issue may show it: as set, or `<redacted>` for a
/// secret.
pub(crate) fn shown_value(var: &str, key: &str, value: &str) -> String {
    let key = if key.is_empty() {
        var.to_lowercase()
            .get(PREFIX.len()..)
            .unwrap_or("")
            .replace("__", ".")
    } else {
        key.to_owned()
    };
    let secret = SECRET_KEYS.iter().any(|secret| {
        key.strip_prefix(secret)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    });
    if secret {
        "<redacted>".to_owned()
    } else {
        value.to_owned()
    }
}

/// One `CANDOR__…` variable and the config key it sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvOverride {
    /// The variable's name as set (`CANDOR__UPSTREAM__URL`).
    pub(crate) var: String,
    /// Its raw value.
    pub(crate) value: String,
    /// The dotted key it sets (`upstream.url`), derived exactly as the `config` crate does.
    pub(crate) key: String,
}

/// Picks candor's variables out of `env`, sorted by name so reports are stable.
///
/// An empty value counts as unset (as the `config` source is told too), so a compose file can
/// template `CANDOR__X=${X:-}` without overriding anything.
pub(crate) fn overrides(env: HashMap<String, String>) -> Vec<EnvOverride> {
    let mut out: Vec<EnvOverride> = env
        .into_iter()
        .filter(|(var, value)| !value.is_empty() && var.to_lowercase().starts_with(PREFIX))
        .map(|(var, value)| {
            let key = var.to_lowercase()[PREFIX.len()..].replace("__", ".");
            EnvOverride { var, value, key }
        })
        .collect();
    out.sort_by(|a, b| a.var.cmp(&b.var));
    out
}

/// Reads candor's variables from the process environment.
pub(crate) fn from_process(origin: &str) -> Result<HashMap<String, String>, ConfigError> {
    let mut vars = HashMap::new();
    let mut issues = Vec::new();
    for (var, value) in std::env::vars_os() {
        // A name that is not UTF-8 cannot be one of ours; the `config` crate skips those too.
        let Ok(var) = var.into_string() else {
            continue;
        };
        if !var.to_lowercase().starts_with(PREFIX) {
            continue;
        }
        match value.into_string() {
            Ok(value) => {
                vars.insert(var, value);
            }
            Err(raw) => issues.push(env_issue(
                origin,
                &var,
                &raw.to_string_lossy(),
                "",
                "value is not valid UTF-8",
            )),
        }
    }
    if issues.is_empty() {
        Ok(vars)
    } else {
        Err(ConfigError::Env(issues))
    }
}

/// Layers `env` over the file `text` with the `config` crate and deserializes the result.
pub(crate) fn layer(
    text: &str,
    origin: &str,
    env: &[EnvOverride],
) -> Result<FileSpec, ConfigError> {
    let refused: Vec<Issue> = env.iter().filter_map(|e| refuse(origin, e)).collect();
    if !refused.is_empty() {
        return Err(ConfigError::Env(refused));
    }
    let all: Vec<&EnvOverride> = env.iter().collect();
    let error = match build(text, &all) {
        Ok(spec) => return Ok(spec),
        Err(error) => error,
    };
    if env.is_empty() {
        // The file alone passed the strict toml pass, so this is a disagreement between the
        // two deserializers, not a user error we can point at.
        let message = format!("cannot be read by the config layer: {}", describe(&error));
        return Err(ConfigError::Syntax(vec![Issue {
            origin: origin.to_owned(),
            location: Location::Unknown,
            rule: None,
            field: String::new(),
            value: None,
            message,
        }]));
    }
    let mut issues: Vec<Issue> = env
        .iter()
        .filter_map(|e| {
            let alone = build(text, &[e]).err()?;
            Some(env_issue(
                origin,
                &e.var,
                &e.value,
                &e.key,
                &describe(&alone),
            ))
        })
        .collect();
    if issues.is_empty() {
        let vars: Vec<&str> = env.iter().map(|e| e.var.as_str()).collect();
        issues.push(Issue {
            origin: origin.to_owned(),
            location: Location::Unknown,
            rule: None,
            field: String::new(),
            value: None,
            message: format!(
                "environment overrides ({}) conflict: {}",
                vars.join(", "),
                describe(&error)
            ),
        });
    }
    Err(ConfigError::Env(issues))
}

/// An issue for a variable that cannot be an override at all.
fn refuse(origin: &str, e: &EnvOverride) -> Option<Issue> {
    let first = e.key.split(['.', '[']).next().unwrap_or("");
    let message = if first == "rules" {
        "rules can only be defined in the config file ([[rules]] tables)"
    } else if e.key.is_empty() || e.key.split('.').any(str::is_empty) {
        "does not name a setting (expected CANDOR__SECTION__KEY, e.g. CANDOR__UPSTREAM__URL)"
    } else {
        return None;
    };
    Some(env_issue(origin, &e.var, &e.value, &e.key, message))
}

/// Builds the layered config from the file and the given variables.
fn build(text: &str, vars: &[&EnvOverride]) -> Result<FileSpec, config::ConfigError> {
    let source: config::Map<String, String> = vars
        .iter()
        .map(|e| (e.var.clone(), e.value.clone()))
        .collect();
    let mut environment = Environment::with_prefix("CANDOR")
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .ignore_empty(true)
        .list_separator(",");
    for key in LIST_KEYS {
        environment = environment.with_list_parse_key(key);
    }
    config::Config::builder()
        .add_source(File::from_str(text, FileFormat::Toml))
        .add_source(environment.source(Some(source)))
        .build()?
        .try_deserialize()
}

/// The `config` crate's error without its key and origin, which the issue states itself.
fn describe(error: &config::ConfigError) -> String {
    match error {
        config::ConfigError::Type {
            unexpected,
            expected,
            ..
        } => format!("invalid type: {unexpected}, expected {expected}"),
        config::ConfigError::At { error, .. } => describe(error),
        config::ConfigError::NotFound(key) => format!("missing {key}"),
        other => other.to_string(),
    }
}

fn env_issue(origin: &str, var: &str, value: &str, key: &str, message: &str) -> Issue {
    Issue {
        origin: origin.to_owned(),
        location: Location::Env {
            var: var.to_owned(),
            value: shown_value(var, key, value),
        },
        rule: None,
        field: key.to_owned(),
        value: None,
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<EnvOverride> {
        overrides(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    const FILE: &str = "[upstream]\nurl = \"http://127.0.0.1:3000\"\n";

    #[test]
    fn only_prefixed_non_empty_variables_count() {
        let got = env(&[
            ("CANDOR__UPSTREAM__URL", "http://x:1"),
            ("candor__server__listen", "0.0.0.0:1"),
            ("CANDOR_UPSTREAM__URL", "no"),
            ("PATH", "/bin"),
            ("CANDOR__SCRUB__ENABLED", ""),
        ]);
        let keys: Vec<&str> = got.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["upstream.url", "server.listen"]);
    }

    #[test]
    fn overrides_apply_with_their_types() {
        let vars = env(&[
            ("CANDOR__UPSTREAM__URL", "http://x:1"),
            ("CANDOR__FAILURES__CONNECT", "503"),
            ("CANDOR__SERVER__DEBUG_HEADERS", "false"),
            ("CANDOR__SERVER__WORKERS", "3"),
            ("CANDOR__RETRY_AFTER__STATUSES", "429,503,500"),
            ("CANDOR__INSPECT__CONTENT_TYPES", "application/json"),
        ]);
        let spec = layer(FILE, "f", &vars).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(spec.upstream.url.as_deref(), Some("http://x:1"));
        assert_eq!(spec.failures.connect, 503);
        assert!(!spec.server.debug_headers);
        assert_eq!(spec.server.workers, Some(3));
        assert_eq!(spec.retry_after.statuses.0.len(), 3);
        assert_eq!(spec.inspect.content_types.0, ["application/json"]);
    }

    #[test]
    fn maintenance_overrides_apply_with_their_types() {
        let vars = env(&[
            ("CANDOR__MAINTENANCE__ENABLED", "true"),
            ("CANDOR__MAINTENANCE__RETRY_AFTER", "10m"),
            ("CANDOR__MAINTENANCE__EXCEPT_PATHS", "^/healthz$,^/status/"),
            ("CANDOR__SERVER__ADMIN_TOKEN", "0123456789abcdef0123"),
        ]);
        let spec = layer(FILE, "f", &vars).unwrap_or_else(|e| panic!("{e}"));
        assert!(spec.maintenance.enabled);
        assert_eq!(spec.maintenance.retry_after.0, "10m");
        assert_eq!(spec.maintenance.except_paths.0, ["^/healthz$", "^/status/"]);
        assert_eq!(
            spec.server.admin_token.map(|t| t.0).as_deref(),
            Some("0123456789abcdef0123")
        );
        // One regex alone is a one-element list.
        let vars = env(&[("CANDOR__MAINTENANCE__EXCEPT_PATHS", "^/healthz$")]);
        let spec = layer(FILE, "f", &vars).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(spec.maintenance.except_paths.0, ["^/healthz$"]);
    }

    #[test]
    fn an_issue_never_shows_the_admin_token() {
        let vars = env(&[("CANDOR__SERVER__ADMIN_TOKEN__X", "hunter2hunter2hunter2")]);
        let err = layer(FILE, "f", &vars).expect_err("not a setting");
        let text = err.to_string();
        assert!(
            !text.contains("hunter2") && text.contains("<redacted>"),
            "{text}"
        );
    }

    #[test]
    fn a_single_number_is_a_one_element_status_list() {
        let vars = env(&[("CANDOR__RETRY_AFTER__STATUSES", "503")]);
        let spec = layer(FILE, "f", &vars).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(spec.retry_after.statuses.0.len(), 1);
    }

    #[test]
    fn failures_name_each_bad_variable() {
        let cases = [
            (vec![("CANDOR__UPSTREAM__URLL", "http://x")], "CANDOR__UPSTREAM__URLL = \"http://x\": upstream.urll: unknown field `urll`"),
            (vec![("CANDOR__UPSTREAM__TIMEOUT", "5")], "CANDOR__UPSTREAM__TIMEOUT = \"5\": upstream.timeout: invalid type: integer `5`, expected a duration string like \"5s\""),
            (vec![("CANDOR__SERVER__DEBUG_HEADERS", "maybe")], "CANDOR__SERVER__DEBUG_HEADERS = \"maybe\": server.debug_headers: invalid type"),
            (vec![("CANDOR__RULES__0__NAME", "x")], "CANDOR__RULES__0__NAME = \"x\": rules.0.name: rules can only be defined in the config file"),
            (vec![("CANDOR__", "x")], "does not name a setting"),
            (vec![("CANDOR__SERVER____LISTEN", "x")], "does not name a setting"),
            (
                vec![("CANDOR__UPSTREAM__URL", "http://ok:1"), ("CANDOR__NOPE__X", "1")],
                "CANDOR__NOPE__X = \"1\": nope.x: unknown field `nope`",
            ),
        ];
        for (pairs, want) in cases {
            let err = layer(FILE, "f", &env(&pairs))
                .err()
                .unwrap_or_else(|| panic!("{pairs:?} accepted"));
            assert!(matches!(err, ConfigError::Env(_)), "{err:?}");
            let text = err.to_string();
            assert!(text.contains(want), "{pairs:?}:\n{text}");
            assert_eq!(err.issues().len(), 1, "{text}");
        }
    }
}
