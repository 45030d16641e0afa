//! `candor audit --openapi`: the observed API as an OpenAPI 3.1 document (JSON): its routes,
//! methods, and the statuses candor sent (after its rules, `sent_statuses`), each with its
//! reason phrase and, where a finding's example shows it, the content type.
//!
//! Route templates become OpenAPI paths: each `{id}` segment is a path parameter, named `id`,
//! `id2`, … within one path (OpenAPI needs distinct names), and `{rest}` (a path deeper than
//! audit keeps) one named `rest`. A literal `{` or `}` is percent-encoded so it is not read as
//! a parameter. Routes folded into `{other}` and methods OpenAPI 3.1 has no field for
//! (`PROPFIND`, `CONNECT`) are left out.

use std::collections::{BTreeMap, BTreeSet};

use http::StatusCode;
use serde_json::{json, Map, Value};

use super::report::{Report, RouteReport};
use super::route::OTHER;

/// The OpenAPI version written.
pub const VERSION: &str = "3.1.0";

/// The `info.title` of every document.
pub const TITLE: &str = "observed by candor audit";

/// The operations a path item can hold in OpenAPI 3.1.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The OpenAPI document of `report`.
pub fn document(report: &Report) -> Value {
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for route in &report.routes {
        if route.route == OTHER {
            continue;
        }
        let method = route.method.to_ascii_lowercase();
        if !METHODS.contains(&method.as_str()) || route.method != route.method.to_ascii_uppercase()
        {
            continue;
        }
        let (path, parameters) = template(&route.route);
        let item = paths.entry(path).or_insert_with(|| {
            let mut item = Map::new();
            if !parameters.is_empty() {
                item.insert("parameters".into(), Value::Array(parameters));
            }
            item
        });
        item.insert(method, operation(route));
    }
    let version = if report.since.is_empty() {
        "unknown".to_owned()
    } else {
        report.since.clone()
    };
    json!({
        "openapi": VERSION,
        "info": {
            "title": TITLE,
            "version": version,
            "description": format!(
                "The routes, methods and statuses of {} exchanges candor's audit observed since {}.",
                report.exchanges, version
            ),
        },
        "paths": paths,
    })
}

/// An OpenAPI path and its path parameters, from a route template.
fn template(route: &str) -> (String, Vec<Value>) {
    let mut path = String::new();
    let mut parameters = Vec::new();
    let mut ids = 0;
    let segments: Vec<&str> = route.split('/').skip(1).collect();
    for (i, segment) in segments.iter().enumerate() {
        path.push('/');
        match *segment {
            "{id}" => {
                ids += 1;
                let name = if ids == 1 {
                    "id".to_owned()
                } else {
                    format!("id{ids}")
                };
                path.push_str(&format!("{{{name}}}"));
                parameters.push(json!({
                    "name": name,
                    "in": "path",
                    "required": true,
                    "schema": { "type": "string" },
                }));
            }
            "{rest}" if i + 1 == segments.len() => {
                path.push_str("{rest}");
                parameters.push(json!({
                    "name": "rest",
                    "in": "path",
                    "required": true,
                    "description": "the rest of a path deeper than audit keeps: one or more segments",
                    "schema": { "type": "string" },
                }));
            }
            literal => {
                path.push_str(&literal.replace('{', "%7B").replace('}', "%7D"));
            }
        }
    }
    if path.is_empty() {
        path.push('/');
    }
    (path, parameters)
}

/// One operation: the statuses sent, and how often the route was seen.
fn operation(route: &RouteReport) -> Value {
    let types = content_types(route);
    let mut responses = Map::new();
    for status in route.sent_statuses.keys() {
        if status == "other" {
            responses.insert(
                "default".into(),
                json!({ "description": "other statuses (past the most audit keeps per route)" }),
            );
            continue;
        }
        let reason = status
            .parse::<u16>()
            .ok()
            .and_then(|n| StatusCode::from_u16(n).ok())
            .and_then(|s| s.canonical_reason())
            .map_or_else(|| format!("status {status}"), str::to_owned);
        let mut response = Map::new();
        response.insert("description".into(), Value::String(reason));
        if let Some(types) = types.get(status) {
            let content: Map<String, Value> = types
                .iter()
                .map(|t| (t.clone(), Value::Object(Map::new())))
                .collect();
            response.insert("content".into(), Value::Object(content));
        }
        responses.insert(status.clone(), Value::Object(response));
    }
    let seen: u64 = route.sent_statuses.values().sum();
    let mut op = Map::new();
    let times = if seen == 1 {
        "once".to_owned()
    } else {
        format!("{seen} times")
    };
    op.insert(
        "description".into(),
        Value::String(format!("observed {times}")),
    );
    op.insert("responses".into(), Value::Object(responses));
    if route.upstream_statuses != route.sent_statuses {
        // What the upstream said before candor's rules: kept beside the honest statuses.
        op.insert(
            "x-candor-upstream-statuses".into(),
            json!(route.upstream_statuses),
        );
    }
    Value::Object(op)
}

/// The media types known per sent status: those of the examples of open findings (an open
/// finding's response was sent as the upstream gave it, with its status).
fn content_types(route: &RouteReport) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for finding in &route.findings {
        if finding.fixed > 0 {
            continue;
        }
        let Some(content_type) = &finding.example.content_type else {
            continue;
        };
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        // A media type is `type/subtype`; anything else is not a key OpenAPI can take.
        let valid = media.split_once('/').is_some_and(|(t, s)| {
            !t.is_empty()
                && !s.is_empty()
                && media
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/!#$&-^_.+".contains(&b))
        });
        if valid {
            out.entry(finding.example.status.to_string())
                .or_default()
                .insert(media);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::report::{Evidence, Example, FindingReport};
    use crate::audit::Kind;

    fn route(method: &str, template: &str, sent: &[(&str, u64)]) -> RouteReport {
        let sent: BTreeMap<String, u64> = sent.iter().map(|(s, n)| (s.to_string(), *n)).collect();
        RouteReport {
            method: method.into(),
            route: template.into(),
            path_regex: "^/$".into(),
            sample_path: "/".into(),
            upstream_statuses: sent.clone(),
            sent_statuses: sent,
            honest: Vec::new(),
            findings: Vec::new(),
        }
    }

    #[test]
    fn paths_parameters_and_responses() {
        let mut users = route("GET", "/users/{id}", &[("200", 3), ("404", 1)]);
        users.findings.push(FindingReport {
            kind: Kind::ErrorInSuccess,
            count: 2,
            fixed: 0,
            first_seen: String::new(),
            last_seen: String::new(),
            evidence: Evidence::default(),
            example: Example {
                status: 200,
                content_type: Some("application/json; charset=utf-8".into()),
                ..Example::default()
            },
            proposal: None,
        });
        let mut orders = route("DELETE", "/users/{id}/orders/{id}", &[("204", 1)]);
        orders.upstream_statuses = [("200".to_owned(), 1)].into();
        let report = Report {
            since: "2026-12-07T10:00:00Z".into(),
            exchanges: 5,
            routes: vec![
                users,
                route("POST", "/users/{id}", &[("201", 1), ("other", 2)]),
                orders,
                route("PROPFIND", "/dav", &[("207", 1)]),
                route("GET", OTHER, &[("200", 1)]),
                route("GET", "/", &[("599", 1)]),
                route("GET", "/a{b}/{rest}", &[("200", 1)]),
            ],
            ..Report::default()
        };
        let doc = document(&report);
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["title"], "observed by candor audit");
        assert_eq!(doc["info"]["version"], "2026-12-07T10:00:00Z");
        let paths = doc["paths"].as_object().unwrap();
        let keys: Vec<&str> = paths.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "/",
                "/a%7Bb%7D/{rest}",
                "/users/{id}",
                "/users/{id}/orders/{id2}"
            ]
        );
        let users = &paths["/users/{id}"];
        assert_eq!(users["parameters"][0]["name"], "id");
        assert_eq!(users["parameters"][0]["in"], "path");
        assert_eq!(users["parameters"][0]["required"], true);
        assert_eq!(users["get"]["responses"]["200"]["description"], "OK");
        assert_eq!(
            users["get"]["responses"]["200"]["content"],
            json!({ "application/json": {} })
        );
        assert_eq!(users["get"]["responses"]["404"]["description"], "Not Found");
        assert!(users["get"]["responses"]["404"].get("content").is_none());
        assert_eq!(users["post"]["responses"]["201"]["description"], "Created");
        assert!(users["post"]["responses"]["default"]["description"].is_string());
        let orders = &paths["/users/{id}/orders/{id2}"];
        let names: Vec<&Value> = orders["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| &p["name"])
            .collect();
        assert_eq!(names, ["id", "id2"]);
        assert_eq!(
            orders["delete"]["x-candor-upstream-statuses"],
            json!({ "200": 1 })
        );
        assert_eq!(
            paths["/"]["get"]["responses"]["599"]["description"],
            "status 599"
        );
        assert_eq!(paths["/a%7Bb%7D/{rest}"]["parameters"][0]["name"], "rest");
    }

    #[test]
    fn an_empty_report_is_a_document_without_paths() {
        let doc = document(&Report::default());
        assert_eq!(doc["info"]["version"], "unknown");
        assert_eq!(doc["paths"], json!({}));
    }
}
