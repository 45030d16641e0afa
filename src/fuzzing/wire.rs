//! A strict HTTP/1.1 reader for the end-to-end fuzzer's oracles: it reads what candor sent the
//! client and what the fake upstream sent candor, message by message, with RFC 9112 §6.3
//! framing, and says when a stream is ambiguous rather than guessing.
//!
//! It is deliberately stricter than hyper: one `Content-Length`, `Transfer-Encoding` only as
//! exactly `chunked`, never both. Where it cannot tell, callers treat the exchange as
//! unjudgeable instead of reporting a bug.

/// One parsed message (a response, or a request's head).
#[derive(Debug, Clone)]
pub(super) struct Message {
    /// The status (responses) or 0 (requests).
    pub status: u16,
    /// The method (requests), upper case as sent.
    pub method: String,
    /// Header fields, names lowercased, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The decoded body bytes read so far.
    pub body: Vec<u8>,
    /// The body ended where its framing says: all of it is here. A close-delimited body is
    /// complete only when the stream ended cleanly.
    pub complete: bool,
    /// The body was delimited by the connection closing.
    pub close_delimited: bool,
}

impl Message {
    /// The values of header `name` (lower case).
    pub(crate) fn all<'m>(&'m self, name: &'m str) -> impl Iterator<Item = &'m [u8]> {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// Why a stream could not be read unambiguously.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Unclear {
    /// The bytes are not HTTP/1.x as httparse reads it.
    Malformed(String),
    /// The framing headers are ambiguous (several lengths, CL with TE, a TE other than chunked).
    Ambiguous(String),
    /// The request method a response belongs to is not known.
    UnknownMethod,
}

/// How a response's body is delimited.
enum Framing {
    None,
    Length(usize),
    Chunked,
    Close,
}

/// Reads responses from `bytes` in order: interim (1xx other than 101) responses are skipped, a
/// 101 ends the stream (what follows is a tunnel). `method(i)` gives the method of the request
/// the `i`-th final response answers. `ended` says the stream ended cleanly (FIN) rather than
/// being cut. An incomplete last message is returned with `complete == false`; an incomplete
/// head is left out.
pub(super) fn responses(
    mut bytes: &[u8],
    method: &dyn Fn(usize) -> Option<String>,
    ended: bool,
) -> Result<Vec<Message>, Unclear> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut parsed = httparse::Response::new(&mut headers);
        let head_len = match parsed.parse(bytes) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => break,
            Err(e) => return Err(Unclear::Malformed(format!("response head: {e}"))),
        };
        let status = parsed.code.unwrap_or(0);
        let fields = fields(parsed.headers);
        bytes = &bytes[head_len..];
        let mut message = Message {
            status,
            method: String::new(),
            headers: fields,
            body: Vec::new(),
            complete: true,
            close_delimited: false,
        };
        if status == 101 {
            out.push(message);
            break;
        }
        if (100..200).contains(&status) {
            continue;
        }
        let method = method(out.len()).ok_or(Unclear::UnknownMethod)?;
        let framing = if method == "HEAD" || status == 204 || status == 304 {
            Framing::None
        } else {
            framing(&message, true)?
        };
        let used = read_body(&mut message, framing, bytes, ended)?;
        bytes = &bytes[used..];
        let done = message.complete && !message.close_delimited;
        out.push(message);
        if !done {
            break;
        }
    }
    Ok(out)
}

/// Reads the first request head (and as much of its body as is there) from `bytes`; `None` when
/// the head is not complete.
pub(super) fn first_request(bytes: &[u8]) -> Result<Option<Message>, Unclear> {
    Ok(requests(bytes, 1)?.into_iter().next())
}

/// Reads up to `max` requests from `bytes`, in order; stops at an incomplete one.
pub(super) fn requests(mut bytes: &[u8], max: usize) -> Result<Vec<Message>, Unclear> {
    let mut out = Vec::new();
    while !bytes.is_empty() && out.len() < max {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut parsed = httparse::Request::new(&mut headers);
        let head_len = match parsed.parse(bytes) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => break,
            Err(e) => return Err(Unclear::Malformed(format!("request head: {e}"))),
        };
        let method = parsed.method.unwrap_or("").to_owned();
        let fields = fields(parsed.headers);
        bytes = &bytes[head_len..];
        let mut message = Message {
            status: 0,
            method,
            headers: fields,
            body: Vec::new(),
            complete: true,
            close_delimited: false,
        };
        // A request without framing headers has no body (RFC 9112 §6.3 item 7).
        let framing = match framing(&message, false)? {
            Framing::Close => Framing::None,
            other => other,
        };
        let used = read_body(&mut message, framing, bytes, false)?;
        bytes = &bytes[used..];
        let done = message.complete;
        out.push(message);
        if !done {
            break;
        }
    }
    Ok(out)
}

fn fields(headers: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect()
}

/// The framing a message's headers give, strictly.
fn framing(message: &Message, response: bool) -> Result<Framing, Unclear> {
    let te: Vec<&[u8]> = message.all("transfer-encoding").collect();
    let cl: Vec<&[u8]> = message.all("content-length").collect();
    match (te.as_slice(), cl.as_slice()) {
        ([], []) if response => Ok(Framing::Close),
        ([], []) => Ok(Framing::None),
        ([te], []) if te.trim_ascii().eq_ignore_ascii_case(b"chunked") => Ok(Framing::Chunked),
        ([], [cl]) => {
            let digits = cl.trim_ascii();
            if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
                return Err(Unclear::Ambiguous("content-length is not a number".into()));
            }
            let n: usize = std::str::from_utf8(digits)
                .ok()
                .and_then(|d| d.parse().ok())
                .ok_or_else(|| Unclear::Ambiguous("content-length too large".into()))?;
            Ok(Framing::Length(n))
        }
        _ => Err(Unclear::Ambiguous(format!(
            "transfer-encoding {te:?} with content-length {cl:?}"
        ))),
    }
}

/// Reads a body with `framing` from `bytes` into `message`; returns the bytes used.
fn read_body(
    message: &mut Message,
    framing: Framing,
    bytes: &[u8],
    ended: bool,
) -> Result<usize, Unclear> {
    match framing {
        Framing::None => Ok(0),
        Framing::Length(n) => {
            let take = n.min(bytes.len());
            message.body = bytes[..take].to_vec();
            message.complete = take == n;
            Ok(take)
        }
        Framing::Close => {
            message.body = bytes.to_vec();
            message.complete = ended;
            message.close_delimited = true;
            Ok(bytes.len())
        }
        Framing::Chunked => chunked(message, bytes),
    }
}

/// Decodes a chunked body (RFC 9112 §7.1) strictly; an incomplete one keeps what was decoded.
fn chunked(message: &mut Message, bytes: &[u8]) -> Result<usize, Unclear> {
    let bad = |what: &str| Err(Unclear::Malformed(format!("chunked body: {what}")));
    let mut at = 0;
    message.complete = false;
    loop {
        let Some(line_end) = find_crlf(&bytes[at..]) else {
            return Ok(bytes.len());
        };
        let line = &bytes[at..at + line_end];
        let size_part = line.split(|b| *b == b';').next().unwrap_or_default();
        if size_part.is_empty()
            || size_part.len() > 15
            || !size_part.iter().all(u8::is_ascii_hexdigit)
        {
            return bad("chunk size");
        }
        let size = usize::from_str_radix(std::str::from_utf8(size_part).unwrap_or("x"), 16)
            .or_else(|_| bad("chunk size"))?;
        at += line_end + 2;
        if size == 0 {
            // Trailer section, then the final CRLF.
            loop {
                let Some(end) = find_crlf(&bytes[at..]) else {
                    return Ok(bytes.len());
                };
                let line = &bytes[at..at + end];
                at += end + 2;
                if line.is_empty() {
                    message.complete = true;
                    return Ok(at);
                }
                if line[0] == b' ' || line[0] == b'\t' || !line.contains(&b':') {
                    return bad("trailer line");
                }
            }
        }
        let available = size.min(bytes.len() - at);
        message.body.extend_from_slice(&bytes[at..at + available]);
        if available < size {
            return Ok(bytes.len());
        }
        at += size;
        match bytes.get(at..at + 2) {
            Some(b"\r\n") => at += 2,
            Some(_) => return bad("no CRLF after chunk data"),
            None if bytes.len() > at && bytes[at] != b'\r' => {
                return bad("no CRLF after chunk data")
            }
            None => return Ok(bytes.len()),
        }
    }
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(_: usize) -> Option<String> {
        Some("GET".into())
    }

    #[test]
    fn reads_length_chunked_and_close_delimited_responses() {
        let stream = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok\
HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2;x=y\r\nab\r\n1\r\nc\r\n0\r\nt: 1\r\n\r\n\
HTTP/1.1 404 Not Found\r\n\r\nrest";
        let got = responses(stream, &get, true).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!((got[0].status, &got[0].body[..]), (200, &b"ok"[..]));
        assert_eq!(&got[1].body[..], b"abc");
        assert!(got[1].complete);
        assert_eq!(&got[2].body[..], b"rest");
        assert!(got[2].complete && got[2].close_delimited);
    }

    #[test]
    fn incomplete_and_ambiguous_streams_are_told_apart() {
        let short = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nab";
        let got = responses(short, &get, true).unwrap();
        assert!(!got[0].complete);
        assert_eq!(got[0].body, b"ab");
        let cut = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab";
        let got = responses(cut, &get, false).unwrap();
        assert!(!got[0].complete);
        assert_eq!(got[0].body, b"ab");
        let both = b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(matches!(
            responses(both, &get, true),
            Err(Unclear::Ambiguous(_))
        ));
        let head = |_: usize| Some("HEAD".to_owned());
        let got = responses(
            b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n",
            &head,
            false,
        )
        .unwrap();
        assert!(got[0].complete && got[0].body.is_empty());
    }

    #[test]
    fn reads_requests_with_bodies() {
        let stream =
            b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabcHEAD /b HTTP/1.1\r\n\r\n";
        let got = requests(stream, 8).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].body, b"abc");
        assert_eq!(got[1].method, "HEAD");
    }
}
