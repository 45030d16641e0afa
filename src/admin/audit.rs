//! `/audit.json` and `/audit` on the admin listener: `GET /audit.json` answers what audit found
//! (`crate::audit::Report`, with proposals, and `enabled`), `DELETE /audit` forgets it.
//!
//! The report is answered whether audit is on or off: off, it is what was found while it was on
//! (nothing, if it never was) with `"enabled": false`, so a script reading it needs no second
//! endpoint to tell "no lies" from "not looking". `DELETE` is a write, guarded as
//! `PUT /maintenance` is (`guard.rs`); it answers 204.

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use super::guard;
use crate::audit::{Audit, Report};
use crate::config::Config;
use crate::problem::Problem;

/// The body of `GET /audit.json`: the report, and whether the proxy observes its traffic now.
#[derive(Serialize)]
struct Answer<'a> {
    enabled: bool,
    #[serde(flatten)]
    report: &'a Report,
}

/// Answers `GET`/`HEAD /audit.json`.
pub(super) fn report<B>(req: &Request<B>, audit: &Audit) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return not_allowed("/audit.json takes GET and HEAD.", "GET, HEAD");
    }
    let report = audit.report();
    let answer = Answer {
        enabled: audit.enabled(),
        report: &report,
    };
    // Strings, numbers, lists and maps with string keys: serialising cannot fail.
    let body = serde_json::to_vec(&answer).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Answers a request for `/audit` from `peer`: `DELETE` resets the table, under the live
/// `config`'s token.
pub(super) fn reset<B>(
    req: &Request<B>,
    peer: IpAddr,
    config: &Config,
    audit: &Audit,
) -> Response<Full<Bytes>> {
    if req.method() != Method::DELETE {
        return not_allowed(
            "/audit takes DELETE (the report is at /audit.json).",
            "DELETE",
        );
    }
    if let Err(denied) = guard::authorize(config.server.admin_token.as_ref(), req.headers(), peer) {
        tracing::warn!(%peer, ?denied, "audit reset refused");
        let mut response = problem(denied.status(), denied.detail());
        denied.challenge(&mut response);
        return response;
    }
    audit.reset();
    tracing::info!(%peer, "audit findings reset through the admin API");
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

fn not_allowed(detail: &str, allow: &'static str) -> Response<Full<Bytes>> {
    let mut response = problem(StatusCode::METHOD_NOT_ALLOWED, detail);
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

fn problem(status: StatusCode, detail: &str) -> Response<Full<Bytes>> {
    Problem::new(status)
        .detail(detail)
        .instance("/audit")
        .into_response()
}
