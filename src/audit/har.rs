//! HAR captures: `candor audit --har` reads a HAR 1.2 file (what browser developer tools,
//! intercepting proxies and browser automation export) and feeds its entries to a fresh
//! [`Audit`], so the same detectors run and the same [`Report`] comes out as live observation
//! would give.
//!
//! A HAR saw one side of each exchange (`sent: None`): what the server answered. Its content is
//! recorded decoded even when the response was compressed, so `Content-Encoding` is dropped
//! from the headers the detectors see, and `content.encoding = "base64"` text is decoded.
//!
//! The file is parsed as it is read, one entry at a time (an entry's body is the largest thing
//! held), from at most [`MAX_FILE_BYTES`]. A file that is not JSON, not a HAR, or has a member of
//! the wrong type is an error naming the member (`log.entries[3].response.status: expected a
//! number, found a string`); an entry that is well-formed but cannot be an HTTP exchange (a
//! failed request, a `data:` URL, a method with a space, bad base64) is skipped and counted.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use http::header::CONTENT_ENCODING;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::{Audit, Body, Exchange, Heads, Report, RequestSigns, Response, Settings};
use crate::builtin::scrub::Scrubber;

/// The largest HAR read: 1 GiB. A capture that size holds hundreds of thousands of
/// exchanges; past it a file is more likely a mistake than a capture.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// The body bytes inspected per entry unless told otherwise: `inspect.max_body_bytes`'
/// default, so a HAR and the live proxy see as much of a body.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;

/// Invalid entries whose reason is kept for the summary; the rest are only counted.
const MAX_REASONS: usize = 8;

/// What a HAR gave: the report, and the entries that were not exchanges.
#[derive(Debug)]
pub struct Capture {
    /// What audit found in the entries, with proposals (`mode = "shadow"`); `since` is the
    /// earliest entry's time.
    pub report: Report,
    /// Entries in the file.
    pub entries: u64,
    /// Entries left out, and why.
    pub skipped: Skipped,
}

/// Entries of a HAR left out of the report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Requests that got no response (`status` 0 or no `response`): a browser records a
    /// refused connection or a blocked request so.
    pub failed: u64,
    /// Responses the browser served from its own cache (`_fromCache`): the server never
    /// answered them.
    pub cached: u64,
    /// Requests that were not HTTP (`data:`, `blob:`, `chrome-extension:` URLs).
    pub not_http: u64,
    /// Entries that cannot be an HTTP exchange: a bad URL, method or status, content that does
    /// not decode.
    pub invalid: u64,
    /// Why, for the first few invalid entries, each naming its entry.
    pub reasons: Vec<String>,
}

impl Skipped {
    /// Entries left out in all.
    pub fn total(&self) -> u64 {
        self.failed + self.cached + self.not_http + self.invalid
    }

    fn invalid(&mut self, reason: String) {
        self.invalid += 1;
        if self.reasons.len() < MAX_REASONS {
            self.reasons.push(reason);
        }
    }
}

impl fmt::Display for Skipped {
    /// `2 failed (no response), 1 invalid`, then the reasons kept, one per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.failed > 0 {
            parts.push(format!("{} failed (no response)", self.failed));
        }
        if self.cached > 0 {
            parts.push(format!("{} served from the browser's cache", self.cached));
        }
        if self.not_http > 0 {
            parts.push(format!("{} not HTTP", self.not_http));
        }
        if self.invalid > 0 {
            parts.push(format!("{} invalid", self.invalid));
        }
        f.write_str(&parts.join(", "))?;
        // One line each: a reason quotes the member it names, which may be long.
        for reason in &self.reasons {
            write!(f, "\n  {reason}")?;
        }
        if self.invalid > self.reasons.len() as u64 {
            write!(f, "\n  …")?;
        }
        Ok(())
    }
}

/// Why a HAR could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HarError {
    /// The file could not be opened or read.
    #[error("cannot read it: {0}")]
    Read(#[source] io::Error),
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("larger than {} MiB: refused (split the capture)", MAX_FILE_BYTES >> 20)]
    TooLarge,
    /// A zip archive (a HAR recorded to a `.zip`, with its bodies attached) rather than a HAR.
    #[error("a zip archive, not a HAR: unzip it and pass the .har file inside")]
    Zip,
    /// Not JSON, or JSON cut short.
    #[error("not a HAR 1.2 capture: not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// JSON, but not a HAR: no `log` object with `entries`.
    #[error("not a HAR 1.2 capture: {0}")]
    NotHar(String),
    /// A HAR with a member of the wrong type; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// The default leak patterns did not compile (a bug: they are fixed).
    #[error("cannot compile the leak patterns: {0}")]
    Scrubber(String),
}

/// Reads the HAR at `path` (`-`: standard input), inspecting at most `max_body_bytes` of each
/// body. Attachments a HAR names in `content._file` are read beside it.
pub fn read_file(path: &Path, max_body_bytes: usize) -> Result<Capture, HarError> {
    if path.as_os_str() == "-" {
        return read(io::stdin().lock(), None, max_body_bytes);
    }
    let file = std::fs::File::open(path).map_err(HarError::Read)?;
    let meta = file.metadata().map_err(HarError::Read)?;
    if meta.is_dir() {
        return Err(HarError::Read(io::Error::other("a directory, not a file")));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(HarError::TooLarge);
    }
    read(file, path.parent(), max_body_bytes)
}

/// Reads a HAR from `input`. `attachments` is where `content._file` names are looked up
/// (`None`: such bodies count as unseen).
pub fn read(
    input: impl Read,
    attachments: Option<&Path>,
    max_body_bytes: usize,
) -> Result<Capture, HarError> {
    let mut input = BufReader::new(Capped {
        inner: input,
        left: MAX_FILE_BYTES,
        over: false,
    });
    let start = input.fill_buf().map_err(HarError::Read)?;
    if start.starts_with(b"PK\x03\x04") {
        return Err(HarError::Zip);
    }
    let scrubber = default_scrubber().map_err(|e| HarError::Scrubber(e.clone()))?;
    let mut reader = Reader {
        audit: Audit::new(&Settings {
            enabled: true,
            sample: 1.0,
            max_routes: Settings::default().max_routes,
        }),
        scrubber,
        limit: max_body_bytes,
        attachments,
        entries: 0,
        skipped: Skipped::default(),
        earliest: None,
        stage: Stage::Top,
    };
    let mut de = serde_json::Deserializer::from_reader(&mut input);
    let parsed = TopSeed(&mut reader)
        .deserialize(&mut de)
        .and_then(|()| de.end());
    if let Err(err) = parsed {
        return Err(classify(err, &reader, input.get_ref().over));
    }
    let mut report = reader.audit.report();
    if let Some(earliest) = reader.earliest {
        report.since = humantime::format_rfc3339_seconds(earliest).to_string();
    }
    Ok(Capture {
        report,
        entries: reader.entries,
        skipped: reader.skipped,
    })
}

fn classify(err: serde_json::Error, reader: &Reader<'_>, over: bool) -> HarError {
    use serde_json::error::Category;
    match err.classify() {
        Category::Io if over => HarError::TooLarge,
        Category::Io => HarError::Read(io::Error::other(err.to_string())),
        Category::Syntax | Category::Eof => HarError::NotJson(err),
        Category::Data => match reader.stage {
            Stage::Top | Stage::Log => HarError::NotHar(err.to_string()),
            Stage::Entries => HarError::Invalid(err.to_string()),
        },
    }
}

/// The default scrub patterns, compiled once per process (a HAR carries no config, and
/// compiling them is most of the cost of a small capture).
fn default_scrubber() -> Result<&'static Scrubber, &'static String> {
    static SCRUBBER: std::sync::OnceLock<Result<Scrubber, String>> = std::sync::OnceLock::new();
    SCRUBBER
        .get_or_init(|| Scrubber::new(&[]).map_err(|e| e.to_string()))
        .as_ref()
}

/// A reader that fails once more than `left` bytes were asked of it.
struct Capped<R> {
    inner: R,
    left: u64,
    over: bool,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        match self.left.checked_sub(n as u64) {
            Some(left) => {
                self.left = left;
                Ok(n)
            }
            None => {
                self.over = true;
                Err(io::Error::other("the file is larger than the limit"))
            }
        }
    }
}

/// Where the parser is, so a type error is told as "not a HAR" or as a bad entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The top-level value.
    Top,
    /// Inside `log`, outside its entries.
    Log,
    /// Inside `log.entries`.
    Entries,
}

/// The state of one read: the audit fed, and the counts.
struct Reader<'a> {
    audit: Audit,
    scrubber: &'static Scrubber,
    limit: usize,
    attachments: Option<&'a Path>,
    entries: u64,
    skipped: Skipped,
    earliest: Option<SystemTime>,
    stage: Stage,
}

/// The top-level object: its `log` is read, everything else skipped.
struct TopSeed<'r, 'a>(&'r mut Reader<'a>);

impl<'de> DeserializeSeed<'de> for TopSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with a `log` member")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut log = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "log" && !log {
                log = true;
                self.0.stage = Stage::Log;
                map.next_value_seed(LogSeed(&mut *self.0))?;
                self.0.stage = Stage::Top;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if !log {
            return Err(de::Error::custom("no `log` member"));
        }
        Ok(())
    }
}

/// `log`: its `entries` are read, the rest (`version`, `creator`, `pages`) skipped.
struct LogSeed<'r, 'a>(&'r mut Reader<'a>);

impl<'de> DeserializeSeed<'de> for LogSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for LogSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("`log` to be an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut entries = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "entries" && !entries {
                entries = true;
                map.next_value_seed(EntriesSeed(&mut *self.0))?;
                self.0.stage = Stage::Log;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if !entries {
            return Err(de::Error::custom("no `log.entries` member"));
        }
        Ok(())
    }
}

/// `log.entries`: each entry is parsed alone and fed to the audit before the next is read.
struct EntriesSeed<'r, 'a>(&'r mut Reader<'a>);

impl<'de> DeserializeSeed<'de> for EntriesSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("`log.entries` to be an array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.stage = Stage::Entries;
        let mut index = 0usize;
        while let Some(entry) = seq.next_element::<Value>()? {
            self.0.entry(index, &entry).map_err(de::Error::custom)?;
            index += 1;
        }
        Ok(())
    }
}

/// Why an entry is left out.
enum Leave {
    Failed,
    Cached,
    NotHttp,
    Invalid(String),
}

impl Reader<'_> {
    /// Feeds entry `index` to the audit, or counts why not; `Err` for a member of the wrong
    /// type.
    fn entry(&mut self, index: usize, entry: &Value) -> Result<(), String> {
        self.entries += 1;
        let at = format!("log.entries[{index}]");
        match self.exchange(&at, entry)? {
            None => {}
            Some(Leave::Failed) => self.skipped.failed += 1,
            Some(Leave::Cached) => self.skipped.cached += 1,
            Some(Leave::NotHttp) => self.skipped.not_http += 1,
            Some(Leave::Invalid(reason)) => self.skipped.invalid(reason),
        }
        Ok(())
    }

    fn exchange(&mut self, at: &str, entry: &Value) -> Result<Option<Leave>, String> {
        let entry = object(entry, at)?;
        // Chromium marks what its memory or disk cache answered; the server never saw those.
        if matches!(entry.get("_fromCache"), Some(Value::String(s)) if !s.is_empty()) {
            return Ok(Some(Leave::Cached));
        }
        let req_at = format!("{at}.request");
        let request = object(required(entry, "request", at)?, &req_at)?;
        let method = string(
            required(request, "method", &req_at)?,
            &format!("{req_at}.method"),
        )?;
        let url = string(required(request, "url", &req_at)?, &format!("{req_at}.url"))?;
        let request_headers = headers(request, &req_at)?;
        let time = match entry.get("startedDateTime") {
            None | Some(Value::Null) => None,
            Some(v) => parse_time(string(v, &format!("{at}.startedDateTime"))?),
        }
        .unwrap_or_else(SystemTime::now);

        let res_at = format!("{at}.response");
        let response = match entry.get("response") {
            None | Some(Value::Null) => return Ok(Some(Leave::Failed)),
            Some(v) => object(v, &res_at)?,
        };
        let status = match response.get("status") {
            None | Some(Value::Null) => return Ok(Some(Leave::Failed)),
            Some(Value::Number(n)) => n,
            Some(other) => {
                return Err(format!(
                    "{res_at}.status: expected a number, found {}",
                    kind(other)
                ))
            }
        };
        let mut response_headers = headers(response, &res_at)?;
        // Content is recorded decoded: the detectors must not take it for compressed bytes.
        response_headers.remove(CONTENT_ENCODING);
        let content = self.content(response, &res_at)?;

        let path = match path_of(url) {
            Ok(path) => path,
            Err(leave) => {
                return Ok(Some(match leave {
                    Leave::Invalid(why) => Leave::Invalid(format!("{req_at}.url {url:?}: {why}")),
                    other => other,
                }))
            }
        };
        if status.as_u64() == Some(0) {
            return Ok(Some(Leave::Failed));
        }
        let Some(status) = status
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .and_then(|n| StatusCode::from_u16(n).ok())
        else {
            return Ok(Some(Leave::Invalid(format!(
                "{res_at}.status {status}: not an HTTP status"
            ))));
        };
        let Ok(method) = Method::from_bytes(method.as_bytes()) else {
            return Ok(Some(Leave::Invalid(format!(
                "{req_at}.method {method:?}: not a method"
            ))));
        };
        let content = match content {
            Ok(content) => content,
            Err(why) => return Ok(Some(Leave::Invalid(why))),
        };
        let body = match &content {
            Content::Unseen => Body::Unseen,
            Content::Bytes { bytes, whole } => {
                if bytes.len() > self.limit {
                    Body::Prefix(&bytes[..self.limit])
                } else if *whole {
                    Body::Complete(bytes)
                } else {
                    Body::Prefix(bytes)
                }
            }
        };
        let signs = RequestSigns::of(&request_headers);
        let exchange = Exchange {
            method: &method,
            path: &path,
            request: &signs,
            upstream: Response {
                status,
                headers: &Heads::of(&response_headers),
                body,
            },
            sent: None,
            at: time,
        };
        self.audit.record(&exchange, self.scrubber);
        if self.earliest.is_none_or(|t| time < t) {
            self.earliest = Some(time);
        }
        Ok(None)
    }

    /// The response's content: `Err` (outer) for a member of the wrong type, `Ok(Err)` for
    /// content that cannot be decoded (the entry is skipped).
    #[allow(clippy::type_complexity)]
    fn content<'v>(
        &self,
        response: &'v Map<String, Value>,
        res_at: &str,
    ) -> Result<Result<Content<'v>, String>, String> {
        let at = format!("{res_at}.content");
        let content = match response.get("content") {
            None | Some(Value::Null) => return Ok(Ok(Content::Unseen)),
            Some(v) => object(v, &at)?,
        };
        let text = optional_string(content, "text", &at)?;
        let encoding = optional_string(content, "encoding", &at)?;
        let file = optional_string(content, "_file", &at)?;
        let size = match content.get("size") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_i64(),
            Some(other) => {
                return Err(format!(
                    "{at}.size: expected a number, found {}",
                    kind(other)
                ))
            }
        };
        // The bytes transferred: 0 says the response had no body when `content.size` is not
        // recorded (with a size, 0 may be a body the browser's cache supplied).
        let body_size = match response.get("bodySize") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_i64(),
            Some(other) => {
                return Err(format!(
                    "{res_at}.bodySize: expected a number, found {}",
                    kind(other)
                ))
            }
        };
        let bytes: Cow<'v, [u8]> = match (text, file) {
            (Some(text), _) => match encoding {
                None | Some("") => Cow::Borrowed(text.as_bytes()),
                Some(e) if e.eq_ignore_ascii_case("base64") => {
                    // Some tools wrap base64 in lines; the alphabet has no whitespace.
                    let compact: Vec<u8> =
                        text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
                    match base64::engine::general_purpose::STANDARD.decode(&compact) {
                        Ok(bytes) => Cow::Owned(bytes),
                        Err(err) => return Ok(Err(format!("{at}.text: not valid base64 ({err})"))),
                    }
                }
                Some(other) => {
                    return Ok(Err(format!(
                        "{at}.encoding {other:?}: only \"base64\" is known"
                    )))
                }
            },
            (None, Some(file)) => match self.attachment(file) {
                Ok(Some(bytes)) => Cow::Owned(bytes),
                Ok(None) => return Ok(Ok(Content::Unseen)),
                Err(why) => return Ok(Err(format!("{at}._file {file:?}: {why}"))),
            },
            // No text: an empty body when the size says so, else a body the capture left out.
            (None, None) if size == Some(0) || (size.is_none() && body_size == Some(0)) => {
                Cow::Borrowed(&[][..])
            }
            (None, None) => return Ok(Ok(Content::Unseen)),
        };
        // A capture that cut the text short says so by a larger size.
        let whole = size.is_none_or(|size| size <= bytes.len() as i64);
        Ok(Ok(Content::Bytes { bytes, whole }))
    }

    /// A body attached beside the HAR (`content._file`), at most `limit + 1` bytes of it;
    /// `None` when there is nowhere to look (standard input).
    fn attachment(&self, name: &str) -> Result<Option<Vec<u8>>, String> {
        let Some(dir) = self.attachments else {
            return Ok(None);
        };
        // A file beside the HAR, never a path elsewhere.
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.contains(['/', '\\'])
            || name.contains('\0')
        {
            return Err("not a file name".to_owned());
        }
        let file =
            std::fs::File::open(dir.join(name)).map_err(|e| format!("cannot read it: {e}"))?;
        let mut bytes = Vec::new();
        file.take(self.limit as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read it: {e}"))?;
        Ok(Some(bytes))
    }
}

/// A response's content as recorded.
enum Content<'v> {
    /// Not recorded.
    Unseen,
    /// Recorded, decoded; `whole` unless the capture cut it short.
    Bytes { bytes: Cow<'v, [u8]>, whole: bool },
}

/// The headers of a HAR request or response: names in any case, HTTP/2 pseudo-headers
/// (`:path`) left out, values a capture joined with newlines split again, and fields that
/// could not be on the wire dropped.
fn headers(message: &Map<String, Value>, at: &str) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    let list = match message.get("headers") {
        None | Some(Value::Null) => return Ok(map),
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(format!(
                "{at}.headers: expected an array, found {}",
                kind(other)
            ))
        }
    };
    for (i, header) in list.iter().enumerate() {
        let hat = format!("{at}.headers[{i}]");
        let header = object(header, &hat)?;
        let name = optional_string(header, "name", &hat)?.unwrap_or_default();
        let value = optional_string(header, "value", &hat)?.unwrap_or_default();
        if name.starts_with(':') {
            continue;
        }
        let Ok(name) = HeaderName::from_bytes(name.trim().as_bytes()) else {
            continue;
        };
        for line in value.split('\n') {
            if let Ok(value) = HeaderValue::from_bytes(line.trim().as_bytes()) {
                map.append(name.clone(), value);
            }
        }
    }
    Ok(map)
}

/// The path of a request URL, without query or fragment, percent-encoded as a browser sends it.
fn path_of(url: &str) -> Result<String, Leave> {
    let rest = if url.starts_with('/') {
        url
    } else {
        let Some((scheme, rest)) = url.split_once(':') else {
            return Err(Leave::Invalid("not a URL".to_owned()));
        };
        let scheme_ok = scheme
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !scheme_ok {
            return Err(Leave::Invalid("not a URL".to_owned()));
        }
        if !["http", "https", "ws", "wss"]
            .iter()
            .any(|s| scheme.eq_ignore_ascii_case(s))
        {
            return Err(Leave::NotHttp);
        }
        let Some(rest) = rest.strip_prefix("//") else {
            return Err(Leave::Invalid("no host".to_owned()));
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if authority_end == 0 {
            return Err(Leave::Invalid("no host".to_owned()));
        }
        &rest[authority_end..]
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let path = &rest[..end];
    if path.is_empty() {
        return Ok("/".to_owned());
    }
    let mut out = String::with_capacity(path.len());
    for &b in path.as_bytes() {
        // The WHATWG URL standard's path percent-encode set: what a browser would have sent.
        if b <= b' ' || b >= 0x7f || matches!(b, b'"' | b'<' | b'>' | b'`' | b'{' | b'}') {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
    Ok(out)
}

/// An RFC 3339 time (`2026-12-07T10:00:00.123Z`, `2026-12-07T11:00:00.123+01:00`).
fn parse_time(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    if let Some(base) = text.strip_suffix(['Z', 'z']) {
        return humantime::parse_rfc3339_weak(base).ok();
    }
    // The offset's sign comes after the time of day (`YYYY-MM-DDTHH:MM:SS` is 19 bytes).
    let sign_at = text
        .char_indices()
        .skip(19)
        .find(|(_, c)| *c == '+' || *c == '-')
        .map(|(i, _)| i);
    let Some(i) = sign_at else {
        return humantime::parse_rfc3339_weak(text).ok();
    };
    let (base, offset) = text.split_at(i);
    let digits: String = offset[1..].chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: u64 = digits[..2].parse().ok()?;
    let minutes: u64 = digits[2..].parse().ok()?;
    if hours > 23 || minutes > 59 {
        return None;
    }
    let ahead = offset.starts_with('+');
    let offset = Duration::from_secs(hours * 3600 + minutes * 60);
    let local = humantime::parse_rfc3339_weak(base).ok()?;
    // Local time is ahead of UTC by a positive offset.
    if ahead {
        local.checked_sub(offset)
    } else {
        local.checked_add(offset)
    }
}

fn object<'v>(value: &'v Value, at: &str) -> Result<&'v Map<String, Value>, String> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(format!("{at}: expected an object, found {}", kind(other))),
    }
}

fn required<'v>(map: &'v Map<String, Value>, key: &str, at: &str) -> Result<&'v Value, String> {
    match map.get(key) {
        None | Some(Value::Null) => Err(format!("{at}.{key}: missing")),
        Some(v) => Ok(v),
    }
}

fn string<'v>(value: &'v Value, at: &str) -> Result<&'v str, String> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(format!("{at}: expected a string, found {}", kind(other))),
    }
}

fn optional_string<'v>(
    map: &'v Map<String, Value>,
    key: &str,
    at: &str,
) -> Result<Option<&'v str>, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => string(v, &format!("{at}.{key}")).map(Some),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Kind;
    use serde_json::json;

    /// An entry as Playwright's `recordHar` writes one (`content: "embed"`).
    fn entry(method: &str, url: &str, status: u16, content: Value) -> Value {
        json!({
            "startedDateTime": "2026-12-07T10:00:00.123Z",
            "time": 3.2,
            "request": {
                "method": method,
                "url": url,
                "httpVersion": "HTTP/1.1",
                "cookies": [],
                "headers": [
                    { "name": "Accept", "value": "*/*" },
                    { "name": "User-Agent", "value": "Mozilla/5.0" }
                ],
                "queryString": [],
                "headersSize": -1,
                "bodySize": 0
            },
            "response": {
                "status": status,
                "statusText": "",
                "httpVersion": "HTTP/1.1",
                "cookies": [],
                "headers": [
                    { "name": "Content-Type", "value": "application/json" }
                ],
                "content": content,
                "headersSize": -1,
                "bodySize": -1,
                "redirectURL": ""
            },
            "cache": {},
            "timings": { "send": 0, "wait": 1, "receive": 0.5 }
        })
    }

    fn json_content(text: &str) -> Value {
        json!({ "size": text.len(), "mimeType": "application/json", "text": text })
    }

    fn har(entries: Vec<Value>) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "log": {
                "version": "1.2",
                "creator": { "name": "Playwright", "version": "1.64.1" },
                "browser": { "name": "chromium", "version": "156.0" },
                "pages": [],
                "entries": entries
            }
        }))
        .unwrap()
    }

    fn parse(bytes: &[u8]) -> Result<Capture, HarError> {
        read(bytes, None, DEFAULT_MAX_BODY_BYTES)
    }

    fn kinds(report: &Report) -> Vec<(String, String, Kind, u64)> {
        report
            .routes
            .iter()
            .flat_map(|r| {
                r.findings
                    .iter()
                    .map(|f| (r.method.clone(), r.route.clone(), f.kind, f.count))
            })
            .collect()
    }

    #[test]
    fn a_playwright_capture_gives_the_report_live_observation_would() {
        let lie = r#"{"status":"error","message":"user not found"}"#;
        let input = har(vec![
            entry(
                "GET",
                "http://127.0.0.1:8080/users/7?x=1",
                200,
                json_content(lie),
            ),
            entry(
                "GET",
                "http://127.0.0.1:8080/users/8",
                200,
                json_content(lie),
            ),
            entry(
                "GET",
                "http://127.0.0.1:8080/users/1",
                200,
                json_content(r#"{"status":"ok","id":1}"#),
            ),
        ]);
        let capture = parse(&input).unwrap();
        assert_eq!(capture.entries, 3);
        assert_eq!(capture.skipped, Skipped::default());
        let report = &capture.report;
        assert_eq!(report.exchanges, 3);
        assert_eq!(report.since, "2026-12-07T10:00:00Z");
        assert_eq!(
            kinds(report),
            [("GET".into(), "/users/{id}".into(), Kind::ErrorInSuccess, 2)]
        );
        let finding = &report.routes[0].findings[0];
        assert_eq!(
            finding.example.path, "/users/7",
            "the query is not the path"
        );
        assert!(finding.proposal.as_deref().unwrap().contains("[[rules]]"));
        assert_eq!(report.routes[0].sent_statuses["200"], 3);
    }

    #[test]
    fn base64_gzip_labelled_and_http2_captures() {
        let body = r#"{"status":"error","message":"not found"}"#;
        let b64 = base64::engine::general_purpose::STANDARD.encode(body);
        // Wrapped in lines, as some tools write base64.
        let wrapped = format!("{}\n{}", &b64[..20], &b64[20..]);
        let mut gz = entry(
            "GET",
            "https://api.example/a/1",
            200,
            json!({ "size": body.len(), "mimeType": "application/json", "text": body }),
        );
        gz["response"]["headers"] = json!([
            { "name": "content-type", "value": "application/json" },
            { "name": "content-encoding", "value": "gzip" }
        ]);
        let mut h2 = entry(
            "GET",
            "https://api.example/b/1",
            200,
            json!({ "size": body.len(), "mimeType": "application/json", "text": wrapped, "encoding": "base64" }),
        );
        h2["request"]["headers"] = json!([
            { "name": ":method", "value": "GET" },
            { "name": ":path", "value": "/b/1" },
            { "name": "accept", "value": "application/json" },
            { "name": "authorization", "value": "Bearer x" }
        ]);
        let mut forbidden = entry(
            "GET",
            "https://api.example/c",
            403,
            json!({ "size": 0, "mimeType": "x-unknown" }),
        );
        forbidden["request"]["headers"] = json!([{ "name": "COOKIE", "value": "a=b" }]);
        let capture = parse(&har(vec![gz, h2, forbidden])).unwrap();
        assert_eq!(capture.skipped.total(), 0, "{}", capture.skipped);
        let found = kinds(&capture.report);
        assert!(found.contains(&("GET".into(), "/a/{id}".into(), Kind::ErrorInSuccess, 1)));
        assert!(found.contains(&("GET".into(), "/b/{id}".into(), Kind::ErrorInSuccess, 1)));
        // The request carried a cookie (an upper-case name): not forbidden_without_credentials.
        assert!(!found
            .iter()
            .any(|f| f.2 == Kind::ForbiddenWithoutCredentials));
        let b = capture
            .report
            .routes
            .iter()
            .find(|r| r.route == "/b/{id}")
            .unwrap();
        assert_eq!(
            b.findings[0].example.accept.as_deref(),
            Some("application/json")
        );
        assert!(b.findings[0].example.authorization);
    }

    #[test]
    fn empty_bodies_long_bodies_and_missing_content() {
        let mut delete = entry(
            "DELETE",
            "http://h/items/6",
            200,
            json!({ "size": 0, "mimeType": "x-unknown" }),
        );
        delete["response"]["headers"] = json!([]);
        // No `content.size`, but nothing transferred: an empty body too.
        let mut delete_no_size = entry(
            "DELETE",
            "http://h/carts/6",
            200,
            json!({ "mimeType": "x-unknown" }),
        );
        delete_no_size["response"]["headers"] = json!([]);
        delete_no_size["response"]["bodySize"] = json!(0);
        let long = format!(r#"{{"status":"error","message":"{}"}}"#, "x".repeat(300));
        let cut = read(
            &har(vec![
                delete,
                entry("GET", "http://h/long", 200, json_content(&long)),
                // Left out by the capture: the body was never seen.
                entry(
                    "GET",
                    "http://h/omitted",
                    200,
                    json!({ "size": 50, "mimeType": "application/json" }),
                ),
                entry("GET", "http://h/none", 200, Value::Null),
                delete_no_size,
            ])[..],
            None,
            64,
        )
        .unwrap();
        let found = kinds(&cut.report);
        assert!(found.contains(&(
            "DELETE".into(),
            "/items/{id}".into(),
            Kind::EmptyDelete200,
            1
        )));
        assert!(found.contains(&(
            "DELETE".into(),
            "/carts/{id}".into(),
            Kind::EmptyDelete200,
            1
        )));
        // Cut at 64 bytes, the JSON is not parsed: no finding on /long, nor the unseen ones.
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(cut.report.exchanges, 5);
    }

    #[test]
    fn failed_cached_and_odd_entries_are_skipped_and_counted() {
        let mut cached = entry("GET", "http://h/c", 200, json_content("{}"));
        cached["_fromCache"] = json!("memory");
        let mut no_response = entry("GET", "http://h/n", 200, json_content("{}"));
        no_response.as_object_mut().unwrap().remove("response");
        let mut bad_b64 = entry("GET", "http://h/b", 200, json_content("{}"));
        bad_b64["response"]["content"]["encoding"] = json!("base64");
        bad_b64["response"]["content"]["text"] = json!("!!!not base64");
        let capture = parse(&har(vec![
            entry(
                "GET",
                "http://h/refused",
                0,
                json!({ "size": 0, "mimeType": "x-unknown" }),
            ),
            no_response,
            cached,
            entry("GET", "data:image/png;base64,AAAA", 200, json_content("")),
            entry("GET", "chrome-extension://abc/x.js", 200, json_content("")),
            entry("G ET", "http://h/m", 200, json_content("{}")),
            entry("GET", "no url at all", 200, json_content("{}")),
            entry("GET", "http://h/s", 1000, json_content("{}")),
            bad_b64,
            entry("GET", "http://h/ok", 200, json_content("{}")),
        ]))
        .unwrap();
        let s = &capture.skipped;
        assert_eq!(
            (s.failed, s.cached, s.not_http, s.invalid),
            (2, 1, 2, 4),
            "{s}"
        );
        assert_eq!(capture.entries, 10);
        assert_eq!(capture.report.exchanges, 1);
        let text = s.to_string();
        for needle in [
            "log.entries[5].request.method \"G ET\": not a method",
            "log.entries[6].request.url \"no url at all\": not a URL",
            "log.entries[7].response.status 1000: not an HTTP status",
            "log.entries[8].response.content.text: not valid base64",
        ] {
            assert!(text.contains(needle), "{text}");
        }
    }

    #[test]
    fn broken_inputs_are_errors_that_say_what_and_where() {
        let mut wrong = vec![entry("GET", "http://h/a", 200, json_content("{}")); 4];
        wrong[3]["response"]["status"] = json!("200");
        let mut headers = entry("GET", "http://h/a", 200, json_content("{}"));
        headers["request"]["headers"][1]["value"] = json!(5);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "not valid JSON"),
            (b"<html>".to_vec(), "not valid JSON"),
            (b"{\"log\": {\"entries\": [".to_vec(), "not valid JSON"),
            (b"[1, 2]".to_vec(), "not a HAR"),
            (
                b"{\"foo\": 1}".to_vec(),
                "not a HAR 1.2 capture: no `log` member",
            ),
            (b"{\"log\": 1}".to_vec(), "not a HAR"),
            (
                b"{\"log\": {\"version\": \"1.2\"}}".to_vec(),
                "no `log.entries`",
            ),
            (b"{\"log\": {\"entries\": {}}}".to_vec(), "not a HAR"),
            (
                har(wrong),
                "log.entries[3].response.status: expected a number, found a string",
            ),
            (
                har(vec![headers]),
                "log.entries[0].request.headers[1].value: expected a string, found a number",
            ),
            (
                har(vec![json!(7)]),
                "log.entries[0]: expected an object, found a number",
            ),
            (
                har(vec![json!({ "response": {} })]),
                "log.entries[0].request: missing",
            ),
            (b"PK\x03\x04rest".to_vec(), "a zip archive"),
            (
                b"{\"log\": {\"entries\": []}} trailing".to_vec(),
                "not valid JSON",
            ),
            ("[".repeat(100_000).into_bytes(), "not a HAR"),
            (
                format!("{{\"log\":{{\"entries\":[{}", "[".repeat(100_000)).into_bytes(),
                "recursion limit",
            ),
        ];
        for (input, needle) in cases {
            let err = parse(&input).map(|c| c.entries).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
        }
    }

    #[test]
    fn an_empty_capture_is_an_empty_report() {
        let capture = parse(br#"{"log":{"version":"1.2","entries":[]}}"#).unwrap();
        assert_eq!(capture.entries, 0);
        assert!(capture.report.routes.is_empty());
    }

    #[test]
    fn too_large_input_is_refused() {
        let reader = Capped {
            inner: io::repeat(b' '),
            left: 1024,
            over: false,
        };
        let mut de = serde_json::Deserializer::from_reader(reader);
        let err = <IgnoredAny as serde::Deserialize>::deserialize(&mut de).unwrap_err();
        assert!(matches!(err.classify(), serde_json::error::Category::Io));
    }

    #[test]
    fn times_with_offsets_and_without() {
        let utc = parse_time("2026-12-07T10:00:00.5Z").unwrap();
        assert_eq!(parse_time("2026-12-07T11:00:00.5+01:00"), Some(utc));
        assert_eq!(parse_time("2026-12-07T08:30:00.5-01:30"), Some(utc));
        assert_eq!(parse_time("2026-12-07T10:00:00.5"), Some(utc));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("2026-12-07T10:00:00+25:00"), None);
    }

    #[test]
    fn url_paths() {
        let p = |u| path_of(u).ok();
        assert_eq!(p("http://h:8080/a/b?q#f").as_deref(), Some("/a/b"));
        assert_eq!(p("https://h").as_deref(), Some("/"));
        assert_eq!(p("https://h?x").as_deref(), Some("/"));
        assert_eq!(p("/rel/x?y").as_deref(), Some("/rel/x"));
        assert_eq!(
            p("http://h/a b/{id}/é").as_deref(),
            Some("/a%20b/%7Bid%7D/%C3%A9")
        );
        assert!(matches!(path_of("about:blank"), Err(Leave::NotHttp)));
        assert!(matches!(path_of("http:/x"), Err(Leave::Invalid(_))));
        assert!(matches!(path_of("1http://h/"), Err(Leave::Invalid(_))));
    }

    #[test]
    fn attachments_are_read_beside_the_capture_only() {
        let dir = std::env::temp_dir().join(format!("candor-har-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let body = r#"{"status":"error","message":"not found"}"#;
        std::fs::write(dir.join("body.json"), body).unwrap();
        let mut attached = entry("GET", "http://h/x/1", 200, Value::Null);
        attached["response"]["content"] =
            json!({ "size": body.len(), "mimeType": "application/json", "_file": "body.json" });
        let mut escape = entry("GET", "http://h/y/1", 200, Value::Null);
        escape["response"]["content"] = json!({ "size": 4, "_file": "../etc/passwd" });
        let capture = read(&har(vec![attached, escape])[..], Some(&dir), 1024).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(kinds(&capture.report).len(), 1);
        assert_eq!(capture.skipped.invalid, 1);
        assert!(capture.skipped.reasons[0].contains("not a file name"));
    }
}
