//! A shallow read of a JSON body: its top-level members, and the scalar members one level down
//! (`error.message`, `data.id`, `errors[0].field`). Everything deeper is validated and dropped,
//! strings are cut to [`MAX_STRING`] bytes and members past [`MAX_MEMBERS`] are skipped, so the
//! memory a body costs does not grow with it. Strings borrow from the body where they can (an
//! escape-free string, which most are): a read allocates only its member lists.

use std::borrow::Cow;

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
    /// Members read in order, with the [`name_bit`]s of their names.
    pub(super) fn new(list: Vec<(Cow<'a, str>, Shallow<'a>)>, names: u64) -> Self {
        Members(Named { list, names })
    }

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
pub(super) fn name_bit(name: &str) -> u64 {
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
    /// Members read in order, with the [`name_bit`]s of their names.
    pub(super) fn new(list: Vec<(Cow<'a, str>, Leaf<'a>)>, names: u64) -> Self {
        Inner(Named { list, names })
    }

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

/// Reads `body` shallowly; `None` when it is not JSON.
pub fn parse(body: &[u8]) -> Option<Top<'_>> {
    super::scan::parse(body)
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
