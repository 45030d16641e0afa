//! Pass-through property: a response no rule can match leaves candor byte-identical, whatever
//! its status, headers, body bytes, content coding and framing.
//!
//! One candor, running the example config's rules (`config/candor.toml`), sits in front of one
//! raw TCP upstream for every case. A case registers the exact bytes the upstream answers with
//! under a fresh path; a fresh raw client connection then asks for that path and reads every byte
//! candor sends until it closes. The two messages are compared after undoing only the transfer
//! framing (Content-Length, chunked, or read-to-close) on both sides: the status line, every
//! header but those a proxy legitimately changes (`connection`, `keep-alive`,
//! `transfer-encoding`, `content-length`, `x-request-id`, and `date` when the upstream sent
//! none), and the body bytes, still content-coded.
//!
//! The generator knows the example rules: all want `200` to a GET and look at top-level JSON
//! members (`/status`, `/code`, `/errors`, `/error`, `/data`, `/http_status`). Most JSON it makes
//! misses them, some narrowly (`"code":1043`, `"code":"1042"`, the trigger members one level
//! down). It also makes bodies a rule *would* match, and predicts, as candor must, whether they
//! can be inspected at all (status 200, an inspectable media type, a coding candor decodes, and
//! at most `inspect.max_body_bytes` both as read and as decoded). Those that cannot must pass
//! byte-identical too; those that can must be rewritten by that rule, which keeps the oracle
//! honest about where the inspection limit really is.
//!
//! 4xx statuses other than 429 are generated because no generated media type is HTML, so no
//! built-in can want them; 5xx (scrub), 429 and 503 (`retry-after`) are left out, as built-ins
//! rewrite those by design. `PROPTEST_CASES` overrides the case count.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{self, http1, rng::Rng};

/// `inspect.max_body_bytes` in the example config; the harness checks it.
const LIMIT: usize = 256 * 1024;

/// Largest generated body, encoded or not.
const MAX_BODY: usize = 300 * 1024;

/// Cases when `PROPTEST_CASES` is not set: enough to cover every dimension in a few runs, few
/// enough for a debug build to finish in seconds.
const DEFAULT_CASES: u32 = 48;

/// Chunks that carry an extension. hyper's client fails a body once its chunk extensions pass
/// 16 KiB in total (`CHUNKED_EXTENSIONS_LIMIT`, a denial-of-service guard), which candor then
/// answers with a 502 (inspected) or a cut-off body (streamed): that limit is hyper's, not a
/// pass-through property, so cases stay well below it.
const MAX_EXTENDED_CHUNKS: usize = 256;

/// How long one exchange may take before the case fails instead of hanging the suite.
const EXCHANGE_DEADLINE: Duration = Duration::from_secs(20);

// ─── Cases ──────────────────────────────────────────────────────────────────────────────────────

/// Header or trailer fields in order: name lowercased, value as sent.
type Fields = Vec<(String, Vec<u8>)>;

/// One upstream response, described compactly enough to read in a failure report.
#[derive(Debug, Clone)]
struct Case {
    status: u16,
    /// `None`: the canonical reason phrase (empty for unregistered codes).
    reason: Option<String>,
    content_type: Option<&'static str>,
    body: BodySpec,
    coding: Coding,
    framing: Framing,
    /// Headers beyond the representation and framing ones, in the order they are sent.
    extra: Fields,
    /// How the upstream spells header names.
    case_style: NameCase,
    /// How many writes the upstream splits its bytes into, a millisecond apart, so that heads
    /// and bodies arrive in pieces.
    pacing: Pacing,
}

#[derive(Debug, Clone, Copy)]
struct Pacing {
    writes: usize,
    seed: u64,
}

#[derive(Debug, Clone)]
struct BodySpec {
    content: Content,
    /// Target length before content coding (JSON shorter than its members keeps their length).
    len: usize,
}

#[derive(Debug, Clone)]
enum Content {
    /// Pseudo-random bytes from `seed`.
    Noise { seed: u64 },
    /// A JSON object no example rule matches: `(member name, raw JSON value)`, then padding.
    Json {
        members: Vec<(String, String)>,
        pad: Pad,
    },
    /// A JSON object `trigger`'s rule matches whenever it is inspected.
    Trigger { trigger: Trigger, pad: Pad },
}

/// How a JSON body is padded up to its target length: a `"pad"` string member.
#[derive(Debug, Clone, Copy)]
enum Pad {
    /// `xxxx…`: compresses to almost nothing.
    Repeated,
    /// Pseudo-random letters and digits: compresses to about three quarters.
    Random(u64),
}

/// A body an example rule matches, with the rule's name and the status it rewrites 200 to.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    UserNotFound,
    ValidationFailed,
    QuotaExceeded,
    NullEntity,
    StatusInBody,
}

impl Trigger {
    fn members(self) -> &'static str {
        match self {
            Trigger::UserNotFound => r#""status":"error","code":1042,"message":"user not found""#,
            Trigger::ValidationFailed => r#""status":"error","errors":[{"field":"email"}]"#,
            Trigger::QuotaExceeded => r#""error":"rate_limited","retry_in":3"#,
            Trigger::NullEntity => r#""data":null"#,
            Trigger::StatusInBody => r#""http_status":404,"message":"gone""#,
        }
    }

    fn rule(self) -> &'static str {
        match self {
            Trigger::UserNotFound => "user-not-found",
            Trigger::ValidationFailed => "validation-failed",
            Trigger::QuotaExceeded => "quota-exceeded",
            Trigger::NullEntity => "null-entity",
            Trigger::StatusInBody => "status-in-body",
        }
    }

    fn status(self) -> u16 {
        match self {
            Trigger::UserNotFound | Trigger::NullEntity | Trigger::StatusInBody => 404,
            Trigger::ValidationFailed => 422,
            Trigger::QuotaExceeded => 429,
        }
    }
}

/// The `Content-Encoding` sent, and how the body bytes are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    /// No `Content-Encoding`.
    Absent,
    /// `Content-Encoding: identity`.
    Identity,
    Gzip,
    /// `deflate` as RFC 9110 defines it: zlib.
    Zlib,
    /// `deflate` as many servers send it: raw deflate.
    RawDeflate,
    Brotli,
    Zstd,
    /// `gzip, br`: gzip first, then brotli.
    GzipThenBrotli,
    /// `x-unknown`, with the bytes as they are.
    Unknown,
    /// `gzip`, but the bytes are not gzip.
    Lying,
}

impl Coding {
    fn header(self) -> Option<&'static str> {
        match self {
            Coding::Absent => None,
            Coding::Identity => Some("identity"),
            Coding::Gzip | Coding::Lying => Some("gzip"),
            Coding::Zlib | Coding::RawDeflate => Some("deflate"),
            Coding::Brotli => Some("br"),
            Coding::Zstd => Some("zstd"),
            Coding::GzipThenBrotli => Some("gzip, br"),
            Coding::Unknown => Some("x-unknown"),
        }
    }

    /// Whether candor can undo this coding to inspect the body.
    fn decodable(self) -> bool {
        !matches!(self, Coding::Unknown | Coding::Lying)
    }

    fn encode(self, data: &[u8]) -> Vec<u8> {
        use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
        use flate2::Compression;
        // Writing into a Vec cannot fail, so neither can these encoders.
        fn finish(result: std::io::Result<Vec<u8>>) -> Vec<u8> {
            result.expect("encoding into a Vec cannot fail")
        }
        match self {
            Coding::Absent | Coding::Identity | Coding::Unknown | Coding::Lying => data.to_vec(),
            Coding::Gzip => {
                let mut e = GzEncoder::new(Vec::new(), Compression::fast());
                finish(e.write_all(data).and_then(|()| e.finish()))
            }
            Coding::Zlib => {
                let mut e = ZlibEncoder::new(Vec::new(), Compression::fast());
                finish(e.write_all(data).and_then(|()| e.finish()))
            }
            Coding::RawDeflate => {
                let mut e = DeflateEncoder::new(Vec::new(), Compression::fast());
                finish(e.write_all(data).and_then(|()| e.finish()))
            }
            Coding::Brotli => {
                let mut out = Vec::new();
                {
                    let mut w = brotli::CompressorWriter::new(&mut out, 4096, 1, 22);
                    finish(w.write_all(data).map(|()| Vec::new()));
                }
                out
            }
            Coding::Zstd => finish(zstd::stream::encode_all(data, 1)),
            Coding::GzipThenBrotli => Coding::Brotli.encode(&Coding::Gzip.encode(data)),
        }
    }
}

/// How the upstream frames the body on the wire (RFC 9112 §6).
#[derive(Debug, Clone, Copy)]
enum Framing {
    Length,
    Chunked {
        seed: u64,
        /// Chunks are 1..=max bytes.
        max: usize,
        upper_hex: bool,
        /// Add a chunk extension (`;ext=1`), which recipients must ignore, to the first
        /// [`MAX_EXTENDED_CHUNKS`] chunks.
        extension: bool,
    },
    /// No length: the body ends when the upstream closes the connection.
    Close,
}

#[derive(Debug, Clone, Copy)]
enum NameCase {
    Lower,
    Title,
    Upper,
}

impl NameCase {
    fn apply(self, name: &str) -> String {
        match self {
            NameCase::Lower => name.to_owned(),
            NameCase::Upper => name.to_ascii_uppercase(),
            NameCase::Title => name
                .split('-')
                .map(|part| {
                    let mut chars = part.chars();
                    chars.next().map_or_else(String::new, |first| {
                        first.to_ascii_uppercase().to_string() + chars.as_str()
                    })
                })
                .collect::<Vec<_>>()
                .join("-"),
        }
    }
}

impl BodySpec {
    /// The body before content coding.
    fn bytes(&self) -> Vec<u8> {
        match &self.content {
            Content::Noise { seed } => Rng::new(*seed).bytes(self.len),
            Content::Json { members, pad } => {
                let members: Vec<String> = members
                    .iter()
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect();
                padded(&members.join(","), *pad, self.len)
            }
            Content::Trigger { trigger, pad } => padded(trigger.members(), *pad, self.len),
        }
    }

    fn trigger(&self) -> Option<Trigger> {
        match self.content {
            Content::Trigger { trigger, .. } => Some(trigger),
            _ => None,
        }
    }
}

/// `{members}` with a `"pad"` member that brings it to `len` bytes when there is room.
fn padded(members: &str, pad: Pad, len: usize) -> Vec<u8> {
    let comma = if members.is_empty() { "" } else { "," };
    let bare = members.len() + 2;
    let overhead = comma.len() + r#""pad":"""#.len();
    let mut out = Vec::with_capacity(len.max(bare));
    out.push(b'{');
    out.extend_from_slice(members.as_bytes());
    if len >= bare + overhead {
        let fill = len - bare - overhead;
        out.extend_from_slice(comma.as_bytes());
        out.extend_from_slice(br#""pad":""#);
        match pad {
            Pad::Repeated => out.resize(out.len() + fill, b'x'),
            Pad::Random(seed) => {
                const ALPHABET: &[u8] =
                    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
                let mut mix = Rng::new(seed);
                out.extend(
                    mix.bytes(fill)
                        .into_iter()
                        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()]),
                );
            }
        }
        out.push(b'"');
    }
    out.push(b'}');
    out
}

// ─── Strategies ─────────────────────────────────────────────────────────────────────────────────

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        // The only status the example rules want.
        7 => Just(200u16),
        3 => prop::sample::select(vec![
            201u16, 202, 203, 204, 206, 299, 300, 301, 302, 303, 304, 307, 308, 399, 400, 404, 409,
            410, 418, 422, 499,
        ]),
    ]
}

fn reason() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => Just(None),
        1 => Just(Some(String::new())),
        1 => "[A-Za-z][A-Za-z ]{0,18}[A-Za-z]".prop_map(Some),
    ]
}

fn content_type() -> impl Strategy<Value = Option<&'static str>> {
    // JSON most often: it is what the rules read.
    prop::sample::select(vec![
        Some("application/json"),
        Some("application/json"),
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("text/plain"),
        Some("text/plain;charset=ISO-8859-1"),
        Some("application/octet-stream"),
        Some("text/event-stream"),
        None,
    ])
}

fn len() -> impl Strategy<Value = usize> {
    prop_oneof![
        2 => 0usize..=256,
        3 => 0usize..=MAX_BODY,
        // Both sides of the inspection limit, where reading and decoding change their minds.
        4 => (LIMIT - 64)..=(LIMIT + 64),
    ]
}

fn pad() -> impl Strategy<Value = Pad> {
    prop_oneof![Just(Pad::Repeated), any::<u64>().prop_map(Pad::Random)]
}

/// Member names that never collide with a pointer of the example rules, nor with `pad`.
fn free_name() -> impl Strategy<Value = String> {
    "[a-z_]{1,10}".prop_filter("a name an example rule points at", |name| {
        !matches!(
            name.as_str(),
            "status" | "code" | "errors" | "error" | "data" | "http_status" | "pad"
        )
    })
}

/// Any JSON value, serialised; nested members may use any name, since the rules only look at
/// the top level.
fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        (-1.0e6f64..1.0e6).prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z_]{1,11}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
    .prop_map(|v| v.to_string())
}

/// A JSON object no example rule matches, some members narrowly missing one.
fn missing_members() -> impl Strategy<Value = Vec<(String, String)>> {
    let status = prop::sample::select(vec![
        None,
        Some(r#""ok""#),
        Some(r#""success""#),
        Some(r#""error""#),
        Some(r#""ERROR""#),
        Some(r#""error ""#),
        Some("null"),
    ]);
    let code = prop::sample::select(vec![
        None,
        Some("1041"),
        Some("1043"),
        Some(r#""1042""#),
        Some("1042.5"),
        Some("-1042"),
        Some("[1042]"),
    ]);
    let errors = prop::sample::select(vec![None, Some("[]"), Some("null"), Some(r#"["x"]"#)]);
    let error = prop::sample::select(vec![
        None,
        Some(r#""rate_limit""#),
        Some(r#""RATE_LIMITED""#),
        Some("null"),
        Some(r#"{"error":"rate_limited"}"#),
    ]);
    let data = prop::sample::select(vec![
        None,
        Some("{}"),
        Some("[]"),
        Some("0"),
        Some("false"),
        Some(r#""null""#),
        Some(r#"{"data":null}"#),
        Some("[null]"),
    ]);
    let nested = prop::sample::select(vec![
        None,
        Some(
            r#"{"status":"error","code":1042,"errors":[],"error":"rate_limited","data":null,"http_status":500}"#,
        ),
    ]);
    let others = prop::collection::vec((free_name(), json_value()), 0..5);
    (status, code, errors, error, data, nested, others)
        .prop_map(|(status, code, errors, error, data, nested, others)| {
            let mut members: Vec<(String, String)> = Vec::new();
            let mut add = |name: &str, value: Option<&str>| {
                if let Some(value) = value {
                    members.push((name.to_owned(), value.to_owned()));
                }
            };
            // `"status":"error"` misses only without `/code` 1042 and without `/errors`.
            let erroneous = status == Some(r#""error""#);
            add("status", status);
            add("code", code);
            add("errors", errors.filter(|_| !erroneous));
            add("error", error);
            add("data", data);
            add("meta", nested);
            // Later duplicates would win (as in serde_json), so free names stay unique and
            // distinct from the names above.
            for (name, value) in others {
                if !members.iter().any(|(n, _)| *n == name) {
                    members.push((name, value));
                }
            }
            members
        })
        .prop_shuffle()
}

fn content() -> impl Strategy<Value = Content> {
    let trigger = prop::sample::select(vec![
        Trigger::UserNotFound,
        Trigger::ValidationFailed,
        Trigger::QuotaExceeded,
        Trigger::NullEntity,
        Trigger::StatusInBody,
    ]);
    prop_oneof![
        3 => any::<u64>().prop_map(|seed| Content::Noise { seed }),
        4 => (missing_members(), pad()).prop_map(|(members, pad)| Content::Json { members, pad }),
        2 => (trigger, pad()).prop_map(|(trigger, pad)| Content::Trigger { trigger, pad }),
    ]
}

fn coding() -> impl Strategy<Value = Coding> {
    prop::sample::select(vec![
        Coding::Absent,
        Coding::Absent,
        Coding::Identity,
        Coding::Gzip,
        Coding::Gzip,
        Coding::Zlib,
        Coding::RawDeflate,
        Coding::Brotli,
        Coding::Zstd,
        Coding::GzipThenBrotli,
        Coding::Unknown,
        Coding::Lying,
    ])
}

fn framing() -> impl Strategy<Value = Framing> {
    let chunked = (
        any::<u64>(),
        prop_oneof![1usize..=16, 1usize..=70_000],
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(seed, max, upper_hex, extension)| Framing::Chunked {
            seed,
            max,
            upper_hex,
            extension,
        });
    prop_oneof![
        3 => Just(Framing::Length),
        3 => chunked,
        1 => Just(Framing::Close),
    ]
}

fn extra_headers() -> impl Strategy<Value = Fields> {
    // Visible ASCII and obs-text (RFC 9110 §5.5), with inner spaces; never blank at either end.
    let value = prop::collection::vec(prop_oneof![0x20u8..=0x7e, 0x80u8..=0xff], 1..40).prop_map(
        |mut v| {
            v.insert(0, b'v');
            v.push(b'v');
            v
        },
    );
    let header = prop_oneof![
        "\"[a-z0-9]{1,16}\"".prop_map(|v| ("etag".to_owned(), v.into_bytes())),
        Just(("cache-control".to_owned(), b"max-age=60, public".to_vec())),
        Just(("vary".to_owned(), b"Accept-Encoding".to_vec())),
        Just((
            "last-modified".to_owned(),
            b"Wed, 21 Oct 2015 07:28:00 GMT".to_vec()
        )),
        Just(("date".to_owned(), b"Wed, 21 Oct 2015 07:28:00 GMT".to_vec())),
        "[a-z]{1,8}=[a-z0-9]{0,16}; Path=/".prop_map(|v| ("set-cookie".to_owned(), v.into_bytes())),
        // `x-` plus letters can be neither `x-request-id` nor `x-candor-*`.
        ("x-[a-z]{1,10}", value),
    ];
    prop::collection::vec(header, 0..6).prop_map(|headers| {
        // One `date` at most: hyper keeps it, and a second one would be a different message.
        let mut seen_date = false;
        headers
            .into_iter()
            .filter(|(name, _)| name != "date" || !std::mem::replace(&mut seen_date, true))
            .collect()
    })
}

fn case() -> impl Strategy<Value = Case> {
    (
        status(),
        reason(),
        content_type(),
        (content(), len()),
        coding(),
        framing(),
        extra_headers(),
        (
            prop::sample::select(vec![NameCase::Lower, NameCase::Title, NameCase::Upper]),
            prop_oneof![3 => Just(1usize), 1 => 2usize..=8],
            any::<u64>(),
        ),
    )
        .prop_map(
            |(
                status,
                reason,
                content_type,
                (content, len),
                coding,
                framing,
                extra,
                (case_style, writes, seed),
            )| {
                let len = if matches!(status, 204 | 304) { 0 } else { len };
                Case {
                    status,
                    reason,
                    content_type,
                    body: BodySpec { content, len },
                    coding,
                    framing,
                    extra,
                    case_style,
                    pacing: Pacing { writes, seed },
                }
            },
        )
}

// ─── The upstream's bytes ───────────────────────────────────────────────────────────────────────

/// What the upstream writes for one case, and what a client must end up with.
#[derive(Debug)]
struct Wire {
    /// Head and framed body, as written.
    bytes: Vec<u8>,
    /// Where the upstream pauses between writes, ascending.
    cuts: Vec<usize>,
    /// Close the connection after writing (read-to-close framing).
    close: bool,
    reason: Vec<u8>,
    /// End-to-end headers sent, names lowercase, in order.
    headers: Fields,
    /// The body after content coding, without transfer framing.
    body: Vec<u8>,
    /// Length before content coding.
    decoded_len: usize,
}

fn wire(case: &Case) -> Wire {
    // RFC 9110 §15.3.5, §15.4.5: 204 and 304 have no content.
    let bodiless = matches!(case.status, 204 | 304);
    let (decoded, body) = if bodiless {
        (Vec::new(), Vec::new())
    } else {
        let decoded = case.body.bytes();
        let body = case.coding.encode(&decoded);
        (decoded, body)
    };
    let reason = case.reason.clone().unwrap_or_else(|| {
        http::StatusCode::from_u16(case.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("")
            .to_owned()
    });

    let mut headers: Fields = Vec::new();
    if let Some(content_type) = case.content_type {
        headers.push(("content-type".into(), content_type.as_bytes().to_vec()));
    }
    if let Some(coding) = case.coding.header() {
        headers.push(("content-encoding".into(), coding.as_bytes().to_vec()));
    }
    headers.extend(case.extra.iter().cloned());

    let mut bytes = format!("HTTP/1.1 {} {reason}\r\n", case.status).into_bytes();
    let mut line = |name: &str, value: &[u8]| {
        bytes.extend_from_slice(case.case_style.apply(name).as_bytes());
        bytes.extend_from_slice(b": ");
        bytes.extend_from_slice(value);
        bytes.extend_from_slice(b"\r\n");
    };
    for (name, value) in &headers {
        line(name, value);
    }
    let mut close = false;
    if !bodiless {
        match case.framing {
            Framing::Length => line("content-length", body.len().to_string().as_bytes()),
            Framing::Chunked { .. } => line("transfer-encoding", b"chunked"),
            Framing::Close => close = true,
        }
    }
    bytes.extend_from_slice(b"\r\n");
    match case.framing {
        _ if bodiless => {}
        Framing::Length | Framing::Close => bytes.extend_from_slice(&body),
        Framing::Chunked {
            seed,
            max,
            upper_hex,
            extension,
        } => {
            let mut mix = Rng::new(seed);
            let mut extended = 0;
            let mut rest = &body[..];
            while !rest.is_empty() {
                let size = (1 + mix.next_u64() as usize % max).min(rest.len());
                let (chunk, after) = rest.split_at(size);
                let size = if upper_hex {
                    format!("{size:X}")
                } else {
                    format!("{size:x}")
                };
                bytes.extend_from_slice(size.as_bytes());
                if extension && extended < MAX_EXTENDED_CHUNKS {
                    extended += 1;
                    bytes.extend_from_slice(b";ext=1");
                }
                bytes.extend_from_slice(b"\r\n");
                bytes.extend_from_slice(chunk);
                bytes.extend_from_slice(b"\r\n");
                rest = after;
            }
            bytes.extend_from_slice(b"0\r\n\r\n");
        }
    }
    let mut mix = Rng::new(case.pacing.seed);
    let mut cuts: Vec<usize> = (1..case.pacing.writes)
        .map(|_| mix.next_u64() as usize % bytes.len().max(1))
        .collect();
    cuts.sort_unstable();
    Wire {
        bytes,
        cuts,
        close,
        reason: reason.into_bytes(),
        headers,
        body,
        decoded_len: decoded.len(),
    }
}

/// The rule and status candor must rewrite to, when the body is one a rule matches and candor
/// can inspect it; `None` when the response must pass untouched.
fn expected_rewrite(case: &Case, wire: &Wire) -> Option<Trigger> {
    let trigger = case.body.trigger()?;
    let media = case.content_type?.split(';').next()?.trim();
    let inspectable = case.status == 200
        && matches!(media, "application/json" | "text/plain")
        && case.coding.decodable()
        && !wire.body.is_empty()
        && wire.body.len() <= LIMIT
        && wire.decoded_len <= LIMIT;
    inspectable.then_some(trigger)
}

// ─── The harness ────────────────────────────────────────────────────────────────────────────────

/// The upstream's script: responses by path, and what went wrong (tasks never panic).
#[derive(Default)]
struct Script {
    responses: Mutex<HashMap<String, Arc<Wire>>>,
    errors: Mutex<Vec<String>>,
}

impl Script {
    fn error(&self, message: String) {
        self.errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(message);
    }

    fn take_errors(&self) -> Vec<String> {
        std::mem::take(&mut *self.errors.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// One candor and one upstream, shared by every case of this file.
struct Harness {
    runtime: tokio::runtime::Runtime,
    proxy: SocketAddr,
    script: Arc<Script>,
    next_id: AtomicU64,
    _candor: harness::Candor,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a test runtime starts");
        let script = Arc::new(Script::default());
        let (proxy, candor) = runtime.block_on(async {
            let served = script.clone();
            let (upstream, _) =
                harness::raw_upstream(move |stream| serve(stream, served.clone())).await;
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/candor.toml");
            let env = HashMap::from([
                (
                    "CANDOR__UPSTREAM__URL".to_owned(),
                    format!("http://{upstream}"),
                ),
                ("CANDOR__SERVER__WORKERS".to_owned(), "1".to_owned()),
            ]);
            let config = candor::config::load_with_env(std::path::Path::new(path), env)
                .unwrap_or_else(|e| panic!("the example config loads: {e}"));
            assert_eq!(
                config.inspect.max_body_bytes, LIMIT,
                "the generator's limit"
            );
            let candor = harness::Candor::start(config).await;
            (candor.addr, candor)
        });
        Harness {
            runtime,
            proxy,
            script,
            next_id: AtomicU64::new(0),
            _candor: candor,
        }
    })
}

/// Serves one upstream connection: each request gets the response registered for its path.
async fn serve(mut stream: TcpStream, script: Arc<Script>) {
    loop {
        let head = harness::read_head(&mut stream).await;
        if head.is_empty() {
            return;
        }
        if !head.ends_with("\r\n\r\n") {
            script.error(format!("upstream: incomplete request head {head:?}"));
            return;
        }
        let path = head.split(' ').nth(1).unwrap_or_default();
        let wire = script
            .responses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path)
            .cloned();
        let Some(wire) = wire else {
            script.error(format!("upstream: nothing registered for {path:?}"));
            return;
        };
        let written = async {
            let mut start = 0;
            for &cut in wire.cuts.iter().chain([&wire.bytes.len()]) {
                if start > 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                stream.write_all(&wire.bytes[start..cut]).await?;
                stream.flush().await?;
                start = cut;
            }
            Ok::<_, std::io::Error>(())
        };
        if let Err(e) = written.await {
            script.error(format!("upstream: writing the response failed: {e}"));
            return;
        }
        if wire.close {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// Asks candor for `path` on a fresh connection and reads until it closes.
/// `extra` is more request header lines, each ending in CRLF.
async fn fetch(proxy: SocketAddr, path: &str, extra: &str) -> Result<Vec<u8>, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(proxy).await?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: api.example\r\nConnection: close\r\n{extra}\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    match tokio::time::timeout(EXCHANGE_DEADLINE, exchange).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(format!("client: {e}")),
        Err(_) => Err(format!(
            "client: no complete response in {EXCHANGE_DEADLINE:?}"
        )),
    }
}

// ─── Reading what the client got ────────────────────────────────────────────────────────────────

/// A response as received, with the transfer framing undone.
#[derive(Debug)]
struct Received {
    status: u16,
    reason: Vec<u8>,
    headers: Fields,
    body: Vec<u8>,
    /// Trailer fields of a chunked body.
    trailers: Fields,
}

impl Received {
    fn get(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// Parses one HTTP/1.1 response that must fill `raw` exactly, with the harness's HTTP/1 reader
/// (independent of hyper, which candor itself is built on).
fn parse(raw: &[u8]) -> Result<Received, String> {
    let response = match http1::parse_one(raw, false, true) {
        http1::Parsed::Done(response, used) if used == raw.len() => response,
        http1::Parsed::Done(response, used) => {
            return Err(format!(
                "{} bytes after the message ({} {})",
                raw.len() - used,
                response.status,
                if response.chunked {
                    "chunked"
                } else {
                    "not chunked"
                }
            ))
        }
        http1::Parsed::Partial(response, _) => {
            let incomplete = format!(
                "incomplete message: {} body bytes, content-length {:?}",
                response.body.len(),
                response.header("content-length")
            );
            return Err(response.framing_error.unwrap_or(incomplete));
        }
        http1::Parsed::NoHead => return Err("no complete head".into()),
    };
    if response.version != 1 {
        return Err(format!("status line of HTTP/1.{}", response.version));
    }
    if !response.chunked
        && response
            .header("content-length")
            .is_some_and(|l| l.parse::<usize>().is_err())
    {
        return Err(format!(
            "content-length {:?}",
            response.header("content-length")
        ));
    }
    Ok(Received {
        status: response.status,
        reason: response.reason.into_bytes(),
        headers: response.fields,
        body: response.body,
        trailers: response.trailers,
    })
}

// ─── The property ───────────────────────────────────────────────────────────────────────────────

/// Headers a proxy may legitimately add, drop or change.
fn compared(name: &str, upstream_sent_date: bool) -> bool {
    !matches!(
        name,
        "connection" | "keep-alive" | "transfer-encoding" | "content-length" | "x-request-id"
    ) && (name != "date" || upstream_sent_date)
}

/// Header values by name (escaped for reading), in order within each name: hyper writes a
/// name's values together, so only that order is kept across names.
fn by_name(headers: &[(String, Vec<u8>)], sent_date: bool) -> BTreeMap<&str, Vec<String>> {
    let mut map: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, value) in headers.iter().filter(|(n, _)| compared(n, sent_date)) {
        map.entry(name)
            .or_default()
            .push(value.escape_ascii().to_string());
    }
    map
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then_some(a.len().min(b.len())))
}

async fn check(harness: &Harness, case: &Case) -> Result<(), TestCaseError> {
    let wire = Arc::new(wire(case));
    let expected = expected_rewrite(case, &wire);
    let path = format!("/case/{}", harness.next_id.fetch_add(1, Ordering::Relaxed));
    harness
        .script
        .responses
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(path.clone(), wire.clone());
    let fetched = fetch(harness.proxy, &path, "").await;
    harness
        .script
        .responses
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&path);
    let errors = harness.script.take_errors();
    prop_assert!(errors.is_empty(), "upstream: {errors:?}");
    let raw = fetched.map_err(TestCaseError::fail)?;
    let got = parse(&raw).map_err(|e| TestCaseError::fail(format!("client: {e}")))?;
    let context = format!(
        "{} encoded body bytes ({} decoded), expected {}",
        wire.body.len(),
        wire.decoded_len,
        expected.map_or("pass-through".to_owned(), |t| format!(
            "{} by {}",
            t.status(),
            t.rule()
        )),
    );

    if let Some(trigger) = expected {
        prop_assert_eq!(got.status, trigger.status(), "{}", context);
        let rule = got.get("x-candor-rule").unwrap_or_default();
        prop_assert!(
            rule.starts_with(trigger.rule().as_bytes()),
            "x-candor-rule {:?}; {}",
            String::from_utf8_lossy(rule),
            context
        );
        return Ok(());
    }

    prop_assert_eq!(got.status, case.status, "{}", context);
    prop_assert_eq!(
        String::from_utf8_lossy(&got.reason),
        String::from_utf8_lossy(&wire.reason),
        "reason phrase; {}",
        context
    );
    prop_assert!(
        got.get("x-candor-rule").is_none(),
        "x-candor-rule; {}",
        context
    );
    prop_assert!(
        got.trailers.is_empty(),
        "trailers {:?}; {}",
        got.trailers,
        context
    );
    prop_assert!(
        got.get("x-candor-original-status").is_none(),
        "x-candor-original-status; {}",
        context
    );
    let sent_date = wire.headers.iter().any(|(n, _)| n == "date");
    let want = by_name(&wire.headers, sent_date);
    let have = by_name(&got.headers, sent_date);
    prop_assert_eq!(have, want, "headers; {}", context);
    if let Some(at) = first_difference(&got.body, &wire.body) {
        prop_assert!(
            false,
            "body differs at byte {} (got {} bytes, sent {}); {}",
            at,
            got.body.len(),
            wire.body.len(),
            context
        );
    }
    Ok(())
}

fn proptest_config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = DEFAULT_CASES;
    }
    config
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn a_response_no_rule_can_match_passes_byte_identical(case in case()) {
        let harness = harness();
        harness.runtime.block_on(check(harness, &case))?;
    }
}

/// The inspection limit exactly, for both framings and the common codings: one byte either side
/// decides between "inspected and rewritten" and "passed untouched".
#[test]
fn bodies_at_the_inspection_limit_are_inspected_and_one_byte_more_pass() {
    let harness = harness();
    for len in [LIMIT - 1, LIMIT, LIMIT + 1] {
        for coding in [Coding::Absent, Coding::Gzip] {
            for framing in [
                Framing::Length,
                Framing::Chunked {
                    seed: 7,
                    max: 16 * 1024,
                    upper_hex: false,
                    extension: false,
                },
            ] {
                for content in [
                    Content::Trigger {
                        trigger: Trigger::UserNotFound,
                        pad: Pad::Repeated,
                    },
                    Content::Noise { seed: 1 },
                ] {
                    let case = Case {
                        status: 200,
                        reason: None,
                        content_type: Some("application/json"),
                        body: BodySpec { content, len },
                        coding,
                        framing,
                        extra: Vec::new(),
                        case_style: NameCase::Lower,
                        pacing: Pacing { writes: 1, seed: 0 },
                    };
                    if let Err(e) = harness.runtime.block_on(check(harness, &case)) {
                        panic!("{e}\n{case:#?}");
                    }
                }
            }
        }
    }
}

/// Trailers reach an HTTP/2 client (h2c, prior knowledge) whether or not candor read the body to
/// inspect it.
#[test]
fn trailers_reach_an_h2_client_whether_or_not_the_body_was_inspected() {
    use http_body_util::BodyExt;

    let harness = harness();
    for status in [201, 200] {
        let path = format!(
            "/trailers/{}",
            harness.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
             transfer-encoding: chunked\r\n\r\nf\r\n{{\"status\":\"ok\"}}\r\n0\r\n\
             x-checksum: 4a7d\r\n\r\n"
        );
        let wire = Wire {
            bytes: response.into_bytes(),
            cuts: Vec::new(),
            close: false,
            reason: Vec::new(),
            headers: Vec::new(),
            body: Vec::new(),
            decoded_len: 0,
        };
        harness
            .script
            .responses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path.clone(), Arc::new(wire));
        let (body, trailers) = harness.runtime.block_on(async {
            let stream = TcpStream::connect(harness.proxy).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                hyper_util::rt::TokioIo::new(stream),
            )
            .await
            .unwrap();
            tokio::spawn(conn);
            let request = http::Request::get(format!("http://api.example{path}"))
                .body(harness::full(""))
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            assert_eq!(response.status(), status);
            let collected = response.into_body().collect().await.unwrap();
            let trailers = collected.trailers().cloned();
            (collected.to_bytes(), trailers)
        });
        assert!(harness.script.take_errors().is_empty());
        assert_eq!(body, r#"{"status":"ok"}"#, "{status}");
        let checksum = trailers.as_ref().and_then(|t| t.get("x-checksum"));
        assert_eq!(
            checksum.map(|v| v.as_bytes()),
            Some(&b"4a7d"[..]),
            "{status}: trailers {trailers:?}"
        );
    }
}
