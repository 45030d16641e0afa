//! Targeted extraction must agree with a full `Value` parse plus `JsonPointer::resolve`.

use super::*;
use serde_json::json;

/// What a pointer found, owned, for comparisons.
#[derive(Debug, Clone, PartialEq)]
enum Got {
    Value(Value),
    Array,
    Object,
    TooLarge,
}

/// Builds an extractor for `pointers` and returns what each finds in `body`, or `None` for all
/// of them when the body is not JSON.
fn extract(pointers: &[(&str, Need)], body: &[u8]) -> Option<Vec<Option<Got>>> {
    let mut builder = ExtractorBuilder::default();
    let slots: Vec<usize> = pointers
        .iter()
        .map(|(p, need)| {
            let parsed = JsonPointer::parse(p).unwrap_or_else(|e| panic!("{p}: {e}"));
            builder.add(&parsed, *need)
        })
        .collect();
    let extractor = builder.finish();
    let extracted = extractor.extract(body).ok()?;
    Some(
        slots
            .iter()
            .map(|s| {
                extractor.get(&extracted, *s).map(|found| match found {
                    Found::Value(v) => Got::Value(v.clone()),
                    Found::Array => Got::Array,
                    Found::Object => Got::Object,
                    Found::TooLarge => Got::TooLarge,
                })
            })
            .collect(),
    )
}

/// The reference: a whole `Value`, then `resolve`; containers reduced to their kind where the
/// pointer needs only [`Need::Scalar`] and lies under no pointer that needs a whole value.
fn reference(pointers: &[(&str, Need)], body: &[u8]) -> Option<Vec<Option<Got>>> {
    let doc: Value = serde_json::from_slice(body).ok()?;
    // Kept whole when it, or a pointer that is a prefix of it, needs the whole value.
    let full = |p: &str| {
        let tokens = JsonPointer::parse(p)
            .map(|p| p.tokens().to_vec())
            .unwrap_or_default();
        pointers.iter().any(|(q, n)| {
            let q = JsonPointer::parse(q)
                .map(|q| q.tokens().to_vec())
                .unwrap_or_default();
            *n == Need::Full && tokens.starts_with(&q)
        })
    };
    Some(
        pointers
            .iter()
            .map(|(p, _)| {
                let value = JsonPointer::parse(p).ok()?.resolve(&doc)?.clone();
                Some(match value {
                    Value::Array(_) if !full(p) => Got::Array,
                    Value::Object(_) if !full(p) => Got::Object,
                    value => Got::Value(value),
                })
            })
            .collect(),
    )
}

/// `pointers`, each with `need`.
fn with(pointers: &[&'static str], need: Need) -> Vec<(&'static str, Need)> {
    pointers.iter().map(|p| (*p, need)).collect()
}

fn nested(depth: usize, open: &str, close: &str, inner: &str) -> Vec<u8> {
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth)).into_bytes()
}

#[test]
fn extraction_matches_value_on_hazards() {
    let deep_ok = nested(127, "[", "]", "1");
    let deep_bad = nested(128, "[", "]", "1");
    let deep_obj_bad = nested(128, "{\"a\":", "}", "1");
    let deep_skipped = {
        let mut body = b"{\"status\":\"error\",\"x\":".to_vec();
        body.extend(nested(200, "[", "]", ""));
        body.push(b'}');
        body
    };
    let very_deep = nested(100_000, "[", "]", "");
    let cases: Vec<(&[&str], Vec<u8>)> = vec![
        (
            &["/status"],
            br#"{"status":"ok","status":"error"}"#.to_vec(),
        ),
        (&["/a/b", "/a/c"], br#"{"a":{"b":1},"a":{"c":2}}"#.to_vec()),
        (&["/a/0"], br#"{"a":[1],"a":{"0":5}}"#.to_vec()),
        (&["/a/0"], br#"{"a":{"0":5},"a":[7]}"#.to_vec()),
        (&["/a/b"], br#"{"a":{"b":1},"a":3}"#.to_vec()),
        (
            &["/a", "/a/b", "/a/b/0", "/a/c"],
            br#"{"a":{"b":[9]}}"#.to_vec(),
        ),
        (&["", "/x"], br#"{"x":1}"#.to_vec()),
        (
            &["/l/0", "/l/1", "/l/01", "/l/-", "/l/2"],
            br#"{"l":[10,11]}"#.to_vec(),
        ),
        (&["/l/18446744073709551616"], br#"{"l":[1]}"#.to_vec()),
        (
            &["/a~1b", "/m~0n", "/"],
            br#"{"a/b":1,"m~n":2,"":3}"#.to_vec(),
        ),
        (&["/a\"b", "/é"], br#"{"a\"b":1,"\u00e9":2}"#.to_vec()),
        (&["/x"], br#"{"x":1} x"#.to_vec()),
        (&["/x"], br#"{"x":1}   "#.to_vec()),
        (&["/x"], b"\xef\xbb\xbf{\"x\":1}".to_vec()),
        (&["/x"], br#"{"x":1,"y":1e400}"#.to_vec()),
        (&["/x"], br#"{"x":1,"y":NaN}"#.to_vec()),
        (&["/x"], b"{\"x\":1,\"y\":\"\xff\"}".to_vec()),
        (&["/x"], br#"{"x":1,"y":"\ud800"}"#.to_vec()),
        (&["/x"], br#"{"x":1,}"#.to_vec()),
        (&["/x"], b"".to_vec()),
        (&["/x"], b" ".to_vec()),
        (&["/x"], b"<html>oops</html>".to_vec()),
        (&["/0"], deep_ok),
        (&["/0"], deep_bad),
        (&["/a"], deep_obj_bad),
        (&["/status"], deep_skipped),
        (&["/0"], very_deep),
        (&["/x/y"], br#"{"x":"str"}"#.to_vec()),
        (&["/n"], br#"{"n":-0.0,"m":18446744073709551615}"#.to_vec()),
    ];
    for (pointers, body) in cases {
        for need in [Need::Scalar, Need::Full] {
            let pointers = with(pointers, need);
            let got = extract(&pointers, &body);
            let want = reference(&pointers, &body);
            assert_eq!(
                got,
                want,
                "{pointers:?} in {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
}

#[test]
fn hazards_have_the_documented_outcome() {
    let scalar = |p: &'static str| vec![(p, Need::Scalar)];
    let last = extract(&scalar("/status"), br#"{"status":"ok","status":"error"}"#);
    assert_eq!(last, Some(vec![Some(Got::Value(json!("error")))]));
    // serde_json's limit: 127 nested arrays or objects parse, the 128th does not.
    assert!(extract(&scalar("/0"), &nested(127, "[", "]", "1")).is_some());
    assert!(extract(&scalar("/0"), &nested(128, "[", "]", "1")).is_none());
    for body in [
        nested(129, "[", "]", ""),
        nested(100_000, "{\"a\":", "}", "1"),
        b"{\"a\":1} trailing".to_vec(),
        b"{\"a\":\"\xc3\x28\"}".to_vec(),
    ] {
        assert_eq!(extract(&scalar("/a"), &body), None);
    }
}

#[test]
fn probes_keep_only_the_kind_of_a_container_and_walk_on_below() {
    let body = br#"{"data":{"id":7,"items":[1,2,3]},"list":[{"a":1}]}"#;
    let pointers = [
        ("/data", Need::Scalar),
        ("/data/id", Need::Scalar),
        ("/data/items", Need::Scalar),
        ("/list", Need::Scalar),
        ("/list/0/a", Need::Full),
    ];
    let got = extract(&pointers, body);
    let want = vec![
        Some(Got::Object),
        Some(Got::Value(json!(7))),
        Some(Got::Array),
        Some(Got::Array),
        Some(Got::Value(json!(1))),
    ];
    assert_eq!(got, Some(want));
    // A whole value where one is needed, and longer pointers resolved inside it.
    let pointers = [
        ("/data", Need::Full),
        ("/data/items/1", Need::Scalar),
        ("/data", Need::Scalar),
    ];
    let got = extract(&pointers, body);
    let data = json!({"id": 7, "items": [1, 2, 3]});
    let want = vec![
        Some(Got::Value(data.clone())),
        Some(Got::Value(json!(2))),
        Some(Got::Value(data)),
    ];
    assert_eq!(got, Some(want));
}

/// SplitMix64: a tiny seeded generator, so failures reproduce from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Keys and tokens drawn from one small alphabet so that pointers often hit.
const TOKENS: [&str; 12] = [
    "a", "b", "status", "0", "1", "2", "01", "-", "", "a/b", "m~n", "é",
];

/// Writes `text` as a JSON string, sometimes escaping characters that need no escape.
fn write_string(rng: &mut Rng, text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '/' if rng.one_in(2) => out.extend_from_slice(b"\\/"),
            c if rng.one_in(4) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.extend_from_slice(format!("\\u{unit:04x}").as_bytes());
                }
            }
            c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    if rng.one_in(400) {
        out.push(0xff);
    }
    out.push(b'"');
}

fn space(rng: &mut Rng, out: &mut Vec<u8>) {
    if rng.one_in(3) {
        out.extend_from_slice(rng.pick(&[" ", "\n", "\t ", "\r\n  "]).as_bytes());
    }
}

fn write_value(rng: &mut Rng, depth: usize, out: &mut Vec<u8>) {
    space(rng, out);
    let kind = if depth >= 5 {
        rng.below(6)
    } else {
        rng.below(9)
    };
    match kind {
        0 => out.extend_from_slice(b"null"),
        1 => out.extend_from_slice(rng.pick(&["true", "false"]).as_bytes()),
        2 => out.extend_from_slice(
            rng.pick(&[
                "0",
                "7",
                "-3",
                "1042",
                "1042.0",
                "404",
                "18446744073709551615",
                "-9223372036854775808",
                "1.5e3",
                "-0.0",
            ])
            .as_bytes(),
        ),
        3 if rng.one_in(300) => out.extend_from_slice(b"1e400"),
        3..=5 => {
            let token = rng.pick(&TOKENS);
            write_string(rng, token, out);
        }
        6 | 7 => {
            out.push(b'{');
            let n = rng.below(5);
            for i in 0..n {
                if i > 0 {
                    out.push(b',');
                }
                space(rng, out);
                let token = rng.pick(&TOKENS);
                write_string(rng, token, out);
                space(rng, out);
                out.push(b':');
                write_value(rng, depth + 1, out);
            }
            space(rng, out);
            out.push(b'}');
        }
        _ => {
            out.push(b'[');
            let n = rng.below(5);
            for i in 0..n {
                if i > 0 {
                    out.push(b',');
                }
                write_value(rng, depth + 1, out);
            }
            out.push(b']');
        }
    }
    space(rng, out);
}

/// A random document: usually well formed, sometimes deep, truncated or followed by garbage.
fn document(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    let wrap = if rng.one_in(20) {
        120 + rng.below(16)
    } else {
        0
    };
    for _ in 0..wrap {
        if rng.one_in(2) {
            out.extend_from_slice(b"[");
        } else {
            out.extend_from_slice(b"{\"a\":");
        }
    }
    let opened = out.clone();
    write_value(rng, 0, &mut out);
    for open in opened.iter().rev() {
        match open {
            b'[' => out.push(b']'),
            b'{' => out.push(b'}'),
            _ => {}
        }
    }
    if rng.one_in(50) {
        out.extend_from_slice(b" x");
    }
    if rng.one_in(50) && !out.is_empty() {
        out.truncate(rng.below(out.len()));
    }
    out
}

/// A random pointer, as text (tokens escaped per RFC 6901 §3).
fn pointer(rng: &mut Rng) -> String {
    let mut text = String::new();
    for _ in 0..rng.below(4) {
        text.push('/');
        text.push_str(&rng.pick(&TOKENS).replace('~', "~0").replace('/', "~1"));
    }
    text
}

#[test]
fn extraction_matches_value_on_random_documents() {
    let mut seeds = Rng(0x00C4_4D02);
    let (mut hits, mut invalid) = (0, 0);
    for _ in 0..4000 {
        let seed = seeds.next();
        let mut rng = Rng(seed);
        let body = document(&mut rng);
        let mut texts: Vec<String> = (0..1 + rng.below(6)).map(|_| pointer(&mut rng)).collect();
        // Prefixes of one another are the tricky case; make them common.
        if let Some(longest) = texts.iter().max_by_key(|t| t.len()).cloned() {
            if let Some(cut) = longest.rfind('/').filter(|_| rng.one_in(2)) {
                texts.push(longest[..cut].to_owned());
            }
        }
        let pointers: Vec<(&str, Need)> = texts
            .iter()
            .map(|t| {
                let need = if rng.one_in(3) {
                    Need::Full
                } else {
                    Need::Scalar
                };
                (t.as_str(), need)
            })
            .collect();
        let got = extract(&pointers, &body);
        let want = reference(&pointers, &body);
        assert_eq!(
            got,
            want,
            "seed {seed:#x}: {pointers:?} in {}",
            String::from_utf8_lossy(&body)
        );
        match want {
            Some(values) => hits += values.iter().filter(|v| v.is_some()).count(),
            None => invalid += 1,
        }
    }
    // The generator must exercise both outcomes, or the comparison proves little.
    assert!(hits > 2000, "{hits} hits");
    assert!(invalid > 100, "{invalid} invalid documents");
}
