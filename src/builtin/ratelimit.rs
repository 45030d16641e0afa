//! `Retry-After` for `[retry_after]`: deriving a delay from an upstream's rate-limit headers.
//!
//! When the upstream answers with one of the configured statuses (429, 503, …) and no
//! `Retry-After`, the normalize layer adds one (RFC 9110 §10.2.3). [`retry_after_from_reset`]
//! reads the upstream's own idea of when the limit resets; if it has none worth trusting, the
//! layer uses the configured `default`; `headers::retry_after` writes the delay-seconds form,
//! which is digits only and so can never smuggle a header line. An upstream `Retry-After` is never
//! replaced: that decision belongs to the layer, which only calls this when the header is absent.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};

/// Longest delay accepted from the upstream, in seconds: a day. A larger value, or an epoch
/// timestamp further ahead, is more likely a bug or a unit mistake (milliseconds) than a limit.
pub const MAX_DELAY_SECS: u64 = 86_400;

/// Smallest value read as a Unix timestamp rather than a delay (2001-09-09): a reset between a
/// day and this is neither a plausible delay nor a plausible time, and is ignored.
pub const MIN_EPOCH_SECS: u64 = 1_000_000_000;

/// The reset headers read, most standard first (the IETF draft's `RateLimit-Reset`, then the
/// GitHub/Twitter-style spellings).
static RESET_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("ratelimit-reset"),
    HeaderName::from_static("x-ratelimit-reset"),
    HeaderName::from_static("x-rate-limit-reset"),
];

/// The current IETF draft's combined field (draft-ietf-httpapi-ratelimit-headers-08 and later).
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The delay, in seconds, until the upstream's rate limit resets, or `None` when its headers
/// say nothing usable.
///
/// Reads `RateLimit-Reset`, `X-RateLimit-Reset` and `X-Rate-Limit-Reset` in that order, taking
/// the first that is usable: a single field whose value is plain ASCII digits (surrounding
/// spaces allowed, as RFC 9110 §5.5 excludes them from the value). Up to [`MAX_DELAY_SECS`] it is
/// a delay; from [`MIN_EPOCH_SECS`] on it is a Unix time, giving the seconds from `now` until
/// then, rounded up (0 if it has passed; ignored if more than a day ahead). Anything else (a
/// sign, a fraction, text, a list, a value between the two ranges, an overflowing number, a
/// header repeated) is ignored, and the next header is tried.
///
/// Last, the draft `RateLimit` structured field (`"default";r=0;t=30`, an RFC 9651 List): the
/// largest `t` of the policies with `r=0` (exhausted), or of all policies if none is, provided it
/// is at most a day. A field that is not a valid List is ignored whole, as RFC 9651 §4.2 asks.
pub fn retry_after_from_reset(headers: &HeaderMap, now: SystemTime) -> Option<u64> {
    RESET_HEADERS
        .iter()
        .find_map(|name| single(headers, name).and_then(|value| reset(value, now)))
        .or_else(|| draft_reset(headers))
}

/// The header's value if it appears exactly once; two values for a reset are a contradiction.
fn single<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

/// Reads one reset value as a delay or an epoch time.
fn reset(value: &HeaderValue, now: SystemTime) -> Option<u64> {
    let digits = value.as_bytes().trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // ASCII digits are UTF-8; the parse fails only on overflow.
    let number: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    if number <= MAX_DELAY_SECS {
        return Some(number);
    }
    if number < MIN_EPOCH_SECS {
        return None;
    }
    let at = UNIX_EPOCH.checked_add(Duration::from_secs(number))?;
    match at.duration_since(now) {
        Ok(ahead) => {
            // Round up: retrying a fraction of a second early would hit the limit again.
            let secs = crate::headers::whole_seconds(ahead);
            (secs <= MAX_DELAY_SECS).then_some(secs)
        }
        Err(_) => Some(0),
    }
}

/// The delay from the draft `RateLimit` field, if it has a usable one.
fn draft_reset(headers: &HeaderMap) -> Option<u64> {
    // Several field lines form one List, joined with commas (RFC 9651 §4.2).
    let mut joined = Vec::new();
    for value in headers.get_all(&RATELIMIT) {
        if !joined.is_empty() {
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(value.as_bytes());
    }
    if joined.is_empty() {
        return None;
    }
    let policies = policies(&joined)?;
    let usable = |p: &&Policy| {
        p.t.is_some_and(|t| (0..=MAX_DELAY_SECS as i64).contains(&t))
    };
    let exhausted = policies
        .iter()
        .filter(usable)
        .filter(|p| p.r == Some(0))
        .filter_map(|p| p.t)
        .max();
    let t = exhausted.or_else(|| policies.iter().filter(usable).filter_map(|p| p.t).max())?;
    u64::try_from(t).ok()
}

/// The quota parameters of one `RateLimit` policy.
#[derive(Debug, Default, PartialEq, Eq)]
struct Policy {
    /// `r`: the quota remaining.
    r: Option<i64>,
    /// `t`: seconds until the quota resets.
    t: Option<i64>,
}

/// Reads a `RateLimit` List (RFC 9651 §4.2.1) with `sfv`: each Item member is a policy, whose
/// `r` and `t` count only as Integers; an Inner List is no policy. `None` if the input is not a
/// List.
fn policies(input: &[u8]) -> Option<Vec<Policy>> {
    let list: sfv::List = sfv::Parser::new(input).parse().ok()?;
    let integer = |params: &sfv::Parameters, key: &str| match params.get(key) {
        Some(sfv::BareItem::Integer(n)) => Some(i64::from(*n)),
        _ => None,
    };
    Some(
        list.iter()
            .map(|member| match member {
                sfv::ListEntry::Item(item) => Policy {
                    r: integer(&item.params, "r"),
                    t: integer(&item.params, "t"),
                },
                sfv::ListEntry::InnerList(_) => Policy::default(),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-01-01T00:00:00Z, plus half a second so rounding shows.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_704_067_200_500)
    }

    const NOW_SECS: u64 = 1_704_067_200;

    /// Header fields of a test case, in order.
    type Fields<'a> = &'a [(&'a str, &'a [u8])];
    /// Values of one repeated field.
    type Values<'a> = &'a [&'a [u8]];

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn reset_values() {
        let in_60 = (NOW_SECS + 60).to_string();
        let past = (NOW_SECS - 60).to_string();
        let now_exact = NOW_SECS.to_string();
        let too_far = (NOW_SECS + MAX_DELAY_SECS + 2).to_string();
        let day_ahead = (NOW_SECS + MAX_DELAY_SECS).to_string();
        let table: &[(&str, &[u8], Option<u64>)] = &[
            ("delay", b"30", Some(30)),
            ("zero", b"0", Some(0)),
            ("leading zeros", b"0030", Some(30)),
            ("a day", b"86400", Some(86_400)),
            ("just over a day", b"86401", None),
            ("between the ranges", b"999999999", None),
            ("epoch ahead, rounded up", in_60.as_bytes(), Some(60)),
            ("epoch just passed", now_exact.as_bytes(), Some(0)),
            ("epoch past", past.as_bytes(), Some(0)),
            (
                "epoch a day ahead",
                day_ahead.as_bytes(),
                Some(MAX_DELAY_SECS),
            ),
            ("epoch too far ahead", too_far.as_bytes(), None),
            ("surrounding spaces", b" 30 ", Some(30)),
            ("tab", b"\t30", Some(30)),
            ("list", b"30, 40", None),
            ("negative", b"-5", None),
            ("plus sign", b"+5", None),
            ("exponent", b"1e3", None),
            ("fraction", b"1.5", None),
            ("text", b"soon", None),
            ("http date", b"Wed, 21 Oct 2015 07:28:00 GMT", None),
            ("overflow", b"99999999999999999999", None),
            ("empty", b"", None),
            ("inner space", b"3 0", None),
            ("obs-text", b"3\xb50", None),
            ("milliseconds epoch", b"1704067260000", None),
        ];
        for (name, value, expected) in table {
            let map = headers(&[("x-ratelimit-reset", value)]);
            assert_eq!(
                retry_after_from_reset(&map, now()),
                *expected,
                "{name}: {value:?}"
            );
        }
    }

    #[test]
    fn header_order_and_fall_through() {
        let table: &[(&str, Fields<'_>, Option<u64>)] = &[
            ("none", &[], None),
            (
                "standard first",
                &[("x-ratelimit-reset", b"20"), ("ratelimit-reset", b"10")],
                Some(10),
            ),
            (
                "x-ratelimit before x-rate-limit",
                &[("x-rate-limit-reset", b"30"), ("x-ratelimit-reset", b"20")],
                Some(20),
            ),
            (
                "x-rate-limit alone",
                &[("x-rate-limit-reset", b"30")],
                Some(30),
            ),
            (
                "bad first falls through",
                &[("ratelimit-reset", b"-5"), ("x-ratelimit-reset", b"20")],
                Some(20),
            ),
            (
                "repeated header is ambiguous",
                &[
                    ("ratelimit-reset", b"10"),
                    ("ratelimit-reset", b"20"),
                    ("x-rate-limit-reset", b"7"),
                ],
                Some(7),
            ),
            (
                "case of the name does not matter",
                &[("X-RateLimit-Reset", b"15")],
                Some(15),
            ),
            (
                "all bad",
                &[
                    ("ratelimit-reset", b"x"),
                    ("x-ratelimit-reset", b""),
                    ("x-rate-limit-reset", b"1.5"),
                ],
                None,
            ),
            (
                "unrelated headers",
                &[("retry-after", b"5"), ("x-ratelimit-remaining", b"0")],
                None,
            ),
            (
                "reset headers beat the draft field",
                &[
                    ("ratelimit", b"\"default\";r=0;t=50"),
                    ("x-ratelimit-reset", b"20"),
                ],
                Some(20),
            ),
            (
                "draft field when no reset header",
                &[("ratelimit", b"\"default\";r=0;t=50")],
                Some(50),
            ),
        ];
        for (name, pairs, expected) in table {
            assert_eq!(
                retry_after_from_reset(&headers(pairs), now()),
                *expected,
                "{name}"
            );
        }
    }

    #[test]
    fn draft_ratelimit_field() {
        let table: &[(&str, Values<'_>, Option<u64>)] = &[
            ("single policy", &[b"\"default\";r=0;t=30"], Some(30)),
            (
                "remaining quota still gives t",
                &[b"\"default\";r=50;t=30"],
                Some(30),
            ),
            (
                "exhausted policy wins",
                &[b"\"burst\";r=5;t=900, \"day\";r=0;t=60"],
                Some(60),
            ),
            (
                "longest exhausted",
                &[b"\"a\";r=0;t=10, \"b\";r=0;t=40"],
                Some(40),
            ),
            (
                "none exhausted: longest",
                &[b"\"a\";r=1;t=10, \"b\";r=2;t=40"],
                Some(40),
            ),
            (
                "token id and extra params",
                &[b"default;q=100;r=0;t=5;pk=:cHsx:"],
                Some(5),
            ),
            (
                "two field lines",
                &[b"\"a\";r=3;t=10", b"\"b\";r=0;t=20"],
                Some(20),
            ),
            ("no t", &[b"\"default\";r=0"], None),
            ("negative t", &[b"\"default\";r=0;t=-5"], None),
            ("decimal t", &[b"\"default\";r=0;t=1.5"], None),
            ("string t", &[b"\"default\";r=0;t=\"30\""], None),
            ("t over a day", &[b"\"default\";r=0;t=90000"], None),
            (
                "too many digits",
                &[b"\"default\";t=1234567890123456"],
                None,
            ),
            (
                "last duplicate key wins",
                &[b"\"default\";t=999999;t=7"],
                Some(7),
            ),
            (
                "inner list ignored",
                &[b"(\"a\" \"b\");t=9, \"c\";t=3"],
                Some(3),
            ),
            ("trailing comma invalidates", &[b"\"default\";t=30,"], None),
            ("garbage invalidates", &[b"\"default\";t=30 x"], None),
            ("uppercase key invalid", &[b"\"default\";T=30"], None),
            ("unterminated string", &[b"\"default;t=30"], None),
            (
                "old draft dictionary",
                &[b"limit=100, remaining=0, reset=30"],
                None,
            ),
            ("empty", &[b""], None),
        ];
        for (name, values, expected) in table {
            let pairs: Vec<(&str, &[u8])> = values.iter().map(|v| ("ratelimit", *v)).collect();
            assert_eq!(
                retry_after_from_reset(&headers(&pairs), now()),
                *expected,
                "{name}"
            );
        }
    }

    #[test]
    fn header_value_is_delay_seconds() {
        for (seconds, text) in [
            (0, "0"),
            (30, "30"),
            (86_400, "86400"),
            (u64::MAX, "18446744073709551615"),
        ] {
            let value = crate::headers::retry_after(seconds);
            assert_eq!(value, text);
            assert!(value.as_bytes().iter().all(u8::is_ascii_digit));
        }
    }
}
