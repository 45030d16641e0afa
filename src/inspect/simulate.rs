//! Running the normaliser on a canned exchange, without sockets: what `candor explain` prints and
//! `candor test` checks. It takes the same steps as the layer (plan, decode, decide, apply), so
//! what it reports is what the proxy does.

use bytes::Bytes;
use http::header::{HeaderMap, ACCEPT};
use http::{Method, StatusCode};

use super::decode;
use super::normalize::{apply_head, BodyPlan, Normalizer, Outcome, Plan, RequestInfo};
use crate::config::cases::{BodyKind, Exchange, RuleTest};
use crate::proxy::hygiene::X_REQUEST_ID;
use crate::rules::ResponseView;

/// What candor would send for an [`Exchange`].
#[derive(Debug)]
pub struct Simulation<'a> {
    /// The decision.
    pub outcome: Outcome<'a>,
    /// The status sent.
    pub status: StatusCode,
    /// The headers sent (before hop-by-hop cleaning and the request id).
    pub headers: HeaderMap,
    /// The body sent.
    pub body: Bytes,
    /// What became of the body.
    pub body_kind: BodyKind,
}

/// Runs `exchange` through `normalizer`.
pub fn simulate<'a>(normalizer: &'a Normalizer, exchange: &Exchange) -> Simulation<'a> {
    let info = RequestInfo {
        method: exchange.method.clone(),
        uri: exchange.uri.clone(),
        accept: exchange.request_headers.get(ACCEPT).cloned(),
        request_id: exchange.request_headers.get(&X_REQUEST_ID).cloned(),
    };
    let body_may_exist = exchange.method != Method::HEAD
        && !matches!(
            exchange.status,
            StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
        )
        && !exchange.body.is_empty();
    let plan = normalizer.plan(
        &info,
        exchange.status,
        &exchange.response_headers,
        body_may_exist,
        exchange.body.len() as u64,
    );
    let limit = normalizer.config().inspect.max_body_bytes;
    let outcome = match plan {
        Plan::Pass => normalizer.decide(
            &info,
            exchange.status,
            &exchange.response_headers,
            None,
            None,
        ),
        Plan::Head(skipped) => normalizer.decide(
            &info,
            exchange.status,
            &exchange.response_headers,
            None,
            skipped,
        ),
        Plan::Inspect => {
            let (decoded, skipped) =
                decode::for_inspection(&exchange.response_headers, &exchange.body, limit);
            normalizer.decide(
                &info,
                exchange.status,
                &exchange.response_headers,
                decoded.as_deref(),
                skipped,
            )
        }
    };
    let mut status = exchange.status;
    let mut headers = exchange.response_headers.clone();
    let mut extensions = http::Extensions::new();
    let debug = normalizer.config().server.debug_headers;
    let plan = apply_head(
        &mut outcome.clone(),
        &mut status,
        &mut headers,
        &mut extensions,
        debug,
    );
    let (body, body_kind) = match plan {
        BodyPlan::Keep => (exchange.body.clone(), BodyKind::Keep),
        BodyPlan::Problem(bytes) => (bytes, BodyKind::Problem),
        BodyPlan::Empty => (Bytes::new(), BodyKind::Empty),
    };
    Simulation {
        outcome,
        status,
        headers,
        body,
        body_kind,
    }
}

/// Runs one `[[tests]]` entry; `Err` says what did not hold.
pub fn run_test(normalizer: &Normalizer, test: &RuleTest) -> Result<(), String> {
    let sim = simulate(normalizer, &test.exchange);
    let applied: Vec<&str> = sim.outcome.applied.iter().map(|a| a.rule).collect();
    let mut failures = Vec::new();
    if let Some(want) = &test.expect.rule {
        let ok = match want {
            None => applied.is_empty(),
            Some(rule) => applied.contains(&rule.as_str()),
        };
        if !ok {
            let want = want.as_deref().unwrap_or("none");
            let got = if applied.is_empty() {
                "none".to_owned()
            } else {
                applied.join(", ")
            };
            failures.push(format!("expected rule {want}, got {got}"));
        }
    }
    if let Some(want) = test.expect.status {
        if sim.status != want {
            failures.push(format!(
                "expected status {}, got {}",
                want.as_u16(),
                sim.status.as_u16()
            ));
        }
    }
    if let Some(want) = test.expect.body {
        if sim.body_kind != want {
            failures.push(format!(
                "expected body {}, got {}",
                want.as_str(),
                sim.body_kind.as_str()
            ));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// The per-rule traces of `exchange` (for `explain --verbose`), decoding the body like the layer.
pub fn traces(normalizer: &Normalizer, exchange: &Exchange) -> Vec<String> {
    let limit = normalizer.config().inspect.max_body_bytes;
    let (decoded, _) = decode::for_inspection(&exchange.response_headers, &exchange.body, limit);
    let body = decoded.filter(|b| b.len() <= limit);
    let view = ResponseView {
        method: &exchange.method,
        path: exchange.uri.path(),
        status: exchange.status,
        headers: &exchange.response_headers,
        body: body.as_deref(),
    };
    normalizer
        .config()
        .rules
        .explain(&view)
        .iter()
        .map(ToString::to_string)
        .collect()
}
