//! Route templates: `/users/42` and `/users/7` are one route, `/users/{id}`.
//!
//! A path segment is an id when it is a number, a UUID, a long hex string or a base64-ish token
//! (letters and digits mixed, 16 characters or more). Every other segment is literal. The class
//! of the ids seen is kept, so a proposed rule's `when.path` is as narrow as the traffic allows
//! (`[0-9]+` for numeric ids, not `[^/]+`).

use std::fmt;
use std::hash::{BuildHasher, Hasher};

/// The most segments a template keeps; deeper paths share the template of their first
/// `MAX_SEGMENTS` segments plus `{rest}`.
pub const MAX_SEGMENTS: usize = 16;

/// The longest literal segment kept; a longer one is an id (`{id}`) whatever it looks like.
pub const MAX_LITERAL: usize = 64;

/// The template of the routes past `audit.max_routes`.
pub const OTHER: &str = "{other}";

/// What an id segment looked like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IdClass {
    /// Digits only.
    Number,
    /// A UUID (8-4-4-4-12 hex digits).
    Uuid,
    /// Hex digits, 12 or more, at least one of them a digit.
    Hex,
    /// Anything else taken as an id: tokens, long literals.
    Token,
}

impl IdClass {
    /// The regex one segment of this class matches in a proposed `when.path`.
    pub fn regex(self) -> &'static str {
        match self {
            IdClass::Number => "[0-9]+",
            IdClass::Uuid => {
                "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
            }
            IdClass::Hex => "[0-9A-Fa-f]+",
            IdClass::Token => "[^/]+",
        }
    }

    /// The narrowest class covering both.
    pub fn widen(self, other: IdClass) -> IdClass {
        if self == other {
            self
        } else if matches!(
            (self, other),
            (IdClass::Number, IdClass::Hex) | (IdClass::Hex, IdClass::Number)
        ) {
            IdClass::Hex
        } else {
            IdClass::Token
        }
    }

    /// A sample id of this class, for a proposed `[[tests]]` entry's path.
    pub fn sample(self) -> &'static str {
        match self {
            IdClass::Number => "42",
            IdClass::Uuid => "123e4567-e89b-12d3-a456-426614174000",
            IdClass::Hex => "0123456789abcdef",
            IdClass::Token => "abc123def456ghi789",
        }
    }
}

/// One segment of a template. Two ids are the same segment whatever their class, so
/// `/users/42` and `/users/abc123def456ghi789` are one route (equality and keys ignore it).
#[derive(Debug, Clone)]
pub enum Segment {
    /// A segment kept as written.
    Literal(String),
    /// An id.
    Id(IdClass),
}

impl PartialEq for Segment {
    fn eq(&self, other: &Segment) -> bool {
        match (self, other) {
            (Segment::Literal(a), Segment::Literal(b)) => a == b,
            (Segment::Id(_), Segment::Id(_)) => true,
            _ => false,
        }
    }
}

impl Eq for Segment {}

/// A route template: the path with its ids replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
    /// The path ended with `/` (`/users/` is not `/users`).
    trailing_slash: bool,
    /// The path had more than [`MAX_SEGMENTS`] segments.
    rest: bool,
}

impl Template {
    /// The template of a request path (without its query).
    pub fn of(path: &str) -> Template {
        Template::of_shape(&Shape::of(path))
    }

    /// The template of a path already read as a [`Shape`].
    pub fn of_shape(shape: &Shape<'_>) -> Template {
        Template {
            segments: shape.parts().map(Part::to_segment).collect(),
            trailing_slash: shape.trailing_slash,
            rest: shape.rest,
        }
    }

    /// The key of this template and `method` in the audit table: the key of every
    /// [`Shape`] this template [`matches`](Template::matches).
    pub fn key(&self, method: &http::Method, hasher: &impl BuildHasher) -> u64 {
        let parts = self.segments.iter().map(|s| match s {
            Segment::Literal(text) => Part::Literal(text),
            Segment::Id(class) => Part::Id(*class),
        });
        key(method, parts, self.trailing_slash, self.rest, hasher)
    }

    /// Whether `shape` is a path of this template.
    pub fn matches(&self, shape: &Shape<'_>) -> bool {
        if self.trailing_slash != shape.trailing_slash || self.rest != shape.rest {
            return false;
        }
        let mut parts = shape.parts();
        for segment in &self.segments {
            match (segment, parts.next()) {
                (Segment::Literal(a), Some(Part::Literal(b))) if a == b => {}
                (Segment::Id(_), Some(Part::Id(_))) => {}
                _ => return false,
            }
        }
        parts.next().is_none()
    }

    /// Widens its ids' classes to cover those of `shape` (a path of this template).
    pub fn widen_to_path(&mut self, shape: &Shape<'_>) {
        for (mine, theirs) in self.segments.iter_mut().zip(shape.parts()) {
            if let (Segment::Id(a), Part::Id(b)) = (&*mine, theirs) {
                *mine = Segment::Id(a.widen(b));
            }
        }
    }

    /// The template every route past `max_routes` shares.
    pub fn other() -> Template {
        Template {
            segments: vec![Segment::Literal(OTHER.to_owned())],
            trailing_slash: false,
            rest: false,
        }
    }

    /// Whether this is [`Template::other`].
    pub fn is_other(&self) -> bool {
        matches!(self.segments.as_slice(), [Segment::Literal(s)] if s == OTHER)
    }

    /// Merges the id classes of `other` (the same template shape) into this one.
    pub fn widen(&mut self, other: &Template) {
        for (mine, theirs) in self.segments.iter_mut().zip(&other.segments) {
            if let (Segment::Id(a), Segment::Id(b)) = (&*mine, theirs) {
                *mine = Segment::Id(a.widen(*b));
            }
        }
    }

    /// An anchored regex for `when.path` that matches every path of this template.
    pub fn regex(&self) -> String {
        if self.is_other() {
            return "^/".to_owned();
        }
        let mut out = String::from("^");
        for segment in &self.segments {
            out.push('/');
            match segment {
                Segment::Literal(text) => out.push_str(&regex::escape(text)),
                Segment::Id(class) => out.push_str(class.regex()),
            }
        }
        if self.rest {
            out.push_str("/.*");
        } else if self.trailing_slash || self.segments.is_empty() {
            out.push('/');
        }
        out.push('$');
        out
    }

    /// A path this template matches, with sample ids (for a proposed test).
    pub fn sample_path(&self) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            out.push('/');
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Id(class) => out.push_str(class.sample()),
            }
        }
        if self.rest {
            out.push_str("/more");
        } else if self.trailing_slash || self.segments.is_empty() {
            out.push('/');
        }
        out
    }

    /// A rough size in bytes, for the memory bound.
    pub fn weight(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(text) => text.len() + 32,
                Segment::Id(_) => 32,
            })
            .sum::<usize>()
            + 48
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_other() {
            return f.write_str(OTHER);
        }
        for segment in &self.segments {
            f.write_str("/")?;
            match segment {
                Segment::Literal(text) => f.write_str(text)?,
                Segment::Id(_) => f.write_str("{id}")?,
            }
        }
        if self.rest {
            f.write_str("/{rest}")?;
        } else if self.trailing_slash || self.segments.is_empty() {
            f.write_str("/")?;
        }
        Ok(())
    }
}

/// A request path seen as a template would see it, borrowed and classified once: what the
/// audit table looks a path up by without building its [`Template`].
#[derive(Debug, Clone, Copy)]
pub struct Shape<'a> {
    /// Its first [`MAX_SEGMENTS`] segments; `len` of them are set.
    parts: [Part<'a>; MAX_SEGMENTS],
    len: usize,
    trailing_slash: bool,
    rest: bool,
}

impl<'a> Shape<'a> {
    /// The shape of a request path (without its query).
    pub fn of(path: &'a str) -> Shape<'a> {
        let trimmed = path.strip_prefix('/').unwrap_or(path);
        let trailing_slash = !trimmed.is_empty() && trimmed.ends_with('/');
        let inner = trimmed.strip_suffix('/').unwrap_or(trimmed);
        let mut shape = Shape {
            parts: [Part::Id(IdClass::Token); MAX_SEGMENTS],
            len: 0,
            trailing_slash,
            rest: false,
        };
        if !inner.is_empty() {
            for segment in inner.split('/') {
                if shape.len == MAX_SEGMENTS {
                    shape.rest = true;
                    break;
                }
                shape.parts[shape.len] = Part::of(segment);
                shape.len += 1;
            }
        }
        shape
    }

    /// The shape of [`Template::other`]'s paths: what the routes past `max_routes` are found by.
    pub fn other() -> Shape<'static> {
        let mut parts = [Part::Id(IdClass::Token); MAX_SEGMENTS];
        parts[0] = Part::Literal(OTHER);
        Shape {
            parts,
            len: 1,
            trailing_slash: false,
            rest: false,
        }
    }

    fn parts(&self) -> impl Iterator<Item = Part<'a>> + '_ {
        self.parts[..self.len].iter().copied()
    }

    /// Its key in the audit table with `method` (see [`Template::key`]).
    pub fn key(&self, method: &http::Method, hasher: &impl BuildHasher) -> u64 {
        key(method, self.parts(), self.trailing_slash, self.rest, hasher)
    }
}

/// One segment of a [`Shape`]: a [`Segment`] that borrows its text.
#[derive(Debug, Clone, Copy)]
enum Part<'a> {
    Literal(&'a str),
    Id(IdClass),
}

impl<'a> Part<'a> {
    fn of(segment: &'a str) -> Part<'a> {
        if let Some(class) = id_class(segment) {
            return Part::Id(class);
        }
        if segment.len() > MAX_LITERAL {
            return Part::Id(IdClass::Token);
        }
        Part::Literal(segment)
    }

    fn to_segment(self) -> Segment {
        match self {
            Part::Literal(text) => Segment::Literal(text.to_owned()),
            Part::Id(class) => Segment::Id(class),
        }
    }
}

/// The one hash of a template and its paths: ids of any class alike.
fn key<'a>(
    method: &http::Method,
    parts: impl Iterator<Item = Part<'a>>,
    trailing_slash: bool,
    rest: bool,
    hasher: &impl BuildHasher,
) -> u64 {
    let mut state = hasher.build_hasher();
    state.write(method.as_str().as_bytes());
    for part in parts {
        match part {
            Part::Literal(text) => {
                state.write_u8(0);
                state.write(text.as_bytes());
                // Not a byte of a path segment: `/ab` and `/a` + `b` differ.
                state.write_u8(b'/');
            }
            Part::Id(_) => state.write_u8(1),
        }
    }
    state.write_u8(u8::from(trailing_slash) | u8::from(rest) << 1);
    state.finish()
}

/// The class of an id segment, `None` for a literal one.
pub fn id_class(segment: &str) -> Option<IdClass> {
    let bytes = segment.as_bytes();
    if bytes.is_empty() {
        return None;
    }
    if bytes.iter().all(u8::is_ascii_digit) {
        return Some(IdClass::Number);
    }
    if is_uuid(bytes) {
        return Some(IdClass::Uuid);
    }
    let digits = bytes.iter().filter(|b| b.is_ascii_digit()).count();
    if bytes.len() >= 12 && digits > 0 && bytes.iter().all(u8::is_ascii_hexdigit) {
        return Some(IdClass::Hex);
    }
    // base64(url)-ish: letters and digits mixed, long enough not to be a word.
    let letters = bytes.iter().filter(|b| b.is_ascii_alphabetic()).count();
    let token_chars = bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=' | b'+' | b'.' | b'~'));
    if bytes.len() >= 16 && token_chars && digits > 0 && letters > 0 {
        return Some(IdClass::Token);
    }
    None
}

fn is_uuid(bytes: &[u8]) -> bool {
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_grouped_and_words_are_kept() {
        assert_eq!(Template::of("/users/42").to_string(), "/users/{id}");
        assert_eq!(Template::of("/users/7"), Template::of("/users/42"));
        assert_eq!(
            Template::of("/users/42"),
            Template::of("/users/abc123def456ghi789")
        );
        assert_ne!(Template::of("/users/42"), Template::of("/users/me"));
        assert_eq!(
            Template::of("/orders/123e4567-e89b-12d3-a456-426614174000/items").to_string(),
            "/orders/{id}/items"
        );
        assert_eq!(
            Template::of("/blobs/deadbeef00112233").to_string(),
            "/blobs/{id}"
        );
        assert_eq!(
            Template::of("/s/dGhpcyBpcyBhIHRva2Vu42").to_string(),
            "/s/{id}"
        );
        assert_eq!(Template::of("/users/me").to_string(), "/users/me");
        assert_eq!(Template::of("/healthz").to_string(), "/healthz");
        assert_eq!(Template::of("/").to_string(), "/");
        assert_eq!(Template::of("/api/").to_string(), "/api/");
        // A word of hex letters only is a word.
        assert_eq!(Template::of("/cafe").to_string(), "/cafe");
    }

    #[test]
    fn regexes_match_other_ids_of_the_class_and_nothing_else() {
        let t = Template::of("/users/42");
        let re = regex::Regex::new(&t.regex()).unwrap();
        assert!(re.is_match("/users/9001"));
        assert!(!re.is_match("/users/me"));
        assert!(!re.is_match("/users/42/x"));
        let mut wide = Template::of("/users/42");
        wide.widen(&Template::of("/users/abcdef0123456789"));
        let re = regex::Regex::new(&wide.regex()).unwrap();
        assert!(re.is_match("/users/ff00aa11bb22cc33"));
        assert!(re.is_match(&wide.sample_path()));
        let dotted = Template::of("/v1.0/a+b");
        let re = regex::Regex::new(&dotted.regex()).unwrap();
        assert!(re.is_match("/v1.0/a+b"));
        assert!(!re.is_match("/v1x0/aab"));
    }

    #[test]
    fn a_template_and_the_shapes_of_its_paths_share_a_key() {
        let hasher = std::collections::hash_map::RandomState::new();
        let get = http::Method::GET;
        let t = Template::of("/users/42/orders/");
        for path in ["/users/42/orders/", "/users/abc123def456ghi789/orders/"] {
            let shape = Shape::of(path);
            assert!(t.matches(&shape), "{path}");
            assert_eq!(shape.key(&get, &hasher), t.key(&get, &hasher), "{path}");
        }
        for path in ["/users/42/orders", "/users/me/orders/", "/users/42", "/"] {
            assert!(!t.matches(&Shape::of(path)), "{path}");
        }
        assert_ne!(
            Shape::of("/ab").key(&get, &hasher),
            Shape::of("/a/b").key(&get, &hasher)
        );
        assert_ne!(t.key(&get, &hasher), t.key(&http::Method::POST, &hasher));
        let deep = "/a".repeat(100);
        assert!(Template::of(&deep).matches(&Shape::of(&deep)));
        let mut wide = Template::of("/users/42");
        wide.widen_to_path(&Shape::of("/users/abcdef0123456789"));
        assert_eq!(wide.regex(), "^/users/[0-9A-Fa-f]+$");
        assert!(Template::other().matches(&Shape::other()));
        assert_eq!(
            Template::other().key(&get, &hasher),
            Shape::other().key(&get, &hasher)
        );
        assert!(Template::of("/").matches(&Shape::of("/")));
        assert!(Template::of("").matches(&Shape::of("")));
    }

    #[test]
    fn deep_and_long_paths_stay_bounded() {
        let deep = "/a".repeat(100);
        let t = Template::of(&deep);
        assert_eq!(t.segments.len(), MAX_SEGMENTS);
        assert!(t.to_string().ends_with("/{rest}"));
        let long = format!("/{}", "x".repeat(5000));
        assert_eq!(Template::of(&long).to_string(), "/{id}");
    }
}
