//! The parse itself: serde seeds that walk the pointer trie over the body.
//!
//! [`Walk`] is the seed for the value at one trie node: a leaf materialises a `Value`, a branch
//! visits objects and arrays, following only the keys and indexes the trie names and skipping
//! the rest with [`Skip`]. Everything goes through serde_json's `deserialize_any`, so the body is
//! validated (and its nesting limited) exactly as a `Value` parse would.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::{Branch, Node, Seen};

/// Seed for the value at one trie node.
pub(super) struct Walk<'n, 'o> {
    pub(super) node: &'n Node,
    pub(super) out: &'o mut [Option<Seen>],
    /// The most (estimated) JSON one leaf may materialise; see [`Bounded`].
    pub(super) leaf_limit: usize,
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.node {
            Node::Leaf(index, bounded) => {
                let mut left = if *bounded {
                    self.leaf_limit
                } else {
                    usize::MAX
                };
                let value = deserializer.deserialize_any(Bounded { left: &mut left })?;
                if let Some(entry) = self.out.get_mut(*index) {
                    *entry = Some(value.map_or(Seen::TooLarge, Seen::Value));
                }
                Ok(())
            }
            Node::Branch(branch) => {
                if let Some(below) = self.out.get_mut(branch.clear.clone()) {
                    below.iter_mut().for_each(|v| *v = None);
                }
                deserializer.deserialize_any(BranchVisitor {
                    branch,
                    out: self.out,
                    leaf_limit: self.leaf_limit,
                })
            }
        }
    }
}

/// Visits the value at a branch: records it at the probe if there is one (a scalar, or just
/// the kind of container), descends into wanted keys and indexes, and skips the rest. A pointer
/// that goes deeper than a scalar resolves to nothing.
struct BranchVisitor<'n, 'o> {
    branch: &'n Branch,
    out: &'o mut [Option<Seen>],
    leaf_limit: usize,
}

impl BranchVisitor<'_, '_> {
    fn probe(&mut self, seen: impl FnOnce() -> Seen) {
        if let Some(entry) = self.branch.probe.and_then(|i| self.out.get_mut(i)) {
            *entry = Some(seen());
        }
    }

    fn scalar<E>(mut self, value: impl FnOnce() -> Value) -> Result<(), E> {
        self.probe(|| Seen::Value(value()));
        Ok(())
    }
}

impl<'de> Visitor<'de> for BranchVisitor<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.scalar(|| Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.scalar(|| Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.scalar(|| Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        // serde_json only hands out finite floats, so `from` never turns one into null.
        self.scalar(|| Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.scalar(|| Value::String(v.to_owned()))
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.scalar(|| Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.probe(|| Seen::Array);
        let mut wanted = self.branch.indexes.iter().peekable();
        let mut index = 0usize;
        loop {
            let child = wanted
                .next_if(|(i, _)| *i == index)
                .and_then(|(_, k)| self.branch.keys.get(*k));
            let more = match child {
                Some((_, node)) => seq
                    .next_element_seed(Walk {
                        node,
                        out: &mut *self.out,
                        leaf_limit: self.leaf_limit,
                    })?
                    .is_some(),
                None => seq.next_element::<Skip>()?.is_some(),
            };
            if !more {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.probe(|| Seen::Object);
        while let Some(child) = map.next_key_seed(KeySeed(&self.branch.keys))? {
            match child {
                Some(node) => map.next_value_seed(Walk {
                    node,
                    out: &mut *self.out,
                    leaf_limit: self.leaf_limit,
                })?,
                None => map.next_value::<Skip>().map(drop)?,
            }
        }
        Ok(())
    }
}

/// Seed for an object key: finds the child it names without allocating the key.
struct KeySeed<'n>(&'n [(Box<str>, Node)]);

impl<'de, 'n> DeserializeSeed<'de> for KeySeed<'n> {
    type Value = Option<&'n Node>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, 'n> Visitor<'de> for KeySeed<'n> {
    type Value = Option<&'n Node>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self
            .0
            .binary_search_by(|(token, _)| token.as_ref().cmp(key))
            .ok()
            .and_then(|i| self.0.get(i))
            .map(|(_, node)| node))
    }
}

/// A leaf's value, built as a `Value` until its estimated compact JSON passes `left` bytes; from
/// there on the rest is validated and thrown away and the result is `None`. A member copied into
/// a problem document (at most 16 KiB) can then never make evaluation hold a whole body's worth
/// of `Value` (12–24× its size). Strings count their length plus quotes (escapes not counted),
/// integers their digits, floats 24 bytes, every container and separator one or two.
struct Bounded<'b> {
    left: &'b mut usize,
}

impl Bounded<'_> {
    /// Takes `n` bytes from the budget: `false` (and an empty budget) when they are not there.
    fn charge(&mut self, n: usize) -> bool {
        match self.left.checked_sub(n) {
            Some(rest) => {
                *self.left = rest;
                true
            }
            None => {
                *self.left = 0;
                false
            }
        }
    }

    fn scalar<E>(mut self, n: usize, value: impl FnOnce() -> Value) -> Result<Option<Value>, E> {
        Ok(self.charge(n).then(value))
    }
}

impl<'de> DeserializeSeed<'de> for Bounded<'_> {
    type Value = Option<Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// Decimal digits of `n`, and one for a sign.
fn digits(n: u64, negative: bool) -> usize {
    (n.checked_ilog10().unwrap_or(0) as usize) + 1 + usize::from(negative)
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        self.scalar(5, || Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        self.scalar(digits(v.unsigned_abs(), v < 0), || Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        self.scalar(digits(v, false), || Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        self.scalar(24, || Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        // Charged before the copy is made.
        self.scalar(v.len().saturating_add(2), || Value::String(v.to_owned()))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        self.scalar(4, || Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        let mut fits = self.charge(2);
        while fits {
            match seq.next_element_seed(Bounded {
                left: &mut *self.left,
            })? {
                Some(Some(item)) => {
                    items.push(item);
                    fits = self.charge(1);
                }
                Some(None) => fits = false,
                None => return Ok(Some(Value::Array(items))),
            }
        }
        drop(items);
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = serde_json::Map::new();
        let mut fits = self.charge(2);
        while fits {
            let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? else {
                return Ok(Some(Value::Object(members)));
            };
            if !self.charge(key.len().saturating_add(4)) {
                map.next_value::<Skip>()?;
                break;
            }
            match map.next_value_seed(Bounded {
                left: &mut *self.left,
            })? {
                Some(value) => {
                    members.insert(key.into_owned(), value);
                }
                None => fits = false,
            }
        }
        drop(members);
        while map.next_key::<Skip>()?.is_some() {
            map.next_value::<Skip>()?;
        }
        Ok(None)
    }
}

/// A value parsed and thrown away, validated exactly as a `Value` would be but never stored.
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // `deserialize_any`, not `deserialize_ignored_any`: serde_json skips an ignored value
        // with a scanner that checks neither UTF-8, nor number range, nor nesting depth, so a
        // body a `Value` parse rejects would pass (see the `extract` module docs).
        deserializer.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_unit<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_key::<Skip>()?.is_some() {
            map.next_value::<Skip>()?;
        }
        Ok(Skip)
    }
}
