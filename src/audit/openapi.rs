//! `candor audit --openapi`: an OpenAPI 3.1 document of the observed routes, methods and the
//! status codes candor sent (after its rules): the list of expected status codes per endpoint
//! that API documentation owes its clients.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::report::Report;
use super::route::OTHER;

/// The document, as JSON.
pub fn document(report: &Report) -> Value {
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for route in &report.routes {
        if route.route == OTHER {
            continue;
        }
        let (path, parameters) = openapi_path(&route.route);
        let mut responses = Map::new();
        for (status, count) in &route.sent_statuses {
            let Ok(code) = status.parse::<u16>() else {
                continue;
            };
            let reason = http::StatusCode::from_u16(code)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Observed");
            let mut response = json!({
                "description": format!("{reason} (observed {count} times)"),
            });
            if let Some(media) = content_type(route, code) {
                response["content"] = json!({ media: {} });
            }
            responses.insert(status.clone(), response);
        }
        if responses.is_empty() {
            continue;
        }
        let mut operation = json!({ "responses": responses });
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(
                parameters
                    .iter()
                    .map(|name| {
                        json!({ "name": name, "in": "path", "required": true,
                                "schema": { "type": "string" } })
                    })
                    .collect(),
            );
        }
        paths
            .entry(path)
            .or_default()
            .insert(route.method.to_ascii_lowercase(), operation);
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "observed by candor audit", "version": report.since },
        "paths": paths,
    })
}

/// `/users/{id}/posts/{id}` → `/users/{id}/posts/{id2}` and its parameter names.
fn openapi_path(route: &str) -> (String, Vec<String>) {
    let mut names = Vec::new();
    let mut out = String::new();
    for (i, segment) in route.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if segment == "{id}" || segment == "{rest}" {
            let base = &segment[1..segment.len() - 1];
            let n = names
                .iter()
                .filter(|n: &&String| n.starts_with(base))
                .count();
            let name = if n == 0 {
                base.to_owned()
            } else {
                format!("{base}{}", n + 1)
            };
            out.push('{');
            out.push_str(&name);
            out.push('}');
            names.push(name);
        } else {
            // Braces are OpenAPI's; a literal one in a path would read as a parameter.
            out.push_str(&segment.replace('{', "%7B").replace('}', "%7D"));
        }
    }
    (out, names)
}

/// The media type of a status on a route, when an example shows it.
fn content_type(route: &super::report::RouteReport, status: u16) -> Option<String> {
    route
        .findings
        .iter()
        .filter(|f| f.example.status == status)
        .find_map(|f| f.example.content_type.as_deref())
        .map(|ct| ct.split(';').next().unwrap_or(ct).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::report::RouteReport;

    #[test]
    fn routes_become_paths_with_parameters_and_sent_statuses() {
        let report = Report {
            since: "2026-12-07T10:00:00Z".into(),
            routes: vec![
                RouteReport {
                    method: "GET".into(),
                    route: "/users/{id}/posts/{id}".into(),
                    sent_statuses: [("200".to_owned(), 3), ("404".to_owned(), 2)].into(),
                    ..Default::default()
                },
                RouteReport {
                    method: "DELETE".into(),
                    route: "/users/{id}/posts/{id}".into(),
                    sent_statuses: [("204".to_owned(), 1)].into(),
                    ..Default::default()
                },
                RouteReport {
                    method: "GET".into(),
                    route: OTHER.into(),
                    sent_statuses: [("200".to_owned(), 1)].into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let doc = document(&report);
        assert_eq!(doc["openapi"], "3.1.0");
        let path = &doc["paths"]["/users/{id}/posts/{id2}"];
        assert_eq!(
            path["get"]["responses"]["404"]["description"],
            "Not Found (observed 2 times)"
        );
        assert_eq!(path["get"]["parameters"][1]["name"], "id2");
        assert_eq!(
            path["delete"]["responses"]["204"]["description"],
            "No Content (observed 1 times)"
        );
        assert_eq!(
            doc["paths"].as_object().unwrap().len(),
            1,
            "{{other}} is left out"
        );
    }
}
