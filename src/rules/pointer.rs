//! RFC 6901 JSON pointers: parsed once when the config loads, resolved at request time.
//!
//! Rules name JSON fields with pointers (`when.json`, `then.status_from`, …). Compilation parses
//! them here; evaluation resolves them either inside a fully parsed `serde_json::Value` or,
//! for the common case, through the targeted extraction in [`super::extract`], which uses the
//! same [`array_index`] rule so both agree.

/// A parsed RFC 6901 JSON pointer, resolved without re-parsing at request time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPointer {
    text: String,
    tokens: Vec<String>,
}

impl JsonPointer {
    /// Parses a pointer: empty (the whole document) or `/`-separated tokens where `~0` stands
    /// for `~` and `~1` for `/` (RFC 6901 §3).
    pub fn parse(text: &str) -> Result<JsonPointer, PointerError> {
        let mut tokens = Vec::new();
        if !text.is_empty() {
            let rest = text.strip_prefix('/').ok_or(PointerError::NoLeadingSlash)?;
            for raw in rest.split('/') {
                let mut token = String::with_capacity(raw.len());
                let mut chars = raw.chars();
                while let Some(c) = chars.next() {
                    if c != '~' {
                        token.push(c);
                        continue;
                    }
                    match chars.next() {
                        Some('0') => token.push('~'),
                        Some('1') => token.push('/'),
                        _ => return Err(PointerError::BadEscape),
                    }
                }
                tokens.push(token);
            }
        }
        Ok(JsonPointer {
            text: text.to_owned(),
            tokens,
        })
    }

    /// The pointer as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The unescaped reference tokens.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The value this pointer refers to in `doc`, if any.
    ///
    /// An array index must be a plain decimal without leading zeros (RFC 6901 §4); `-` (one
    /// past the end) refers to nothing.
    pub fn resolve<'a>(&self, doc: &'a serde_json::Value) -> Option<&'a serde_json::Value> {
        resolve_tokens(doc, &self.tokens)
    }
}

/// Follows unescaped reference `tokens` from `doc`; the rules of [`JsonPointer::resolve`].
pub(crate) fn resolve_tokens<'a>(
    doc: &'a serde_json::Value,
    tokens: &[String],
) -> Option<&'a serde_json::Value> {
    let mut current = doc;
    for token in tokens {
        current = match current {
            serde_json::Value::Object(map) => map.get(token)?,
            serde_json::Value::Array(items) => items.get(array_index(token)?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// The array index a reference token names: a plain decimal without leading zeros
/// (RFC 6901 §4), so `01`, `+1`, `1e0` and `-` (one past the end) name none.
pub(crate) fn array_index(token: &str) -> Option<usize> {
    let canonical = token == "0" || (!token.starts_with('0') && !token.is_empty());
    if !canonical || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse().ok()
}

/// Why a JSON pointer is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PointerError {
    /// A non-empty pointer must start with `/`.
    #[error(
        "invalid JSON pointer (expected \"\" or a path starting with \"/\", e.g. \"/status\")"
    )]
    NoLeadingSlash,
    /// `~` may only appear as `~0` or `~1`.
    #[error(
        "invalid JSON pointer (\"~\" must be followed by 0 or 1: \"~0\" is \"~\", \"~1\" is \"/\")"
    )]
    BadEscape,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointers_resolve_per_rfc_6901() {
        let doc = json!({"foo": ["bar", "baz"], "": 0, "a/b": 1, "m~n": 8, "k": {"0": "obj"}});
        let cases = [
            ("", Some(doc.clone())),
            ("/foo", Some(json!(["bar", "baz"]))),
            ("/foo/0", Some(json!("bar"))),
            ("/foo/1", Some(json!("baz"))),
            ("/foo/01", None),
            ("/foo/-", None),
            ("/foo/2", None),
            ("/foo/+1", None),
            ("/", Some(json!(0))),
            ("/a~1b", Some(json!(1))),
            ("/m~0n", Some(json!(8))),
            ("/k/0", Some(json!("obj"))),
            ("/missing/x", None),
        ];
        for (text, want) in cases {
            let p = JsonPointer::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(p.resolve(&doc).cloned(), want, "{text}");
        }
        for bad in ["foo", "/a~", "/a~x", "~0"] {
            assert!(JsonPointer::parse(bad).is_err(), "{bad}");
        }
    }
}
