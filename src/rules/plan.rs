//! What compilation precomputes so that evaluation only looks things up.
//!
//! Built once per [`RuleSet`](super::RuleSet), right after its rules compile: the table behind
//! [`RuleSet::wants_status`](super::RuleSet::wants_status), the trie of every JSON pointer any
//! rule uses (so a body is parsed once for all of them), and for each rule the slots its pointers
//! were given in that trie.

use http::{HeaderName, StatusCode};

use super::extract::{Extractor, ExtractorBuilder, Need};
use super::{HeaderFill, JsonOp, RetryAfterSource, Rule, StatusMatch};

/// Lookups derived from the compiled rules.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    /// Statuses some rule (enforce or shadow) could match.
    pub(super) wants: StatusTable,
    /// Targeted extraction of every pointer any rule uses.
    pub(super) extractor: Extractor,
    /// One entry per rule, in rule order.
    pub(super) rules: Vec<RulePlan>,
    /// Every request header some rule tests, once each: all the normaliser keeps of a request's
    /// headers (none, when no rule asks).
    pub(super) request_headers: Vec<HeaderName>,
}

/// One rule's slots in the [`Extractor`] and its body needs.
#[derive(Debug, Clone, Default)]
pub(super) struct RulePlan {
    /// The slot of each `when.json` pointer, in the same order.
    pub(super) json: Vec<usize>,
    /// The slot of `then.status_from`.
    pub(super) status_from: Option<usize>,
    /// The slot of `then.retry_after_from`.
    pub(super) retry_after_from: Option<usize>,
    /// The slot of `then.detail_from`.
    pub(super) detail_from: Option<usize>,
    /// For each `then.headers` entry, the slots of its template's pointers, in order.
    pub(super) headers: Vec<Vec<usize>>,
    /// The slot of each `then.problem.members` pointer, in the same order.
    pub(super) members: Vec<usize>,
    /// [`Rule::needs_body`], cached.
    pub(super) needs_body: bool,
}

impl Plan {
    /// Derives the lookups for `rules`.
    pub(super) fn build(rules: &[Rule]) -> Plan {
        let mut pointers = ExtractorBuilder::default();
        // A member larger than all members may copy is left out anyway: never build it whole.
        pointers.limit_leaves(super::template::MAX_MEMBERS_BYTES);
        let mut wants = StatusTable::default();
        let mut request_headers: Vec<HeaderName> = Vec::new();
        for header in rules.iter().flat_map(|r| &r.when.request_header) {
            if !request_headers.contains(&header.name) {
                request_headers.push(header.name.clone());
            }
        }
        let plans = rules
            .iter()
            .map(|rule| {
                wants.add(&StatusTable::matching(&rule.when.status));
                let retry_after_from = match &rule.then.retry_after {
                    Some(RetryAfterSource::From(p)) => Some(pointers.add(p, Need::Scalar)),
                    _ => None,
                };
                RulePlan {
                    json: rule
                        .when
                        .json
                        .iter()
                        .map(|c| pointers.add(&c.pointer, need(&c.op)))
                        .collect(),
                    status_from: rule
                        .then
                        .status_from
                        .as_ref()
                        .map(|p| pointers.add(p, Need::Scalar)),
                    retry_after_from,
                    detail_from: rule
                        .then
                        .detail_from
                        .as_ref()
                        .map(|p| pointers.add(p, Need::Scalar)),
                    headers: rule
                        .then
                        .headers
                        .iter()
                        .map(|h| match &h.value {
                            HeaderFill::Static(_) => Vec::new(),
                            HeaderFill::Template(t) => t
                                .pointers()
                                .map(|p| pointers.add(p, Need::Scalar))
                                .collect(),
                        })
                        .collect(),
                    members: rule
                        .then
                        .problem
                        .members
                        .iter()
                        .map(|m| pointers.add(&m.pointer, Need::Member))
                        .collect(),
                    needs_body: rule.needs_body(),
                }
            })
            .collect();
        Plan {
            wants,
            extractor: pointers.finish(),
            rules: plans,
            request_headers,
        }
    }
}

/// How much of its value a JSON test needs: only a comparison with an array or table needs a
/// container's contents; every other test is decided by a scalar or by the kind of container.
fn need(op: &JsonOp) -> Need {
    let container = |v: &serde_json::Value| v.is_array() || v.is_object();
    match op {
        JsonOp::Equals(v) if container(v) => Need::Full,
        JsonOp::OneOf(list) if list.iter().any(container) => Need::Full,
        _ => Need::Scalar,
    }
}

/// A set of statuses: one bit per code in 100..=599, and one flag for every code above
/// (`StatusCode` admits up to 999; only a rule without a status condition can match those).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct StatusTable {
    bits: [u64; 8],
    above: bool,
}

impl StatusTable {
    /// The statuses a `when.status` list matches; an empty list matches all of them.
    pub(super) fn matching(list: &[StatusMatch]) -> StatusTable {
        let mut table = StatusTable::default();
        if list.is_empty() {
            table.bits = [u64::MAX; 8];
            table.above = true;
            return table;
        }
        for item in list {
            let range = match *item {
                StatusMatch::Code(code) => code.as_u16()..=code.as_u16(),
                StatusMatch::Class(class) => {
                    let first = u16::from(class) * 100;
                    first..=first + 99
                }
            };
            for code in range.filter(|c| (100..=599).contains(c)) {
                let bit = usize::from(code - 100);
                if let Some(word) = table.bits.get_mut(bit / 64) {
                    *word |= 1 << (bit % 64);
                }
            }
        }
        table
    }

    /// Adds every status of `other`.
    pub(super) fn add(&mut self, other: &StatusTable) {
        for (word, more) in self.bits.iter_mut().zip(other.bits) {
            *word |= more;
        }
        self.above |= other.above;
    }

    /// Whether `status` is in the set.
    pub(super) fn contains(&self, status: StatusCode) -> bool {
        let code = status.as_u16();
        if code < 100 {
            return false;
        }
        if code > 599 {
            return self.above;
        }
        let bit = usize::from(code - 100);
        self.bits
            .get(bit / 64)
            .is_some_and(|word| word & (1 << (bit % 64)) != 0)
    }

    /// Whether every status of `other` is also in this set.
    pub(super) fn covers(&self, other: &StatusTable) -> bool {
        self.bits.iter().zip(other.bits).all(|(a, b)| a & b == b) && (self.above || !other.above)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(n: u16) -> StatusCode {
        StatusCode::from_u16(n).unwrap_or_else(|e| panic!("{n}: {e}"))
    }

    #[test]
    fn status_table_holds_codes_and_classes() {
        let table = StatusTable::matching(&[
            StatusMatch::Code(code(200)),
            StatusMatch::Class(4),
            StatusMatch::Code(code(599)),
        ]);
        let inside = [200, 400, 404, 499, 599];
        let outside = [100, 199, 201, 399, 500, 598, 600, 999];
        for n in inside {
            assert!(table.contains(code(n)), "{n}");
        }
        for n in outside {
            assert!(!table.contains(code(n)), "{n}");
        }
        let all = StatusTable::matching(&[]);
        for n in [100, 200, 599, 600, 999] {
            assert!(all.contains(code(n)), "{n}");
        }
        assert!(all.covers(&table));
        assert!(!table.covers(&all));
        let fours = StatusTable::matching(&[StatusMatch::Class(4)]);
        assert!(table.covers(&fours));
        assert!(!fours.covers(&table));
        assert!(StatusTable::matching(&[StatusMatch::Code(code(404))])
            .covers(&StatusTable::matching(&[StatusMatch::Code(code(404))])));
    }
}
