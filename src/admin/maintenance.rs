//! `/maintenance` on the admin listener: `GET` shows the live state, `PUT` changes it.
//!
//! `PUT` takes `{"enabled": true, "retry_after": "10m", "detail": "…"}`: `enabled` is required,
//! `retry_after` and `detail` are optional (absent: the config file's), unknown fields are
//! refused, and both values are checked as the file's are. Both methods answer with the state
//! as `crate::maintenance::View` (200, JSON); a refused request gets a problem document saying
//! why (400, 401, 403, 405, 408, 413, 415). Writes are guarded (`guard.rs`).

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Deserialize;

use super::guard;
use crate::config::{self, Config, MaintenanceDetail};
use crate::maintenance::{Change, Switch};
use crate::problem::Problem;

/// Largest `PUT` body: the three fields fit in well under 1 KiB.
pub(super) const MAX_BODY: usize = 16 * 1024;
/// How long a client may take to send the body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The `PUT` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Put {
    enabled: bool,
    #[serde(default)]
    retry_after: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

/// Answers a request for `/maintenance` from `peer`, under the live `config`.
pub(super) async fn handle(
    req: Request<Incoming>,
    peer: IpAddr,
    config: &Config,
    switch: &Switch,
) -> Response<Full<Bytes>> {
    match *req.method() {
        Method::GET | Method::HEAD => state(switch),
        Method::PUT => match put(req, peer, config, switch).await {
            Ok(response) => response,
            Err(refused) => refused,
        },
        _ => {
            let mut response = problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "/maintenance takes GET, HEAD and PUT.",
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD, PUT"));
            response
        }
    }
}

fn state(switch: &Switch) -> Response<Full<Bytes>> {
    // A view of strings, numbers and lists: serialising cannot fail.
    let body = serde_json::to_vec(&switch.state().view()).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn put(
    req: Request<Incoming>,
    peer: IpAddr,
    config: &Config,
    switch: &Switch,
) -> Result<Response<Full<Bytes>>, Response<Full<Bytes>>> {
    if let Err(denied) = guard::authorize(config.server.admin_token.as_ref(), req.headers(), peer) {
        tracing::warn!(%peer, ?denied, "maintenance change refused");
        let mut response = problem(denied.status(), denied.detail());
        denied.challenge(&mut response);
        return Err(response);
    }
    if let Some(value) = req.headers().get(CONTENT_TYPE) {
        let media = value
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim();
        if !media.eq_ignore_ascii_case("application/json") {
            return Err(problem(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "The body must be JSON (Content-Type: application/json).",
            ));
        }
    }
    let too_large = || {
        problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "The body is larger than 16 KiB.",
        )
    };
    // A declared length over the limit is refused before reading; a chunked one is cut.
    if req.body().size_hint().lower() > MAX_BODY as u64 {
        return Err(too_large());
    }
    let body = match tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(req.into_body(), MAX_BODY).collect(),
    )
    .await
    {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Ok(Err(_)) => {
            return Err(problem(
                StatusCode::BAD_REQUEST,
                "The body could not be read.",
            ))
        }
        Err(_) => {
            return Err(problem(
                StatusCode::REQUEST_TIMEOUT,
                "The body did not arrive in time.",
            ))
        }
    };
    let change = parse(&body).map_err(|message| problem(StatusCode::BAD_REQUEST, &message))?;
    let state = switch.set(&config.maintenance, change);
    tracing::info!(
        enabled = state.enabled,
        retry_after = ?state.retry_after,
        %peer,
        "maintenance mode switched through the admin API"
    );
    Ok(self::state(switch))
}

/// Reads and checks a `PUT` body; the error is the message for the client.
fn parse(body: &[u8]) -> Result<Change, String> {
    let put: Put = serde_json::from_slice(body).map_err(|err| {
        format!(
            "The body is not a maintenance change ({err}); expected e.g. \
             {{\"enabled\": true, \"retry_after\": \"10m\", \"detail\": \"…\"}}."
        )
    })?;
    let retry_after = match put.retry_after {
        Some(text) => Some(
            config::maintenance::retry_after(&text)
                .map_err(|why| format!("retry_after {text:?}: {why}"))?,
        ),
        None => None,
    };
    let detail = match put.detail {
        Some(text) => {
            Some(MaintenanceDetail::parse(&text).map_err(|why| format!("detail: {why}"))?)
        }
        None => None,
    };
    Ok(Change {
        enabled: put.enabled,
        retry_after,
        detail,
    })
}

fn problem(status: StatusCode, detail: &str) -> Response<Full<Bytes>> {
    Problem::new(status)
        .detail(detail)
        .instance("/maintenance")
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_bodies_are_checked_as_the_config_is() {
        let ok =
            parse(br#"{"enabled": true, "retry_after": "10m", "detail": "Back soon."}"#).unwrap();
        assert!(ok.enabled);
        assert_eq!(ok.retry_after, Some(Duration::from_secs(600)));
        assert_eq!(
            ok.detail.map(|d| d.to_string()).as_deref(),
            Some("Back soon.")
        );
        let bare = parse(br#"{"enabled": false}"#).unwrap();
        assert!(!bare.enabled && bare.retry_after.is_none() && bare.detail.is_none());

        for (body, want) in [
            (&br#"{"retry_after": "10m"}"#[..], "missing field `enabled`"),
            (br#"{"enabled": "yes"}"#, "invalid type"),
            (br#"{"enabled": true, "extra": 1}"#, "unknown field `extra`"),
            (br#"not json"#, "expected e.g."),
            (
                br#"{"enabled": true, "retry_after": "soon"}"#,
                "retry_after \"soon\": invalid duration",
            ),
            (
                br#"{"enabled": true, "retry_after": "48h"}"#,
                "must be at most 24h",
            ),
            (
                br#"{"enabled": true, "detail": ""}"#,
                "detail: must not be empty",
            ),
            (
                br#"{"enabled": true, "detail": "a\nb"}"#,
                "detail: must not contain control characters",
            ),
        ] {
            let err = parse(body)
                .err()
                .unwrap_or_else(|| panic!("{body:?} accepted"));
            assert!(err.contains(want), "{err}");
        }
    }
}
