//! Targeted JSON extraction: parse a body once and keep only the values rules point at.
//!
//! A whole `serde_json::Value` costs 12–24× the body's size in heap, and
//! rules look at a handful of fields. So compilation gathers every pointer any rule uses into a
//! trie ([`ExtractorBuilder`]), and evaluation walks the body once with a `DeserializeSeed` over
//! `serde_json::Deserializer::from_slice` that builds a `Value` only at the trie's leaves and
//! skips everything else without allocating.
//!
//! The result is the same as parsing a `Value` and calling [`JsonPointer::resolve`] (a test
//! checks this on random documents):
//! - Validation is the same: skipped parts go through the same `deserialize_any` path a `Value`
//!   does, so invalid UTF-8, numbers out of range (`1e400`), trailing garbage and nesting deeper
//!   than serde_json's recursion limit (128) all make the whole body "not JSON". (serde's
//!   `IgnoredAny` would not do: serde_json skips it with a fast scanner that checks neither
//!   string UTF-8, nor number range, nor depth.)
//! - Duplicate object keys: the last one wins, as in `Value`. Entering a key clears what an
//!   earlier duplicate left below it.
//! - Array elements are reached by canonical decimal tokens only (RFC 6901 §4); `-` names none.
//! - A pointer whose value is only tested as a scalar (every test but `equals`/`one_of` against
//!   an array or table, and every `then.*_from`) is a *probe*: it records a scalar, or only the
//!   kind of container it found, and the walk goes on below it. So `/data` with `is_null = true`
//!   next to `/data/id` costs nothing more, however big `data` is.
//! - A pointer that needs its whole value is a *leaf*: the value is materialised, and any longer
//!   pointer under it (`/error` compared with a table, and `/error/code`) is resolved inside it.

mod walk;

use std::collections::BTreeMap;
use std::ops::Range;

use serde::de::DeserializeSeed;
use serde_json::Value;

use super::pointer::{array_index, resolve_tokens};
use super::JsonPointer;
use walk::Walk;

/// How much of a pointer's value its users need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Need {
    /// Scalars as values; for an array or object only which of the two it is. Enough for every
    /// test except comparing with an array or object, and for every `then.*_from`.
    Scalar,
    /// The whole value if it is small (`then.problem.members`): a leaf bounded by
    /// [`ExtractorBuilder::limit_leaves`], unless another pointer lies under it.
    Member,
    /// The whole value, containers included (`equals = [1, 2]`, `one_of = [{ a = 1 }]`).
    Full,
}

/// Collects pointers at compile time, giving each distinct one a slot.
#[derive(Debug)]
pub(super) struct ExtractorBuilder {
    pointers: Vec<(Vec<String>, Need)>,
    /// See [`Extractor::leaf_limit`]; `usize::MAX` until [`ExtractorBuilder::limit_leaves`].
    leaf_limit: usize,
}

impl Default for ExtractorBuilder {
    fn default() -> Self {
        ExtractorBuilder {
            pointers: Vec::new(),
            leaf_limit: usize::MAX,
        }
    }
}

impl ExtractorBuilder {
    /// The slot of `pointer`; equal pointers share one, with the larger need.
    pub(super) fn add(&mut self, pointer: &JsonPointer, need: Need) -> usize {
        let tokens = pointer.tokens();
        if let Some(slot) = self.pointers.iter().position(|(p, _)| p == tokens) {
            if let Some(entry) = self.pointers.get_mut(slot) {
                // A member's pointer that a condition also tests must be seen whole, whatever
                // its size (a long string a regex matches): then it is not bounded.
                entry.1 = match (entry.1, need) {
                    (a, b) if a == b => a,
                    (Need::Member, _) | (_, Need::Member) => Need::Full,
                    (a, b) => a.max(b),
                };
            }
            return slot;
        }
        self.pointers.push((tokens.to_vec(), need));
        self.pointers.len() - 1
    }

    /// Caps what a [`Need::Member`] leaf materialises at `limit` bytes of (estimated) JSON.
    pub(super) fn limit_leaves(&mut self, limit: usize) {
        self.leaf_limit = limit;
    }

    /// Builds the trie.
    ///
    /// A pointer that needs its whole value becomes a leaf, unless another such pointer is a
    /// prefix of it: then it is resolved inside that one's value. Every other pointer is a probe,
    /// which records a scalar (or the kind of container) and lets the walk go on below it, so
    /// `/data` with `is_null` and `/data/id` never materialise all of `data`.
    pub(super) fn finish(self) -> Extractor {
        let full = |p: &[String]| {
            self.pointers
                .iter()
                .any(|(q, need)| *need >= Need::Member && p.starts_with(q))
        };
        // A member leaf is bounded only when nothing else is resolved inside it: a pointer under
        // it must see the value whatever its size, as it would without the member.
        let bounded = |p: &[String], need: Need| {
            need == Need::Member
                && !self
                    .pointers
                    .iter()
                    .any(|(q, _)| q.len() > p.len() && q.starts_with(p))
        };
        let mut draft = Draft::default();
        for (pointer, need) in &self.pointers {
            let parent = pointer.split_last().map_or(&[][..], |(_, parent)| parent);
            let leaf = Some(bounded(pointer, *need));
            match need {
                Need::Full | Need::Member if !full(parent) && !pointer.is_empty() => {
                    draft.insert(pointer, leaf)
                }
                Need::Full | Need::Member if pointer.is_empty() => draft.insert(pointer, leaf),
                Need::Full | Need::Member => {}
                Need::Scalar if !full(pointer) => draft.insert(pointer, None),
                Need::Scalar => {}
            }
        }
        let mut entries = Vec::new();
        let root = draft.build(&mut Vec::new(), &mut entries);
        let targets = self
            .pointers
            .iter()
            .map(|(p, _)| {
                // Its own probe or leaf, else the leaf it lies under.
                let entry = entries
                    .iter()
                    .position(|(e, leaf)| e == p || (*leaf && p.starts_with(e)));
                let rest = entry
                    .and_then(|i| entries.get(i))
                    .map_or(0, |(e, _)| e.len());
                Target {
                    entry,
                    rest: p[rest..].to_vec(),
                }
            })
            .collect();
        Extractor {
            root,
            targets,
            entries: entries.len(),
            leaf_limit: self.leaf_limit,
        }
    }
}

/// A trie node while building: sorted children, and whether a leaf (bounded or not) or a probe
/// is here.
#[derive(Default)]
struct Draft {
    leaf: Option<bool>,
    probe: bool,
    children: BTreeMap<String, Draft>,
}

impl Draft {
    /// Adds a leaf (`Some(bounded)`) or a probe (`None`) at `tokens`. Two leaves at one place
    /// are bounded only if both are.
    fn insert(&mut self, tokens: &[String], leaf: Option<bool>) {
        match tokens.split_first() {
            None if leaf.is_some() => {
                self.leaf = Some(self.leaf.unwrap_or(true) && leaf.unwrap_or(false))
            }
            None => self.probe = true,
            Some((first, rest)) => self
                .children
                .entry(first.clone())
                .or_default()
                .insert(rest, leaf),
        }
    }

    /// Numbers leaves and probes depth-first (so each subtree's entries are a contiguous
    /// range), recording each entry's tokens and whether it is a leaf in `entries`.
    fn build(self, path: &mut Vec<String>, entries: &mut Vec<(Vec<String>, bool)>) -> Node {
        if let Some(bounded) = self.leaf {
            // A leaf holds the whole value: pointers below it resolve inside, not in the trie.
            entries.push((path.clone(), true));
            return Node::Leaf(entries.len() - 1, bounded);
        }
        let start = entries.len();
        let probe = self.probe.then(|| {
            entries.push((path.clone(), false));
            entries.len() - 1
        });
        let mut keys = Vec::with_capacity(self.children.len());
        for (token, child) in self.children {
            path.push(token.clone());
            let node = child.build(path, entries);
            path.pop();
            keys.push((token.into_boxed_str(), node));
        }
        let mut indexes: Vec<(usize, usize)> = keys
            .iter()
            .enumerate()
            .filter_map(|(k, (token, _))| array_index(token).map(|i| (i, k)))
            .collect();
        indexes.sort_unstable();
        Node::Branch(Branch {
            probe,
            keys,
            indexes,
            clear: start..entries.len(),
        })
    }
}

/// Every pointer the rules use, as a trie walked while the body is parsed.
#[derive(Debug, Clone)]
pub(crate) struct Extractor {
    root: Node,
    /// Indexed by slot.
    targets: Vec<Target>,
    /// Number of leaves and probes.
    entries: usize,
    /// The most (estimated) JSON a leaf materialises; a larger value is [`Found::TooLarge`].
    leaf_limit: usize,
}

impl Default for Extractor {
    fn default() -> Self {
        Extractor {
            root: Node::Branch(Branch::default()),
            targets: Vec::new(),
            entries: 0,
            leaf_limit: usize::MAX,
        }
    }
}

/// Where a slot's value is found: at one leaf or probe, maybe further inside a leaf's value.
#[derive(Debug, Clone)]
struct Target {
    /// The entry; always set once built.
    entry: Option<usize>,
    /// The tokens left to follow inside a leaf's value (empty for a probe).
    rest: Vec<String>,
}

#[derive(Debug, Clone)]
enum Node {
    /// Materialise the whole value here, into this entry; `true`: within the leaf limit only.
    Leaf(usize, bool),
    /// Walk on into objects and arrays.
    Branch(Branch),
}

#[derive(Debug, Clone, Default)]
struct Branch {
    /// The probe entry at this node, if a pointer ends here.
    probe: Option<usize>,
    /// Children by token, sorted for binary search.
    keys: Vec<(Box<str>, Node)>,
    /// `(array index, position in keys)` for tokens that are canonical indexes, by index.
    indexes: Vec<(usize, usize)>,
    /// The entries at and below this node, reset when it is entered again (a duplicate key).
    clear: Range<usize>,
}

/// What was found at one entry.
#[derive(Debug, Clone)]
enum Seen {
    /// A leaf's whole value, or a probe's scalar.
    Value(Value),
    /// A leaf's value passed the leaf limit: validated, not kept.
    TooLarge,
    /// A probe saw an array.
    Array,
    /// A probe saw an object.
    Object,
}

/// What a pointer found, as the rules see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Found<'e> {
    /// The value (whole, for pointers that need it; else a scalar).
    Value(&'e Value),
    /// An array, contents not kept (the pointer's users only need scalars).
    Array,
    /// An object, contents not kept.
    Object,
    /// A value larger than the extractor keeps whole (see [`ExtractorBuilder::limit_leaves`]).
    TooLarge,
}

impl<'e> Found<'e> {
    /// The value, unless only its kind was kept.
    pub(crate) fn value(self) -> Option<&'e Value> {
        match self {
            Found::Value(value) => Some(value),
            Found::Array | Found::Object | Found::TooLarge => None,
        }
    }
}

/// The values found in one body, one per entry.
#[derive(Debug)]
pub(crate) struct Extracted {
    entries: Vec<Option<Seen>>,
}

impl Extractor {
    /// Parses `body` once, keeping only what the trie's leaves and probes ask for.
    ///
    /// Errors when `body` is not exactly one valid JSON document (whitespace aside) within
    /// serde_json's recursion limit.
    pub(super) fn extract(&self, body: &[u8]) -> Result<Extracted, serde_json::Error> {
        let mut entries = vec![None; self.entries];
        let mut de = serde_json::Deserializer::from_slice(body);
        Walk {
            node: &self.root,
            out: &mut entries,
            leaf_limit: self.leaf_limit,
        }
        .deserialize(&mut de)?;
        de.end()?;
        Ok(Extracted { entries })
    }

    /// What `slot` (from [`ExtractorBuilder::add`]) found in `extracted`, if anything.
    pub(super) fn get<'e>(&self, extracted: &'e Extracted, slot: usize) -> Option<Found<'e>> {
        let target = self.targets.get(slot)?;
        match extracted.entries.get(target.entry?)?.as_ref()? {
            Seen::Value(value) => resolve_tokens(value, &target.rest).map(Found::Value),
            Seen::TooLarge => Some(Found::TooLarge),
            Seen::Array => Some(Found::Array),
            Seen::Object => Some(Found::Object),
        }
    }
}

#[cfg(test)]
mod tests;
