//! Building blocks of candor's three built-in normalisations, each a pure function of bytes and
//! headers that the normalize layer calls once it has inspected a response:
//!
//! | built-in | what it does | pieces here |
//! | --- | --- | --- |
//! | `[html_errors]` | an upstream 4xx/5xx HTML page becomes `application/problem+json`, unless the request prefers HTML (a browser navigation) | [`accept::prefers_html`], [`html::is_html`], [`html::detail`] |
//! | `[retry_after]` | a rate-limited or unavailable response without `Retry-After` gets one | [`ratelimit::retry_after_from_reset`], [`ratelimit::header_value`] |
//! | `[scrub]` | a 5xx body showing internals (stack traces, paths, SQL, private addresses) is replaced by a problem document and logged | [`scrub::Scrubber`], [`scrub::excerpt`] |
//!
//! Nothing here does I/O, allocates without bound or fails at request time: the only fallible
//! step, compiling the scrub patterns, happens when the config loads (STYLE.md, *Errors*).

pub mod accept;
pub mod html;
pub mod ratelimit;
pub mod scrub;
