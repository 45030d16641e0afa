//! Fuzzing entry points: what the cargo-fuzz targets in `fuzz/` call, and what
//! `tests/it/fuzz_corpus.rs` replays on stable for every committed corpus file.
//!
//! Each entry takes the fuzzer's bytes and must not panic on any input; it panics only when one
//! of its oracles finds candor breaking a promise, with the promise in the message. Not part of
//! candor's API (hidden from the docs); nothing on the request path calls it, and the product
//! does not contain it: it is compiled only with the `fuzzing` feature, which `fuzz/` and the
//! test builds turn on.
//!
//! | entry | exercises | oracles |
//! | --- | --- | --- |
//! | [`config()`] | `config::from_toml` (+ env overrides), `summary`, `[[tests]]` | errors explain themselves one line per issue |
//! | [`rules()`] | `RuleSet::{evaluate, explain, needs_body}` | evaluate agrees with explain; `Retry-After` bounded; header values valid; filled templates safe (`Location` segments encoded); headers, members and `unfilled` are the rule's |
//! | [`problem()`] | `Problem`, `sanitize_detail`, `proxy::hygiene` | valid JSON with the members; no hop-by-hop header survives |
//! | [`inspect()`] | `collect_bounded`, `decode::for_inspection`, `Normalizer::{plan, decide}`, `apply_head` | no byte lost or reordered; decoded ≤ limit and round-trips; untouched means byte-identical |
//! | [`audit()`] | `audit::Audit::{record, report}`, `audit::har::read`, `propose::{annotate, rules}` | report round-trips; routes bounded; examples short and secret-free; proposals pass `check` and their tests |
//! | [`exchange()`] | a real candor between a raw client and a raw upstream | liveness; 2xx bodies are the upstream's; requests upstream framed unambiguously |
//!
//! # Input formats
//!
//! Every entry but `config` reads its input in one of two ways. An input starting with `#` is
//! *text*: a readable format (described on each entry) that the committed seeds use, so that a
//! seed says what it is and a crash can be read. Any other input is *structured*: decoded with
//! `arbitrary` into typed values, which is how the fuzzer explores. Both reach the same oracles.

mod audit;
mod config;
mod exchange;
mod inspect;
mod problem;
mod rules;
mod wire;

pub use audit::audit;
pub use config::config;
pub use exchange::exchange;
pub use inspect::inspect;
pub use problem::problem;
pub use rules::rules;

use std::cell::Cell;

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// Bugs the fuzzers found that are not fixed yet. The oracles tolerate them unless [`strict`]
/// is on, so that fuzzing can go past them; each has a `fuzz/regressions/<target>/known-*`
/// input that fails under strict mode (`tests/it/fuzz_corpus.rs`, `known_bugs_still_reproduce`).
/// When one is fixed, drop its entry and its tolerance, and rename its input without `known-`.
/// Fixed so far: "connection-obs-text" (`fuzz/regressions/problem/connection-obs-text`).
pub const KNOWN_BUGS: &[&str] = &[];

thread_local! {
    static STRICT: Cell<bool> = const { Cell::new(false) };
}

/// Makes the oracles report the [`KNOWN_BUGS`] too, for entries called on this thread.
pub fn strict(on: bool) {
    STRICT.with(|s| s.set(on));
}

// Unused while no bug is known; the next known bug's tolerance asks it.
#[allow(dead_code)]
fn is_strict() -> bool {
    STRICT.with(Cell::get)
}

/// A fuzz entry: takes the fuzzer's bytes, panics only when an oracle fails.
pub type Entry = fn(&[u8]);

/// The fuzz targets, by name: what `fuzz/fuzz_targets/<name>.rs` and the corpus folders are called.
pub const TARGETS: [(&str, Entry); 6] = [
    ("config", config),
    ("rules", rules),
    ("problem", problem),
    ("inspect", inspect),
    ("exchange", exchange),
    ("audit", audit),
];

/// Separates the sections of a text input.
const SECTION: &[u8] = b"\n%%\n";

/// Whether `data` is a text input (see the module docs).
fn is_text(data: &[u8]) -> bool {
    data.first() == Some(&b'#')
}

/// Splits a text input into its sections.
fn sections(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(at) = find(rest, SECTION) {
        out.push(&rest[..at]);
        rest = &rest[at + SECTION.len()..];
    }
    out.push(rest);
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Drops leading `#` comment lines.
fn strip_comments(mut text: &[u8]) -> &[u8] {
    while text.first() == Some(&b'#') {
        text = match text.iter().position(|b| *b == b'\n') {
            Some(end) => &text[end + 1..],
            None => &[],
        };
    }
    text
}

/// Splits a head section into its first line and `name: value` lines (invalid ones skipped);
/// lines end with LF or CRLF.
fn head(text: &[u8]) -> (String, Vec<(HeaderName, HeaderValue)>) {
    let mut lines = text
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let fields = lines.filter_map(field).collect();
    (first, fields)
}

/// One `name: value` line as a header, if both parts are valid.
fn field(line: &[u8]) -> Option<(HeaderName, HeaderValue)> {
    let colon = line.iter().position(|b| *b == b':')?;
    let name = HeaderName::from_bytes(line[..colon].trim_ascii()).ok()?;
    let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii()).ok()?;
    Some((name, value))
}

/// Undoes the escapes of a text line: `\r`, `\n`, `\t`, `\\`, `\0` and `\xHH`; anything else is
/// taken as it is.
fn unescape(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        if b != b'\\' || i + 1 == line.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let (byte, used) = match line[i + 1] {
            b'r' => (b'\r', 2),
            b'n' => (b'\n', 2),
            b't' => (b'\t', 2),
            b'0' => (0, 2),
            b'\\' => (b'\\', 2),
            b'x' => match line
                .get(i + 2..i + 4)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(byte) => (byte, 4),
                None => (b'\\', 1),
            },
            _ => (b'\\', 1),
        };
        out.push(byte);
        i += used;
    }
    out
}

/// A word from a vocabulary, or one of the fuzzer's own.
#[derive(Debug, Clone, Arbitrary)]
enum Word {
    /// An index into the vocabulary (taken modulo its length).
    Known(u8),
    /// Anything.
    Raw(String),
}

impl Word {
    fn get(&self, vocabulary: &[&str]) -> String {
        match self {
            Word::Known(i) if !vocabulary.is_empty() => {
                vocabulary[usize::from(*i) % vocabulary.len()].to_owned()
            }
            Word::Known(_) => String::new(),
            Word::Raw(s) => s.clone(),
        }
    }
}

/// Bytes from a vocabulary, or the fuzzer's own.
#[derive(Debug, Clone, Arbitrary)]
enum Blob {
    Known(u8),
    Raw(Vec<u8>),
}

impl Blob {
    fn get(&self, vocabulary: &[&str]) -> Vec<u8> {
        match self {
            Blob::Known(i) if !vocabulary.is_empty() => vocabulary
                [usize::from(*i) % vocabulary.len()]
            .as_bytes()
            .to_vec(),
            Blob::Known(_) => Vec::new(),
            Blob::Raw(b) => b.clone(),
        }
    }
}

const METHODS: [&str; 9] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

const PATHS: [&str; 8] = [
    "/",
    "/users/7",
    "/users/42",
    "/orders/9",
    "/reports/daily",
    "/payments/1",
    "/export",
    "/a%20b/ü?x=1",
];

/// Header names the oracles care about, plus a few ordinary ones.
const HEADER_NAMES: [&str; 28] = [
    "content-type",
    "content-encoding",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
    "expect",
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
    "forwarded",
    "retry-after",
    "ratelimit-reset",
    "x-ratelimit-reset",
    "x-legacy",
    "accept",
    "etag",
    "last-modified",
    "x-secret",
    "cache-control",
];

/// Values that mean something to candor for one of the names above.
const HEADER_VALUES: [&str; 30] = [
    "application/json",
    "application/json; charset=utf-8",
    "application/problem+json",
    "text/html",
    "text/html; charset=iso-8859-1",
    "text/plain",
    "application/octet-stream",
    "gzip",
    "br",
    "zstd",
    "deflate",
    "identity",
    "gzip, br",
    "chunked",
    "close",
    "keep-alive",
    "Upgrade",
    "upgrade, x-secret, te",
    "x-secret, host, x-forwarded-for",
    "websocket",
    "h2c",
    "trailers",
    "100-continue",
    "30",
    "0",
    "Wed, 21 Oct 2015 07:28:00 GMT",
    "yes",
    "text/html,application/xhtml+xml,*/*;q=0.8",
    "abc-123",
    "",
];

/// A method from a word: a valid token, else `GET`.
fn method(word: &str) -> Method {
    Method::from_bytes(word.as_bytes()).unwrap_or(Method::GET)
}

/// Headers from (name, value) words; invalid pairs are skipped, at most 24 kept.
fn header_map(pairs: &[(Word, Blob)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs.iter().take(24) {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.get(&HEADER_NAMES).as_bytes()),
            HeaderValue::from_bytes(&value.get(&HEADER_VALUES)),
        ) else {
            continue;
        };
        map.append(name, value);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_helpers() {
        assert_eq!(
            sections(b"# a\nx\n%%\ny\n%%\n"),
            vec![&b"# a\nx"[..], b"y", b""]
        );
        assert_eq!(strip_comments(b"# a\n# b\nrest"), b"rest");
        assert_eq!(unescape(br"a\r\n\x00\x7f\q\"), b"a\r\n\0\x7f\\q\\");
        let (first, fields) = head(b"GET / 200\r\ncontent-type: text/html\nbad line\n");
        assert_eq!(first, "GET / 200");
        assert_eq!(fields.len(), 1);
    }
}
