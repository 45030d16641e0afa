//! The `inspect` fuzz target: the normalize layer's steps on one response, without sockets:
//! bounded collection, decoding for inspection, then plan, decide and apply.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use http_body::{Body, Frame, SizeHint};
use tower::BoxError;

use super::rules::JsonIn;
use super::{header_map, is_text, method, sections, Blob, Word, HEADER_VALUES, METHODS, PATHS};
use crate::config::cases::{BodyKind, Exchange};
use crate::config::{from_toml, Config};
use crate::inspect::collect::{collect_bounded, Collected};
use crate::inspect::decode::{for_inspection, MAX_CODINGS};
use crate::inspect::{simulate, Normalizer};
use crate::metrics::SkipReason;
use crate::problem::CONTENT_TYPE_PROBLEM;

/// Largest inspection limit tried.
const MAX_LIMIT: u32 = 256 * 1024;

/// Rules that read bodies every way there is, for responses of every class.
const FUZZ_CONFIG: &str = r#"
[upstream]
url = "http://127.0.0.1:9"

[inspect]
content_types = ["application/json", "application/problem+json", "text/html", "text/plain"]

[[rules]]
name = "user-not-found"
when.status = ["2xx"]
when.json = [{ pointer = "/status", equals = "error" }, { pointer = "/code", one_of = [1042, "1042"] }]
then.status = 404
then.body = "problem"
then.detail_from = "/message"

[[rules]]
name = "shadowed"
mode = "shadow"
when.body = '(?i)error'
then.status = 500

[[rules]]
name = "status-in-body"
when.json = [{ pointer = "/http_status", exists = true }]
then.status_from = "/http_status"
then.retry_after_from = "/retry_in"
then.headers = [{ name = "x-from-body", value = "1" }]

[[rules]]
name = "delete-empty"
when.method = ["DELETE"]
when.body = '^\s*\{\s*\}\s*$'
then.status = 204
then.body = "empty"

[[rules]]
name = "legacy"
when.header = [{ name = "x-legacy", matches = "yes" }]
when.content_type = "json"
then.status = 503
then.retry_after = "1500ms"
"#;

/// Runs one response through collection, decoding and the normaliser; must never panic.
///
/// Text input (starts with `#`): optional extra TOML (appended to a bare `[upstream]`; empty
/// means a built-in config), a `%%` line, `METHOD PATH STATUS` with optional `limit=N`,
/// `config=N` (0: rules of every kind, 1: `config/candor.toml`, 2: built-ins only),
/// `frames=a,b,…` (where the body is split into frames), `fail=N` (the body fails after the
/// frame holding byte N), `trailers` and `exact` (an exact size hint), then response header
/// lines and `> name: value` request header lines, a `%%` line, and the body as the upstream
/// sent it (encoded, if it has a `Content-Encoding`).
///
/// Oracles: collection loses, reorders and invents no byte (a complete body is all of it and
/// within the limit; an overflow replays everything); decoded output is within the limit, and
/// a body the fuzzer encoded decodes back to exactly its input; a response no rule or built-in
/// changes leaves with its status, headers and bytes untouched; a rewritten one is framed
/// consistently (problem JSON with its status, no stale representation headers, no body on
/// 204/304).
pub fn inspect(data: &[u8]) {
    let Some(case) = (if is_text(data) {
        text(data)
    } else {
        structured(data)
    }) else {
        return;
    };
    let mut config = match &case.config {
        Choice::Base(i) => bases()[*i % bases().len()].clone(),
        Choice::Toml(text) => match from_toml(text, "fuzz.toml", HashMap::new()) {
            Ok(config) => config,
            Err(_) => return,
        },
    };
    let limit = case.limit.max(1);
    config.inspect.max_body_bytes = limit;
    collect_and_decode(&case, limit);
    let base = matches!(case.config, Choice::Base(_));
    normalise(&case, Arc::new(config), base);
}

enum Choice {
    Base(usize),
    Toml(String),
}

struct Case {
    config: Choice,
    limit: usize,
    method: Method,
    path: String,
    status: StatusCode,
    headers: HeaderMap,
    request_headers: HeaderMap,
    body: Vec<u8>,
    /// Frame boundaries (byte offsets), sorted.
    splits: Vec<usize>,
    /// The body fails after the frame holding this byte.
    fail_at: Option<usize>,
    trailers: bool,
    exact: bool,
    /// What decoding must give: the fuzzer's own plain text and the sizes of each decoding
    /// step's output, when it encoded the body itself.
    expect: Option<Expected>,
}

struct Expected {
    plain: Vec<u8>,
    /// Output sizes of the non-identity decoding steps.
    steps: Vec<usize>,
    codings: usize,
}

fn bases() -> &'static [Config] {
    static BASES: OnceLock<Vec<Config>> = OnceLock::new();
    BASES.get_or_init(|| {
        let load = |text: &str, origin: &str| {
            from_toml(text, origin, HashMap::new())
                .unwrap_or_else(|e| panic!("fuzz base config {origin} is invalid: {e}"))
        };
        vec![
            load(FUZZ_CONFIG, "<fuzz>"),
            load(
                include_str!("../../config/candor.toml"),
                "config/candor.toml",
            ),
            load("[upstream]\nurl = \"http://127.0.0.1:9\"\n", "<built-ins>"),
        ]
    })
}

fn text(data: &[u8]) -> Option<Case> {
    let parts = sections(data);
    let [toml, head, rest @ ..] = parts.as_slice() else {
        return None;
    };
    let toml = super::strip_comments(toml);
    let mut lines = head
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let mut words = first.split_ascii_whitespace();
    let method = method(words.next().unwrap_or("GET"));
    let path = words.next().unwrap_or("/").to_owned();
    let status = words
        .next()
        .and_then(|s| s.parse().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut case = Case {
        config: if toml.trim_ascii().is_empty() {
            Choice::Base(0)
        } else {
            Choice::Toml(format!(
                "[upstream]\nurl = \"http://127.0.0.1:9\"\n{}",
                String::from_utf8_lossy(toml)
            ))
        },
        limit: 262_144,
        method,
        path,
        status,
        headers: HeaderMap::new(),
        request_headers: HeaderMap::new(),
        body: rest.first().map(|b| b.to_vec()).unwrap_or_default(),
        splits: Vec::new(),
        fail_at: None,
        trailers: false,
        exact: false,
        expect: None,
    };
    for word in words {
        let (key, value) = word.split_once('=').unwrap_or((word, ""));
        let number = value.parse::<usize>().ok();
        match key {
            "limit" => case.limit = number.unwrap_or(case.limit).min(MAX_LIMIT as usize),
            "config" => case.config = Choice::Base(number.unwrap_or(0)),
            "fail" => case.fail_at = number,
            "frames" => case.splits = value.split(',').filter_map(|n| n.parse().ok()).collect(),
            "trailers" => case.trailers = true,
            "exact" => case.exact = true,
            _ => {}
        }
    }
    for line in lines {
        match line.strip_prefix(b">") {
            Some(request) => {
                if let Some((name, value)) = super::field(request) {
                    case.request_headers.append(name, value);
                }
            }
            None => {
                if let Some((name, value)) = super::field(line) {
                    case.headers.append(name, value);
                }
            }
        }
    }
    case.splits.sort_unstable();
    Some(case)
}

#[derive(Debug, Arbitrary)]
struct Structured {
    config: u8,
    limit: u32,
    status: u16,
    method: Word,
    path: Word,
    content_type: Option<Blob>,
    accept: Option<Blob>,
    headers: Vec<(Word, Blob)>,
    body: BodyIn,
    /// Overrides the `Content-Encoding` the encoding steps imply.
    encoding: Option<Blob>,
    splits: Vec<u16>,
    fail_at: Option<u16>,
    trailers: bool,
    exact: bool,
}

#[derive(Debug, Arbitrary)]
enum BodyIn {
    Raw(Vec<u8>),
    Encoded(Vec<EncodeAs>, PlainIn),
}

#[derive(Debug, Arbitrary)]
enum PlainIn {
    Raw(Vec<u8>),
    Json(JsonIn),
    Text(Word),
    /// One byte repeated: compresses extremely well (a small bomb).
    Run(u8, u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
enum EncodeAs {
    Gzip,
    XGzip,
    Zlib,
    RawDeflate,
    Zstd,
    Identity,
}

/// Bodies the built-ins react to.
const TEXTS: [&str; 8] = [
    "<!DOCTYPE html><html><head><title>404 Not Found</title></head><body><h1>Not Found</h1><p>The requested URL was not found.</p></body></html>",
    "<html><body><h1>500 Internal Server Error</h1><pre>at com.example.Foo.bar(Foo.java:42)</pre></body></html>",
    "Traceback (most recent call last):\n  File \"/srv/app/export.py\", line 88, in export\nKeyError: 'x'",
    "ERROR: duplicate key value violates unique constraint \"users_pkey\" (SQLSTATE 23505) at 10.0.3.7:5432",
    "{\"status\":\"error\",\"code\":1042,\"message\":\"user not found\"}",
    "{\"http_status\":503,\"retry_in\":\"30\",\"message\":\"down\"}",
    "{}",
    "goroutine 1 [running]:\nmain.main()\n\t/home/dev/app/main.go:12 +0x1d",
];

fn structured(data: &[u8]) -> Option<Case> {
    let input = Structured::arbitrary_take_rest(Unstructured::new(data)).ok()?;
    let mut headers = header_map(&input.headers);
    if let Some(ct) = &input.content_type {
        if let Ok(value) = HeaderValue::from_bytes(&ct.get(&HEADER_VALUES[..7])) {
            headers.insert(CONTENT_TYPE, value);
        }
    }
    let mut request_headers = HeaderMap::new();
    if let Some(accept) = &input.accept {
        let choices = [HEADER_VALUES[0], HEADER_VALUES[3], HEADER_VALUES[27], "*/*"];
        if let Ok(value) = HeaderValue::from_bytes(&accept.get(&choices)) {
            request_headers.insert(http::header::ACCEPT, value);
        }
    }
    let limit = (input.limit % (MAX_LIMIT + 1)) as usize;
    let (body, expect) = match &input.body {
        BodyIn::Raw(bytes) => (bytes.clone(), None),
        BodyIn::Encoded(codings, plain) => {
            let plain = match plain {
                PlainIn::Raw(bytes) => bytes.clone(),
                PlainIn::Json(v) => serde_json::to_vec(&v.json(0)).unwrap_or_default(),
                PlainIn::Text(w) => w.get(&TEXTS).into_bytes(),
                PlainIn::Run(byte, n) => vec![*byte; (*n % (4 * 1024 * 1024)) as usize],
            };
            let codings = &codings[..codings.len().min(MAX_CODINGS + 1)];
            let names: Vec<&str> = codings.iter().map(|c| name(*c)).collect();
            headers.insert(
                CONTENT_ENCODING,
                HeaderValue::from_str(&names.join(", ")).ok()?,
            );
            let (body, expect) = encode(codings, plain);
            (body, expect)
        }
    };
    let expect = match &input.encoding {
        Some(encoding) => {
            headers.insert(
                CONTENT_ENCODING,
                HeaderValue::from_bytes(&encoding.get(&CODINGS)).ok()?,
            );
            None
        }
        None => expect,
    };
    let mut splits: Vec<usize> = input
        .splits
        .iter()
        .take(16)
        .map(|s| usize::from(*s))
        .collect();
    splits.sort_unstable();
    Some(Case {
        config: Choice::Base(usize::from(input.config)),
        limit,
        method: method(&input.method.get(&METHODS)),
        path: input.path.get(&PATHS),
        status: StatusCode::from_u16(100 + input.status % 500).unwrap_or(StatusCode::OK),
        headers,
        request_headers,
        body,
        splits,
        fail_at: input.fail_at.map(usize::from),
        trailers: input.trailers,
        exact: input.exact,
        expect,
    })
}

const CODINGS: [&str; 12] = [
    "gzip",
    "x-gzip",
    "deflate",
    "br",
    "zstd",
    "identity",
    "gzip, br",
    "GZIP",
    " gzip ,",
    "compress",
    "",
    "br, br, br, br, br",
];

fn name(coding: EncodeAs) -> &'static str {
    match coding {
        EncodeAs::Gzip => "gzip",
        EncodeAs::XGzip => "x-gzip",
        EncodeAs::Zlib | EncodeAs::RawDeflate => "deflate",
        EncodeAs::Zstd => "zstd",
        EncodeAs::Identity => "identity",
    }
}

/// Applies `codings` in order; returns the body and what decoding it must give back (`None`
/// when a raw deflate stream happens to start like a zlib header, which decoders, candor's and
/// browsers' alike, read as zlib).
fn encode(codings: &[EncodeAs], plain: Vec<u8>) -> (Vec<u8>, Option<Expected>) {
    let mut current = plain.clone();
    let mut steps = Vec::new();
    let mut ambiguous = false;
    for &coding in codings {
        let input = std::mem::take(&mut current);
        if coding != EncodeAs::Identity {
            steps.push(input.len());
        }
        current = match coding {
            EncodeAs::Identity => input,
            EncodeAs::Gzip | EncodeAs::XGzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                let _ = e.write_all(&input);
                e.finish().unwrap_or_default()
            }
            EncodeAs::Zlib => {
                let mut e =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
                let _ = e.write_all(&input);
                e.finish().unwrap_or_default()
            }
            EncodeAs::RawDeflate => {
                let mut e =
                    flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
                let _ = e.write_all(&input);
                let out = e.finish().unwrap_or_default();
                ambiguous |= looks_like_zlib(&out);
                out
            }
            EncodeAs::Zstd => zstd::stream::encode_all(&input[..], 1).unwrap_or_default(),
        };
    }
    let expect = (!ambiguous).then_some(Expected {
        plain,
        steps,
        codings: codings.len(),
    });
    (current, expect)
}

/// RFC 1950 §2.2 header check, as `decode` does it.
fn looks_like_zlib(input: &[u8]) -> bool {
    let [cmf, flg, ..] = *input else {
        return false;
    };
    cmf & 0x0f == 8 && cmf >> 4 <= 7 && flg & 0x20 == 0 && u16::from_be_bytes([cmf, flg]) % 31 == 0
}

/// A body of ready frames, possibly failing, as an upstream's would arrive.
struct Frames {
    frames: VecDeque<Result<Frame<Bytes>, BoxError>>,
    hint: Option<u64>,
}

impl Body for Frames {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = self.frames.pop_front();
        if let (Some(hint), Some(Ok(frame))) = (self.hint.as_mut(), &frame) {
            *hint = hint.saturating_sub(frame.data_ref().map_or(0, |d| d.len() as u64));
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        match self.hint {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

fn trailer_map() -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert(
        HeaderName::from_static("x-sum"),
        HeaderValue::from_static("1"),
    );
    map
}

/// The body as frames: its data split at `splits`, the failure, the trailers. Returns the
/// frames and how many data bytes come before the failure (all of them without one).
fn frames(case: &Case) -> (Frames, usize) {
    let body = Bytes::copy_from_slice(&case.body);
    let mut out = VecDeque::new();
    let mut at = 0;
    let mut before_failure = body.len();
    let mut bounds: Vec<usize> = case
        .splits
        .iter()
        .copied()
        .filter(|s| *s < body.len())
        .collect();
    bounds.push(body.len());
    for end in bounds {
        if end <= at {
            continue;
        }
        out.push_back(Ok(Frame::data(body.slice(at..end))));
        if case.fail_at.is_some_and(|f| f < end) {
            before_failure = end;
            out.push_back(Err(BoxError::from("fuzz: the upstream body failed")));
            break;
        }
        at = end;
    }
    let failed = out.back().is_some_and(Result::is_err);
    if case.fail_at.is_some() && !failed && body.is_empty() {
        before_failure = 0;
        out.push_back(Err(BoxError::from("fuzz: the upstream body failed")));
    }
    if case.trailers && !out.back().is_some_and(Result::is_err) {
        out.push_back(Ok(Frame::trailers(trailer_map())));
    }
    let hint = case.exact.then_some(body.len() as u64);
    (Frames { frames: out, hint }, before_failure)
}

/// Collection then decoding, with their oracles.
fn collect_and_decode(case: &Case, limit: usize) {
    let (body, before_failure) = frames(case);
    let fails = body.frames.iter().any(Result::is_err);
    let total = case.body.len();
    let mut future = std::pin::pin!(collect_bounded(body, limit));
    let mut cx = Context::from_waker(Waker::noop());
    let Poll::Ready(collected) = future.as_mut().poll(&mut cx) else {
        panic!("collecting a body whose frames are all ready returned Pending");
    };
    match collected {
        Collected::Complete { data, trailers } => {
            assert!(!fails, "a body that failed was collected as complete");
            assert!(
                data.len() <= limit,
                "complete body of {} > limit {limit}",
                data.len()
            );
            assert!(data == case.body, "collected bytes differ from the body");
            assert_eq!(
                trailers.is_some(),
                case.trailers,
                "trailers lost or invented"
            );
            decode(case, &data, limit);
        }
        Collected::Overflow(replay) => {
            assert!(
                total > limit,
                "overflow of a {total}-byte body with limit {limit}"
            );
            let mut replay = std::pin::pin!(replay);
            let mut data = Vec::new();
            let mut failed = false;
            let mut trailers = false;
            loop {
                match replay.as_mut().poll_frame(&mut cx) {
                    Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                        Ok(bytes) => data.extend_from_slice(&bytes),
                        Err(frame) => trailers |= frame.is_trailers(),
                    },
                    Poll::Ready(Some(Err(_))) => {
                        failed = true;
                        break;
                    }
                    Poll::Ready(None) => break,
                    Poll::Pending => panic!("replay of ready frames returned Pending"),
                }
            }
            assert_eq!(failed, fails, "the replay lost or invented the failure");
            let want = &case.body[..before_failure];
            assert!(data == want, "the replay lost, reordered or invented bytes");
            assert_eq!(
                trailers,
                case.trailers && !fails,
                "the replay lost its trailers"
            );
        }
        Collected::Failed(_) => {
            assert!(fails, "collection failed without a body error");
            assert!(
                before_failure <= limit,
                "failure reported instead of overflow"
            );
        }
    }
}

fn decode(case: &Case, data: &Bytes, limit: usize) {
    let (decoded, skipped) = for_inspection(&case.headers, data, limit);
    let encoded = case.headers.contains_key(CONTENT_ENCODING);
    if let Some(out) = &decoded {
        assert!(skipped.is_none());
        assert!(
            !encoded || out.len() <= limit,
            "decoded {} bytes with limit {limit}",
            out.len()
        );
    } else {
        assert!(
            matches!(skipped, Some(SkipReason::TooLarge | SkipReason::Encoding)),
            "{skipped:?}"
        );
    }
    let Some(expect) = &case.expect else { return };
    let want = if expect.codings > MAX_CODINGS {
        Err(SkipReason::Encoding)
    } else if data.is_empty() {
        Ok(&[][..])
    } else if expect.steps.iter().any(|&n| n > limit)
        || (expect.steps.is_empty() && data.len() > limit)
    {
        Err(SkipReason::TooLarge)
    } else {
        Ok(&expect.plain[..])
    };
    match (&decoded, want) {
        (Some(out), Ok(plain)) => assert!(
            out[..] == *plain,
            "decoding {:?} did not give back the {}-byte body it encoded",
            case.headers.get(CONTENT_ENCODING),
            plain.len()
        ),
        (None, Err(reason)) => assert_eq!(skipped, Some(reason)),
        (got, want) => panic!(
            "decoding {:?} ({} bytes, limit {limit}, steps {:?}) gave {:?}/{skipped:?}, expected {:?}",
            case.headers.get(CONTENT_ENCODING),
            data.len(),
            expect.steps,
            got.as_ref().map(|b| b.len()),
            want.map(<[u8]>::len)
        ),
    }
}

/// plan → decode → decide → apply, as the layer does, through `simulate`. `base`: the config is
/// one of ours, whose rules set no representation header (a rule's own `then.headers` may set
/// `cache-control`, `etag` or `retry-after` to anything).
fn normalise(case: &Case, config: Arc<Config>, base: bool) {
    let debug = config.server.debug_headers;
    let normalizer = Arc::new(Normalizer::new(config));
    let exchange = Exchange {
        method: case.method.clone(),
        uri: case
            .path
            .parse()
            .unwrap_or_else(|_| http::Uri::from_static("/")),
        request_headers: case.request_headers.clone(),
        status: case.status,
        response_headers: case.headers.clone(),
        body: Bytes::copy_from_slice(&case.body),
    };
    let sim = simulate::simulate(&normalizer, &exchange);
    let _ = simulate::traces(&normalizer, &exchange);
    if sim.report.applied.is_empty() {
        assert_eq!(sim.status, case.status, "status changed by no rule");
        assert!(sim.headers == case.headers, "headers changed by no rule");
        assert!(sim.body == exchange.body, "body changed by no rule");
        assert_eq!(sim.body_kind, BodyKind::Keep);
        return;
    }
    let rules: Vec<&str> = sim.report.applied.iter().map(String::as_str).collect();
    match sim.body_kind {
        BodyKind::Keep => assert!(sim.body == exchange.body, "kept body changed"),
        BodyKind::Empty => assert!(sim.body.is_empty(), "empty body has bytes"),
        BodyKind::Problem => {
            let doc: serde_json::Value = serde_json::from_slice(&sim.body)
                .unwrap_or_else(|e| panic!("{rules:?}: problem body is not JSON: {e}"));
            assert_eq!(doc["status"], sim.status.as_u16(), "{rules:?}: {doc}");
            assert_eq!(
                sim.headers.get(CONTENT_TYPE).map(HeaderValue::as_bytes),
                Some(CONTENT_TYPE_PROBLEM.as_bytes())
            );
        }
    }
    if sim.body_kind != BodyKind::Keep && base {
        for stale in [
            "content-encoding",
            "content-length",
            "content-range",
            "etag",
        ] {
            assert!(
                !sim.headers.contains_key(stale),
                "{rules:?}: replaced body keeps {stale}"
            );
        }
        assert_eq!(
            sim.headers.get("cache-control").map(HeaderValue::as_bytes),
            Some(&b"no-store"[..]),
            "{rules:?}"
        );
    }
    if matches!(
        sim.status,
        StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
    ) {
        assert!(sim.body.is_empty(), "{rules:?}: {} with a body", sim.status);
    }
    for value in sim.headers.get_all("retry-after").iter().filter(|_| base) {
        let upstream = case
            .headers
            .get_all("retry-after")
            .iter()
            .any(|v| v == value);
        assert!(
            upstream || (!value.is_empty() && value.as_bytes().iter().all(u8::is_ascii_digit)),
            "{rules:?}: Retry-After {value:?}"
        );
    }
    if debug {
        let header = sim.headers.get("x-candor-rule").map(HeaderValue::as_bytes);
        assert_eq!(header, Some(rules.join(", ").as_bytes()), "x-candor-rule");
    }
}
