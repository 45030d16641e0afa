//! A shallow read of a JSON body: its top-level members, and the scalar members one level down
//! (`error.message`, `data.id`, `errors[0].field`). Everything deeper is validated and dropped,
//! strings are cut to [`MAX_STRING`] bytes and members past [`MAX_MEMBERS`] are skipped, so the
//! memory a body costs does not grow with it. Strings borrow from the body where they can (an
//! escape-free string, which most are): a read allocates only its member lists.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserializer as _;

/// Longest string kept (bytes, cut on a character boundary).
pub const MAX_STRING: usize = 256;

/// Most members kept per object.
pub const MAX_MEMBERS: usize = 64;

/// A body, read shallowly.
#[derive(Debug, Clone, PartialEq)]
pub enum Top<'a> {
    /// The body is `null`.
    Null,
    /// The body is an object.
    Object(Members<'a>),
    /// An array, a string, a number or a boolean.
    Other,
}

/// The first [`MAX_MEMBERS`] members of an object, in order (the first of duplicate names).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Members<'a>(Named<'a, Shallow<'a>>);

impl<'a> Members<'a> {
    /// The member named `name`.
    pub fn get(&self, name: &str) -> Option<&Shallow<'a>> {
        self.0.get(name)
    }
    /// Members in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Shallow<'a>)> {
        self.0.list.iter().map(|(n, v)| (n.as_ref(), v))
    }
    /// How many were kept.
    pub fn len(&self) -> usize {
        self.0.list.len()
    }
    /// Whether the object was empty.
    pub fn is_empty(&self) -> bool {
        self.0.list.is_empty()
    }
}

/// An object's members in order, with a one-word filter of their names: most names a detector
/// asks for are absent, and the filter says so without comparing strings (a body is asked
/// for some 25 names).
#[derive(Debug, Clone, PartialEq)]
struct Named<'a, V> {
    list: Vec<(Cow<'a, str>, V)>,
    /// A bit per name, by [`name_bit`].
    names: u64,
}

impl<V> Default for Named<'_, V> {
    fn default() -> Self {
        Named {
            list: Vec::new(),
            names: 0,
        }
    }
}

impl<'a, V> Named<'a, V> {
    fn get(&self, name: &str) -> Option<&V> {
        if self.names & name_bit(name) == 0 {
            return None;
        }
        self.list.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// The filter bit of a member name: of its length and its first and last bytes.
fn name_bit(name: &str) -> u64 {
    let bytes = name.as_bytes();
    let (first, last) = match bytes {
        [] => (0, 0),
        [first, .., last] => (*first, *last),
        [only] => (*only, *only),
    };
    let mix = bytes.len() * 7 + usize::from(first) * 3 + usize::from(last);
    1 << (mix & 63)
}

/// A top-level member's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Shallow<'a> {
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number.
    Number(serde_json::Number),
    /// A string (cut to [`MAX_STRING`] bytes).
    String(Cow<'a, str>),
    /// An array: its length, and its first element's scalar members when that is an object.
    Array {
        /// Elements.
        len: usize,
        /// The first element's members, when it is an object.
        first: Option<Inner<'a>>,
    },
    /// An object's scalar members.
    Object(Inner<'a>),
}

/// The scalar members of a nested object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inner<'a>(Named<'a, Leaf<'a>>);

impl<'a> Inner<'a> {
    /// The member named `name`.
    pub fn get(&self, name: &str) -> Option<&Leaf<'a>> {
        self.0.get(name)
    }
    /// Whether the object was empty.
    pub fn is_empty(&self) -> bool {
        self.0.list.is_empty()
    }
}

/// A nested member's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Leaf<'a> {
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number.
    Number(serde_json::Number),
    /// A string (cut to [`MAX_STRING`] bytes).
    String(Cow<'a, str>),
    /// An array or object, not read.
    Composite,
}

/// Reads `body` shallowly; `None` when it is not JSON (or nests past serde_json's limit).
pub fn parse(body: &[u8]) -> Option<Top<'_>> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let top = (&mut de).deserialize_any(TopVisitor).ok()?;
    de.end().ok()?;
    Some(top)
}

fn cut(s: &str) -> &str {
    let mut end = s.len().min(MAX_STRING);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn is_id_text(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_graphic())
}

impl Shallow<'_> {
    /// A 4xx/5xx status this value holds (an integer, or a string of three digits).
    pub fn as_status(&self) -> Option<u16> {
        let code = match self {
            Shallow::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok())?,
            Shallow::String(s) if s.len() == 3 => s.parse::<u16>().ok()?,
            _ => return None,
        };
        (400..=599).contains(&code).then_some(code)
    }

    /// The value as short JSON text (at most 64 bytes; composites as `[…]`, `{…}`).
    pub fn json_text(&self) -> String {
        match self {
            Shallow::Null => "null".to_owned(),
            Shallow::Bool(b) => b.to_string(),
            Shallow::Number(n) => n.to_string(),
            Shallow::String(s) => short_string(s),
            Shallow::Array { .. } => "[…]".to_owned(),
            Shallow::Object(_) => "{…}".to_owned(),
        }
    }

    /// The value to remember of an honest response: scalars, and empty composites.
    pub fn honest_value(&self) -> Option<serde_json::Value> {
        Some(match self {
            Shallow::Null => serde_json::Value::Null,
            Shallow::Bool(b) => serde_json::Value::Bool(*b),
            Shallow::Number(n) => serde_json::Value::Number(n.clone()),
            Shallow::String(s) if s.len() <= 64 => serde_json::Value::String(s.to_string()),
            Shallow::Array { len: 0, .. } => serde_json::Value::Array(Vec::new()),
            Shallow::Object(inner) if inner.is_empty() => {
                serde_json::Value::Object(serde_json::Map::new())
            }
            _ => return None,
        })
    }

    /// Whether [`Shallow::honest_value`] has a value to remember.
    pub fn is_honest_value(&self) -> bool {
        match self {
            Shallow::Null | Shallow::Bool(_) | Shallow::Number(_) => true,
            Shallow::String(s) => s.len() <= 64,
            Shallow::Array { len, .. } => *len == 0,
            Shallow::Object(inner) => inner.is_empty(),
        }
    }

    /// Whether `value` is this value's [`Shallow::honest_value`], compared without making it.
    pub fn is_honest(&self, value: &serde_json::Value) -> bool {
        use serde_json::Value;
        match (self, value) {
            (Shallow::Null, Value::Null) => true,
            (Shallow::Bool(a), Value::Bool(b)) => a == b,
            (Shallow::Number(a), Value::Number(b)) => a == b,
            (Shallow::String(a), Value::String(b)) => a.len() <= 64 && a == b,
            (Shallow::Array { len: 0, .. }, Value::Array(b)) => b.is_empty(),
            (Shallow::Object(a), Value::Object(b)) => a.is_empty() && b.is_empty(),
            _ => false,
        }
    }

    /// Whether the value can be an entity's id in a `Location` (an integer or a short visible
    /// string).
    pub fn is_id(&self) -> bool {
        match self {
            Shallow::Number(n) => n.is_u64() || n.is_i64(),
            Shallow::String(s) => is_id_text(s),
            _ => false,
        }
    }
}

impl Leaf<'_> {
    /// Whether the value can be an entity's id.
    pub fn is_id(&self) -> bool {
        match self {
            Leaf::Number(n) => n.is_u64() || n.is_i64(),
            Leaf::String(s) => is_id_text(s),
            _ => false,
        }
    }

    /// The value as short JSON text.
    pub fn json_text(&self) -> String {
        match self {
            Leaf::Null => "null".to_owned(),
            Leaf::Bool(b) => b.to_string(),
            Leaf::Number(n) => n.to_string(),
            Leaf::String(s) => short_string(s),
            Leaf::Composite => "…".to_owned(),
        }
    }
}

/// A string as JSON text, cut to 64 bytes of content.
fn short_string(s: &str) -> String {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    serde_json::Value::String(s[..end].to_owned()).to_string()
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Top<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_unit<E>(self) -> Result<Top<'de>, E> {
        Ok(Top::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Top<'de>, E> {
        Ok(Top::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Top<'de>, E> {
        Ok(Top::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Top<'de>, E> {
        Ok(Top::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Top<'de>, E> {
        Ok(Top::Other)
    }
    fn visit_str<E>(self, _: &str) -> Result<Top<'de>, E> {
        Ok(Top::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Top::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Top<'de>, A::Error> {
        members(map, ShallowSeed).map(|m| Top::Object(Members(m)))
    }
}

/// An object's first [`MAX_MEMBERS`] members (the first of duplicate names), each value read
/// by `seed`; the rest validated and dropped.
fn members<'de, A, S>(mut map: A, seed: S) -> Result<Named<'de, S::Value>, A::Error>
where
    A: MapAccess<'de>,
    S: DeserializeSeed<'de> + Copy,
{
    // Most bodies have a handful of members: one allocation for them.
    let mut members = Named {
        list: Vec::with_capacity(8),
        names: 0,
    };
    while let Some(KeyText(name)) = map.next_key::<KeyText<'de>>()? {
        if members.list.len() < MAX_MEMBERS && members.get(&name).is_none() {
            let value = map.next_value_seed(seed)?;
            members.names |= name_bit(&name);
            members.list.push((name, value));
        } else {
            map.next_value::<IgnoredAny>()?;
        }
    }
    Ok(members)
}

/// A string cut to [`MAX_STRING`] bytes: borrowed from the body when it had no escapes.
struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(cut(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(cut(s).to_owned()))
    }
}

/// A member name, cut to [`MAX_STRING`] bytes.
struct KeyText<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for KeyText<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TextVisitor).map(KeyText)
    }
}

#[derive(Clone, Copy)]
struct ShallowSeed;

impl<'de> DeserializeSeed<'de> for ShallowSeed {
    type Value = Shallow<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Shallow<'de>, D::Error> {
        d.deserialize_any(ShallowVisitor)
    }
}

struct ShallowVisitor;

impl<'de> Visitor<'de> for ShallowVisitor {
    type Value = Shallow<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Shallow<'de>, E> {
        Ok(Shallow::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Shallow<'de>, E> {
        Ok(Shallow::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Shallow<'de>, E> {
        Ok(Shallow::Number(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Shallow<'de>, E> {
        Ok(Shallow::Number(n.into()))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Shallow<'de>, E> {
        Ok(serde_json::Number::from_f64(n).map_or(Shallow::Null, Shallow::Number))
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Shallow<'de>, E> {
        Ok(Shallow::String(Cow::Borrowed(cut(s))))
    }
    fn visit_str<E>(self, s: &str) -> Result<Shallow<'de>, E> {
        Ok(Shallow::String(Cow::Owned(cut(s).to_owned())))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shallow<'de>, A::Error> {
        let mut len = 0usize;
        let mut first = None;
        if let Some(element) = seq.next_element_seed(InnerSeed)? {
            len = 1;
            first = element;
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {
            len += 1;
        }
        Ok(Shallow::Array { len, first })
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Shallow<'de>, A::Error> {
        members(map, LeafSeed).map(|m| Shallow::Object(Inner(m)))
    }
}

/// An array's first element: its members when it is an object.
struct InnerSeed;

impl<'de> DeserializeSeed<'de> for InnerSeed {
    type Value = Option<Inner<'de>>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<Inner<'de>>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<Inner<'de>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(None)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                members(map, LeafSeed).map(|m| Some(Inner(m)))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Clone, Copy)]
struct LeafSeed;

impl<'de> DeserializeSeed<'de> for LeafSeed {
    type Value = Leaf<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Leaf<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Leaf<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Leaf<'de>, E> {
                Ok(Leaf::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Leaf<'de>, E> {
                Ok(Leaf::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Leaf<'de>, E> {
                Ok(Leaf::Number(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Leaf<'de>, E> {
                Ok(Leaf::Number(n.into()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Leaf<'de>, E> {
                Ok(serde_json::Number::from_f64(n).map_or(Leaf::Null, Leaf::Number))
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Leaf<'de>, E> {
                Ok(Leaf::String(Cow::Borrowed(cut(s))))
            }
            fn visit_str<E>(self, s: &str) -> Result<Leaf<'de>, E> {
                Ok(Leaf::String(Cow::Owned(cut(s).to_owned())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Leaf<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Leaf::Composite)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Leaf<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Leaf::Composite)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_two_levels_and_cuts_the_rest() {
        let body = br#"{"status":"error","errors":[{"field":"q","message":"must be positive"},{}],
            "error":{"message":"x","deep":{"a":1}},"data":null,"n":1.5}"#;
        let Some(Top::Object(m)) = parse(body) else {
            panic!("an object")
        };
        assert_eq!(m.get("status"), Some(&Shallow::String("error".into())));
        let Some(Shallow::Array {
            len,
            first: Some(first),
        }) = m.get("errors")
        else {
            panic!("errors")
        };
        assert_eq!(*len, 2);
        assert_eq!(first.get("field"), Some(&Leaf::String("q".into())));
        let Some(Shallow::Object(error)) = m.get("error") else {
            panic!("error")
        };
        assert_eq!(error.get("deep"), Some(&Leaf::Composite));
        assert_eq!(m.get("data"), Some(&Shallow::Null));
        assert_eq!(parse(b"null"), Some(Top::Null));
        assert_eq!(parse(b"[1]"), Some(Top::Other));
        assert_eq!(parse(b"{\"a\":1"), None);
        assert_eq!(parse(b"{} x"), None);
    }

    #[test]
    fn hostile_bodies_stay_small() {
        let long = format!("{{\"message\":\"{}\"}}", "é".repeat(100_000));
        let Some(Top::Object(m)) = parse(long.as_bytes()) else {
            panic!("an object")
        };
        let Some(Shallow::String(s)) = m.get("message") else {
            panic!("a string")
        };
        assert!(s.len() <= MAX_STRING);
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        // Validated without recursion and dropped.
        assert_eq!(parse(deep.as_bytes()), Some(Top::Other));
        let deep_member = format!("{{\"a\":{deep}}}");
        assert!(matches!(
            parse(deep_member.as_bytes()),
            Some(Top::Object(_))
        ));
        let many: String = (0..10_000).map(|i| format!("\"k{i}\":{i},")).collect();
        let many = format!("{{{}\"end\":0}}", many);
        let Some(Top::Object(m)) = parse(many.as_bytes()) else {
            panic!("an object")
        };
        assert_eq!(m.len(), MAX_MEMBERS);
    }

    #[test]
    fn strings_borrow_from_the_body_unless_escaped() {
        let Some(Top::Object(m)) = parse(br#"{"plain":"ok","esc\u0061ped":"a\nb"}"#) else {
            panic!("an object")
        };
        assert!(matches!(
            m.get("plain"),
            Some(Shallow::String(Cow::Borrowed("ok")))
        ));
        assert!(matches!(m.get("escaped"), Some(Shallow::String(Cow::Owned(s))) if s == "a\nb"));
        assert!(Shallow::String("ok".into()).is_honest(&serde_json::json!("ok")));
        assert!(!Shallow::String("ok".into()).is_honest(&serde_json::json!("ko")));
        assert!(!Shallow::Number(0.into()).is_honest(&serde_json::json!("0")));
    }

    #[test]
    fn names_are_found_exactly_and_the_first_of_duplicates_wins() {
        let Some(Top::Object(m)) = parse(br#"{"status":1,"stxtus":2,"status":3,"":4}"#) else {
            panic!("an object")
        };
        assert_eq!(m.len(), 3);
        assert_eq!(m.get("status"), Some(&Shallow::Number(1.into())));
        assert_eq!(m.get("stxtus"), Some(&Shallow::Number(2.into())));
        assert_eq!(m.get(""), Some(&Shallow::Number(4.into())));
        assert_eq!(m.get("sxxxxs"), None);
        assert_eq!(m.get("code"), None);
    }

    #[test]
    fn statuses_and_ids() {
        assert_eq!(Shallow::Number(404.into()).as_status(), Some(404));
        assert_eq!(Shallow::String("503".into()).as_status(), Some(503));
        assert_eq!(Shallow::Number(200.into()).as_status(), None);
        assert_eq!(Shallow::String("4040".into()).as_status(), None);
        assert!(Shallow::Number(42.into()).is_id());
        assert!(!Shallow::String("a b".into()).is_id());
    }
}
