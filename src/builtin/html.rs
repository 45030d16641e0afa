//! HTML error pages for `[html_errors]`: recognising them and reading a short, plain-text
//! `detail` out of one.
//!
//! The normalize layer calls [`is_html`] on an upstream 4xx/5xx response's `Content-Type` and,
//! for a 4xx only, [`detail`] on the inspected body, then writes a problem document. A 5xx page
//! is never read here: its text is exactly where internals leak (see `scrub`).
//!
//! [`detail`] is a single forward scan over bytes, not an HTML parser: it finds the first heading,
//! the `<title>` and the first `<pre>` well enough for the pages servers and frameworks generate,
//! skips comments, scripts and styles, and never backtracks, so its cost is linear in the
//! (already bounded) body.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::LazyLock;

use http::HeaderValue;
use memchr::{memchr, memmem};

use crate::problem::sanitize_detail;

/// Most text kept from one element before [`sanitize_detail`] cuts it to 300 characters; the
/// rest of the element is still scanned past, but not copied.
const MAX_CAPTURE: usize = 4096;

/// Whether a `Content-Type` names an HTML document: `text/html` or `application/xhtml+xml`, in
/// any case, with any parameters.
pub fn is_html(content_type: Option<&HeaderValue>) -> bool {
    let Some(value) = content_type else {
        return false;
    };
    let bytes = value.as_bytes();
    let media = &bytes[..memchr(b';', bytes).unwrap_or(bytes.len())];
    let media = media.trim_ascii();
    media.eq_ignore_ascii_case(b"text/html") || media.eq_ignore_ascii_case(b"application/xhtml+xml")
}

/// A short plain-text explanation read from an HTML error page, fit for a problem document's
/// `detail`; only for 4xx pages.
///
/// Candidates in order of preference: the first `<h1>`–`<h3>` heading, the `<title>`, the first
/// line of the first `<pre>`. A candidate that only restates a status (`404 Not Found`,
/// `HTTP Status 404 – Not Found`, `Error`, `Server Error`) is skipped, because the problem
/// document's `status` and `title` already say it; when every candidate is such boilerplate the
/// answer is `None`. Tags inside the element are dropped, common entities decoded, and the
/// result passes through [`sanitize_detail`] (control characters removed, whitespace collapsed,
/// at most 300 characters).
///
/// Pages that are not valid UTF-8 are read as windows-1252 (what browsers do for "Latin-1"
/// legacy pages); a page that is valid UTF-8 except for a sequence cut off at its end (the
/// inspection limit) is read as UTF-8.
pub fn detail(page: &[u8]) -> Option<String> {
    let text = decode(page);
    let mut scan = Scan::default();
    if let Some(heading) = scan.run(&text) {
        return sanitize_detail(&heading);
    }
    scan.title
        .or(scan.pre)
        .and_then(|text| sanitize_detail(&text))
}

/// The page as text: UTF-8 if it is (allowing a truncated final character), else windows-1252.
fn decode(page: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(page) {
        Ok(text) => Cow::Borrowed(text),
        // Cut mid-character by the inspection limit: still a UTF-8 page.
        Err(e) if e.error_len().is_none() => {
            Cow::Borrowed(std::str::from_utf8(&page[..e.valid_up_to()]).unwrap_or_default())
        }
        Err(_) => Cow::Owned(page.iter().map(|&b| windows_1252(b)).collect()),
    }
}

/// One byte of windows-1252: Latin-1, except that 0x80–0x9F are printable characters (curly
/// quotes, dashes, €) rather than C1 controls (WHATWG Encoding: the `latin1` label).
fn windows_1252(byte: u8) -> char {
    const HIGH: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8d}', 'Ž',
        '\u{8f}', '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9d}',
        'ž', 'Ÿ',
    ];
    match byte {
        0x80..=0x9f => HIGH[usize::from(byte - 0x80)],
        _ => char::from(byte),
    }
}

/// What the scanner is copying text into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capture {
    Heading,
    Pre,
}

/// The state of one scan: the element being captured and the best title and `<pre>` so far.
#[derive(Debug, Default)]
struct Scan {
    capture: Option<(Capture, String)>,
    title: Option<String>,
    pre: Option<String>,
}

impl Scan {
    /// Scans `text`, returning the first informative heading as soon as it closes; titles and
    /// `<pre>` blocks seen on the way are kept in `self`.
    fn run(&mut self, text: &str) -> Option<String> {
        let bytes = text.as_bytes();
        let mut at = 0;
        while at < bytes.len() {
            let Some(lt) = memchr(b'<', &bytes[at..]).map(|i| at + i) else {
                self.text(&text[at..]);
                break;
            };
            self.text(&text[at..lt]);
            let rest = &bytes[lt + 1..];
            at = if rest.starts_with(b"!--") {
                // A comment ends at the first `-->`; an unterminated one runs to the end.
                memmem::find(&rest[3..], b"-->").map_or(bytes.len(), |i| lt + 4 + i + 3)
            } else if matches!(rest.first(), Some(b'!' | b'?')) {
                // Doctype, CDATA or processing instruction: none carries text we want.
                memchr(b'>', rest).map_or(bytes.len(), |i| lt + 1 + i + 1)
            } else if let [b'/', first, ..] = rest {
                if !first.is_ascii_alphabetic() {
                    self.text("<");
                    lt + 1
                } else {
                    let name = tag_name(&rest[1..]);
                    if let Some(heading) = self.end_tag(name) {
                        return Some(heading);
                    }
                    memchr(b'>', rest).map_or(bytes.len(), |i| lt + 1 + i + 1)
                }
            } else if rest.first().is_some_and(u8::is_ascii_alphabetic) {
                let name = tag_name(rest);
                let Some(gt) = tag_end(bytes, lt + 1 + name.len()) else {
                    break;
                };
                self.start_tag(text, name, gt + 1)
            } else {
                // A lone `<` is text (`a < b`).
                self.text("<");
                lt + 1
            };
        }
        // A page cut off by the inspection limit may end inside a heading or `<pre>`.
        match self.capture.take() {
            Some((Capture::Heading, heading)) if informative(&heading) => Some(heading),
            Some((Capture::Pre, pre)) => {
                self.keep_pre(pre);
                None
            }
            _ => None,
        }
    }

    /// Handles a start tag whose `>` is at `after - 1`; returns where scanning resumes.
    fn start_tag(&mut self, text: &str, name: &[u8], after: usize) -> usize {
        let mut buf = [0; TAG_BUF];
        let lower = lowercase(name, &mut buf);
        match lower {
            // Raw text elements (HTML §13.1.2): their content is not markup. A title is kept;
            // scripts and styles are skipped whole.
            b"title" | b"script" | b"style" | b"textarea" | b"xmp" | b"noembed" | b"noframes"
            | b"iframe" | b"template" => {
                let bytes = text.as_bytes();
                let (end, resume) = close_tag(bytes, after, lower);
                if lower == b"title" && self.title.is_none() {
                    let mut title = String::new();
                    push_decoded(&mut title, &text[after..end]);
                    if informative(&title) {
                        self.title = Some(title);
                    }
                }
                resume
            }
            b"h1" | b"h2" | b"h3" if self.capture.is_none() => {
                self.capture = Some((Capture::Heading, String::new()));
                after
            }
            b"pre" if self.capture.is_none() => {
                self.capture = Some((Capture::Pre, String::new()));
                after
            }
            other => {
                self.separate(other);
                after
            }
        }
    }

    /// Handles an end tag; returns a heading once an informative one is complete.
    fn end_tag(&mut self, name: &[u8]) -> Option<String> {
        let mut buf = [0; TAG_BUF];
        let lower = lowercase(name, &mut buf);
        match (self.capture.as_ref().map(|c| c.0), lower) {
            // Browsers close an open heading on any heading end tag.
            (Some(Capture::Heading), b"h1" | b"h2" | b"h3" | b"h4" | b"h5" | b"h6") => {
                let (_, heading) = self.capture.take()?;
                informative(&heading).then_some(heading)
            }
            (Some(Capture::Pre), b"pre") => {
                let (_, pre) = self.capture.take()?;
                self.keep_pre(pre);
                None
            }
            (_, other) => {
                self.separate(other);
                None
            }
        }
    }

    /// A tag other than inline formatting separates words (`<br>`, `<td>`, `</p>`): a line
    /// break in the capture, which `<pre>` uses to find its first line and
    /// [`sanitize_detail`] later turns into a space.
    fn separate(&mut self, lower_name: &[u8]) {
        const INLINE: [&[u8]; 20] = [
            b"a", b"abbr", b"b", b"cite", b"code", b"em", b"font", b"i", b"kbd", b"mark", b"q",
            b"s", b"samp", b"small", b"span", b"strong", b"sub", b"sup", b"tt", b"u",
        ];
        if let Some((_, captured)) = &mut self.capture {
            if !INLINE.contains(&lower_name) {
                captured.push('\n');
            }
        }
    }

    /// Adds page text to the element being captured, if any.
    fn text(&mut self, text: &str) {
        if let Some((_, captured)) = &mut self.capture {
            push_decoded(captured, text);
        }
    }

    /// Keeps the first line of a `<pre>` block: the message, not the stack trace an error page
    /// may print below it.
    fn keep_pre(&mut self, pre: String) {
        if self.pre.is_some() {
            return;
        }
        let first = pre.lines().find(|line| !line.trim().is_empty());
        if let Some(line) = first.filter(|line| informative(line)) {
            self.pre = Some(line.to_owned());
        }
    }
}

/// Longest tag name [`lowercase`] keeps: every name the scanner acts on is shorter.
const TAG_BUF: usize = 16;

/// `name` in lowercase, in `buf` (a tag per call would otherwise allocate); a longer name,
/// which no rule of the scanner names, becomes `-`, another name no rule matches.
fn lowercase<'b>(name: &[u8], buf: &'b mut [u8; TAG_BUF]) -> &'b [u8] {
    if name.len() > TAG_BUF {
        return b"-";
    }
    let lower = &mut buf[..name.len()];
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    lower
}

/// The ASCII alphanumeric name at the start of a tag.
fn tag_name(bytes: &[u8]) -> &[u8] {
    let len = bytes
        .iter()
        .position(|b| !b.is_ascii_alphanumeric())
        .unwrap_or(bytes.len());
    &bytes[..len]
}

/// The index of the `>` ending a start tag whose attributes begin at `from`; a `>` inside a
/// quoted attribute value does not count.
fn tag_end(bytes: &[u8], mut from: usize) -> Option<usize> {
    while from < bytes.len() {
        match bytes[from] {
            b'>' => return Some(from),
            b'=' => {
                from += 1;
                while bytes.get(from).is_some_and(u8::is_ascii_whitespace) {
                    from += 1;
                }
                if let Some(&quote @ (b'"' | b'\'')) = bytes.get(from) {
                    from += 1 + memchr(quote, &bytes[from + 1..])?;
                }
                from += 1;
            }
            _ => from += 1,
        }
    }
    None
}

/// Finds the end tag closing raw text that starts at `from`: returns where the content ends and
/// where scanning resumes (both the end of input if it is never closed).
fn close_tag(bytes: &[u8], from: usize, lower_name: &[u8]) -> (usize, usize) {
    for lt in memchr::memchr_iter(b'<', &bytes[from..]).map(|i| from + i) {
        let rest = &bytes[lt + 1..];
        let Some(after_slash) = rest.strip_prefix(b"/") else {
            continue;
        };
        let closes = after_slash.len() >= lower_name.len()
            && after_slash[..lower_name.len()].eq_ignore_ascii_case(lower_name)
            && !after_slash
                .get(lower_name.len())
                .is_some_and(u8::is_ascii_alphanumeric);
        if closes {
            let resume = memchr(b'>', rest).map_or(bytes.len(), |i| lt + 1 + i + 1);
            return (lt, resume);
        }
    }
    (bytes.len(), bytes.len())
}

/// Appends `text` with character references decoded, stopping at [`MAX_CAPTURE`] bytes.
fn push_decoded(out: &mut String, mut text: &str) {
    while let Some(amp) = memchr(b'&', text.as_bytes()) {
        push_bounded(out, &text[..amp]);
        let after = &text[amp + 1..];
        match reference(after) {
            Some((c, used)) => {
                if out.len() + c.len_utf8() <= MAX_CAPTURE {
                    out.push(c);
                }
                text = &after[used..];
            }
            None => {
                push_bounded(out, "&");
                text = after;
            }
        }
        if out.len() >= MAX_CAPTURE {
            return;
        }
    }
    push_bounded(out, text);
}

/// Appends as much of `text` as fits in [`MAX_CAPTURE`], cut on a character boundary.
fn push_bounded(out: &mut String, text: &str) {
    let mut room = MAX_CAPTURE.saturating_sub(out.len()).min(text.len());
    while !text.is_char_boundary(room) {
        room -= 1;
    }
    out.push_str(&text[..room]);
}

/// Decodes the character reference at the start of `text` (just after its `&`): the character
/// and the bytes used, including the `;`. Unknown names are left as text.
fn reference(text: &str) -> Option<(char, usize)> {
    let semi = memchr(b';', &text.as_bytes()[..text.len().min(12)])?;
    let name = &text[..semi];
    let c = if let Some(number) = name.strip_prefix('#') {
        let code = match number.strip_prefix(['x', 'X']) {
            Some(hex) if !hex.is_empty() && hex.len() <= 6 => u32::from_str_radix(hex, 16).ok()?,
            None if !number.is_empty() && number.len() <= 7 => number.parse::<u32>().ok()?,
            _ => return None,
        };
        numeric(code)
    } else {
        named(name)?
    };
    Some((c, semi + 1))
}

/// A numeric character reference, with HTML's fixes: NUL, surrogates and out-of-range values
/// become U+FFFD, and 0x80–0x9F are read as windows-1252.
fn numeric(code: u32) -> char {
    match code {
        0 => char::REPLACEMENT_CHARACTER,
        0x80..=0x9f => u8::try_from(code).map_or(char::REPLACEMENT_CHARACTER, windows_1252),
        _ => char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER),
    }
}

/// The named references error pages actually use.
fn named(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "ndash" => '–',
        "mdash" => '—',
        "hellip" => '…',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "laquo" => '«',
        "raquo" => '»',
        "middot" => '·',
        "bull" => '•',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "euro" => '€',
        _ => return None,
    })
}

/// Words that server boilerplate wraps around a status ("HTTP Status 404 – Not Found", "IIS
/// 10.0 Detailed Error", "An error occurred"); they carry no information of their own.
const BOILERPLATE: [&str; 16] = [
    "a", "an", "apache", "code", "detailed", "error", "has", "http", "https", "iis", "occurred",
    "page", "report", "server", "status", "the",
];

/// The start of IIS and ASP.NET headings (`Server Error in '/' Application.`), whose rest names
/// the site or application rather than the problem.
const SERVER_ERROR_IN: &str = "server error in ";

/// Every 4xx/5xx reason phrase (and a few older spellings), normalised by [`words`].
static REASONS: LazyLock<HashSet<String>> = LazyLock::new(|| {
    let older = [
        "Request Entity Too Large",
        "Request-URI Too Long",
        "Requested Range Not Satisfiable",
        "Unprocessable Entity",
        "Unprocessable Content",
        "Content Too Large",
    ];
    (400..600)
        .filter_map(|code| http::StatusCode::from_u16(code).ok())
        .filter_map(|status| status.canonical_reason())
        .chain(older)
        .map(words)
        .collect()
});

/// Whether `text` says more than a status line does, and is not a server signature.
fn informative(text: &str) -> bool {
    let start = text.trim_start();
    let iis = start
        .get(..SERVER_ERROR_IN.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(SERVER_ERROR_IN));
    if iis || text.split_whitespace().any(is_product_version) {
        return false;
    }
    let words = words(text);
    !words.is_empty() && !REASONS.contains(&words)
}

/// Whether `token` is a `product/1.2` signature (`Apache/2.4.57`, `Tomcat/10.1.16`,
/// `nginx/1.24.0`): a footer heading to skip, and a version that should not be echoed anyway.
fn is_product_version(token: &str) -> bool {
    let Some((product, version)) = token.split_once('/') else {
        return false;
    };
    let version = version.as_bytes();
    let major = version.iter().take_while(|b| b.is_ascii_digit()).count();
    product.starts_with(|c: char| c.is_ascii_alphabetic())
        && product
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && major > 0
        && version.get(major) == Some(&b'.')
        && version.get(major + 1).is_some_and(u8::is_ascii_digit)
}

/// The lowercase words of `text` without numbers and boilerplate, space-separated.
fn words(text: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    for raw in text.split(|c: char| !c.is_alphanumeric()) {
        word.clear();
        if raw.is_ascii() {
            // Most pages' words: lowercased in place instead of a character at a time through
            // Unicode's tables (the same result for ASCII).
            word.push_str(raw);
            word.make_ascii_lowercase();
        } else {
            word.extend(raw.chars().flat_map(char::to_lowercase));
        }
        if word.is_empty()
            || word.chars().all(|c| c.is_ascii_digit())
            || BOILERPLATE.contains(&word.as_str())
        {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const APACHE_404: &str = "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n\
        <title>404 Not Found</title>\n</head><body>\n<h1>Not Found</h1>\n<p>The requested URL \
        was not found on this server.</p>\n<hr>\n<address>Apache/2.4.57 (Debian) Server at \
        localhost Port 80</address>\n</body></html>\n";

    const NGINX_404: &str = "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n\
        <center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx/1.24.0</center>\r\n\
        </body>\r\n</html>\r\n";

    const IIS_404: &str = "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Strict//EN\" \
        \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd\">\r\n\
        <html xmlns=\"http://www.w3.org/1999/xhtml\">\r\n<head>\r\n\
        <meta http-equiv=\"Content-Type\" content=\"text/html; charset=iso-8859-1\"/>\r\n\
        <title>404 - File or directory not found.</title>\r\n<style type=\"text/css\">\r\n\
        <!--\r\nbody{margin:0;font-size:.7em;font-family:Verdana, Arial, Helvetica, sans-serif;}\
        \r\n-->\r\n</style>\r\n</head>\r\n<body>\r\n<div id=\"header\"><h1>Server Error</h1>\
        </div>\r\n<div id=\"content\">\r\n <div class=\"content-container\"><fieldset>\r\n  \
        <h2>404 - File or directory not found.</h2>\r\n  <h3>The resource you are looking for \
        might have been removed, had its name changed, or is temporarily unavailable.</h3>\r\n \
        </fieldset></div>\r\n</div>\r\n</body>\r\n</html>\r\n";

    const IIS_DETAILED_404: &str = "<html><head><title>IIS 10.0 Detailed Error - 404.0 - Not \
        Found</title></head><body><div id=\"content\"><div id=\"header\"><h1>Server Error in \
        Application \"DEFAULT WEB SITE\"</h1></div><div class=\"content-container\"><h3>HTTP \
        Error 404.0 - Not Found</h3><h4>The resource you are looking for has been removed, had \
        its name changed, or is temporarily unavailable.</h4></div></div></body></html>";

    const TOMCAT_404: &str = "<!doctype html><html lang=\"en\"><head><title>HTTP Status 404 \
        – Not Found</title><style type=\"text/css\">body {font-family:Tahoma,Arial,sans-serif;} \
        h1, h2, h3, b {color:white;background-color:#525D76;}</style></head><body><h1>HTTP \
        Status 404 – Not Found</h1><hr class=\"line\" /><p><b>Type</b> Status Report</p><p>\
        <b>Description</b> The origin server did not find a current representation for the \
        target resource.</p><hr class=\"line\" /><h3>Apache Tomcat/10.1.16</h3></body></html>";

    const EXPRESS_404: &str = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta \
        charset=\"utf-8\">\n<title>Error</title>\n</head>\n<body>\n<pre>Cannot GET \
        /users/42</pre>\n</body>\n</html>\n";

    const EXPRESS_DEV_400: &str = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta \
        charset=\"utf-8\">\n<title>Error</title>\n</head>\n<body>\n<pre>SyntaxError: \
        Unexpected token } in JSON at position 9<br> &nbsp; &nbsp;at JSON.parse \
        (&lt;anonymous&gt;)<br> &nbsp; &nbsp;at parse \
        (/app/node_modules/body-parser/lib/types/json.js:89:19)</pre>\n</body>\n</html>\n";

    const DJANGO_DEBUG_404: &str = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n  <meta \
        http-equiv=\"content-type\" content=\"text/html; charset=utf-8\">\n  <title>Page not \
        found at /api/users/42</title>\n  <meta name=\"robots\" content=\"NONE,NOARCHIVE\">\n  \
        <style>\n    html * { padding:0; margin:0; }\n    h1 span { font-size:60%; }\n  \
        </style>\n</head>\n<body>\n  <div id=\"summary\">\n    <h1>Page not found \
        <span>(404)</span></h1>\n    <table class=\"meta\">\n      <tr>\n        <th \
        scope=\"row\">Request Method:</th>\n        <td>GET</td>\n      </tr>\n    </table>\n  \
        </div>\n</body>\n</html>\n";

    const DJANGO_404: &str = "<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>Not \
        Found</title>\n</head>\n<body>\n  <h1>Not Found</h1><p>The requested resource was not \
        found on this server.</p>\n</body>\n</html>\n";

    const RAILS_404: &str = "<!DOCTYPE html>\n<html>\n<head>\n  <title>The page you were \
        looking for doesn't exist (404)</title>\n  <meta name=\"viewport\" \
        content=\"width=device-width,initial-scale=1\">\n  <style>\n  .rails-default-error-page \
        div.dialog > div { border: 1px solid #CCC; }\n  </style>\n</head>\n\n<body \
        class=\"rails-default-error-page\">\n  <div class=\"dialog\">\n    <div>\n      \
        <h1>The page you were looking for doesn't exist.</h1>\n      <p>You may have mistyped \
        the address or the page may have moved.</p>\n    </div>\n  </div>\n</body>\n</html>\n";

    const PHP_BUILTIN_404: &str = "<!doctype html><html><head><title>404 Not Found</title>\
        <style>AAA { color: red; }</style></head><body><h1>Not Found</h1><p>The requested \
        resource <code class=\"url\">/missing.php</code> was not found on this server.</p>\
        </body></html>";

    const PHP_APP_403: &str = "<html><head><title>Forbidden</title></head><body>\
        <h2 class='err' data-x='a>b'>Access denied: your API key &#39;demo&#39; is read-only\
        </h2></body></html>";

    fn detail_of(page: &str) -> Option<String> {
        detail(page.as_bytes())
    }

    #[test]
    fn real_pages() {
        let table: &[(&str, &str, Option<&str>)] = &[
            ("apache 404", APACHE_404, None),
            ("nginx 404", NGINX_404, None),
            (
                "iis 404",
                IIS_404,
                Some("404 - File or directory not found."),
            ),
            ("iis detailed 404", IIS_DETAILED_404, None),
            ("tomcat 404", TOMCAT_404, None),
            ("express 404", EXPRESS_404, Some("Cannot GET /users/42")),
            (
                "express dev 400 keeps the message, not the stack",
                EXPRESS_DEV_400,
                Some("SyntaxError: Unexpected token } in JSON at position 9"),
            ),
            (
                "django debug 404",
                DJANGO_DEBUG_404,
                Some("Page not found at /api/users/42"),
            ),
            ("django 404", DJANGO_404, None),
            (
                "rails 404",
                RAILS_404,
                Some("The page you were looking for doesn't exist."),
            ),
            ("php built-in server 404", PHP_BUILTIN_404, None),
            (
                "php app 403",
                PHP_APP_403,
                Some("Access denied: your API key 'demo' is read-only"),
            ),
        ];
        for (name, page, expected) in table {
            assert_eq!(detail_of(page).as_deref(), *expected, "{name}");
        }
    }

    #[test]
    fn heading_title_pre_preference() {
        let table: &[(&str, &str, Option<&str>)] = &[
            (
                "heading beats title",
                "<title>Widget shop</title><h1>No such widget</h1>",
                Some("No such widget"),
            ),
            (
                "status-line title loses to heading",
                "<title>404 Not Found</title><h1>Widget 7 is gone</h1>",
                Some("Widget 7 is gone"),
            ),
            (
                "first heading in document order",
                "<h3>Quota exceeded</h3><h1>Later</h1>",
                Some("Quota exceeded"),
            ),
            (
                "boilerplate heading skipped for the next",
                "<h1>Error</h1><h2>Token expired</h2>",
                Some("Token expired"),
            ),
            (
                "h4 is not a candidate",
                "<h4>Deep heading</h4><title>Bad widget id</title>",
                Some("Bad widget id"),
            ),
            (
                "title beats pre",
                "<title>Invalid filter</title><pre>details</pre>",
                Some("Invalid filter"),
            ),
            (
                "pre alone",
                "<pre>\n\n  Missing field: name\nline 2</pre>",
                Some("Missing field: name"),
            ),
            (
                "only boilerplate",
                "<title>Error</title><h1>400 Bad Request</h1>",
                None,
            ),
            ("no candidates", "<p>Nothing to see</p>", None),
            ("empty", "", None),
            ("not html at all", "plain text body", None),
            (
                "server signature heading skipped",
                "<h1>Oops</h1><h3>Apache Tomcat/10.1.16</h3>",
                Some("Oops"),
            ),
            (
                "signature only",
                "<h1>Error</h1><h3>nginx/1.24.0</h3><title>x</title>",
                Some("x"),
            ),
            (
                "path with a number is not a signature",
                "<h1>No route for items/42</h1>",
                Some("No route for items/42"),
            ),
        ];
        for (name, page, expected) in table {
            assert_eq!(detail_of(page).as_deref(), *expected, "{name}");
        }
    }

    #[test]
    fn markup_is_stripped_and_entities_decoded() {
        let table: &[(&str, &str, Option<&str>)] = &[
            (
                "nested inline tags",
                "<H1 class=\"x\">User <b>ann</b> <em>not</em> allowed</H1>",
                Some("User ann not allowed"),
            ),
            (
                "block tags separate words",
                "<h1>Bad<br>input<div>here</div></h1>",
                Some("Bad input here"),
            ),
            (
                "entities",
                "<h1>a &amp; b &lt;c&gt; &quot;d&quot; &#39;e&#39; &#65;&#x42;&#X43;&nbsp;f &bogus; &amp</h1>",
                Some("a & b <c> \"d\" 'e' ABC f &bogus; &amp"),
            ),
            (
                "bad numeric references",
                "<h1>x&#0;y&#xD800;z&#99999999;w&#150;v</h1>",
                Some("x\u{fffd}y\u{fffd}z&#99999999;w–v"),
            ),
            (
                "whitespace collapsed",
                "<h1>\n\t  lots   of\r\n space  </h1>",
                Some("lots of space"),
            ),
            (
                "script and style ignored",
                "<script>document.write('<h1>fake</h1>')</script><style>h1{}</style>\
                 <h1>real</h1>",
                Some("real"),
            ),
            (
                "script inside heading ignored",
                "<h1>Quota <script>var h = '</h1>';</script>reached</h1>",
                Some("Quota reached"),
            ),
            (
                "comments ignored",
                "<!-- <h1>old</h1> --><h1>Rate plan expired</h1>",
                Some("Rate plan expired"),
            ),
            (
                "quoted > in attribute",
                "<h1 title=\"a > b\" data-x='>'>Seat taken</h1>",
                Some("Seat taken"),
            ),
            (
                "title is raw text",
                "<title>Use <b> carefully</title>",
                Some("Use <b> carefully"),
            ),
            (
                "case-insensitive close of raw text",
                "<SCRIPT>x</ScRiPt><TITLE>Unknown region</TITLE>",
                Some("Unknown region"),
            ),
            ("lone less-than", "<h1>a < b is false</h1>", Some("a < b is false")),
            (
                "unterminated heading at the inspection limit",
                "<html><h1>Cart 7 is locked by another ses",
                Some("Cart 7 is locked by another ses"),
            ),
            (
                "unterminated comment",
                "<title>Bad id</title><!-- <h1>x</h1>",
                Some("Bad id"),
            ),
            ("unterminated tag", "<title>Bad id</title><h1 class=\"x", Some("Bad id")),
            (
                "header element is not a heading",
                "<header>Site</header><title>Bad id</title>",
                Some("Bad id"),
            ),
            (
                "control characters dropped",
                "<h1>bad\u{1b}[31m id\u{7}</h1>",
                Some("bad [31m id"),
            ),
        ];
        for (name, page, expected) in table {
            assert_eq!(detail_of(page).as_deref(), *expected, "{name}");
        }
    }

    #[test]
    fn latin1_pages_are_decoded() {
        let page = b"<title>Fehler</title><h1>Kunde M\xfcller nicht gefunden \x96 \x80 5</h1>";
        assert_eq!(
            detail(page).as_deref(),
            Some("Kunde Müller nicht gefunden – € 5")
        );
    }

    #[test]
    fn utf8_cut_mid_character_stays_utf8() {
        let mut page = "<h1>Café closed: ünknown".as_bytes().to_vec();
        page.extend_from_slice(&"é".as_bytes()[..1]);
        assert_eq!(detail(&page).as_deref(), Some("Café closed: ünknown"));
    }

    #[test]
    fn long_text_is_bounded() {
        let page = format!("<h1>{}</h1>", "word ".repeat(100_000));
        let detail = detail(page.as_bytes()).unwrap();
        assert_eq!(detail.chars().count(), crate::problem::MAX_DETAIL_CHARS + 1);
        assert!(detail.ends_with('…'));
    }

    #[test]
    fn pathological_input_is_linear() {
        // Many unclosed tags, references and comment openers: each is scanned once.
        let page = "<a&#x<!-<h1 ".repeat(30_000);
        let started = std::time::Instant::now();
        let _ = detail(page.as_bytes());
        let _ = detail("<".repeat(300_000).as_bytes());
        let _ = detail("<script>".repeat(30_000).as_bytes());
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn html_content_types() {
        let table: &[(&str, bool)] = &[
            ("text/html", true),
            ("text/html; charset=utf-8", true),
            ("TEXT/HTML;charset=ISO-8859-1", true),
            (" text/html ", true),
            ("application/xhtml+xml", true),
            ("Application/XHTML+XML; charset=utf-8", true),
            ("text/plain", false),
            ("application/json", false),
            ("text/htmlx", false),
            ("text/html-sandboxed", false),
            ("", false),
        ];
        for (value, expected) in table {
            let value = HeaderValue::from_str(value).unwrap();
            assert_eq!(is_html(Some(&value)), *expected, "{value:?}");
        }
        assert!(!is_html(None));
    }
}
