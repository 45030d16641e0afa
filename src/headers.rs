//! HTTP vocabulary every part of candor shares: the header names it adds or reads, the largest
//! head it accepts, the hop-by-hop fields, removing listed fields from a head, and the
//! `Retry-After` delay-seconds form.
//!
//! A leaf module: it imports nothing of candor's, so the proxy, the normaliser, the failure
//! table and the upstream client can all use it without depending on each other.

use std::time::Duration;

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION,
    TE, TRANSFER_ENCODING, UPGRADE,
};

/// Largest request or response head candor reads (64 KiB, as nginx's and HAProxy's largest
/// buffer settings in common use): larger request heads get 431, larger response heads are a
/// protocol error.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// `x-request-id`: correlates a request across client, candor's logs and the upstream.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `x-forwarded-for`: the client address chain.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `x-forwarded-proto`: the scheme of each hop.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `x-forwarded-host`: the Host the client asked for.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// The RFC 9209 response header naming the proxy's error.
pub static PROXY_STATUS: HeaderName = HeaderName::from_static("proxy-status");
/// `x-candor-rule`: which rules changed a response (`server.debug_headers`).
pub static X_CANDOR_RULE: HeaderName = HeaderName::from_static("x-candor-rule");
/// `x-candor-original-status`: the upstream's status before a rewrite (`server.debug_headers`).
pub static X_CANDOR_ORIGINAL_STATUS: HeaderName =
    HeaderName::from_static("x-candor-original-status");

/// Hop-by-hop and framing fields (RFC 9110 §7.6.1), never copied from one hop to the next.
/// `Content-Length` is here because hyper re-derives it from the body; a copied stale length is
/// how a rewritten body desynchronises a keep-alive connection. `Connection` itself is handled
/// apart, since the fields it nominates go too.
///
/// `Trailer` is not here: RFC 9110 §6.6.2 makes it end-to-end (it announces the trailer fields,
/// and hyper's server writes only the trailer fields it announces).
pub(crate) static HOP_BY_HOP: [HeaderName; 8] = [
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    TE,
    TRANSFER_ENCODING,
    UPGRADE,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    CONTENT_LENGTH,
];
/// The position of `TE` in [`HOP_BY_HOP`].
pub(crate) const TE_INDEX: usize = 2;
/// The position of `Upgrade` in [`HOP_BY_HOP`].
pub(crate) const UPGRADE_INDEX: usize = 4;

/// The position of `name` in [`HOP_BY_HOP`]: one match on the name's text (lower case in a
/// `HeaderName`) instead of eight `HeaderName` comparisons for every field of every head.
pub(crate) fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    match name.as_str() {
        "keep-alive" => Some(0),
        "proxy-connection" => Some(1),
        "te" => Some(TE_INDEX),
        "transfer-encoding" => Some(3),
        "upgrade" => Some(UPGRADE_INDEX),
        "proxy-authenticate" => Some(5),
        "proxy-authorization" => Some(6),
        "content-length" => Some(7),
        _ => None,
    }
}

/// Removes the names of `list` that `headers` holds, found in one scan of its names: `index`
/// gives a name's position in `list`, or `None` to leave it. Removing an absent name would
/// still hash it and probe the map, and most heads hold few of a list's names.
pub(crate) fn remove_listed<const N: usize>(
    headers: &mut HeaderMap,
    list: &[HeaderName; N],
    index: impl Fn(&HeaderName) -> Option<usize>,
) {
    let mut present = [false; N];
    let mut any = false;
    for name in headers.keys() {
        if let Some(i) = index(name) {
            present[i] = true;
            any = true;
        }
    }
    if any {
        for (name, _) in list.iter().zip(present).filter(|(_, p)| *p) {
            headers.remove(name);
        }
    }
}

/// `delay` in whole seconds, rounded up: a client told to wait 4.5 s that retries after 4 would
/// come back early.
pub fn whole_seconds(delay: Duration) -> u64 {
    delay
        .as_secs()
        .saturating_add(u64::from(delay.subsec_nanos() > 0))
}

/// A `Retry-After` value in delay-seconds form (RFC 9110 §10.2.3): digits only, so it can never
/// carry a header line of its own.
pub fn retry_after(seconds: u64) -> HeaderValue {
    HeaderValue::from(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_index_matches_the_list() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name), Some(i), "{name}");
        }
        assert_eq!(hop_by_hop_index(&http::header::CONNECTION), None);
        assert_eq!(hop_by_hop_index(&http::header::TRAILER), None);
        assert_eq!(hop_by_hop_index(&HeaderName::from_static("x-te")), None);
        assert_eq!(HOP_BY_HOP[TE_INDEX], TE);
        assert_eq!(HOP_BY_HOP[UPGRADE_INDEX], UPGRADE);
    }

    #[test]
    fn seconds_round_up_and_retry_after_is_digits() {
        assert_eq!(whole_seconds(Duration::from_millis(4500)), 5);
        assert_eq!(whole_seconds(Duration::from_secs(5)), 5);
        assert_eq!(whole_seconds(Duration::ZERO), 0);
        assert_eq!(whole_seconds(Duration::MAX), u64::MAX);
        assert_eq!(retry_after(30), "30");
    }

    #[test]
    fn only_listed_names_that_are_present_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(TE, HeaderValue::from_static("trailers"));
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("3"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        remove_listed(&mut headers, &HOP_BY_HOP, |name| {
            hop_by_hop_index(name).filter(|&i| i != TE_INDEX)
        });
        assert!(headers.contains_key(TE));
        assert!(!headers.contains_key(CONTENT_LENGTH));
        assert!(headers.contains_key("x-kept"));
    }
}
