//! Static checks on a compiled rule set, for `candor check` warnings.
//!
//! [`RuleSet::unreachable`] finds rules that can never match because an earlier enforce rule
//! always wins over them. It is conservative: it warns only when the earlier rule's conditions
//! are provably implied by the later one's (a subset, written identically), never on a guess
//! about what two different regexes might both match.

use super::plan::StatusTable;
use super::{HeaderMatch, JsonOp, Mode, Rule, RuleSet};

/// A rule that can never match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    /// The rule that never matches.
    pub rule: String,
    /// The earlier enforce rule that always wins over it.
    pub because: String,
}

impl RuleSet {
    /// Rules shadowed by an earlier enforce rule, in order, each naming the first such rule.
    pub fn unreachable(&self) -> Vec<Unreachable> {
        let mut out = Vec::new();
        for (index, later) in self.rules.iter().enumerate() {
            let earlier =
                self.rules.iter().take(index).find(|earlier| {
                    earlier.mode == Mode::Enforce && always_wins_over(earlier, later)
                });
            if let Some(earlier) = earlier {
                out.push(Unreachable {
                    rule: later.name.clone(),
                    because: earlier.name.clone(),
                });
            }
        }
        out
    }
}

/// Whether every response `later` matches is also matched by `earlier`.
fn always_wins_over(earlier: &Rule, later: &Rule) -> bool {
    let (e, l) = (&earlier.when, &later.when);
    let same_regex = |a: Option<&regex::Regex>, b: Option<&regex::Regex>| match (a, b) {
        (None, _) => true,
        (Some(a), Some(b)) => a.as_str() == b.as_str(),
        (Some(_), None) => false,
    };
    StatusTable::matching(&e.status).covers(&StatusTable::matching(&l.status))
        && (e.method.is_empty()
            || (!l.method.is_empty() && l.method.iter().all(|m| e.method.contains(m))))
        && same_regex(e.path.as_ref(), l.path.as_ref())
        && same_regex(e.query.as_ref(), l.query.as_ref())
        && same_regex(e.content_type.as_ref(), l.content_type.as_ref())
        && implied(&e.header, &l.header)
        && implied(&e.request_header, &l.request_header)
        && e.json.iter().all(|c| {
            l.json
                .iter()
                .any(|d| d.pointer == c.pointer && same_op(&c.op, &d.op))
        })
        && match (&e.body, &l.body) {
            (None, _) => true,
            (Some(a), Some(b)) => a.as_str() == b.as_str(),
            (Some(_), None) => false,
        }
        // An uninspected body fails every rule that needs it: if only the earlier one needs it
        // (say, for `then.status_from`), the later one can still match such a response.
        && (!earlier.needs_body() || later.needs_body())
}

/// Whether every header test of the earlier rule is also one of the later rule's, written
/// identically.
fn implied(earlier: &[HeaderMatch], later: &[HeaderMatch]) -> bool {
    earlier.iter().all(|h| {
        later
            .iter()
            .any(|k| k.name == h.name && k.test.same(&h.test))
    })
}

/// Whether two JSON tests are written identically.
fn same_op(a: &JsonOp, b: &JsonOp) -> bool {
    match (a, b) {
        (JsonOp::Equals(x), JsonOp::Equals(y)) => x == y,
        (JsonOp::IsNull(x), JsonOp::IsNull(y)) | (JsonOp::Exists(x), JsonOp::Exists(y)) => x == y,
        (JsonOp::Matches(x), JsonOp::Matches(y)) => x.as_str() == y.as_str(),
        (JsonOp::OneOf(x), JsonOp::OneOf(y)) => x == y,
        (JsonOp::Gt(x), JsonOp::Gt(y))
        | (JsonOp::Gte(x), JsonOp::Gte(y))
        | (JsonOp::Lt(x), JsonOp::Lt(y))
        | (JsonOp::Lte(x), JsonOp::Lte(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::RuleSet;

    fn rules(text: &str) -> RuleSet {
        let text = format!("[upstream]\nurl = \"http://127.0.0.1:1\"\n{text}");
        crate::config::from_toml(&text, "test", Default::default())
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
            .rules
    }

    /// `(earlier rule body, later rule body, warned)`.
    #[test]
    fn unreachable_rules_are_found_conservatively() {
        let cases = [
            // No conditions at all: everything after is unreachable.
            ("then.status = 500", "when.status = [200]\nthen.status = 404", true),
            ("then.status = 500", "then.status = 404", true),
            // Status sets: classes cover codes, not the other way round.
            ("when.status = [\"2xx\"]\nthen.status = 500", "when.status = [200, 204]\nthen.status = 404", true),
            ("when.status = [200]\nthen.status = 500", "when.status = [\"2xx\"]\nthen.status = 404", false),
            ("when.status = [200]\nthen.status = 500", "then.status = 404", false),
            // Methods: empty means all.
            ("when.method = [\"GET\", \"HEAD\"]\nthen.status = 500", "when.method = [\"GET\"]\nthen.status = 404", true),
            ("when.method = [\"GET\"]\nthen.status = 500", "when.method = [\"GET\", \"POST\"]\nthen.status = 404", false),
            ("when.method = [\"GET\"]\nthen.status = 500", "then.status = 404", false),
            // Regexes: identical source only.
            ("when.path = '^/a'\nthen.status = 500", "when.path = '^/a'\nwhen.status = [200]\nthen.status = 404", true),
            ("when.path = '^/a'\nthen.status = 500", "when.path = '^/ab'\nthen.status = 404", false),
            ("when.path = '^/a'\nthen.status = 500", "then.status = 404", false),
            ("when.content_type = 'json'\nthen.status = 500", "when.content_type = 'json'\nthen.status = 404", true),
            ("when.content_type = 'json'\nthen.status = 500", "when.content_type = 'JSON'\nthen.status = 404", false),
            ("when.body = 'x'\nthen.status = 500", "when.body = 'x'\nwhen.path = '^/'\nthen.status = 404", true),
            ("when.body = 'x'\nthen.status = 500", "when.body = 'y'\nthen.status = 404", false),
            // Headers: same name and regex, or same presence test.
            ("when.header = [{ name = \"X-A\" }]\nthen.status = 500", "when.header = [{ name = \"x-a\" }, { name = \"x-b\" }]\nthen.status = 404", true),
            ("when.header = [{ name = \"x-a\" }]\nthen.status = 500", "when.header = [{ name = \"x-a\", matches = \"1\" }]\nthen.status = 404", false),
            ("when.header = [{ name = \"x-a\", matches = \"1\" }]\nthen.status = 500", "when.header = [{ name = \"x-a\", matches = \"1\" }]\nthen.status = 404", true),
            ("when.header = [{ name = \"x-a\", absent = true }]\nthen.status = 500", "when.header = [{ name = \"x-a\", absent = true }]\nthen.status = 404", true),
            ("when.header = [{ name = \"x-a\", absent = true }]\nthen.status = 500", "when.header = [{ name = \"x-a\" }]\nthen.status = 404", false),
            // Request conditions likewise.
            ("when.request_header = [{ name = \"authorization\", absent = true }]\nthen.status = 401", "when.status = [403]\nwhen.request_header = [{ name = \"authorization\", absent = true }]\nthen.status = 404", true),
            ("when.request_header = [{ name = \"authorization\", absent = true }]\nthen.status = 401", "when.request_header = [{ name = \"cookie\", absent = true }]\nthen.status = 404", false),
            ("when.query = 'a=1'\nthen.status = 500", "when.query = 'a=1'\nwhen.status = [200]\nthen.status = 404", true),
            ("when.query = 'a=1'\nthen.status = 500", "then.status = 404", false),
            // JSON: same pointer and same test.
            ("when.json = [{ pointer = \"/code\", equals = 1042 }]\nthen.status = 500", "when.json = [{ pointer = \"/s\", exists = true }, { pointer = \"/code\", equals = 1042 }]\nthen.status = 404", true),
            ("when.json = [{ pointer = \"/code\", equals = 1042 }]\nthen.status = 500", "when.json = [{ pointer = \"/code\", equals = 1043 }]\nthen.status = 404", false),
            ("when.json = [{ pointer = \"/code\", gt = 1 }]\nthen.status = 500", "when.json = [{ pointer = \"/code\", gte = 1 }]\nthen.status = 404", false),
            ("when.json = [{ pointer = \"/code\", matches = \"a\" }]\nthen.status = 500", "when.json = [{ pointer = \"/code\", matches = \"a\" }]\nthen.status = 404", true),
            ("when.json = [{ pointer = \"/c\", one_of = [1, \"a\"] }]\nthen.status = 500", "when.json = [{ pointer = \"/c\", one_of = [1, \"a\"] }]\nthen.status = 404", true),
            ("when.json = [{ pointer = \"/c\", exists = true }]\nthen.status = 500", "then.status = 404", false),
            // An earlier rule that needs the body only for `then` loses uninspected responses.
            ("then.status_from = \"/s\"", "then.status = 404", false),
            ("then.status_from = \"/s\"", "when.json = [{ pointer = \"/x\", exists = true }]\nthen.status = 404", true),
        ];
        for (earlier, later, warned) in cases {
            let text = format!(
                "[[rules]]\nname = \"early\"\n{earlier}\n[[rules]]\nname = \"late\"\n{later}\n"
            );
            let found = rules(&text).unreachable();
            let expected = if warned {
                vec![super::Unreachable {
                    rule: "late".into(),
                    because: "early".into(),
                }]
            } else {
                Vec::new()
            };
            assert_eq!(found, expected, "{earlier} / {later}");
        }
    }

    #[test]
    fn shadow_rules_never_make_others_unreachable_but_can_be_unreachable() {
        let set = rules(
            "[[rules]]\nname = \"s\"\nmode = \"shadow\"\nthen.status = 500\n\
             [[rules]]\nname = \"a\"\nwhen.status = [500]\nthen.status = 503\n\
             [[rules]]\nname = \"b\"\nmode = \"shadow\"\nwhen.status = [500]\nthen.status = 502\n\
             [[rules]]\nname = \"c\"\nwhen.status = [500]\nwhen.path = '^/x'\nthen.status = 504\n",
        );
        let found: Vec<(String, String)> = set
            .unreachable()
            .into_iter()
            .map(|u| (u.rule, u.because))
            .collect();
        assert_eq!(
            found,
            vec![("b".into(), "a".into()), ("c".into(), "a".into())]
        );
    }
}
