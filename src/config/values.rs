//! Checks of single values shared by every part of phase 3 (sections, `[[rules]]`,
//! `[[tests]]`): durations, status codes and header names.

use std::ops::RangeInclusive;
use std::time::Duration;

use http::{HeaderName, StatusCode};

use super::error::{show_str, FieldPath, Problems};
use super::spec::{DurationSpec, StatusSpec};
use crate::rules::StatusMatch;

/// How a duration is used, which decides its allowed range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DurationKind {
    /// A timeout or window: zero would mean "fail at once" or "never wait", never what anyone
    /// wants, so it must be at least [`MIN_TIMEOUT`].
    Timeout,
    /// A `Retry-After` value: zero is meaningful ("retry now", RFC 9110 §10.2.3).
    RetryAfter,
    /// A wait before doing something (`server.shutdown_delay`): zero means "do not wait".
    Delay,
}

/// Smallest timeout; below a millisecond timers cannot honour it anyway.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);
/// Largest duration of any kind. Anything longer is surely a typo, and a cap keeps
/// `Instant + duration` arithmetic at request time far from overflow.
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Parses a duration (`"2s"`, `"500ms"`) and checks its range for `kind`.
pub(crate) fn duration(
    problems: &mut Problems,
    path: &FieldPath,
    spec: &DurationSpec,
    kind: DurationKind,
) -> Option<Duration> {
    let shown = Some(show_str(&spec.0));
    let Ok(value) = humantime::parse_duration(&spec.0) else {
        problems.push(
            path,
            shown,
            "invalid duration (expected e.g. \"2s\", \"500ms\")",
        );
        return None;
    };
    if kind == DurationKind::Timeout && value < MIN_TIMEOUT {
        problems.push(path, shown, "must be at least 1ms");
        None
    } else if value > MAX_DURATION {
        problems.push(path, shown, "must be at most 24h");
        None
    } else {
        Some(value)
    }
}

/// Checks an integer status code against `range`; `expected` says what the range means.
pub(crate) fn status(
    problems: &mut Problems,
    path: &FieldPath,
    code: i64,
    range: RangeInclusive<u16>,
    expected: &str,
) -> Option<StatusCode> {
    let status = u16::try_from(code)
        .ok()
        .filter(|c| range.contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok());
    if status.is_none() {
        problems.push(
            path,
            Some(code.to_string()),
            format!("invalid status (expected {expected})"),
        );
    }
    status
}

/// Reads one entry of a status list: a code, or with `classes` also `"4xx"`.
///
/// A numeric string (`"503"`) is a code: that is how env lists (`429,503`) arrive.
pub(crate) fn status_item(
    problems: &mut Problems,
    path: &FieldPath,
    spec: &StatusSpec,
    classes: bool,
) -> Option<StatusMatch> {
    let expected = if classes {
        "a code 100..=599 or a class \"1xx\"..\"5xx\""
    } else {
        "a code 100..=599"
    };
    match spec {
        StatusSpec::Code(code) => {
            status(problems, path, *code, 100..=599, expected).map(StatusMatch::Code)
        }
        StatusSpec::Text(text) => {
            if let Ok(code) = text.parse::<i64>() {
                return status(problems, path, code, 100..=599, expected).map(StatusMatch::Code);
            }
            let class = match text.as_bytes() {
                [d @ b'1'..=b'5', x1, x2]
                    if classes
                        && x1.eq_ignore_ascii_case(&b'x')
                        && x2.eq_ignore_ascii_case(&b'x') =>
                {
                    Some(d - b'0')
                }
                _ => None,
            };
            if class.is_none() {
                problems.push(
                    path,
                    Some(show_str(text)),
                    format!("invalid status (expected {expected})"),
                );
            }
            class.map(StatusMatch::Class)
        }
    }
}

/// Parses a header name, lowercased as HTTP/2 requires.
pub(crate) fn header_name(
    problems: &mut Problems,
    path: &FieldPath,
    name: &str,
) -> Option<HeaderName> {
    let parsed = HeaderName::from_bytes(name.as_bytes()).ok();
    if parsed.is_none() {
        problems.push(
            path,
            Some(show_str(name)),
            "invalid header name (expected a token like \"x-legacy\")",
        );
    }
    parsed
}

/// Whether `text` is an RFC 3986 URI reference (an absolute URI or a relative reference):
/// non-empty, only the characters RFC 3986 §2 allows (`%` only before two hex digits), and a
/// scheme, when one is written, of a letter then letters, digits, `+`, `-` or `.`.
///
/// A syntax check, not a resolver: it is what RFC 9457 asks of a problem `type` and is all a
/// config needs, so it stays a few lines instead of a URL-parsing dependency.
pub(crate) fn uri_reference(text: &str) -> bool {
    let bytes = text.as_bytes();
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&b);
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
            continue;
        }
        if !allowed(b) {
            return false;
        }
        i += 1;
    }
    // A `:` before any `/`, `?` or `#` ends a scheme, which must be well formed; a relative
    // reference cannot have one there (RFC 3986 §4.2).
    let head = text.split(['/', '?', '#']).next().unwrap_or("");
    if let Some((scheme, _)) = head.split_once(':') {
        let mut chars = scheme.bytes();
        let first = chars.next().is_some_and(|b| b.is_ascii_alphabetic());
        if !first || !chars.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) {
            return false;
        }
    }
    !text.is_empty()
}

#[cfg(test)]
mod tests {
    use super::uri_reference;

    #[test]
    fn uri_references_are_checked_by_syntax() {
        for ok in [
            "about:blank",
            "https://errors.example.com/validation",
            "/errors/validation",
            "errors/validation#field",
            "urn:example:validation",
            "https://e.example/a%20b?x=1",
        ] {
            assert!(uri_reference(ok), "{ok}");
        }
        for bad in [
            "",
            "has space",
            "1http://x",
            "https://x/\u{e9}",
            "a%2",
            "a%zz",
            "line\nbreak",
            ":nothing",
        ] {
            assert!(!uri_reference(bad), "{bad:?}");
        }
    }
}
