//! The failure table and the ladder, without a service around them (the layer is tested in
//! `tests/it/layers.rs`).

use super::*;

fn failures() -> Failures {
    Failures {
        connect: StatusCode::BAD_GATEWAY,
        timeout: StatusCode::GATEWAY_TIMEOUT,
        retry_after: Duration::from_millis(4500),
    }
}

#[test]
fn status_table() {
    let cfg = failures();
    use FailureKind as K;
    let cases = [
        (Failure::Refused, 502, Some(K::Connect)),
        (Failure::Unreachable, 502, Some(K::Connect)),
        (Failure::Dns, 502, Some(K::Connect)),
        (Failure::ConnectTimeout, 504, Some(K::ConnectTimeout)),
        (Failure::ResponseTimeout, 504, Some(K::Timeout)),
        (Failure::Reset, 502, Some(K::Reset)),
        (Failure::Protocol, 502, Some(K::Protocol)),
        (Failure::Incomplete, 502, Some(K::Incomplete)),
        (Failure::ClientBody, 400, None),
        (Failure::RequestTooLarge, 413, None),
        (Failure::ClientTimeout, 408, None),
        (Failure::Refusal(Refusal::Connect), 405, None),
        (Failure::Refusal(Refusal::BodyTooLarge), 413, None),
        (Failure::Refusal(Refusal::MissingHost), 400, None),
        (Failure::OverCapacity, 503, None),
        (Failure::Shed, 503, Some(K::Shed)),
        (Failure::Other, 502, Some(K::Other)),
    ];
    for (failure, status, kind) in cases {
        assert_eq!(failure.status(&cfg), status, "{failure:?}");
        assert_eq!(failure.kind(), kind, "{failure:?}");
        let r: Response<Bytes> = failure.respond(&cfg, "/x", None);
        match failure.proxy_status_error() {
            Some(error) => assert_eq!(
                r.headers()[&PROXY_STATUS],
                format!("candor; error={error}").as_str()
            ),
            None => assert!(r.headers().get(&PROXY_STATUS).is_none()),
        }
    }
}

#[test]
fn every_503_carries_retry_after_rounded_up() {
    let mut cfg = failures();
    cfg.connect = StatusCode::SERVICE_UNAVAILABLE;
    let r: Response<Bytes> = Failure::Refused.respond(&cfg, "/", None);
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()[RETRY_AFTER], "5");
    let r: Response<Bytes> = Failure::ResponseTimeout.respond(&cfg, "/", None);
    assert!(r.headers().get(RETRY_AFTER).is_none());
    let r: Response<Bytes> = Failure::OverCapacity.respond(&cfg, "/", None);
    assert_eq!(r.headers()[RETRY_AFTER], "1");
    let r: Response<Bytes> = Failure::Shed.respond(&cfg, "/", None);
    assert_eq!(r.headers()[RETRY_AFTER], "5", "failures.retry_after");
    assert_eq!(
        r.headers()[&PROXY_STATUS],
        "candor; error=connection_limit_reached"
    );
}

#[test]
fn refusals_close_and_a_refused_connect_lists_the_methods() {
    let cfg = failures();
    let r: Response<Bytes> = Failure::Refusal(Refusal::Connect).respond(&cfg, "/", None);
    assert_eq!(r.headers()[CONNECTION], "close");
    assert!(r.headers()[ALLOW].to_str().unwrap().contains("GET"));
    let r: Response<Bytes> = Failure::Refusal(Refusal::DuplicateHost).respond(&cfg, "/", None);
    assert_eq!(r.headers()[CONNECTION], "close");
    assert!(r.headers().get(ALLOW).is_none());
}

#[test]
fn the_over_capacity_answer_is_well_framed() {
    let text = std::str::from_utf8(over_capacity()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{head}"
    );
    assert!(head.contains(&format!("content-length: {}", body.len())));
    assert!(head.contains("retry-after: 1\r\n"), "{head}");
    assert!(head.contains("proxy-status: candor; error=connection_limit_reached\r\n"));
    assert!(head.contains("connection: close\r\n"));
    let doc: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(doc["status"], 503);
    assert_eq!(doc["detail"], "Too many connections; retry shortly.");
    assert!(doc.get("instance").is_none(), "{doc}");
}

#[test]
fn classify_reads_typed_causes() {
    let refused: BoxError = Box::new(UpstreamError::Connect(io::Error::from(
        io::ErrorKind::ConnectionRefused,
    )));
    assert_eq!(classify(&refused), Failure::Refused);
    let unreachable: BoxError = Box::new(UpstreamError::Connect(io::Error::from(
        io::ErrorKind::HostUnreachable,
    )));
    assert_eq!(classify(&unreachable), Failure::Unreachable);
    let timeout: BoxError = Box::new(UpstreamError::ConnectTimeout);
    assert_eq!(classify(&timeout), Failure::ConnectTimeout);
    let unasked: BoxError = Box::new(UpstreamError::UnaskedUpgrade);
    assert_eq!(classify(&unasked), Failure::Protocol);
    let elapsed: BoxError = Box::new(tower::timeout::error::Elapsed::new());
    assert_eq!(classify(&elapsed), Failure::ResponseTimeout);
    let other: BoxError = "something new".into();
    assert_eq!(classify(&other), Failure::Other);
    let stalled: BoxError = Box::new(BodyError::Idle {
        side: Side::Response,
        idle: Duration::from_secs(1),
    });
    assert_eq!(classify(&stalled), Failure::ResponseTimeout);
    let too_large: BoxError = Box::new(BodyError::TooLarge { limit: 1 });
    assert_eq!(classify(&too_large), Failure::RequestTooLarge);
    let cut: BoxError = Box::new(InspectError::Body("reset".into()));
    assert_eq!(classify(&cut), Failure::Incomplete);
    let stalled_inspection: BoxError = Box::new(InspectError::Body(Box::new(BodyError::Idle {
        side: Side::Response,
        idle: Duration::from_secs(1),
    })));
    assert_eq!(classify(&stalled_inspection), Failure::ResponseTimeout);
}

#[test]
fn the_maintenance_answer_is_a_503_problem_with_the_states_retry_after() {
    let file = crate::config::Maintenance {
        enabled: true,
        retry_after: Duration::from_millis(599_500),
        detail: crate::config::MaintenanceDetail::parse("Back at 14:00 UTC.").unwrap(),
        except_paths: Vec::new(),
    };
    let switch = crate::maintenance::Switch::new(&file);
    let id = HeaderValue::from_static("req-1");
    let r: Response<Bytes> = maintenance(&switch.state(), "/users/7", Some(&id));
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()[RETRY_AFTER], "600");
    assert_eq!(r.headers()[http::header::CACHE_CONTROL], "no-store");
    assert_eq!(
        r.headers()[http::header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert!(r.headers().get(&PROXY_STATUS).is_none());
    let doc: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
    assert_eq!(doc["status"], 503);
    assert_eq!(doc["detail"], "Back at 14:00 UTC.");
    assert_eq!(doc["instance"], "/users/7");
    assert_eq!(doc["request_id"], "req-1");
}
