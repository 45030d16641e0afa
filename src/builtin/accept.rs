//! `Accept` negotiation for `[html_errors]`: does this request prefer an HTML page to JSON?
//!
//! The normalize layer turns an upstream HTML error page into `application/problem+json`, except
//! for a browser navigation, which is better served by the page itself. [`prefers_html`] reads
//! the request's `Accept` header (RFC 9110 §12.5.1) and answers that one question; it is pure,
//! linear in the header's length and cannot fail: a malformed header means "no preference", and
//! no preference means JSON, the API's own format.

use http::HeaderValue;

/// Quality values are compared in thousandths, the precision RFC 9110 §12.4.2 allows, so that
/// `0.8` and `0.800` are equal without floating point.
const Q_MAX: u16 = 1000;

/// How precisely a media range names a media type; when several ranges match, the most specific
/// one sets the quality (RFC 9110 §12.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Specificity {
    /// `*/*`
    Any,
    /// `type/*`
    Type,
    /// `type/subtype`
    Exact,
}

/// The quality a client gives one media type: the weight of the most specific matching range,
/// and how specific that range was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Grade {
    q: u16,
    by: Specificity,
}

/// Whether the request's `Accept` header prefers `text/html` to JSON.
///
/// True only when `text/html` gets a strictly higher quality than the best JSON type
/// (`application/json`, `application/problem+json`, or any `application/*+json` range the client
/// names), or the same non-zero quality while `text/html` is named explicitly and JSON is reached
/// only through a wildcard (`text/html, */*`: the client listed HTML on purpose). Everything
/// else, including no header, `*/*`, ties between explicit ranges and unparseable headers, is
/// false: candor's default is the problem document.
///
/// Ranges whose type or subtype is not a token, `*/subtype`, and ranges with an unparseable `q`
/// (`q=abc`, `q=-1`, `q=1e3`) are ignored; a `q` above 1 is clamped to 1 and digits after the
/// third decimal are dropped. Media-type parameters other than `q` do not affect matching.
pub fn prefers_html(accept: Option<&HeaderValue>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let accept = accept.as_bytes();
    // Only `text/html`, `text/*` and `*/*` grade HTML at all, so a header without a `*` or an
    // `html` (an API client's `application/json`) cannot prefer it: answered without parsing,
    // which cost about 2,400 instructions on every HTML error page a JSON client got.
    if memchr::memchr(b'*', accept).is_none()
        && !accept.windows(4).any(|w| w.eq_ignore_ascii_case(b"html"))
    {
        return false;
    }
    graded_prefers_html(accept)
}

/// [`prefers_html`] by grading every media range.
fn graded_prefers_html(accept: &[u8]) -> bool {
    let mut html: Option<Grade> = None;
    let mut json: Option<Grade> = None;
    for range in split_unquoted(accept, b',').filter_map(MediaRange::parse) {
        if let Some(by) = range.matches(b"text", b"html") {
            html = better(html, Grade { q: range.q, by });
        }
        // Each JSON type is graded on its own and the best one counts, since candor can answer
        // with either: a client naming `application/json` accepts a problem document in practice.
        let for_json = [
            range.matches(b"application", b"json"),
            range.matches(b"application", b"problem+json"),
            range.names_json_suffix().then_some(Specificity::Exact),
        ];
        for by in for_json.into_iter().flatten() {
            json = better(json, Grade { q: range.q, by });
        }
    }
    let Some(html) = html else {
        return false;
    };
    let json = json.unwrap_or(Grade {
        q: 0,
        by: Specificity::Any,
    });
    if html.q == 0 {
        return false;
    }
    html.q > json.q || (html.q == json.q && html.by == Specificity::Exact && json.by < html.by)
}

/// Keeps the grade of the more specific range; between equally specific ranges (`text/html;q=0.2,
/// text/html;level=1`) the higher weight, as the order of the header carries no meaning.
fn better(current: Option<Grade>, new: Grade) -> Option<Grade> {
    Some(match current {
        None => new,
        Some(old) if new.by > old.by => new,
        Some(old) if new.by == old.by && new.q > old.q => new,
        Some(old) => old,
    })
}

/// One parsed element of an `Accept` header.
#[derive(Debug, PartialEq, Eq)]
struct MediaRange<'a> {
    kind: &'a [u8],
    subtype: &'a [u8],
    q: u16,
}

impl<'a> MediaRange<'a> {
    /// Parses `type/subtype *( OWS ";" OWS parameter )`; `None` for anything malformed.
    fn parse(element: &'a [u8]) -> Option<Self> {
        let mut parts = split_unquoted(element, b';');
        let media = trim(parts.next()?);
        let slash = media.iter().position(|&b| b == b'/')?;
        let (kind, subtype) = (&media[..slash], &media[slash + 1..]);
        if !is_token(kind) || !is_token(subtype) || (kind == b"*" && subtype != b"*") {
            return None;
        }
        let mut q = Q_MAX;
        for param in parts {
            let param = trim(param);
            let (name, value) = match param.iter().position(|&b| b == b'=') {
                Some(eq) => (trim(&param[..eq]), trim(&param[eq + 1..])),
                None => (param, &param[param.len()..]),
            };
            if name.eq_ignore_ascii_case(b"q") {
                q = parse_q(value)?;
                // Parameters after the weight are accept extensions (RFC 9110 §12.5.1), not
                // part of the media range: nothing after it matters here.
                break;
            }
        }
        Some(MediaRange { kind, subtype, q })
    }

    /// How specifically this range covers `kind/subtype`, or `None` if it does not.
    fn matches(&self, kind: &[u8], subtype: &[u8]) -> Option<Specificity> {
        if self.kind == b"*" {
            return Some(Specificity::Any);
        }
        if !self.kind.eq_ignore_ascii_case(kind) {
            return None;
        }
        if self.subtype == b"*" {
            return Some(Specificity::Type);
        }
        self.subtype
            .eq_ignore_ascii_case(subtype)
            .then_some(Specificity::Exact)
    }

    /// Whether this is an explicit `application/<something>+json` range (RFC 6839 suffix): a
    /// client naming one is a JSON API client.
    fn names_json_suffix(&self) -> bool {
        let suffix = b"+json";
        self.kind.eq_ignore_ascii_case(b"application")
            && self.subtype.len() > suffix.len()
            && self.subtype[self.subtype.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
    }
}

/// Parses a weight into thousandths: `0`, `0.5`, `.5`, `1.000`; values above 1 clamp to 1 and
/// extra decimals are cut. Signs, exponents and anything not a plain decimal are rejected.
fn parse_q(value: &[u8]) -> Option<u16> {
    let (int, frac) = match value.iter().position(|&b| b == b'.') {
        Some(dot) => (&value[..dot], &value[dot + 1..]),
        None => (value, &value[value.len()..]),
    };
    if (int.is_empty() && frac.is_empty()) || !int.iter().chain(frac).all(u8::is_ascii_digit) {
        return None;
    }
    if int.iter().any(|&d| d != b'0') {
        return Some(Q_MAX);
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        let digit = frac.get(i).map_or(0, |d| u16::from(d - b'0'));
        thousandths = thousandths * 10 + digit;
    }
    Some(thousandths)
}

/// Splits on `sep` outside quoted strings (a parameter value such as `"a,b"` may hold one).
fn split_unquoted(bytes: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(bytes);
    std::iter::from_fn(move || {
        let current = rest?;
        let mut quoted = false;
        let mut escaped = false;
        for (i, &b) in current.iter().enumerate() {
            if escaped {
                escaped = false;
            } else if quoted && b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                quoted = !quoted;
            } else if b == sep && !quoted {
                rest = Some(&current[i + 1..]);
                return Some(&current[..i]);
            }
        }
        rest = None;
        Some(current)
    })
}

/// Strips optional whitespace (RFC 9110 §5.6.3: spaces and tabs).
fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// Whether `bytes` is an RFC 9110 §5.6.2 token.
fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefers(accept: &str) -> bool {
        let answer = prefers_html(Some(&HeaderValue::from_str(accept).unwrap()));
        // The shortcut never changes an answer.
        assert_eq!(answer, graded_prefers_html(accept.as_bytes()), "{accept}");
        answer
    }

    #[test]
    fn headers_that_cannot_grade_html_skip_the_parse_with_the_same_answer() {
        for accept in [
            "application/json",
            "application/problem+json, application/json;q=0.9",
            "text/plain",
            "image/webp,image/apng",
            "",
            "TEXT/HTML",
            "text/HtMl;q=0",
            "text/*",
            "*/*;q=0",
            "application/xhtml+xml",
            "application/json;x=\"html\"",
        ] {
            prefers(accept);
        }
        assert!(!prefers("application/json"));
        assert!(prefers("TEXT/HTML"));
    }

    #[test]
    fn real_world_accept_headers() {
        let table: &[(&str, &str, bool)] = &[
            (
                "chrome navigation",
                "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,\
                 image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7",
                true,
            ),
            (
                "firefox navigation",
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                true,
            ),
            (
                "firefox 9x navigation",
                "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,\
                 */*;q=0.8",
                true,
            ),
            (
                "safari navigation",
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                true,
            ),
            ("fetch() default", "*/*", false),
            ("XMLHttpRequest default", "*/*", false),
            ("axios", "application/json, text/plain, */*", false),
            ("curl", "*/*", false),
            ("wget", "*/*", false),
            ("python requests", "*/*", false),
            ("httpie", "application/json, */*;q=0.5", false),
            ("postman", "*/*", false),
            (
                "jquery getJSON",
                "application/json, text/javascript, */*; q=0.01",
                false,
            ),
            ("jquery html", "text/html, */*; q=0.01", true),
            // Java's HttpURLConnection default names text/html first; taken at its word (the
            // bare `*` is malformed and ignored, `q=.2` is read leniently).
            (
                "java HttpURLConnection",
                "text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2",
                true,
            ),
            (
                "spring RestTemplate",
                "application/json, application/*+json",
                false,
            ),
            ("json:api client", "application/vnd.api+json", false),
            ("lynx", "text/html, text/plain, text/sgml, */*;q=0.01", true),
            ("w3m", "text/html, text/*;q=0.5, image/*", true),
            ("html refused", "text/html;q=0", false),
            ("html refused, wildcard", "text/html;q=0, */*", false),
            (
                "explicit html beats wildcard at equal q",
                "text/html, */*",
                true,
            ),
            (
                "explicit tie goes to json",
                "text/html, application/json",
                false,
            ),
            (
                "explicit tie, other order",
                "application/json, text/html",
                false,
            ),
            ("json preferred", "text/html;q=0.5, application/json", false),
            ("html preferred", "application/json;q=0.5, text/html", true),
            (
                "problem json named",
                "text/html;q=0.9, application/problem+json",
                false,
            ),
            (
                "json refused",
                "text/html;q=0.1, application/json;q=0",
                true,
            ),
            // The rule is the weight, not the client's kind: these clients rank text above JSON.
            ("text wildcard only", "text/*", true),
            ("text wildcard vs any", "text/*, */*;q=0.5", true),
            ("text wildcard tie", "text/*, */*", false),
            (
                "application wildcard",
                "text/html;q=0.9, application/*",
                false,
            ),
            (
                "case and whitespace",
                "  TEXT/HTML ; Q=0.9 ,\tApplication/JSON ; q=0.8 ",
                true,
            ),
            (
                "equal after rounding",
                "text/html;q=0.8, */*;q=0.8000",
                true,
            ),
            ("garbage", ";;;,,, ===", false),
            (
                "garbage around html",
                "%%%, text/html, /json, application/",
                true,
            ),
            (
                "html with bad q ignored",
                "text/html;q=abc, */*;q=0.1",
                false,
            ),
            ("negative q ignored", "text/html;q=-1", false),
            (
                "exponent q ignored",
                "text/html;q=1e3, application/json;q=0.5",
                false,
            ),
            ("q above 1 clamps", "text/html;q=2, application/json", false),
            (
                "quoted comma in parameter",
                "text/html;x=\"a,b\";q=0.9, */*;q=0.1",
                true,
            ),
            (
                "level parameter ignored",
                "text/html;level=1;q=0.7, */*;q=0.5",
                true,
            ),
            (
                "accept-ext after q",
                "text/html;q=0.4;foo=bar, */*;q=0.5",
                false,
            ),
            ("xhtml only", "application/xhtml+xml", false),
            ("empty", "", false),
        ];
        for (name, accept, expected) in table {
            assert_eq!(prefers(accept), *expected, "{name}: {accept:?}");
        }
    }

    #[test]
    fn no_header_means_json() {
        assert!(!prefers_html(None));
    }

    #[test]
    fn obs_text_is_not_a_token() {
        let value = HeaderValue::from_bytes(b"text/h\xe9ml, */*;q=0.1").unwrap();
        assert!(!prefers_html(Some(&value)));
    }

    #[test]
    fn weights_parse_to_thousandths() {
        let table: &[(&str, Option<u16>)] = &[
            ("1", Some(1000)),
            ("1.000", Some(1000)),
            ("0", Some(0)),
            ("0.", Some(0)),
            ("0.8", Some(800)),
            (".2", Some(200)),
            ("0.123", Some(123)),
            ("0.1239", Some(123)),
            ("1.5", Some(1000)),
            ("07", Some(1000)),
            ("", None),
            (".", None),
            ("-1", None),
            ("1e3", None),
            ("abc", None),
            ("0.5.5", None),
            ("\"0.5\"", None),
        ];
        for (value, expected) in table {
            assert_eq!(parse_q(value.as_bytes()), *expected, "q={value:?}");
        }
    }

    #[test]
    fn ranges_parse_or_are_ignored() {
        let table: &[(&str, bool)] = &[
            ("text/html", true),
            ("*/*", true),
            ("text/*", true),
            ("*/html", false),
            ("*", false),
            ("text", false),
            ("text/", false),
            ("/html", false),
            ("te xt/html", false),
            ("text/html/x", false),
        ];
        for (range, ok) in table {
            assert_eq!(
                MediaRange::parse(range.as_bytes()).is_some(),
                *ok,
                "{range:?}"
            );
        }
    }
}
