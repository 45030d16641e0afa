//! Who may write through the admin API (`PUT /maintenance`, `DELETE /audit`): with
//! `server.admin_token` set, a request presenting that bearer token (from anywhere); without one,
//! a loopback peer only. Reads stay open, as the rest of the admin listener is.
//!
//! The token is compared in constant time (`AdminToken::matches`), and neither it nor what a
//! client presented is ever logged or echoed.

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use http::{Response, StatusCode};

use crate::config::AdminToken;

/// Why a write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Denied {
    /// A token is configured and the request presented none (or not as a bearer token).
    MissingToken,
    /// A token is configured and the request presented another.
    WrongToken,
    /// No token is configured and the peer is not on loopback.
    NotLoopback,
}

/// Decides whether a write from `peer` (canonical: an IPv4-mapped IPv6 address as IPv4) with
/// `headers` may go ahead.
pub(super) fn authorize(
    token: Option<&AdminToken>,
    headers: &HeaderMap,
    peer: IpAddr,
) -> Result<(), Denied> {
    let Some(token) = token else {
        // 127.0.0.0/8 and ::1: the same host, where a person with a shell already has more
        // power than this switch.
        return if peer.is_loopback() {
            Ok(())
        } else {
            Err(Denied::NotLoopback)
        };
    };
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|value| bearer(value))
        .ok_or(Denied::MissingToken)?;
    if token.matches(presented) {
        Ok(())
    } else {
        Err(Denied::WrongToken)
    }
}

/// The token of an `Authorization: Bearer <token>` value (RFC 6750 §2.1; the scheme is
/// case-insensitive, RFC 9110 §11.1).
fn bearer(value: &HeaderValue) -> Option<&[u8]> {
    let bytes = value.as_bytes();
    let space = bytes.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = bytes.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let start = rest.iter().position(|&b| b != b' ')?;
    Some(&rest[start..])
}

impl Denied {
    /// The status: 401 with a challenge when a token is needed, 403 when no token could help.
    pub(super) fn status(self) -> StatusCode {
        match self {
            Denied::MissingToken | Denied::WrongToken => StatusCode::UNAUTHORIZED,
            Denied::NotLoopback => StatusCode::FORBIDDEN,
        }
    }

    /// What the client is told.
    pub(super) fn detail(self) -> &'static str {
        match self {
            Denied::MissingToken => "This change needs the admin token: Authorization: Bearer <server.admin_token>.",
            Denied::WrongToken => "The admin token is not valid.",
            Denied::NotLoopback => "No server.admin_token is configured, so only loopback clients may make this change.",
        }
    }

    /// Adds the `WWW-Authenticate` challenge a 401 must carry (RFC 9110 §11.6.1).
    pub(super) fn challenge<B>(self, response: &mut Response<B>) {
        let challenge = match self {
            Denied::MissingToken => r#"Bearer realm="candor""#,
            Denied::WrongToken => r#"Bearer realm="candor", error="invalid_token""#,
            Denied::NotLoopback => return,
        };
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> AdminToken {
        AdminToken::new("0123456789abcdef-token".to_owned())
    }

    fn with_auth(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn with_a_token_the_token_decides_wherever_the_peer_is() {
        let remote: IpAddr = "10.0.0.7".parse().unwrap();
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let t = token();
        let cases: [(HeaderMap, IpAddr, Result<(), Denied>); 9] = [
            (with_auth("Bearer 0123456789abcdef-token"), remote, Ok(())),
            (with_auth("bearer   0123456789abcdef-token"), local, Ok(())),
            (HeaderMap::new(), local, Err(Denied::MissingToken)),
            (HeaderMap::new(), remote, Err(Denied::MissingToken)),
            (with_auth("Basic YTpi"), remote, Err(Denied::MissingToken)),
            (with_auth("Bearer"), remote, Err(Denied::MissingToken)),
            (
                with_auth("Bearer 0123456789abcdef-tokeN"),
                local,
                Err(Denied::WrongToken),
            ),
            (
                with_auth("Bearer 0123456789abcdef-token2"),
                remote,
                Err(Denied::WrongToken),
            ),
            (with_auth("Bearer 0123"), remote, Err(Denied::WrongToken)),
        ];
        for (headers, peer, want) in cases {
            assert_eq!(
                authorize(Some(&t), &headers, peer),
                want,
                "{headers:?} {peer}"
            );
        }
    }

    #[test]
    fn without_a_token_only_loopback_may_write() {
        let any = with_auth("Bearer whatever");
        for (peer, ok) in [
            ("127.0.0.1", true),
            ("127.3.2.1", true),
            ("::1", true),
            ("10.0.0.7", false),
            ("192.168.1.1", false),
            ("2001:db8::1", false),
        ] {
            let peer: IpAddr = peer.parse().unwrap();
            let want = if ok { Ok(()) } else { Err(Denied::NotLoopback) };
            assert_eq!(authorize(None, &HeaderMap::new(), peer), want, "{peer}");
            assert_eq!(authorize(None, &any, peer), want, "{peer}");
        }
    }

    #[test]
    fn a_refusal_is_401_with_a_bearer_challenge_or_403() {
        for (denied, status, challenge) in [
            (Denied::MissingToken, 401, Some(r#"Bearer realm="candor""#)),
            (
                Denied::WrongToken,
                401,
                Some(r#"Bearer realm="candor", error="invalid_token""#),
            ),
            (Denied::NotLoopback, 403, None),
        ] {
            assert_eq!(denied.status(), status);
            let mut response = Response::new(());
            denied.challenge(&mut response);
            assert_eq!(
                response
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .map(|v| v.to_str().unwrap()),
                challenge
            );
        }
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let shown = format!("{:?}", Some(token()));
        assert!(!shown.contains("0123456789"), "{shown}");
    }
}
