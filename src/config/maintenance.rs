//! Phase 3 for `[maintenance]`: the file's maintenance window, checked and compiled into
//! [`Maintenance`].
//!
//! The admin API (`PUT /maintenance`) changes `retry_after` and `detail` at run time; it checks
//! them with [`retry_after`] and [`MaintenanceDetail::parse`], the same checks as the file, so a
//! value the file would refuse is refused there too, with the same message.

use std::fmt;
use std::time::Duration;

use super::error::{show_str, FieldPath, Problems};
use super::spec::{DurationSpec, MaintenanceSpec};
use super::values::{duration, DurationKind};
use crate::pattern;
use crate::problem::MAX_DETAIL_CHARS;

/// `[maintenance]`, compiled: what candor answers while maintenance mode is on, and which paths
/// it still forwards. The live on/off state is `crate::maintenance`'s; this is the file's value,
/// applied at start and on every reload.
#[derive(Debug, Clone)]
pub struct Maintenance {
    /// Whether the file turns maintenance mode on.
    pub enabled: bool,
    /// `Retry-After` on the 503 answers (sent in whole seconds, rounded up).
    pub retry_after: Duration,
    /// The problem document's `detail`.
    pub detail: MaintenanceDetail,
    /// Paths still forwarded while maintenance is on (a health check the upstream answers).
    pub except_paths: Vec<regex::Regex>,
}

/// A maintenance `detail`: non-empty, at most [`MAX_DETAIL_CHARS`] characters, no control
/// characters. It goes into every 503 body as written, so it is checked once, here, and the type
/// says it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceDetail(String);

impl MaintenanceDetail {
    /// Checks `text`; the error says what is wrong, for a config problem or an admin API answer.
    pub fn parse(text: &str) -> Result<MaintenanceDetail, String> {
        if text.trim().is_empty() {
            return Err("must not be empty".to_owned());
        }
        let chars = text.chars().count();
        if chars > MAX_DETAIL_CHARS {
            return Err(format!(
                "too long ({chars} characters, at most {MAX_DETAIL_CHARS})"
            ));
        }
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            return Err(format!(
                "must not contain control characters (found U+{:04X})",
                u32::from(c)
            ));
        }
        Ok(MaintenanceDetail(text.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MaintenanceDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a maintenance `retry_after` as the file's is checked (a `Retry-After`: 0s to 24h); the
/// error is the message a config problem would carry.
pub fn retry_after(text: &str) -> Result<Duration, String> {
    let mut problems = Problems::default();
    let at = FieldPath::root("maintenance").key("retry_after");
    duration(
        &mut problems,
        &at,
        &DurationSpec(text.to_owned()),
        DurationKind::RetryAfter,
    )
    .ok_or_else(|| {
        problems
            .list
            .pop()
            .map_or_else(|| "invalid duration".to_owned(), |p| p.message)
    })
}

/// Compiles `[maintenance]`, recording every problem.
pub(crate) fn compile(spec: &MaintenanceSpec, problems: &mut Problems) -> Option<Maintenance> {
    let at = FieldPath::root("maintenance");
    let retry_after = duration(
        problems,
        &at.key("retry_after"),
        &spec.retry_after,
        DurationKind::RetryAfter,
    );
    let detail = match MaintenanceDetail::parse(&spec.detail) {
        Ok(detail) => Some(detail),
        Err(message) => {
            problems.push(&at.key("detail"), Some(show_str(&spec.detail)), message);
            None
        }
    };
    let mut except_paths = Some(Vec::with_capacity(spec.except_paths.0.len()));
    for (index, text) in spec.except_paths.0.iter().enumerate() {
        match pattern::text(text) {
            Ok(regex) => {
                if let Some(list) = except_paths.as_mut() {
                    list.push(regex);
                }
            }
            Err(err) => {
                let path = at.key("except_paths").index(index);
                problems.push(&path, Some(show_str(text)), err.to_string());
                except_paths = None;
            }
        }
    }
    Some(Maintenance {
        enabled: spec.enabled,
        retry_after: retry_after?,
        detail: detail?,
        except_paths: except_paths?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::spec::StringListSpec;
    use super::*;

    fn check(spec: MaintenanceSpec) -> (Option<Maintenance>, Vec<(String, String)>) {
        let mut problems = Problems::default();
        let out = compile(&spec, &mut problems);
        let found = problems
            .list
            .into_iter()
            .map(|p| (p.path.to_string(), p.message))
            .collect();
        (out, found)
    }

    #[test]
    fn the_defaults_compile() {
        let (out, found) = check(MaintenanceSpec::default());
        assert!(found.is_empty(), "{found:?}");
        let out = out.unwrap();
        assert!(!out.enabled);
        assert_eq!(out.retry_after, Duration::from_secs(300));
        assert_eq!(
            out.detail.as_str(),
            "The service is down for scheduled maintenance."
        );
        assert!(out.except_paths.is_empty());
    }

    #[test]
    fn each_bad_value_is_a_located_problem() {
        let long = "x".repeat(MAX_DETAIL_CHARS + 1);
        let cases: [(MaintenanceSpec, &str, &str); 7] = [
            (
                MaintenanceSpec {
                    except_paths: StringListSpec(vec!["^/healthz$".into(), "([a-z".into()]),
                    ..Default::default()
                },
                "maintenance.except_paths[1]",
                "invalid regex: unclosed character class",
            ),
            (
                MaintenanceSpec {
                    retry_after: DurationSpec("soon".into()),
                    ..Default::default()
                },
                "maintenance.retry_after",
                "invalid duration",
            ),
            (
                MaintenanceSpec {
                    retry_after: DurationSpec("25h".into()),
                    ..Default::default()
                },
                "maintenance.retry_after",
                "must be at most 24h",
            ),
            (
                MaintenanceSpec {
                    detail: String::new(),
                    ..Default::default()
                },
                "maintenance.detail",
                "must not be empty",
            ),
            (
                MaintenanceSpec {
                    detail: "   ".into(),
                    ..Default::default()
                },
                "maintenance.detail",
                "must not be empty",
            ),
            (
                MaintenanceSpec {
                    detail: long,
                    ..Default::default()
                },
                "maintenance.detail",
                "too long (301 characters, at most 300)",
            ),
            (
                MaintenanceSpec {
                    detail: "back\r\nsoon".into(),
                    ..Default::default()
                },
                "maintenance.detail",
                "must not contain control characters (found U+000D)",
            ),
        ];
        for (spec, field, message) in cases {
            let (out, found) = check(spec);
            assert!(out.is_none(), "{field}: accepted");
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(found[0].0, field);
            assert!(found[0].1.contains(message), "{found:?}");
        }
    }

    #[test]
    fn the_admin_api_checks_are_the_files() {
        assert_eq!(retry_after("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(retry_after("0s"), Ok(Duration::ZERO));
        assert!(retry_after("10").unwrap_err().contains("invalid duration"));
        assert!(MaintenanceDetail::parse("Back at 14:00 UTC.").is_ok());
        assert!(MaintenanceDetail::parse("a\u{7f}").is_err());
        // 300 characters, not bytes.
        assert!(MaintenanceDetail::parse(&"é".repeat(MAX_DETAIL_CHARS)).is_ok());
    }
}
