//! The reader behind [`super::shallow::parse`]: one pass over a JSON body that keeps two levels
//! and validates the rest without keeping it, or recursing into it.
//!
//! Written for this one shape rather than driven through serde's visitors: audit reads every
//! observed 2xx JSON body, and serde_json through a visitor spent ~2,700 instructions on the
//! comparison's 60-byte `/ok` body (a UTF-8 check and a dispatch per string), where this pass
//! spends about a quarter of that. It accepts exactly the JSON serde_json reads into a `Value`
//! (RFC 8259: no trailing commas, no comments, escapes checked, surrogates paired, floats in
//! range) anywhere in the body, kept or skipped; a property test checks the two against each
//! other. Floats are converted by serde_json, so their values are its values.

use std::borrow::Cow;

use super::shallow::{name_bit, Inner, Leaf, Members, Shallow, Top, MAX_MEMBERS, MAX_STRING};

/// Reads `body` shallowly; `None` when it is not JSON.
pub(super) fn parse(body: &[u8]) -> Option<Top<'_>> {
    // JSON text is UTF-8, and outside strings only ASCII is allowed: one check for the whole
    // body is the check of every string in it.
    let text = std::str::from_utf8(body).ok()?;
    let mut scan = Scan { text, at: 0 };
    scan.space();
    let top = match scan.peek()? {
        b'{' => {
            let mut members = Vec::with_capacity(8);
            let mut names = 0;
            scan.object(|scan, name| {
                if members.len() < MAX_MEMBERS && !has(&members, names, &name) {
                    let value = scan.shallow()?;
                    names |= name_bit(&name);
                    members.push((name, value));
                } else {
                    scan.skip()?;
                }
                Some(())
            })?;
            Top::Object(Members::new(members, names))
        }
        b'n' => {
            scan.literal("null")?;
            Top::Null
        }
        _ => {
            scan.skip()?;
            Top::Other
        }
    };
    scan.space();
    (scan.at == text.len()).then_some(top)
}

/// Whether `name` is among `members` already (`names` their name bits).
fn has<V>(members: &[(Cow<'_, str>, V)], names: u64, name: &str) -> bool {
    names & name_bit(name) != 0 && members.iter().any(|(n, _)| n == name)
}

struct Scan<'a> {
    text: &'a str,
    at: usize,
}

/// A scalar, as both levels keep it.
enum Scalar<'a> {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(Cow<'a, str>),
}

impl<'a> Scan<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        let end = self.at.checked_add(word.len())?;
        (self.bytes().get(self.at..end)? == word.as_bytes()).then(|| self.at = end)
    }

    /// An object at `{`: calls `member` with each name, positioned at its value, which
    /// `member` must read.
    fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, Cow<'a, str>) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        self.space();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            self.space();
            let name = self.string()?;
            self.space();
            self.eat(b':')?;
            self.space();
            member(self, name)?;
            self.space();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// An array at `[`: calls `element` at each element, which `element` must read.
    fn array(&mut self, mut element: impl FnMut(&mut Self, usize) -> Option<()>) -> Option<usize> {
        self.eat(b'[')?;
        self.space();
        if self.eat(b']').is_some() {
            return Some(0);
        }
        let mut len = 0;
        loop {
            self.space();
            element(self, len)?;
            len += 1;
            self.space();
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(len);
                }
                _ => return None,
            }
        }
    }

    /// A top-level member's value.
    fn shallow(&mut self) -> Option<Shallow<'a>> {
        Some(match self.peek()? {
            b'{' => Shallow::Object(self.inner()?),
            b'[' => {
                let mut first = None;
                let len = self.array(|scan, i| {
                    if i == 0 && scan.peek() == Some(b'{') {
                        first = Some(scan.inner()?);
                        Some(())
                    } else {
                        scan.skip()
                    }
                })?;
                Shallow::Array { len, first }
            }
            _ => match self.scalar()? {
                Scalar::Null => Shallow::Null,
                Scalar::Bool(b) => Shallow::Bool(b),
                Scalar::Number(n) => Shallow::Number(n),
                Scalar::String(s) => Shallow::String(s),
            },
        })
    }

    /// A nested object's scalar members.
    fn inner(&mut self) -> Option<Inner<'a>> {
        let mut members = Vec::new();
        let mut names = 0;
        self.object(|scan, name| {
            if members.len() < MAX_MEMBERS && !has(&members, names, &name) {
                let value = match scan.peek()? {
                    b'{' | b'[' => {
                        scan.skip()?;
                        Leaf::Composite
                    }
                    _ => match scan.scalar()? {
                        Scalar::Null => Leaf::Null,
                        Scalar::Bool(b) => Leaf::Bool(b),
                        Scalar::Number(n) => Leaf::Number(n),
                        Scalar::String(s) => Leaf::String(s),
                    },
                };
                names |= name_bit(&name);
                members.push((name, value));
            } else {
                scan.skip()?;
            }
            Some(())
        })?;
        Some(Inner::new(members, names))
    }

    fn scalar(&mut self) -> Option<Scalar<'a>> {
        Some(match self.peek()? {
            b'"' => Scalar::String(self.string()?),
            b'n' => {
                self.literal("null")?;
                Scalar::Null
            }
            b't' => {
                self.literal("true")?;
                Scalar::Bool(true)
            }
            b'f' => {
                self.literal("false")?;
                Scalar::Bool(false)
            }
            _ => Scalar::Number(self.number()?),
        })
    }

    /// Any value, validated and dropped: nesting is counted on a stack, not recursed into, so
    /// no depth of `[[[…]]]` can exhaust the thread's stack.
    fn skip(&mut self) -> Option<()> {
        // Open containers, innermost last: `true` for an object.
        let mut open: Vec<bool> = Vec::new();
        loop {
            // At a value.
            self.space();
            match self.peek()? {
                b'{' => {
                    self.at += 1;
                    self.space();
                    if self.eat(b'}').is_none() {
                        open.push(true);
                        self.key()?;
                        continue;
                    }
                }
                b'[' => {
                    self.at += 1;
                    self.space();
                    if self.eat(b']').is_none() {
                        open.push(false);
                        continue;
                    }
                }
                b'"' => self.skip_string()?,
                b'n' => self.literal("null")?,
                b't' => self.literal("true")?,
                b'f' => self.literal("false")?,
                _ => self.number().map(drop)?,
            }
            // After a value: close what ends here, or go on to the next member or element.
            loop {
                let Some(&object) = open.last() else {
                    return Some(());
                };
                self.space();
                match (self.peek()?, object) {
                    (b',', true) => {
                        self.at += 1;
                        self.space();
                        self.key()?;
                        break;
                    }
                    (b',', false) => {
                        self.at += 1;
                        break;
                    }
                    (b'}', true) | (b']', false) => {
                        self.at += 1;
                        open.pop();
                    }
                    _ => return None,
                }
            }
        }
    }

    /// A member name and its colon, dropped.
    fn key(&mut self) -> Option<()> {
        self.skip_string()?;
        self.space();
        self.eat(b':')
    }

    /// A string at `"`, cut to [`MAX_STRING`] bytes: borrowed when it has no escapes.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        let start = self.at;
        let bytes = self.bytes();
        loop {
            match *bytes.get(self.at)? {
                b'"' => {
                    let s = &self.text[start..self.at];
                    self.at += 1;
                    return Some(Cow::Borrowed(cut(s)));
                }
                b'\\' => break,
                0..=0x1f => return None,
                _ => self.at += 1,
            }
        }
        // Escaped: decoded from the start, at most MAX_STRING bytes of it kept (the rest
        // validated).
        let mut out = String::from(cut(&self.text[start..self.at]));
        loop {
            match *bytes.get(self.at)? {
                b'"' => {
                    self.at += 1;
                    let end = cut(&out).len();
                    out.truncate(end);
                    return Some(Cow::Owned(out));
                }
                b'\\' => {
                    self.at += 1;
                    let c = self.escape()?;
                    if out.len() <= MAX_STRING {
                        out.push(c);
                    }
                }
                0..=0x1f => return None,
                _ => {
                    // One whole character (the text is valid UTF-8).
                    let c = self.text[self.at..].chars().next()?;
                    self.at += c.len_utf8();
                    if out.len() <= MAX_STRING {
                        out.push(c);
                    }
                }
            }
        }
    }

    /// A string at `"`, validated and dropped.
    fn skip_string(&mut self) -> Option<()> {
        self.eat(b'"')?;
        let bytes = self.bytes();
        loop {
            match *bytes.get(self.at)? {
                b'"' => {
                    self.at += 1;
                    return Some(());
                }
                b'\\' => {
                    self.at += 1;
                    self.escape()?;
                }
                0..=0x1f => return None,
                _ => self.at += 1,
            }
        }
    }

    /// The escape after a `\`: the character it stands for. A `\u` surrogate must be paired.
    fn escape(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += 1;
        Some(match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let high = self.hex4()?;
                match high {
                    0xD800..=0xDBFF => {
                        self.literal("\\u")?;
                        let low = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return None;
                        }
                        let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                        char::from_u32(code)?
                    }
                    0xDC00..=0xDFFF => return None,
                    _ => char::from_u32(high)?,
                }
            }
            _ => return None,
        })
    }

    fn hex4(&mut self) -> Option<u32> {
        let end = self.at.checked_add(4)?;
        let digits = self.text.get(self.at..end)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.at = end;
        u32::from_str_radix(digits, 16).ok()
    }

    /// A number (RFC 8259 §6): an integer when it has no fraction or exponent and fits
    /// 64 bits, a float (serde_json's conversion) otherwise; `None` for a float out of range.
    fn number(&mut self) -> Option<serde_json::Number> {
        let (text, integer) = self.number_text()?;
        if integer {
            if text.starts_with('-') {
                // serde_json reads `-0` as the float -0.0.
                if let Ok(n @ ..=-1) = text.parse::<i64>() {
                    return Some(n.into());
                }
            } else if let Ok(n) = text.parse::<u64>() {
                return Some(n.into());
            }
        }
        let float: f64 = serde_json::from_str(text).ok()?;
        serde_json::Number::from_f64(float)
    }

    /// A number's text, and whether it is an integer (no fraction, no exponent).
    fn number_text(&mut self) -> Option<(&'a str, bool)> {
        let start = self.at;
        self.eat(b'-');
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.at += 1;
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            self.digits();
            integer = false;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            self.digits();
            integer = false;
        }
        Some((&self.text[start..self.at], integer))
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
    }
}

/// `s` cut to [`MAX_STRING`] bytes on a character boundary.
pub(super) fn cut(s: &str) -> &str {
    let mut end = s.len().min(MAX_STRING);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// Whether serde_json reads `body` into a `Value`.
    fn serde_accepts(body: &[u8]) -> bool {
        serde_json::from_slice::<Value>(body).is_ok()
    }

    /// `top` against serde_json's reading of the same body (bodies without duplicate names).
    fn agrees(top: &Top<'_>, value: &Value) -> bool {
        match (top, value) {
            (Top::Null, Value::Null) => true,
            (Top::Object(members), Value::Object(map)) => {
                members.len() == map.len().min(MAX_MEMBERS)
                    && members.iter().all(|(name, shallow)| {
                        map.get(name).is_some_and(|v| shallow_agrees(shallow, v))
                    })
            }
            (Top::Other, v) => !v.is_null() && !v.is_object(),
            _ => false,
        }
    }

    fn shallow_agrees(shallow: &Shallow<'_>, value: &Value) -> bool {
        match (shallow, value) {
            (Shallow::Null, Value::Null) => true,
            (Shallow::Bool(a), Value::Bool(b)) => a == b,
            (Shallow::Number(a), Value::Number(b)) => a == b,
            (Shallow::String(a), Value::String(b)) => a.as_ref() == cut(b),
            (Shallow::Array { len, first }, Value::Array(items)) => {
                *len == items.len()
                    && first.is_some() == items.first().is_some_and(Value::is_object)
            }
            (Shallow::Object(inner), Value::Object(map)) => {
                map.iter()
                    .take(MAX_MEMBERS)
                    .all(|(name, v)| match inner.get(name) {
                        Some(Leaf::Composite) => v.is_array() || v.is_object(),
                        Some(Leaf::Null) => v.is_null(),
                        Some(Leaf::Bool(b)) => v.as_bool() == Some(*b),
                        Some(Leaf::Number(n)) => v.as_number() == Some(n),
                        Some(Leaf::String(s)) => v.as_str().map(cut) == Some(s.as_ref()),
                        None => false,
                    })
            }
            _ => false,
        }
    }

    /// Whether any object in the (valid JSON) `body` repeats a name.
    fn has_duplicates(body: &[u8]) -> bool {
        struct Walk(bool);
        impl<'de> serde::Deserialize<'de> for Walk {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Walk, D::Error> {
                d.deserialize_any(WalkVisitor)
            }
        }
        struct WalkVisitor;
        impl<'de> serde::de::Visitor<'de> for WalkVisitor {
            type Value = Walk;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Walk, E> {
                Ok(Walk(false))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Walk, E> {
                Ok(Walk(false))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Walk, E> {
                Ok(Walk(false))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Walk, E> {
                Ok(Walk(false))
            }
            fn visit_str<E>(self, _: &str) -> Result<Walk, E> {
                Ok(Walk(false))
            }
            fn visit_unit<E>(self) -> Result<Walk, E> {
                Ok(Walk(false))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Walk, A::Error> {
                let mut dup = false;
                while let Some(Walk(d)) = seq.next_element()? {
                    dup |= d;
                }
                Ok(Walk(dup))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Walk, A::Error> {
                let mut names = std::collections::HashSet::new();
                let mut dup = false;
                while let Some((name, Walk(d))) = map.next_entry::<String, Walk>()? {
                    dup |= d || !names.insert(name);
                }
                Ok(Walk(dup))
            }
        }
        serde_json::from_slice::<Walk>(body).map_or(true, |w| w.0)
    }

    const SEEDS: [&str; 8] = [
        r#"{"status":"ok","code":0,"message":"success","data":{"id":7}}"#,
        r#"{"errors":[{"field":"q","message":"must be positive"},{}],"n":-1.5e3,"t":true,"z":-0}"#,
        r#"{"a\u00e9\ud83d\ude00":"x\"y\\z\/\b\f\n\r\t","deep":[[[{"k":[1,{"x":null}]}]]]}"#,
        r#"[1, 2.5, -0, 1e300, "s", {"a": [true, false, null]}]"#,
        r#"  {"e": {}, "f": [], "g": {"h": {"i": 1}}, "u": 18446744073709551616}  "#,
        r#"null"#,
        r#""just a string""#,
        r#"{"big":-9223372036854775809,"max":18446744073709551615,"neg":-9223372036854775808}"#,
    ];

    const ALPHABET: &[u8] = br#"{}[]:,"\ u0123456789abcdefnrtlsE+-.dD8Ac"#;

    #[test]
    fn the_seeds_read_as_serde_json_reads_them() {
        for seed in SEEDS {
            let value: Value = serde_json::from_str(seed).expect("a seed is JSON");
            let top = parse(seed.as_bytes()).expect("a seed is JSON");
            assert!(agrees(&top, &value), "{seed}: {top:?}");
        }
        for text in [
            "",
            " ",
            "{",
            "{\"a\"}",
            "{\"a\":1,}",
            "[1,]",
            "01",
            "-",
            "1.",
            "1e",
            ".5",
            "+1",
            "\"\\x\"",
            "\"a\nb\"",
            "{} {}",
            "nul",
            "tru",
            "\u{feff}{}",
            "{'a':1}",
            "[[[[]]]",
            "[]]",
            // Out of range or a lone surrogate, kept or skipped: no JSON, as for a `Value`.
            "[1e400]",
            r#"{"a":1e400}"#,
            r#"{"a":[1,{"b":[-1e999]}]}"#,
            r#"["\ud800"]"#,
            r#""\udc00x""#,
            r#"{"a":{"b":{"c\udc00":1}}}"#,
        ] {
            assert!(parse(text.as_bytes()).is_none(), "{text:?}");
            assert!(!serde_accepts(text.as_bytes()), "{text:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

        /// Mutated JSON is JSON to this reader exactly when it is to serde_json, and then
        /// reads the same.
        #[test]
        fn mutated_json_is_judged_and_read_as_serde_json_does(
            seed in 0..SEEDS.len(),
            edits in proptest::collection::vec((any::<usize>(), 0..3u8, 0..ALPHABET.len()), 0..4),
        ) {
            let mut body = SEEDS[seed].as_bytes().to_vec();
            for (at, op, byte) in edits {
                let at = at % (body.len() + 1);
                let byte = ALPHABET[byte];
                match op {
                    0 => body.insert(at, byte),
                    1 if at < body.len() => {
                        body.remove(at);
                    }
                    _ if at < body.len() => body[at] = byte,
                    _ => {}
                }
            }
            let ours = parse(&body);
            let text = String::from_utf8_lossy(&body);
            prop_assert_eq!(ours.is_some(), serde_accepts(&body), "{:?}", text);
            if let (Some(top), Ok(value)) = (ours, serde_json::from_slice::<Value>(&body)) {
                // serde_json's map keeps the last of duplicate names, this reader the first.
                if !has_duplicates(&body) {
                    prop_assert!(agrees(&top, &value), "{}: {:?}", text, top);
                }
            }
        }
    }
}
