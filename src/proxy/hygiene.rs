//! Header hygiene at the proxy's edges: which requests are refused before they reach the
//! upstream, which headers never cross a hop, and what candor adds.
//!
//! hyper parses and frames messages but leaves proxy policy to us: it hands over requests without
//! `Host` or with two, `CONNECT`, and absolute-form targets pointing anywhere; it copies whatever
//! headers it is given. These functions are pure, so each rule here is unit-tested without
//! sockets. A refusal is answered from the failure table (`failure::Refusal`).

use std::net::IpAddr;

use http::header::{
    Entry, HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, EXPECT, HOST, TE,
    TRANSFER_ENCODING, UPGRADE, VIA,
};
use http::uri::{Authority, Uri};
use http::{Method, Request, StatusCode, Version};

use crate::failure::Refusal;
use crate::headers::{hop_by_hop_index, remove_listed, HOP_BY_HOP, TE_INDEX, UPGRADE_INDEX};
pub use crate::headers::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REQUEST_ID};

/// Longest client-supplied request id that is kept; longer (or non-printable) ones are replaced,
/// since the id is echoed into responses and logs.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Checks what hyper accepts but a proxy must not forward. Returns the Host to send upstream
/// when the request carries one: the absolute-form authority wins over the `Host` header
/// (RFC 9112 §3.2.2), as does HTTP/2's `:authority`.
pub fn check<B>(req: &Request<B>) -> Result<Option<HeaderValue>, Refusal> {
    if req.method() == Method::CONNECT {
        return Err(Refusal::Connect);
    }
    let mut codings = req.headers().get_all(TRANSFER_ENCODING).iter();
    if let Some(coding) = codings.next() {
        if codings.next().is_some()
            || !coding
                .as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(b"chunked")
        {
            return Err(Refusal::TransferEncoding);
        }
    }
    let mut hosts = req.headers().get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Refusal::DuplicateHost);
    }
    if let Some(host) = host {
        valid_authority(host.as_bytes()).ok_or(Refusal::InvalidHost)?;
    }
    if let Some(authority) = req.uri().authority() {
        valid_authority(authority.as_str().as_bytes()).ok_or(Refusal::InvalidHost)?;
        let http1 = req.version() <= Version::HTTP_11;
        if req.version() == Version::HTTP_11 && host.is_none() {
            return Err(Refusal::MissingHost);
        }
        // An HTTP/1 absolute-form target naming another host than `Host` is a forward-proxy
        // request (or an attempt to reach something through candor): refused. HTTP/2 always
        // carries its target as `:authority`.
        if let (true, Some(host)) = (http1, host) {
            if !same_authority(host.as_bytes(), authority) {
                return Err(Refusal::ForeignTarget);
            }
        }
        return HeaderValue::from_str(authority.as_str())
            .map(Some)
            .map_err(|_| Refusal::InvalidHost);
    }
    match host {
        Some(host) => Ok(Some(host.clone())),
        None if req.version() == Version::HTTP_11 => Err(Refusal::MissingHost),
        // HTTP/1.0 may omit Host; the upstream's own authority is used.
        None => Ok(None),
    }
}

fn valid_authority(bytes: &[u8]) -> Option<()> {
    if bytes.is_empty() || bytes.contains(&b'@') {
        return None;
    }
    if let Some(valid) = plain_host_port(bytes) {
        return valid.then_some(());
    }
    let authority = Authority::try_from(bytes).ok()?;
    if authority.host().is_empty() {
        return None;
    }
    // `http` accepts any digits as a port; a port must fit in 16 bits (RFC 9110 §4.2.1). The
    // part after the last colon is a port unless it closes an IPv6 literal.
    match authority.as_str().rsplit_once(':') {
        Some((_, port)) if !port.contains(']') => port.parse::<u16>().ok().map(|_| ()),
        _ => Some(()),
    }
}

/// The common shape, `name[:port]` with a name of letters, digits, dots and dashes, decided
/// without `Authority::try_from`, which copies the value into a new allocation (about a thousand
/// instructions per request). `None`: another shape (IP literal, percent-encoding, …), for the
/// full parser.
fn plain_host_port(bytes: &[u8]) -> Option<bool> {
    let (host, port) = match memchr::memchr(b':', bytes) {
        Some(colon) => (&bytes[..colon], Some(&bytes[colon + 1..])),
        None => (bytes, None),
    };
    if host.is_empty()
        || !host
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'.' || *b == b'-')
    {
        return None;
    }
    // RFC 9110 §4.2.1: a port fits in 16 bits (and an empty one is refused, as before).
    Some(port.is_none_or(|port| {
        std::str::from_utf8(port)
            .is_ok_and(|p| p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok())
    }))
}

/// Whether a `Host` value and a target's authority name the same host and port (port 80 when
/// absent, as for `http`).
fn same_authority(host: &[u8], target: &Authority) -> bool {
    let Ok(host) = Authority::try_from(host) else {
        return false;
    };
    host.host().eq_ignore_ascii_case(target.host())
        && host.port_u16().unwrap_or(80) == target.port_u16().unwrap_or(80)
}

/// What [`prepare_request`] learned that the response path needs.
#[derive(Debug)]
pub struct Prepared {
    /// The request id sent upstream and echoed to the client.
    pub request_id: HeaderValue,
    /// The request asks to switch protocols (e.g. WebSocket) and is forwarded as such.
    pub upgrade: bool,
}

/// Per-connection values, computed once when the connection is accepted.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's IP as a header value, appended to `X-Forwarded-For`.
    pub ip: HeaderValue,
    /// `https` for a client that came over TLS, else `http`: appended to `X-Forwarded-Proto`.
    pub proto: HeaderValue,
}

impl Peer {
    /// The peer at `ip`, over plaintext.
    pub fn new(ip: IpAddr) -> Self {
        // An IP address always formats to a valid header value.
        let ip = HeaderValue::from_str(&ip.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Peer {
            ip,
            proto: HeaderValue::from_static("http"),
        }
    }

    /// The same peer, over TLS.
    pub fn over_tls(self) -> Self {
        Peer {
            proto: HeaderValue::from_static("https"),
            ..self
        }
    }
}

/// Rewrites a checked request for the upstream, in place (rebuilding the URI and header map per
/// request measurably costs CPU): origin-form target, HTTP/1.1, `Host`,
/// hop-by-hop headers removed, forwarding headers appended, a request id ensured.
pub fn prepare_request<B>(
    req: &mut Request<B>,
    host: Option<HeaderValue>,
    upstream_authority: &HeaderValue,
    peer: &Peer,
) -> Prepared {
    let present = Present::scan(req.headers());
    let upgrade =
        present.upgrade && req.version() == Version::HTTP_11 && wants_upgrade(req.headers());
    let trailers = present.te && accepts_trailers(req.headers());
    // Absolute-form (HTTP/1.1) and HTTP/2 targets carry a scheme and authority: whatever they
    // name, only the path and query go to the one configured upstream.
    if req.uri().authority().is_some() || req.uri().scheme().is_some() {
        *req.uri_mut() = origin_form(req.uri());
    }
    *req.version_mut() = Version::HTTP_11;

    let headers = req.headers_mut();
    // `Upgrade` is one of the fixed hop-by-hop names: removed here unless it is kept.
    if present.connection || present.hop_by_hop {
        strip_hop_by_hop(headers, upgrade);
    }
    if present.underscored {
        drop_underscored(headers);
    }
    // Expect is answered by candor's own server side (hyper sends 100 Continue when the body is
    // first read); forwarding it would make legacy upstreams answer 417.
    if present.expect {
        headers.remove(EXPECT);
    }
    if trailers {
        // TE is hop-by-hop, but "I accept trailers" holds for candor too: it forwards them.
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
    // The options candor itself sends: each hop-by-hop field it forwards must be named in
    // Connection (RFC 9110 §7.6.1, §10.1.4).
    match (upgrade, trailers) {
        (true, true) => headers.insert(CONNECTION, HeaderValue::from_static("upgrade, te")),
        (true, false) => headers.insert(CONNECTION, HeaderValue::from_static("upgrade")),
        (false, true) => headers.insert(CONNECTION, HeaderValue::from_static("te")),
        (false, false) => None,
    };
    // RFC 9110 §7.6.3: a gateway sends Via in each request it forwards.
    append(headers, &VIA, &HeaderValue::from_static("1.1 candor"));

    let host = match host {
        // Usually the client's own `Host` line, already in place.
        Some(host) if headers.get(HOST) == Some(&host) => host,
        Some(host) => {
            headers.insert(HOST, host.clone());
            host
        }
        None => {
            headers.insert(HOST, upstream_authority.clone());
            upstream_authority.clone()
        }
    };
    append(headers, &X_FORWARDED_FOR, &peer.ip);
    append(headers, &X_FORWARDED_PROTO, &peer.proto);
    append(headers, &X_FORWARDED_HOST, &host);

    let client_id = if present.request_id {
        headers.get(&X_REQUEST_ID)
    } else {
        None
    };
    let request_id = match client_id {
        Some(id) if acceptable_request_id(id) => id.clone(),
        _ => {
            let id = new_request_id();
            headers.insert(X_REQUEST_ID.clone(), id.clone());
            id
        }
    };
    Prepared {
        request_id,
        upgrade,
    }
}

/// Which of the request fields that [`prepare_request`] looks up or removes are present, from
/// one scan of the names. Most requests carry none of them, and a lookup of an absent name still
/// hashes it and probes the map (about six such lookups per request before this scan).
/// Only absences are acted on: a field removed on the way (say, one `Connection` nominates) is
/// still looked up, which finds nothing and costs what it did before.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Present {
    connection: bool,
    upgrade: bool,
    te: bool,
    expect: bool,
    request_id: bool,
    /// Any of [`HOP_BY_HOP`] (`Upgrade` and `TE` included).
    hop_by_hop: bool,
    /// A name with `_` in it ([`drop_underscored`]).
    underscored: bool,
}

impl Present {
    fn scan(headers: &HeaderMap) -> Present {
        let mut present = Present::default();
        for name in headers.keys() {
            match name.as_str() {
                "connection" => present.connection = true,
                "expect" => present.expect = true,
                "x-request-id" => present.request_id = true,
                text => {
                    if let Some(i) = hop_by_hop_index(name) {
                        present.hop_by_hop = true;
                        present.upgrade |= i == UPGRADE_INDEX;
                        present.te |= i == TE_INDEX;
                    } else if text.contains('_') {
                        present.underscored = true;
                    }
                }
            }
        }
        present
    }
}

/// Cleans an upstream response head for the client. `keep_length` keeps `Content-Length` where
/// it describes a body that is not sent (HEAD, 304, RFC 9110 §8.6); everywhere else hyper
/// derives framing from the body it is handed.
pub fn prepare_response(headers: &mut HeaderMap, status: StatusCode, keep_length: bool) {
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    let length = if keep_length {
        headers.get(CONTENT_LENGTH).cloned()
    } else {
        None
    };
    strip_hop_by_hop(headers, switching);
    if let Some(length) = length {
        headers.insert(CONTENT_LENGTH, length);
    }
    if switching {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The request id of a request candor answers itself without refusing it (maintenance mode):
/// the client's `x-request-id` when usable, as it would have gone upstream, else a fresh one.
pub fn request_id<B>(req: &Request<B>) -> HeaderValue {
    match req.headers().get(&X_REQUEST_ID) {
        Some(id) if acceptable_request_id(id) => id.clone(),
        _ => new_request_id(),
    }
}

/// Adds `x-request-id` to a response that lacks it.
pub fn echo_request_id(headers: &mut HeaderMap, id: &HeaderValue) {
    if let Entry::Vacant(entry) = headers.entry(&X_REQUEST_ID) {
        entry.insert(id.clone());
    }
}

/// Headers a `Connection` option may not remove: the ones candor (or the hop before it) adds to
/// tell the upstream who is asking. Letting a client nominate them would let it erase them
/// ("Abusing HTTP hop-by-hop request headers", Davison 2019).
fn protected(name: &str) -> bool {
    name.eq_ignore_ascii_case("host")
        || name.eq_ignore_ascii_case("x-forwarded-for")
        || name.eq_ignore_ascii_case("x-forwarded-proto")
        || name.eq_ignore_ascii_case("x-forwarded-host")
        || name.eq_ignore_ascii_case("x-request-id")
        || name.eq_ignore_ascii_case("forwarded")
}

/// Removes hop-by-hop and framing headers (RFC 9110 §7.6.1), including those `Connection`
/// nominates, in one pass over the names present. `Upgrade` survives only on a 101.
fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    if let Entry::Occupied(connection) = headers.entry(CONNECTION) {
        // The usual `Connection: keep-alive` (or close) nominates nothing: no list to build.
        if connection.iter().all(|v| {
            v.as_bytes().eq_ignore_ascii_case(b"keep-alive")
                || v.as_bytes().eq_ignore_ascii_case(b"close")
        }) {
            connection.remove_entry_mult();
            strip_fixed(headers, keep_upgrade);
            return;
        }
        let (_, values) = connection.remove_entry_mult();
        let values: Vec<HeaderValue> = values
            .filter(|v| {
                !(v.as_bytes().eq_ignore_ascii_case(b"keep-alive")
                    || v.as_bytes().eq_ignore_ascii_case(b"close"))
            })
            .collect();
        for value in &values {
            // Split the raw bytes: a value carrying obs-text elsewhere (not UTF-8, so `to_str`
            // fails) still nominates its valid tokens, and skipping the whole value would
            // forward the very fields the client asked to keep on this hop.
            for token in value.as_bytes().split(|&b| b == b',') {
                let Ok(token) = std::str::from_utf8(token.trim_ascii()) else {
                    continue;
                };
                if token.is_empty()
                    || protected(token)
                    || (keep_upgrade && token.eq_ignore_ascii_case("upgrade"))
                {
                    continue;
                }
                headers.remove(token);
            }
        }
    }
    strip_fixed(headers, keep_upgrade);
}

/// Removes the fixed hop-by-hop names that are present, found in a single scan.
fn strip_fixed(headers: &mut HeaderMap, keep_upgrade: bool) {
    remove_listed(headers, &HOP_BY_HOP, |name| {
        hop_by_hop_index(name).filter(|&i| !(keep_upgrade && i == UPGRADE_INDEX))
    });
}

/// An HTTP/1.1 protocol switch the upstream should see: `Upgrade` plus a `Connection: upgrade`
/// option. `h2c` is never forwarded: candor speaks HTTP/1.1 upstream, and an h2c upgrade through
/// a proxy is a known smuggling vector (Bishop Fox 2020).
fn wants_upgrade(headers: &HeaderMap) -> bool {
    let Some(protocol) = headers.get(UPGRADE) else {
        return false;
    };
    if protocol
        .as_bytes()
        .split(|b| *b == b',')
        .any(|p| p.trim_ascii().eq_ignore_ascii_case(b"h2c"))
    {
        return false;
    }
    headers.get_all(CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
    })
}

/// Removes request headers whose names contain `_`. Many servers (CGI, PHP, Django, Rails,
/// nginx in front of them) map `X-User_Id` and `X-User-Id` to the same variable, so an underscore
/// variant can smuggle a value past a check made on the dashed name (Envoy's
/// `headers_with_underscores_action`, HAProxy's `restrict-req-hdr-names`).
/// Called only when [`Present::scan`] saw such a name.
fn drop_underscored(headers: &mut HeaderMap) {
    let underscored: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().contains('_'))
        .cloned()
        .collect();
    for name in underscored {
        headers.remove(&name);
    }
}

/// Whether the client's `TE` lists `trailers` (RFC 9110 §10.1.4).
fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers.get_all(TE).iter().any(|v| {
        v.as_bytes().split(|b| *b == b',').any(|t| {
            let name = t.split(|b| *b == b';').next().unwrap_or_default();
            name.trim_ascii().eq_ignore_ascii_case(b"trailers")
        })
    })
}

fn origin_form(uri: &Uri) -> Uri {
    match uri.path_and_query() {
        Some(pq) if pq.as_str().starts_with('/') || pq.as_str() == "*" => Uri::from(pq.clone()),
        _ => Uri::from_static("/"),
    }
}

/// Appends `value` to a comma-separated list header, folding earlier lines into one (what
/// nginx's `$proxy_add_x_forwarded_for` does; many applications read only the first line).
fn append(headers: &mut HeaderMap, name: &HeaderName, value: &HeaderValue) {
    match headers.entry(name) {
        Entry::Vacant(entry) => {
            entry.insert(value.clone());
        }
        Entry::Occupied(mut entry) => {
            let mut joined = Vec::with_capacity(64);
            for existing in entry.iter() {
                joined.extend_from_slice(existing.as_bytes());
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(value.as_bytes());
            // Joining valid values with ", " yields a valid value.
            if let Ok(joined) = HeaderValue::from_bytes(&joined) {
                entry.insert(joined);
            }
        }
    }
}

fn acceptable_request_id(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_LEN
        && bytes.iter().all(|b| b.is_ascii_graphic())
}

/// A fresh random (v4) UUID.
pub fn new_request_id() -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    // The id goes upstream and back to the client: owned by a shared allocation from the start,
    // the copy for the response is a reference count, where a copied `HeaderValue` would cost a
    // second allocation on its first clone. A hyphenated UUID is ASCII hex and dashes.
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(buf))
        .unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(lines: &[(&str, &str)]) -> Request<()> {
        let mut req = Request::new(());
        for (k, v) in lines {
            req.headers_mut().append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        req
    }

    #[test]
    fn the_scan_sees_each_field_that_prepare_request_acts_on() {
        let scan = |pairs: &[(&str, &str)]| Present::scan(request(pairs).headers());
        let plain = scan(&[("host", "a"), ("accept", "*/*"), ("x-te", "1")]);
        assert_eq!(plain, Present::default());
        let all = scan(&[
            ("Connection", "keep-alive"),
            ("Upgrade", "websocket"),
            ("TE", "trailers"),
            ("Expect", "100-continue"),
            ("X-Request-Id", "abc"),
            ("X-User_Id", "7"),
        ]);
        assert_eq!(
            all,
            Present {
                connection: true,
                upgrade: true,
                te: true,
                expect: true,
                request_id: true,
                hop_by_hop: true,
                underscored: true,
            }
        );
        let length = scan(&[("content-length", "3")]);
        assert!(length.hop_by_hop && !length.upgrade && !length.te);
    }

    fn upstream() -> HeaderValue {
        HeaderValue::from_static("127.0.0.1:3000")
    }

    fn peer() -> Peer {
        Peer::new("10.1.2.3".parse().unwrap())
    }

    #[test]
    fn refusals() {
        let mut connect = request(&[("host", "a")]);
        *connect.method_mut() = Method::CONNECT;
        let mut http10 = request(&[]);
        *http10.version_mut() = Version::HTTP_10;
        let mut absolute_no_host = request(&[]);
        *absolute_no_host.uri_mut() = "http://evil.example/x".parse().unwrap();
        type Case = (Request<()>, Result<Option<&'static str>, Refusal>);
        let cases: Vec<Case> = vec![
            (request(&[("host", "a.example")]), Ok(Some("a.example"))),
            (request(&[]), Err(Refusal::MissingHost)),
            (
                request(&[("host", "a"), ("host", "b")]),
                Err(Refusal::DuplicateHost),
            ),
            (request(&[("host", "user@a")]), Err(Refusal::InvalidHost)),
            (request(&[("host", "")]), Err(Refusal::InvalidHost)),
            (request(&[("host", "a b")]), Err(Refusal::InvalidHost)),
            (request(&[("host", "a:b:c")]), Err(Refusal::InvalidHost)),
            (request(&[("host", "x:99999")]), Err(Refusal::InvalidHost)),
            (request(&[("host", "x:")]), Err(Refusal::InvalidHost)),
            (request(&[("host", ":80")]), Err(Refusal::InvalidHost)),
            (request(&[("host", "x:8080")]), Ok(Some("x:8080"))),
            (connect, Err(Refusal::Connect)),
            (http10, Ok(None)),
            (absolute_no_host, Err(Refusal::MissingHost)),
        ];
        for (req, want) in cases {
            let got = check(&req);
            let got = got
                .as_ref()
                .map(|h| h.as_ref().map(|v| v.to_str().unwrap()));
            assert_eq!(got, want.as_ref().map(|h| *h), "{:?}", req.headers());
        }
    }

    #[test]
    fn absolute_form_targets_must_name_the_host_and_never_route() {
        let mut foreign = request(&[("host", "a.example")]);
        *foreign.uri_mut() = "http://169.254.169.254/latest?x=1".parse().unwrap();
        assert_eq!(check(&foreign), Err(Refusal::ForeignTarget));

        let mut req = request(&[("host", "API.example:80")]);
        *req.uri_mut() = "http://api.example/latest?x=1".parse().unwrap();
        let host = check(&req).unwrap();
        assert_eq!(host.as_ref().unwrap(), "api.example");
        prepare_request(&mut req, host, &upstream(), &peer());
        assert_eq!(req.uri(), "/latest?x=1");
        assert_eq!(req.uri().authority(), None);
        assert_eq!(req.headers()[HOST], "api.example");
    }

    #[test]
    fn header_names_with_underscores_are_not_forwarded() {
        let mut req = request(&[("host", "a"), ("x-user_id", "7"), ("x-user-id", "8")]);
        let host = check(&req).unwrap();
        prepare_request(&mut req, host, &upstream(), &peer());
        assert!(!req.headers().contains_key("x-user_id"));
        assert_eq!(req.headers()["x-user-id"], "8");
    }

    #[test]
    fn hop_by_hop_and_nominated_headers_are_removed() {
        let mut req = request(&[
            ("host", "a"),
            ("connection", "keep-alive, X-Secret, x-forwarded-for, Host"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip"),
            ("trailer", "x-sum"),
            ("transfer-encoding", "chunked"),
            ("content-length", "5"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("expect", "100-continue"),
            ("x-forwarded-for", "192.0.2.1"),
            ("accept", "application/json"),
        ]);
        let host = check(&req).unwrap();
        prepare_request(&mut req, host, &upstream(), &peer());
        let h = req.headers();
        for gone in [
            "connection",
            "x-secret",
            "keep-alive",
            "proxy-connection",
            "te",
            "transfer-encoding",
            "content-length",
            "upgrade",
            "proxy-authorization",
            "expect",
        ] {
            assert!(!h.contains_key(gone), "{gone} survived: {h:?}");
        }
        assert_eq!(h["accept"], "application/json");
        assert_eq!(h["trailer"], "x-sum", "Trailer is end-to-end");
        assert_eq!(h["host"], "a");
        assert_eq!(h["x-forwarded-for"], "192.0.2.1, 10.1.2.3");
    }

    #[test]
    fn connection_values_with_obs_text_still_nominate_their_tokens() {
        let mut req = request(&[("host", "a"), ("x-secret", "1"), ("x-other", "2")]);
        req.headers_mut().append(
            CONNECTION,
            HeaderValue::from_bytes(b"x-secret, caf\xe9, x-other").unwrap(),
        );
        let host = check(&req).unwrap();
        prepare_request(&mut req, host, &upstream(), &peer());
        let h = req.headers();
        assert!(!h.contains_key("x-secret"), "{h:?}");
        assert!(!h.contains_key("x-other"), "{h:?}");
        assert!(!h.contains_key("connection"), "{h:?}");
    }

    #[test]
    fn te_trailers_is_passed_on_and_other_te_values_are_not() {
        let mut req = request(&[("host", "a"), ("te", "gzip, trailers;q=1")]);
        let host = check(&req).unwrap();
        prepare_request(&mut req, host, &upstream(), &peer());
        assert_eq!(req.headers()["te"], "trailers");
        assert_eq!(req.headers()["connection"], "te");
        let mut req = request(&[("host", "a"), ("te", "gzip")]);
        let host = check(&req).unwrap();
        prepare_request(&mut req, host, &upstream(), &peer());
        assert!(!req.headers().contains_key("te"));
    }

    #[test]
    fn forwarding_headers_are_appended() {
        let mut req = request(&[
            ("host", "api.example"),
            ("x-forwarded-for", "192.0.2.1"),
            ("x-forwarded-for", "192.0.2.2"),
            ("x-forwarded-proto", "https"),
        ]);
        let host = check(&req).unwrap();
        let prepared = prepare_request(&mut req, host, &upstream(), &peer());
        let h = req.headers();
        assert_eq!(h["via"], "1.1 candor");
        assert_eq!(h["x-forwarded-for"], "192.0.2.1, 192.0.2.2, 10.1.2.3");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-proto"], "https, http");
        assert_eq!(h["x-forwarded-host"], "api.example");
        assert_eq!(h["x-request-id"], prepared.request_id);
        assert_eq!(prepared.request_id.len(), 36);
        assert!(!prepared.upgrade);
    }

    #[test]
    fn request_id_is_kept_when_sane_and_replaced_otherwise() {
        let mut req = request(&[("host", "a"), ("x-request-id", "abc-123")]);
        let host = check(&req).unwrap();
        let p = prepare_request(&mut req, host, &upstream(), &peer());
        assert_eq!(p.request_id, "abc-123");
        let long = "x".repeat(200);
        let mut req = request(&[("host", "a"), ("x-request-id", &long)]);
        let host = check(&req).unwrap();
        let p = prepare_request(&mut req, host, &upstream(), &peer());
        assert_eq!(p.request_id.len(), 36);
        assert_eq!(req.headers()["x-request-id"], p.request_id);
    }

    #[test]
    fn http10_without_host_gets_the_upstream_authority() {
        let mut req = request(&[]);
        *req.version_mut() = Version::HTTP_10;
        let host = check(&req).unwrap();
        prepare_request(&mut req, host, &upstream(), &peer());
        assert_eq!(req.headers()["host"], "127.0.0.1:3000");
        assert_eq!(req.headers()["x-forwarded-host"], "127.0.0.1:3000");
        assert_eq!(req.version(), Version::HTTP_11);
    }

    #[test]
    fn websocket_upgrade_is_forwarded_but_h2c_is_not() {
        let mut req = request(&[
            ("host", "a"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "k"),
        ]);
        let host = check(&req).unwrap();
        let p = prepare_request(&mut req, host, &upstream(), &peer());
        assert!(p.upgrade);
        assert_eq!(req.headers()["upgrade"], "websocket");
        assert_eq!(req.headers()["connection"], "upgrade");
        assert_eq!(req.headers()["sec-websocket-key"], "k");

        let mut req = request(&[
            ("host", "a"),
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAA"),
        ]);
        let host = check(&req).unwrap();
        let p = prepare_request(&mut req, host, &upstream(), &peer());
        assert!(!p.upgrade);
        for gone in ["upgrade", "connection", "http2-settings"] {
            assert!(!req.headers().contains_key(gone), "{gone}");
        }

        // `Upgrade` that no `Connection` option backs is no upgrade, and does not go on.
        let mut req = request(&[("host", "a"), ("upgrade", "websocket")]);
        let host = check(&req).unwrap();
        let p = prepare_request(&mut req, host, &upstream(), &peer());
        assert!(!p.upgrade);
        assert!(!req.headers().contains_key("upgrade"));
    }

    #[test]
    fn response_hygiene() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, "close, x-internal".parse().unwrap());
        h.insert("x-internal", "1".parse().unwrap());
        h.insert(TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert(CONTENT_LENGTH, "10".parse().unwrap());
        h.insert("content-type", "application/json".parse().unwrap());
        let mut head = h.clone();
        prepare_response(&mut h, StatusCode::OK, false);
        assert_eq!(h.len(), 1, "{h:?}");
        prepare_response(&mut head, StatusCode::OK, true);
        assert_eq!(head[CONTENT_LENGTH], "10");

        let mut switching = HeaderMap::new();
        switching.insert(CONNECTION, "Upgrade".parse().unwrap());
        switching.insert(UPGRADE, "websocket".parse().unwrap());
        prepare_response(&mut switching, StatusCode::SWITCHING_PROTOCOLS, false);
        assert_eq!(switching[UPGRADE], "websocket");
        assert_eq!(switching[CONNECTION], "upgrade");
    }
}
