//! Configuration errors: [`ConfigError`] and the located [`Issue`] it carries.
//!
//! Every problem found while loading a config becomes one [`Issue`], rendered on one line so
//! `candor check` can print a list a user fixes top to bottom:
//!
//! ```text
//! config/candor.toml:14: rule "user-not-found": when.path = "([a-z": invalid regex: unclosed group
//! CANDOR__UPSTREAM__TIMEOUT = "soon": upstream.timeout: invalid duration (expected e.g. "2s", "500ms")
//! ```
//!
//! The validators never know line numbers; they record a `Problem` (a field path, the value and
//! what is wrong) and the loader's locator turns it into an [`Issue`] afterwards.

use std::fmt;
use std::path::PathBuf;

/// Everything that can stop a config from loading.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read (missing, unreadable, or not UTF-8).
    ///
    /// The I/O error is part of the message rather than a `source`, so printing this error alone
    /// (as `candor check` does) says everything once.
    #[error("{}: cannot read config file: {error}", path.display())]
    Unreadable {
        /// The path as given.
        path: PathBuf,
        /// Why reading failed.
        error: std::io::Error,
    },
    /// The TOML is malformed, or does not fit the schema (unknown key, wrong type).
    #[error("{}", IssueLines(.0))]
    Syntax(Vec<Issue>),
    /// A `CANDOR__…` environment override could not be applied.
    #[error("{}", IssueLines(.0))]
    Env(Vec<Issue>),
    /// The config parsed but some values are invalid; every invalid value is listed.
    #[error("{}", IssueLines(.0))]
    Invalid(Vec<Issue>),
}

impl ConfigError {
    /// The located issues behind this error (empty for [`ConfigError::Unreadable`]).
    pub fn issues(&self) -> &[Issue] {
        match self {
            ConfigError::Unreadable { .. } => &[],
            ConfigError::Syntax(issues)
            | ConfigError::Env(issues)
            | ConfigError::Invalid(issues) => issues,
        }
    }
}

/// Where the offending value of an [`Issue`] came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A place in the config text; `line` and `column` are 1-based.
    Line {
        /// 1-based line number.
        line: usize,
        /// 1-based column, known for syntax and schema errors only.
        column: Option<usize>,
    },
    /// A `CANDOR__…` environment variable, with its raw value.
    Env {
        /// The variable's name as it was set.
        var: String,
        /// The variable's raw value.
        value: String,
    },
    /// Nowhere in particular, e.g. a required key missing from the whole file.
    Unknown,
}

/// One problem in a config, with everything a user needs to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The file path (or a name such as `<demo>`) the config was loaded from.
    pub origin: String,
    /// Where the value came from.
    pub location: Location,
    /// The rule the field belongs to, as rendered: `rule "name"`, `rules[3] "dup"` when the name
    /// is not unique, or `rules[3]` when it is missing. `None` outside `[[rules]]`.
    pub rule: Option<String>,
    /// The field path, relative to the rule when `rule` is set (`when.json[0].pointer`),
    /// otherwise from the root (`server.listen`). Empty for pure syntax errors.
    pub field: String,
    /// The offending value, rendered as TOML (`"([a-z"`, `700`), when there is one.
    pub value: Option<String>,
    /// What is wrong and, where it helps, what was expected.
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut env_value = None;
        match &self.location {
            Location::Line {
                line,
                column: Some(column),
            } => write!(f, "{}:{line}:{column}: ", self.origin)?,
            Location::Line { line, column: None } => write!(f, "{}:{line}: ", self.origin)?,
            Location::Env { var, value } => {
                let shown = show_str(value);
                write!(f, "{var} = {shown}: ")?;
                env_value = Some(shown);
            }
            Location::Unknown => write!(f, "{}: ", self.origin)?,
        }
        if let Some(rule) = &self.rule {
            write!(f, "{}: ", OneLine(rule))?;
        }
        if !self.field.is_empty() {
            write!(f, "{}", OneLine(&self.field))?;
            // An env issue already showed the raw value; repeat it only when the field is a
            // part of it (one element of a comma-separated list).
            match &self.value {
                Some(value) if env_value.as_ref() != Some(value) => write!(f, " = {value}")?,
                _ => {}
            }
            f.write_str(": ")?;
        }
        write!(f, "{}", OneLine(&self.message))
    }
}

/// Writes text with control characters escaped, so a key or message quoting odd input (a TOML
/// key containing a newline) cannot break the one-issue-per-line output.
struct OneLine<'a>(&'a str);

impl fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Renders a list of issues one per line.
struct IssueLines<'a>(&'a [Issue]);

impl fmt::Display for IssueLines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

/// One step of a field path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A path from the root of the config to a value, e.g. `rules[1].when.json[0].pointer`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldPath(pub(crate) Vec<Seg>);

impl FieldPath {
    /// The path of a top-level key.
    pub(crate) fn root(key: &str) -> Self {
        FieldPath(vec![Seg::Key(key.to_owned())])
    }

    /// This path extended by a table key.
    pub(crate) fn key(&self, key: &str) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_owned()));
        FieldPath(segs)
    }

    /// This path extended by an array index.
    pub(crate) fn index(&self, index: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        FieldPath(segs)
    }

    /// The path rendered from segment `skip` on, as a user writes it (`when.json[0].pointer`).
    pub(crate) fn render_from(&self, skip: usize) -> String {
        let mut out = String::new();
        for seg in self.0.iter().skip(skip) {
            match seg {
                Seg::Key(key) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(key);
                }
                Seg::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        out
    }

    /// Whether this path is inside a `[[rules]]` or `[[tests]]` entry, whose issues name the
    /// entry and render the field relative to it.
    pub(crate) fn in_entry(&self) -> bool {
        matches!(self.0.as_slice(), [Seg::Key(key), Seg::Index(_), ..] if key == "rules" || key == "tests")
    }

    /// The index of the `[[rules]]` entry this path is inside, if any.
    pub(crate) fn rule_index(&self) -> Option<usize> {
        match self.0.as_slice() {
            [Seg::Key(key), Seg::Index(i), ..] if key == "rules" => Some(*i),
            _ => None,
        }
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render_from(0))
    }
}

/// A validation finding before it is located: what is wrong with which value.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    pub(crate) path: FieldPath,
    pub(crate) rule: Option<String>,
    pub(crate) value: Option<String>,
    pub(crate) message: String,
}

/// Collects every [`Problem`] of a validation pass, so all are reported at once.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    pub(crate) list: Vec<Problem>,
    /// The label of the rule being validated, stamped on each problem pushed meanwhile.
    pub(crate) rule: Option<String>,
}

impl Problems {
    /// Records that the value at `path` (rendered as `value`) is wrong because of `message`.
    pub(crate) fn push(
        &mut self,
        path: &FieldPath,
        value: Option<String>,
        message: impl Into<String>,
    ) {
        self.list.push(Problem {
            path: path.clone(),
            rule: self.rule.clone(),
            value,
            message: message.into(),
        });
    }

    /// Whether nothing was found.
    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Longest rendered value; longer ones (a 4 KiB regex) are cut so an issue stays one line.
const MAX_SHOWN_CHARS: usize = 80;

/// Renders a string the way it could be written in TOML, on one line.
///
/// Strings with backslashes (regexes) are shown as literal strings (`'^\s*$'`) so the user sees
/// the pattern they wrote, not one with doubled backslashes.
pub(crate) fn show_str(s: &str) -> String {
    let cut: String = s.chars().take(MAX_SHOWN_CHARS).collect();
    let ellipsis = if cut.len() < s.len() { "…" } else { "" };
    let literal_ok =
        cut.contains('\\') && !cut.contains('\'') && !cut.chars().any(char::is_control);
    if literal_ok {
        format!("'{cut}'{ellipsis}")
    } else {
        // A JSON string literal is also a valid TOML basic string, escapes included.
        let quoted = serde_json::Value::String(cut).to_string();
        format!("{quoted}{ellipsis}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(location: Location, rule: Option<&str>, field: &str, value: Option<&str>) -> Issue {
        Issue {
            origin: "c.toml".into(),
            location,
            rule: rule.map(str::to_owned),
            field: field.into(),
            value: value.map(str::to_owned),
            message: "bad".into(),
        }
    }

    #[test]
    fn issues_render_on_one_line_each() {
        let line = |line| Location::Line { line, column: None };
        let env = |var: &str, value: &str| Location::Env {
            var: var.into(),
            value: value.into(),
        };
        let cases = [
            (
                issue(line(3), None, "server.listen", Some("\"x\"")),
                "c.toml:3: server.listen = \"x\": bad",
            ),
            (
                issue(
                    Location::Line {
                        line: 2,
                        column: Some(5),
                    },
                    None,
                    "",
                    None,
                ),
                "c.toml:2:5: bad",
            ),
            (
                issue(line(9), Some("rule \"a\""), "when.path", Some("\"(\"")),
                "c.toml:9: rule \"a\": when.path = \"(\": bad",
            ),
            (
                issue(Location::Unknown, None, "upstream.url", None),
                "c.toml: upstream.url: bad",
            ),
            (
                issue(env("CANDOR__A__B", "soon"), None, "a.b", Some("\"soon\"")),
                "CANDOR__A__B = \"soon\": a.b: bad",
            ),
            (
                issue(env("CANDOR__A__B", "x,"), None, "a.b[1]", Some("\"\"")),
                "CANDOR__A__B = \"x,\": a.b[1] = \"\": bad",
            ),
        ];
        for (issue, want) in cases {
            assert_eq!(issue.to_string(), want);
        }
    }

    #[test]
    fn error_display_lists_every_issue() {
        let one = issue(
            Location::Line {
                line: 1,
                column: None,
            },
            None,
            "a",
            None,
        );
        let err = ConfigError::Invalid(vec![one.clone(), one]);
        assert_eq!(err.to_string(), "c.toml:1: a: bad\nc.toml:1: a: bad");
        assert_eq!(err.issues().len(), 2);
    }

    #[test]
    fn values_are_shown_as_toml_on_one_line() {
        let cases = [
            ("plain", "\"plain\""),
            (r"^\s*$", r"'^\s*$'"),
            ("it's \\d", "\"it's \\\\d\""),
            ("two\nlines", "\"two\\nlines\""),
        ];
        for (input, want) in cases {
            assert_eq!(show_str(input), want, "{input:?}");
        }
        let long = "a".repeat(200);
        assert!(show_str(&long).ends_with('…'));
    }

    #[test]
    fn field_paths_render_like_toml_keys() {
        let path = FieldPath::root("rules")
            .index(1)
            .key("when")
            .key("json")
            .index(0)
            .key("pointer");
        assert_eq!(path.to_string(), "rules[1].when.json[0].pointer");
        assert_eq!(path.render_from(2), "when.json[0].pointer");
        assert_eq!(path.rule_index(), Some(1));
        assert_eq!(FieldPath::root("server").rule_index(), None);
    }
}
