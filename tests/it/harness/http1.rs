//! The harness's one HTTP/1 reader, independent of hyper: request and response heads (httparse,
//! with its strict defaults: no obs-fold, no blank before a colon, no bare CR), the body framing
//! of a response (RFC 9112 §6.3), one chunked decoder (trailers included), and a response reader
//! that splits pipelined responses and says how complete each one is.
//!
//! Origins read requests with [`request_head`] and [`Dechunker`]; clients read responses with
//! [`parse_one`] and [`parse_responses`]. [`request_target`] and [`response_summary`] allocate
//! nothing, for the memory tests, whose counting allocator would count the harness too.

/// Most fields a request head may have here (candor forwards up to hyper's limit).
pub const MAX_REQUEST_FIELDS: usize = 512;
/// Most fields a response head may have here.
pub const MAX_RESPONSE_FIELDS: usize = 256;
/// Most trailer fields a chunked body may end with here.
const MAX_TRAILERS: usize = 64;
/// Most fields the parsers that allocate nothing take (their array is on the stack).
const MAX_STACK_FIELDS: usize = 256;

/// What reading a head off the front of a buffer found.
#[derive(Debug)]
pub enum Head<T> {
    /// A whole head, and its length in bytes (up to and including the blank line).
    Complete(T, usize),
    /// Not all of it yet.
    Partial,
    /// Something a strict parser refuses.
    Invalid(httparse::Error),
}

/// A request head as received.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: String,
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Names as received (case kept), values as bytes.
    pub fields: Vec<(String, Vec<u8>)>,
}

/// Parses the request head at the start of `buf`.
pub fn request_head(buf: &[u8]) -> Head<RequestHead> {
    let mut headers = vec![httparse::EMPTY_HEADER; MAX_REQUEST_FIELDS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => Head::Complete(
            RequestHead {
                method: req.method.unwrap_or("").to_owned(),
                target: req.path.unwrap_or("").to_owned(),
                version: req.version.unwrap_or(1),
                fields: req
                    .headers
                    .iter()
                    .map(|h| (h.name.to_owned(), h.value.to_vec()))
                    .collect(),
            },
            n,
        ),
        Ok(httparse::Status::Partial) => Head::Partial,
        Err(err) => Head::Invalid(err),
    }
}

/// The target of the request head at the start of `buf`, and the head's length, without
/// allocating (the fields go into an array on the stack).
pub fn request_target(buf: &[u8]) -> Head<&str> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_STACK_FIELDS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => Head::Complete(req.path.unwrap_or(""), n),
        Ok(httparse::Status::Partial) => Head::Partial,
        Err(err) => Head::Invalid(err),
    }
}

/// How a response's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: a 1xx, 204 or 304, or the answer to a HEAD.
    None,
    Length(usize),
    Chunked,
    /// Until the connection closes.
    Close,
}

/// The framing of a response with `status` and these fields. A `Content-Length` that is not a
/// number is `Err`; each caller decides what that means for it.
fn framing<'a>(
    status: u16,
    head_request: bool,
    mut field: impl FnMut(&str) -> Option<&'a [u8]>,
) -> Result<Framing, ()> {
    if (100..200).contains(&status) || head_request || status == 204 || status == 304 {
        return Ok(Framing::None);
    }
    let chunked = field("transfer-encoding").is_some_and(|te| {
        te.to_ascii_lowercase()
            .trim_ascii_end()
            .ends_with(b"chunked")
    });
    if chunked {
        return Ok(Framing::Chunked);
    }
    match field("content-length") {
        Some(length) => std::str::from_utf8(length)
            .ok()
            .and_then(|l| l.trim().parse().ok())
            .map(Framing::Length)
            .ok_or(()),
        None => Ok(Framing::Close),
    }
}

/// A response head in brief: its status and framing.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub status: u16,
    pub framing: Framing,
}

/// The status and framing of the response head at the start of `buf`, and the head's length,
/// without allocating. An unreadable `Content-Length` counts as [`Framing::Close`].
pub fn response_summary(buf: &[u8], head_request: bool) -> Head<Summary> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_STACK_FIELDS];
    let mut res = httparse::Response::new(&mut headers);
    match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => {
            let status = res.code.unwrap_or(0);
            let framing = framing(status, head_request, |name| {
                res.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| h.value)
            })
            .unwrap_or(Framing::Close);
            Head::Complete(Summary { status, framing }, n)
        }
        Ok(httparse::Status::Partial) => Head::Partial,
        Err(err) => Head::Invalid(err),
    }
}

/// Parses the status code of a status line at the start of `wire`.
pub fn status_of(wire: &[u8]) -> Option<u16> {
    let line = wire.split(|b| *b == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.split(' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.trim().parse().ok()
}

/// How far a chunked body has been decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The last chunk and the trailer section arrived; the body took this many bytes.
    Done(usize),
    /// More bytes are needed: at least this many in all before decoding can go on.
    More(usize),
    /// Not chunked framing a strict reader accepts.
    Invalid(String),
}

/// The chunked decoder (RFC 9112 §7.1): chunk sizes through httparse, CRLF checked after every
/// chunk's data, trailer fields parsed like a head's. It resumes where it stopped, so a reader
/// can call it again on the same bytes with more appended.
#[derive(Debug, Default)]
pub struct Dechunker {
    /// Where the next chunk-size line (or the trailer section) starts.
    pos: usize,
    in_trailers: bool,
    /// Keep no data, only find where the body ends (see [`Dechunker::skipping`]).
    skip: bool,
    /// The data of the complete chunks so far.
    pub body: Vec<u8>,
    /// Trailer fields: names lowercased, values as bytes.
    pub trailers: Vec<(String, Vec<u8>)>,
}

impl Dechunker {
    pub fn new() -> Dechunker {
        Dechunker::default()
    }

    /// A decoder that keeps no data: it only finds where the body ends, allocating nothing.
    pub fn skipping() -> Dechunker {
        Dechunker {
            skip: true,
            ..Dechunker::default()
        }
    }

    /// The data of the chunk that has begun but not fully arrived in `wire`.
    pub fn partial<'w>(&self, wire: &'w [u8]) -> &'w [u8] {
        let rest = &wire[self.pos.min(wire.len())..];
        match httparse::parse_chunk_size(rest) {
            Ok(httparse::Status::Complete((start, size))) if !self.in_trailers => {
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                &rest[start..rest.len().min(start.saturating_add(size))]
            }
            _ => &[],
        }
    }

    /// Decodes what `wire` (the bytes from the body's first one on) holds beyond the last call.
    pub fn advance(&mut self, wire: &[u8]) -> Step {
        loop {
            let rest = &wire[self.pos..];
            if self.in_trailers {
                let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILERS];
                return match httparse::parse_headers(rest, &mut fields) {
                    Ok(httparse::Status::Complete((n, fields))) => {
                        self.trailers.extend(
                            fields
                                .iter()
                                .map(|f| (f.name.to_ascii_lowercase(), f.value.to_vec())),
                        );
                        self.pos += n;
                        Step::Done(self.pos)
                    }
                    Ok(httparse::Status::Partial) => Step::More(wire.len() + 1),
                    Err(err) => Step::Invalid(format!("invalid trailer section ({err})")),
                };
            }
            let (start, size) = match httparse::parse_chunk_size(rest) {
                Ok(httparse::Status::Complete(found)) => found,
                Ok(httparse::Status::Partial) => return Step::More(wire.len() + 1),
                Err(_) => return Step::Invalid("invalid chunk size line".into()),
            };
            let Ok(size) = usize::try_from(size) else {
                return Step::Invalid("huge chunk".into());
            };
            if size == 0 {
                self.pos += start;
                self.in_trailers = true;
                continue;
            }
            let data = self.pos + start;
            let Some(end) = data.checked_add(size).and_then(|e| e.checked_add(2)) else {
                return Step::Invalid("huge chunk".into());
            };
            if wire.len() < end {
                return Step::More(end);
            }
            if &wire[end - 2..end] != b"\r\n" {
                return Step::Invalid("chunk data not followed by CRLF".into());
            }
            if !self.skip {
                self.body.extend_from_slice(&wire[data..end - 2]);
            }
            self.pos = end;
        }
    }
}

/// One response as it came off the wire.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// The reason phrase (empty when it has obs-text, which httparse does not return).
    pub reason: String,
    /// Names lowercased, values as text.
    pub headers: Vec<(String, String)>,
    /// Names lowercased, values as the bytes received.
    pub fields: Vec<(String, Vec<u8>)>,
    /// The body as framed (chunked bodies decoded).
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body: names lowercased, values as bytes.
    pub trailers: Vec<(String, Vec<u8>)>,
    /// The framing was satisfied: the declared length arrived, the last chunk arrived, or (for
    /// a close-delimited body) the connection ended.
    pub complete: bool,
    /// The body was chunked.
    pub chunked: bool,
    /// What was wrong with the framing, when a strict reader cannot go on (the response then
    /// never completes).
    pub framing_error: Option<String>,
    /// The head as text, for messages.
    pub head: String,
}

impl Response {
    /// The first value of `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of `name` (case-insensitive), as the bytes received.
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    pub fn has(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body_text()))
    }

    /// Interim (1xx other than 101) responses precede the final one.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }
}

/// One response parsed off the front of a buffer.
pub enum Parsed {
    /// A complete response and the bytes it used.
    Done(Response, usize),
    /// A head whose body has not fully arrived (yet), and how many bytes of the buffer must be
    /// there before it can complete (so callers need not re-parse a long body on every read).
    Partial(Response, usize),
    /// Not even a complete head (or one a strict parser refuses).
    NoHead,
}

/// Reads the response at the start of `wire`. `head_request`: it answers a HEAD request (no
/// body whatever its headers say). `closed`: the connection ended after `wire`, which completes
/// a close-delimited body.
pub fn parse_one(wire: &[u8], head_request: bool, closed: bool) -> Parsed {
    let mut headers = vec![httparse::EMPTY_HEADER; MAX_RESPONSE_FIELDS];
    let mut parsed = httparse::Response::new(&mut headers);
    let n = match parsed.parse(wire) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return Parsed::NoHead,
    };
    let status = parsed.code.unwrap_or(0);
    let fields: Vec<(String, Vec<u8>)> = parsed
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect();
    let framing = framing(status, head_request, |name| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    })
    // An unreadable length delimits nothing: the body runs to the close.
    .unwrap_or(Framing::Close);
    let mut response = Response {
        status,
        version: parsed.version.unwrap_or(1),
        reason: parsed.reason.unwrap_or("").to_owned(),
        headers: fields
            .iter()
            .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect(),
        fields,
        body: Vec::new(),
        trailers: Vec::new(),
        complete: true,
        chunked: false,
        framing_error: None,
        head: String::from_utf8_lossy(&wire[..n]).into_owned(),
    };
    let rest = &wire[n..];
    match framing {
        Framing::None => Parsed::Done(response, n),
        Framing::Chunked => {
            response.chunked = true;
            let mut decoder = Dechunker::new();
            let step = decoder.advance(rest);
            let partial = decoder.partial(rest).to_vec();
            response.body = std::mem::take(&mut decoder.body);
            response.trailers = std::mem::take(&mut decoder.trailers);
            match step {
                Step::Done(used) => Parsed::Done(response, n + used),
                Step::More(need) => {
                    response.body.extend_from_slice(&partial);
                    response.complete = false;
                    Parsed::Partial(response, n.saturating_add(need))
                }
                Step::Invalid(what) => {
                    response.body.extend_from_slice(&partial);
                    response.complete = false;
                    response.framing_error = Some(what);
                    Parsed::Partial(response, usize::MAX)
                }
            }
        }
        Framing::Length(length) => {
            let take = length.min(rest.len());
            response.body = rest[..take].to_vec();
            response.complete = take == length;
            if response.complete {
                Parsed::Done(response, n + take)
            } else {
                Parsed::Partial(response, n.saturating_add(length))
            }
        }
        Framing::Close => {
            response.body = rest.to_vec();
            response.complete = closed;
            if closed {
                Parsed::Done(response, wire.len())
            } else {
                Parsed::Partial(response, usize::MAX)
            }
        }
    }
}

/// Splits pipelined responses. `heads[i]` says whether the i-th *final* response answers a HEAD
/// request (no body whatever its headers say); missing entries mean "not HEAD". `closed` says
/// the connection ended after `wire`, which completes a close-delimited body. Returns the
/// responses (interim ones included; the last one may be incomplete) and the bytes left over
/// that do not start a complete head (after a 101: the tunnel's first bytes).
pub fn parse_responses(wire: &[u8], heads: &[bool], closed: bool) -> (Vec<Response>, Vec<u8>) {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut finals = 0;
    while pos < wire.len() {
        let head = heads.get(finals).copied().unwrap_or(false);
        match parse_one(&wire[pos..], head, closed) {
            Parsed::Done(response, used) => {
                pos += used;
                let switched = response.status == 101;
                if !response.is_interim() {
                    finals += 1;
                }
                out.push(response);
                if switched {
                    // Whatever follows is tunnel data, not HTTP.
                    return (out, wire[pos..].to_vec());
                }
            }
            Parsed::Partial(response, _) => {
                out.push(response);
                return (out, Vec::new());
            }
            Parsed::NoHead => return (out, wire[pos..].to_vec()),
        }
    }
    (out, Vec::new())
}
