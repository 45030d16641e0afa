//! Building blocks of candor's three built-in normalisations, each a pure function of bytes and
//! headers that the normalize layer calls once it has inspected a response:
//!
//! | built-in | what it does | pieces here |
//! | --- | --- | --- |
//! | `[html_errors]` | an upstream 4xx/5xx HTML page becomes `application/problem+json`, unless the request prefers HTML (a browser navigation) | [`accept::prefers_html`], [`html::is_html`], [`html::detail`] |
//! | `[retry_after]` | a rate-limited or unavailable response without `Retry-After` gets one | [`ratelimit::retry_after_from_reset`] |
//! | `[scrub]` | a 5xx body showing internals (stack traces, paths, SQL, private addresses) is replaced by a problem document and logged | [`scrub::Scrubber`], [`scrub::excerpt`] |
//!
//! Nothing here does I/O, allocates without bound or fails at request time: the only fallible
//! step, compiling the scrub patterns, happens when the config loads.

pub mod accept;
pub mod html;
pub mod ratelimit;
pub mod scrub;

use http::HeaderValue;

/// One of the built-in normalisations: its name (in `X-Candor-Rule`, `candor_rewrites_total`'s
/// `rule` label, `[[tests]]` expectations and the status page) and its place in the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// `[scrub]`: a 5xx body leaking internals becomes a problem document.
    Scrub,
    /// `[html_errors]`: an HTML error page for an API client becomes a problem document.
    HtmlErrors,
    /// `[retry_after]`: a missing `Retry-After` is added.
    RetryAfter,
}

impl Builtin {
    /// The order the built-ins run in, after the rules: a scrubbed body is no longer HTML, and
    /// `Retry-After` goes on whatever status the others left.
    pub const ORDER: [Builtin; 3] = [Builtin::Scrub, Builtin::HtmlErrors, Builtin::RetryAfter];

    /// The built-in's name.
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Scrub => "scrub",
            Builtin::HtmlErrors => "html-errors",
            Builtin::RetryAfter => "retry-after",
        }
    }

    /// The built-in called `name`, if one is.
    pub fn named(name: &str) -> Option<Builtin> {
        Builtin::ORDER.into_iter().find(|b| b.name() == name)
    }

    /// The name as a header value, made once (`X-Candor-Rule` copies a reference).
    pub fn header_value(self) -> &'static HeaderValue {
        static SCRUB: HeaderValue = HeaderValue::from_static("scrub");
        static HTML_ERRORS: HeaderValue = HeaderValue::from_static("html-errors");
        static RETRY_AFTER: HeaderValue = HeaderValue::from_static("retry-after");
        match self {
            Builtin::Scrub => &SCRUB,
            Builtin::HtmlErrors => &HTML_ERRORS,
            Builtin::RetryAfter => &RETRY_AFTER,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_header_values_match() {
        for builtin in Builtin::ORDER {
            assert_eq!(Builtin::named(builtin.name()), Some(builtin));
            assert_eq!(builtin.header_value(), builtin.name());
        }
        assert_eq!(Builtin::named("user-not-found"), None);
    }
}
