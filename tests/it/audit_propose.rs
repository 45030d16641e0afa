//! Audit's detectors and proposals, without a proxy: every finding kind is found on the route
//! that shows it and nowhere else, and the proposed rules, appended to a config, pass `check`
//! and their own `[[tests]]`, and answer exchanges that were never observed honestly.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;

use candor::audit::{self, propose, Audit, Body, Exchange, Kind, RequestSigns, Response};
use candor::builtin::scrub::Scrubber;
use candor::config;
use candor::inspect::simulate;
use candor::inspect::Normalizer;
use http::{HeaderMap, HeaderValue, Method, StatusCode};

const BASE: &str = r#"
[upstream]
url = "http://127.0.0.1:9"
[html_errors]
enabled = false
[scrub]
enabled = false
[retry_after]
statuses = []
"#;

/// One canned exchange.
struct Canned {
    method: &'static str,
    path: &'static str,
    request: &'static [(&'static str, &'static str)],
    status: u16,
    content_type: Option<&'static str>,
    body: &'static str,
}

const fn ex(
    method: &'static str,
    path: &'static str,
    status: u16,
    content_type: Option<&'static str>,
    body: &'static str,
) -> Canned {
    Canned {
        method,
        path,
        request: &[],
        status,
        content_type,
        body,
    }
}

const JSON: Option<&str> = Some("application/json");
const HTML: Option<&str> = Some("text/html; charset=utf-8");

/// The lies, each on its own route, and honest responses on others.
fn traffic() -> Vec<Canned> {
    vec![
        ex(
            "GET",
            "/users/7",
            200,
            JSON,
            r#"{"status":"error","message":"user not found"}"#,
        ),
        ex(
            "GET",
            "/users/8",
            200,
            JSON,
            r#"{"status":"error","message":"user not found"}"#,
        ),
        ex(
            "GET",
            "/users/1",
            200,
            JSON,
            r#"{"status":"ok","data":{"id":1,"name":"ann"}}"#,
        ),
        ex(
            "GET",
            "/orders/5",
            200,
            JSON,
            r#"{"code":404,"message":"order missing"}"#,
        ),
        ex("GET", "/profiles/3", 200, JSON, r#"{"data":null}"#),
        ex("POST", "/accounts", 200, JSON, r#"{"id":77,"name":"new"}"#),
        ex("DELETE", "/sessions/12", 200, None, ""),
        ex("PUT", "/settings", 200, None, ""),
        Canned {
            request: &[("accept", "application/json")],
            ..ex(
                "GET",
                "/legacy/page",
                404,
                HTML,
                "<html><body><h1>Not Found</h1></body></html>",
            )
        },
        ex(
            "GET",
            "/promo",
            200,
            HTML,
            "<html><head><title>Page Not Found</title></head></html>",
        ),
        ex(
            "GET",
            "/crash",
            502,
            Some("text/plain"),
            "Traceback (most recent call last):\n  File \"/srv/app/views.py\", line 12, in index\n",
        ),
        Canned {
            request: &[("content-type", "application/json")],
            ..ex(
                "POST",
                "/signup",
                500,
                JSON,
                r#"{"error":"email is required"}"#,
            )
        },
        ex(
            "GET",
            "/inventory",
            500,
            JSON,
            r#"{"error":"database connection refused"}"#,
        ),
        ex("GET", "/busy", 503, Some("text/plain"), "busy"),
        ex("GET", "/admin/stats", 403, JSON, r#"{"error":"forbidden"}"#),
        ex("DELETE", "/items/3", 405, None, ""),
        ex("GET", "/items/4", 200, JSON, r#"{"id":4,"name":"pen"}"#),
        // Honest routes: nothing may be found on them.
        ex("GET", "/healthz", 200, Some("text/plain"), "ok"),
        ex(
            "GET",
            "/catalog",
            200,
            JSON,
            r#"{"items":[{"id":1}],"errors":[],"success":true}"#,
        ),
        ex("POST", "/carts/9/items", 201, JSON, r#"{"id":5}"#),
        ex(
            "GET",
            "/missing",
            404,
            Some("application/problem+json"),
            r#"{"title":"Not Found","status":404}"#,
        ),
        Canned {
            request: &[("authorization", "Bearer abc")],
            ..ex("GET", "/admin/users", 403, JSON, r#"{"error":"forbidden"}"#)
        },
        Canned {
            request: &[("accept", "text/html")],
            ..ex(
                "GET",
                "/legacy/home",
                404,
                HTML,
                "<html><h1>Not Found</h1></html>",
            )
        },
        ex("DELETE", "/carts/9", 204, None, ""),
    ]
}

fn record(audit: &Audit, scrubber: &Scrubber, canned: &Canned) {
    let mut request = HeaderMap::new();
    for (name, value) in canned.request {
        request.insert(*name, HeaderValue::from_static(value));
    }
    let mut headers = HeaderMap::new();
    if let Some(ct) = canned.content_type {
        headers.insert("content-type", HeaderValue::from_static(ct));
    }
    let signs = RequestSigns::of(&request);
    let method = Method::from_bytes(canned.method.as_bytes()).unwrap();
    audit.record(
        &Exchange {
            method: &method,
            path: canned.path,
            request: &signs,
            upstream: Response {
                status: StatusCode::from_u16(canned.status).unwrap(),
                headers: &candor::audit::Heads::of(&headers),
                body: Body::Complete(canned.body.as_bytes()),
            },
            sent: None,
            at: SystemTime::now(),
        },
        scrubber,
    );
}

fn observed() -> audit::Report {
    let audit = Audit::new(&audit::Settings {
        enabled: true,
        ..Default::default()
    });
    let scrubber = Scrubber::new(&[]).unwrap();
    for canned in traffic() {
        record(&audit, &scrubber, &canned);
    }
    audit.report()
}

fn found(report: &audit::Report) -> BTreeSet<(String, String, Kind)> {
    report
        .routes
        .iter()
        .flat_map(|r| {
            r.findings
                .iter()
                .map(|f| (r.method.clone(), r.route.clone(), f.kind))
        })
        .collect()
}

#[test]
fn every_kind_is_found_where_it_is_shown_and_nowhere_else() {
    let report = observed();
    let found = found(&report);
    let expected: BTreeSet<(String, String, Kind)> = [
        ("GET", "/users/{id}", Kind::ErrorInSuccess),
        ("GET", "/orders/{id}", Kind::StatusInBody),
        ("GET", "/profiles/{id}", Kind::NullEntity),
        ("POST", "/accounts", Kind::CreatedAs200),
        ("DELETE", "/sessions/{id}", Kind::EmptyDelete200),
        ("PUT", "/settings", Kind::Empty200),
        ("GET", "/legacy/page", Kind::HtmlToApiClient),
        ("GET", "/promo", Kind::SoftErrorPage),
        ("GET", "/crash", Kind::LeakedInternals),
        ("POST", "/signup", Kind::ValidationAs500),
        ("GET", "/inventory", Kind::DependencyAs500),
        ("GET", "/busy", Kind::MissingRetryAfter),
        ("GET", "/admin/stats", Kind::ForbiddenWithoutCredentials),
        ("DELETE", "/items/{id}", Kind::MethodNotAllowedWithoutAllow),
    ]
    .into_iter()
    .map(|(m, r, k)| (m.to_owned(), r.to_owned(), k))
    .collect();
    assert_eq!(found, expected, "report: {report:#?}");
    let kinds: BTreeSet<Kind> = found.iter().map(|(_, _, k)| *k).collect();
    assert_eq!(kinds.len(), Kind::ALL.len(), "every kind is covered");
    let users = report
        .routes
        .iter()
        .find(|r| r.route == "/users/{id}")
        .unwrap();
    assert_eq!(users.findings[0].count, 2);
    assert_eq!(users.upstream_statuses["200"], 3);
}

fn config_with(proposals: &str) -> config::Config {
    let text = format!("{BASE}\n{proposals}");
    config::from_toml(&text, "proposed.toml", Default::default())
        .unwrap_or_else(|e| panic!("check refused the proposals:\n{e}\n{text}"))
}

#[test]
fn shadow_proposals_pass_check_and_their_tests() {
    let mut report = observed();
    propose::annotate(&mut report, false);
    let text = propose::rules(&report);
    assert!(!text.contains("mode = \"enforce\""), "{text}");
    let config = config_with(&text);
    let normalizer = Arc::new(Normalizer::new(Arc::new(config.clone())));
    assert!(config.tests.len() >= 11, "{text}");
    for test in &config.tests {
        simulate::run_test(&normalizer, test)
            .unwrap_or_else(|e| panic!("{}: {e}\n{text}", test.name));
    }
}

/// Exchanges never observed: other ids, other bodies of the same shape, and the honest routes.
fn unseen() -> Vec<(Canned, u16)> {
    vec![
        (
            ex(
                "GET",
                "/users/991",
                200,
                JSON,
                r#"{"status":"error","message":"no such user: 991"}"#,
            ),
            404,
        ),
        (
            ex(
                "GET",
                "/users/992",
                200,
                JSON,
                r#"{"status":"ok","data":{"id":992}}"#,
            ),
            200,
        ),
        (
            ex(
                "GET",
                "/orders/77",
                200,
                JSON,
                r#"{"code":410,"message":"order archived"}"#,
            ),
            410,
        ),
        (ex("GET", "/profiles/9", 200, JSON, r#"{"data":null}"#), 404),
        (
            ex(
                "POST",
                "/accounts",
                200,
                JSON,
                r#"{"id":"a-9","name":"other"}"#,
            ),
            201,
        ),
        (ex("DELETE", "/sessions/99", 200, None, ""), 204),
        (
            ex(
                "GET",
                "/promo",
                200,
                HTML,
                "<html><title>404 page not found</title></html>",
            ),
            404,
        ),
        (
            Canned {
                request: &[("content-type", "application/json")],
                ..ex(
                    "POST",
                    "/signup",
                    500,
                    JSON,
                    r#"{"error":"password must be 8 characters"}"#,
                )
            },
            422,
        ),
        (
            ex(
                "GET",
                "/inventory",
                500,
                JSON,
                r#"{"error":"upstream timed out"}"#,
            ),
            503,
        ),
        (
            ex("GET", "/admin/stats", 403, JSON, r#"{"error":"nope"}"#),
            401,
        ),
        (
            Canned {
                request: &[("cookie", "sid=1")],
                ..ex("GET", "/admin/stats", 403, JSON, r#"{"error":"nope"}"#)
            },
            403,
        ),
        (
            ex(
                "GET",
                "/catalog",
                200,
                JSON,
                r#"{"items":[],"errors":[],"success":true}"#,
            ),
            200,
        ),
        (ex("POST", "/carts/3/items", 201, JSON, r#"{"id":6}"#), 201),
    ]
}

#[test]
fn enforced_proposals_answer_unseen_exchanges_honestly() {
    let mut report = observed();
    propose::annotate(&mut report, true);
    let text = propose::rules(&report);
    if std::env::var_os("AUDIT_SHOW").is_some() {
        println!("{text}");
    }
    let config = config_with(&text);
    let normalizer = Arc::new(Normalizer::new(Arc::new(config.clone())));
    for test in &config.tests {
        simulate::run_test(&normalizer, test)
            .unwrap_or_else(|e| panic!("{}: {e}\n{text}", test.name));
    }
    for (canned, want) in unseen() {
        let mut request_headers = HeaderMap::new();
        for (name, value) in canned.request {
            request_headers.insert(*name, HeaderValue::from_static(value));
        }
        let mut response_headers = HeaderMap::new();
        if let Some(ct) = canned.content_type {
            response_headers.insert("content-type", HeaderValue::from_static(ct));
        }
        let exchange = config::cases::Exchange {
            method: Method::from_bytes(canned.method.as_bytes()).unwrap(),
            uri: canned.path.parse().unwrap(),
            request_headers,
            status: StatusCode::from_u16(canned.status).unwrap(),
            response_headers,
            body: bytes::Bytes::from_static(canned.body.as_bytes()),
        };
        let sim = simulate::simulate(&normalizer, &exchange);
        assert_eq!(
            sim.status.as_u16(),
            want,
            "{} {} {}: {:?}\n{text}",
            canned.method,
            canned.path,
            canned.body,
            sim.report
        );
        if canned.path == "/accounts" {
            assert_eq!(sim.headers["location"], "/accounts/a-9");
        }
        if want == canned.status && canned.status < 300 {
            assert!(sim.report.applied.is_empty(), "{:?}", sim.report);
        }
    }
}

#[test]
fn fixed_findings_are_not_proposed_again() {
    let audit = Audit::new(&audit::Settings {
        enabled: true,
        ..Default::default()
    });
    let scrubber = Scrubber::new(&[]).unwrap();
    let signs = RequestSigns::default();
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let problem = HeaderMap::new();
    let body = br#"{"status":"error","message":"user not found"}"#;
    audit.record(
        &Exchange {
            method: &Method::GET,
            path: "/users/7",
            request: &signs,
            upstream: Response {
                status: StatusCode::OK,
                headers: &candor::audit::Heads::of(&headers),
                body: Body::Complete(body),
            },
            sent: Some(Response {
                status: StatusCode::NOT_FOUND,
                headers: &candor::audit::Heads::of(&problem),
                body: Body::Complete(br#"{"title":"Not Found","status":404}"#),
            }),
            at: SystemTime::now(),
        },
        &scrubber,
    );
    let report = audit.report();
    let finding = &report.routes[0].findings[0];
    assert_eq!((finding.count, finding.fixed), (1, 1));
    assert!(finding.proposal.is_none());
}
