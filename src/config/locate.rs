//! Finding where a field is: a line in the config text, or the env variable that set it.
//!
//! The `config` crate's merged tree has no positions, so [`Locator`] re-reads the raw text with
//! `toml::de::DeTable`, whose keys and values carry byte spans, and walks a field path such as
//! `rules[1].when.json[0].pointer` down to a span. A value set by a `CANDOR__…` variable is
//! attributed to that variable instead, since its line in the file (if any) is not what is wrong.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::env::EnvOverride;
use super::error::{show_str, FieldPath, Issue, Location, Problem, Seg};

/// Locates fields of one config text.
pub(crate) struct Locator<'a> {
    origin: &'a str,
    text: &'a str,
    /// The parsed document; `None` when the text is not valid TOML.
    root: Option<DeTable<'a>>,
    env: &'a [EnvOverride],
}

impl<'a> Locator<'a> {
    /// A locator for `text` (named `origin` in messages) and the env overrides applied to it.
    pub(crate) fn new(
        origin: &'a str,
        text: &'a str,
        root: Option<DeTable<'a>>,
        env: &'a [EnvOverride],
    ) -> Self {
        Locator {
            origin,
            text,
            root,
            env,
        }
    }

    /// The 1-based line of the field at `path`, or of its nearest ancestor present in the text
    /// (a missing `name` points at its rule's `[[rules]]` header).
    pub(crate) fn line(&self, path: &FieldPath) -> Option<usize> {
        self.span(path).map(|span| self.line_col(span.start).0)
    }

    /// The env override that set the value at `path` (or a table or list containing it).
    fn env_for(&self, path: &FieldPath) -> Option<&EnvOverride> {
        let dotted = path.to_string();
        self.env.iter().find(|e| {
            dotted
                .strip_prefix(e.key.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        })
    }

    /// Turns a validation problem into a located issue.
    pub(crate) fn issue(&self, problem: Problem) -> Issue {
        if let Some(env) = self.env_for(&problem.path) {
            return Issue {
                origin: self.origin.to_owned(),
                location: Location::Env {
                    var: env.var.clone(),
                    value: super::env::shown_value(&env.var, &env.key, &env.value),
                },
                rule: None,
                field: problem.path.to_string(),
                value: problem.value,
                message: problem.message,
            };
        }
        let location = match self.line(&problem.path) {
            Some(line) => Location::Line { line, column: None },
            None => Location::Unknown,
        };
        let field = match problem.rule {
            Some(_) if problem.path.in_entry() => problem.path.render_from(2),
            _ => problem.path.to_string(),
        };
        Issue {
            origin: self.origin.to_owned(),
            location,
            rule: problem.rule,
            field,
            value: problem.value,
            message: problem.message,
        }
    }

    /// Turns a toml parse or schema error into a located issue, naming the field it is in.
    pub(crate) fn toml_issue(&self, error: &toml::de::Error) -> Issue {
        // toml's messages may run over lines ("…\nexpected …"); an issue is one line.
        let message = error
            .message()
            .trim()
            .lines()
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("; ");
        let Some(span) = error.span() else {
            return Issue {
                origin: self.origin.to_owned(),
                location: Location::Unknown,
                rule: None,
                field: String::new(),
                value: None,
                message,
            };
        };
        let (line, column) = self.line_col(span.start);
        let path = self.path_at(span.start);
        let rule = path.rule_index().map(|i| self.rule_label(i));
        let field = if rule.is_some() {
            path.render_from(2)
        } else {
            path.to_string()
        };
        Issue {
            origin: self.origin.to_owned(),
            location: Location::Line {
                line,
                column: Some(column),
            },
            rule,
            field,
            value: None,
            message,
        }
    }

    /// `rule "name"` for the rule at `index` as written in the text, or `rules[index]`.
    fn rule_label(&self, index: usize) -> String {
        let path = FieldPath::root("rules").index(index).key("name");
        match self.value(&path).and_then(|v| v.get_ref().as_str()) {
            Some(name) => format!("rule {}", show_str(name)),
            None => format!("rules[{index}]"),
        }
    }

    /// The value at exactly `path`, if present.
    fn value(&self, path: &FieldPath) -> Option<&Spanned<DeValue<'a>>> {
        let root = self.root.as_ref()?;
        let (Seg::Key(first), rest) = path.0.split_first()? else {
            return None;
        };
        let mut current = entry(root, first)?.1;
        for seg in rest {
            current = match (seg, current.get_ref()) {
                (Seg::Key(key), DeValue::Table(t)) => entry(t, key)?.1,
                (Seg::Index(i), DeValue::Array(a)) => a.get(*i)?,
                _ => return None,
            };
        }
        Some(current)
    }

    /// The span of the deepest part of `path` present in the text: the key of a table entry
    /// (its line is where a user looks), or an array element.
    fn span(&self, path: &FieldPath) -> Option<Range<usize>> {
        let root = self.root.as_ref()?;
        let mut best = None;
        // `None` stands for the root table, which is not wrapped in a `DeValue`.
        let mut current: Option<&DeValue<'a>> = None;
        for seg in &path.0 {
            let next = match (seg, current) {
                (Seg::Key(key), None) => entry(root, key).map(|(k, v)| (k.span(), v)),
                (Seg::Key(key), Some(DeValue::Table(t))) => {
                    entry(t, key).map(|(k, v)| (k.span(), v))
                }
                (Seg::Index(i), Some(DeValue::Array(a))) => a.get(*i).map(|v| (v.span(), v)),
                _ => None,
            };
            let Some((span, value)) = next else {
                break;
            };
            best = Some(span);
            current = Some(value.get_ref());
        }
        best
    }

    /// The path of the innermost key or value whose span holds byte `offset`.
    fn path_at(&self, offset: usize) -> FieldPath {
        let mut out = FieldPath::default();
        if let Some(root) = &self.root {
            find_in_table(root, offset, &mut out);
        }
        out
    }

    /// 1-based line and column (in characters) of byte `offset`.
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text.as_bytes()[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let column = self
            .text
            .get(line_start..offset)
            .map_or(offset - line_start, |s| s.chars().count());
        (line, column + 1)
    }
}

/// The entry for `key` in `table`.
fn entry<'t, 'a>(
    table: &'t DeTable<'a>,
    key: &str,
) -> Option<(
    &'t Spanned<std::borrow::Cow<'a, str>>,
    &'t Spanned<DeValue<'a>>,
)> {
    table.iter().find(|(k, _)| k.get_ref().as_ref() == key)
}

/// Extends `out` with the path to what holds `offset` inside `table`; whether anything did.
///
/// Containers are searched even when their own span does not hold `offset`: a `[[rules]]`
/// element's span covers only its header line, not the keys below it.
fn find_in_table(table: &DeTable<'_>, offset: usize, out: &mut FieldPath) -> bool {
    for (key, value) in table.iter() {
        out.0.push(Seg::Key(key.get_ref().to_string()));
        if key.span().contains(&offset) || find_in_value(value, offset, out) {
            return true;
        }
        out.0.pop();
    }
    false
}

fn find_in_value(value: &Spanned<DeValue<'_>>, offset: usize, out: &mut FieldPath) -> bool {
    match value.get_ref() {
        DeValue::Table(t) => find_in_table(t, offset, out) || value.span().contains(&offset),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                out.0.push(Seg::Index(i));
                if find_in_value(item, offset, out) {
                    return true;
                }
                out.0.pop();
            }
            value.span().contains(&offset)
        }
        _ => value.span().contains(&offset),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"[server]
listen = "x"

[[rules]]
name = "a"
when.json = [
  { pointer = "/a", equals = 1 },
  { pointer = "/b", exists = true },
]

[[rules]]
then.status = 1
"#;

    fn with_locator(check: impl FnOnce(&Locator<'_>)) {
        let root = DeTable::parse(TEXT).map(Spanned::into_inner).ok();
        check(&Locator::new("t.toml", TEXT, root, &[]));
    }

    #[test]
    fn fields_are_found_on_their_lines() {
        with_locator(|loc| {
            let rules = FieldPath::root("rules");
            let cases = [
                (FieldPath::root("server").key("listen"), Some(2)),
                (rules.index(0).key("name"), Some(5)),
                (rules.index(0).key("when").key("json"), Some(6)),
                (
                    rules
                        .index(0)
                        .key("when")
                        .key("json")
                        .index(1)
                        .key("pointer"),
                    Some(8),
                ),
                (rules.index(0).key("when").key("json").index(1), Some(8)),
                // Missing fields fall back to the nearest ancestor: the rule's header.
                (rules.index(1).key("name"), Some(11)),
                (rules.index(1).key("then").key("status"), Some(12)),
                (FieldPath::root("upstream").key("url"), None),
            ];
            for (path, want) in cases {
                assert_eq!(loc.line(&path), want, "{path}");
            }
        });
    }

    #[test]
    fn offsets_map_back_to_paths() {
        with_locator(|loc| {
            let at = |needle: &str| TEXT.find(needle).unwrap_or(0);
            let cases = [
                (at("listen"), "server.listen"),
                (at("\"x\""), "server.listen"),
                (at("exists"), "rules[0].when.json[1].exists"),
                (at("then"), "rules[1].then"),
            ];
            for (offset, want) in cases {
                assert_eq!(loc.path_at(offset).to_string(), want);
            }
            assert_eq!(loc.rule_label(0), "rule \"a\"");
            assert_eq!(loc.rule_label(1), "rules[1]");
            assert_eq!(loc.line_col(at("listen")), (2, 1));
        });
    }
}
