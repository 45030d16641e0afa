//! HAR 1.2 captures (browser devtools' "Save all as HAR", mitmproxy, Charles, Playwright's
//! `recordHar`) read into exchanges for the same detectors live observation runs.
//!
//! A HAR sees one side of each exchange: what the client got. Its content is recorded decoded
//! (a gzip response's text is the text), so `Content-Encoding` is dropped before the detectors
//! see the headers. Entries without a response (status 0: a request the browser cancelled or
//! that failed) are skipped and counted.

use std::time::SystemTime;

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde::Deserialize;

use super::store::{Audit, Settings};
use super::{Body, Exchange, Report, RequestSigns, Response};
use crate::builtin::scrub::Scrubber;

/// The largest HAR file read.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// Why a HAR capture could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HarError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("{path}: {size} bytes, more than the 1 GiB a HAR may have here")]
    TooLarge {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
    },
    /// Not a HAR: not JSON, or JSON of another shape.
    #[error("not a HAR 1.2 capture: {0}")]
    Shape(String),
}

/// What reading a capture gave.
#[derive(Debug)]
pub struct Read {
    /// The report audit made of it.
    pub report: Report,
    /// Entries read.
    pub entries: usize,
    /// Entries skipped, and why (at most the first ten reasons).
    pub skipped: Vec<String>,
    /// How many were skipped.
    pub skipped_count: usize,
}

#[derive(Deserialize)]
struct Har {
    log: Log,
}

#[derive(Deserialize)]
struct Log {
    entries: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    #[serde(default)]
    started_date_time: Option<String>,
    request: HarRequest,
    #[serde(default)]
    response: Option<HarResponse>,
}

#[derive(Deserialize)]
struct HarRequest {
    method: String,
    url: String,
    #[serde(default)]
    headers: Vec<Header>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HarResponse {
    status: i64,
    #[serde(default)]
    headers: Vec<Header>,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    body_size: Option<i64>,
}

#[derive(Deserialize)]
struct Header {
    name: String,
    value: String,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    size: Option<i64>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
}

/// Reads the HAR file at `path` (at most [`MAX_FILE_BYTES`]).
pub fn read_file(path: &std::path::Path, max_body_bytes: usize) -> Result<Read, HarError> {
    let shown = path.display().to_string();
    let io = |source| HarError::Io {
        path: shown.clone(),
        source,
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_FILE_BYTES {
        return Err(HarError::TooLarge { path: shown, size });
    }
    let bytes = std::fs::read(path).map_err(io)?;
    read(&bytes, max_body_bytes)
}

/// Reads a HAR capture: every entry with a response goes through the detectors.
pub fn read(bytes: &[u8], max_body_bytes: usize) -> Result<Read, HarError> {
    let har: Har = serde_json::from_slice(bytes).map_err(|e| HarError::Shape(e.to_string()))?;
    let audit = Audit::new(&Settings {
        enabled: true,
        sample: 1.0,
        max_routes: Settings::default().max_routes,
    });
    let scrubber = default_scrubber().map_err(|e| HarError::Shape(e.clone()))?;
    let mut skipped = Vec::new();
    let mut skipped_count = 0;
    let entries = har.log.entries.len();
    for (i, value) in har.log.entries.into_iter().enumerate() {
        if let Err(why) = entry(&audit, scrubber, value, max_body_bytes) {
            skipped_count += 1;
            if skipped.len() < 10 {
                skipped.push(format!("log.entries[{i}]: {why}"));
            }
        }
    }
    let mut report = audit.report();
    report.skipped = skipped_count as u64;
    Ok(Read {
        report,
        entries,
        skipped,
        skipped_count,
    })
}

/// The default scrub patterns, compiled once per process (a HAR carries no config).
fn default_scrubber() -> Result<&'static Scrubber, &'static String> {
    static SCRUBBER: std::sync::OnceLock<Result<Scrubber, String>> = std::sync::OnceLock::new();
    SCRUBBER
        .get_or_init(|| Scrubber::new(&[]).map_err(|e| e.to_string()))
        .as_ref()
}

fn entry(
    audit: &Audit,
    scrubber: &Scrubber,
    value: serde_json::Value,
    max_body_bytes: usize,
) -> Result<(), String> {
    let entry: Entry = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let response = entry.response.ok_or_else(|| "no response".to_owned())?;
    let status = u16::try_from(response.status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .filter(|s| s.as_u16() >= 100)
        .ok_or_else(|| format!("response.status {} (no response)", response.status))?;
    let method = Method::from_bytes(entry.request.method.as_bytes())
        .map_err(|_| format!("request.method {:?} is not a method", entry.request.method))?;
    let path = path_of(&entry.request.url)
        .ok_or_else(|| format!("request.url {:?} is not a URL", cut(&entry.request.url)))?;
    let request_headers = headers(&entry.request.headers);
    let mut response_headers = headers(&response.headers);
    // HAR content is decoded already.
    response_headers.remove(http::header::CONTENT_ENCODING);
    let content = response.content.unwrap_or(Content {
        size: None,
        text: None,
        encoding: None,
    });
    let decoded;
    let body = match content.text {
        Some(text) => {
            decoded = if content.encoding.as_deref() == Some("base64") {
                base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|e| format!("response.content.text: invalid base64 ({e})"))?
            } else {
                text.into_bytes()
            };
            if decoded.len() > max_body_bytes {
                Body::Prefix(&decoded[..max_body_bytes])
            } else {
                Body::Complete(&decoded)
            }
        }
        None if content.size.unwrap_or(0) == 0 && response.body_size.unwrap_or(0) <= 0 => {
            Body::Complete(&[])
        }
        None => Body::Unseen,
    };
    let at = entry
        .started_date_time
        .as_deref()
        .and_then(|t| parse_offset(t).or_else(|| humantime::parse_rfc3339_weak(t).ok()))
        .unwrap_or_else(SystemTime::now);
    let signs = RequestSigns::of(&request_headers);
    audit.record(
        &Exchange {
            method: &method,
            path: &path,
            request: &signs,
            upstream: Response {
                status,
                headers: &response_headers,
                body,
            },
            sent: None,
            at,
        },
        scrubber,
    );
    Ok(())
}

/// `startedDateTime` to the second, with its UTC offset applied (`2026-12-07T10:00:00.123+01:00`
/// is 09:00:00 UTC; humantime's weak parser would drop the offset).
fn parse_offset(text: &str) -> Option<SystemTime> {
    let (date, rest) = text.split_at(text.find('T')? + 1);
    let time = rest.get(..8)?;
    let base = humantime::parse_rfc3339_weak(&format!("{date}{time}")).ok()?;
    let tail = &rest[8..];
    let tail = tail.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    match tail.as_bytes().first() {
        Some(sign @ (b'+' | b'-')) => {
            let hours: u64 = tail.get(1..3)?.parse().ok()?;
            let minutes: u64 = tail.get(4..6).and_then(|m| m.parse().ok()).unwrap_or(0);
            let offset = std::time::Duration::from_secs(hours * 3600 + minutes * 60);
            if *sign == b'+' {
                base.checked_sub(offset)
            } else {
                base.checked_add(offset)
            }
        }
        _ => Some(base),
    }
}

fn cut(s: &str) -> String {
    s.chars().take(80).collect()
}

/// The path of an absolute URL (`http://host:port/a/b?q` → `/a/b`), or of an origin-form target.
fn path_of(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let path = uri.path();
    path.starts_with('/').then(|| path.to_owned())
}

/// HAR headers as a map: any case, HTTP/2 pseudo-headers and invalid ones skipped.
fn headers(list: &[Header]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for header in list.iter().take(256) {
        if header.name.starts_with(':') {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.trim().as_bytes()),
            HeaderValue::from_str(header.value.trim()),
        ) {
            map.append(name, value);
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn har(entries: &str) -> Vec<u8> {
        format!(
            r#"{{"log":{{"version":"1.2","creator":{{"name":"Playwright","version":"1.65.1"}},"pages":[],"entries":[{entries}]}}}}"#
        )
        .into_bytes()
    }

    fn entry(method: &str, url: &str, status: i64, ct: &str, text: &str, encoding: &str) -> String {
        let text = serde_json::Value::String(text.to_owned());
        let encoding = if encoding.is_empty() {
            String::new()
        } else {
            format!(r#","encoding":"{encoding}""#)
        };
        format!(
            r#"{{"startedDateTime":"2026-12-07T10:00:00.123+01:00","time":3,
              "request":{{"method":"{method}","url":"{url}","httpVersion":"HTTP/1.1","headers":[{{"name":"Accept","value":"*/*"}},{{"name":":authority","value":"x"}}],"queryString":[],"cookies":[],"headersSize":-1,"bodySize":0}},
              "response":{{"status":{status},"statusText":"","httpVersion":"HTTP/1.1","headers":[{{"name":"Content-Type","value":"{ct}"}},{{"name":"content-encoding","value":"gzip"}}],"cookies":[],
                "content":{{"size":{},"mimeType":"{ct}","text":{text}{encoding}}},"redirectURL":"","headersSize":-1,"bodySize":-1}},
              "cache":{{}},"timings":{{"send":0,"wait":1,"receive":0}}}}"#,
            text.as_str().map_or(0, str::len)
        )
    }

    #[test]
    fn reads_text_base64_and_gzip_labelled_content() {
        let b64 = base64::engine::general_purpose::STANDARD
            .encode(br#"{"status":"error","message":"user not found"}"#);
        let entries = [
            entry(
                "GET",
                "http://api.test:8080/users/7?x=1",
                200,
                "application/json",
                r#"{"status":"error","message":"user not found"}"#,
                "",
            ),
            entry(
                "GET",
                "http://api.test:8080/users/8",
                200,
                "application/json",
                &b64,
                "base64",
            ),
            entry(
                "GET",
                "http://api.test:8080/users/1",
                200,
                "application/json",
                r#"{"status":"ok"}"#,
                "",
            ),
            entry("GET", "http://api.test:8080/gone", 0, "", "", ""),
        ]
        .join(",");
        let read = read(&har(&entries), 256 * 1024).unwrap();
        assert_eq!(read.entries, 4);
        assert_eq!(read.skipped_count, 1, "{:?}", read.skipped);
        let route = &read.report.routes[0];
        assert_eq!(route.route, "/users/{id}");
        assert_eq!(route.findings.len(), 1);
        assert_eq!(route.findings[0].count, 2);
        assert_eq!(route.findings[0].first_seen, "2026-12-07T09:00:00Z");
    }

    #[test]
    fn broken_captures_are_errors_or_skipped_entries_never_panics() {
        assert!(matches!(read(b"not json", 1024), Err(HarError::Shape(_))));
        assert!(matches!(
            read(b"{\"log\":{}}", 1024),
            Err(HarError::Shape(_))
        ));
        assert!(matches!(read(b"[]", 1024), Err(HarError::Shape(_))));
        let bad = [
            r#"{"request":{"method":"GET","url":"http://a/x"},"response":{"status":"200"}}"#,
            r#"{"request":{"method":"G E T","url":"http://a/x"},"response":{"status":200}}"#,
            r#"{"request":{"method":"GET","url":"::::"},"response":{"status":200}}"#,
            r#"{"request":{"method":"GET","url":"http://a/x"},"response":{"status":99999}}"#,
            r#"{"request":{"method":"GET","url":"http://a/x"},"response":{"status":200,"content":{"text":"%%%","encoding":"base64"}}}"#,
            r#"{"request":{"method":"GET","url":"http://a/x"}}"#,
            r#"17"#,
        ]
        .join(",");
        let read = read(&har(&bad), 1024).unwrap();
        assert_eq!(read.skipped_count, 7, "{:?}", read.skipped);
        assert!(
            read.skipped[0].starts_with("log.entries[0]:"),
            "{:?}",
            read.skipped
        );
        assert!(
            read.skipped.iter().any(|s| s.contains("invalid base64")),
            "{:?}",
            read.skipped
        );
    }

    #[test]
    fn long_bodies_are_a_prefix_and_empty_ones_known() {
        let long = "x".repeat(5000);
        let entries = [
            entry("GET", "http://a/big", 500, "text/plain", &format!("{long} database down"), ""),
            r#"{"request":{"method":"DELETE","url":"http://a/s/1"},"response":{"status":200,"headers":[],"content":{"size":0}}}"#.to_owned(),
        ]
        .join(",");
        let read = read(&har(&entries), 1024).unwrap();
        let kinds: Vec<_> = read
            .report
            .routes
            .iter()
            .flat_map(|r| r.findings.iter().map(|f| f.kind.as_str()))
            .collect();
        // The words past the limit are not seen; the empty DELETE is.
        assert_eq!(kinds, ["empty_delete_200"], "{:?}", read.report);
    }
}
