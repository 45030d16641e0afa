//! Peak heap of rule evaluation on 1 MiB JSON bodies, against parsing a whole
//! `serde_json::Value` (catalogue row B6: a `Value` costs 12–24× the body, which is why the rules
//! extract what they need instead).
//!
//! The test re-runs itself alone in a child process, because the counting allocator is global:
//! any other test running at the same time would be counted too.

use std::sync::atomic::Ordering;

use http::{HeaderMap, Method, StatusCode};

use candor::rules::ResponseView;

use crate::counting::{LIVE, PEAK};
use crate::measuring_child;

/// Runs `f`, returning its result and the most heap it held at once beyond what was live before.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let out = f();
    (out, PEAK.load(Ordering::SeqCst) - base)
}

const MIB: usize = 1 << 20;

/// `[0,0,0,…]`: the worst case for a `Value` (24×: every element becomes a 24-byte `Value`).
fn zeros() -> Vec<u8> {
    let mut body = b"[0".to_vec();
    while body.len() < MIB - 2 {
        body.extend_from_slice(b",0");
    }
    body.push(b']');
    body
}

/// `{"a0":0,"a1":1,…}` with a status and code at the end: many short keys (12×).
fn short_keys() -> Vec<u8> {
    let mut body = b"{".to_vec();
    let mut i = 0;
    while body.len() < MIB - 64 {
        body.extend_from_slice(format!("\"a{i}\":{i},").as_bytes());
        i += 1;
    }
    body.extend_from_slice(br#""status":"error","code":1042}"#);
    body
}

/// A realistic large response: an error envelope around a long list of records.
fn records() -> Vec<u8> {
    let mut body = br#"{"status":"error","code":1042,"message":"no such user","data":["#.to_vec();
    let mut i = 0;
    while body.len() < MIB - 128 {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(
            format!(
                r#"{{"id":{i},"name":"user {i}","tags":["a","b"],"score":{i}.5,"active":true}}"#
            )
            .as_bytes(),
        );
        i += 1;
    }
    body.extend_from_slice(b"]}");
    body
}

const RULES: &str = r#"
[upstream]
url = "http://127.0.0.1:1"

[[rules]]
name = "first-is-zero"
when.json = [{ pointer = "/0", equals = 1 }]
then.status = 500

[[rules]]
name = "user-not-found"
when.status = [200]
when.json = [
  { pointer = "/status", equals = "error" },
  { pointer = "/code", equals = 1042 },
]
then.status = 404
then.body = "problem"
then.detail_from = "/message"
"#;

#[test]
fn targeted_extraction_peaks_far_below_a_whole_value() {
    if !measuring_child(
        module_path!(),
        "targeted_extraction_peaks_far_below_a_whole_value",
    ) {
        return;
    }
    let config = candor::config::from_toml(RULES, "memory", Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let rules = config.rules;
    let headers = HeaderMap::new();
    let mut report = Vec::new();
    for (name, body, matches) in [
        ("[0,0,…]", zeros(), false),
        ("short keys", short_keys(), true),
        ("records", records(), true),
    ] {
        let view = ResponseView {
            method: &Method::GET,
            path: "/users/7",
            query: "",
            request_headers: &headers,
            request_id: None,
            status: StatusCode::OK,
            headers: &headers,
            body: Some(&body),
        };
        let (evaluation, rules_peak) = peak_during(|| rules.evaluate(&view));
        assert_eq!(evaluation.decision.is_some(), matches, "{name}");
        drop(evaluation);
        let (value, value_peak) =
            peak_during(|| serde_json::from_slice::<serde_json::Value>(&body));
        assert!(value.is_ok(), "{name}");
        drop(value);
        report.push(format!(
            "{name}: body {} KiB, evaluate peak {} B, serde_json::Value peak {} KiB ({:.1}x body)",
            body.len() / 1024,
            rules_peak,
            value_peak / 1024,
            value_peak as f64 / body.len() as f64
        ));
        // The extraction holds a few scalars, whatever the body's size.
        assert!(rules_peak < 16 * 1024, "{name}: {rules_peak} bytes");
        assert!(value_peak > 4 * body.len(), "{name}: {value_peak} bytes");
    }
    println!("{}", report.join("\n"));
}

/// Templates and copied members on the same 1 MiB bodies: a member pointing at the megabyte of
/// records is validated but never built whole (it is left out past 16 KiB), so what evaluation
/// holds stays bounded, whatever the body. (A member another pointer lies under is built whole,
/// like an `equals` table: the pointer must see it whatever its size.)
const MEMBER_RULES: &str = r#"
[upstream]
url = "http://127.0.0.1:1"

[[rules]]
name = "user-not-found"
when.status = [200]
when.json = [{ pointer = "/status", equals = "error" }]
then.status = 404
then.body = "problem"
then.detail_from = "/message"
then.headers = [{ name = "location", value = "/users/{/code}" }, { name = "x-trace", value = "{method} {path} {/message}" }]
then.problem.members = { data = "/data", code = "/code" }
"#;

#[test]
fn templates_and_members_stay_bounded_on_large_bodies() {
    if !measuring_child(
        module_path!(),
        "templates_and_members_stay_bounded_on_large_bodies",
    ) {
        return;
    }
    let config = candor::config::from_toml(MEMBER_RULES, "memory", Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let rules = config.rules;
    let headers = HeaderMap::new();
    let mut report = Vec::new();
    for (name, body) in [("short keys", short_keys()), ("records", records())] {
        let view = ResponseView {
            method: &Method::GET,
            path: "/users/7",
            query: "",
            request_headers: &headers,
            request_id: None,
            status: StatusCode::OK,
            headers: &headers,
            body: Some(&body),
        };
        let (evaluation, peak) = peak_during(|| rules.evaluate(&view));
        let Some(decision) = evaluation.decision else {
            panic!("{name}: the rule must match")
        };
        let members: Vec<&str> = decision.members.iter().map(|(n, _)| *n).collect();
        // The megabyte of records is left out; small members are kept.
        assert!(!members.contains(&"data"), "{name}: {members:?}");
        assert!(members.contains(&"code"), "{name}: {members:?}");
        assert_eq!(decision.headers[0].1, "/users/1042", "{name}");
        report.push(format!(
            "{name}: body {} KiB, evaluate with templates and members peak {} KiB, members {members:?}",
            body.len() / 1024,
            peak / 1024
        ));
        // A Value of the 1 MiB body would peak at 12-24 MiB; the bound is what a 16 KiB member
        // can cost.
        assert!(peak < 1024 * 1024, "{name}: {peak} bytes");
    }
    println!("{}", report.join("\n"));
}
